"""report indexes: the effect report reads in index order instead of sorting

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 01:30:00.000000

The report numbers each customer's first entry of a journey, and first send of each step,
with a window function partitioned by customer (and step) and ordered by time; these
indexes give those rows in that order, and carry the columns the report reads (PostgreSQL
``INCLUDE``: an index-only scan), so a journey's million sends are not sorted per window.
``ix_events_name_occurred`` finds the few unsubscribes, complaints and reported bounces
among all events (the mail figures attribute each to the customer's last email).
Measured in BENCHMARKS.md (7-report).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_send_log_journey_customer_step",
        "send_log",
        ["journey", "customer_id", "step", "decided_at", "id"],
        postgresql_include=["status", "reason_code"],
    )
    op.create_index(
        "ix_journey_entries_journey_customer",
        "journey_entries",
        ["journey", "customer_id", "entered_at", "id"],
        postgresql_include=["group"],
    )
    op.create_index("ix_events_name_occurred", "events", ["name", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_events_name_occurred", table_name="events")
    op.drop_index("ix_journey_entries_journey_customer", table_name="journey_entries")
    op.drop_index("ix_send_log_journey_customer_step", table_name="send_log")
