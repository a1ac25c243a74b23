"""Submit result bundles to a collector, keep what could not be delivered, check receipts.

`submit` first puts the bundle in the OUTBOX (`$XDG_CONFIG_HOME/deepspark/outbox`, written
atomically), then POSTs it. The bundle leaves the outbox only once a receipt verifies: a
receipt signed by the collector's key, naming the envelope we sent. A collector that cannot
be reached, times out, answers 5xx or asks us to slow down (429) leaves the bundle queued
for `flush`; any other 4xx is a rejection: the bundle moves to `outbox/rejected/` for
inspection and is never retried.

A receipt names the statement (its payload's sha256) and the key and vendor credited: the
same statement re-encoded or re-signed by the same key is one submission, so its receipt may
name the envelope the collector first stored rather than the bytes we sent.

The collector's key is trusted on first use: the first key seen for a collector URL is
pinned in `collector-keys.json` beside the signing key, and a collector that later presents
another key is refused before anything is sent (remove its pin if the change is expected).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from deepspark_core.errors import DeepSparkError
from deepspark_core.files import write_atomic
from deepspark_core.receipts import KEY_ID_HEADER, verify_receipt
from deepspark_core.result_bundle import ResultBundleError, pack_run_set, read_statement
from deepspark_core.signing import VerificationError, default_key_dir, key_id, payload_sha256

API = "/api/v1"
PINS_FILE = "collector-keys.json"
DEFAULT_TIMEOUT = 60.0
# Answers that say "not now" rather than "not this": the bundle stays queued.
RETRY_STATUSES = {408, 429}


class SubmitError(DeepSparkError):
    """A submission that did not end in a verified receipt."""


class Queued(SubmitError):
    """Not delivered (unreachable, timeout, 5xx, 429): kept in the outbox for `flush`."""


class Rejected(SubmitError):
    """The collector refused the bundle (4xx): kept in `outbox/rejected/`, not retried."""


class KeyMismatch(SubmitError):
    """The collector presents a key other than the one pinned for its URL."""


@dataclass(frozen=True)
class Receipt:
    submission_id: int
    envelope_sha256: str  # the envelope stored: ours, or an earlier one of the same statement
    payload_sha256: str  # the statement: always the one sent
    key_id: str  # the signing key the result is credited to, and its vendor
    vendor: str
    received_at: str
    created: bool  # False: the collector already held this statement, signed by this key
    collector_key_id: str


Status = Literal["created", "duplicate", "queued", "rejected", "refused", "error"]


@dataclass(frozen=True)
class Outcome:
    """What became of one bundle: what `deepspark-agent submit` prints."""

    bundle: str
    status: Status
    detail: str
    receipt: Receipt | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def outbox_dir() -> Path:
    return default_key_dir() / "outbox"


def rejected_dir() -> Path:
    return outbox_dir() / "rejected"


def pins_path() -> Path:
    return default_key_dir() / PINS_FILE


def submit(
    bundle: Path, url: str, timeout: float = DEFAULT_TIMEOUT, vendor: str | None = None
) -> Receipt:
    """Deliver `bundle` to the collector at `url`; its verified receipt, or SubmitError.
    `vendor` claims whose result it is: the collector then credits only that vendor's key."""
    _payload_sha256(bundle)  # checks the archive: a hostile file is never queued
    queued = enqueue(bundle)
    with httpx.Client(base_url=_base(url), timeout=timeout) as client:
        return _deliver(client, _base(url), queued, vendor)


def flush(url: str, timeout: float = DEFAULT_TIMEOUT, vendor: str | None = None) -> list[Outcome]:
    """Retry every bundle queued in the outbox, oldest first."""
    queued = sorted(outbox_dir().glob("*.tar"), key=lambda p: p.stat().st_mtime)
    with httpx.Client(base_url=_base(url), timeout=timeout) as client:
        return [outcome(p, lambda p=p: _deliver(client, _base(url), p, vendor)) for p in queued]


def submit_run_set(
    run_set: Path, url: str, timeout: float = DEFAULT_TIMEOUT, vendor: str | None = None
) -> Outcome:
    """Pack the signed run set and submit it; what became of it, named by the run set.

    A file instead of a directory is a result bundle already packed (`deepspark-agent pack`,
    carried out of an air-gapped site): it is submitted as it is.
    """
    if run_set.is_file():
        return outcome(run_set, lambda: submit(run_set, url, timeout, vendor))
    with tempfile.TemporaryDirectory(prefix="deepspark-submit-") as tmp:
        try:
            bundle = pack_run_set(run_set, Path(tmp) / "bundle.tar")
        except ResultBundleError as exc:
            return Outcome(str(run_set), "error", str(exc))
        result = outcome(bundle, lambda: submit(bundle, url, timeout, vendor))
    return replace(result, bundle=str(run_set))


def outcome(bundle: Path, attempt: Callable[[], Receipt]) -> Outcome:
    """Run `attempt() -> Receipt` and say what became of `bundle`."""
    try:
        receipt = attempt()
    except Queued as exc:
        return Outcome(str(bundle), "queued", str(exc))
    except Rejected as exc:
        return Outcome(str(bundle), "rejected", str(exc))
    except (KeyMismatch, VerificationError) as exc:
        return Outcome(str(bundle), "refused", str(exc))
    status: Status = "created" if receipt.created else "duplicate"
    return Outcome(str(bundle), status, "receipt verified", receipt)


def enqueue(bundle: Path) -> Path:
    """The bundle's copy in the outbox (named by its sha256), written atomically."""
    box = outbox_dir()
    if bundle.parent.resolve() == box.resolve():
        return bundle
    data = bundle.read_bytes()
    target = box / f"{hashlib.sha256(data).hexdigest()}.tar"
    if not target.exists():
        write_atomic(target, data)
    return target


def _deliver(client: httpx.Client, url: str, queued: Path, vendor: str | None) -> Receipt:
    public = _collector_key(client, url)
    statement = _statement(queued)
    headers = {"Content-Type": "application/x-tar"}
    if signer := _signer(statement):
        headers[KEY_ID_HEADER] = signer  # lets a busy collector say 429 before the body
    try:
        answer = client.post(
            f"{API}/submissions",
            content=queued.read_bytes(),
            headers=headers,
            params={"vendor": vendor} if vendor is not None else None,
        )
    except httpx.TransportError as exc:
        raise Queued(f"{url}: {transport_reason(exc)}; queued in {queued.parent}") from None
    if answer.status_code >= 500 or answer.status_code in RETRY_STATUSES:
        raise Queued(f"{url}: HTTP {answer.status_code} {answer_detail(answer)}; queued")
    if answer.status_code >= 400:
        kept = rejected_dir() / queued.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        queued.replace(kept)
        raise Rejected(f"HTTP {answer.status_code}: {answer_detail(answer)} (kept in {kept})")
    receipt = _check_receipt(answer.json(), public, payload_sha256(statement))
    queued.unlink(missing_ok=True)  # only now: the collector has signed for it
    return receipt


def _check_receipt(body: Any, public: Ed25519PublicKey, sent: str) -> Receipt:
    try:
        signed = verify_receipt(body["receipt"], public)
        receipt = Receipt(
            submission_id=int(signed["submission_id"]),
            envelope_sha256=str(signed["envelope_sha256"]),
            payload_sha256=str(signed["payload_sha256"]),
            key_id=str(signed["key_id"]),
            vendor=str(signed["vendor"]),
            received_at=str(signed["received_at"]),
            created=bool(body["created"]),
            collector_key_id=key_id(public),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"receipt does not verify: {exc}") from None
    if receipt.payload_sha256 != sent:
        raise VerificationError("the receipt names another statement than the one sent")
    return receipt


def _collector_key(client: httpx.Client, url: str) -> Ed25519PublicKey:
    """The collector's key, pinned on first use; KeyMismatch if it changed since."""
    try:
        answer = client.get(f"{API}/collector-key")
    except httpx.TransportError as exc:
        raise Queued(f"{url}: {transport_reason(exc)}; queued in {outbox_dir()}") from None
    if answer.status_code >= 500:
        raise Queued(f"{url}: HTTP {answer.status_code}; queued in {outbox_dir()}")
    try:
        answer.raise_for_status()
        pem = answer.json()["public_key_pem"]
        public = load_pem_public_key(pem.encode())
    except (httpx.HTTPStatusError, KeyError, TypeError, ValueError) as exc:
        raise KeyMismatch(f"{url}: no usable collector key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise KeyMismatch(f"{url}: the collector key is not Ed25519")
    pins = _read_pins()
    pinned = pins.get(url)
    if pinned is None:
        pins[url] = {"key_id": key_id(public), "public_key_pem": pem}
        write_atomic(pins_path(), (json.dumps(pins, indent=2) + "\n").encode())
    elif pinned["key_id"] != key_id(public):
        raise KeyMismatch(
            f"{url} presents collector key {key_id(public)[:16]}, not the key "
            f"{pinned['key_id'][:16]} pinned on first use; if the change is expected, remove "
            f"its entry from {pins_path()}"
        )
    return public


def _read_pins() -> dict[str, dict[str, str]]:
    try:
        return json.loads(pins_path().read_text())
    except FileNotFoundError:
        return {}


def _payload_sha256(bundle: Path) -> str:
    return payload_sha256(_statement(bundle))


def _statement(bundle: Path) -> bytes:
    try:
        return read_statement(bundle)
    except ResultBundleError as exc:  # a bundle that is not sound is refused, not sent
        raise VerificationError(str(exc)) from None


def _signer(statement: bytes) -> str | None:
    """The key id the envelope's first signature names (the agent signs with one key)."""
    try:
        named = json.loads(statement)["signatures"][0]["keyid"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return named if isinstance(named, str) and named.isascii() and named.isprintable() else None


def _base(url: str) -> str:
    return url.rstrip("/")


def transport_reason(exc: httpx.TransportError) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    return f"{type(exc).__name__}: {exc}"


def answer_detail(answer: httpx.Response) -> str:
    """An error answer in one line: its JSON `detail`, else the start of its text."""
    try:
        return str(answer.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:200]
