"""send log: the attempt that holds a claim and its lease; the SMTP circuit breaker

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000

``send_log.attempt`` / ``lease_until``: a send is claimed right before its final dot by one
attempt of the send activity; only that attempt finishes or releases it, and until the lease
ends it may still be running. ``smtp_breakers``: relay-side failures in a row per relay and
whether sending is paused, shared by every worker and read by /healthz.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("send_log", sa.Column("attempt", sa.String(length=200), nullable=True))
    op.add_column("send_log", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "smtp_breakers",
        sa.Column("relay", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("probe_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("relay"),
    )


def downgrade() -> None:
    op.drop_table("smtp_breakers")
    with op.batch_alter_table("send_log", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("attempt")
