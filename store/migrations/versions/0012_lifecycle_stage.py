"""reserved: an empty step in the chain, filled in by the change that needs it

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 01:30:00.000000

Several changes land at once; each owns one number so the chain never forks. A step that
stays empty changes nothing.
"""

from collections.abc import Sequence

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
