"""A journey's mail figures in the report (JSON ``"mail"``, the table's mail section):
store.mail_figures counts in SQL; this module turns the counts into rates, buckets and mail
client families.

Rates count people only: *open rate* = unique human opens / delivered, *click rate* =
unique human clicks / delivered, *click-to-open* = unique human clicks / unique human opens.
Machine opens and clicks (scanners, image proxies, prefetch at delivery:
core/engagement.py) are shown apart (``machine``) and are in no rate.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import ua_parser

from store import mail_figures as mf
from store.db import SessionFactory

LAST_DAY = 14  # days after the send shown one by one; later ones count in "14+"
# ua-parser's names for the image proxies that fetch for a webmail: the mailbox's name.
FAMILY_NAMES = {
    "GmailImageProxy": "Gmail",
    "YahooMailProxy": "Yahoo Mail",
    "Mobile Safari UI/WKWebView": "Apple Mail (iOS)",
}
# ua-parser's families that are browsers: a webmail read in that browser.
BROWSERS = {"Chrome", "Firefox", "Safari", "Edge", "Opera", "Chrome Mobile", "Mobile Safari"}


@lru_cache(maxsize=4096)
def client_family(user_agent: str | None) -> str:
    """The mail client family of a pixel request's user agent (ua-parser), e.g. "Apple
    Mail", "Outlook", "Gmail", "Thunderbird", "webmail in Chrome"; "unknown" without one."""
    if not user_agent or user_agent == "other":
        return "unknown" if not user_agent else "other"
    found = ua_parser.parse(user_agent).user_agent
    if found is None or found.family == "Other":
        return "unknown"
    if found.family in BROWSERS:
        return f"webmail in {found.family}"
    return FAMILY_NAMES.get(found.family, found.family)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def mail_figures(
    sessions: SessionFactory,
    journey: str,
    *,
    windows: list[tuple[str, Any]],
    since: datetime | None = None,
) -> dict[str, Any]:
    """The journey's mail figures: ``steps`` (per step: sent, delivered, bounced, failed,
    skipped, held_out, opens, clicks, open_rate, click_rate, click_to_open, unsubscribes,
    complaints, machine: {opens, clicks}), ``by_day`` (days 0..13 after the send and "14+":
    unique opens and clicks, human and machine), ``by_local_hour`` (0..23 on the customer's
    clock), ``links`` (step, url, clicks, machine_clicks), ``clients`` (family, opens,
    machine_opens) and ``bought`` (per window label and group: top products and
    categories of the converted customers). ``windows``: (label, timedelta)."""
    statuses, found, left, per_window = await mf.side_by_side(
        sessions,
        lambda s: mf.send_statuses(s, journey=journey, since=since),
        lambda s: mf.engagement(s, journey=journey, since=since),
        lambda s: mf.attributed(s, journey=journey, since=since),
        lambda s: mf.bought(s, journey=journey, windows=windows, since=since),
    )
    bought = [
        {
            "window": label,
            **{
                grp: {
                    "products": [_product(p) for p in per_window[(label, grp)].products],
                    "categories": [_category(c) for c in per_window[(label, grp)].categories],
                }
                for grp in (mf.TREATED, mf.CONTROL)
            },
        }
        for label, _ in windows
    ]
    unique = found.unique
    return {
        "steps": [_step(step, statuses, unique, left) for step in _steps(statuses, unique)],
        "by_day": _by_day(found.by_day),
        "by_local_hour": _by_hour(found.by_local_hour),
        "links": _links(found.links),
        "clients": _clients(found.agents),
        "bought": bought,
    }


_SERIES = (
    ("opens", mf.OPENED, mf.HUMAN),
    ("clicks", mf.CLICKED, mf.HUMAN),
    ("machine_opens", mf.OPENED, mf.MACHINE),
    ("machine_clicks", mf.CLICKED, mf.MACHINE),
)


def _steps(
    statuses: dict[str, dict[str, int]], unique: dict[tuple[str, str, str], int]
) -> list[str]:
    return sorted(set(statuses) | {step for step, _, _ in unique})


def _step(
    step: str,
    statuses: dict[str, dict[str, int]],
    unique: dict[tuple[str, str, str], int],
    left: dict[tuple[str, str], int],
) -> dict[str, Any]:
    st = statuses.get(step, {})
    sent = sum(st.get(k, 0) for k in mf.HANDED_OVER)
    bounced = st.get("bounced", 0) + left.get((step, mf.REPORTED_BOUNCE), 0)
    delivered = max(0, sent - bounced)
    opens = unique.get((step, mf.OPENED, mf.HUMAN), 0)
    clicks = unique.get((step, mf.CLICKED, mf.HUMAN), 0)
    return {
        "step": step,
        "sent": sent,
        "delivered": delivered,
        "bounced": bounced,
        "failed": st.get("failed", 0),
        "skipped": st.get("skipped", 0),
        "held_out": st.get("held_out", 0),
        "opens": opens,
        "clicks": clicks,
        "open_rate": _rate(opens, delivered),
        "click_rate": _rate(clicks, delivered),
        "click_to_open": _rate(clicks, opens),
        **{key: left.get((step, name), 0) for name, key in mf.ATTRIBUTED.items()},
        "machine": {
            "opens": unique.get((step, mf.OPENED, mf.MACHINE), 0),
            "clicks": unique.get((step, mf.CLICKED, mf.MACHINE), 0),
        },
    }


def _by_day(counts: dict[tuple[str, str, int], int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"day": str(d) if d < LAST_DAY else f"{LAST_DAY}+", **{k: 0 for k, _, _ in _SERIES}}
        for d in range(LAST_DAY + 1)
    ]
    for (name, cls, day), n in counts.items():
        row = rows[min(day, LAST_DAY)]
        for key, series_name, series_cls in _SERIES:
            if (name, cls) == (series_name, series_cls):
                row[key] += n
    return rows


def _by_hour(counts: dict[tuple[str, str, int], int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"hour": h, **{k: 0 for k, _, _ in _SERIES}} for h in range(24)]
    for (name, cls, hour), n in counts.items():
        for key, series_name, series_cls in _SERIES:
            if (name, cls) == (series_name, series_cls):
                rows[hour % 24][key] += n
    return rows


def _links(rows: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for step, url, cls, n in rows:
        row = out.setdefault(
            (step, url), {"step": step, "url": url, "clicks": 0, "machine_clicks": 0}
        )
        row["clicks" if cls == mf.HUMAN else "machine_clicks"] += n
    return sorted(out.values(), key=lambda r: (-r["clicks"], -r["machine_clicks"], r["url"]))


def _clients(rows: list[tuple[str | None, str, int]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for agent, cls, n in rows:
        family = client_family(agent)
        row = out.setdefault(family, {"family": family, "opens": 0, "machine_opens": 0})
        row["opens" if cls == mf.HUMAN else "machine_opens"] += n
    return sorted(out.values(), key=lambda r: (-r["opens"], -r["machine_opens"], r["family"]))


def _product(p: mf.ProductRow) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": p.name,
        "customers": p.customers,
        "quantity": p.quantity,
        "revenue": float(p.revenue),
    }


def _category(c: mf.CategoryRow) -> dict[str, Any]:
    return {
        "category": c.category,
        "customers": c.customers,
        "quantity": c.quantity,
        "revenue": float(c.revenue),
    }


# -- as text ----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def table_lines(mail: dict[str, Any]) -> list[str]:
    """The mail section of ``python -m starter report --format table``."""
    out = [
        "  mail (people only; machine opens/clicks apart)",
        f"  {'step':<18} {'sent':>6} {'deliv.':>6} {'bounce':>6} {'opens':>6} {'clicks':>6}"
        f" {'open %':>7} {'CTO %':>7} {'unsub':>5} {'spam':>4} {'machine o/c':>11}",
    ]
    for row in mail["steps"]:
        machine = f"{row['machine']['opens']}/{row['machine']['clicks']}"
        out.append(
            f"  {row['step']:<18} {row['sent']:>6} {row['delivered']:>6} {row['bounced']:>6}"
            f" {row['opens']:>6} {row['clicks']:>6} {_pct(row['open_rate']):>7}"
            f" {_pct(row['click_to_open']):>7} {row['unsubscribes']:>5} {row['complaints']:>4}"
            f" {machine:>11}"
        )
    if mail["clients"]:
        shown = ", ".join(f"{c['family']} {c['opens']}" for c in mail["clients"][:6])
        out.append(f"  mail clients (opens): {shown}")
    for row in mail["links"][:5]:
        out.append(f"  clicked: {row['clicks']:>5}  {row['step']}  {row['url']}")
    for window in mail["bought"]:
        top = window[mf.TREATED]["products"][:3]
        if top:
            names = ", ".join(f"{p['name']} ({p['customers']})" for p in top)
            out.append(f"  bought within {window['window']} (written to): {names}")
    return out
