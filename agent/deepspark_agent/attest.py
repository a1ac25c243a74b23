"""Sign a run set's result, and verify one: signature, artifacts, and recomputed figures.

The statement's subjects are the raw artifacts the agent recorded (events, telemetry, run
and plan records); its predicate is the result. Verification trusts none of the claimed
figures: it checks the signature, every artifact against its digest, then recomputes the
result from the artifacts and compares it with the claim.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import ValidationError

from deepspark_agent.assess import assess
from deepspark_agent.files import write_atomic
from deepspark_agent.results import RESULT_FILE, Result
from deepspark_agent.signing import (
    VerificationError,
    keyring,
    make_statement,
    sign_envelope,
    subjects_under,
    verify_envelope,
    verify_subjects,
)

STATEMENT_FILE = "statement.dsse.json"
# Written from the artifacts, not artifacts themselves: the predicate carries the result.
DERIVED = {RESULT_FILE, "report.md", STATEMENT_FILE}


@dataclass(frozen=True)
class Verified:
    key_id: str
    artifacts: int
    result: Result


def artifacts(run_set: Path) -> list[Path]:
    """Every file the run set holds but the derived ones at its top."""
    derived = {run_set / name for name in DERIVED}
    return sorted(p for p in run_set.rglob("*") if p.is_file() and p not in derived)


def sign_run_set(run_set: Path, result: Result, key: Ed25519PrivateKey) -> Path:
    """Write the DSSE envelope of the run set's in-toto statement beside its files."""
    statement = make_statement(
        subjects_under(run_set, artifacts(run_set)),
        {"result": result.model_dump(mode="json")},
    )
    path = run_set / STATEMENT_FILE
    write_atomic(path, (json.dumps(sign_envelope(statement, key), indent=2) + "\n").encode())
    return path


def check_artifacts(statement: Mapping[str, Any], run_set: Path) -> None:
    """Every subject matches its digest, and no file beside them goes unsigned (an extra
    run-N would change the recomputation)."""
    verify_subjects(statement, run_set)
    signed = {subject["name"] for subject in statement["subject"]} | DERIVED
    present = {p.relative_to(run_set).as_posix() for p in run_set.rglob("*") if p.is_file()}
    if extra := sorted(present - signed):
        raise VerificationError(f"unsigned files beside the signed artifacts: {extra[0]}")


def check_figures(statement: Mapping[str, Any], run_set: Path) -> Result:
    """The result recomputed from the artifacts, if the claimed figures equal it."""
    try:
        claimed = Result.model_validate(statement["predicate"]["result"])
    except (KeyError, TypeError, ValidationError):
        raise VerificationError("the statement's predicate holds no valid result") from None
    recomputed = assess(run_set)
    if recomputed.dimensions != claimed.dimensions:
        raise VerificationError("claimed figures differ from those recomputed from the artifacts")
    return recomputed


def verify_run_set(envelope: Path, public_keys: list[Ed25519PublicKey]) -> Verified:
    """Verify an envelope against the run set beside it; VerificationError on any doubt."""
    run_set = envelope.parent
    try:
        raw = envelope.read_bytes()
    except OSError as exc:
        raise VerificationError(f"{envelope}: {exc.strerror}") from None
    keys = keyring(public_keys)
    statement = verify_envelope(raw, keys)
    check_artifacts(statement, run_set)
    recomputed = check_figures(statement, run_set)
    # verify_envelope accepted it, so a trusted key signed it: name that key.
    signer = next(s["keyid"] for s in json.loads(raw)["signatures"] if s["keyid"] in keys)
    return Verified(key_id=signer, artifacts=len(statement["subject"]), result=recomputed)
