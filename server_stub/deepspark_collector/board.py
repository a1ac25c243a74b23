"""The leaderboard's standings: one row per group (`db.Standing`), its count and best result.

`record` upserts a new result's groups in the transaction that stores it; `rebuild` fills the
table from every stored result (revision 0006, and a bulk load that inserted rows directly).
Reads are `store`'s.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from sqlalchemy import Connection, and_, bindparam, case, delete, insert, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from deepspark_collector.db import GROUP, Standing, Submission
from deepspark_core.results import Result

# Which runs a result has: speed runs (ranked by speed) or converge runs (by accuracy).
Kind = Literal["speed", "converge"]
KINDS: tuple[Kind, ...] = get_args(Kind)
COLUMNS = (*GROUP, "results", "best_id", "best_ranked", "best_score")


def entries(
    mode: str, ranked: bool, speed: float | None, accuracy: float | None, direction: str
) -> list[dict[str, Any]]:
    """A result's kinds with its standing in each: speed runs rank by speed, converge runs by
    accuracy in its metric's direction (higher is better either way)."""
    scores = {
        "speed": speed,
        "converge": None if accuracy is None else accuracy * (1 if direction == "higher" else -1),
    }
    return [
        {"kind": kind, "best_ranked": ranked, "best_score": scores[kind]}
        for kind in KINDS
        if kind in mode.split("+")
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
    ranked = result.unranked is None
    for entry in entries(row.mode, ranked, row.speed, row.accuracy, result.plan.quality.direction):
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
               Submission.platform, Submission.framework, Submission.config, Submission.mode,
               Submission.speed, Submission.accuracy, Submission.result_json)  # fmt: skip
    while rows := connection.execute(
        select(*columns).where(Submission.id > last).order_by(Submission.id).limit(batch)
    ).all():
        for row in rows:
            stored = json.loads(row.result_json)
            reason = Result.model_validate(stored).unranked
            ranked = reason is None
            if reason is not None:
                unranked.append({"sid": row.id, "reason": reason})
            direction = stored["plan"]["quality"]["direction"]
            for entry in entries(row.mode, ranked, row.speed, row.accuracy, direction):
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
