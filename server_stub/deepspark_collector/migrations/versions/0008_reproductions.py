"""A submission records the result it reproduces (`up --reproduce`), as its signed plan says.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A submission id (0005): 64-bit, but SQLite's INTEGER PRIMARY KEY spelling.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # No foreign key: the id may be another collector's, or none at all ("unknown result").
    # No row to fill: plans before this revision could not name a result they reproduce.
    with op.batch_alter_table("submissions") as batch:  # SQLite rebuilds the table
        batch.add_column(sa.Column("reproduces_id", ID, nullable=True))
        batch.add_column(sa.Column("reproduces_statement", sa.String(64), nullable=True))
        # A result's reproductions, oldest first: a range of one index.
        batch.create_index("ix_submissions_reproduces_id_id", ["reproduces_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_reproduces_id_id")
        batch.drop_column("reproduces_statement")
        batch.drop_column("reproduces_id")
