"""The leaderboard's standings (one row per group) and an index for every read filter.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deepspark_collector import board

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

GROUP = ("model", "implements", "implementation", "platform", "framework", "config", "kind")
# Every filter of the read API (vendor through key_id), each with the id: a keyset page of
# one filter is a range of one index.
FILTERED = ("key_id", "model", "implements", "framework", "implementation", "config", "mode",
            "platform")  # fmt: skip
# A submission id (0005): 64-bit, but SQLite's INTEGER PRIMARY KEY spelling.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The single-column indexes of 0001, 0002 and 0004 that the (column, id) ones replace.
SINGLE = ("key_id", "model", "implements", "implementation", "platform")


def upgrade() -> None:
    op.create_table(
        "standings",
        sa.Column("id", ID, primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("implements", sa.String(200), nullable=False),
        sa.Column("implementation", sa.String(20), nullable=False),
        sa.Column("platform", sa.String(300), nullable=False),
        sa.Column("framework", sa.String(100), nullable=False),
        sa.Column("config", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("best_id", ID, sa.ForeignKey("submissions.id"), nullable=False),
        sa.Column("best_ranked", sa.Boolean(), nullable=False),
        sa.Column("best_score", sa.Float(), nullable=True),
    )
    op.add_column("submissions", sa.Column("unranked", sa.String(200), nullable=True))
    op.create_index("ux_standings_group", "standings", list(GROUP), unique=True)
    op.create_index("ix_standings_model", "standings", ["model"])
    op.create_index("ix_standings_implements", "standings", ["implements"])
    for column in SINGLE:
        op.drop_index(f"ix_submissions_{column}", table_name="submissions")
    for column in FILTERED:
        op.create_index(f"ix_submissions_{column}_id", "submissions", [column, "id"])
    board.rebuild(op.get_bind())


def downgrade() -> None:
    for column in FILTERED:
        op.drop_index(f"ix_submissions_{column}_id", table_name="submissions")
    for column in SINGLE:
        op.create_index(f"ix_submissions_{column}", "submissions", [column])
    op.drop_table("standings")
    op.drop_column("submissions", "unranked")
