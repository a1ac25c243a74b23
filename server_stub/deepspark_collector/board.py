"""The leaderboard's standings: one row per group (`db.Standing`), its count and best result.

`record` upserts a new result's groups in the transaction that stores it; `rebuild` fills the
table from every stored result (revisions 0006 and 0007, and a bulk load that inserted rows
directly). Reads are `store`'s.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Literal, get_args

from sqlalchemy import Connection, and_, bindparam, case, delete, insert, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from deepspark_collector import scenarios
from deepspark_collector.db import GROUP, Standing, Submission
from deepspark_core.results import Result

# Which runs a result has: speed runs (ranked by speed), converge runs (by accuracy), infer
# runs in a scenario (by its best run's throughput offline, its p90 latency single-stream).
Kind = Literal["speed", "converge", "infer-offline", "infer-latency"]
KINDS: tuple[Kind, ...] = get_args(Kind)
TRAINING: tuple[Kind, ...] = ("speed", "converge")
INFERENCE = {f"infer-{scenario}": scenario for scenario in scenarios.RANKED_BY}
assert set(KINDS) == {*TRAINING, *INFERENCE}
COLUMNS = (*GROUP, "results", "best_id", "best_ranked", "best_score")


def modes_with(kind: str) -> list[str]:
    """Every plan mode (`RunPlan.mode`: its run modes joined, speed first) with `kind`'s runs."""
    others = [m for m in ("speed", "infer", "converge") if m != kind]
    subsets = [{kind, *chosen} for n in range(3) for chosen in combinations(others, n)]
    return ["+".join(sorted(modes, reverse=True)) for modes in subsets]


def entries(result: Result, speed: float | None, accuracy: float | None) -> list[dict[str, Any]]:
    """A result's kinds with its standing in each (higher is better): speed runs by speed,
    converge runs by accuracy in its metric's direction (both as stored in its row), each
    inference scenario by its best run (`scenarios.score`)."""
    ranked, modes = result.unranked is None, result.plan.mode.split("+")
    sign = 1 if result.plan.quality.direction == "higher" else -1
    scores = {"speed": speed, "converge": None if accuracy is None else accuracy * sign}
    scores = {kind: score for kind, score in scores.items() if kind in modes}
    for scenario, run in scenarios.best_runs(result).items():
        scores[f"infer-{scenario}"] = scenarios.score(run)
    return [
        {"kind": kind, "best_ranked": ranked, "best_score": score} for kind, score in scores.items()
    ]


def as_dict(standing: Standing) -> dict[str, Any]:
    return {column: getattr(standing, column) for column in COLUMNS}


def group_of(row: Submission) -> dict[str, str]:
    return {
        "model": row.model,
        "implements": row.implements,
        "implementation": row.implementation or "",
        "platform": row.platform,
        "framework": row.framework or "",
        "config": row.config,
    }


def record(session: Session, row: Submission, result: Result) -> None:
    """Count the flushed `row` in its groups, and make it their best where it is better. One
    statement per kind, atomic on its own (an upsert): concurrent inserts of one new group
    neither collide nor lose a count."""
    dialect = session.get_bind().dialect.name
    upsert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    for entry in entries(result, row.speed, row.accuracy):
        stmt = upsert(Standing).values(**group_of(row), **entry, results=1, best_id=row.id)
        new, old = stmt.excluded, Standing
        better = or_(
            and_(new.best_ranked, not_(old.best_ranked)),
            and_(
                new.best_ranked == old.best_ranked,
                new.best_score.is_not(None),
                or_(old.best_score.is_(None), new.best_score > old.best_score),
            ),
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=list(GROUP),
                set_={
                    "results": old.results + 1,
                    **{
                        name: case((better, getattr(new, name)), else_=getattr(old, name))
                        for name in ("best_id", "best_ranked", "best_score")
                    },
                },
            )
        )


def rebuild(connection: Connection, batch: int = 5000) -> int:
    """Every group again from the stored results (oldest first, so the earliest of equals is
    the best, as `record` keeps it), and each result's `unranked` reason; the number of
    groups."""
    groups: dict[tuple, dict[str, Any]] = {}
    unranked: list[dict[str, Any]] = []  # each result's reason, for its column
    last = 0
    columns = (Submission.id, Submission.model, Submission.implements, Submission.implementation,
               Submission.platform, Submission.framework, Submission.config, Submission.speed,
               Submission.accuracy, Submission.result_json)  # fmt: skip
    while rows := connection.execute(
        select(*columns).where(Submission.id > last).order_by(Submission.id).limit(batch)
    ).all():
        for row in rows:
            result = Result.model_validate_json(row.result_json)
            if result.unranked is not None:
                unranked.append({"sid": row.id, "reason": result.unranked})
            for entry in entries(result, row.speed, row.accuracy):
                key = (*group_of(row).values(), entry["kind"])
                standing = groups.get(key)
                if standing is None:
                    groups[key] = {**dict(zip(GROUP, key, strict=True)), **entry, "results": 1,
                                   "best_id": row.id}  # fmt: skip
                    continue
                standing["results"] += 1
                if better(entry, standing):
                    standing.update(entry, best_id=row.id)
        last = rows[-1].id
    if unranked:
        connection.execute(
            update(Submission).where(Submission.id == bindparam("sid")),
            [{"sid": u["sid"], "unranked": u["reason"]} for u in unranked],
        )
    connection.execute(delete(Standing))
    if groups:
        connection.execute(insert(Standing), list(groups.values()))
    return len(groups)


def better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """`record`'s order, in Python: ranked first, then the higher score."""
    if new["best_ranked"] != old["best_ranked"]:
        return new["best_ranked"]
    return new["best_score"] is not None and (
        old["best_score"] is None or new["best_score"] > old["best_score"]
    )
