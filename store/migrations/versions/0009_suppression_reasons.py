"""suppression reasons: every reason an address is suppressed for, with its source and time

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:30:00.000000

Until now an address kept its first reason only: unsubscribed, then hard-bounced, still said
"unsubscribed", and a re-subscribe lifted it. Each existing suppression becomes its first
reason row; ``suppressions`` stays, showing the strongest reason.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppression_reasons",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", "reason"),
    )
    op.execute(
        "INSERT INTO suppression_reasons (email, reason, source, detail, customer_id, created_at)"
        " SELECT email, reason, NULL, detail, customer_id, created_at FROM suppressions"
    )


def downgrade() -> None:
    op.drop_table("suppression_reasons")
