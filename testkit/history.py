"""What a workflow history, as the server stores it, holds in clear."""

from __future__ import annotations

from typing import Any

# Written by the SDK's core in clear, readable by design: a patch marker's name, and a local
# activity marker's bookkeeping (sequence, attempt, activity type, times) beside its result,
# which goes through the payload codec like any activity result.
CLEAR_BY_DESIGN = {"core_patch": {"patch-data"}, "core_local_activity": {"data"}}


def history_payloads(node: Any) -> list[dict[str, Any]]:
    """Every Payload in a history's JSON form (``json_format.MessageToDict``) but search
    attributes and the markers' fields in ``CLEAR_BY_DESIGN``."""
    if isinstance(node, dict):
        if "metadata" in node and "encoding" in node["metadata"]:
            return [node]
        skipped = {"searchAttributes"}
        if node.get("markerName") in CLEAR_BY_DESIGN:
            details = node.get("details", {})
            clear = CLEAR_BY_DESIGN[node["markerName"]]
            node = {**node, "details": {k: v for k, v in details.items() if k not in clear}}
        return [p for k, v in node.items() if k not in skipped for p in history_payloads(v)]
    if isinstance(node, list):
        return [p for v in node for p in history_payloads(v)]
    return []
