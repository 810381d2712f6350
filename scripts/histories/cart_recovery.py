"""Cart recovery: the full path and each way out."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from core.contracts import JourneyState
from core.zones import zone_at_local_hour
from histories.common import Branch, Handle, check, expect_mail, follow
from testkit.data import HAT, MUG, TEE, abandon_cart, add_customer, email_for
from testkit.stack import Stack

JOURNEY = "cart_recovery"


async def _first_reminder_sent(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    handle: Handle = await abandon_cart(stack, cid, TEE, MUG)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await expect_mail(stack, cid, 1)
    return handle


async def full_path(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    handle: Handle = await abandon_cart(stack, cid, TEE, MUG)
    await stack.fast_forward(handle, timedelta(days=7, hours=1))
    return handle


async def ordered_after_first_reminder(stack: Stack, cid: str) -> Handle:
    handle = await _first_reminder_sent(stack, cid)
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "48.30", "lines": [TEE, MUG]}
    )
    return handle


async def cart_changed_before_first_reminder(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    handle: Handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=40))
    await abandon_cart(stack, cid, HAT, MUG)  # restarts the one-hour wait
    await stack.fast_forward(handle, timedelta(minutes=65))
    await expect_mail(stack, cid, 1)
    await stack.fast_forward(handle, timedelta(days=7))
    return handle


async def cart_emptied(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    handle: Handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(minutes=10))
    await abandon_cart(stack, cid)  # no lines: the cart was emptied
    return handle


async def unsubscribed(stack: Stack, cid: str) -> Handle:
    handle = await _first_reminder_sent(stack, cid)
    await stack.journeys.unsubscribe({"customer_id": cid})  # signals customer_left
    return handle


async def hard_bounce(stack: Stack, cid: str) -> Handle:
    await add_customer(stack, cid)
    stack.catcher.rcpt_answers[email_for(cid)] = "550 5.1.1 No such user here"
    handle: Handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    return handle


async def clicked_after_first_reminder(stack: Stack, cid: str) -> Handle:
    """The customer follows the checkout link of the first reminder, then does not order."""
    handle = await _first_reminder_sent(stack, cid)
    (mail,) = stack.catcher.to(email_for(cid))
    html = mail.get_body(preferencelist=("html",))
    link = re.search(r'href="https://shop\.test(/t/c/[^"]+)"', html.get_content() if html else "")
    check(link is not None, "the first reminder has no tracked link")
    await follow(stack, link.group(1) if link else "", 302, reader=cid)  # a person
    await stack.fast_forward(handle, timedelta(days=7))
    return handle


async def _until_step(handle: Handle, step: str) -> None:
    """Until the run is at ``step`` (its first reminder held: deferred or paused)."""
    for _ in range(150):
        if (await handle.query("state", result_type=JourneyState)).step == step:
            return
        await asyncio.sleep(0.1)
    check(False, f"the run never reached {step}")


async def emptied_during_quiet_hours(stack: Stack, cid: str) -> Handle:
    """The first reminder falls in the customer's night and waits for the morning; the cart
    is emptied meanwhile (code version 3: the held reminder is dropped at once)."""
    await add_customer(stack, cid, timezone=zone_at_local_hour(23))
    handle: Handle = await abandon_cart(stack, cid, TEE)
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await _until_step(handle, "waiting:reminder_1")
    await abandon_cart(stack, cid)  # no lines: emptied
    try:  # version 3 ends the run at once; version 2 asked the gate in the morning
        await asyncio.wait_for(handle.result(), timeout=5)
    except TimeoutError:
        await stack.fast_forward(handle, timedelta(hours=10))
    return handle


async def ordered_while_paused(stack: Stack, cid: str) -> Handle:
    """An operator pauses the customer's runs before the first reminder; the customer orders;
    the operator resumes (code version 3: the held reminder is dropped on the order)."""
    await add_customer(stack, cid)
    handle: Handle = await abandon_cart(stack, cid, TEE)
    await handle.signal("pause", {"reason": "operator"})
    await stack.fast_forward(handle, timedelta(hours=1, minutes=5))
    await _until_step(handle, "paused:reminder_1")
    await stack.journeys.order_placed(
        {"customer_id": cid, "order_id": f"o-{cid}", "total": "39.80", "lines": [TEE]}
    )
    try:  # version 3 ends the run on the order; version 2 held the reminder until resumed
        await asyncio.wait_for(handle.result(), timeout=5)
    except TimeoutError:
        await handle.signal("resume", {"reason": "operator"})
    return handle


ALL = ["reminder_1", "reminder_2", "reminder_3", "reminder_4", "discount"]
BRANCHES = {
    "full_path": Branch(full_path, "completed", ALL),
    "ordered_after_first_reminder": Branch(ordered_after_first_reminder, "ordered", ALL[:1]),
    "cart_changed_before_first_reminder": Branch(
        cart_changed_before_first_reminder, "completed", ALL
    ),
    "cart_emptied": Branch(cart_emptied, "cart_emptied", []),
    "unsubscribed": Branch(unsubscribed, "unsubscribed", ALL[:1]),
    "hard_bounce": Branch(hard_bounce, "bounced", []),
    # code version 2 and 3: after a click only the discount (workflow.patched); version 4:
    # only where the journey says skip_reminders_after_click (off by default)
    "clicked_after_first_reminder": Branch(clicked_after_first_reminder, "completed", ALL),
    "clicked_with_skip_setting": Branch(
        clicked_after_first_reminder,
        "completed",
        ["reminder_1", "discount"],
        journeys={"cart_recovery": {"skip_reminders_after_click": True}},
    ),
    # code version 3: leaving drops a held reminder at once (workflow.patched); version 2
    # sent it to the gate when it was due, which ended with "cart_empty" / "ordered"
    "emptied_during_quiet_hours": Branch(emptied_during_quiet_hours, "cart_emptied", []),
    "ordered_while_paused": Branch(ordered_while_paused, "ordered", []),
}
