"""What the collector reads and writes in its database, one function per operation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from deepspark_collector.db import Key, Submission, Vendor, transaction
from deepspark_collector.verify import KeyState, Signed
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
        platform=platform(result),
        result_json=result.model_dump_json(),
        received_at=datetime.now(UTC),
        **figures(result),
    )
    try:  # a row stored meanwhile is found by the unique index: no query before the insert
        with transaction(factory) as session:
            if session.scalar(select(Key.revoked_at).where(Key.key_id == signed.key_id)):
                raise Revoked(f"revoked signing key: {signed.key_id}")
            session.add(row)
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


def platform(result: Result) -> str:
    """The accelerator's name, or the CPU's on a host without one."""
    system = result.plan.system
    names = sorted({a.name or a.vendor for a in system.accelerators})
    return ", ".join(names) if names else f"cpu: {system.host.cpu_model}"


def figures(result: Result) -> dict[str, float | None]:
    d = result.dimensions
    return {
        "speed": d.speed.value if d.speed else None,
        "accuracy": d.accuracy.value if d.accuracy else None,
        "power": sum(d.power.mean_w) if d.power else None,
        "memory": sum(d.memory.mean_gb) if d.memory else None,
        "stability": d.stability.score if d.stability else None,
        "linearity": d.linearity.card if d.linearity else None,  # card; node is in the result
    }


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
        "envelope_sha256": row.envelope_sha256,
        "payload_sha256": row.payload_sha256,
        "received_at": row.received_at.isoformat(),
    }


def list_results(
    factory: sessionmaker[Session],
    model: str | None = None,
    vendor: str | None = None,
    device: str | None = None,
    config: str | None = None,
    mode: str | None = None,
    implementation: str | None = None,
    with_result: bool = False,
) -> list[dict[str, Any]]:
    """Result summaries, oldest first; with_result adds each whole result (one query). model
    is a workload's name or the DeepSpark model it implements (every framework's);
    implementation is "reference" or "vendor"."""
    query = (
        select(Submission, Vendor.name)
        .join(Key, Key.key_id == Submission.key_id)
        .join(Vendor, Vendor.id == Key.vendor_id)
        .order_by(Submission.id)
    )
    if model is not None:
        query = query.where((Submission.model == model) | (Submission.implements == model))
    for column, value in (
        (Vendor.name, vendor),
        (Submission.platform, device),
        (Submission.config, config),
        (Submission.mode, mode),
        (Submission.implementation, implementation),
    ):
        if value is not None:
            query = query.where(column == value)
    with factory() as session:
        rows = session.execute(query).all()
    if with_result:
        return [
            {**row_summary(row, name), "result": json.loads(row.result_json)} for row, name in rows
        ]
    return [row_summary(row, name) for row, name in rows]


def get_result(factory: sessionmaker[Session], submission_id: int) -> dict[str, Any]:
    query = (
        select(Submission, Vendor.name)
        .join(Key, Key.key_id == Submission.key_id)
        .join(Vendor, Vendor.id == Key.vendor_id)
        .where(Submission.id == submission_id)
    )
    with factory() as session:
        found = session.execute(query).first()
    if found is None:
        raise NotFound(f"no result {submission_id}")
    row, vendor = found
    return {**row_summary(row, vendor), "result": json.loads(row.result_json)}


def compare(
    factory: sessionmaker[Session], model: str, implementation: str | None = None
) -> list[dict[str, Any]]:
    """The best speed per platform and framework for `model`, fastest first, with that row's
    figures: two platforms, or one platform on two frameworks, side by side. implementation
    ("reference" or "vendor") keeps the comparison within one division."""
    best: dict[tuple[str, str | None], dict[str, Any]] = {}
    for row in list_results(factory, model=model, implementation=implementation):
        if row["speed"] is None:
            continue
        side = (row["platform"], row["framework"])
        if side not in best or row["speed"] > best[side]["speed"]:
            best[side] = row
    return sorted(best.values(), key=lambda r: -r["speed"])
