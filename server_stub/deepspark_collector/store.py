"""What the collector reads and writes in its database, one function per operation."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from deepspark_collector import board, scenarios
from deepspark_collector.db import (
    Key,
    ScenarioFigures,
    Standing,
    Submission,
    Vendor,
    misfit,
    transaction,
)
from deepspark_collector.verify import KeyState, Signed
from deepspark_core import export
from deepspark_core.reproduction import figures
from deepspark_core.results import Result
from deepspark_core.runset import STATEMENT_FILE
from deepspark_core.signing import key_id, verify_envelope

# Whose implementation a result measures, as its signed plan records it: the leaderboard's
# divisions, like MLPerf's closed (reference code) and open (a vendor's own) divisions.
Origin = Literal["reference", "vendor"]


class Conflict(ValueError):
    """A vendor or key that exists already."""


class NotFound(LookupError):
    pass


class Revoked(PermissionError):
    """The signing key was revoked after the submission's signature was checked."""


class Unfit(ValueError):
    """A verified result whose signed plan holds what no column can (db.misfit)."""


def parse_public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 key ({type(key).__name__})")
    return key


# A key id is its key's digest, so a registered id's PEM never changes: each is parsed once
# per process. Revocation is not cached: it is read with every submission.
_cached_public_key = lru_cache(maxsize=4096)(parse_public_key)


def add_vendor(factory: sessionmaker[Session], name: str) -> int:
    try:
        with transaction(factory) as session:
            vendor = Vendor(name=name)
            session.add(vendor)
            session.flush()
            return vendor.id
    except IntegrityError:
        raise Conflict(f"vendor {name!r} exists already") from None


def add_key(factory: sessionmaker[Session], vendor: str, pem: str) -> str:
    kid = key_id(parse_public_key(pem))
    with transaction(factory) as session:
        owner = session.scalar(select(Vendor).where(Vendor.name == vendor))
        if owner is None:
            raise NotFound(f"no vendor {vendor!r}")
        if session.get(Key, kid) is not None:
            raise Conflict(f"key {kid} is registered already")
        session.add(Key(key_id=kid, vendor_id=owner.id, public_key_pem=pem))
    return kid


def revoke_key(factory: sessionmaker[Session], kid: str) -> datetime:
    with transaction(factory) as session:
        key = session.get(Key, kid)
        if key is None:
            raise NotFound(f"no key {kid}")
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
        return key.revoked_at


def key_states(
    factory: sessionmaker[Session], kids: list[str], payload_sha256: str | None = None
) -> tuple[dict[str, KeyState], dict[tuple[str, str], Submission]]:
    """The registered keys among `kids`, each with its vendor's name; and, in the same query,
    the rows stored already of the statement `payload_sha256` (as the envelope claims it: a
    row counts only under the digest and key its signature verifies with), by (digest, key)."""
    query = select(Key, Vendor.name).join(Vendor).where(Key.key_id.in_(kids))
    if payload_sha256 is not None:
        same = (Submission.key_id == Key.key_id) & (Submission.payload_sha256 == payload_sha256)
        query = query.add_columns(Submission).outerjoin(Submission, same)
    with factory() as session:
        rows = session.execute(query).all()
    keys = {
        key.key_id: KeyState(
            _cached_public_key(key.public_key_pem), vendor, key.revoked_at is not None
        )
        for key, vendor, *_ in rows
    }
    found = (row for _, _, *row_or_none in rows for row in row_or_none if row is not None)
    return keys, {(row.payload_sha256, row.key_id): row for row in found}


def find_submission(
    factory: sessionmaker[Session], payload_sha256: str, kid: str
) -> Submission | None:
    """The row of this statement signed by this key, however its envelope was encoded."""
    query = select(Submission).where(
        Submission.payload_sha256 == payload_sha256, Submission.key_id == kid
    )
    with factory() as session:
        return session.scalar(query)


def add_submission(
    factory: sessionmaker[Session], signed: Signed, result: Result
) -> tuple[Submission, bool]:
    """The stored row and whether it is new: one row per statement and key. `result` is the
    recomputed one. One transaction: the same statement by the same key stored meanwhile is
    answered as it is; a key revoked since its signature was checked is refused (Revoked)."""
    claim = result.plan.reproduces  # the result it reproduces, as its signed plan says
    row = Submission(
        envelope_sha256=signed.envelope_sha256,
        payload_sha256=signed.payload_sha256,
        key_id=signed.key_id,
        model=result.plan.model,
        implements=result.plan.implements or result.plan.model,
        framework=result.plan.framework,
        implementation=result.plan.implementation.origin if result.plan.implementation else None,
        config=result.plan.config,
        mode=result.plan.mode,
        nproc=result.plan.nproc,
        platform=export.platform(result),
        result_json=result.model_dump_json(),
        unranked=result.unranked,
        received_at=datetime.now(UTC),
        scenarios=[ScenarioFigures(**figures) for figures in scenarios.of(result)],
        reproduces_id=claim.id if claim else None,
        reproduces_statement=claim.statement if claim else None,
        **figures(result),
    )
    if (problem := misfit(row)) is not None:
        raise Unfit(f"the signed plan's {problem}")
    try:  # a row stored meanwhile is found by the unique index: no query before the insert
        with transaction(factory) as session:
            if session.scalar(select(Key.revoked_at).where(Key.key_id == signed.key_id)):
                raise Revoked(f"revoked signing key: {signed.key_id}")
            session.add(row)
            session.flush()  # the id, for its standings
            board.record(session, row, result)
        return row, True
    except IntegrityError:  # another process stored the same statement first, or this
        existing = find_submission(factory, signed.payload_sha256, signed.key_id)
        if existing is None:  # envelope is stored already, credited to another of its signers
            raise Conflict("this envelope is stored already under another signing key") from None
        return existing, False


def fill_payload_digests(factory: sessionmaker[Session], artifacts_dir: Path) -> int:
    """Give rows stored before revision 0003 their statement's digest, from the envelope kept
    with them, verified again with their key; the number filled. A row without a readable
    kept envelope, or a replay of a statement already stored for its key (older collectors
    stored those as new rows), keeps NULL: still listed, only never matched."""
    query = (
        select(Submission, Key.public_key_pem)
        .join(Key, Key.key_id == Submission.key_id)
        .where(Submission.payload_sha256.is_(None))
        .order_by(Submission.id)
    )
    filled = 0
    with transaction(factory) as session:
        older = session.execute(query).all()
        if not older:
            return 0
        taken = set(
            session.execute(
                select(Submission.payload_sha256, Submission.key_id).where(
                    Submission.payload_sha256.is_not(None)
                )
            ).tuples()
        )
        for row, pem in older:
            try:
                raw = (artifacts_dir / row.envelope_sha256 / STATEMENT_FILE).read_bytes()
                signed = verify_envelope(raw, {row.key_id: parse_public_key(pem)})
            except (OSError, ValueError):  # unreadable, or no longer verifies
                continue
            if (signed.payload_sha256, row.key_id) in taken:
                continue
            taken.add((signed.payload_sha256, row.key_id))
            row.payload_sha256 = signed.payload_sha256
            filled += 1
    return filled


def row_summary(row: Submission, vendor: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "vendor": vendor,
        "key_id": row.key_id,
        "model": row.model,
        "implements": row.implements,
        "framework": row.framework,
        "implementation": row.implementation,
        "config": row.config,
        "mode": row.mode,
        "nproc": row.nproc,
        "platform": row.platform,
        "speed": row.speed,
        "accuracy": row.accuracy,
        "power_w": row.power,
        "memory_gb": row.memory,
        "stability": row.stability,
        "linearity": row.linearity,
        "unranked": row.unranked,
        # each inference scenario it ran: its best infer run's figures (`scenarios`)
        "inference": {s.scenario: s.as_dict() for s in row.scenarios},
        "envelope_sha256": row.envelope_sha256,
        "payload_sha256": row.payload_sha256,
        "received_at": row.received_at.isoformat(),
    }


# A page of results: at most this many, and this many when the client does not say.
PAGE_MAX = 1000
PAGE_DEFAULT = 100


@dataclass(frozen=True)
class Filters:
    """What a list of results is narrowed to; None: any. model is a workload's name or the
    DeepSpark model it implements (every framework's), workload only the former;
    implementation "reference" or "vendor"; kind "speed" or "converge" (results with such
    runs), "infer-offline" or "infer-latency" (results with infer runs in that scenario). An
    empty implementation or framework is an unrecorded one."""

    model: str | None = None
    workload: str | None = None
    vendor: str | None = None
    device: str | None = None
    config: str | None = None
    mode: str | None = None
    implementation: str | None = None
    framework: str | None = None
    kind: str | None = None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues after; ValueError for one this collector did not give."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor this collector gave") from None
    prefix, _, number = text.partition(":")
    if prefix != "after" or not number.isdigit() or int(number) > 2**63 - 1:
        raise ValueError("not a cursor this collector gave")
    return int(number)


def _summaries() -> Select:
    return (
        select(Submission, Vendor.name)
        .join(Key, Key.key_id == Submission.key_id)
        .join(Vendor, Vendor.id == Key.vendor_id)
    )


def _filtered(query: Select, f: Filters) -> Select:
    if f.model is not None:
        query = query.where((Submission.model == f.model) | (Submission.implements == f.model))
    if f.kind in board.INFERENCE:
        ran = select(ScenarioFigures.submission_id).where(
            ScenarioFigures.scenario == board.INFERENCE[f.kind]
        )
        query = query.where(Submission.id.in_(ran))
    elif f.kind is not None:  # speed+converge is of both kinds
        query = query.where(Submission.mode.in_(board.modes_with(f.kind)))
    for column, value in (
        (Submission.model, f.workload),
        (Vendor.name, f.vendor),
        (Submission.platform, f.device),
        (Submission.config, f.config),
        (Submission.mode, f.mode),
        (Submission.implementation, f.implementation),
        (Submission.framework, f.framework),
    ):
        if value == "" and column in (Submission.implementation, Submission.framework):
            query = query.where(column.is_(None))
        elif value is not None:
            query = query.where(column == value)
    return query


def _page(
    factory: sessionmaker[Session], filters: Filters, after: int, limit: int
) -> tuple[list[tuple[Submission, str]], str | None]:
    """A page of rows (each with its vendor's name) in id order after the id `after`, and the
    cursor of the next page (None: this is the last)."""
    query = _filtered(_summaries(), filters).where(Submission.id > after)
    with factory() as session:
        rows = session.execute(query.order_by(Submission.id).limit(limit + 1)).all()
    following = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], following


def list_results(
    factory: sessionmaker[Session],
    filters: Filters = Filters(),
    after: int = 0,
    limit: int = PAGE_DEFAULT,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of result summaries in id order (oldest first) after the id `after`, and the
    cursor of the next page (None: this is the last)."""
    rows, following = _page(factory, filters, after, limit)
    return [row_summary(row, name) for row, name in rows], following


def export_results(
    factory: sessionmaker[Session], filters: Filters, after: int, limit: int
) -> tuple[Iterator[tuple[Result, export.Stored]], str | None]:
    """A page of results as `list_results` reads them, each parsed only when the iterator
    reaches it (an export streams), with its identity here; and the next page's cursor."""
    rows, following = _page(factory, filters, after, limit)
    stored = (
        (
            Result.model_validate_json(row.result_json),
            export.Stored(row.id, vendor, row.received_at.isoformat()),
        )
        for row, vendor in rows
    )
    return stored, following


def get_result(factory: sessionmaker[Session], submission_id: int) -> dict[str, Any]:
    """A result's summary and whole result; the reproductions of it stored here, and the
    result it reproduces (`reproduces`, None when it reproduces none)."""
    with factory() as session:
        found = session.execute(_summaries().where(Submission.id == submission_id)).first()
        if found is None:
            raise NotFound(f"no result {submission_id}")
        row, vendor = found
        copies = session.execute(
            _summaries()
            .where(Submission.reproduces_id == row.id)
            .where(Submission.reproduces_statement == row.payload_sha256)
            .order_by(Submission.id)
        ).all()
        original = None
        if row.reproduces_id is not None:  # this collector's, if its statement is the one named
            original = session.execute(
                _summaries()
                .where(Submission.id == row.reproduces_id)
                .where(Submission.payload_sha256 == row.reproduces_statement)
            ).first()
    result = json.loads(row.result_json)
    return {
        **row_summary(row, vendor),
        "result": result,
        "reproduces": _reproduces(result["plan"].get("reproduces"), original),
        "reproductions": [_reproduction(copy, name, row) for copy, name in copies],
    }


# A result's figures in its summary: what a reproduction's ratios compare.
RATIO_FIGURES = ("speed", "accuracy", "power", "memory", "stability", "linearity")


def _reproduction(copy: Submission, vendor: str, original: Submission) -> dict[str, Any]:
    """A reproduction of `original`: whose, where, its figures over the original's."""
    ratios = {}
    for name in RATIO_FIGURES:
        here, there = getattr(copy, name), getattr(original, name)
        ratios[name] = here / there if here is not None and there else None
    return {"id": copy.id, "vendor": vendor, "platform": copy.platform,
            "received_at": copy.received_at.isoformat(), "ratios": ratios}  # fmt: skip


def _reproduces(
    claim: dict[str, Any] | None, original: tuple[Submission, str] | None
) -> dict[str, Any] | None:
    """What a result's signed plan says it reproduces; `known`: that result is stored here
    (its id and statement digest match), with its vendor and platform."""
    if claim is None:
        return None
    known = {"vendor": original[1], "platform": original[0].platform} if original else {}
    return {**claim, "known": original is not None, **known}


def latest_id(factory: sessionmaker[Session]) -> int:
    """The newest result's id (0: none): what the standings are a version of."""
    with factory() as session:
        return session.scalar(select(func.max(Submission.id))) or 0


def standings(factory: sessionmaker[Session], model: str) -> list[dict[str, Any]]:
    """The leaderboard's groups of `model` (a workload or what it implements), each with its
    count and its best result (summary and whole result): one query for the groups, one for
    their best results, however many results they count."""
    query = select(Standing).where((Standing.model == model) | (Standing.implements == model))
    with factory() as session:
        groups = session.scalars(query.order_by(Standing.id)).all()
        found = session.execute(
            _summaries().where(Submission.id.in_([g.best_id for g in groups]))
        ).all()
    best = {
        row.id: {**row_summary(row, name), "result": json.loads(row.result_json)}
        for row, name in found
    }
    return [{**board.as_dict(g), "best": best[g.best_id]} for g in groups]


def models(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Each workload with results, by name: its results of each kind (`counts`), its
    platforms and its best speed; from the groups, not the results."""
    query = select(
        Standing.model, Standing.platform, Standing.kind,
        func.sum(Standing.results), func.max(Standing.best_score),
    ).group_by(Standing.model, Standing.platform, Standing.kind)  # fmt: skip
    entries: dict[str, dict[str, Any]] = {}
    with factory() as session:
        rows = session.execute(query).all()
    for model, platform, kind, count, score in rows:
        entry = entries.setdefault(
            model,
            {"model": model, "platforms": set(), "best": None,
             "counts": dict.fromkeys(board.KINDS, 0)},
        )  # fmt: skip
        entry["platforms"].add(platform)
        entry["counts"][kind] += count
        if kind == "speed" and score is not None:
            entry["best"] = max(score, entry["best"] or score)
    return [entries[m] | {"platforms": sorted(entries[m]["platforms"])} for m in sorted(entries)]


def compare(
    factory: sessionmaker[Session], model: str, implementation: str | None = None
) -> list[dict[str, Any]]:
    """Each platform and framework with results for `model`: its best result of each kind
    (the leaderboard's best over its groups; an inference kind's with its scenario's figures
    in place of the training ones), fastest first: two platforms, or one platform on two
    frameworks, side by side. implementation ("reference" or "vendor") keeps the comparison
    within one division."""
    sides: dict[tuple[str, str], dict[str, Any]] = {}
    for group in standings(factory, model):
        if implementation is not None and group["implementation"] != implementation:
            continue
        key = (group["platform"], group["framework"])
        side = sides.setdefault(
            key, {"platform": key[0], "framework": key[1] or None,
                  **dict.fromkeys(board.KINDS)}
        )  # fmt: skip
        kind, best = group["kind"], _without_result(group["best"])
        if kind in board.INFERENCE:
            best |= best["inference"][board.INFERENCE[kind]]
        if side[kind] is None or board.better(group, side[kind]["standing"]):
            side[kind] = {"standing": group, **best}
    for side in sides.values():
        for kind in board.KINDS:
            if side[kind] is not None:
                del side[kind]["standing"]
    return sorted(sides.values(), key=lambda s: _speed_first(s["speed"]))


def _without_result(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "result"}


def _speed_first(best: dict[str, Any] | None) -> tuple[bool, float]:
    speed = best["speed"] if best else None
    return speed is None, -(speed or 0.0)
