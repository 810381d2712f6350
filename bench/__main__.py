"""``python -m bench [--size smoke|full] [--db sqlite|postgres] [--json FILE]``

Starts its own Temporal dev server, SMTP catcher, store database, journey worker, floor worker
and HTTP API; measures; prints one Markdown table (BENCHMARKS.md explains every row).
``smoke`` takes seconds and only proves the benchmark still runs; ``full`` is what
BENCHMARKS.md reports (``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import phases
from bench import sweep as sweep_bench
from bench.report import ROW_IDS, Row, markdown, write_json
from bench.stack import bench_stack, cpu_seconds, dev_server_pid, rss_mib


@dataclass(frozen=True)
class Size:
    entries: int  # (1) customers entering, and as many bare floor workflows
    concurrency: int  # (1) starter calls in flight
    latency_seconds: float  # (2) how long the steady rate is held
    latency_max_events: int
    purchases: int  # (3)
    purchase_rate: float
    sends: int  # (4) per variant
    footprint: tuple[int, ...]  # (6) sleeping runs, cumulative
    footprint_settle: float
    history_7_days_in: float  # (6) seconds the full 7-day path takes when sped up
    patience: float  # the longest any one wait may take, seconds
    sweep_customers: tuple[int, ...] = (2_000,)  # (5) generated customers, PostgreSQL
    sweep_every: int = 100  # 1 in this many is a lapsed repeat customer
    sweep_start_cap: int = 20  # runs started to measure the start rate


SIZES = {
    "smoke": Size(
        entries=20,
        concurrency=8,
        latency_seconds=2,
        latency_max_events=20,
        purchases=10,
        purchase_rate=20,
        sends=40,
        footprint=(50, 150),
        footprint_settle=0.5,
        history_7_days_in=1.5,
        patience=60,
    ),
    "full": Size(
        entries=1000,
        concurrency=64,
        latency_seconds=60,
        latency_max_events=6000,
        purchases=200,
        purchase_rate=20,
        sends=2000,
        footprint=(10_000, 20_000),
        footprint_settle=10,
        history_7_days_in=5,
        patience=900,
        sweep_customers=(100_000, 1_000_000),
        sweep_start_cap=1000,
    ),
}


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def _x(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.nan


async def run(size: Size, *, db: str, keep: bool) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    run_tag = f"{int(time.time()) % 100000}"

    async def phase(name: str, body: Callable[[], Awaitable[None]]) -> None:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            await body()
        except Exception as exc:  # one broken phase must not hide the others
            failures.append(f"{name}: {exc!r}")
            traceback.print_exc()
        print(f"[bench] {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

    async with bench_stack(db=db, keep=keep) as stack:
        if keep:
            print(f"[bench] keeping {stack.workdir}", file=sys.stderr)
        entry_rate = 0.0
        closed_run: list[str] = []

        async def warm_up() -> None:
            for measure in (phases.entry_throughput, phases.floor_throughput):
                got = await measure(stack, n=5, concurrency=5, tag=f"warm{run_tag}", seconds=60)
                if got.done != got.n:
                    raise RuntimeError(f"warm-up: {got.done} of {got.n} done ({measure.__name__})")

        async def entry() -> None:
            nonlocal entry_rate
            n, c = size.entries, size.concurrency
            server = dev_server_pid()
            pids = {
                "server": server or 0,
                "worker": stack.worker.pid,
                "floor worker": stack.floor_worker.pid,
                "starter+catcher": os.getpid(),
            }
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
            floor = await phases.floor_throughput(
                stack, n=n, concurrency=c, tag=f"floor-{run_tag}", seconds=size.patience
            )
            cpu1 = {k: cpu_seconds(p) for k, p in pids.items() if p}
            journeys = await phases.entry_throughput(
                stack, n=n, concurrency=c, tag=f"tp-{run_tag}", seconds=size.patience
            )
            cpu2 = {k: cpu_seconds(p) for k, p in pids.items() if p}

            def per_1000(a: dict[str, float], b: dict[str, float], keys: tuple[str, ...]) -> str:
                return ", ".join(f"{k} {(b[k] - a[k]) * 1000 / n:.0f} s" for k in keys if k in a)

            rows.append(
                Row(
                    "1-cpu",
                    "CPU seconds per 1000 entries in (1), by process (who pays for what)",
                    "journeys: " + per_1000(cpu1, cpu2, ("server", "worker", "starter+catcher")),
                    "floor: " + per_1000(cpu0, cpu1, ("server", "floor worker")),
                    "",
                    "",
                    "n/a",
                )
            )
            entry_rate = journeys.per_second
            ratio = _x(journeys.per_second, floor.per_second)
            rows.append(
                Row(
                    "1-entry",
                    f"journeys entered/s: Python starter (customer_upserted + cart_updated, "
                    f"{c} in flight) → first email caught; n={n}",
                    f"{journeys.per_second:.0f}/s ({journeys.done}/{n} caught; starter accepted "
                    f"{journeys.submitted_per_second:.0f}/s)",
                    f"bare signal-with-start + no-op activity: {floor.per_second:.0f}/s "
                    f"({floor.done}/{n} closed)",
                    f"{ratio:.2f}",
                    "≥ 0.5 of floor",
                    Row.verdict(ratio >= 0.5 and journeys.done == n),
                )
            )

        async def event_email() -> None:
            rate = max(1.0, entry_rate / 2)
            n = max(5, min(size.latency_max_events, int(rate * size.latency_seconds)))
            lat = await phases.event_to_email(
                stack,
                rate=rate,
                n=n,
                concurrency=size.concurrency,
                tag=f"lat-{run_tag}",
                seconds=n / rate + 120,
            )
            p99 = phases.percentile(lat.seconds, 99)
            rows.append(
                Row(
                    "2-event-email",
                    f"POST /v1/track 'Checkout Started' → cart reminder_1 caught (first delay "
                    f"0 s) at a steady {rate:.0f}/s (half of 1) for {n / rate:.0f} s; n={n}",
                    f"p50 {_ms(phases.percentile(lat.seconds, 50))}, "
                    f"p95 {_ms(phases.percentile(lat.seconds, 95))}, p99 {_ms(p99)} "
                    f"({lat.done}/{n} caught, {lat.errors} HTTP errors)",
                    f"HTTP answer p50 {_ms(phases.percentile(lat.http_seconds, 50))}, "
                    f"p99 {_ms(phases.percentile(lat.http_seconds, 99))}",
                    "",
                    "p99 < 1 s",
                    Row.verdict(p99 < 1.0 and lat.done == n and lat.errors == 0),
                )
            )

        async def purchase_exit() -> None:
            n = size.purchases
            rate = max(1.0, min(size.purchase_rate, entry_rate / 2))
            lat, wf_id = await phases.purchase_to_exit(
                stack,
                n=n,
                rate=rate,
                concurrency=size.concurrency,
                tag=f"buy-{run_tag}",
                seconds=n / rate + 300,
            )
            closed_run.append(wf_id)
            p99 = phases.percentile(lat.seconds, 99)
            rows.append(
                Row(
                    "3-purchase-exit",
                    f"POST /v1/track 'Order Completed' for a customer waiting in cart recovery → "
                    f"handle.result() (run closed, outcome ordered) at a steady {rate:.0f}/s "
                    f"(at most half of 1); n={n}",
                    f"p50 {_ms(phases.percentile(lat.seconds, 50))}, p99 {_ms(p99)} "
                    f"({lat.done}/{n} ordered, {lat.errors} errors)",
                    f"HTTP answer p50 {_ms(phases.percentile(lat.http_seconds, 50))}, "
                    f"p99 {_ms(phases.percentile(lat.http_seconds, 99))}",
                    "",
                    "p99 < 1 s",
                    Row.verdict(p99 < 1.0 and lat.done == n),
                )
            )

        async def sends() -> None:
            s = await phases.send_throughput(
                stack, n=size.sends, tag=f"send-{run_tag}", seconds=size.patience
            )
            raw_ratio, per_ratio = _x(s.pool, s.raw_pooled), _x(s.pool, s.per_message)
            rows.append(
                Row(
                    "4-send-pool",
                    f"emails/s through SmtpPool (size {s.concurrency}, connections reused; "
                    f"{s.pool_connections} opened); n={s.n}",
                    f"{s.pool:.0f}/s",
                    f"raw aiosmtplib, {s.concurrency} open connections: {s.raw_pooled:.0f}/s",
                    f"{raw_ratio:.2f}",
                    "≥ 0.8 of raw pooled",
                    Row.verdict(raw_ratio >= 0.8),
                )
            )
            rows.append(
                Row(
                    "4-send-per-message",
                    "SmtpPool vs one new SMTP connection per message (aiosmtplib.send, "
                    f"{s.concurrency} in flight)",
                    f"{s.pool:.0f}/s",
                    f"new connection per message: {s.per_message:.0f}/s",
                    f"{per_ratio:.2f}",
                    "≥ 3x",
                    Row.verdict(per_ratio >= 3),
                )
            )
            rows.append(
                Row(
                    "4-send-step",
                    "emails/s through the whole send_step activity (gate queries, render, "
                    f"claim, SMTP, commit; {s.concurrency} in flight, no Temporal); n={s.n}",
                    f"{s.send_step:.0f}/s ({s.send_step_sent}/{s.n} sent)",
                    f"SmtpPool alone: {s.pool:.0f}/s",
                    f"{_x(s.send_step, s.pool):.2f}",
                    "",
                    "n/a",
                )
            )

        async def history() -> None:
            full = await phases.history_events(
                stack, seconds_for_7_days=size.history_7_days_in, tag=f"hist-{run_tag}"
            )
            ordered = await phases.events_of(stack, closed_run[0]) if closed_run else 0
            floor = await phases.events_of(stack, f"floor-{run_tag}-0")
            rows.append(
                Row(
                    "6-history",
                    "history events per run: cart recovery full path (5 emails, 7 days sped up) "
                    "/ ordered while waiting for reminder_1 (from 3)",
                    f"{full} / {ordered or 'n/a'}",
                    f"bare floor run: {floor}",
                    f"{_x(full, floor):.1f}",
                    "",
                    "n/a",
                )
            )

        async def footprint() -> None:
            server = dev_server_pid()

            def rss() -> tuple[float, float, float]:
                worker, peak = rss_mib(stack.worker.pid)
                return worker, peak, rss_mib(server)[0] if server else math.nan

            points = await phases.footprint(
                stack,
                sizes=size.footprint,
                concurrency=size.concurrency,
                tag=f"fp-{run_tag}",
                seconds=size.patience,
                settle=size.footprint_settle,
                rss=rss,
            )
            base, mid, top = points[0], points[1], points[-1]
            flat = top.worker_rss_mib <= mid.worker_rss_mib * 1.15 + 20
            rows.append(
                Row(
                    "6-worker-rss",
                    "journey worker RSS with cart recovery runs sleeping (waiting for reminder_1) "
                    "at " + " / ".join(f"{p.sleeping:,}" for p in points),
                    " / ".join(f"{p.worker_rss_mib:.0f} MiB" for p in points)
                    + f" (peak {top.worker_peak_mib:.0f} MiB)",
                    "dev server RSS: " + " / ".join(f"{p.server_rss_mib:.0f} MiB" for p in points),
                    f"{_x(top.worker_rss_mib, mid.worker_rss_mib):.2f}",
                    f"flat from {mid.sleeping:,} to {top.sleeping:,}",
                    Row.verdict(flat and top.sleeping >= size.footprint[-1]),
                )
            )
            per_run = (top.temporal_db_mib - base.temporal_db_mib) * 2**20 / max(top.sleeping, 1)
            rows.append(
                Row(
                    "6-server-db",
                    "dev server SQLite file (+WAL) with those runs sleeping",
                    " / ".join(f"{p.temporal_db_mib:.0f} MiB" for p in points)
                    + f" ({per_run / 1024:.1f} KiB per sleeping run)",
                    "start rate: " + " / ".join(f"{p.start_per_second:.0f}/s" for p in points[1:]),
                    "",
                    "",
                    "n/a",
                )
            )

        await phase("warm-up", warm_up)
        await phase("1 entry throughput", entry)
        await phase("2 event → email", event_email)
        await phase("3 purchase → exit", purchase_exit)
        await phase("4 send throughput", sends)
        await phase("6 history", history)

        async def sweep() -> None:
            found = [
                await sweep_bench.sweep(
                    stack.client,
                    customers=n,
                    eligible_every=size.sweep_every,
                    page_size=500,
                    start_cap=size.sweep_start_cap,
                )
                for n in size.sweep_customers
            ]
            largest = found[-1]
            rows.append(
                Row(
                    "5-sweep",
                    "win-back sweep on PostgreSQL: keyset-paged selection (page 500) over "
                    + " / ".join(f"{x.customers:,}" for x in found)
                    + f" generated customers (1 in {size.sweep_every} lapsed); then starting"
                    " runs through the sweep's start path",
                    "; ".join(
                        f"{x.customers:,}: select {x.select_seconds:.2f} s "
                        f"({x.selected:,} selected, {x.pages} pages, "
                        f"{x.customers / x.select_seconds:,.0f} customers/s)"
                        for x in found
                    ),
                    "runs started: "
                    + "; ".join(
                        f"{x.started:,} at {x.started / x.start_seconds:.0f}/s" for x in found
                    ),
                    "",
                    f"select {largest.customers:,} in < 5 s",
                    Row.verdict(largest.select_seconds < 5)
                    if largest.customers >= 1_000_000
                    else "n/a",
                )
            )

        await phase("5 sweep", sweep)
        await phase("6 footprint", footprint)
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=os.environ.get("BENCH_SIZE", "full")
    )
    parser.add_argument(
        "--db", choices=("sqlite", "postgres"), default=os.environ.get("BENCH_DB", "sqlite")
    )
    parser.add_argument("--entries", type=int, help="override the size's (1) customers")
    parser.add_argument(
        "--footprint",
        help="override the size's sleeping-run counts for (6), e.g. 10000,50000 (cumulative)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    if args.entries:
        size = replace(size, entries=args.entries)
    if args.footprint:
        size = replace(size, footprint=tuple(int(x) for x in args.footprint.split(",")))
    t0 = time.monotonic()
    load_before = os.getloadavg()[0]
    rows, failures = asyncio.run(run(size, db=args.db, keep=args.keep))
    meta = {
        "size": args.size,
        "db": args.db,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - t0, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "failures": failures,
    }
    print(
        f"\nsize={args.size} store={args.db} cpus={os.cpu_count()} took {meta['seconds']} s, "
        f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print(markdown(rows))
    missing = [rid for rid in ROW_IDS if rid not in {r.id for r in rows}]
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if missing:
        print(f"rows missing: {', '.join(missing)}", file=sys.stderr)
    if args.json:
        write_json(rows, args.json, meta)
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
