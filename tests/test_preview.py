"""A marketer sees a step's email for a customer before they do (python -m starter preview,
GET /preview/...), and sends it to themselves as a test that no journey, cap or send log
ever counts (activities/preview.py, starter/preview.py, starter/http/preview.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.rules import ab_variant
from journeys.config import Variant
from settings import ROOT
from starter import __main__ as cli
from starter.http import create_app
from store import products
from store.models import Coupon, Customer, SendLog
from testkit.data import MUG, TEE, abandon_cart, add_customer, email_for
from testkit.live_api import serving
from testkit.mail import parts, wait_for_mail
from testkit.stack import Stack
from tests.test_step_holdout import steps_with

ADMIN = ("ops", "preview-password-0123")
TEST_ADDRESS = "marketer@shop.test"
SHOP_TEE = {**TEE, "url": "https://shop.test/p/tee-1", "image_url": "https://shop.test/i/tee.jpg"}


async def run_cli(stack: Stack, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``python -m starter ...`` in process (its own event loop, in a thread), with the
    stack's settings."""
    monkeypatch.setattr(cli, "get_settings", lambda: stack.settings)
    return await asyncio.to_thread(cli.main, list(args))


def _comparable(text: str) -> str:
    """A text part with the tokens of this service's links (unsubscribe, report: inert in a
    preview) blanked, and the line ends of the wire (CRLF) as in the file."""
    blanked = re.sub(r"(https://shop\.test/[a-z/]+/)[\w.-]{20,}", r"\1TOKEN", text)
    return blanked.replace("\r\n", "\n")


async def _rows(stack: Stack, model: Any, customer_id: str) -> int:
    async with stack.sessions() as s:
        query = select(func.count()).select_from(model).where(model.customer_id == customer_id)
        return int(await s.scalar(query) or 0)


async def test_preview_writes_the_email_the_customer_then_gets(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    handle = await abandon_cart(stack, cid, SHOP_TEE, MUG)

    opened: list[str] = []
    monkeypatch.setattr("starter.preview.webbrowser.open", opened.append)
    code = await run_cli(  # the journey as workflow ids spell it, or as its TOML
        stack, monkeypatch, "preview", "cart-recovery", "reminder_1", "--customer", cid,
        "--out", str(tmp_path), "--open",
    )  # fmt: skip

    assert code == 0
    printed = capsys.readouterr().out
    stem = tmp_path / f"cart_recovery.reminder_1.{cid}"
    paths = [Path(f"{stem}{suffix}") for suffix in (".html", ".txt", ".headers.txt", ".eml")]
    assert all(str(path) in printed and path.is_file() for path in paths), printed
    assert "the send gate now: would send" in printed
    assert opened == [paths[0].resolve().as_uri()]  # --open: the HTML in the browser
    html, text, headers = (p.read_text() for p in paths[:3])
    assert '<img src="https://shop.test/i/tee.jpg"' in html  # the product's image from the event
    assert f"https://shop.test/checkout/{cid}" in html  # the event's checkout link
    assert "/t/c/" not in html and "/t/o/" not in html  # not tracked: clicking it counts nothing
    raw = message_from_bytes(paths[3].read_bytes(), policy=policy.default)
    assert isinstance(raw, EmailMessage) and raw["To"] == f"Ada Lovelace <{email_for(cid)}>"
    assert f"Subject: {raw['Subject']}\n" in headers and "List-Unsubscribe-Post:" in headers
    assert _comparable(parts(raw)[0]) == _comparable(text)

    # The journey's own send, an hour later, says the same.
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    [sent] = await wait_for_mail(stack.catcher, email_for(cid), 1)
    assert sent["Subject"] == raw["Subject"] == "Ada, you left something in your cart"
    assert _comparable(parts(sent)[0]) == _comparable(text)


async def test_test_send_is_marked_and_records_nothing_no_cap_no_coupon(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    cid = stack.new_customer_id()
    to = f"marketer-{cid}@example.org"
    await add_customer(stack, cid)
    await abandon_cart(stack, cid, TEE)

    for _ in range(3):  # more than the frequency cap would let through to a customer
        code = await run_cli(
            stack, monkeypatch, "preview", "cart_recovery", "discount", "--customer", cid,
            "--out", str(tmp_path), "--send-to", to,
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err

    tests = await wait_for_mail(stack.catcher, to, 3)
    assert len(tests) == 3
    for test in tests:
        assert test["Subject"] == "[TEST] 10% off the cart you left, Ada"
        assert test["X-Journey-Test"] == "true" and test["To"] == to
        assert "CART-PREVIEW" in parts(test)[0]  # how the coupon looks; none is issued
    assert f"test sent to {to}" in capsys.readouterr().out
    # Nothing a real send leaves: no send-log row (so no cap consumed), no coupon, no date.
    assert [await _rows(stack, model, cid) for model in (SendLog, Coupon)] == [0, 0]
    async with stack.sessions() as s:
        customer = await s.get(Customer, cid)
        assert customer is not None and customer.last_emailed_at is None
    assert stack.catcher.to(email_for(cid)) == []  # and the customer got nothing


async def test_a_preview_shows_what_the_journey_passes_picks_product_and_the_gate(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid, first_name=None)
    sku = f"SKU-{cid}"
    async with stack.sessions.begin() as s:
        await products.upsert_products(
            s, lines=[{"sku": sku, "name": "Linen scarf", "price": "29.00", "category": "acc"}]
        )
    for n in range(2):
        await stack.journeys.product_viewed(
            {
                "customer_id": cid,
                "sku": sku,
                "name": "Linen scarf",
                "price": "29.00",
                "category": "acc",
                "message_id": f"v{n}-{cid}",
            }
        )
    await stack.journeys.unsubscribe({"customer_id": cid})

    assert await run_cli(
        stack, monkeypatch, "preview", "browse_follow_up", "reviews", "--customer", cid,
        "--out", str(tmp_path),
    ) == 0  # fmt: skip
    out = capsys.readouterr().out
    text = (tmp_path / f"browse_follow_up.reviews.{cid}.txt").read_text()
    assert "Linen scarf" in text  # the product the run follows: the last one viewed
    assert "the send gate now: skipped: unsubscribed" in out  # why the customer would not get it
    assert "subject: " in out and "there" not in out.split("subject: ")[1].splitlines()[0]

    assert await run_cli(
        stack, monkeypatch, "preview", "win_back", "win_back_offer", "--customer", cid,
        "--out", str(tmp_path),
    ) == 0  # fmt: skip
    assert "picks=new_arrivals" in capsys.readouterr().out  # what win-back passes this step
    text = (tmp_path / f"win_back.win_back_offer.{cid}.txt").read_text()
    assert "Linen scarf" in text  # the newest product, among the new arrivals


async def test_a_preview_shows_the_customers_arm_of_the_steps_ab_test(
    make_stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    variants = [
        {"name": "plain", "subject": "Your cart is waiting"},
        {"name": "bold", "subject": "Still yours: the cart you left"},
    ]
    stack: Stack = await make_stack(
        cart_recovery={"steps": steps_with("cart_recovery", reminder_1={"variants": variants})}
    )
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    chosen = ab_variant(cid, "cart_recovery", "reminder_1", [Variant(**v) for v in variants])

    assert await run_cli(
        stack, monkeypatch, "preview", "cart_recovery", "reminder_1", "--customer", cid,
        "--out", str(tmp_path),
    ) == 0  # fmt: skip

    out = capsys.readouterr().out
    subject = next(v["subject"] for v in variants if v["name"] == chosen)
    assert f"subject: {subject}\nA/B variant: {chosen}\n" in out


async def test_unknown_journey_step_customer_or_context_exit_2_listing_the_valid_ones(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)

    async def error(*args: str) -> str:
        assert await run_cli(stack, monkeypatch, "preview", *args) == 2
        return str(capsys.readouterr().err)

    said = await error("cart_recovery", "reminder_9", "--customer", cid)
    assert "no step 'reminder_9'; its steps: reminder_1, reminder_2, reminder_3" in said
    said = await error("new_customer_nurture", "thanks_sms", "--customer", cid)
    assert "is a text message (channel sms); the preview shows emails: thanks, " in said
    said = await error("cart_recovery", "reminder_1", "--customer", cid[:-1] + "?")
    assert "unknown customer" in said
    said = await error(
        "cart_recovery", "reminder_1", "--customer", cid, "--send-to", "not-an-address"
    )
    assert "send-to 'not-an-address'" in said
    with pytest.raises(SystemExit) as usage:
        await run_cli(stack, monkeypatch, "preview", "win_back", "last_call", "--customer", cid,
                "--context", "coupon=FREE")  # fmt: skip
    assert usage.value.code == 2 and "KEY one of order_id" in capsys.readouterr().err


def test_the_command_names_the_journeys_for_an_unknown_one(sqlite_url: str) -> None:
    env = {**os.environ, "ENVIRONMENT": "test", "DATABASE_URL": sqlite_url}
    done = subprocess.run(
        [sys.executable, "-m", "starter", "preview", "cart", "reminder_1", "--customer", "c-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "unknown journey 'cart'; journeys: birthday, browse_follow_up, cart_recovery" in (
        done.stderr
    )
    assert "lifecycle" not in done.stderr


async def test_the_preview_page_is_behind_the_operator_login(stack: Stack) -> None:
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await abandon_cart(stack, cid, SHOP_TEE)
    settings = stack.settings.model_copy(
        update={"admin_user": ADMIN[0], "admin_password": ADMIN[1]}
    )
    app = create_app(settings, journeys=stack.journeys)
    login = {"Authorization": "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()}
    write_key = {"Authorization": f"Bearer {stack.settings.api_write_key}"}
    url = f"/preview/cart_recovery/reminder_1?customer={cid}"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test") as http:
        for headers in ({}, wrong, write_key):
            assert (await http.get(url, headers=headers)).status_code == 401
        page = await http.get(url, headers=login)
        unknown = await http.get(url.replace("reminder_1", "reminder_9"), headers=login)
        nobody = await http.get(f"{url}x", headers=login)
        bad = await http.get(f"{url}&picks=everything", headers=login)
        nul = await http.get(f"{url}&product_sku=a%00b", headers=login)
        nul_id = await http.get(url.replace(cid, "c%00"), headers=login)

    assert page.status_code == 200, page.text
    assert "script-src" not in page.headers["content-security-policy"]
    body = page.text
    assert '<iframe title="HTML part" sandbox=""' in body and "srcdoc=" in body
    assert "&lt;img src=&quot;https://shop.test/i/tee.jpg&quot;" in body  # the HTML, escaped
    assert "Ada, you left something in your cart" in body
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in body  # the headers
    assert "You left these items in your cart" in body  # the text part
    assert unknown.status_code == 404 and "its steps: reminder_1" in unknown.json()["detail"]
    assert nobody.status_code == 404 and "unknown customer" in nobody.json()["detail"]
    assert bad.status_code == 422 and "picks" in bad.json()["detail"]
    assert nul.status_code == 422 and "no control characters" in nul.json()["detail"]
    assert nul_id.status_code == 404 and "unknown customer" in nul_id.json()["detail"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_preview_page_shows_the_email_in_chromium_under_its_policy(
    stack: Stack,
) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, (
        "the preview page is checked in Debian's chromium: apt-get install -y chromium "
        "chromium-driver (make test does)"
    )
    cid = stack.new_customer_id()
    await add_customer(stack, cid)
    await abandon_cart(stack, cid, TEE)
    settings = stack.settings.model_copy(
        update={"admin_user": ADMIN[0], "admin_password": ADMIN[1]}
    )
    async with serving(create_app(settings, journeys=stack.journeys)) as base:
        url = f"{base}/preview/cart_recovery/reminder_1?customer={cid}"
        framed, console = await asyncio.to_thread(_browse, chromium, driver_path, url)

    # The email's HTML drawn in its frame, its inline styles allowed; nothing refused.
    assert "You left these items in your cart" in framed and "Blue T-shirt" in framed
    assert console == [], console


def _browse(chromium: str, driver_path: str, url: str) -> tuple[str, list[Any]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    login = "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": login}})
        driver.get(url)
        driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe"))
        framed = str(driver.find_element(By.TAG_NAME, "body").text)
        driver.switch_to.default_content()
        logged = driver.get_log("browser")  # type: ignore[no-untyped-call]
        return framed, [e for e in logged if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
