"""outbox for Temporal work committed with its event; repeats of an event counted; when
a cart last came whole

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 23:00:00.000000

``outbox``: what an accepted event asks of Temporal (a start, a signal), delivered after the
commit by the starter's relay (starter/outbox.py). ``events.repeats``: how often the same
event came again (50 loads of one open pixel: one event, 49 repeats, one signal).
``carts.replaced_at``: the event time of the last whole cart, so a late "Product Added"
the whole cart already holds changes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("repeats", sa.Integer(), server_default="0", nullable=False))
    op.add_column("carts", sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_queue", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_outbox_queue_customer", "outbox", ["task_queue", "customer_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_queue_customer", table_name="outbox")
    op.drop_table("outbox")
    op.drop_column("carts", "replaced_at")
    op.drop_column("events", "repeats")
