"""Logs and metrics for the worker and the API.

- Logs: one JSON object per line (LOG_FORMAT=json, the default) with the workflow id, run id
  and customer id wherever they are known (Temporal's workflow and activity loggers add the
  workflow's; journey code adds ``customer_id``), or plain text (LOG_FORMAT=text).
  Logs carry ids, not addresses: a customer id that looks like an email address or phone
  number is written as its ref (``core.ids.customer_ref``), and so is any email address in a
  message or traceback, in both formats.
- Metrics: the Temporal SDK's own (workflow and activity task latencies, failures, sticky
  cache...) for Prometheus on ``METRICS_BIND`` (default 127.0.0.1:9464, /metrics); beside
  them the worker's ``journey_sends`` (every send decision by journey, step and status,
  through the SDK's metric meter, so on the same endpoint). The API serves its own
  at ``/metrics`` (operator login): ``journey_engagements_total`` (opens and clicks by
  journey, step, kind and class, human or machine) and ``journey_conversions_total``
  (orders of customers who entered a journey within ``CONVERSION_WINDOW`` before, by journey
  and group). Both count a fact only once the transaction that records it commits
  (``after_commit``): a rolled-back or retried transaction moves no counter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core.ids import customer_ref, journey_of
from settings import Settings

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CONTEXT_KEYS = ("workflow_id", "run_id", "workflow_type", "activity_type", "attempt")


def scrub(text: str, customer_id: object = None) -> str:
    """``text`` with the record's customer id and every email address replaced by refs."""
    if isinstance(customer_id, str) and customer_ref(customer_id) != customer_id:
        text = text.replace(customer_id, customer_ref(customer_id))
    return _EMAIL.sub(lambda m: customer_ref(m.group()), text)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), getattr(record, "customer_id", None))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        customer = getattr(record, "customer_id", None)
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage(), customer),
        }
        for source in ("temporal_workflow", "temporal_activity"):
            context = getattr(record, source, None)
            if isinstance(context, dict):
                out.update({k: context[k] for k in _CONTEXT_KEYS if k in context})
        if customer is not None:
            out["customer_id"] = customer_ref(str(customer))
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info), customer)
        return json.dumps(out, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
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


# -- the app's own metrics ----------------------------------------------------------------------

# The API's counters (their own registry: what /metrics shows is ours, not the process's).
REGISTRY = CollectorRegistry(auto_describe=True)
ENGAGEMENTS = Counter(
    "journey_engagements",
    "Opens and clicks of journey emails recorded (first per email, and per link for clicks)",
    ["journey", "step", "kind", "engagement_class"],
    registry=REGISTRY,
)
CONVERSIONS = Counter(
    "journey_conversions",
    "Orders of customers who entered the journey within CONVERSION_WINDOW before the order",
    ["journey", "group"],
    registry=REGISTRY,
)
CONVERSION_WINDOW_DAYS = 30  # the report's longest default window

# A counter counts a fact once the store has it: increments wait in the session until the
# transaction that records the fact commits, and are dropped when it rolls back (a failed
# handler, a deadlock the ingest retries: the retry counts, the first attempt does not).
_PENDING = "observability.pending"  # Session.info key: the increments waiting for the commit
_COMMITTED = "observability.committed"  # Session.info key: the outermost transaction committed


def after_commit(s: AsyncSession | Session, count: Callable[[], None]) -> None:
    """Run ``count`` when the transaction ``s`` is in commits; never if it rolls back."""
    session = s.sync_session if isinstance(s, AsyncSession) else s
    session.info.setdefault(_PENDING, []).append(count)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # Also called when a savepoint is released (begin_nested): only the outermost counts.
    if session.get_nested_transaction() is None:
        session.info[_COMMITTED] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None or transaction.nested:
        return
    pending: list[Callable[[], None]] = session.info.pop(_PENDING, [])
    if session.info.pop(_COMMITTED, False):
        for count in pending:
            count()


def count_engagement(
    s: AsyncSession | Session, *, workflow_id: str, step: str, kind: str, engagement_class: str
) -> None:
    """One open or click recorded (``kind``: opened | clicked; class: human | machine), of
    a send of ``workflow_id``'s run, counted when ``s``'s transaction commits; its journey
    is the id's first part (``core.ids``: ``cart-recovery:c-42`` is cart_recovery's)."""
    journey = journey_of(workflow_id)
    counter = ENGAGEMENTS.labels(journey, step, kind, engagement_class)
    after_commit(s, counter.inc)


def count_conversions(s: AsyncSession | Session, entered: list[tuple[str, str]]) -> None:
    """One order, for each (journey, group) the customer entered before it
    (``store.mail_figures.entered_before``; group: treated | control), counted when ``s``'s
    transaction commits."""
    for journey, group in entered:
        after_commit(s, CONVERSIONS.labels(journey, group).inc)


def count_send(*, journey: str, step: str, status: str, already_done: bool) -> None:
    """In the send activity: one decision (sent, skipped, held_out, bounced, failed,
    uncertain, deferred) on the worker's Temporal metric meter, exported with the SDK's
    metrics as ``journey_sends``. A retry that found its decision recorded counts nothing."""
    if already_done:
        return
    counter = activity.metric_meter().create_counter(
        "journey_sends", "Send decisions by journey, step and status"
    )
    counter.add(1, {"journey": journey, "step": step, "status": status})
