"""Sends paced per mailbox provider, the engaged first (core/pacing.py, activities/pacing.py):
the pure rules as tables, the pacer on a real event loop with aiolimiter, and the send
activity against a real SMTP server and store — a paced send is held (retried), never
dropped, and when many wait the customers who read the shop's email lately go first."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.pacing import Paced, Pacer, lane_of
from core.pacing import DEFAULT_RATES, engagement_rank, parse_rates, provider_of
from settings import Settings
from store.models import Event, utcnow
from testkit.waiting import eventually
from tests.test_send_states import activities, attempt, customer, relay, request, row

__all__ = ["relay"]  # the fixture, shared with tests/test_send_states.py

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "provider"),
    [
        ("ada@gmail.com", "google"),
        ("ada@GoogleMail.COM", "google"),
        ("ada@hotmail.com", "microsoft"),
        ("ada@outlook.com.", "microsoft"),
        ("ada@yahoo.com", "yahoo"),
        ("ada@aol.com", "yahoo"),
        ("ada@icloud.com", "apple"),
        ("ada@qq.com", "qq"),
        ("ada@163.com", "netease"),
        ("ada@shop.example", "other"),
        ("no-at-sign", "other"),
    ],
)
def test_an_address_is_paced_with_its_mailbox_provider(address: str, provider: str) -> None:
    assert provider_of(address) == provider


def test_rates_replace_the_defaults_they_name() -> None:
    rates = parse_rates(" google=2.5, other=100 ,")
    assert rates["google"] == 2.5 and rates["other"] == 100
    assert rates["microsoft"] == DEFAULT_RATES["microsoft"]
    assert parse_rates("") == DEFAULT_RATES


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("google", "'google': expected provider=messages per second"),
        ("hotmail=5", "unknown provider 'hotmail'"),
        ("google=fast", "'fast' is not a number"),
        ("google=0", "must be above 0"),
        ("google=-1", "must be above 0"),
    ],
)
def test_bad_rates_are_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_rates(text)
    with pytest.raises(ValidationError, match="SMTP_PROVIDER_RATES"):
        Settings(environment="test", smtp_provider_rates=text)


@pytest.mark.parametrize(
    ("last", "transactional", "rank"),
    [
        (None, True, -1),
        (NOW - timedelta(days=1), False, 0),
        (NOW - timedelta(days=30), False, 0),
        (NOW - timedelta(days=31), False, 1),
        (NOW - timedelta(days=90), False, 1),
        (NOW - timedelta(days=91), False, 2),
        (None, False, 3),
    ],
)
def test_the_engaged_rank_first(last: datetime | None, transactional: bool, rank: int) -> None:
    assert engagement_rank(last, NOW, transactional=transactional) == rank


class Recording(Pacer):
    """A pacer that notes the order in which sends got through."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.passed: list[str] = []

    async def wait(self, address: str, *, rank: int) -> None:
        await super().wait(address, rank=rank)
        self.passed.append(address)


async def queued(pacer: Pacer, address: str, count: int) -> None:
    """Returns once ``count`` sends wait in the lane of ``address``'s provider."""

    async def waiting() -> int:
        lane = pacer._lanes.get(lane_of(address))
        return lane.waiting if lane else 0

    assert await eventually(waiting, lambda n: n >= count) >= count


async def test_waiting_sends_go_lowest_rank_first_then_in_arrival_order() -> None:
    pacer = Recording({"other": 1000.0})
    lane = pacer._lane(lane_of("x@shop.example"))
    async with lane.turn(0):  # the lane is busy: everything below queues
        tasks = []
        for i, rank in enumerate([3, 0, 2, 0, -1, 1]):
            tasks.append(asyncio.create_task(pacer.wait(f"r{rank}-{i}@shop.example", rank=rank)))
            await queued(pacer, "x@shop.example", i + 1)
    await asyncio.gather(*tasks)
    assert pacer.passed == [
        "r-1-4@shop.example",
        "r0-1@shop.example",
        "r0-3@shop.example",
        "r1-5@shop.example",
        "r2-2@shop.example",
        "r3-0@shop.example",
    ]


async def test_one_provider_never_waits_behind_another() -> None:
    pacer = Pacer({"google": 1000.0, "microsoft": 1000.0})
    async with pacer._lane("google").turn(0):
        await pacer.wait("ada@outlook.com", rank=3)  # through while Google's lane is held
        await pacer.wait("ada@shop.example", rank=3)  # and any other domain
        assert pacer.contended("bob@gmail.com")
    assert not pacer.contended("bob@gmail.com")
    async with pacer._lane(lane_of("a@one.example")).turn(0):
        await pacer.wait("b@two.example", rank=3)  # two unknown domains: two lanes


async def test_sends_to_one_provider_are_spaced_by_its_rate() -> None:
    pacer = Pacer({"google": 10.0})
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one(i: int) -> None:
        await pacer.wait(f"c{i}@gmail.com", rank=0)
        times.append(loop.time())

    await asyncio.gather(*(one(i) for i in range(6)))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 10 a second: at least ~0.1 s apart (a leaky bucket of one; load only adds to it).
    assert min(gaps) >= 0.09, gaps


async def test_a_send_that_waits_too_long_is_paced_not_dropped() -> None:
    pacer = Pacer({"other": 1000.0}, max_wait=0.2)
    async with pacer._lane(lane_of("ada@shop.example")).turn(0):
        with pytest.raises(Paced, match=r"domain:shop\.example sends are queued"):
            await pacer.wait("ada@shop.example", rank=0)
    assert not pacer.contended("ada@shop.example")  # the timed-out waiter left the queue
    await pacer.wait("ada@shop.example", rank=0)


async def test_a_paced_send_is_retried_with_no_claim_and_sent_once_its_turn_comes(sessions, relay):
    send, pool = activities(sessions, relay)
    send._pacer = Pacer({"other": 1000.0}, max_wait=0.2)
    cid = await customer(sessions)
    req = request(cid)
    try:
        async with send._pacer._lane(lane_of(f"{cid}@example.com")).turn(0):  # a burst
            with pytest.raises(ApplicationError) as paced:
                await attempt(1).run(send.send_step, req)
        again = await attempt(2).run(send.send_step, req)
    finally:
        await pool.close()
    assert paced.value.type == "SendPaced" and not paced.value.non_retryable
    assert again.status == "sent"
    assert list(relay.delivered().values()) == [1]
    found = await row(sessions, req)
    assert found is not None and found.status == "sent" and found.attempt is not None


async def test_when_many_wait_the_customers_who_read_lately_go_first(sessions, relay):
    send, pool = activities(sessions, relay)
    pacer = Recording({"other": 1000.0})
    send._pacer = pacer
    names = ["never", "machine_only", "read_last_week", "read_in_spring"]
    ids = {name: await customer(sessions) for name in names}
    async with sessions.begin() as s:
        for name, cid, days, kind in [
            ("machine_only", ids["machine_only"], 1, "machine"),  # a scanner's: not a person
            ("read_last_week", ids["read_last_week"], 7, "human"),
            ("read_in_spring", ids["read_in_spring"], 200, "human"),
        ]:
            s.add(
                Event(
                    message_id=f"{name}-{uuid.uuid4().hex}",
                    customer_id=cid,
                    name="Email Link Clicked",
                    properties={},
                    occurred_at=utcnow() - timedelta(days=days),
                    engagement_class=kind,
                )
            )
    try:
        async with pacer._lane(lane_of("x@example.com")).turn(0):  # the burst: all queue
            tasks = []
            for i, name in enumerate(names):
                tasks.append(
                    asyncio.create_task(attempt(1).run(send.send_step, request(ids[name])))
                )
                await queued(pacer, "x@example.com", i + 1)
        outcomes = await asyncio.gather(*tasks)
    finally:
        await pool.close()
    assert {o.status for o in outcomes} == {"sent"}
    order = [next(n for n, c in ids.items() if a.startswith(c)) for a in pacer.passed]
    assert order == ["read_last_week", "read_in_spring", "never", "machine_only"]
    assert sorted(relay.delivered().values()) == [1, 1, 1, 1]
