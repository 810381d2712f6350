"""coupon redemptions and A/B tests: who used which code on which order; the variant of a
step each send went out with; an A/B test's winner once picked

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 01:30:00.000000

Sends recorded before have no variant (their steps had none).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupon_redemptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("journey", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("discount", sa.Numeric(12, 2), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_coupon_redemptions_order_code",
        "coupon_redemptions",
        ["order_id", "code"],
        unique=True,
    )
    op.create_index("ix_coupon_redemptions_code", "coupon_redemptions", ["code"])
    op.create_index(
        "ix_coupon_redemptions_customer", "coupon_redemptions", ["customer_id", "status"]
    )
    op.create_table(
        "ab_winners",
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("journey", "step"),
    )
    op.add_column("send_log", sa.Column("variant", sa.String(length=32), nullable=True))
    op.create_index("ix_send_log_journey_step_variant", "send_log", ["journey", "step", "variant"])


def downgrade() -> None:
    op.drop_index("ix_send_log_journey_step_variant", table_name="send_log")
    with op.batch_alter_table("send_log") as batch:
        batch.drop_column("variant")
    op.drop_table("ab_winners")
    op.drop_table("coupon_redemptions")
