"""journey entries: who entered which journey when, treated or control (the effect report)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00.000000

Runs started before this revision have no entry; the report counts from the entries only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("run_chain_id", sa.String(length=64), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("group", sa.String(length=8), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("journey_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_journey_entries_run", "journey_entries", ["workflow_id", "run_chain_id"], unique=True
    )
    op.create_index(
        "ix_journey_entries_journey_entered", "journey_entries", ["journey", "entered_at"]
    )
    op.create_index("ix_journey_entries_customer_id", "journey_entries", ["customer_id"])


def downgrade() -> None:
    op.drop_table("journey_entries")
