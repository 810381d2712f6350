"""consent records: where, when and to what words an address consented, and its confirmation

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 01:30:00.000000

One row per address (lowercased): the source of the consent (signup form, API, event), when
it was given, the text agreed to, and with double opt-in when the confirmation link's button
was pressed, from which IP address and user agent (docs/decisions/0010-double-opt-in.md).
Addresses that consented before this step have no record: nothing was kept then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("double_opt_in", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_ip", sa.String(length=45), nullable=True),
        sa.Column("confirm_user_agent", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_index("ix_consent_records_customer_id", "consent_records", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_consent_records_customer_id", table_name="consent_records")
    op.drop_table("consent_records")
