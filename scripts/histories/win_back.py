"""Win-back, started by the daily sweep: an order after the offer (won back), an open of the
offer, "stay" clicked in the last call, no reaction (sunset); a run of the repeat-purchase
group; and two runs that never mailed (held out; capped), which must not sunset. Each on a
store of its own (the sweep looks at every customer in its store)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from core.ids import win_back_id
from histories.common import Branch, Handle, check, expect_steps, finished, follow, html_of
from histories.daily_sweep import sweep, today
from journeys.config import WinBackConfig
from store.models import Suppression
from testkit.data import email_for, emails_from_another_journey, lapsed_customer
from testkit.mail import journey_mails, parts, tracked_links
from testkit.stack import Stack
from workflows.win_back import WinBack

JOURNEY = "win_back"


def _config(stack: Stack) -> WinBackConfig:
    return stack.journeys.config("win_back", WinBackConfig)


async def _swept(
    stack: Stack, cid: str, *, group: str = "win_back", other_emails: int = 0
) -> Handle:
    """A lapsed customer (win-back group: two orders, the last 120 days ago; repeat-purchase
    group: one order 181 days ago), sent ``other_emails`` by another journey just now; the
    day's sweep starts their win-back."""
    as_of = today()
    orders = [300, 120] if group == "win_back" else [181]
    await lapsed_customer(stack, cid, as_of=as_of, orders=orders)
    if other_emails:
        await emails_from_another_journey(stack, cid, journey="cart_recovery", count=other_emails)
    _, result = await sweep(stack, f"daily-sweep:{cid}", as_of=as_of)
    started = {phase: count.started for phase, count in result.counts.items()}
    check(started.get(group) == 1 == sum(started.values()), f"{cid}: the sweep started {started}")
    run_id = win_back_id(cid, as_of - timedelta(days=orders[-1]))
    handle: Handle = stack.client.get_workflow_handle_for(WinBack.run, run_id)
    return handle


async def _offered(stack: Stack, cid: str, *, group: str = "win_back") -> Handle:
    """Swept into win-back; the offer goes out."""
    handle = await _swept(stack, cid, group=group)
    await expect_steps(
        stack, cid, JOURNEY, "win_back_offer" if group == "win_back" else "repurchase_offer"
    )
    return handle


async def _last_call(stack: Stack, cid: str, *, group: str = "win_back") -> Handle:
    """No reaction to the offer: the last call a week later."""
    handle = await _offered(stack, cid, group=group)
    last_call = _config(stack).step("last_call").after  # 7 days
    await stack.fast_forward(handle, last_call + timedelta(minutes=1))
    offer = "win_back_offer" if group == "win_back" else "repurchase_offer"
    await expect_steps(stack, cid, JOURNEY, offer, "last_call")
    return handle


async def _suppression(stack: Stack, cid: str) -> Suppression | None:
    async with stack.sessions() as s:
        return await s.get(Suppression, email_for(cid))


async def ordered_after_offer(stack: Stack, cid: str) -> Handle:
    """Orders after the offer (with its coupon): won back at once (no clock moved)."""
    handle = await _offered(stack, cid)
    text, _ = parts(journey_mails(stack.catcher, cid, JOURNEY)[0])
    check("BACK-" in text, f"{cid}: the offer has no coupon")
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-new-{cid}", "total": "20.00"}
    )
    return handle


async def opened_offer(stack: Stack, cid: str) -> Handle:
    """Opens the offer (loads its pixel): engaged, no last call."""
    handle = await _offered(stack, cid)
    (pixel,) = tracked_links(html_of(stack, cid, JOURNEY, 0), "o")
    await follow(stack, pixel, 200, reader=cid)  # a person, not a prefetch
    return handle


async def stayed_after_last_call(stack: Stack, cid: str) -> Handle:
    """Ignores the offer, then clicks "stay" in the last call: the address is kept."""
    handle = await _last_call(stack, cid)
    text, _ = parts(journey_mails(stack.catcher, cid, JOURNEY)[1])
    stay = [line.split(": ", 1)[1] for line in text.splitlines() if "/s/" in line]
    check(len(stay) == 1, f"{cid}: stay links in the last call: {stay}")
    await follow(stack, urlsplit(stay[0]).path, 200)  # GET /s/<token>: a page with a button
    await follow(stack, urlsplit(stay[0]).path, 200, method="POST")  # pressed
    await finished(handle)  # the store is up to date then
    check(await _suppression(stack, cid) is None, f"{cid}: suppressed after staying")
    return handle


async def no_reaction_sunset(stack: Stack, cid: str) -> Handle:
    """No open, click or order after the offer, nor within 15 days of the last call: the
    address is sunset."""
    handle = await _last_call(stack, cid)
    await stack.fast_forward(handle, _config(stack).sunset_after + timedelta(minutes=1))
    await finished(handle)  # the store is up to date then
    suppression = await _suppression(stack, cid)
    check(suppression is not None and suppression.reason == "sunset", f"{cid}: {suppression}")
    return handle


async def repurchase_sunset(stack: Stack, cid: str) -> Handle:
    """Repeat-purchase group (one order, 181 days ago): best sellers, then the last call,
    then, no reaction, sunset."""
    handle = await _last_call(stack, cid, group="repeat_purchase")
    await stack.fast_forward(handle, _config(stack).sunset_after + timedelta(minutes=1))
    await finished(handle)  # the store is up to date then
    suppression = await _suppression(stack, cid)
    check(suppression is not None and suppression.reason == "sunset", f"{cid}: {suppression}")
    return handle


async def _walked_unmailed(stack: Stack, cid: str, handle: Handle) -> Handle:
    """Through the whole timeline (last call and the wait for a sign of life after it)
    without an email: nothing to react to, so nothing is sunset."""
    config = _config(stack)
    await stack.fast_forward(
        handle, config.step("last_call").after + config.sunset_after + timedelta(minutes=2)
    )
    await finished(handle)  # the store is up to date then
    await expect_steps(stack, cid, JOURNEY)
    suppression = await _suppression(stack, cid)
    check(suppression is None, f"{cid}: sunset without an email: {suppression}")
    return handle


async def held_out_no_sunset(stack: Stack, cid: str) -> Handle:
    """In the control group (holdout_share 1.0): the offer and the last call are held out;
    the run walks the timeline to its end."""
    return await _walked_unmailed(stack, cid, await _swept(stack, cid))


async def capped_no_sunset(stack: Stack, cid: str) -> Handle:
    """Another journey's email within the cap's window (30 days, at most 1) caps the offer
    and the last call; the run walks the timeline to its end."""
    return await _walked_unmailed(stack, cid, await _swept(stack, cid, other_emails=1))


BRANCHES = {
    "ordered_after_offer": Branch(
        ordered_after_offer, "won_back", ["win_back_offer"], own_store=True
    ),
    "opened_offer": Branch(opened_offer, "engaged", ["win_back_offer"], own_store=True),
    "stayed_after_last_call": Branch(
        stayed_after_last_call, "stayed", ["win_back_offer", "last_call"], own_store=True
    ),
    "no_reaction_sunset": Branch(
        no_reaction_sunset, "sunset", ["win_back_offer", "last_call"], own_store=True
    ),
    "repurchase_sunset": Branch(
        repurchase_sunset, "sunset", ["repurchase_offer", "last_call"], own_store=True
    ),
    # code version 2: no sunset without a last call sent (version 1 sunset both: "sunset")
    "held_out_no_sunset": Branch(
        held_out_no_sunset, "held_out", [], journeys={"win_back": {"holdout_share": 1.0}}
    ),
    "capped_no_sunset": Branch(
        capped_no_sunset,
        "not_mailed",
        [],
        journeys={"win_back": {"frequency_cap": {"window": "30d", "max_emails": 1}}},
    ),
}
