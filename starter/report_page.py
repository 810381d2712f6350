"""The effect report as a web page a marketer reads: per journey and window the two rates,
the lift with its 95 % interval drawn as inline SVG (no script, nothing fetched: the page
renders offline and its Content-Security-Policy forbids any request), and the verdict."""

from __future__ import annotations

from html import escape
from typing import Any

from starter import report_charts
from starter.reports import money, percent

# The page loads nothing: no script, no font, no image from anywhere.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{text-align:right;padding:.3rem .5rem;border-bottom:1px solid #ddd}th:first-child,
td:first-child,td.verdict{text-align:left}.verdict{font-weight:600}.muted{color:#666;font-size:.9rem}
svg text{font:12px system-ui,sans-serif}a{color:#0a58ca}
"""

METHOD = (
    "A customer converts when they order within the window after entering the journey (or "
    "after a step's send, or its would-be send for the held-out). Treated customers were "
    "written to; the control group, chosen by a fixed hash of customer and journey, walked "
    "the same timeline without emails. Lift is the treated rate minus the control rate; its "
    "95 % interval is Newcombe's hybrid score interval, the p-value a two-proportion z-test. "
    "Revenue sums order totals as recorded (currencies are not converted)."
)


def page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def overview(journeys: list[dict[str, Any]], *, windows: list[str], as_of: str = "") -> str:
    """Every journey's lift per window, each linking to its page; ``as_of``: ISO time of the
    figures (defaults to the first journey's)."""
    parts = ["<h1>Effect of the journeys</h1>"]
    as_of = as_of or (journeys[0]["as_of"] if journeys else "")
    if as_of:
        parts.append(f'<p class="muted">As of {escape(as_of[:16])} UTC.</p>')
    if not journeys:
        parts.append("<p>No journey has recorded an entry yet.</p>")
    for report in journeys:
        name = escape(report["journey"])
        parts.append(f'<h2><a href="/reports/{name}">{name}</a></h2>')
        parts.append(lift_chart(report["windows"]))
        parts.append(_table(report["windows"]))
    parts.append(f'<p class="muted">{escape(METHOD)}</p>')
    return page("Effect of the journeys", "".join(parts))


def journey_page(report: dict[str, Any]) -> str:
    """One journey: per window, then per step."""
    name = escape(report["journey"])
    parts = [
        '<p><a href="/reports">All journeys</a></p>',
        f"<h1>Did {name} make people buy?</h1>",
        f'<p class="muted">As of {escape(report["as_of"][:16])} UTC.</p>',
        lift_chart(report["windows"]),
        _table(report["windows"]),
    ]
    for step in report.get("steps", []):
        parts.append(f"<h2>Step {escape(step['step'])}</h2>")
        if step.get("control") == "step holdout":
            parts.append('<p class="muted">Compared with the customers held out of this step.</p>')
        parts.append(lift_chart(step["windows"]))
        parts.append(_table(step["windows"]))
        if step.get("variants"):
            parts.append(ab_table(step))
            parts.append(report_charts.ab_chart(step))
    if "mail" in report:
        parts.append(report_charts.mail_section(report["mail"]))
    if report.get("channels"):
        parts.append(channel_table(report["channels"]))
    parts.append(f'<p class="muted">{escape(METHOD)}</p>')
    return page(f"Effect of {report['journey']}", "".join(parts))


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>Window</th><th>Written to</th><th>Held out</th><th>Lift</th>"
        "<th>95 % interval</th><th>p</th><th>Revenue / customer</th><th>Extra revenue</th></tr>"
    )
    body = []
    for row in rows:
        t, c, found = row["treated"], row["control"], row["lift"]
        ci = p = extra = lift = "-"
        if found is not None:
            lift = percent(found["absolute"], True)
            ci = f"{percent(found['ci95'][0], True)} to {percent(found['ci95'][1], True)}"
            p, extra = f"{found['p_value']:.3f}", money(found["incremental_revenue"])
        per_customer = f"{money(t['revenue_per_customer'])} vs {money(c['revenue_per_customer'])}"
        body.append(
            f"<tr><td>{escape(row['window'])}</td><td>{_rate(t)}</td><td>{_rate(c)}</td>"
            f"<td>{lift}</td><td>{ci}</td><td>{p}</td><td>{per_customer}</td><td>{extra}</td></tr>"
        )
        still = row["still_open"]
        note = f" ({still} customers are still within this window)" if still else ""
        body.append(
            f'<tr><td></td><td colspan=7 class="verdict">{escape(row["verdict"])}{note}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def ab_table(step: dict[str, Any]) -> str:
    """A step's A/B test: per variant sends, opens, clicks and conversions per window, the
    chi-squared p-values and the winner if one was picked."""
    ab, variants = step["ab"], step["variants"]
    labels = [w["window"] for w in variants[0]["windows"]]
    head = "<tr><th>Variant</th><th>Sent</th><th>Opened</th><th>Clicked</th>" + "".join(
        f"<th>Bought in {escape(label)}</th>" for label in labels
    )
    body = [
        f"<tr><td>{escape(v['variant'])}</td><td>{v['sends']}</td>"
        f"<td>{percent(v['open_rate'])} <span class=muted>({v['opens']})</span></td>"
        f"<td>{percent(v['click_rate'])} <span class=muted>({v['clicks']})</span></td>"
        + "".join(f"<td>{_rate(w)}</td>" for w in v["windows"])
        + "</tr>"
        for v in variants
    ]
    p_values = "".join(
        f"<td>p = {p:.3f}</td>"
        for p in [ab["opens_p_value"], ab["clicks_p_value"], *ab["conversions_p_value"].values()]
    )
    body.append(f"<tr><td class=muted>chi-squared</td><td></td>{p_values}</tr>")
    won = ab["winner"]
    verdict = ab["verdict"] + (
        f"; winner {won['variant']} on {won['metric']} (p = {won['p_value']:.3f}), sent to"
        " everyone since"
        if won
        else ""
    )
    return (
        "<h3>A/B test</h3>"
        f"<table class=ab>{head}</tr>{''.join(body)}</table>"
        f'<p class="verdict">{escape(verdict)}</p>'
    )


def _rate(g: dict[str, Any]) -> str:
    return f"{percent(g['rate'])} <span class=muted>({g['converted']} of {g['customers']})</span>"


def lift_chart(rows: list[dict[str, Any]]) -> str:
    """Per window: the lift in percentage points as a dot, its 95 % interval as a bar, and
    the line of no effect. Windows without a control group show their rates instead."""
    width, left, row_h, top = 640, 70, 34, 24
    lifted = [r for r in rows if r["lift"] is not None]
    span: float = max([0.05] + [abs(float(v)) for r in lifted for v in r["lift"]["ci95"]])
    span = min(1.0, span * 1.1)

    def x(value: float) -> float:
        return float(left + (value + span) / (2 * span) * (width - left - 20))

    height = top + row_h * len(rows) + 10
    out = [
        f'<svg role="img" aria-label="Lift with its 95 % interval per window" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{height - 4}" '
        'stroke="#999" stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="12" text-anchor="middle">no effect</text>',
        f'<text x="{x(-span):.1f}" y="12">{percent(-span, True)}</text>',
        f'<text x="{x(span):.1f}" y="12" text-anchor="end">{percent(span, True)}</text>',
    ]
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="4" y="{y + 4:.1f}">{escape(row["window"])}</text>')
        found = row["lift"]
        if found is None:
            text = f"no control group: {percent(row['treated']['rate'])} converted"
            out.append(f'<text x="{left}" y="{y + 4:.1f}" fill="#666">{escape(text)}</text>')
            continue
        lo, hi, mid = found["ci95"][0], found["ci95"][1], found["absolute"]
        color = "#1a7f37" if lo > 0 else "#b42318" if hi < 0 else "#555"
        out += [
            f'<line class="ci" x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-width="3"/>',
            f'<line x1="{x(lo):.1f}" y1="{y - 6:.1f}" x2="{x(lo):.1f}" y2="{y + 6:.1f}" '
            f'stroke="{color}" stroke-width="2"/>',
            f'<line x1="{x(hi):.1f}" y1="{y - 6:.1f}" x2="{x(hi):.1f}" y2="{y + 6:.1f}" '
            f'stroke="{color}" stroke-width="2"/>',
            f'<circle class="lift" cx="{x(mid):.1f}" cy="{y:.1f}" r="5" fill="{color}">'
            f"<title>{escape(percent(mid, True))}</title></circle>",
        ]
    out.append("</svg>")
    return "".join(out)


def channel_table(channels: dict[str, Any]) -> str:
    """Emails and texts apart (a text step's conversions and lift are its step's above)."""
    rows = []
    for channel, found in sorted(channels.items()):
        statuses, delivery = found["statuses"], found["delivery"]
        delivered = delivery.get("delivered", "") if channel == "sms" else ""
        rows.append(
            f"<tr><td>{escape(channel)}</td><td>{statuses.get('sent', 0)}</td>"
            f"<td>{delivered}</td><td>{found['clicks']}</td><td>{found['machine_clicks']}</td>"
            f"<td>{escape(', '.join(found['steps']))}</td></tr>"
        )
    return (
        "<h2>By channel</h2><table><tr><th>channel</th><th>sent</th><th>delivered (texts)</th>"
        "<th>clicked (people)</th><th>clicked (machines)</th><th>steps</th></tr>"
        + "".join(rows)
        + "</table>"
    )
