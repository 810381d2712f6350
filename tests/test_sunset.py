"""List hygiene across journeys: the daily sweep sunsets an address with no human open or
click in its last SUNSET_AFTER_EMAILS marketing emails and SUNSET_AFTER_DAYS days; the
"keep writing to me" button and a re-subscribe bring it back (as after win-back's sunset).
Events go through the HTTP API; the stack's worker sends real email to the catcher."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from core.contracts import JourneyResult
from core.links import Links
from core.zones import zone_at_local_hour
from devstack.catcher import MailCatcher
from starter.ops import explain
from store.db import SessionFactory
from store.migrate import upgrade
from store.models import SendLog, Suppression
from store.sweep import SUNSET_SOURCE
from testkit.data import email_for
from testkit.databases import throwaway_postgres
from testkit.engagement import PERSON, SCANNER, delivered, read_later
from testkit.mail import journey_mails, parts, steps_of, wait_for_mail
from testkit.stack import WRITE_KEY, Stack, running_stack, stack_settings
from tests.test_win_back import sweep

BEARER = {"Authorization": f"Bearer {WRITE_KEY}"}
AFTER_EMAILS, AFTER_DAYS = 2, 30
# The sweep runs a day after the silence has lasted AFTER_DAYS (customers are new today).
AS_OF = datetime.now(UTC).replace(microsecond=0) + timedelta(days=AFTER_DAYS + 1)
TEE = {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "quantity": 1}


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own for each test: the sweep looks at every customer in it."""
    if request.param == "postgresql":
        async with throwaway_postgres("journeys_sunset") as url:
            yield url
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'sunset.db'}"
    await upgrade(url)
    yield url


@pytest.fixture
async def stack(
    temporal_env: WorkflowEnvironment,
    catcher: MailCatcher,
    sessions: SessionFactory,
    db_url: str,
    journeys_dir: Callable[..., Path],
) -> AsyncIterator[Stack]:
    settings = stack_settings(
        database_url=db_url,
        catcher=catcher,
        journeys_dir=journeys_dir(),
        smtp_pool_size=2,
        sunset_after_emails=AFTER_EMAILS,
        sunset_after_days=AFTER_DAYS,
    )
    async with running_stack(
        temporal_env, settings=settings, sessions=sessions, catcher=catcher
    ) as running:
        yield running


async def _track(http: Any, cid: str, event: str, **properties: Any) -> None:
    body = {"userId": cid, "event": event, "properties": properties}
    answer = await http.post("/v1/track", json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text


async def _cart_customer(stack: Stack, http: Any, label: str) -> WorkflowHandle[Any, Any]:
    """A customer (identify) who leaves a cart (Checkout Started), and the first reminder."""
    cid = f"{label}-{stack.new_customer_id()}"
    traits = {"email": email_for(cid), "firstName": "Ada", "timezone": zone_at_local_hour(11)}
    identify = {"userId": cid, "traits": traits}
    answer = await http.post("/v1/identify", json=identify, headers=BEARER)
    assert answer.status_code == 200, answer.text
    await _track(http, cid, "Checkout Started", products=[TEE])
    handle = stack.client.get_workflow_handle(f"cart-recovery:{cid}", result_type=JourneyResult)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await wait_for_mail(stack.catcher, email_for(cid), 1)
    await delivered(stack, cid)  # the sweep reads the recorded delivery, not the catcher
    return handle


def _cid(handle: WorkflowHandle[Any, Any]) -> str:
    return handle.id.removeprefix("cart-recovery:")


def _links(html: str) -> list[str]:
    return [
        m.removeprefix("https://shop.test")
        for m in re.findall(r'"(https://shop\.test/t/[co]/[^"]+)"', html)
    ]


async def _second_reminder(stack: Stack, handle: WorkflowHandle[Any, Any]) -> None:
    await stack.fast_forward(handle, timedelta(days=2))
    await wait_for_mail(stack.catcher, email_for(_cid(handle)), 2)
    await delivered(stack, _cid(handle), 2)  # recorded before the run is stopped
    await handle.terminate("test done: two reminders are enough")


async def _suppression(stack: Stack, cid: str) -> Suppression | None:
    async with stack.sessions() as s:
        return await s.get(Suppression, email_for(cid))


async def test_the_sweep_sunsets_only_addresses_without_human_engagement(stack, http):
    silent = await _cart_customer(stack, http, "silent")
    clicker = await _cart_customer(stack, http, "clicker")
    few = await _cart_customer(stack, http, "few")

    # A mail-security gateway fetches every link of the silent customer's email at delivery:
    # machine engagement, kept, and no sign of life.
    _, html = parts(journey_mails(stack.catcher, _cid(silent), "cart_recovery")[0])
    for link in _links(html):
        await http.get(link, headers=SCANNER)
    # The clicker reads the first reminder an hour later and clicks, in a browser.
    await read_later(stack, _cid(clicker))
    _, html = parts(journey_mails(stack.catcher, _cid(clicker), "cart_recovery")[0])
    click = next(link for link in _links(html) if link.startswith("/t/c/"))
    assert (await http.get(click, headers=PERSON)).status_code == 302
    # The third empties the cart: one email only, fewer than SUNSET_AFTER_EMAILS.
    await _track(http, _cid(few), "Checkout Started", products=[])

    await _second_reminder(stack, silent)
    await _second_reminder(stack, clicker)
    assert steps_of(journey_mails(stack.catcher, _cid(silent), "cart_recovery")) == [
        "reminder_1",
        "reminder_2",
    ]

    result = await sweep(stack, as_of=AS_OF)

    assert result.counts["sunset"].selected == 1
    sunset = await _suppression(stack, _cid(silent))
    assert sunset is not None and sunset.reason == "sunset"
    assert f"last {AFTER_EMAILS} marketing emails and {AFTER_DAYS} days" in (sunset.detail or "")
    assert await _suppression(stack, _cid(clicker)) is None  # a person clicked since
    assert await _suppression(stack, _cid(few)) is None  # one email is not enough to judge
    again = await sweep(stack, as_of=AS_OF)  # a rerun of the same day changes nothing
    assert again.counts["sunset"].selected == 0


async def test_keep_writing_and_a_resubscribe_lift_the_sunset_and_the_next_sweep_keeps_it(
    stack, http
):
    silent = await _cart_customer(stack, http, "stays")
    other = await _cart_customer(stack, http, "resubscribes")
    await _second_reminder(stack, silent)
    await _second_reminder(stack, other)
    await sweep(stack, as_of=AS_OF)
    for handle in (silent, other):
        suppression = await _suppression(stack, _cid(handle))
        assert suppression is not None and suppression.reason == "sunset"

    # The "keep writing to me" link as every email carries it (a win-back last call shows
    # it): its page changes nothing, its button lifts the sunset.
    cid = _cid(silent)
    async with stack.sessions() as s:
        key = (
            await s.scalars(
                select(SendLog.idempotency_key).where(
                    SendLog.customer_id == cid, SendLog.step == "reminder_2"
                )
            )
        ).one()
    links = Links(base_url=stack.settings.public_base_url, secret=stack.settings.secret_key)
    stay = links.stay(customer_id=cid, send_key=key).removeprefix("https://shop.test")
    assert (await http.get(stay)).status_code == 200
    assert await _suppression(stack, cid) is not None
    assert (await http.post(stay, headers=PERSON)).status_code == 200
    assert await _suppression(stack, cid) is None

    # A re-subscribe ("Subscribed", e.g. from the shop's preference centre) lifts it too.
    await _track(http, _cid(other), "Subscribed")
    assert await _suppression(stack, _cid(other)) is None

    # The same silence does not sunset them again the next day.
    result = await sweep(stack, as_of=AS_OF + timedelta(days=1))
    assert result.counts["sunset"].selected == 0
    assert await _suppression(stack, cid) is None


async def test_a_sunset_is_recorded_with_its_source_for_explain(stack, http):
    silent = await _cart_customer(stack, http, "explained")
    await _second_reminder(stack, silent)
    await sweep(stack, as_of=AS_OF)
    why = await explain(stack.sessions, stack.client, _cid(silent))
    assert why.suppression is not None
    assert why.suppression.startswith("sunset since ") and f"[{SUNSET_SOURCE}]" in why.suppression
