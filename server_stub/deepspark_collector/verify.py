"""Verify one unpacked submission: who signed it, every artifact, the whole result.

The same checks as `deepspark-agent verify` (`signing.verify_envelope`,
`attest.check_artifacts`, `attest.check_result`), split in two so that the cheap one (the
signature, and so the key and vendor to credit) runs before the collector charges a key's
rate limit or looks for the same statement stored already, and the expensive one
(artifacts, recomputation) only after. Each failure carries the HTTP status a client can act
on. Fails closed: anything unexpected is a `Rejected`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deepspark_core import nesting
from deepspark_core.attest import check_artifacts, check_result
from deepspark_core.result_bundle import Unpacked
from deepspark_core.results import Result
from deepspark_core.runset import STATEMENT_FILE
from deepspark_core.signing import (
    Statement,
    VerificationError,
    payload_sha256,
    verify_envelope,
)

MAX_ENVELOPE = 64 * 2**20
# More signatures than any signer needs (DSSE allows several: a vendor's key beside a lab's);
# the key ids of all of them are looked up at once, before anything is verified.
MAX_SIGNATURES = 16


class Rejected(Exception):
    """A submission the collector refuses: `status` for the client, `detail` says why, and for
    a 429 `retry_after`, the seconds until the client may try again."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class KeyState:
    """A registered key as verification needs it."""

    public_key: Ed25519PublicKey
    vendor: str
    revoked: bool


@dataclass(frozen=True)
class Envelope:
    raw: bytes
    sha256: str
    keyids: list[str]
    # The digest of the payload as the envelope carries it, to look for a stored row in the
    # same query as the keys; None where there is none (verification refuses the envelope).
    payload_sha256: str | None


@dataclass(frozen=True)
class Signed:
    """An envelope whose signature verified: the key (and its vendor) it is credited to.

    `payload_sha256` and `key_id` identify the submission: the same statement re-encoded or
    re-signed by the same key is the same submission, whatever its envelope's bytes."""

    key_id: str
    vendor: str
    payload_sha256: str
    envelope_sha256: str
    statement: Statement


def read_envelope(run_set: Path) -> Envelope:
    """The statement envelope's bytes, digest and claimed signers (not yet trusted)."""
    path = run_set / STATEMENT_FILE
    if not path.is_file() or path.stat().st_size > MAX_ENVELOPE:
        raise Rejected(400, f"{STATEMENT_FILE}: missing or too large")
    raw = path.read_bytes()
    try:
        envelope = nesting.loads(raw.decode("utf-8"))
        keyids = [s["keyid"] for s in envelope["signatures"]]
    except (ValueError, KeyError, TypeError):
        raise Rejected(400, f"{STATEMENT_FILE}: not a DSSE envelope with signatures") from None
    if len(keyids) > MAX_SIGNATURES:
        raise Rejected(400, f"{STATEMENT_FILE}: more than {MAX_SIGNATURES} signatures")
    if not keyids or not all(isinstance(k, str) and k for k in keyids):
        raise Rejected(400, f"{STATEMENT_FILE}: a signature has no keyid")
    if any("\0" in k for k in keyids):  # no key's id, and PostgreSQL refuses it in a query
        raise Rejected(400, f"{STATEMENT_FILE}: a keyid holds a NUL character")
    try:
        claimed = payload_sha256(envelope)
    except VerificationError:
        claimed = None
    return Envelope(raw, hashlib.sha256(raw).hexdigest(), keyids, claimed)


def check_signature(
    envelope: Envelope, keys: Mapping[str, KeyState], vendor: str | None = None
) -> Signed:
    """The key and vendor to credit: a registered, unrevoked key whose signature verified, of
    the claimed `vendor`; without a claim, the verified keys must all be one vendor's.

    Every registered key named in the envelope is checked, revoked or not, so that a
    signature naming one that does not verify (a forgery) refuses the whole envelope."""
    if not keys:
        raise Rejected(401, f"unknown signing key: {', '.join(envelope.keyids)} is not registered")
    try:
        verified = verify_envelope(envelope.raw, {k: s.public_key for k, s in keys.items()})
    except VerificationError as exc:
        raise Rejected(401, f"bad signature: {exc}") from None
    active = [k for k in verified.key_ids if not keys[k].revoked]
    if not active:
        raise Rejected(403, f"revoked signing key: {', '.join(verified.key_ids)}")
    if vendor is not None:
        active = [k for k in active if keys[k].vendor == vendor]
        if not active:
            raise Rejected(403, f"not signed by a registered, unrevoked key of vendor {vendor!r}")
    vendors = sorted({keys[k].vendor for k in active})
    if len(vendors) > 1:
        raise Rejected(
            400,
            f"ambiguous: signed by keys of vendors {', '.join(vendors)}; "
            "claim one (?vendor=NAME, `submit --vendor NAME`)",
        )
    signer = active[0]
    return Signed(
        key_id=signer,
        vendor=keys[signer].vendor,
        payload_sha256=verified.payload_sha256,
        envelope_sha256=envelope.sha256,
        statement=verified.statement,
    )


def check_run_set(unpacked: Unpacked, signed: Signed) -> Result:
    """Artifacts (their digests as extracted), then the whole result recomputed; `Rejected`
    with the first failure."""
    run_set = unpacked.run_set
    try:
        check_artifacts(signed.statement, run_set, unpacked.digests)
    except VerificationError as exc:
        raise Rejected(422, f"artifact mismatch: {exc}") from None
    try:
        return check_result(signed.statement, run_set)
    except VerificationError as exc:
        raise Rejected(422, str(exc)) from None
    except (ValueError, OSError) as exc:  # SchemaError, unreadable artifacts
        raise Rejected(422, f"the artifacts cannot be assessed: {exc}") from None
