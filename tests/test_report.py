"""The effect report end to end: customers walk cart recovery with a 50 % holdout on the real
dev server (virtual time moves each run past its first reminder), orders arrive for a known
subset at known times after entry, and the report (JSON over HTTP, the page in a real
headless Chromium) shows exactly the expected figures per window."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.rules import in_holdout
from devstack.catcher import free_port
from devstack.demo_report import JOURNEY, play, reader
from observability import runtime_with_metrics
from settings import ROOT, Settings
from starter.api import Journeys
from starter.http import create_app
from starter.reports import journey_report
from store.models import Event, JourneyEntry, Order, SendLog
from testkit.data import abandon_cart, add_customer, email_for
from testkit.engagement import PERSON, delivered, read_later
from testkit.live_api import serving
from testkit.mail import parts, wait_for_mail
from testkit.stack import Stack
from testkit.waiting import eventually

CUSTOMERS = 120
WINDOWS = ("2d", "10d", "30d")
ADMIN = ("ops", "report-password-0123")
TEE = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90"}
MUG = {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50", "category": "kitchen"}
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)


def _orders_of(i: int, treated: bool) -> list[tuple[timedelta, Decimal]]:
    """The known subset: (time after entry, total) of customer ``i``'s orders."""
    out = []
    if i % 4 == 0:
        out.append((timedelta(days=1), Decimal("10.00")))  # in every window
    if i % 4 == 1 and treated:
        out += [(timedelta(days=5), Decimal("20.00")), (timedelta(days=6), Decimal("5.00"))]
    if i % 5 == 2:
        out.append((timedelta(days=20), Decimal("30.00")))  # 30 days only
    if i % 7 == 3:
        out.append((timedelta(hours=-2), Decimal("99.00")))  # before entering: never
    if i % 11 == 4:
        out.append((timedelta(days=45), Decimal("7.00")))  # after every window
    return out


def _expected(ids: list[str], journey: str) -> dict[str, dict[str, tuple[int, int, float]]]:
    """Per window and group: (customers, converted, revenue), computed here by hand."""
    out: dict[str, dict[str, tuple[int, int, float]]] = {}
    for label, days in zip(WINDOWS, (2, 10, 30), strict=True):
        customers = {"treated": 0, "control": 0}
        converted = {"treated": 0, "control": 0}
        revenue = {"treated": Decimal(0), "control": Decimal(0)}
        for i, cid in enumerate(ids):
            treated = not in_holdout(cid, journey, 0.5)
            group = "treated" if treated else "control"
            window = timedelta(days=days)
            inside = [t for after, t in _orders_of(i, treated) if timedelta(0) < after <= window]
            customers[group] += 1
            converted[group] += bool(inside)
            revenue[group] += sum(inside, Decimal(0))
        out[label] = {g: (customers[g], converted[g], float(revenue[g])) for g in customers}
    return out


async def _walk_customers(stack: Stack) -> list[str]:
    ids = [stack.new_customer_id() for _ in range(CUSTOMERS)]
    handles = []
    for cid in ids:
        await add_customer(stack, cid)
        handles.append(await abandon_cart(stack, cid, TEE))
    for chunk in range(0, len(handles), 20):  # past the first reminder (1 h), in virtual time
        await asyncio.gather(
            *(stack.fast_forward(h, timedelta(hours=2)) for h in handles[chunk : chunk + 20])
        )

    async def first_step_decided() -> int:
        async with stack.sessions() as s:
            rows = await s.scalars(
                select(SendLog.customer_id).where(
                    SendLog.customer_id.in_(ids),
                    SendLog.step == "reminder_1",
                    SendLog.status != "sending",  # the relay's answer is recorded too
                )
            )
            return len(set(rows))

    # The report reads the first step's decisions: wait until every customer has one, with
    # its outcome (the catcher has a message a moment before the 250 is committed).
    await eventually(first_step_decided, lambda decided: decided == len(ids))
    return ids


async def _place_orders(stack: Stack, ids: list[str], journey: str) -> None:
    async def entries() -> dict[str, JourneyEntry]:
        async with stack.sessions() as s:
            rows = await s.scalars(select(JourneyEntry).where(JourneyEntry.customer_id.in_(ids)))
            return {e.customer_id: e for e in rows}

    entered = await eventually(entries, lambda found: len(found) == len(ids))
    assert len(entered) == len(ids)
    async with stack.sessions.begin() as s:
        for i, cid in enumerate(ids):
            e = entered[cid]
            assert e.journey == journey and e.holdout_share == 0.5
            assert (e.group == "control") == in_holdout(cid, journey, 0.5)
            for n, (after, total) in enumerate(_orders_of(i, e.group == "treated")):
                s.add(
                    Order(
                        id=f"{cid}-o{n}",
                        customer_id=cid,
                        total=total,
                        currency="EUR",
                        lines={"items": [{**(MUG if i % 3 else TEE), "price": str(total)}]},
                        placed_at=e.entered_at + after,
                    )
                )


async def _engage(stack: Stack, ids: list[str]) -> tuple[int, int, int]:
    """Opens and clicks of the first reminder, as the tracking route records them: every
    third treated customer opens it (a person, hours after), every sixth also clicks; a
    scanner opens every fifth at delivery. Returns (human opens, human clicks, machine)."""
    async with stack.sessions.begin() as s:
        sends = list(
            await s.scalars(
                select(SendLog).where(
                    SendLog.customer_id.in_(ids),
                    SendLog.step == "reminder_1",
                    SendLog.status == "sent",
                )
            )
        )
        opens = clicks = machine = 0
        for n, send in enumerate(sends):

            def event(
                name: str, after: timedelta, cls: str, send: SendLog = send, **p: str
            ) -> None:
                s.add(
                    Event(
                        message_id=f"{name}:{send.idempotency_key}:{cls}",
                        customer_id=send.customer_id,
                        name=name,
                        properties={"send_key": send.idempotency_key, **p},
                        occurred_at=(send.sent_at or send.decided_at) + after,
                        engagement_class=cls,
                    )
                )

            if n % 3 == 0:
                agent = OUTLOOK if n % 2 else APPLE_MAIL
                event("Email Opened", timedelta(hours=n % 30), "human", user_agent=agent)
                opens += 1
            if n % 6 == 0:
                url = f"https://shop.test/checkout/{send.customer_id}"
                event("Email Link Clicked", timedelta(hours=n % 30, minutes=2), "human", url=url)
                clicks += 1
            if n % 5 == 0:
                event("Email Opened", timedelta(seconds=1), "machine", user_agent="Mozilla/5.0")
                machine += 1
    return opens, clicks, machine


def _auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()}


async def test_report_shows_the_lift_of_a_journey_with_a_holdout_per_window(
    make_stack: Any,
) -> None:
    stack: Stack = await make_stack(cart_recovery={"holdout_share": 0.5})
    journey = "cart_recovery"
    ids = await _walk_customers(stack)
    await _place_orders(stack, ids, journey)
    engaged = await _engage(stack, ids)
    settings = stack.settings.model_copy(
        update={"admin_user": ADMIN[0], "admin_password": ADMIN[1]}
    )
    app = create_app(settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        assert (await http.get(f"/v1/reports/journeys/{journey}")).status_code == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()}
        assert (await http.get("/reports", headers=wrong)).status_code == 401
        answer = await http.get(f"/v1/reports/journeys/{journey}", headers=_auth())
        assert answer.status_code == 200, answer.text

    report = answer.json()
    assert [w["window"] for w in report["windows"]] == list(WINDOWS)
    # The first reminder: sent to the treated, held out of the control. (The store is shared
    # by the session's tests, whose cart journeys bring other steps into the report.)
    first_step = next(step for step in report["steps"] if step["step"] == "reminder_1")
    assert first_step["windows"][0]["treated"]["customers"] > 0
    assert first_step["windows"][0]["control"]["customers"] > 0
    # the store is shared by the session's tests: this test's customers are the entries
    # since its first one
    await _assert_own_figures(stack, ids, journey, engaged)
    await _open_in_chromium(app, journey)


async def _assert_own_figures(
    stack: Stack, ids: list[str], journey: str, engaged: tuple[int, int, int]
) -> None:
    """The report since this test's first entry equals the figures computed by hand."""
    async with stack.sessions() as s:
        first = await s.scalar(
            select(JourneyEntry.entered_at)
            .where(JourneyEntry.customer_id.in_(ids))
            .order_by(JourneyEntry.entered_at)
            .limit(1)
        )
    report = await journey_report(stack.sessions, journey, windows=list(WINDOWS), since=first)
    expected = _expected(ids, journey)
    for row in report["windows"]:
        for group in ("treated", "control"):
            got = row[group]
            assert (got["customers"], got["converted"], got["revenue"]) == expected[row["window"]][
                group
            ], (
                row["window"],
                group,
            )
        t, c = expected[row["window"]]["treated"], expected[row["window"]]["control"]
        assert row["lift"]["absolute"] == pytest.approx(t[1] / t[0] - c[1] / c[0])
        lo, hi = row["lift"]["ci95"]
        assert lo <= row["lift"]["absolute"] <= hi
    # the mail figures of the first reminder: sent to the treated, held out of the control
    treated = sum(not in_holdout(cid, journey, 0.5) for cid in ids)
    first_step = next(row for row in report["mail"]["steps"] if row["step"] == "reminder_1")
    # Runs other tests left behind may send a first reminder within this window too (the
    # time-skipping server moves every run's clock): the report counts every send since
    # ``first``; this test's customers are exactly the treated ones.
    async with stack.sessions() as s:
        rows = (
            await s.execute(
                select(SendLog.customer_id, SendLog.status, SendLog.idempotency_key).where(
                    SendLog.journey == journey,
                    SendLog.step == "reminder_1",
                    SendLog.decided_at >= first,
                )
            )
        ).all()
        others = {key for cid, status, key in rows if cid not in set(ids) and status == "sent"}
        found = (
            await s.scalars(
                select(Event).where(Event.customer_id.in_({r[0] for r in rows} - set(ids)))
            )
        ).all()
    handed = {"sent", "uncertain", "bounced"}
    assert first_step["sent"] == sum(status in handed for _, status, _ in rows)
    assert first_step["held_out"] == sum(status == "held_out" for _, status, _ in rows)
    mine = [status for cid, status, _ in rows if cid in set(ids)]
    assert (mine.count("sent"), mine.count("held_out")) == (treated, len(ids) - treated)

    def theirs(name: str, cls: str) -> int:  # sends of those other runs opened / clicked
        return len(
            {
                e.properties.get("send_key")
                for e in found
                if e.name == name
                and e.properties.get("send_key") in others
                and (e.engagement_class or "human") == cls
            }
        )

    opens, clicks, machine = engaged
    opens += theirs("Email Opened", "human")
    clicks += theirs("Email Link Clicked", "human")
    machine += theirs("Email Opened", "machine")
    assert (first_step["opens"], first_step["clicks"]) == (opens, clicks)
    assert first_step["machine"]["opens"] == machine
    assert first_step["open_rate"] == pytest.approx(opens / first_step["delivered"])
    assert sum(row["opens"] for row in report["mail"]["by_local_hour"]) >= opens
    bought = {p["sku"] for w in report["mail"]["bought"] for p in w["treated"]["products"]}
    assert bought == {"TEE-1", "MUG-7"}


async def _open_in_chromium(app: Any, journey: str) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, (
        "the report page is checked in Debian's chromium: apt-get install -y chromium "
        "chromium-driver (make test does)"
    )
    async with serving(app) as base:
        seen = await asyncio.to_thread(_browse, chromium, driver_path, f"{base}/reports/{journey}")
    requests, console, svg_marks, title, bars = seen
    assert title.startswith("Effect of")
    assert svg_marks >= len(WINDOWS), "the lift chart did not render its intervals"
    # the mail charts: funnel, by day, by hour, clients, products; bars drawn with a size
    for chart in (
        "funnel of step reminder_1",
        "opens and clicks by day after sending",
        "opens and clicks by local hour",
        "opens per mail client",
    ):
        assert bars.get(chart, 0) > 0, f"chart {chart!r} drew no bar: {bars}"
    assert any(name.startswith("top products bought within") for name in bars), bars
    assert console == [], console
    leaving = [u for u in requests if not u.startswith(base) and not u.startswith("data:")]
    assert leaving == [], f"the page asked for something off this machine: {leaving}"


# Per chart (its aria-label): how many of its bars the browser laid out with a width.
DRAWN_BARS = """
const out = {};
for (const svg of document.querySelectorAll('svg.chart')) {
  const name = svg.getAttribute('aria-label');
  const drawn = [...svg.querySelectorAll('rect.bar')]
    .filter(r => r.getBoundingClientRect().width > 0).length;
  out[name] = (out[name] || 0) + drawn;
}
return out;
"""


def _browse(
    chromium: str, driver_path: str, url: str
) -> tuple[list[str], list[Any], int, str, dict[str, int]]:
    import json

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": _auth()})
        driver.get(url)
        marks = len(driver.find_elements(By.CSS_SELECTOR, "svg line.ci"))
        bars = driver.execute_script(DRAWN_BARS)
        title = driver.title
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(int(height) + 100, 16000))  # the whole page
        out = ROOT / "var" / "report-page.png"
        Path(out).parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(out))
        logged = driver.get_log("browser")  # type: ignore[no-untyped-call]
        console = [e for e in logged if e.get("level") == "SEVERE"]
        requests = []
        for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                requests.append(message["params"]["request"]["url"])
        return requests, console, marks, title, bars
    finally:
        driver.quit()


# -- the app's metrics ----------------------------------------------------------------------


def _samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of one metric in Prometheus' text format, by their labels."""
    out: dict[frozenset[tuple[str, str]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[frozenset(sample.labels.items())] = sample.value
    return out


def _value(samples: dict[frozenset[tuple[str, str]], float], **labels: str) -> float:
    """The sum of the samples that carry ``labels`` (others, e.g. the SDK's, may differ)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.items() if wanted <= key)


async def test_metrics_count_the_send_the_open_and_the_conversion(
    make_stack: Any, temporal_env: Any
) -> None:
    bind = f"127.0.0.1:{free_port()}"
    runtime = runtime_with_metrics(Settings(environment="test", metrics_bind=bind))
    target = temporal_env.client.service_client.config.target_host
    client = await Client.connect(target, runtime=runtime, data_converter=pydantic_data_converter)
    stack: Stack = await make_stack(client=client)
    settings = stack.settings.model_copy(
        update={"admin_user": ADMIN[0], "admin_password": ADMIN[1]}
    )
    app = create_app(settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        assert (await http.get("/metrics")).status_code == 401  # the operator's, not public
        before = (await http.get("/metrics", headers=_auth())).text

        cid = stack.new_customer_id()
        await add_customer(stack, cid)
        handle = await abandon_cart(stack, cid, TEE)
        await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
        (mail,) = await wait_for_mail(stack.catcher, email_for(cid), 1)
        await delivered(stack, cid)

        def scrape_worker() -> str:
            with urllib.request.urlopen(f"http://{bind}/metrics", timeout=5) as answer:
                return str(answer.read().decode())

        async def sends() -> float:
            text = await asyncio.to_thread(scrape_worker)
            return _value(
                _samples(text, "journey_sends") | _samples(text, "journey_sends_total"),
                journey="cart_recovery",
                step="reminder_1",
                status="sent",
            )

        # the worker's counter, beside the SDK's metrics on the same endpoint
        assert await eventually(sends, lambda n: n >= 1) == 1
        assert "temporal_" in await asyncio.to_thread(scrape_worker)

        _, html = parts(mail)
        pixel = re.search(r'<img src="https://shop\.test(/t/o/[^"]+)"', html)
        assert pixel
        await read_later(stack, cid)  # a person's open, not a scanner's at delivery
        assert (await http.get(pixel.group(1), headers=PERSON)).status_code == 200
        await stack.journeys.order_placed(
            {"customer_id": cid, "order_id": f"{cid}-o1", "total": "19.90"}
        )
        answer = await http.get("/metrics", headers=_auth())
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        after = answer.text

    def grew(name: str, **labels: str) -> float:
        return _value(_samples(after, name), **labels) - _value(_samples(before, name), **labels)

    opened = {"journey": "cart_recovery", "step": "reminder_1", "kind": "opened"}
    assert grew("journey_engagements_total", **opened, engagement_class="human") == 1
    assert grew("journey_engagements_total", **opened, engagement_class="machine") == 0
    assert grew("journey_conversions_total", journey="cart_recovery", group="treated") == 1


# -- make demo-report -----------------------------------------------------------------------


async def test_demo_report_plays_a_holdout_with_opens_and_orders_the_report_counts(
    make_stack: Any,
) -> None:
    stack: Stack = await make_stack(cart_recovery={"holdout_share": 0.5})
    fast = stack.settings.model_copy(update={"journey_speedup": 3600})  # 1 h is 1 s
    # Other tests' runs in virtual time have sends dated later than this one's entries:
    # the mail figures are compared as what this test added.
    before = await _first_reminder_engagement(stack)
    app = create_app(stack.settings, journeys=stack.journeys)
    transport = httpx.ASGITransport(app=app)
    async with (
        Journeys(client=stack.client, sessions=stack.sessions, settings=fast) as journeys,
        httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http,
    ):
        read = reader(
            stack.settings.public_base_url, lambda: list(stack.catcher.messages), http=http
        )
        played = await play(journeys, stack.sessions, customers=40, holdout=0.5, read=read)

    assert played.orders is not None
    assert played.treated + played.control == 40 and played.treated and played.control
    assert played.opened > 0 and sum(played.orders.values()) > 0
    async with stack.sessions() as s:
        first = await s.scalar(
            select(JourneyEntry.entered_at)
            .where(JourneyEntry.customer_id.in_(played.customers))
            .order_by(JourneyEntry.entered_at)
            .limit(1)
        )
    report = await journey_report(stack.sessions, JOURNEY, windows=["30d"], since=first)
    (window,) = report["windows"]
    assert window["treated"]["customers"] == played.treated
    assert window["control"]["customers"] == played.control
    assert window["treated"]["converted"] == played.orders["treated"]
    assert window["control"]["converted"] == played.orders["control"]
    opens, clicks = await _first_reminder_engagement(stack)
    assert opens - before[0] == played.opened  # a person's, read after delivery
    assert clicks - before[1] == played.clicked


async def _first_reminder_engagement(stack: Stack) -> tuple[int, int]:
    """The report's unique human opens and clicks of cart recovery's first reminder."""
    report = await journey_report(stack.sessions, JOURNEY, windows=["30d"])
    step = next((row for row in report["mail"]["steps"] if row["step"] == "reminder_1"), None)
    return (step["opens"], step["clicks"]) if step else (0, 0)
