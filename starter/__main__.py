"""Command line for the same calls a shop backend makes, plus the caught-mail inbox.

python -m starter customer ID EMAIL [--first-name N] [--last-name N] [--timezone TZ]
python -m starter cart ID --item SKU:NAME:PRICE[:QTY] ... [--checkout-url URL]
python -m starter order ID ORDER_ID --total 12.50
python -m starter schedule [--trigger]
python -m starter mail [--show N]
python -m starter demo [--email E]
python -m starter report [--journey J] [--since DATE] [--windows 2d,10d,30d] [--format F]
python -m starter journeys|explain ID
python -m starter cancel ID [--journey J]
python -m starter pause|resume (--customer ID | --journey J) [--reason R]
python -m starter preview JOURNEY STEP --customer ID [--out DIR] [--open] [--send-to ADDRESS]

A journey is named as in its TOML (``cart_recovery``) or as in workflow ids
(``cart-recovery``). Exit codes: 0 done; 1 nothing matched (no running run to cancel or
pause); 2 bad input (an unknown journey or customer, a bad value: the valid names are
listed); 69 Temporal or the store is unreachable (one line says which and what to do, as
sysexits' EX_UNAVAILABLE); 130 interrupted; 141 the reader of the output went away
(``explain c-42 | head``).

Longer than the ~400-line guide, on purpose: one short function per subcommand beside the
parser and the dispatch table, so a command's flags and its code are read together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mailbox
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from temporalio.service import RPCError, RPCStatusCode

from core.lifecycle import load_lifecycle
from core.zones import zone_at_local_hour
from journeys.config import JourneyConfigError
from settings import Settings, get_settings
from starter import ops, preview, reports
from starter.api import Journeys
from starter.client import connect
from starter.ingest.service import EventResult, UnknownCustomer
from starter.schedule import SCHEDULE_ID, ensure_daily_sweep
from store import repo
from store.db import engine_for, make_session_factory

EX_NOTHING = 1  # nothing matched: no running run to cancel or pause
EX_USAGE = 2  # bad input, as argparse's own errors
EX_UNAVAILABLE = 69  # sysexits.h: a service the command needs is unreachable
EX_INTERRUPTED = 130
EX_PIPE = 141  # 128 + SIGPIPE: what a tool killed by a closed pipe exits with


class NothingMatched(Exception):
    """The command was valid but found nothing to act on (exit 1)."""


def _item(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"--item {text!r}: expected SKU:NAME:PRICE[:QTY]")
    line: dict[str, Any] = {"sku": parts[0], "name": parts[1], "price": parts[2]}
    if len(parts) == 4:
        line["quantity"] = parts[3]
    return line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m starter", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("customer", help="record or update a customer's profile")
    c.add_argument("customer_id")
    c.add_argument("email")
    c.add_argument("--first-name")
    c.add_argument("--last-name")
    c.add_argument("--timezone")
    k = sub.add_parser("cart", help="the customer's cart changed (no --item: emptied)")
    k.add_argument("customer_id")
    k.add_argument(
        "--item", action="append", type=_item, default=[], metavar="SKU:NAME:PRICE[:QTY]"
    )
    k.add_argument("--checkout-url")
    k.add_argument("--currency", default="EUR")
    k.add_argument("--message-id")
    o = sub.add_parser("order", help="the customer placed an order")
    o.add_argument("customer_id")
    o.add_argument("order_id")
    o.add_argument("--total", required=True)
    o.add_argument("--currency", default="EUR")
    j = sub.add_parser("journeys", help="a customer's journey runs and where they stand")
    j.add_argument("customer_id")
    e = sub.add_parser("explain", help="why a customer got (or did not get) each email")
    e.add_argument("customer_id")
    c2 = sub.add_parser("cancel", help="cancel a customer's running journeys")
    c2.add_argument("customer_id")
    c2.add_argument("--journey", help="only this journey (e.g. cart_recovery)")
    for verb in ("pause", "resume"):
        p2 = sub.add_parser(verb, help=f"{verb} a customer's journeys, or a whole journey")
        target = p2.add_mutually_exclusive_group(required=True)
        target.add_argument("--customer", help="this customer's running journeys")
        target.add_argument("--journey", help="every run of this journey, and new ones")
        p2.add_argument("--reason", default="operator")
    sc = sub.add_parser("schedule", help="create or update the daily sweep's schedule")
    sc.add_argument("--trigger", action="store_true", help="and run the sweep now")
    m = sub.add_parser("mail", help="list mail caught by the local SMTP catcher")
    m.add_argument("--show", type=int, metavar="N", help="print message N in full (text part)")
    t = sub.add_parser("sms", help="list texts caught by the local SMS catcher")
    t.add_argument("--show", type=int, metavar="N", help="print text N in full")
    d = sub.add_parser("demo", help="a customer abandons a cart; wait for the email in the catcher")
    d.add_argument("--email", default=None)
    d.add_argument("--timeout", type=float, default=60.0)
    reports.add_command(sub)
    preview.add_command(sub)  # needs the store only
    return p


def _caught(maildir: Path) -> list[EmailMessage]:
    if not (maildir / "new").is_dir():
        return []
    box = mailbox.Maildir(str(maildir), create=False)
    msgs = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in box]
    return sorted(msgs, key=lambda m: (parsedate_to_datetime(m["Date"]), str(m["Message-ID"])))


SHOWN_HEADERS = (
    "Date",
    "From",
    "To",
    "Subject",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "X-Journey",
)


def list_mail(settings: Settings, show: int | None) -> int:
    msgs = _caught(settings.catcher_maildir)
    if show is not None:
        if not 1 <= show <= len(msgs):
            print(f"no message {show}; there are {len(msgs)}", file=sys.stderr)
            return 2
        msg = msgs[show - 1]
        for header in SHOWN_HEADERS:
            print(f"{header}: {str(msg[header] or '').strip()}")  # unfolded, one space
        body = msg.get_body(preferencelist=("plain",))
        print()
        print(body.get_content() if body is not None else "(no text part)")
        return 0
    if not msgs:
        print(f"no mail in {settings.catcher_maildir}")
        return 0
    for n, msg in enumerate(msgs, 1):
        journey = msg["X-Journey"] or ""
        print(f"{n:4}  {msg['Date']}  {msg['To']!s:40.40}  {journey:28}  {msg['Subject']}")
    return 0


def list_texts(settings: Settings, show: int | None) -> int:
    """The texts the local SMS catcher kept (``SMS_CATCHER_DIR/messages.jsonl``)."""
    kept = settings.sms_catcher_dir / "messages.jsonl"
    lines = kept.read_text(encoding="utf-8").splitlines() if kept.is_file() else []
    texts = [json.loads(line) for line in lines if line.strip()]
    if show is not None:
        if not 1 <= show <= len(texts):
            print(f"no text {show}; there are {len(texts)}", file=sys.stderr)
            return 2
        text = texts[show - 1]
        for key in ("date_created", "from", "to", "sid", "num_segments", "encoding"):
            print(f"{key}: {text.get(key)}")
        print()
        print(text.get("body", ""))
        return 0
    if not texts:
        print(f"no texts in {kept}")
        return 0
    for n, text in enumerate(texts, 1):
        body = " ".join(str(text.get("body", "")).split())
        print(f"{n:4}  {text.get('date_created')}  {text.get('to')!s:16}  {body:.80}")
    return 0


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = engine_for(settings)
    journeys: Journeys | None = None
    try:
        journeys = Journeys(
            client=await connect(settings), sessions=make_session_factory(engine), settings=settings
        )
        command = _COMMANDS.get(args.command)
        return 0 if command is None else await command(journeys, args, settings)
    finally:
        if journeys is not None:  # what it did not deliver stays for the API's relay
            await journeys.close()
        await engine.dispose()


async def _customer(journeys: Journeys, args: argparse.Namespace, _: Settings) -> int:
    await journeys.customer_upserted(
        {
            "customer_id": args.customer_id,
            "email": args.email,
            "first_name": args.first_name,
            "last_name": args.last_name,
            "timezone": args.timezone,
        }
    )
    print(f"customer {args.customer_id} recorded")
    return 0


async def _cart(journeys: Journeys, args: argparse.Namespace, _: Settings) -> int:
    event: dict[str, Any] = {
        "customer_id": args.customer_id,
        "lines": args.item,
        "currency": args.currency,
    }
    if args.checkout_url:
        event["checkout_url"] = args.checkout_url
    if args.message_id:
        event["message_id"] = args.message_id
    print(_said(await journeys.cart_updated(event)))
    return 0


async def _order(journeys: Journeys, args: argparse.Namespace, _: Settings) -> int:
    result = await journeys.order_placed(
        {
            "customer_id": args.customer_id,
            "order_id": args.order_id,
            "total": args.total,
            "currency": args.currency,
        }
    )
    print(_said(result))
    return 0


async def _unknown_customer(journeys: Journeys, customer_id: str) -> ops.UnknownName | None:
    """The error for a customer with neither a profile in the store nor a journey run."""
    async with journeys.sessions() as s:
        if await repo.get_customer(s, customer_id=customer_id) is not None:
            return None
    if await ops.customer_runs(journeys.client, customer_id, with_state=False):
        return None
    return ops.UnknownName(
        f"unknown customer {customer_id!r}: no profile in the store and no journey run "
        "(customers are recorded by identify, or `uv run python -m starter customer ID EMAIL`)"
    )


async def _nothing_running(
    journeys: Journeys, customer_id: str, journey: str | None, verb: str
) -> Exception:
    """Why nothing was cancelled or paused: an unknown customer, or which runs they have."""
    unknown = await _unknown_customer(journeys, customer_id)
    if unknown is not None:
        return unknown
    running = await ops.customer_runs(
        journeys.client, customer_id, running_only=True, with_state=False
    )
    names = ", ".join(sorted({r.journey for r in running})) or "none"
    what = f"running {journey} run" if journey else "running journey"
    return NothingMatched(
        f"nothing to {verb}: customer {customer_id!r} has no {what} (running: {names})"
    )


async def _journeys(journeys: Journeys, args: argparse.Namespace, _: Settings) -> int:
    runs = await ops.customer_runs(journeys.client, args.customer_id)
    if not runs and (unknown := await _unknown_customer(journeys, args.customer_id)):
        raise unknown
    print_runs(runs)
    return 0


async def _explain(journeys: Journeys, args: argparse.Namespace, settings: Settings) -> int:
    lifecycle = load_lifecycle(settings.journeys_dir)  # the shop's touch budgets
    x = await ops.explain(journeys.sessions, journeys.client, args.customer_id, lifecycle=lifecycle)
    if not x.known:
        raise await _unknown_customer(journeys, args.customer_id) or ops.UnknownName(
            f"unknown customer {args.customer_id!r}"
        )
    print_explanation(x)
    return 0


async def _cancel(journeys: Journeys, args: argparse.Namespace, settings: Settings) -> int:
    journey = ops.journey_name(args.journey, settings.journeys_dir) if args.journey else None
    ids = await ops.cancel(journeys.client, args.customer_id, journey)
    if not ids:
        raise await _nothing_running(journeys, args.customer_id, journey, "cancel")
    print(f"cancelled {len(ids)} run(s): {', '.join(ids)}")
    return 0


async def _pause_or_resume(journeys: Journeys, args: argparse.Namespace, settings: Settings) -> int:
    paused = args.command == "pause"
    if args.customer:
        ids = await ops.pause_customer(
            journeys.client, args.customer, paused=paused, reason=args.reason
        )
        if not ids:
            raise await _nothing_running(journeys, args.customer, None, args.command)
        print(f"{args.command}d {len(ids)} run(s): {', '.join(ids)}")
        return 0
    args.journey = ops.journey_name(args.journey, settings.journeys_dir)
    woken = await ops.pause_journey(
        journeys.sessions, journeys.client, args.journey, paused=paused, reason=args.reason
    )
    print(
        f"journey {args.journey} {args.command}d"
        + ("" if paused else f"; {woken} running run(s) woken")
    )
    return 0


async def _schedule(journeys: Journeys, args: argparse.Namespace, settings: Settings) -> int:
    done = await ensure_daily_sweep(
        journeys.client,
        journeys,
        settings.temporal_task_queue,
        lifecycle=load_lifecycle(settings.journeys_dir),
    )
    print(f"schedule {SCHEDULE_ID!r} {done}")
    if args.trigger:
        await journeys.client.get_schedule_handle(SCHEDULE_ID).trigger()
        print("triggered: the sweep runs now (see Schedules in the Temporal UI)")
    return 0


async def _demo(journeys: Journeys, args: argparse.Namespace, settings: Settings) -> int:
    cid = f"demo-{uuid.uuid4().hex[:6]}"
    email = args.email or f"{cid}@example.com"
    first_delay = journeys.config("cart_recovery").steps[0].after
    # A customer for whom it is midday now, so quiet hours (21:00-08:00 local) never hold
    # the demo's email, whenever it runs.
    await journeys.customer_upserted(
        {
            "customer_id": cid,
            "email": email,
            "first_name": "Ada",
            "timezone": zone_at_local_hour(12),
        }
    )
    result = await journeys.cart_updated(
        {
            "customer_id": cid,
            "checkout_url": f"{settings.shop_url}/checkout/{cid}",  # the storefront's
            "lines": [
                {
                    "sku": "TEE-1",
                    "name": "Blue T-shirt",
                    "price": "19.90",
                    "quantity": 2,
                    "url": f"{settings.shop_url}/p/tee-1",
                    "image_url": f"{settings.shop_url}/img/tee-1.jpg",
                },
                {"sku": "MUG-7", "name": "Coffee mug", "price": "8.50"},
            ],
        }
    )
    print(f"customer {cid} <{email}> abandoned a cart: journey {result.workflow_id}")
    print(f"first reminder due in {first_delay} (JOURNEY_SPEEDUP={settings.journey_speedup:g})")
    if not settings.embedded_smtp:
        print(f"mail goes to the relay {settings.smtp_host}:{settings.smtp_port}; look there")
        return 0
    deadline = time.monotonic() + max(args.timeout, first_delay.total_seconds() + 30)
    while time.monotonic() < deadline:
        for n, msg in enumerate(_caught(settings.catcher_maildir), 1):
            if email in str(msg["To"]):
                print(f"caught: {msg['Subject']!r} (make mail SHOW={n})\n")
                body = msg.get_body(preferencelist=("plain",))
                print(body.get_content() if body is not None else "")
                return await _demo_text(journeys, cid, settings, deadline)
        await asyncio.sleep(0.5)
    print("no email yet: is `make run` up? (worker log: var/worker.log)", file=sys.stderr)
    return 1


async def _demo_text(journeys: Journeys, cid: str, settings: Settings, deadline: float) -> int:
    """Then the customer gives a number with SMS consent and orders: the new-customer
    nurture's thank-you goes out as an email and a text, which the local SMS catcher keeps."""
    if settings.sms_provider != "local" or settings.twilio_base_url:
        return 0
    phone = f"+49151{uuid.uuid4().int % 10**8:08d}"
    await journeys.identify(customer_id=cid, traits={"phone": phone, "smsConsent": True})
    await journeys.order_placed(
        {
            "customer_id": cid,
            "order_id": f"o-{cid}",
            "total": "39.80",
            "lines": [{"sku": "TEE-1", "name": "Blue T-shirt", "price": "19.90", "quantity": 2}],
        }
    )
    print(f"\n{cid} ({phone}, SMS consent) ordered: the thank-you goes out as a text too")
    kept = settings.sms_catcher_dir / "messages.jsonl"
    while time.monotonic() < deadline + 30:
        lines = kept.read_text(encoding="utf-8").splitlines() if kept.is_file() else []
        for n, line in enumerate(lines, 1):
            text = json.loads(line)
            if text.get("to") == phone:
                print(f"caught text (make sms SHOW={n}):\n\n{text.get('body')}")
                return 0
        await asyncio.sleep(0.5)
    print("no text yet: see var/worker.log and var/sms_catcher.log", file=sys.stderr)
    return 1


Command = Callable[[Journeys, argparse.Namespace, Settings], Awaitable[int]]

# The subcommands that talk to the store and Temporal ("mail" and "report" need neither).
_COMMANDS: dict[str, Command] = {
    "customer": _customer,
    "cart": _cart,
    "order": _order,
    "journeys": _journeys,
    "explain": _explain,
    "cancel": _cancel,
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "schedule": _schedule,
    "demo": _demo,
}


def print_runs(runs: list[ops.Run]) -> None:
    if not runs:
        print("no journey runs for this customer")
    for run in runs:
        line = f"{run.started:%Y-%m-%d %H:%M}  {run.status:10} {run.workflow_id:45} {run.step}"
        if run.outcome:
            line += f"  -> {run.outcome}"
        if run.state is not None and run.state.next_at is not None:
            line += f"  (next: {run.state.next_step} at {run.state.next_at:%Y-%m-%d %H:%M} UTC)"
        if run.state is not None and run.state.paused:
            line += f"  [paused: {run.state.paused}]"
        print(line)


def print_explanation(x: ops.Explanation) -> None:
    c = x.customer
    if c is None:
        print("customer: no profile in the store (its runs are below)")
    else:
        print(f"customer {c.id} <{c.email}>  time zone {c.timezone}  orders {c.order_count}")
        consent = "subscribed" if c.subscribed else "UNSUBSCRIBED from all marketing email"
        if c.subscribed and x.opted_out:
            consent += f", except the journeys they left: {', '.join(x.opted_out)}"
        print(f"marketing email: {consent}", end="")
        print(f"; suppressed: {x.suppression}" if x.suppression else "")
    if x.consent is not None:
        print(ops.consent_line(x.consent))
    for pause in x.journey_pauses:
        why = f" ({pause.reason})" if pause.reason else ""
        print(
            f"journey {pause.journey} PAUSED since {pause.paused_at:%Y-%m-%d %H:%M} UTC{why}: "
            "its sends are held"
        )
    if x.runs:
        print("\nruns (where each one is):")
    for run in x.runs:
        line = f"  {run.started:%Y-%m-%d %H:%M}  {run.status:10} {run.workflow_id:45} {run.step}"
        if run.outcome:
            line += f"  -> {run.outcome}"
        if run.state is not None and run.state.paused:
            line += f"  [customer paused: {run.state.paused}]"
        print(line)
    for line in x.lifecycle.lines() if x.lifecycle else []:
        print(line)
    print("\nsend decisions (journey clock):")
    for row in x.sends:
        why = f"  {row.reason}" if row.reason else ""
        print(
            f"  {row.decided_at:%Y-%m-%d %H:%M}  {row.journey:22} {row.step:22} {row.status:9}{why}"
        )
    if x.uncertain:
        print(
            f"  ({len(x.uncertain)} uncertain: the final dot went out and no reply was recorded; "
            "the customer may have it; not sent again unless the journey says on_uncertain = "
            '"resend")'
        )
    for held in x.held:
        when = f"{held['at']:%Y-%m-%d %H:%M}"
        print(f"  {when}  {held['journey']:22} {held['step']:22} deferred  {held['reason']}")
    if x.engagement:
        print("\nopens and clicks (a machine's is kept, never counted):")
    for e in x.engagement:
        print(f"  {ops.engagement_line(e)}")
    if x.branches:
        print("\nbranches taken:")
    for b in x.branches:
        print(
            f"  {b.decided_at:%Y-%m-%d %H:%M}  {b.journey:22} {b.name:22} {b.value:12}  {b.reason}"
        )


def _said(result: EventResult) -> str:
    return f"{'duplicate, ignored' if result.duplicate else result.action}: {result.workflow_id}"


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "mail":
        return list_mail(settings, args.show)
    if args.command == "sms":
        return list_texts(settings, args.show)
    if args.command == "report":
        if args.journey:
            args.journey = ops.journey_name(args.journey, settings.journeys_dir)
        return asyncio.run(reports.run_command(args, settings))
    if args.command == "preview":
        return asyncio.run(preview.run_command(args, settings))
    return asyncio.run(_run(args, settings))


def _reason(exc: BaseException) -> str:
    """A few words for why a connection failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = f"{exc} {exc.__cause__ or ''}".lower()
    for needle, words in (
        ("refused", "connection refused"),
        ("name or service not known", "host name not found"),
        ("dns", "host name not found"),
        ("timed out", "timed out"),
        ("deadline", "timed out"),
        ("certificate", "TLS certificate rejected"),
        ("tls", "TLS handshake failed"),
        ("password authentication", "password rejected"),
        ("does not exist", "database does not exist"),
    ):
        if needle in text:
            return words
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:120]


def unreachable(exc: BaseException, settings: Settings) -> str | None:
    """One line naming the part that could not be reached and what to do, or None when
    ``exc`` is not about reaching Temporal or the store."""
    if (isinstance(exc, RuntimeError) and "client connect" in str(exc)) or (
        isinstance(exc, RPCError)
        and exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    ):
        fix = (
            "start the stack with `make run` (in another terminal)"
            if settings.embedded_temporal
            else "check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the TEMPORAL_TLS_* / "
            "TEMPORAL_API_KEY settings"
        )
        return f"Temporal is unreachable at {settings.temporal_target} ({_reason(exc)}): {fix}"
    store = make_url(settings.database_url).render_as_string(hide_password=True)
    if isinstance(exc, DBAPIError) and "no such table" in str(exc):
        return f"the store {store} has no tables: run `make migrate` (`make run` does it)"
    if isinstance(exc, DBAPIError | OSError):  # OSError: asyncpg's refused connection
        return (
            f"the store is unreachable at {store} ({_reason(exc)}): start the database, "
            "or set DATABASE_URL (`make run` uses SQLite under var/)"
        )
    return None


def _quiet_stdout() -> None:
    """The reader went away: point stdout at /dev/null so the interpreter's last flush
    does not complain (the pattern in Python's signal module docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    try:
        code = _dispatch(args, settings)
        sys.stdout.flush()  # here, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EX_PIPE
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except ValidationError as exc:
        for err in exc.errors():
            print(f"error: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return EX_USAGE
    except (UnknownCustomer, JourneyConfigError, ops.UnknownName) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_USAGE
    except NothingMatched as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_NOTHING
    except Exception as exc:
        said = unreachable(exc, settings)
        if said is None:
            raise
        print(f"error: {said}", file=sys.stderr)
        return EX_UNAVAILABLE


def _exit(code: int) -> None:
    """Exit without the interpreter's finalization: after a failed connect the Temporal
    SDK's runtime thread can abort it ("PyGILState_Release: thread state ... must be
    current"), turning a clean error into exit 134. Output is flushed first."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
