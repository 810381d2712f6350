"""The result table: one row per measurement, with its floor or reference and its target."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Row ids in print order; the smoke test checks every one is there.
ROW_IDS = (
    "1-entry",
    "1-cpu",
    "2-event-email",
    "3-purchase-exit",
    "4-send-pool",
    "4-send-per-message",
    "4-send-step",
    "4-send-window",
    "5-sweep",
    "6-worker-rss",
    "6-server-db",
    "6-history",
    "7-report",
    "8-burst",
)


@dataclass
class Row:
    id: str
    measure: str
    result: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    met: str = ""  # met | missed | n/a | not yet

    @staticmethod
    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"


def markdown(rows: list[Row]) -> str:
    header = ("#", "measure", "result", "floor / reference", "ratio", "target", "met?")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = {rid: i for i, rid in enumerate(ROW_IDS)}
    for row in sorted(rows, key=lambda r: order.get(r.id, len(order))):
        cells = (row.id, row.measure, row.result, row.reference, row.ratio, row.target, row.met)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def write_json(rows: list[Row], path: Path, meta: dict[str, object]) -> None:
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
