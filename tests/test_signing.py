"""Signed results: key files, DSSE against the spec and securesystemslib, fail-closed checks."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib import exceptions as sslib_exceptions
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from deepspark_core import signing
from deepspark_core.signing import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    STATEMENT_TYPE,
    SigningError,
    VerificationError,
    default_key_dir,
    init_keys,
    key_id,
    keyring,
    load_private_key,
    load_public_key,
    make_statement,
    pae,
    sign_envelope,
    subjects_under,
    verify_envelope,
    verify_subjects,
)

PREDICATE = {"suite": "smoke", "speed": {"value": 1515.3, "unit": "samples/s"}, "note": "µ ok"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    (root / "run-1").mkdir(parents=True)
    (root / "run-1" / "mllog.log").write_bytes(b':::MLLOG {"key": "run_start"}\n')
    (root / "run-1" / "telemetry.jsonl").write_bytes(b'{"t": 1, "power_w": 300}\n')
    (root / "system.json").write_bytes(b'{"host": "h"}\n')
    return root


@pytest.fixture
def statement(run_dir: Path) -> dict[str, Any]:
    return make_statement(subjects_under(run_dir, sorted(run_dir.rglob("*.*"))), PREDICATE)


@pytest.fixture
def envelope(statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_envelope(statement, key)


def raw_envelope(payload: bytes, key: Ed25519PrivateKey, payload_type: str = PAYLOAD_TYPE) -> dict:
    """A correctly signed envelope around arbitrary bytes: only the check under test fails."""
    signature = key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": b64(payload),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": b64(signature)}],
    }


def sslib_verify(envelope: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    """securesystemslib's own DSSE verification; returns the payload or raises."""
    public = SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))
    parsed = Envelope.from_dict(copy.deepcopy(envelope))  # from_dict consumes its input
    parsed.verify([public], threshold=1)
    return parsed.payload


# --- keys -----------------------------------------------------------------------------------


def test_init_keys_writes_a_0600_private_key_and_a_public_key(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the most permissive umask: the modes are our own
    try:
        info = init_keys(tmp_path / "keys")
    finally:
        os.umask(old_umask)
    assert info.private_path == tmp_path / "keys" / PRIVATE_KEY_NAME
    assert info.public_path == tmp_path / "keys" / PUBLIC_KEY_NAME
    assert stat.S_IMODE(info.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.public_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(info.private_path.parent.stat().st_mode) == 0o700
    assert info.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    private = load_private_key(info.private_path.parent)
    assert key_id(private.public_key()) == key_id(load_public_key(info.public_path)) == info.key_id


def test_private_key_is_created_exclusively_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        calls.append((Path(path).name, flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(signing.os, "open", spy)
    init_keys(tmp_path)
    [(_, flags, mode)] = [call for call in calls if call[0] == PRIVATE_KEY_NAME]
    assert flags & os.O_CREAT and flags & os.O_EXCL
    assert mode == 0o600


def test_init_keys_never_overwrites_without_force(tmp_path: Path) -> None:
    first = init_keys(tmp_path)
    before = first.private_path.read_bytes(), first.public_path.read_bytes()
    with pytest.raises(SigningError, match="already exists"):
        init_keys(tmp_path)
    assert (first.private_path.read_bytes(), first.public_path.read_bytes()) == before

    first.private_path.unlink()  # half a pair is refused too
    with pytest.raises(SigningError, match=PUBLIC_KEY_NAME):
        init_keys(tmp_path)
    assert first.public_path.read_bytes() == before[1]

    second = init_keys(tmp_path, force=True)
    assert second.key_id != first.key_id
    assert stat.S_IMODE(second.private_path.stat().st_mode) == 0o600
    assert load_public_key(second.public_path) is not None


def test_force_replaces_a_too_open_key_file_with_a_0600_one(tmp_path: Path) -> None:
    first = init_keys(tmp_path)
    first.private_path.chmod(0o644)
    second = init_keys(tmp_path, force=True)
    assert stat.S_IMODE(second.private_path.stat().st_mode) == 0o600


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / PRIVATE_KEY_NAME).symlink_to(target)  # dangling: exists() is False
    with pytest.raises(SigningError, match="already exists"):
        init_keys(tmp_path / "keys")
    info = init_keys(tmp_path / "keys", force=True)
    assert not target.exists() and not info.private_path.is_symlink()


def test_default_key_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_dir() == tmp_path / "xdg" / "deepspark"
    info = init_keys()
    assert info.private_path == tmp_path / "xdg" / "deepspark" / PRIVATE_KEY_NAME
    assert key_id(load_private_key().public_key()) == info.key_id

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", "relative/dir"):  # unset or relative: the spec's default
        monkeypatch.setenv("XDG_CONFIG_HOME", value)
        assert default_key_dir() == tmp_path / "home" / ".config" / "deepspark"


def test_key_id_is_the_sha256_of_the_raw_public_key(tmp_path: Path) -> None:
    info = init_keys(tmp_path)
    # By hand from the PEM file: an Ed25519 SubjectPublicKeyInfo is a fixed 12-byte DER
    # prefix (SEQUENCE, AlgorithmIdentifier 1.3.101.112, BIT STRING) and the 32 key bytes.
    lines = info.public_path.read_text().splitlines()
    der = base64.b64decode("".join(lines[1:-1]))
    assert der[:12] == bytes.fromhex("302a300506032b6570032100") and len(der) == 44
    assert info.key_id == hashlib.sha256(der[12:]).hexdigest()
    # securesystemslib stores the same raw key as hex.
    sslib_key = SSlibKey.from_crypto(load_public_key(info.public_path))
    assert info.key_id == hashlib.sha256(bytes.fromhex(sslib_key.keyval["public"])).hexdigest()


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.mkdir(exist_ok=True)
    (path / PRIVATE_KEY_NAME).write_bytes(data)
    (path / PRIVATE_KEY_NAME).chmod(mode)
    return path


def pkcs8(private_key: Any, encryption: Any = None) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("data", "mode", "message"),
    [
        (None, 0o600, "no signing key"),
        ("ed25519", 0o640, r"accessible by group or others \(mode 0640\)"),
        ("ed25519", 0o604, r"accessible by group or others \(mode 0604\)"),
        ("ed25519", 0o620, "accessible by group or others"),
        (b"not a key\n", 0o600, "not a PEM private key"),
        ("public", 0o600, "not a PEM private key"),
        ("ec", 0o600, "not an Ed25519 key"),
        ("encrypted", 0o600, "encrypted private keys are not supported"),
    ],
)
def test_load_private_key_errors(tmp_path: Path, data: Any, mode: int, message: str) -> None:
    ed = Ed25519PrivateKey.generate()
    contents = {
        "ed25519": pkcs8(ed),
        "public": ed.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "ec": pkcs8(ec.generate_private_key(ec.SECP256R1())),
        "encrypted": pkcs8(ed, serialization.BestAvailableEncryption(b"pw")),
    }.get(data, data)
    key_dir = tmp_path / "keys"
    if contents is not None:
        write_private(key_dir, contents, mode)
    with pytest.raises(SigningError, match=message) as caught:
        load_private_key(key_dir)
    assert "\n" not in str(caught.value) and PRIVATE_KEY_NAME in str(caught.value)


def test_load_private_key_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / PRIVATE_KEY_NAME, 0o600)
    with pytest.raises(SigningError, match="not a regular file"):
        load_private_key(tmp_path)


def test_load_public_key_errors(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="no such file"):
        load_public_key(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pem")
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ec.pem").write_bytes(
        ec_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(SigningError, match="not an Ed25519 key"):
        load_public_key(tmp_path / "ec.pem")


# --- PAE ------------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    # protocol.md, "Test Vectors" (DSSE v1.0.0).
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize(
    ("payload_type", "payload", "expected"),
    [
        # An empty body still gets its separator: "... 0 " then nothing.
        (PAYLOAD_TYPE, b"", b"DSSEv1 28 application/vnd.in-toto+json 0 "),
        # LEN is the UTF-8 byte length (ä is 2 bytes), not the character count.
        ("t\u00e4", b"x", b"DSSEv1 3 t\xc3\xa4 1 x"),
        # The body is bytes, spaces and all, and lengths have no leading zeros.
        ("a", b" \x00\xff" * 4, b"DSSEv1 1 a 12 " + b" \x00\xff" * 4),
        ("", b"", b"DSSEv1 0  0 "),
    ],
)
def test_pae_by_definition(payload_type: str, payload: bytes, expected: bytes) -> None:
    assert pae(payload_type, payload) == expected


def test_pae_agrees_with_securesystemslib(envelope: dict[str, Any]) -> None:
    payload = base64.b64decode(envelope["payload"])
    assert pae(PAYLOAD_TYPE, payload) == Envelope(payload, PAYLOAD_TYPE, {}).pae()


# --- envelopes ------------------------------------------------------------------------------


def test_envelope_shape_and_round_trip(
    envelope: dict[str, Any], statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    assert envelope["payloadType"] == PAYLOAD_TYPE
    [signature] = envelope["signatures"]
    assert set(signature) == {"keyid", "sig"} and signature["keyid"] == key_id(key.public_key())
    payload = base64.b64decode(envelope["payload"], validate=True)
    compact = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert payload == compact.encode()
    key.public_key().verify(base64.b64decode(signature["sig"]), pae(PAYLOAD_TYPE, payload))
    assert verify_envelope(envelope, keyring([key.public_key()])).statement == statement
    assert (
        verify_envelope(json.dumps(envelope).encode(), keyring([key.public_key()])).statement
        == statement
    )


def test_securesystemslib_verifies_our_envelope(
    envelope: dict[str, Any], statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    assert json.loads(sslib_verify(envelope, key)) == statement


def test_we_verify_a_securesystemslib_envelope(
    statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    signer = CryptoSigner(
        key, SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))
    )
    theirs = Envelope(json.dumps(statement).encode(), PAYLOAD_TYPE, {})
    theirs.sign(signer)
    assert verify_envelope(theirs.to_dict(), keyring([key.public_key()])).statement == statement


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def assert_both_reject(envelope: dict[str, Any], key: Ed25519PrivateKey, where: str) -> None:
    try:
        verify_envelope(envelope, keyring([key.public_key()]))
    except VerificationError:
        pass
    else:
        pytest.fail(f"verify_envelope accepted a change in {where}")
    try:
        sslib_verify(envelope, key)
    except sslib_exceptions.UnverifiedSignatureError:  # the base of its VerificationError
        pass
    else:
        pytest.fail(f"securesystemslib accepted a change in {where}")


@pytest.mark.parametrize("field", ["payload", "sig"])
def test_every_one_byte_change_is_rejected_by_both(
    envelope: dict[str, Any], key: Ed25519PrivateKey, field: str
) -> None:
    signature = envelope["signatures"][0]
    original = base64.b64decode(envelope["payload"] if field == "payload" else signature["sig"])
    for position in range(len(original)):
        tampered = copy.deepcopy(envelope)
        changed = b64(flipped(original, position))
        if field == "payload":
            tampered["payload"] = changed
        else:
            tampered["signatures"][0]["sig"] = changed
        assert_both_reject(tampered, key, f"{field} byte {position}")
    assert position == len(original) - 1 > 60  # every position, through the last


def test_a_changed_payload_type_is_rejected_by_both(
    envelope: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    tampered = dict(envelope, payloadType=PAYLOAD_TYPE.replace("json", "jsoN"))
    assert_both_reject(tampered, key, "payloadType")


def test_url_safe_base64_is_accepted(
    envelope: dict[str, Any], statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    # DSSE: verifiers MUST accept either alphabet.
    urlsafe = copy.deepcopy(envelope)
    urlsafe["payload"] = base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode()
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    urlsafe["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode()
    assert verify_envelope(urlsafe, keyring([key.public_key()])).statement == statement


def test_unknown_keys_are_ignored_and_the_verified_keys_named(
    envelope: dict[str, Any], statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    stranger = Ed25519PrivateKey.generate()
    payload = base64.b64decode(envelope["payload"])
    unknown = {
        "keyid": key_id(stranger.public_key()),
        "sig": b64(stranger.sign(pae(PAYLOAD_TYPE, payload))),
    }
    other = Ed25519PrivateKey.generate()
    second = {
        "keyid": key_id(other.public_key()),
        "sig": b64(other.sign(pae(PAYLOAD_TYPE, payload))),
    }
    mixed = dict(envelope, signatures=[unknown, second, envelope["signatures"][0]])
    verified = verify_envelope(mixed, keyring([key.public_key(), other.public_key()]))
    assert verified.statement == statement
    # Only trusted keys whose signatures verified, in envelope order; never the stranger.
    assert verified.key_ids == (key_id(other.public_key()), key_id(key.public_key()))
    assert verified.payload_sha256 == hashlib.sha256(payload).hexdigest()


def test_a_signature_naming_a_trusted_key_that_fails_refuses_the_envelope(
    envelope: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    """Issue 14, item 1: a garbage signature under vendor A's key id, listed before vendor B's
    valid one, must not let the envelope through as A's (nor at all: it is a forgery)."""
    vendor_a = Ed25519PrivateKey.generate()
    garbage = {"keyid": key_id(vendor_a.public_key()), "sig": b64(bytes(64))}
    forged = dict(envelope, signatures=[garbage, envelope["signatures"][0]])
    with pytest.raises(VerificationError, match=f"signature by {garbage['keyid']} does not"):
        verify_envelope(forged, keyring([vendor_a.public_key(), key.public_key()]))
    # A verifier that trusts only B ignores the unknown key id and names B, never A.
    verified = verify_envelope(forged, keyring([key.public_key()]))
    assert verified.key_ids == (key_id(key.public_key()),)


def test_the_payload_digest_survives_re_encoding_and_re_signing(
    envelope: dict[str, Any], statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    trusted = keyring([key.public_key()])
    first = verify_envelope(json.dumps(envelope).encode(), trusted)
    spaced = verify_envelope(json.dumps(envelope, indent=7).encode(), trusted)
    urlsafe = dict(
        envelope, payload=base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode()
    )
    assert (
        first.payload_sha256
        == spaced.payload_sha256
        == verify_envelope(urlsafe, trusted).payload_sha256
    )
    assert (
        verify_envelope(sign_envelope(statement, key), trusted).payload_sha256
        == first.payload_sha256
    )


def with_sig(envelope: dict[str, Any], sig: str) -> dict[str, Any]:
    return dict(envelope, signatures=[dict(envelope["signatures"][0], sig=sig)])


def stranger_sig(envelope: dict[str, Any]) -> str:
    """A valid signature over the right PAE, by a key that is not the one its keyid names."""
    message = pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
    return b64(Ed25519PrivateKey.generate().sign(message))


# Changes to a good envelope, and the error each must raise.
BAD_ENVELOPES = {
    "bad base64 payload": (lambda e: dict(e, payload="!!" + e["payload"]), "payload is not valid"),
    "bad base64 sig": (lambda e: with_sig(e, "abc"), "is not valid base64"),
    "no signatures": (lambda e: dict(e, signatures=[]), "no signatures"),
    "signatures absent": (lambda e: {k: v for k, v in e.items() if k != "signatures"}, "no sig"),
    "signature without keyid": (
        lambda e: dict(e, signatures=[{"sig": e["signatures"][0]["sig"]}]),
        "without a keyid",
    ),
    "bad signature": (lambda e: with_sig(e, stranger_sig(e)), "does not verify"),
    "short signature": (lambda e: with_sig(e, b64(bytes(63))), "does not verify"),
    "envelope not JSON": (lambda e: b"{nope", "envelope is not valid JSON"),
    "envelope not an object": (lambda e: b"[]", "envelope is not a JSON object"),
}


@pytest.mark.parametrize("case", BAD_ENVELOPES)
def test_verify_envelope_fails_closed(
    case: str, envelope: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    change, message = BAD_ENVELOPES[case]
    with pytest.raises(VerificationError, match=message) as caught:
        verify_envelope(change(envelope), keyring([key.public_key()]))
    assert "\n" not in str(caught.value)


def statement_with(statement: dict[str, Any], **changes: Any) -> bytes:
    """The statement's JSON with fields changed; None removes a field."""
    changed = {**statement, **changes}
    return json.dumps({k: v for k, v in changed.items() if v is not None}).encode()


# Correctly signed payloads that are not a DeepSpark result Statement.
BAD_PAYLOADS = {
    "payload not JSON": (lambda s: b"not json", "payload is not valid JSON"),
    "payload not UTF-8": (lambda s: json.dumps(s).encode("utf-16"), "payload is not valid JSON"),
    "payload with NaN": (
        lambda s: statement_with(s, predicate={"x": float("nan")}),
        "NaN is not JSON",
    ),
    "duplicate key": (lambda s: b'{"_type":"x",' + statement_with(s)[1:], "duplicate key"),
    "payload not an object": (lambda s: b"[]", "not a JSON object"),
    "wrong _type": (
        lambda s: statement_with(s, _type="https://in-toto.io/Statement/v0.1"),
        "_type is 'https://in-toto.io/Statement/v0.1'",
    ),
    "missing subject": (lambda s: statement_with(s, subject=None), "no subject"),
    "empty subject": (lambda s: statement_with(s, subject=[]), "no subject"),
    "subject without digest": (
        lambda s: statement_with(s, subject=[{"name": "a"}]),
        "no lowercase hex sha256",
    ),
    "subject named twice": (
        lambda s: statement_with(s, subject=s["subject"][:1] * 2),
        "names a subject twice",
    ),
    "missing predicateType": (lambda s: statement_with(s, predicateType=None), "is None"),
    "other predicateType": (
        lambda s: statement_with(s, predicateType="https://slsa.dev/provenance/v1"),
        "predicateType is 'https://slsa.dev/provenance/v1'",
    ),
    "missing predicate": (lambda s: statement_with(s, predicate=None), "no predicate"),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS)
def test_verify_envelope_refuses_signed_payloads_that_are_not_results(
    case: str, statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    payload, message = BAD_PAYLOADS[case]
    with pytest.raises(VerificationError, match=message) as caught:
        verify_envelope(raw_envelope(payload(statement), key), keyring([key.public_key()]))
    assert "\n" not in str(caught.value)


def test_verify_envelope_refuses_another_payload_type(
    envelope: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    # Signed over the PAE of the type it claims, so only the type check can refuse it.
    other = raw_envelope(base64.b64decode(envelope["payload"]), key, "application/json")
    with pytest.raises(VerificationError, match="payloadType is 'application/json'"):
        verify_envelope(other, keyring([key.public_key()]))


def test_verify_envelope_refuses_unknown_keys(
    statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    theirs = sign_envelope(statement, Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_envelope(theirs, keyring([key.public_key()]))


def test_no_trusted_keys_trusts_nothing(envelope: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_envelope(envelope, {})


def test_sign_envelope_refuses_what_verification_would(
    statement: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    with pytest.raises(SigningError, match="no subject"):
        sign_envelope({**statement, "subject": []}, key)
    with pytest.raises(SigningError, match="not plain JSON"):
        sign_envelope({**statement, "predicate": {"x": float("inf")}}, key)
    with pytest.raises(SigningError, match="not plain JSON"):
        sign_envelope({**statement, "predicate": {"path": Path("x")}}, key)


# --- statements and subjects ----------------------------------------------------------------


def test_make_statement(run_dir: Path, statement: dict[str, Any]) -> None:
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["predicate"] == PREDICATE
    names = [subject["name"] for subject in statement["subject"]]
    assert names == sorted(names) == ["run-1/mllog.log", "run-1/telemetry.jsonl", "system.json"]
    for subject in statement["subject"]:
        expected = hashlib.sha256((run_dir / subject["name"]).read_bytes()).hexdigest()
        assert subject["digest"] == {"sha256": expected}
    verify_subjects(statement, run_dir)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../b", "a//b", "./a", "a\\b", ""])
def test_make_statement_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(SigningError, match="subject"):
        make_statement({name: tmp_path / "f"}, PREDICATE)


def test_make_statement_and_subjects_under_report_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="subject 'gone'"):
        make_statement({"gone": tmp_path / "gone"}, PREDICATE)
    with pytest.raises(SigningError, match="not under"):
        subjects_under(tmp_path / "run", [tmp_path / "elsewhere"])


def test_verify_subjects_catches_a_changed_artifact(
    run_dir: Path, statement: dict[str, Any]
) -> None:
    log = run_dir / "run-1" / "mllog.log"
    log.write_bytes(flipped(log.read_bytes(), 5))
    with pytest.raises(
        VerificationError, match=r"subject 'run-1/mllog.log': sha256 \w+ does not match"
    ):
        verify_subjects(statement, run_dir)


def test_verify_subjects_catches_a_missing_artifact(
    run_dir: Path, statement: dict[str, Any]
) -> None:
    (run_dir / "system.json").unlink()
    with pytest.raises(VerificationError, match=r"subject 'system\.json': missing"):
        verify_subjects(statement, run_dir)


def test_verify_subjects_checks_the_digests_an_extraction_gave(
    run_dir: Path, statement: dict[str, Any]
) -> None:
    digests = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    verify_subjects(statement, run_dir, digests)
    changed = {**digests, "run-1/mllog.log": hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(VerificationError, match=r"'run-1/mllog.log': sha256 \w+ does not match"):
        verify_subjects(statement, run_dir, changed)
    del digests["system.json"]
    with pytest.raises(VerificationError, match=r"subject 'system\.json': missing"):
        verify_subjects(statement, run_dir, digests)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../secret", "contains '..'"),
        ("run-1/../../secret", "contains '..'"),
        ("/secret", "absolute"),
    ],
)
def test_verify_subjects_refuses_names_outside_the_root(
    run_dir: Path, statement: dict[str, Any], name: str, message: str
) -> None:
    secret = run_dir.parent / "secret"
    secret.write_bytes(b"s")
    digest = {"sha256": hashlib.sha256(b"s").hexdigest()}
    hostile = {**statement, "subject": [*statement["subject"], {"name": name, "digest": digest}]}
    with pytest.raises(VerificationError, match=f"subject '{name}'.*{message}"):
        verify_subjects(hostile, run_dir)


def test_verify_subjects_refuses_a_symlink_out_of_the_root(
    run_dir: Path, statement: dict[str, Any]
) -> None:
    secret = run_dir.parent / "secret"
    secret.write_bytes(b"s")
    (run_dir / "link").symlink_to(secret)
    digest = {"sha256": hashlib.sha256(b"s").hexdigest()}
    hostile = {**statement, "subject": [{"name": "link", "digest": digest}]}
    with pytest.raises(VerificationError, match="subject 'link': resolves outside"):
        verify_subjects(hostile, run_dir)


def test_signed_result_end_to_end(run_dir: Path, tmp_path: Path) -> None:
    info = init_keys(tmp_path / "keys")
    paths = sorted(path for path in run_dir.rglob("*") if path.is_file())
    statement = make_statement(subjects_under(run_dir, paths), PREDICATE)
    envelope = sign_envelope(statement, load_private_key(tmp_path / "keys"))
    trusted = keyring([load_public_key(info.public_path)])
    verify_subjects(verify_envelope(json.dumps(envelope).encode(), trusted).statement, run_dir)
