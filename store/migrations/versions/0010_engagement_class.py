"""engagement class: every open and click is a person's or a machine's, with the rule why

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 01:30:00.000000

``events.engagement_class`` ("human" | "machine"), ``engagement_reason`` (the rule of
core/engagement.py that decided) and ``engagement_detail`` (what it saw: the agent, the
network, the timing). Opens and clicks recorded before this step were counted as people's
(nothing was classified then): they become "human", reason "unclassified", so decisions
keep reading them as they did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("engagement_class", sa.String(length=8), nullable=True))
    op.add_column("events", sa.Column("engagement_reason", sa.String(length=32), nullable=True))
    op.add_column("events", sa.Column("engagement_detail", sa.Text(), nullable=True))
    op.execute(
        "UPDATE events SET engagement_class = 'human', engagement_reason = 'unclassified'"
        " WHERE name IN ('Email Opened', 'Email Link Clicked')"
    )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("engagement_detail")
        batch.drop_column("engagement_reason")
        batch.drop_column("engagement_class")
