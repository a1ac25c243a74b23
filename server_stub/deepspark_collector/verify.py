"""Verify one unpacked submission: who signed it, every artifact, every figure.

The same three checks as `deepspark-agent verify` (`signing.verify_envelope`,
`signing.verify_subjects`, `assess.assess`), composed here so that each failure carries
the HTTP status a client can act on. Fails closed: anything unexpected is a `Rejected`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deepspark_agent.attest import STATEMENT_FILE, check_artifacts, check_figures
from deepspark_agent.results import Result
from deepspark_agent.signing import VerificationError, verify_envelope

MAX_ENVELOPE = 64 * 2**20


class Rejected(Exception):
    """A submission the collector refuses: `status` for the client, `detail` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class KeyState:
    """A registered key as verification needs it."""

    public_key: Ed25519PublicKey
    revoked: bool


@dataclass(frozen=True)
class Envelope:
    raw: bytes
    sha256: str
    keyids: list[str]


@dataclass(frozen=True)
class Accepted:
    key_id: str
    envelope_sha256: str
    result: Result  # recomputed from the artifacts


def read_envelope(run_set: Path) -> Envelope:
    """The statement envelope's bytes, digest and claimed signers (not yet trusted)."""
    path = run_set / STATEMENT_FILE
    if not path.is_file() or path.stat().st_size > MAX_ENVELOPE:
        raise Rejected(400, f"{STATEMENT_FILE}: missing or too large")
    raw = path.read_bytes()
    try:
        signatures = json.loads(raw)["signatures"]
        keyids = [s["keyid"] for s in signatures]
    except (ValueError, KeyError, TypeError):
        raise Rejected(400, f"{STATEMENT_FILE}: not a DSSE envelope with signatures") from None
    if not keyids or not all(isinstance(k, str) and k for k in keyids):
        raise Rejected(400, f"{STATEMENT_FILE}: a signature has no keyid")
    return Envelope(raw, hashlib.sha256(raw).hexdigest(), keyids)


def trusted_keys(envelope: Envelope, keys: Mapping[str, KeyState]) -> dict[str, Ed25519PublicKey]:
    """The registered, unrevoked keys among the envelope's signers; 401 or 403 if none."""
    known = {k: keys[k] for k in envelope.keyids if k in keys}
    if not known:
        raise Rejected(401, f"unknown signing key: {', '.join(envelope.keyids)} is not registered")
    active = {k: state.public_key for k, state in known.items() if not state.revoked}
    if not active:
        raise Rejected(403, f"revoked signing key: {', '.join(known)}")
    return active


def verify_submission(run_set: Path, envelope: Envelope, keys: Mapping[str, KeyState]) -> Accepted:
    """Signature, artifacts, then recomputation; `Rejected` with the first failure."""
    active = trusted_keys(envelope, keys)
    try:
        statement = verify_envelope(envelope.raw, active)
    except VerificationError as exc:
        raise Rejected(401, f"bad signature: {exc}") from None
    signer = next(k for k in envelope.keyids if k in active)
    try:
        check_artifacts(statement, run_set)
    except VerificationError as exc:
        raise Rejected(422, f"artifact mismatch: {exc}") from None
    try:
        recomputed = check_figures(statement, run_set)
    except VerificationError as exc:
        raise Rejected(422, str(exc)) from None
    except (ValueError, OSError) as exc:  # SchemaError, unreadable artifacts
        raise Rejected(422, f"the artifacts cannot be assessed: {exc}") from None
    return Accepted(key_id=signer, envelope_sha256=envelope.sha256, result=recomputed)
