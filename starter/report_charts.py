"""The mail figures on the report page (``/reports/{journey}``): the funnel per step, opens
and clicks by day after the send and by the customer's local hour, clicks per link, mail
clients, and what the converted customers bought, as inline SVG and tables: no script, no
font, nothing fetched (the page's Content-Security-Policy forbids any request), so the
charts render offline and print as they show.

Every chart is an ``<svg class="chart">`` whose data marks are ``rect.bar`` with a
``<title>`` (the value on hover); machine opens and clicks are drawn apart, in grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from starter.reports import money, percent

OPENS, CLICKS, MACHINE = "#0a58ca", "#1a7f37", "#b8b8b8"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | float]
    color: str


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _bar(x: float, y: float, w: float, h: float, color: str, title: str) -> str:
    return (
        f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.0):.1f}" '
        f'height="{max(h, 0.0):.1f}" fill="{color}"><title>{escape(title)}</title></rect>'
    )


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = []
    for s in series:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{s.color}"/>')
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    return out


def columns(label: str, categories: Sequence[str], series: Sequence[Series]) -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    width, height, left, top, bottom = 720, 220, 40, 28, 34
    plot_h = height - top - bottom
    peak = max([1.0] + [float(v) for s in series for v in s.values])
    group_w = (width - left - 10) / max(1, len(categories))
    bar_w = max(2.0, (group_w - 4) / max(1, len(series)))
    out = _legend(series, left, 14)
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'stroke="#999"/>'
    )
    out.append(f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{_num(peak)}</text>')
    out.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>')
    every = max(1, len(categories) // 16)  # label at most ~16 categories
    for i, category in enumerate(categories):
        gx = left + i * group_w + 2
        for j, s in enumerate(series):
            value = float(s.values[i])
            h = plot_h * value / peak
            title = f"{s.name}, {category}: {_num(value)}"
            out.append(_bar(gx + j * bar_w, top + plot_h - h, bar_w - 1, h, s.color, title))
        if i % every == 0:
            out.append(
                f'<text x="{gx + group_w / 2 - 2:.1f}" y="{top + plot_h + 14}" '
                f'text-anchor="middle">{escape(category)}</text>'
            )
    return _svg(width, height, label, out)


def rows(label: str, items: Sequence[tuple[str, float, str]], color: str = OPENS) -> str:
    """Horizontal bars: (label, value, text shown after the bar)."""
    width, row_h, left = 720, 22, 220
    height = row_h * len(items) + 8
    peak = max([1.0] + [float(v) for _, v, _ in items])
    out = []
    for i, (name, value, note) in enumerate(items):
        y = 4 + i * row_h
        w = (width - left - 290) * float(value) / peak  # room for the note
        shown = name if len(name) <= 34 else name[:33] + "…"
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(shown)}</text>')
        out.append(_bar(left, y + 3, w, row_h - 6, color, f"{name}: {note}"))
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 14}">{escape(note)}</text>')
    return _svg(width, height, label, out)


def funnel(step: dict[str, Any]) -> str:
    """One step: sent, delivered, opened and clicked by people, as bars of the sent."""
    sent = step["sent"]
    stages = [
        ("sent", sent),
        ("delivered", step["delivered"]),
        ("opened (people)", step["opens"]),
        ("clicked (people)", step["clicks"]),
    ]
    colors = ["#555", "#555", OPENS, CLICKS]
    width, row_h, left = 720, 22, 140
    out = []
    for i, ((name, n), color) in enumerate(zip(stages, colors, strict=True)):
        y = 4 + i * row_h
        w = (width - left - 160) * (n / sent if sent else 0)
        note = f"{n:,}" + (f"  ({percent(n / sent)})" if sent and i else "")
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{name}</text>')
        out.append(_bar(left, y + 3, w, row_h - 6, color, f"{step['step']} {name}: {note}"))
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + 14}">{escape(note)}</text>')
    return _svg(width, row_h * len(stages) + 8, f"funnel of step {step['step']}", out)


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _steps_table(steps: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>Step</th><th>Sent</th><th>Delivered</th><th>Bounced</th><th>Opened</th>"
        "<th>Clicked</th><th>Click-to-open</th><th>Unsubscribed</th><th>Complaints</th>"
        "<th>Held out</th><th>Machine opens / clicks</th></tr>"
    )
    body = [
        f"<tr><td>{escape(r['step'])}</td><td>{r['sent']:,}</td><td>{r['delivered']:,}</td>"
        f"<td>{r['bounced']:,}</td>"
        f"<td>{percent(r['open_rate'])} <span class=muted>({r['opens']:,})</span></td>"
        f"<td>{percent(r['click_rate'])} <span class=muted>({r['clicks']:,})</span></td>"
        f"<td>{percent(r['click_to_open'])}</td><td>{r['unsubscribes']:,}</td>"
        f"<td>{r['complaints']:,}</td><td>{r['held_out']:,}</td>"
        f"<td class=muted>{r['machine']['opens']:,} / {r['machine']['clicks']:,}</td></tr>"
        for r in steps
    ]
    return f"<table class=mail>{head}{''.join(body)}</table>"


def _engagement_series(rows_: list[dict[str, Any]]) -> list[Series]:
    return [
        Series("opens", [r["opens"] for r in rows_], OPENS),
        Series("clicks", [r["clicks"] for r in rows_], CLICKS),
        Series("machine opens", [r["machine_opens"] for r in rows_], MACHINE),
    ]


def _bought(window: dict[str, Any]) -> str:
    parts = [f"<h3>Bought within {escape(window['window'])} of entering</h3>"]
    for grp, title in (("treated", "Written to"), ("control", "Held out")):
        products = window[grp]["products"]
        categories = window[grp]["categories"]
        if not products:
            parts.append(f'<p class="muted">{title}: no purchases in this window.</p>')
            continue
        parts.append(f"<h4>{title}: top products</h4>")
        parts.append(
            rows(
                f"top products bought within {window['window']} ({title.lower()})",
                [
                    (
                        p["name"],
                        p["customers"],
                        f"{p['customers']:,} customers, {p['quantity']:,} pcs,"
                        f" {money(p['revenue'])}",
                    )
                    for p in products
                ],
                CLICKS if grp == "treated" else "#777",
            )
        )
        shown = ", ".join(
            f"{escape(c['category'])} ({c['customers']:,})" for c in categories if c["customers"]
        )
        parts.append(f'<p class="muted">Categories (customers): {shown}</p>')
    return "".join(parts)


def ab_chart(step: dict[str, Any]) -> str:
    """A step's A/B test (``step["variants"]``, store.ab_tests via starter.reports): per
    variant the open and click rates of its sends and the conversion rate in the last
    window, side by side, in percent."""
    variants = step["variants"]
    last = variants[0]["windows"][-1]["window"] if variants[0]["windows"] else ""

    def pct(value: float | None) -> float:
        return round(100 * (value or 0.0), 1)

    return columns(
        f"A/B test of step {step['step']}: rates per variant, in percent",
        [v["variant"] for v in variants],
        [
            Series("opened %", [pct(v["open_rate"]) for v in variants], OPENS),
            Series("clicked %", [pct(v["click_rate"]) for v in variants], CLICKS),
            Series(
                f"bought within {last} %",
                [pct(v["windows"][-1]["rate"]) if v["windows"] else 0.0 for v in variants],
                "#8250df",
            ),
        ],
    )


# Longer than the ~60-line guide: the mail part of the page in reading order, one short block per
# chart
def mail_section(mail: dict[str, Any]) -> str:
    """The mail part of a journey's page."""
    steps = mail["steps"]
    if not steps:
        return "<h2>Mail</h2><p>No email of this journey yet.</p>"
    parts = [
        "<h2>Mail</h2>",
        '<p class="muted">Opens and clicks are people\'s: machine ones (mail scanners, image '
        "proxies, fetches at delivery) are shown apart in grey and left out of every rate. "
        "Rates are of the delivered emails; click-to-open is of the opened ones.</p>",
        _steps_table(steps),
    ]
    for step in steps:
        if step["sent"]:
            parts.append(f"<h3>Funnel: {escape(step['step'])}</h3>{funnel(step)}")
    by_day = mail["by_day"]
    parts.append("<h3>Opens and clicks by day after the email</h3>")
    parts.append(
        columns(
            "opens and clicks by day after sending",
            [r["day"] for r in by_day],
            _engagement_series(by_day),
        )
    )
    by_hour = mail["by_local_hour"]
    parts.append("<h3>Opens and clicks by hour of the day (the customer's own clock)</h3>")
    parts.append(
        columns(
            "opens and clicks by local hour",
            [f"{r['hour']:02d}" for r in by_hour],
            _engagement_series(by_hour),
        )
    )
    links = [row for row in mail["links"] if row["clicks"]][:15]
    if links:
        parts.append("<h3>Links clicked (people)</h3>")
        parts.append(
            rows(
                "clicks per link",
                [
                    (f"{r['step']}: {r['url']}", r["clicks"], f"{r['clicks']:,} emails")
                    for r in links
                ],
                CLICKS,
            )
        )
    clients = [row for row in mail["clients"] if row["opens"]][:10]
    if clients:
        parts.append("<h3>Mail clients (opens by people)</h3>")
        parts.append(
            rows(
                "opens per mail client",
                [(r["family"], r["opens"], f"{r['opens']:,}") for r in clients],
            )
        )
    machine = sum(r["machine_opens"] for r in mail["clients"])
    if machine:
        parts.append(f'<p class="muted">Machine opens, not counted above: {machine:,}.</p>')
    for window in mail["bought"]:
        parts.append(_bought(window))
    return "".join(parts)
