"""lifecycle stage: each customer's stage, since when, and since when VIP

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 01:30:00.000000

The columns start empty: the first daily sweep (or the customer's next order) computes them
from the orders with the thresholds of journeys/lifecycle.toml (core/lifecycle.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("stage_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("vip_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_customers_stage", ["stage"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_stage")
        batch_op.drop_column("vip_since")
        batch_op.drop_column("stage_since")
        batch_op.drop_column("stage")
