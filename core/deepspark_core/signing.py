"""Signed results: Ed25519 keys, DSSE envelopes and in-toto Statement v1.

A result is an in-toto Statement (`make_statement`) whose subjects are the run's raw artifacts,
each with its sha256, and whose predicate holds the figures. It travels in a DSSE envelope
(`sign_envelope`): the signature is Ed25519 over DSSE's pre-authentication encoding (`pae`)
of the payload type and the payload bytes, so neither can be swapped without breaking it.

Verification fails closed: `verify_envelope` returns the statement, with the trusted keys
that signed it, only once a trusted key's signature verifies, no signature naming a trusted
key fails, and the statement is well formed; `verify_subjects` then checks every artifact on
disk against its signed digest. Anything else raises `VerificationError`.

Keys are PKCS8 PEM files, the private one unencrypted and guarded by its file mode (0600),
as SSH keys are. A key's id is the sha256 of its raw 32-byte public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from deepspark_core import nesting
from deepspark_core.errors import DeepSparkError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://deepspark.dev/result/v2"
PRIVATE_KEY_NAME = "signing-key.pem"
PUBLIC_KEY_NAME = "signing-key.pub.pem"
_HEX_DIGITS = frozenset("0123456789abcdef")

Statement = dict[str, Any]


class SigningError(DeepSparkError):
    """A key that cannot be created or loaded, or a statement that cannot be signed."""


class VerificationError(DeepSparkError):
    """An envelope, statement or artifact that must not be trusted."""


@dataclass(frozen=True)
class KeyInfo:
    """A key pair on disk, as `init_keys` wrote it."""

    key_id: str
    private_path: Path
    public_path: Path


# --- keys -----------------------------------------------------------------------------------


def default_key_dir() -> Path:
    """`$XDG_CONFIG_HOME/deepspark`, else `~/.config/deepspark`."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
    return base / "deepspark"


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 hex of the raw 32-byte public key: derived from the key, so it cannot lie."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()


def keyring(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Trusted keys by key id, as `verify_envelope` takes them."""
    return {key_id(key): key for key in public_keys}


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` (less the umask) from its first byte.

    O_EXCL: an existing file or symlink is never reused, with whatever mode or target it has.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def init_keys(key_dir: Path | None = None, force: bool = False) -> KeyInfo:
    """Generate a key pair in `key_dir` (default: `default_key_dir()`).

    Refuses to replace an existing key unless `force`: a lost private key cannot be recovered,
    and results signed with it stop verifying against a new registration.
    """
    key_dir = key_dir or default_key_dir()
    private_path, public_path = key_dir / PRIVATE_KEY_NAME, key_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if (path.exists() or path.is_symlink()) and not force:
            raise SigningError(
                f"{path}: a signing key already exists; not overwriting it without force"
            )
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    written: list[Path] = []
    try:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, data, mode in (
            (private_path, private_pem, 0o600),
            (public_path, public_pem, 0o644),
        ):
            path.unlink(missing_ok=True)  # only reached with force, or when absent
            _write_new(path, data, mode)
            written.append(path)
    except OSError as exc:
        for path in written:  # no half pair left behind
            path.unlink(missing_ok=True)
        raise SigningError(f"{exc.filename or key_dir}: {exc.strerror}") from None
    return KeyInfo(key_id(private_key.public_key()), private_path, public_path)


def _read_private(path: Path) -> bytes:
    """The file's bytes, refused if group or others may access it (checked on the open file)."""
    try:
        # O_NONBLOCK: a FIFO put in the key's place must not hang us before the S_ISREG check.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SigningError(
            f"{path}: no signing key (create one with `deepspark-agent keys init`)"
        ) from None
    except OSError as exc:
        raise SigningError(f"{path}: cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise SigningError(f"{path}: not a regular file")
        if mode & 0o077:
            raise SigningError(
                f"{path}: accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
                "run `chmod 600` on it"
            )
        return file.read()


def load_private_key(key_dir: Path | None = None) -> Ed25519PrivateKey:
    """The private key in `key_dir` (default: `default_key_dir()`), with one-line errors."""
    path = (key_dir or default_key_dir()) / PRIVATE_KEY_NAME
    data = _read_private(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"{path}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file, with one-line errors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"{path}: no such file") from None
    except OSError as exc:
        raise SigningError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


# --- in-toto Statement v1 -------------------------------------------------------------------


def _name_problem(name: object) -> str | None:
    """Why `name` is not a safe subject name (a normalized relative POSIX path), or None."""
    if not isinstance(name, str) or not name:
        return "name is not a non-empty string"
    if name.startswith("/") or "\\" in name or "\0" in name:
        return "absolute name or one with a backslash or NUL"
    if ".." in name.split("/"):
        return "name contains '..'"
    if posixpath.normpath(name) != name:
        return "name is not a normalized relative path"
    return None


def sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def subjects_under(root: Path, paths: Iterable[Path]) -> dict[str, Path]:
    """Subject names for `paths`: their POSIX paths relative to `root`, which must hold them."""
    subjects = {}
    for path in paths:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            raise SigningError(f"{path}: not under {root}") from None
        subjects[name] = path
    return subjects


def make_statement(subjects: Mapping[str, Path], predicate: Mapping[str, Any]) -> Statement:
    """An in-toto Statement v1 over the files in `subjects` (name -> path), sorted by name."""
    entries = []
    for name in sorted(subjects):
        if problem := _name_problem(name):
            raise SigningError(f"subject {name!r}: {problem}")
        try:
            digest = sha256_file(subjects[name])
        except OSError as exc:
            raise SigningError(f"subject {name!r}: {subjects[name]}: {exc.strerror}") from None
        entries.append({"name": name, "digest": {"sha256": digest}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": entries,
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(predicate),
    }


def _subject_problem(subject: object) -> str | None:
    if not isinstance(subject, dict):
        return "subject entry is not an object"
    if problem := _name_problem(subject.get("name")):
        return f"subject {subject.get('name')!r}: {problem}"
    digest = subject.get("digest")
    sha = digest.get("sha256") if isinstance(digest, dict) else None
    if not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX_DIGITS):
        return f"subject {subject['name']!r}: no lowercase hex sha256 digest"
    return None


def _statement_problem(statement: object) -> str | None:
    """Why `statement` is not a DeepSpark result Statement, or None."""
    if not isinstance(statement, Mapping):
        return "statement is not a JSON object"
    if statement.get("_type") != STATEMENT_TYPE:
        return f"statement _type is {statement.get('_type')!r}, not {STATEMENT_TYPE!r}"
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return "statement has no subject"
    for subject in subjects:
        if problem := _subject_problem(subject):
            return problem
    # Two digests for one name would leave it ambiguous which one was signed for.
    if len({subject["name"] for subject in subjects}) != len(subjects):
        return "statement names a subject twice"
    if statement.get("predicateType") != PREDICATE_TYPE:
        kind = statement.get("predicateType")
        return f"statement predicateType is {kind!r}, not {PREDICATE_TYPE!r}"
    if not isinstance(statement.get("predicate"), dict):
        return "statement has no predicate object"
    return None


def verify_subjects(
    statement: Mapping[str, Any], root: Path, digests: Mapping[str, str] | None = None
) -> None:
    """Check every subject's file under `root` against its signed sha256, streamed.

    Refuses unsafe names and files that are missing, not regular, or resolve outside `root`.
    digests: every file under `root` by name with its sha256, as an extraction that wrote
    them computed (`result_bundle.unpack`): the files are not read again.
    """
    if problem := _statement_problem(statement):
        raise VerificationError(problem)
    real_root = root.resolve()
    for subject in statement["subject"]:
        name, expected = subject["name"], subject["digest"]["sha256"]
        if digests is None:
            actual = _subject_digest(root, real_root, name)
        elif (actual := digests.get(name)) is None:
            raise VerificationError(f"subject {name!r}: missing ({root / name})")
        if actual != expected:
            raise VerificationError(
                f"subject {name!r}: sha256 {actual} does not match the signed {expected}"
            )


def _subject_digest(root: Path, real_root: Path, name: str) -> str:
    path = root / name
    if not path.resolve().is_relative_to(real_root):
        raise VerificationError(f"subject {name!r}: resolves outside {root}")
    if not path.is_file():
        what = "missing" if not path.exists() else "not a regular file"
        raise VerificationError(f"subject {name!r}: {what} ({path})")
    try:
        return sha256_file(path)
    except OSError as exc:
        raise VerificationError(f"subject {name!r}: cannot read: {exc.strerror}") from None


# --- DSSE -----------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: `DSSEv1 LEN(type) type LEN(body) body`.

    Lengths are byte lengths in ASCII decimal; the type is UTF-8 encoded first.
    """
    type_bytes = payload_type.encode("utf-8")
    return b" ".join(
        [b"DSSEv1", b"%d" % len(type_bytes), type_bytes, b"%d" % len(payload), payload]
    )


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same statement always gives the same bytes.

    Not RFC 8785 (floats keep Python's repr); the signature covers the exact bytes, so
    verifiers never re-serialize.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SigningError(f"statement is not plain JSON: {exc}") from None


def sign_envelope(statement: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of `statement`, signed with Ed25519 over the PAE of its JSON bytes."""
    payload = canonical_json(statement)
    try:  # sign nothing our own verifier would refuse
        _parse_statement(payload)
    except VerificationError as exc:
        raise SigningError(str(exc)) from None
    signature = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(data: bytes | str, what: str) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, no duplicate keys (which two parsers
    could resolve differently, so that a verifier and a reader see different statements)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return nesting.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as exc:
        raise VerificationError(f"{what} is not valid JSON: {exc}") from None


def _b64decode(value: object, what: str) -> bytes:
    """Strict base64, standard or URL-safe alphabet: DSSE verifiers must accept either."""
    if isinstance(value, str):
        for altchars in (None, b"-_"):
            try:
                return base64.b64decode(value, altchars=altchars, validate=True)
            except ValueError:
                continue
    raise VerificationError(f"{what} is not valid base64")


def _decode_signatures(signatures: object) -> list[tuple[str, bytes]]:
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError("envelope has no signatures")
    decoded = []
    for entry in signatures:
        keyid = entry.get("keyid") if isinstance(entry, dict) else None
        if not isinstance(keyid, str) or not keyid:
            raise VerificationError("envelope has a signature without a keyid")
        decoded.append((keyid, _b64decode(entry.get("sig"), f"signature by {keyid}")))
    return decoded


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement and the trusted keys whose signatures over it verified (envelope order).

    `payload_sha256` names the statement, not its envelope: re-encoding the envelope or
    re-signing the same statement keeps it, so it is what identifies one submission.
    """

    statement: Statement
    key_ids: tuple[str, ...]
    payload_sha256: str


def verify_envelope(
    envelope: Mapping[str, Any] | bytes | str, public_keys: Mapping[str, Ed25519PublicKey]
) -> VerifiedStatement:
    """The statement in a DSSE envelope and the trusted keys that signed it.

    `public_keys` maps key ids to trusted keys (see `keyring`). Signatures by keys not in
    `public_keys` are ignored. A signature that names a trusted key but does not verify is a
    forgery and refuses the whole envelope (DSSE would ignore it; we fail closed, so that a
    bundle can never be credited to a key that did not sign it). At least one trusted
    signature must verify. A malformed envelope, a payload type other than in-toto's, or a
    payload that is not a DeepSpark result Statement is refused whatever its signatures.
    Raises VerificationError.
    """
    envelope, payload = _open_envelope(envelope)
    signatures = _decode_signatures(envelope.get("signatures"))
    message = pae(PAYLOAD_TYPE, payload)
    verified: list[str] = []
    for keyid, signature in signatures:
        key = public_keys.get(keyid)
        if key is None:
            continue
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise VerificationError(
                f"signature by {keyid} does not verify (a forged signature refuses the envelope)"
            ) from None
        if keyid not in verified:
            verified.append(keyid)
    if not verified:
        keyids = ", ".join(keyid for keyid, _ in signatures)
        raise VerificationError(f"no signature by a trusted key (keyids: {keyids})")
    digest = hashlib.sha256(payload).hexdigest()
    return VerifiedStatement(_parse_statement(payload), tuple(verified), digest)


def payload_sha256(envelope: Mapping[str, Any] | bytes | str) -> str:
    """The sha256 of an in-toto envelope's payload, unverified: what names a submission."""
    return hashlib.sha256(_open_envelope(envelope)[1]).hexdigest()


def unverified_statement(envelope: Mapping[str, Any] | bytes | str) -> Statement:
    """The statement in an envelope, its shape checked and its signatures NOT: for a reader
    that checks its digest against one a verifier gave (a collector's `payload_sha256`)."""
    return _parse_statement(_open_envelope(envelope)[1])


def _open_envelope(envelope: Mapping[str, Any] | bytes | str) -> tuple[Mapping[str, Any], bytes]:
    """The envelope as an object, and its payload's bytes, once it is shaped as in-toto's."""
    if isinstance(envelope, bytes | str):
        envelope = _strict_json(envelope, "envelope")
    if not isinstance(envelope, Mapping):
        raise VerificationError("envelope is not a JSON object")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise VerificationError(
            f"payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE!r}"
        )
    return envelope, _b64decode(envelope.get("payload"), "payload")


def _parse_statement(payload: bytes) -> Statement:
    statement = _strict_json(payload, "payload")
    if problem := _statement_problem(statement):
        raise VerificationError(problem)
    return statement
