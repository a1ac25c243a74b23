"""Inference figures per result and scenario, and the standings' inference kinds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-19
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deepspark_collector import board, scenarios
from deepspark_core.results import Result

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A submission id (0005): 64-bit, but SQLite's INTEGER PRIMARY KEY spelling.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FIGURES = ("throughput", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "accuracy",
           "j_per_inference", "power_w", "memory_gb")  # fmt: skip
BATCH = 1000  # stored results read at once


def upgrade() -> None:
    table = op.create_table(
        "scenario_figures",
        sa.Column("id", ID, primary_key=True),
        sa.Column("submission_id", ID, sa.ForeignKey("submissions.id"), nullable=False),
        sa.Column("scenario", sa.String(20), nullable=False),
        sa.Column("engine", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=True) for name in FIGURES),
    )
    op.create_index(
        "ux_scenario_figures_submission", "scenario_figures", ["submission_id", "scenario"],
        unique=True,
    )  # fmt: skip
    op.create_index(
        "ix_scenario_figures_scenario_id", "scenario_figures", ["scenario", "submission_id"]
    )
    connection, last = op.get_bind(), 0
    submissions = sa.table("submissions", sa.column("id"), sa.column("mode"),
                           sa.column("result_json"))  # fmt: skip
    query = sa.select(submissions.c.id, submissions.c.result_json).where(
        submissions.c.mode.like("%infer%")
    )
    while rows := connection.execute(
        query.where(submissions.c.id > last).order_by(submissions.c.id).limit(BATCH)
    ).all():
        figures = [
            {"submission_id": row.id, **f}
            for row in rows
            for f in scenarios.of(Result.model_validate_json(row.result_json))
        ]
        if figures:
            connection.execute(sa.insert(table), figures)
        last = rows[-1].id
    board.rebuild(connection)  # the results with infer runs join their scenarios' kinds


def downgrade() -> None:
    op.drop_table("scenario_figures")
    connection = op.get_bind()
    standings = sa.table("standings", sa.column("kind"))
    connection.execute(sa.delete(standings).where(standings.c.kind.like("infer-%")))
