"""Submissions record the DeepSpark model a workload implements and its framework.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:  # SQLite rebuilds the table
        batch.add_column(sa.Column("implements", sa.String(200), nullable=True))
        batch.add_column(sa.Column("framework", sa.String(100), nullable=True))
    # Results before this revision: the workload was the model, its framework unrecorded.
    op.execute("UPDATE submissions SET implements = model")
    with op.batch_alter_table("submissions") as batch:
        batch.alter_column("implements", existing_type=sa.String(200), nullable=False)
        batch.create_index("ix_submissions_implements", ["implements"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_implements")
        batch.drop_column("framework")
        batch.drop_column("implements")
