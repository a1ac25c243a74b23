"""Sign a run set's result, and verify one: signature, artifacts, and the recomputed result.

The statement's subjects are the run set's raw artifacts (`runset`); its predicate is the
result, a pure function of them. Verification trusts nothing the predicate claims: it checks
the signature, every raw artifact against its digest, then recomputes the whole result from
the artifacts (what cannot be measured, such as the system description and the config, comes
from the signed `plan.json`) and compares it with the whole predicate.
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

from deepspark_core.assess import assess
from deepspark_core.files import write_atomic
from deepspark_core.results import Result
from deepspark_core.runset import STATEMENT_FILE, is_raw, raw_files
from deepspark_core.signing import (
    VerificationError,
    keyring,
    make_statement,
    sign_envelope,
    subjects_under,
    verify_envelope,
    verify_subjects,
)


@dataclass(frozen=True)
class Verified:
    key_ids: tuple[str, ...]  # the trusted keys whose signatures verified
    artifacts: int
    result: Result


def predicate(result: Result) -> dict[str, Any]:
    """The statement's predicate for `result`: what verification recomputes and compares."""
    return {"result": result.model_dump(mode="json")}


def sign_run_set(run_set: Path, result: Result, key: Ed25519PrivateKey) -> Path:
    """Write the DSSE envelope of the run set's in-toto statement beside its files."""
    statement = make_statement(subjects_under(run_set, raw_files(run_set)), predicate(result))
    path = run_set / STATEMENT_FILE
    write_atomic(path, (json.dumps(sign_envelope(statement, key), indent=2) + "\n").encode())
    return path


def check_artifacts(
    statement: Mapping[str, Any], run_set: Path, digests: Mapping[str, str] | None = None
) -> int:
    """Every raw subject matches its digest, and no raw file goes unsigned (an extra run-N
    would change the recomputation); the number of raw artifacts checked. digests: every
    file of the run set with its sha256, as its extraction wrote them (`result_bundle.unpack`):
    nothing is read again; None: the folder is walked and each file hashed.

    Subjects that are not raw (older agents signed report.html and their bookkeeping) are
    not read by the recomputation, so they are neither required nor checked."""
    raw = [subject for subject in statement["subject"] if is_raw(subject["name"])]
    verify_subjects({**statement, "subject": raw}, run_set, digests)
    signed = {subject["name"] for subject in raw}
    if digests is None:
        present = {path.relative_to(run_set).as_posix() for path in raw_files(run_set)}
    else:
        present = {name for name in digests if is_raw(name)}
    if extra := sorted(present - signed):
        raise VerificationError(f"unsigned files beside the signed artifacts: {extra[0]}")
    return len(raw)


def check_result(statement: Mapping[str, Any], run_set: Path) -> Result:
    """The result recomputed from the artifacts, if the whole predicate equals its own.

    A field the predicate lacks passes only where its recomputed value is the schema's
    default: fields added to the schema later (an older agent signed without them) cannot
    hide a figure, since a non-default value must be claimed to verify."""
    recomputed = assess(run_set)
    lean = {"result": recomputed.model_dump(mode="json", exclude_defaults=True)}
    where = first_difference(statement["predicate"], predicate(recomputed), lean)
    if where is not None:
        at = f" at {where}" if where else ""
        raise VerificationError(f"the predicate differs from its recomputation{at}")
    return recomputed


def first_difference(claimed: Any, actual: Any, lean: Any = None, path: str = "") -> str | None:
    """The path of the first place where two JSON values differ (types too), or None.

    `lean` is `actual` without its default values (None: every value counts): a key that
    `claimed` lacks is no difference when `lean` lacks it too."""
    if isinstance(claimed, dict) and isinstance(actual, dict):
        lean = lean if isinstance(lean, dict) else None
        for name in [*actual, *(k for k in claimed if k not in actual)]:
            where = f"{path}.{name}" if path else str(name)
            if name not in claimed and name in actual and lean is not None and name not in lean:
                continue  # a default the signer's schema did not have yet
            if name not in claimed or name not in actual:
                return where
            inner = lean.get(name) if lean is not None else None
            if (found := first_difference(claimed[name], actual[name], inner, where)) is not None:
                return found
        return None
    if isinstance(claimed, list) and isinstance(actual, list):
        leans = (
            lean if isinstance(lean, list) and len(lean) == len(actual) else [None] * len(actual)
        )
        for index, (mine, theirs, inner) in enumerate(zip(claimed, actual, leans, strict=False)):
            if (found := first_difference(mine, theirs, inner, f"{path}[{index}]")) is not None:
                return found
        same = len(claimed) == len(actual)
        return None if same else f"{path}[{min(len(claimed), len(actual))}]"
    return None if type(claimed) is type(actual) and claimed == actual else path


def verify_run_set(envelope: Path, public_keys: list[Ed25519PublicKey]) -> Verified:
    """Verify an envelope against the run set beside it; VerificationError on any doubt."""
    run_set = envelope.parent
    try:
        raw = envelope.read_bytes()
    except OSError as exc:
        raise VerificationError(f"{envelope}: {exc.strerror}") from None
    signed = verify_envelope(raw, keyring(public_keys))
    checked = check_artifacts(signed.statement, run_set)
    recomputed = check_result(signed.statement, run_set)
    return Verified(key_ids=signed.key_ids, artifacts=checked, result=recomputed)
