"""sms: customers' phones and SMS consent, SMS suppressions, the send log's channel and
delivery receipts, short links for texts

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 02:00:00.000000

Text messages share the send log (``channel``: email | sms; status callbacks fill in
``delivery_status`` / ``delivery_error``), have their own consent on the customer (when and
how) and their own suppressions by number (a STOP never touches email, nor the reverse).
``short_links``: the short click tokens of links in texts (docs/decisions/0015-sms.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("phone", sa.String(length=16), nullable=True))
    op.add_column(
        "customers",
        sa.Column("sms_consent", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "customers", sa.Column("sms_consent_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("customers", sa.Column("sms_consent_source", sa.String(length=64), nullable=True))
    op.create_index("ix_customers_phone", "customers", ["phone"])
    op.add_column(
        "send_log",
        sa.Column("channel", sa.String(length=8), nullable=False, server_default="email"),
    )
    op.add_column("send_log", sa.Column("delivery_status", sa.String(length=16), nullable=True))
    op.add_column("send_log", sa.Column("delivery_error", sa.String(length=16), nullable=True))
    op.add_column("send_log", sa.Column("delivery_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_send_log_message_id", "send_log", ["message_id"])
    op.create_table(
        "sms_suppressions",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone", "reason"),
    )
    op.create_table(
        "short_links",
        sa.Column("token", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("send_key", sa.String(length=400), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )


def downgrade() -> None:
    op.drop_table("short_links")
    op.drop_table("sms_suppressions")
    op.drop_index("ix_send_log_message_id", table_name="send_log")
    op.drop_index("ix_customers_phone", table_name="customers")
    with op.batch_alter_table("send_log", schema=None) as batch_op:
        batch_op.drop_column("delivery_at")
        batch_op.drop_column("delivery_error")
        batch_op.drop_column("delivery_status")
        batch_op.drop_column("channel")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("sms_consent_source")
        batch_op.drop_column("sms_consent_at")
        batch_op.drop_column("sms_consent")
        batch_op.drop_column("phone")
