"""How much each measurement does: ``smoke`` only proves the benchmark runs, ``full`` is what
BENCHMARKS.md reports. The numbers in brackets are the BENCHMARKS.md rows they size."""

from __future__ import annotations

from dataclasses import dataclass


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
    report_sends: int = 20_000  # (7) send-log rows under the effect report, PostgreSQL
    report_orders: int = 2_000  # (7) orders
    burst_events: int = 100  # (8) cart events in the burst (and customers identified first)


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
        report_sends=1_000_000,
        report_orders=100_000,
        burst_events=20_000,
    ),
}
