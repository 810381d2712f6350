"""What the fault suite does to the stack while journeys run, one fault per scenario, and
what it counts afterwards. Each scenario runs its own customers through cart recovery (five
emails each) on the same stack, so its figures are its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from core.ids import workflow_id
from faults.stack import FaultStack

STEPS = {  # cart recovery's steps and their delays (journeys/cart_recovery.toml), seconds
    "reminder_1": 3600,
    "reminder_2": 2 * 86400,
    "reminder_3": 3 * 86400,
    "reminder_4": 5 * 86400,
    "discount": 7 * 86400,
}
LATE_AFTER = 180.0  # seconds after its due time that a delivery counts as late
WRITE_KEY = "dev-write-key"


@dataclass
class Figures:
    scenario: str
    journeys: int
    expected: int
    delivered: int
    duplicated: int
    uncertain: int
    lost: int
    suppressed_by_mistake: int
    late: int
    not_completed: int
    seconds: float
    unresolved: int = 0  # rows still ``sending`` at the end: a claim nobody finished
    window_ms: list[float] = field(default_factory=list)  # reply-to-commit of every send

    def meets_targets(self) -> bool:
        return (
            self.duplicated == 0
            and self.lost == 0
            and self.unresolved == 0
            and self.suppressed_by_mistake == 0
            and self.not_completed == 0
            and self.uncertain <= 0.002 * self.expected + 1e-9
        )


Fault = Callable[[FaultStack], Awaitable[None]]


async def worker_sigkill(stack: FaultStack, times: int = 9, every: float = 6.0) -> None:
    for _ in range(times):
        await asyncio.sleep(every)
        await stack.restart("worker")


# Each fault begins a few seconds after the last journey entered and lasts across the time
# reminder_2 is due (day 2: ~17 s after entering at the default speedup), so it meets sends.


async def temporal_sigkill(stack: FaultStack) -> None:
    await asyncio.sleep(14)
    stack.procs["temporal"].kill()
    await asyncio.sleep(5)
    stack.procs["temporal"].start()
    stack.client = await stack.connect()


async def smtp_refuses(stack: FaultStack, seconds: float = 12) -> None:
    await asyncio.sleep(10)
    stack.relay.mode.refusing = True  # new connections reset at once, idle ones closed
    stack.relay.hang_up_idle()
    await asyncio.sleep(seconds)
    stack.relay.mode.refusing = False


async def drop_after_dot(stack: FaultStack) -> None:
    stack.relay.mode.drop_after_dot = 5


async def drop_after_250(stack: FaultStack) -> None:
    stack.relay.mode.drop_after_250 = 5


async def database_down(stack: FaultStack, seconds: float = 30) -> None:
    await asyncio.sleep(5)
    await stack.cut_database()
    await asyncio.sleep(seconds)
    await stack.cut_database(False)


async def relay_denied(stack: FaultStack, seconds: float = 20) -> None:
    await asyncio.sleep(2)
    stack.relay.mode.rcpt_reply = "554 5.7.1 Relay access denied"
    await asyncio.sleep(seconds)
    stack.relay.mode.rcpt_reply = None


async def auth_fails(stack: FaultStack, seconds: float = 20) -> None:
    await asyncio.sleep(2)
    stack.relay.mode.auth_fails = True
    # The worker's pooled connections logged in before: the relay closes the idle ones, so
    # new ones must log in (restarting the worker instead delayed its runs past the fault).
    stack.relay.hang_up_idle()
    await asyncio.sleep(seconds)
    stack.relay.mode.auth_fails = False


SCENARIOS: dict[str, Fault] = {
    "worker SIGKILL x9": worker_sigkill,
    "Temporal server SIGKILL": temporal_sigkill,
    "SMTP refuses 12 s": smtp_refuses,
    "drop after the dot": drop_after_dot,
    "drop after the 250": drop_after_250,
    "database down 30 s": database_down,
    "554 5.7.1 relay denied": relay_denied,
    "535 auth failure": auth_fails,
}


async def feed(
    stack: FaultStack, customers: list[str], zone: str, api_url: str | None = None
) -> dict[str, float]:
    """Each customer through the HTTP API as a shop would: identify, then Checkout Started.
    Retried until accepted (the API answers 503 while a part is down). ``api_url``: which
    API process (default the first)."""
    entered: dict[str, float] = {}
    base_url = api_url or stack.api_url
    async with httpx.AsyncClient(base_url=base_url, auth=(WRITE_KEY, ""), timeout=30) as http:

        async def one(cid: str) -> None:
            body = {
                "batch": [
                    {
                        "type": "identify",
                        "userId": cid,
                        "messageId": f"id-{cid}",
                        "traits": {
                            "email": f"{cid}@example.com",
                            "firstName": "Ada",
                            "timezone": zone,
                        },
                    },
                    {
                        "type": "track",
                        "userId": cid,
                        "messageId": f"cart-{cid}",
                        "event": "Checkout Started",
                        "properties": {
                            "products": [{"sku": "TEE-1", "name": "Tee", "price": 19.9}],
                            "checkout_url": f"https://shop.test/checkout/{cid}",
                        },
                    },
                ]
            }
            for _ in range(120):
                try:
                    answer = await http.post("/v1/batch", json=body)
                    if answer.status_code == 200:
                        entered[cid] = time.time()
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1)
            raise RuntimeError(f"the API never accepted {cid}")

        limit = asyncio.Semaphore(10)

        async def limited(cid: str) -> None:
            async with limit:
                await one(cid)

        await asyncio.gather(*(limited(c) for c in customers))
    return entered


async def wait_closed(stack: FaultStack, customers: list[str], seconds: float) -> dict[str, str]:
    """Each customer's cart-recovery run status once all are closed (or the time is up)."""
    deadline = time.monotonic() + seconds
    status: dict[str, str] = {}
    while True:
        for cid in customers:
            if status.get(cid, "RUNNING") != "RUNNING":
                continue
            try:
                assert stack.client is not None
                desc = await stack.client.get_workflow_handle(
                    workflow_id("cart_recovery", cid)
                ).describe()
                status[cid] = desc.status.name if desc.status else "UNKNOWN"
                if desc.status == WorkflowExecutionStatus.RUNNING:
                    status[cid] = "RUNNING"
            except (RPCError, RuntimeError):
                status.setdefault(cid, "RUNNING")
        if all(s != "RUNNING" for s in status.values()) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(2)


async def measure(
    stack: FaultStack,
    name: str,
    entered: dict[str, float],
    status: dict[str, str],
    seconds: float,
) -> Figures:
    customers = list(entered)
    conn = await asyncpg.connect(stack.direct_dsn)
    try:
        rows = await conn.fetch(
            "SELECT customer_id, step, status, message_id FROM send_log"
            " WHERE customer_id = ANY($1)",
            customers,
        )
        suppressed = await conn.fetchval(
            "SELECT count(*) FROM suppressions WHERE customer_id = ANY($1)", customers
        )
    finally:
        await conn.close()
    copies = stack.relay.counts()
    arrivals: dict[str, float] = {}
    for d in stack.relay.deliveries:
        arrivals.setdefault(d.message_id, d.at)
    by_step = {(r["customer_id"], r["step"]): r for r in rows}
    delivered = duplicated = uncertain = lost = late = unresolved = 0
    for cid in customers:
        for step, delay in STEPS.items():
            row = by_step.get((cid, step))
            mid: str | None = row["message_id"] if row is not None else None
            n = copies.get(mid, 0) if mid else 0
            # A claim nobody finished is no recorded outcome, whether or not the mail arrived.
            unresolved += row is not None and row["status"] == "sending"
            if mid and n:
                delivered += 1
                duplicated += n - 1
                due = entered[cid] + delay / stack.speedup
                late += arrivals[mid] - due > LATE_AFTER
            elif row is not None and row["status"] == "uncertain":
                uncertain += 1  # not delivered, and on record as "maybe"
            elif row is None or row["status"] in ("sent", "sending"):
                lost += 1  # meant to go, and no reason on record why it did not
    return Figures(
        scenario=name,
        journeys=len(customers),
        expected=len(customers) * len(STEPS),
        delivered=delivered,
        duplicated=duplicated,
        uncertain=uncertain,
        lost=lost,
        suppressed_by_mistake=int(suppressed or 0),
        late=late,
        not_completed=sum(1 for s in status.values() if s != "COMPLETED"),
        seconds=seconds,
        unresolved=unresolved,
    )
