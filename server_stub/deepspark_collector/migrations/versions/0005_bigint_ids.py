"""Row ids are 64-bit on PostgreSQL: any id a client may name (up to 2^63 - 1) is a query.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

SQLite's INTEGER PRIMARY KEY is its 64-bit rowid already: nothing changes there. On
PostgreSQL the ids, the foreign key that names one, and the sequences that number them
become BIGINT (a SERIAL's sequence stays `AS integer` when only its column changes).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, the sequence that numbers it or None)
IDS = (("vendors", "id", True), ("keys", "vendor_id", False), ("submissions", "id", True))


def upgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer(), "bigint")


def downgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger(), "integer")


def _retype(to: sa.types.TypeEngine, was: sa.types.TypeEngine, sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, numbered in IDS:
        op.alter_column(table, column, type_=to, existing_type=was, existing_nullable=False)
        if numbered:  # the sequence revision 0001's SERIAL made, by PostgreSQL's naming
            op.execute(f"ALTER SEQUENCE {table}_{column}_seq AS {sequence_type}")
