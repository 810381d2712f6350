"""The mail figures of the report (store.mail_figures in SQL, starter.mail_report on top) on
both databases, against rows whose answer is known: sends in every state, a person's and a
machine's opens and clicks at known times and hours, links, user agents, unsubscribes and
complaints after a send, and what the converted customers bought."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from starter.mail_report import client_family, mail_figures, table_lines
from starter.report_charts import ab_chart
from store.db import SessionFactory
from store.models import Customer, Event, Order, Product, SendLog
from testkit.data import entered

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"


def test_mail_client_family_comes_from_the_user_agent():
    assert client_family(OUTLOOK) == "Outlook"
    assert client_family(APPLE_MAIL) == "Apple Mail"
    assert client_family(GMAIL) == "Gmail"
    assert client_family(
        "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3"
    ) == ("Thunderbird")
    assert client_family(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/120.0.0.0 Safari/537.36"
    ) == ("webmail in Chrome")
    assert client_family(None) == "unknown"


async def _data(s, tag: str, journey: str) -> None:
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "UTC", "UTC"]
    for n, zone in enumerate(zones):
        s.add(Customer(id=f"m{n}-{tag}", email=f"m{n}-{tag}@shop.test", timezone=zone))
    s.add(Product(sku=f"MUG-{tag}", name="Mug", category="kitchen"))
    await s.flush()

    def send(n: int, step: str, status: str, hours: float = 0, channel: str = "email") -> str:
        key = f"{journey}:m{n}-{tag}:run:{step}" + ("" if channel == "email" else f":{channel}")
        at = T0 + timedelta(hours=hours)
        s.add(
            SendLog(
                idempotency_key=key,
                customer_id=f"m{n}-{tag}",
                journey=journey,
                workflow_id=f"{journey}:m{n}-{tag}",
                run_chain_id="run",
                step=step,
                template=step,
                status=status,
                decided_at=at,
                sent_at=at if status in ("sent", "uncertain") else None,
                channel=channel,
            )
        )
        return key

    # step "welcome": m0..m3 sent, m4 uncertain, m5 bounced at the relay
    keys = [send(n, "welcome", "sent") for n in range(4)]
    keys.append(send(4, "welcome", "uncertain"))
    send(5, "welcome", "bounced")
    send(0, "welcome", "sent", channel="sms")  # a text along with it: not mail
    # step "gift" two days later: m0 sent, m1 held out, m2 skipped, m3 failed
    gift = send(0, "gift", "sent", hours=48)
    send(1, "gift", "held_out", hours=48)
    send(2, "gift", "skipped", hours=48)
    send(3, "gift", "failed", hours=48)

    seq = iter(range(1000))

    def event(n: int, name: str, key: str | None, after: timedelta, **props: object) -> None:
        s.add(
            Event(
                message_id=f"{name}:{tag}:{next(seq)}",
                customer_id=f"m{n}-{tag}",
                name=name,
                properties={"send_key": key, **props} if key else dict(props),
                occurred_at=T0 + after,
            )
        )

    def engaged(n: int, name: str, key: str, after: timedelta, cls: str, **props: object) -> None:
        s.add(
            Event(
                message_id=f"{name}:{tag}:{next(seq)}",
                customer_id=f"m{n}-{tag}",
                name=name,
                properties={"send_key": key, **props},
                occurred_at=T0 + after,
                engagement_class=cls,
            )
        )

    opened, clicked = "Email Opened", "Email Link Clicked"
    # welcome: people open m0 (Outlook, day 0, 10:00 UTC), m1 (Apple Mail, day 1, 09:00 UTC)
    # and m2 (Gmail, day 3, 22:00 UTC); a scanner opens m0 and m3 at delivery.
    engaged(0, opened, keys[0], timedelta(hours=1), "human", user_agent=OUTLOOK)
    engaged(1, opened, keys[1], timedelta(days=1), "human", user_agent=APPLE_MAIL)
    engaged(2, opened, keys[2], timedelta(days=3, hours=13), "human", user_agent=GMAIL)
    engaged(0, opened, keys[0], timedelta(seconds=1), "machine", user_agent=SCANNER)
    engaged(3, opened, keys[3], timedelta(seconds=1), "machine", user_agent=SCANNER)
    # clicks: m0 two links (people), m1 the shop link; the scanner clicks m3's shop link
    shop, help_ = "https://shop.test/cart", "https://shop.test/help"
    engaged(0, clicked, keys[0], timedelta(hours=1, minutes=1), "human", url=shop)
    engaged(0, clicked, keys[0], timedelta(hours=1, minutes=2), "human", url=help_)
    engaged(1, clicked, keys[1], timedelta(days=1, minutes=5), "human", url=shop)
    engaged(3, clicked, keys[3], timedelta(seconds=2), "machine", url=shop)
    # gift: m0 opens it 16 days after (the "14+" bucket)
    engaged(0, opened, gift, timedelta(hours=48, days=16), "human", user_agent=OUTLOOK)
    # leaving: m2 unsubscribes after the welcome; m0 complains after the gift;
    # an unsubscribe of m4 before any email counts for no step
    event(2, "Unsubscribed", None, timedelta(days=4))
    event(0, "Email Marked as Spam", None, timedelta(days=1))  # after welcome, before gift
    event(3, "Email Bounced", None, timedelta(hours=2), type="hard")
    event(4, "Unsubscribed", None, timedelta(hours=-1))

    # entries and orders: treated m0, m1, m2; control m3
    for n, grp in ((0, "treated"), (1, "treated"), (2, "treated"), (3, "control")):
        await entered(s, f"m{n}-{tag}", journey=journey, group=grp, at=T0, new_customer=False)
    tee = {"sku": f"TEE-{tag}", "name": "Tee", "price": "20.00", "quantity": 2, "category": "tops"}
    mug = {"sku": f"MUG-{tag}", "name": "Mug", "price": "8.50"}  # category from the catalogue
    orders = [
        (0, timedelta(days=1), [tee, mug]),
        (1, timedelta(days=5), [mug]),
        (2, timedelta(days=40), [tee]),  # outside every window
        (3, timedelta(days=1), [tee]),
    ]
    for i, (n, after, lines) in enumerate(orders):
        s.add(
            Order(
                id=f"o{i}-{tag}",
                customer_id=f"m{n}-{tag}",
                total=Decimal("1.00"),
                currency="EUR",
                lines={"items": lines},
                placed_at=T0 + after,
            )
        )


async def test_mail_figures_per_step_day_hour_link_client_and_purchase(sessions: SessionFactory):
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    journey = f"mail{tag}"
    async with sessions.begin() as s:
        await _data(s, tag, journey)

    mail = await mail_figures(
        sessions,
        journey,
        windows=[("2d", timedelta(days=2)), ("10d", timedelta(days=10))],
    )

    steps = {row["step"]: row for row in mail["steps"]}
    welcome = steps["welcome"]
    # sent: 4 sent + 1 uncertain + 1 bounced at the relay; bounced: that one + m3's report
    assert (welcome["sent"], welcome["bounced"], welcome["delivered"]) == (6, 2, 4)
    assert (welcome["opens"], welcome["clicks"]) == (3, 2)  # people only
    assert welcome["machine"] == {"opens": 2, "clicks": 1}
    assert welcome["open_rate"] == pytest.approx(3 / 4)
    assert welcome["click_rate"] == pytest.approx(2 / 4)
    assert welcome["click_to_open"] == pytest.approx(2 / 3)
    assert (welcome["unsubscribes"], welcome["complaints"]) == (1, 1)
    gift = steps["gift"]
    assert (gift["sent"], gift["held_out"], gift["skipped"], gift["failed"]) == (1, 1, 1, 1)
    assert (gift["opens"], gift["clicks"], gift["unsubscribes"], gift["complaints"]) == (1, 0, 0, 0)

    by_day = {row["day"]: row for row in mail["by_day"]}
    assert [by_day[d]["opens"] for d in ("0", "1", "3", "14+")] == [1, 1, 1, 1]
    assert sum(row["opens"] for row in mail["by_day"]) == 4
    assert (by_day["0"]["clicks"], by_day["1"]["clicks"]) == (1, 1)  # m0's email once
    assert (by_day["0"]["machine_opens"], by_day["0"]["machine_clicks"]) == (2, 1)

    # local hours: m0 Berlin 10:00 UTC -> 11 (and the gift on 20 March, 09:00 UTC -> 10);
    # m1 New York 09:00 UTC -> 04; m2 Tokyo 22:00 UTC -> 07
    hours = {row["hour"]: row["opens"] for row in mail["by_local_hour"] if row["opens"]}
    assert hours == {11: 1, 10: 1, 4: 1, 7: 1}
    assert sum(row["machine_opens"] for row in mail["by_local_hour"]) == 2

    links = {(row["step"], row["url"]): row for row in mail["links"]}
    assert links[("welcome", "https://shop.test/cart")]["clicks"] == 2
    assert links[("welcome", "https://shop.test/cart")]["machine_clicks"] == 1
    assert links[("welcome", "https://shop.test/help")]["clicks"] == 1
    assert mail["links"][0]["url"] == "https://shop.test/cart"

    clients = {row["family"]: row for row in mail["clients"]}
    assert clients["Outlook"]["opens"] == 2
    assert (clients["Apple Mail"]["opens"], clients["Gmail"]["opens"]) == (1, 1)
    assert sum(row["machine_opens"] for row in mail["clients"]) == 2
    assert all(row["opens"] == 0 for row in mail["clients"] if row["machine_opens"])

    two, ten = mail["bought"]
    assert two["window"] == "2d"
    # within 2 days: m0 (tee x2, mug) treated, m3 (tee x2) control
    treated = {p["name"]: p for p in two["treated"]["products"]}
    assert treated["Tee"] == {
        "sku": f"TEE-{tag}",
        "name": "Tee",
        "customers": 1,
        "quantity": 2,
        "revenue": 40.0,
    }
    assert treated["Mug"]["revenue"] == 8.5
    assert [p["name"] for p in two["control"]["products"]] == ["Tee"]
    # within 10 days m1's mug too: the mug leads with two customers
    assert ten["treated"]["products"][0]["name"] == "Mug"
    assert ten["treated"]["products"][0]["customers"] == 2
    categories = {c["category"]: c for c in ten["treated"]["categories"]}
    assert categories["kitchen"]["customers"] == 2  # from the catalogue
    assert categories["tops"]["quantity"] == 2

    text = "\n".join(table_lines(mail))
    assert "welcome" in text and "Outlook 2" in text


def test_the_ab_chart_draws_each_variants_rates():
    def variant(name: str, opens: float, clicks: float, bought: float | None) -> dict[str, Any]:
        window = {"window": "10d", "rate": bought}  # None: no customer in the window yet
        return {"variant": name, "open_rate": opens, "click_rate": clicks, "windows": [window]}

    step = {
        "step": "reminder_1",
        "variants": [variant("plain", 0.4, 0.1, 0.05), variant("urgent", 0.5, 0.2, None)],
    }

    svg = ab_chart(step)

    assert svg.count('<rect class="bar"') == 6  # three rates of two variants
    assert "<title>opened %, plain: 40</title>" in svg
    assert "<title>bought within 10d %, urgent: 0</title>" in svg
