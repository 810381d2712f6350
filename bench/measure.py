"""The measurements, one method each, in the order ``run`` takes them; each appends the rows
BENCHMARKS.md explains. Later ones read what earlier ones found (the entry rate of (1) paces
(2) and (3); the run (3) closed is counted in (6))."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable

from bench import burst, phases, report_scale, sending
from bench import sweep as sweep_bench
from bench.report import Row
from bench.sizes import Size
from bench.stack import BenchStack, cpu_seconds, dev_server_pid, rss_mib


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def _x(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.nan


class Measurements:
    def __init__(self, size: Size, stack: BenchStack, run_tag: str) -> None:
        self.size = size
        self.stack = stack
        self.run_tag = run_tag
        self.rows: list[Row] = []
        self.entry_rate = 0.0
        self.closed_run: list[str] = []

    def in_order(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        return [
            ("warm-up", self.warm_up),
            ("1 entry throughput", self.entry),
            ("2 event → email", self.event_email),
            ("3 purchase → exit", self.purchase_exit),
            ("4 send throughput", self.sends),
            ("6 history", self.history),
            ("5 sweep", self.sweep),
            ("6 footprint", self.footprint),
            ("7 report", self.report),
            ("8 burst", self.burst),  # last: it leaves its runs sleeping
        ]

    async def warm_up(self) -> None:
        for measure in (phases.entry_throughput, phases.floor_throughput):
            got = await measure(
                self.stack, n=5, concurrency=5, tag=f"warm{self.run_tag}", seconds=60
            )
            if got.done != got.n:
                raise RuntimeError(f"warm-up: {got.done} of {got.n} done ({measure.__name__})")

    async def entry(self) -> None:
        n, c = self.size.entries, self.size.concurrency
        server = dev_server_pid()
        pids = {
            "server": server or 0,
            "worker": self.stack.worker.pid,
            "floor worker": self.stack.floor_worker.pid,
            "starter+catcher": os.getpid(),
        }
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
        floor = await phases.floor_throughput(
            self.stack, n=n, concurrency=c, tag=f"floor-{self.run_tag}", seconds=self.size.patience
        )
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items() if p}
        journeys = await phases.entry_throughput(
            self.stack, n=n, concurrency=c, tag=f"tp-{self.run_tag}", seconds=self.size.patience
        )
        cpu2 = {k: cpu_seconds(p) for k, p in pids.items() if p}

        def per_1000(a: dict[str, float], b: dict[str, float], keys: tuple[str, ...]) -> str:
            return ", ".join(f"{k} {(b[k] - a[k]) * 1000 / n:.0f} s" for k in keys if k in a)

        self.rows.append(
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
        self.entry_rate = journeys.per_second
        ratio = _x(journeys.per_second, floor.per_second)
        self.rows.append(
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

    async def event_email(self) -> None:
        rate = max(1.0, self.entry_rate / 2)
        n = max(5, min(self.size.latency_max_events, int(rate * self.size.latency_seconds)))
        lat = await phases.event_to_email(
            self.stack,
            rate=rate,
            n=n,
            concurrency=self.size.concurrency,
            tag=f"lat-{self.run_tag}",
            seconds=n / rate + 120,
        )
        p99 = phases.percentile(lat.seconds, 99)
        self.rows.append(
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

    async def purchase_exit(self) -> None:
        n = self.size.purchases
        rate = max(1.0, min(self.size.purchase_rate, self.entry_rate / 2))
        lat, wf_id = await phases.purchase_to_exit(
            self.stack,
            n=n,
            rate=rate,
            concurrency=self.size.concurrency,
            tag=f"buy-{self.run_tag}",
            seconds=n / rate + 300,
        )
        self.closed_run.append(wf_id)
        p99 = phases.percentile(lat.seconds, 99)
        self.rows.append(
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

    async def sends(self) -> None:
        s = await sending.send_throughput(
            self.stack, n=self.size.sends, tag=f"send-{self.run_tag}", seconds=self.size.patience
        )
        raw_ratio, per_ratio = _x(s.pool, s.raw_pooled), _x(s.pool, s.per_message)
        self.rows.append(
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
        self.rows.append(
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
        self.rows.append(
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

        p50, p99 = (phases.percentile(s.windows_ms, q) for q in (50, 99))
        self.rows.append(
            Row(
                "4-send-window",
                "reply-to-commit window of those sends: from the relay's 250 to the commit of "
                f"'sent' (the worker's log line; {len(s.windows_ms)} sends)",
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms" if s.windows_ms else "none logged",
                "",
                "",
                "p99 ≤ 10 ms",
                Row.verdict(bool(s.windows_ms) and p99 <= 10.0),
            )
        )

    async def history(self) -> None:
        full = await phases.history_events(
            self.stack, seconds_for_7_days=self.size.history_7_days_in, tag=f"hist-{self.run_tag}"
        )
        ordered = await phases.events_of(self.stack, self.closed_run[0]) if self.closed_run else 0
        floor = await phases.events_of(self.stack, f"floor-{self.run_tag}-0")
        self.rows.append(
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

    async def footprint(self) -> None:
        server = dev_server_pid()

        def rss() -> tuple[float, float, float]:
            worker, peak = rss_mib(self.stack.worker.pid)
            return worker, peak, rss_mib(server)[0] if server else math.nan

        points = await phases.footprint(
            self.stack,
            sizes=self.size.footprint,
            concurrency=self.size.concurrency,
            tag=f"fp-{self.run_tag}",
            seconds=self.size.patience,
            settle=self.size.footprint_settle,
            rss=rss,
        )
        base, mid, top = points[0], points[1], points[-1]
        flat = top.worker_rss_mib <= mid.worker_rss_mib * 1.15 + 20
        self.rows.append(
            Row(
                "6-worker-rss",
                "journey worker RSS with cart recovery runs sleeping (waiting for reminder_1) "
                "at " + " / ".join(f"{p.sleeping:,}" for p in points),
                " / ".join(f"{p.worker_rss_mib:.0f} MiB" for p in points)
                + f" (peak {top.worker_peak_mib:.0f} MiB)",
                "dev server RSS: " + " / ".join(f"{p.server_rss_mib:.0f} MiB" for p in points),
                f"{_x(top.worker_rss_mib, mid.worker_rss_mib):.2f}",
                f"flat from {mid.sleeping:,} to {top.sleeping:,}",
                Row.verdict(flat and top.sleeping >= self.size.footprint[-1]),
            )
        )
        per_run = (top.temporal_db_mib - base.temporal_db_mib) * 2**20 / max(top.sleeping, 1)
        self.rows.append(
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

    async def sweep(self) -> None:
        found = [
            await sweep_bench.sweep(
                self.stack.client,
                customers=n,
                eligible_every=self.size.sweep_every,
                page_size=500,
                start_cap=self.size.sweep_start_cap,
            )
            for n in self.size.sweep_customers
        ]
        largest = found[-1]
        self.rows.append(
            Row(
                "5-sweep",
                "win-back sweep on PostgreSQL: keyset-paged selection (page 500) over "
                + " / ".join(f"{x.customers:,}" for x in found)
                + f" generated customers (1 in {self.size.sweep_every} lapsed); then starting"
                " runs through the sweep's start path",
                "; ".join(
                    f"{x.customers:,}: select {x.select_seconds:.2f} s "
                    f"({x.selected:,} selected, {x.pages} pages, "
                    f"{x.customers / x.select_seconds:,.0f} customers/s)"
                    for x in found
                ),
                "runs started: "
                + "; ".join(f"{x.started:,} at {x.started / x.start_seconds:.0f}/s" for x in found),
                "",
                f"select {largest.customers:,} in < 5 s",
                Row.verdict(largest.select_seconds < 5)
                if largest.customers >= 1_000_000
                else "n/a",
            )
        )

    async def report(self) -> None:
        found = await report_scale.measure(
            sends=self.size.report_sends, orders=self.size.report_orders
        )
        self.rows.append(report_scale.row(found))

    async def burst(self) -> None:
        n = self.size.burst_events
        seconds = self.size.patience
        alone = await burst.burst(
            self.stack, n=n, tag=f"alone-{self.run_tag}", seconds=seconds, temporal=False
        )
        b = await burst.burst(self.stack, n=n, tag=f"burst-{self.run_tag}", seconds=seconds)

        def drained(found: burst.Burst) -> str:
            if found.drain_seconds is None:
                return "not within the patience"
            return f"{found.drain_seconds:.0f} s"

        statuses = ", ".join(
            f"{count} x {status or 'no answer'}" for status, count in sorted(b.statuses.items())
        )
        self.rows.append(
            Row(
                "8-burst",
                f"POST /v1/batch: {n:,} 'Checkout Started' ({burst.PER_CALL} per call, "
                f"{burst.IN_FLIGHT} calls in flight) for customers identified before "
                f"({n:,} identifies the same way: {b.identify_seconds:.0f} s), while the "
                "journeys start; then until caught up (outbox empty, every cart recovery "
                "started and waiting)",
                f"accepted {b.per_second:.0f} events/s ({b.accept_seconds:.0f} s; batches: "
                f"{statuses}; {b.failed_calls} calls not accepted); caught up {drained(b)} "
                f"after the first batch ({b.caught_up:,}/{n:,} runs waiting)",
                f"accepting alone (Temporal unreachable, all kept in the outbox): "
                f"{alone.per_second:.0f} events/s ({alone.failed_calls} not accepted), then "
                f"delivered: caught up {drained(alone)} after its first batch",
                f"{_x(b.per_second, alone.per_second):.2f}",
                "≥ 200 events/s, 0 errors",
                Row.verdict(b.per_second >= 200 and b.failed_calls == 0 and b.caught_up >= n),
            )
        )
