"""Logs and metrics for the worker and the API.

- Logs: one JSON object per line (LOG_FORMAT=json, the default) with the workflow id, run id
  and customer id wherever they are known (Temporal's workflow and activity loggers add the
  workflow's; journey code adds ``customer_id``), or plain text (LOG_FORMAT=text).
- Metrics: the Temporal SDK's own (workflow and activity task latencies, failures, sticky
  cache...) for Prometheus on ``METRICS_BIND`` (default 127.0.0.1:9464, /metrics).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from settings import Settings

_CONTEXT_KEYS = ("workflow_id", "run_id", "workflow_type", "activity_type", "attempt")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for source in ("temporal_workflow", "temporal_activity"):
            context = getattr(record, source, None)
            if isinstance(context, dict):
                out.update({k: context[k] for k in _CONTEXT_KEYS if k in context})
        customer = getattr(record, "customer_id", None)
        if customer is not None:
            out["customer_id"] = customer
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def runtime_with_metrics(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting SDK metrics for Prometheus, or None when switched off."""
    if not settings.metrics_bind:
        return None
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.metrics_bind))
    )
