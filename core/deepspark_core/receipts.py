"""Receipts: the collector's signed word that it accepted a submission.

A receipt is a DSSE envelope (payload type `RECEIPT_TYPE`) over the canonical JSON of
{submission_id, envelope_sha256, received_at}, signed with the collector's own Ed25519 key,
which `collector_key` creates in the data directory on first start. Signing reuses the
agent's DSSE primitives (`pae`, `canonical_json`, `key_id`); `verify_receipt` fails closed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from deepspark_core.signing import (
    PRIVATE_KEY_NAME,
    VerificationError,
    canonical_json,
    init_keys,
    key_id,
    load_private_key,
    pae,
)

RECEIPT_TYPE = "application/vnd.deepspark.receipt+json"
# A submission's header naming the key that signed it (unverified): the collector refuses a
# key whose rate limit is spent before reading the body, and charges only the key that verifies.
KEY_ID_HEADER = "X-DeepSpark-Key-Id"


def collector_key(key_dir: Path) -> Ed25519PrivateKey:
    """The collector's signing key, generated into `key_dir` the first time."""
    if not (key_dir / PRIVATE_KEY_NAME).exists():
        init_keys(key_dir)
    return load_private_key(key_dir)


def sign_receipt(receipt: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    payload = canonical_json(receipt)
    return {
        "payloadType": RECEIPT_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": key_id(key.public_key()),
                "sig": base64.b64encode(key.sign(pae(RECEIPT_TYPE, payload))).decode("ascii"),
            }
        ],
    }


def verify_receipt(envelope: dict[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The receipt in `envelope`, once `public_key`'s signature verifies; VerificationError."""
    if envelope.get("payloadType") != RECEIPT_TYPE:
        raise VerificationError(f"payloadType is not {RECEIPT_TYPE!r}")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        wanted = key_id(public_key)
        sigs = [s["sig"] for s in envelope["signatures"] if s.get("keyid") == wanted]
        signatures = [base64.b64decode(s, validate=True) for s in sigs]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise VerificationError("malformed receipt envelope") from None
    for signature in signatures:
        try:
            public_key.verify(signature, pae(RECEIPT_TYPE, payload))
        except InvalidSignature:
            continue
        receipt = json.loads(payload)
        if not isinstance(receipt, dict):
            raise VerificationError("receipt payload is not a JSON object")
        return receipt
    raise VerificationError("no valid signature by the collector's key")
