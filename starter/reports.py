"""The effect report: did a journey make people buy, by how much, and are we sure?

Per journey (and per step) and per window: treated and control customers, converted, rate,
revenue and revenue per customer; the lift with its 95 % interval and p-value
(core.stats); incremental orders and revenue; a verdict in plain words. The counts come
from store.reports (SQL); this module only puts them together, as JSON or as a table.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from core.stats import Group, Lift, ab_verdict, chi_squared, lift, verdict
from settings import Settings
from starter import mail_report
from store import ab_tests, mail_figures, reports
from store.db import SessionFactory, engine_for, make_session_factory, readers

DEFAULT_WINDOWS = "2d,10d,30d"
_WINDOW = re.compile(r"^(\d+)([dh])$")


def parse_windows(text: str) -> list[str]:
    """``"2d,10d,30d"`` (days or hours) as labels; a bad one names itself."""
    labels = [part.strip() for part in text.split(",") if part.strip()]
    for label in labels:
        if not _WINDOW.match(label) or window_of(label) <= timedelta(0):
            raise ValueError(f"window {label!r}: expected a number of days or hours, e.g. 10d")
    if not labels:
        raise ValueError("no window given: e.g. 2d,10d,30d")
    return labels


def window_of(label: str) -> timedelta:
    match = _WINDOW.match(label)
    if match is None:
        raise ValueError(f"window {label!r}: expected e.g. 10d or 12h")
    n, unit = int(match[1]), match[2]
    return timedelta(days=n) if unit == "d" else timedelta(hours=n)


def _group(counts: reports.Counts | None) -> Group:
    c = counts or reports.Counts()
    return Group(customers=c.customers, converted=c.converted, orders=c.orders, revenue=c.revenue)


def _group_json(g: Group) -> dict[str, Any]:
    rpc = g.revenue_per_customer
    return {
        "customers": g.customers,
        "converted": g.converted,
        "rate": g.rate,
        "orders": g.orders,
        "revenue": float(g.revenue),
        "revenue_per_customer": float(rpc) if rpc is not None else None,
    }


def _lift_json(found: Lift | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "absolute": found.absolute,
        "relative": found.relative,
        "ci95": list(found.ci95),
        "p_value": found.p_value,
        "incremental_orders": found.incremental_orders,
        "incremental_revenue": float(found.incremental_revenue),
    }


def figures(
    label: str, treated_counts: reports.Counts | None, control_counts: reports.Counts | None
) -> dict[str, Any]:
    """One window's figures in the report's JSON shape."""
    treated, control = _group(treated_counts), _group(control_counts)
    found = lift(treated, control)
    still_open = sum(c.still_open for c in (treated_counts, control_counts) if c is not None)
    return {
        "window": label,
        "treated": _group_json(treated),
        "control": _group_json(control),
        "lift": _lift_json(found),
        "verdict": verdict(treated, control, found),
        "still_open": still_open,
    }


# Longer than the ~60-line guide: the report's reads started side by side, then assembled per window
# and step
async def journey_report(
    sessions: SessionFactory,
    journey: str,
    *,
    windows: list[str],
    since: datetime | None = None,
    as_of: datetime | None = None,
    steps: bool = True,
) -> dict[str, Any]:
    """One journey's report: per window, and per step and window. It only reads: on SQLite
    its transactions take no write lock (store.db.readers), so sends are not held up."""
    sessions = readers(sessions)
    at = as_of or datetime.now(UTC)
    out: dict[str, Any] = {
        "journey": journey,
        "since": since.isoformat() if since else None,
        "as_of": at.isoformat(),
        "windows": [],
        "steps": [],
    }
    spans = [window_of(label) for label in windows]
    # The report's independent statements, each in a transaction of its own: on PostgreSQL
    # at the same time (store.mail_figures.side_by_side; BENCHMARKS.md 7-report).
    reads: list[mail_figures.Read] = [
        lambda s: reports.entry_counts_per_window(
            s, journey=journey, windows=spans, as_of=at, since=since
        )
    ]
    if steps:
        reads += [
            lambda s: reports.step_counts_per_window(
                s, journey=journey, windows=spans, as_of=at, since=since
            ),
            lambda s: ab_results(s, journey, windows=windows, since=since, as_of=at),
            # emails and texts apart; a text step's lift is its step's
            lambda s: mail_figures.channels(s, journey=journey, since=since),
        ]
    counted = mail_figures.side_by_side(sessions, *reads)
    if not steps:
        (counts,) = await counted
        per_window: list[dict[tuple[str, str], reports.Counts]] = [{} for _ in windows]
        tests: dict[str, dict[str, Any]] = {}
    else:
        mail = mail_report.mail_figures(  # the mail figures (starter/mail_report.py)
            sessions, journey, windows=list(zip(windows, spans, strict=True)), since=since
        )
        if mail_figures.side_by_side_possible(sessions):
            found, out["mail"] = await asyncio.gather(counted, mail)
        else:
            found, out["mail"] = await counted, await mail
        counts, per_window, tests, out["channels"] = found
    for label, entered in zip(windows, counts, strict=True):
        out["windows"].append(
            figures(label, entered.get(reports.TREATED), entered.get(reports.CONTROL))
        )
    step_held: set[str] = set()  # steps with a holdout of their own
    for per_step in per_window:
        step_held |= {step for step, grp in per_step if grp == reports.STEP_CONTROL}
    by_step: dict[str, list[dict[str, Any]]] = {}
    for label, per_step in zip(windows, per_window, strict=True):
        for step in sorted({step for step, _ in per_step}):
            # A step with its own holdout compares with it: what this one email added.
            control = reports.STEP_CONTROL if step in step_held else reports.CONTROL
            by_step.setdefault(step, []).append(
                figures(
                    label,
                    per_step.get((step, reports.TREATED)),
                    per_step.get((step, control)),
                )
            )
    out["steps"] = [
        {
            "step": step,
            "control": "step holdout" if step in step_held else "journey holdout",
            "windows": rows,
            **tests.get(step, {"variants": []}),
        }
        for step, rows in by_step.items()
    ]
    return out


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


# Longer than the ~60-line guide: one pass per tested step: the variants' figures, then their tests
# and verdict
async def ab_results(
    s: Any, journey: str, *, windows: list[str], since: datetime | None, as_of: datetime
) -> dict[str, dict[str, Any]]:
    """Per A/B-tested step: ``variants`` (sends, unique human opens and clicks, and per
    window customers, converted, rate and revenue) and ``ab``: the chi-squared p-values of
    opens, clicks and each window's conversions across the variants (core.stats), a verdict
    and the winner if the test picked one."""
    engaged = await reports.variant_engagement(s, journey=journey, since=since)
    spans = [window_of(label) for label in windows]
    found = await reports.variant_counts_per_window(
        s, journey=journey, windows=spans, as_of=as_of, since=since
    )
    per_window = dict(zip(windows, found, strict=True))
    decided = await ab_tests.winners(s, journey=journey)
    out: dict[str, dict[str, Any]] = {}
    for step in sorted({step for step, _ in engaged}):
        names = sorted(v for st, v in engaged if st == step)
        variants: list[dict[str, Any]] = []
        for name in names:
            e = engaged[(step, name)]
            rows = []
            for label in windows:
                g = _group(per_window[label].get((step, name)))
                rows.append({"window": label, **_group_json(g)})
            variants.append(
                {
                    "variant": name,
                    "sends": e.sends,
                    "opens": e.opens,
                    "clicks": e.clicks,
                    "open_rate": _rate(e.opens, e.sends),
                    "click_rate": _rate(e.clicks, e.sends),
                    "windows": rows,
                }
            )
        opens_p = chi_squared([(v["opens"], v["sends"]) for v in variants])
        conversions = {
            label: chi_squared(
                [(v["windows"][i]["converted"], v["windows"][i]["customers"]) for v in variants]
            )
            for i, label in enumerate(windows)
        }
        won = decided.get(step)
        out[step] = {
            "variants": variants,
            "ab": {
                "test": "chi-squared, k x 2 table, no continuity correction",
                "opens_p_value": opens_p,
                "clicks_p_value": chi_squared([(v["clicks"], v["sends"]) for v in variants]),
                "conversions_p_value": conversions,
                "verdict": ab_verdict(opens_p, min(v["sends"] for v in variants)),
                "winner": None
                if won is None
                else {
                    "variant": won.variant,
                    "metric": won.metric,
                    "p_value": won.p_value,
                    "figures": won.figures,
                    "decided_at": won.decided_at.isoformat(),
                },
            },
        }
    return out


async def all_journeys(
    sessions: SessionFactory,
    *,
    windows: list[str],
    since: datetime | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every journey with entries: its figures per window (no steps)."""
    sessions = readers(sessions)
    async with sessions() as s:
        names = await reports.journeys_entered(s, since=since)
    return [
        await journey_report(sessions, name, windows=windows, since=since, as_of=as_of, steps=False)
        for name in names
    ]


# -- as text --------------------------------------------------------------------------------


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f} %" if signed else f"{value * 100:.1f} %"


def money(value: float | Decimal | None) -> str:
    return "-" if value is None else f"{Decimal(str(value)):,.2f}"


def as_table(report: dict[str, Any]) -> str:
    """A journey's report for the terminal."""
    lines = [f"journey {report['journey']}  (as of {report['as_of'][:16]} UTC)"]
    lines += _window_lines(report["windows"])
    for step in report.get("steps", []):
        lines.append(f"  step {step['step']} (after its send or would-be send)")
        lines += ["  " + line for line in _window_lines(step["windows"])]
        lines += _variant_lines(step)
    if "mail" in report:
        lines += mail_report.table_lines(report["mail"])
    lines += channel_lines(report.get("channels", {}))
    return "\n".join(lines)


def channel_lines(channels: dict[str, Any]) -> list[str]:
    """Emails and texts apart: sent, delivered (texts: by the provider), clicks, steps."""
    lines = ["  by channel"] if channels else []
    for channel, found in sorted(channels.items()):
        statuses, delivery = found["statuses"], found["delivery"]
        delivered = (
            f", delivered {delivery.get('delivered', 0)}, undelivered "
            f"{delivery.get('undelivered', 0) + delivery.get('failed', 0)}"
            if channel == "sms"
            else ""
        )
        lines.append(
            f"    {channel:5} sent {statuses.get('sent', 0)}{delivered}, clicked by a person "
            f"{found['clicks']} (machines {found['machine_clicks']}); steps "
            + ", ".join(found["steps"])
        )
    return lines


def _variant_lines(step: dict[str, Any]) -> list[str]:
    """A step's A/B test: per variant sends, opens, clicks, conversions per window."""
    if not step.get("variants"):
        return []
    ab = step["ab"]
    out = [f"    A/B test: {ab['verdict']} (opens p = {ab['opens_p_value']:.3f})"]
    for v in step["variants"]:
        conv = "  ".join(f"{w['window']} {_cell(w)}" for w in v["windows"])
        out.append(
            f"    {v['variant']:>8}: {v['sends']} sent, opens {percent(v['open_rate'])},"
            f" clicks {percent(v['click_rate'])}; {conv}"
        )
    if ab["winner"]:
        out.append(f"    winner: {ab['winner']['variant']} on {ab['winner']['metric']}")
    return out


def _window_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"  {'window':>6}  {'treated':>22}  {'control':>22}  {'lift':>9}  {'95 % CI':>19}"
        f"  {'p':>6}  {'extra revenue':>13}"
    ]
    for row in rows:
        t, c, found = row["treated"], row["control"], row["lift"]
        ci = p = extra = "-"
        if found is not None:
            ci = f"[{percent(found['ci95'][0], True)}, {percent(found['ci95'][1], True)}]"
            p, extra = f"{found['p_value']:.3f}", money(found["incremental_revenue"])
        out.append(
            f"  {row['window']:>6}  {_cell(t):>22}  {_cell(c):>22}"
            f"  {percent(found['absolute'], True) if found else '-':>9}  {ci:>19}  {p:>6}"
            f"  {extra:>13}"
        )
        open_note = f" ({row['still_open']} still within the window)" if row["still_open"] else ""
        out.append(f"  {'':>6}  {row['verdict']}{open_note}")
    return out


def _cell(g: dict[str, Any]) -> str:
    return f"{g['converted']}/{g['customers']} = {percent(g['rate'])}"


# -- python -m starter report ---------------------------------------------------------------


def add_command(sub: Any) -> None:
    """The ``report`` subcommand's arguments (on ``python -m starter``'s subparsers)."""
    r = sub.add_parser("report", help="did the journeys make people buy? (lift vs holdout)")
    r.add_argument("--journey", help="only this journey (with its steps)")
    r.add_argument("--since", type=_date, help="entries from this date (UTC), e.g. 2026-03-01")
    r.add_argument("--windows", type=parse_windows, default=DEFAULT_WINDOWS, help="2d,10d,30d")
    r.add_argument("--format", choices=("table", "json", "html"), default="table")
    r.add_argument(
        "--fresh",
        action="store_true",
        help="compute it now, not from a snapshot younger than REPORT_MAX_AGE_SECONDS",
    )


def _date(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def run_command(args: Any, settings: Settings) -> int:
    from starter import report_page, report_snapshots  # here: they import this module

    windows = parse_windows(args.windows) if isinstance(args.windows, str) else args.windows
    # the same snapshot the pages serve, unless --fresh (starter/report_snapshots.py)
    max_age = 0.0 if getattr(args, "fresh", False) else settings.report_max_age_seconds
    engine = engine_for(settings)
    try:
        sessions = make_session_factory(engine)
        if args.journey:
            served = await report_snapshots.journey(
                sessions, args.journey, windows=windows, since=args.since, max_age=max_age
            )
            found = [served.report]
        else:
            served = await report_snapshots.overview(
                sessions, windows=windows, since=args.since, max_age=max_age
            )
            found = served.report["journeys"]
    finally:
        await engine.dispose()
    if args.format == "json":
        print(json.dumps(found[0] if args.journey else {"journeys": found}, indent=2))
    elif args.format == "html":
        print(
            report_page.journey_page(found[0])
            if args.journey
            else report_page.overview(found, windows=windows, as_of=served.as_of.isoformat())
        )
    else:
        print("\n\n".join(as_table(r) for r in found) or "no journey has recorded an entry yet")
    return 0
