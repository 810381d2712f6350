"""send log: reason code and detail apart from the text people read

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 22:40:00.000000

Rows written before this revision carry only ``reason`` ("capped: 3 emails ...",
"holdout group (10% of cart_recovery)", an SMTP reply for ``failed``): their code and
detail are filled in once here, so no code ever reads the text back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The codes as they were written into the text ("code" or "code: detail") until now.
WRITTEN_AS_PREFIX = (
    "invalid_email",
    "unsubscribed",
    "suppressed",
    "cart_empty",
    "ordered",
    "capped",
    "hard_bounce",
)


def upgrade() -> None:
    op.add_column("send_log", sa.Column("reason_code", sa.String(length=32), nullable=True))
    op.add_column("send_log", sa.Column("reason_detail", sa.Text(), nullable=True))
    for code in WRITTEN_AS_PREFIX:
        op.execute(
            sa.text(
                "UPDATE send_log SET reason_code = :code "
                "WHERE reason_code IS NULL AND reason = :code"
            ).bindparams(code=code)
        )
        op.execute(
            sa.text(
                "UPDATE send_log SET reason_code = :code, reason_detail = substr(reason, :skip) "
                "WHERE reason_code IS NULL AND substr(reason, 1, :n) = :prefix"
            ).bindparams(code=code, skip=len(code) + 3, n=len(code) + 2, prefix=f"{code}: ")
        )
    op.execute(
        "UPDATE send_log SET reason_code = 'holdout' "
        "WHERE reason_code IS NULL AND status = 'held_out'"
    )
    op.execute(
        "UPDATE send_log SET reason_code = 'rejected', reason_detail = reason "
        "WHERE reason_code IS NULL AND status = 'failed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("send_log", schema=None) as batch_op:
        batch_op.drop_column("reason_detail")
        batch_op.drop_column("reason_code")
