"""What the collector reads and writes in its database, one function per operation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from deepspark_agent.results import Result
from deepspark_agent.signing import key_id
from deepspark_collector.db import Key, Submission, Vendor, transaction
from deepspark_collector.verify import Accepted, KeyState


class Conflict(ValueError):
    """A vendor or key that exists already."""


class NotFound(LookupError):
    pass


def parse_public_key(pem: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 key ({type(key).__name__})")
    return key


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


def key_states(factory: sessionmaker[Session], kids: list[str]) -> dict[str, KeyState]:
    with factory() as session:
        keys = session.scalars(select(Key).where(Key.key_id.in_(kids))).all()
        return {
            k.key_id: KeyState(parse_public_key(k.public_key_pem), k.revoked_at is not None)
            for k in keys
        }


def find_submission(factory: sessionmaker[Session], envelope_sha256: str) -> Submission | None:
    with factory() as session:
        return session.scalar(
            select(Submission).where(Submission.envelope_sha256 == envelope_sha256)
        )


def add_submission(factory: sessionmaker[Session], accepted: Accepted) -> tuple[Submission, bool]:
    """The stored row and whether it is new: the same envelope twice is one row."""
    result = accepted.result
    row = Submission(
        envelope_sha256=accepted.envelope_sha256,
        key_id=accepted.key_id,
        model=result.plan.model,
        implements=result.plan.implements or result.plan.model,
        framework=result.plan.framework,
        config=result.plan.config,
        mode=result.plan.mode,
        nproc=result.plan.nproc,
        platform=platform(result),
        result_json=result.model_dump_json(),
        received_at=datetime.now(UTC),
        **figures(result),
    )
    try:
        with transaction(factory) as session:
            session.add(row)
        return row, True
    except IntegrityError:  # a concurrent upload of the same envelope won
        existing = find_submission(factory, accepted.envelope_sha256)
        if existing is None:
            raise
        return existing, False


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
        "received_at": row.received_at.isoformat(),
    }


def list_results(
    factory: sessionmaker[Session],
    model: str | None = None,
    vendor: str | None = None,
    device: str | None = None,
    config: str | None = None,
    mode: str | None = None,
    with_result: bool = False,
) -> list[dict[str, Any]]:
    """Result summaries, oldest first; with_result adds each whole result (one query). model
    is a workload's name or the DeepSpark model it implements (every framework's)."""
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


def compare(factory: sessionmaker[Session], model: str) -> list[dict[str, Any]]:
    """The best speed per platform and framework for `model`, fastest first, with that row's
    figures: two platforms, or one platform on two frameworks, side by side."""
    best: dict[tuple[str, str | None], dict[str, Any]] = {}
    for row in list_results(factory, model=model):
        if row["speed"] is None:
            continue
        side = (row["platform"], row["framework"])
        if side not in best or row["speed"] > best[side]["speed"]:
            best[side] = row
    return sorted(best.values(), key=lambda r: -r["speed"])
