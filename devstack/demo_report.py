"""``make demo-report`` (with ``make run`` up): a few hundred customers walk cart recovery
with half of them held out, in sped-up time (``JOURNEY_SPEEDUP``), some of them read and
click the first reminder, some buy, and the report's address is printed, so a newcomer
sees a lift page in a minute or two.

What it plays, per customer (seeded, so two runs look alike): a profile where it is midday
(quiet hours never hold the demo), a cart of one or two products, and then, once the first
reminder has been decided for everyone: an order from about 35 % of the written-to and
20 % of the held-out customers (the journey's made-up effect). With the local catcher (no
``SMTP_HOST``), about 40 % of the caught first reminders are opened and a third of those
clicked through the API's tracking links, as a person's mail client would, late enough
after delivery for the classifier to take them for a person's (core/engagement.py).

The journey's TOML is not changed: the demo starts its runs with a copy of the journeys
whose cart recovery holds out ``--holdout`` (config is workflow input; the worker's
templates are the same files).
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import random
import re
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from core.engagement import CLICK_PREFETCH_SECONDS, OPEN_PREFETCH_SECONDS
from core.rules import in_holdout
from core.zones import zone_at_local_hour
from settings import ROOT, get_settings
from starter.api import Journeys
from store.db import SessionFactory
from store.models import SendLog

JOURNEY = "cart_recovery"
FIRST_STEP = "reminder_1"
PRODUCTS = [
    {"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "category": "tops"},
    {"sku": "HOOD-2", "name": "Grey hoodie", "price": "49.00", "category": "tops"},
    {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50", "category": "kitchen"},
    {"sku": "CAP-3", "name": "Canvas cap", "price": "15.00", "category": "accessories"},
]
BUYS = {"treated": 0.35, "control": 0.20}  # the made-up effect of being written to
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@dataclass
class Played:
    customers: list[str]
    treated: int = 0
    control: int = 0
    orders: dict[str, int] | None = None  # per group
    opened: int = 0
    clicked: int = 0


def demo_journeys(target: Path, holdout: float, source: Path | None = None) -> Path:
    """A copy of the journey TOMLs and templates at ``target`` whose cart recovery holds
    out ``holdout`` of its customers (the one line changed; the rest as shipped)."""
    source = source or ROOT / "journeys"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
            copy = target / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    toml = target / f"{JOURNEY}.toml"
    text = toml.read_text()
    changed = re.sub(r"(?m)^holdout_share\s*=.*$", f"holdout_share = {holdout!r}", text, count=1)
    if changed == text and "holdout_share" not in text:
        changed = f"holdout_share = {holdout!r}\n" + text
    tomllib.loads(changed)  # still a TOML
    toml.write_text(changed)
    return target


# Longer than the ~60-line guide: one scenario told in order: enter, wait for the first decisions,
# read, buy
async def play(
    journeys: Journeys,
    sessions: SessionFactory,
    *,
    customers: int,
    holdout: float,
    seed: int = 15,
    patience: float = 120.0,
    read: Callable[[list[str]], Awaitable[tuple[int, int]]] | None = None,
    tag: str | None = None,
) -> Played:
    """Customers abandon carts (their cart recovery holds out ``holdout``); once the first
    reminder is decided for all (or ``patience`` seconds passed), ``read`` (if given) opens
    and clicks some of the emails, then some customers order (``BUYS`` per group)."""
    rng = random.Random(seed)
    tag = tag or uuid.uuid4().hex[:6]
    ids = [f"demo-{tag}-{n:04d}" for n in range(customers)]
    limit = asyncio.Semaphore(16)
    carts: dict[str, list[dict[str, Any]]] = {}
    for cid in ids:
        chosen = rng.sample(PRODUCTS, rng.choice((1, 2)))
        carts[cid] = [{**p, "quantity": rng.choice((1, 1, 2))} for p in chosen]

    async def enter(cid: str) -> None:
        async with limit:
            await journeys.customer_upserted(
                {
                    "customer_id": cid,
                    "email": f"{cid}@example.com",
                    "first_name": "Ada",
                    "timezone": zone_at_local_hour(12),
                }
            )
            await journeys.cart_updated({"customer_id": cid, "lines": carts[cid]})

    await asyncio.gather(*(enter(cid) for cid in ids))
    played = Played(customers=ids, orders={"treated": 0, "control": 0})
    for cid in ids:
        if in_holdout(cid, JOURNEY, holdout):
            played.control += 1
        else:
            played.treated += 1
    await _first_step_decided(sessions, ids, patience)
    if read is not None:
        played.opened, played.clicked = await read(ids)

    async def buy(cid: str) -> None:
        group = "control" if in_holdout(cid, JOURNEY, holdout) else "treated"
        if rng.random() >= BUYS[group]:
            return
        assert played.orders is not None
        played.orders[group] += 1
        lines = carts[cid]
        total = sum(float(p["price"]) * int(p["quantity"]) for p in lines)
        async with limit:
            await journeys.order_placed(
                {
                    "customer_id": cid,
                    "order_id": f"{cid}-o1",
                    "total": f"{total:.2f}",
                    "lines": lines,
                }
            )

    await asyncio.gather(*(buy(cid) for cid in ids))
    return played


async def _first_step_decided(sessions: SessionFactory, ids: list[str], patience: float) -> int:
    """Until every customer's first reminder is decided (sent or held out), or patience."""
    deadline = time.monotonic() + patience
    decided = 0
    while time.monotonic() < deadline:
        async with sessions() as s:
            decided = int(
                await s.scalar(
                    select(func.count(func.distinct(SendLog.customer_id))).where(
                        SendLog.customer_id.in_(ids), SendLog.step == FIRST_STEP
                    )
                )
                or 0
            )
        if decided >= len(ids):
            break
        await asyncio.sleep(0.5)
    return decided


def reader(
    base_url: str,
    mails: Callable[[], list[EmailMessage]],
    *,
    seed: int = 15,
    http: httpx.AsyncClient | None = None,
) -> Callable[[list[str]], Awaitable[tuple[int, int]]]:
    """Opens and clicks, through the API's tracking links (under ``base_url``), of the
    caught emails (``mails``) to the demo's customers, as a person's browser does: ~40 %
    opened, a third of those clicked; later than a scanner's fetch at delivery. ``http``:
    the client to fetch with (default: a new one, over the net)."""

    async def read(ids: list[str]) -> tuple[int, int]:
        rng = random.Random(seed)
        wanted = set(ids)
        # a person reads later than a mail scanner fetches (core/engagement.py)
        await asyncio.sleep(max(OPEN_PREFETCH_SECONDS, CLICK_PREFETCH_SECONDS) + 1)
        opened = clicked = 0
        base = re.escape(base_url.rstrip("/"))
        client = http or httpx.AsyncClient(timeout=10)
        person = {"User-Agent": CHROME}
        try:
            for msg in mails():
                to = re.sub(r".*<|>.*", "", str(msg["To"])).split("@")[0]
                if msg["X-Journey"] != f"{JOURNEY}/{FIRST_STEP}" or to not in wanted:
                    continue
                if rng.random() >= 0.4:
                    continue
                html = msg.get_body(preferencelist=("html",))
                content = html.get_content() if html is not None else ""
                pixel = re.search(rf'src="{base}(/t/o/[^"]+)"', content)
                if pixel is None:
                    continue
                await client.get(base_url.rstrip("/") + pixel.group(1), headers=person)
                opened += 1
                link = re.search(rf'href="{base}(/t/c/[^"]+)"', content)
                if link is not None and rng.random() < 1 / 3:
                    await client.get(
                        base_url.rstrip("/") + link.group(1),
                        headers=person,
                        follow_redirects=False,
                    )
                    clicked += 1
        finally:
            if http is None:
                await client.aclose()
        return opened, clicked

    return read


def _caught(maildir: Path) -> list[EmailMessage]:
    """The local catcher's mail (``make run`` keeps every message in its Maildir)."""
    if not (maildir / "new").is_dir():
        return []
    box = mailbox.Maildir(str(maildir), create=False)
    return [message_from_bytes(m.as_bytes(), policy=policy.default) for m in box]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo_report", description=__doc__)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--holdout", type=float, default=0.5)
    args = parser.parse_args(argv)
    from starter import report_snapshots
    from starter.client import connect
    from store.db import engine_for, make_session_factory

    settings = get_settings()
    copy = demo_journeys(ROOT / "var" / "demo-report-journeys", args.holdout)
    settings = settings.model_copy(update={"journeys_dir": copy})
    engine = engine_for(settings)
    sessions = make_session_factory(engine)
    try:
        journeys = Journeys(client=await connect(settings), sessions=sessions, settings=settings)
        async with journeys:
            print(
                f"{args.customers} customers abandon carts; cart recovery holds out"
                f" {args.holdout:.0%} (JOURNEY_SPEEDUP={settings.journey_speedup:g}) ..."
            )
            read = (
                reader(settings.public_base_url, lambda: _caught(settings.catcher_maildir))
                if settings.embedded_smtp
                else None
            )
            played = await play(
                journeys, sessions, customers=args.customers, holdout=args.holdout, read=read
            )
        # the pages serve the report's snapshot (up to REPORT_MAX_AGE_SECONDS old): keep
        # one computed now, with what was just played
        await report_snapshots.refresh(sessions, every=0)
    finally:
        await engine.dispose()
    assert played.orders is not None
    print(
        f"written to {played.treated}, held out {played.control}; orders: "
        f"{played.orders['treated']} written to, {played.orders['control']} held out; "
        f"{played.opened} reminders opened, {played.clicked} clicked"
    )
    url = f"{settings.public_base_url.rstrip('/')}/reports/{JOURNEY}"
    print(f"\nthe report: {url}")
    print(f"as JSON:    {settings.public_base_url.rstrip('/')}/v1/reports/journeys/{JOURNEY}")
    # as printed, in a fresh shell: the venv's python, and the environment make set for us
    env = f"ENVIRONMENT={settings.environment} " if settings.environment != "production" else ""
    print(f"in a terminal: {env}.venv/bin/python -m starter report --journey {JOURNEY}")
    print(await _login_hint(settings.public_base_url), file=sys.stderr)
    return 0


async def _login_hint(base_url: str) -> str:
    """What the API says about its operator login (the pages ask for it)."""
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{base_url.rstrip('/')}/v1/reports/journeys")
        detail = str(answer.json().get("detail", ""))
    except (httpx.HTTPError, ValueError):
        return f"the API at {base_url} did not answer: is `make run` up?"
    if "ADMIN_PASSWORD" in detail:
        return (
            "the API has no operator login: restart it with ADMIN_PASSWORD set"
            " (e.g. ADMIN_PASSWORD=demo-password make run); the user is ADMIN_USER (admin)"
        )
    return "log in with the API's ADMIN_USER (default admin) and ADMIN_PASSWORD"


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
