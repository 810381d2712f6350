"""report snapshots: the effect report as last computed, served to the pages and their JSON

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 16:30:00.000000

One row per report asked for (a journey's or the overview, its windows and since): the
report's JSON and the moment its figures are as of. The API keeps the default ones fresh in
the background and serves a snapshot younger than ``REPORT_MAX_AGE_SECONDS``; anything older
is computed again from the rows (docs/decisions/0023-report-snapshots.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_snapshots",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("took_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("report_snapshots")
