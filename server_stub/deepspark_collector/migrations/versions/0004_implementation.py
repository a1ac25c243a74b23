"""Submissions record whose implementation ran: the project's reference or a vendor's.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: a result from an agent that did not record its implementation (before plan.json's
    # `implementation`); the leaderboard lists those apart, never as reference results.
    with op.batch_alter_table("submissions") as batch:  # SQLite rebuilds the table
        batch.add_column(sa.Column("implementation", sa.String(20), nullable=True))
        batch.create_index("ix_submissions_implementation", ["implementation"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_implementation")
        batch.drop_column("implementation")
