"""Issue 14 at the collector, items 1-3: a result is credited to the key that signed it, one
row per statement and key (replays make none and cost nothing), and the whole result is
recomputed. Real signatures, a real SQLite file, FastAPI's TestClient."""

from __future__ import annotations

import base64
import io
import json
import tarfile

import httpx
from alembic import command
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conftest import ADMIN
from deepspark_collector import db
from deepspark_collector.app import create_app
from deepspark_collector.settings import RateLimit
from deepspark_core.attest import STATEMENT_FILE, sign_run_set
from deepspark_core.receipts import verify_receipt
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result
from deepspark_core.signing import PAYLOAD_TYPE, key_id, load_private_key, pae
from test_attest import ALTERED, sign_as_older_agents_did
from test_collector import TAR, register, retar, rows, settings, submit


def claim(client: TestClient, body: bytes, vendor: str) -> httpx.Response:
    return client.post("/api/v1/submissions", content=body, headers=TAR, params={"vendor": vendor})


def envelope_of(bundle: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return json.loads(tar.extractfile(STATEMENT_FILE).read())


def with_envelope(bundle: bytes, envelope: dict | bytes) -> bytes:
    data = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return retar(bundle, lambda name, old: data if name == STATEMENT_FILE else old)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signature(key: Ed25519PrivateKey, envelope: dict) -> dict:
    """`key`'s valid signature over the envelope's payload."""
    message = pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
    return {"keyid": key_id(key.public_key()), "sig": b64(key.sign(message))}


def collector_key(client: TestClient) -> Ed25519PublicKey:
    pem = client.get("/api/v1/collector-key").json()["public_key_pem"]
    return serialization.load_pem_public_key(pem.encode())


def register_other(client: TestClient, vendor: str, key: Ed25519PrivateKey) -> str:
    """Another vendor and its key (this test's own key belongs to the vendor `register` makes)."""
    assert client.post("/api/v1/vendors", json={"name": vendor}, headers=ADMIN).status_code == 201
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"vendor": vendor, "public_key_pem": pem.decode()}
    answer = client.post("/api/v1/keys", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()["key_id"]


def vendors_of_rows(client: TestClient) -> list[tuple[str, str]]:
    return [(r["vendor"], r["key_id"]) for r in client.get("/api/v1/results").json()]


def test_a_forged_signature_naming_another_vendors_key_is_refused(bundle, tmp_path):
    """Item 1: signed only by vendor B; the envelope lists a garbage signature with vendor A's
    key id first. It was accepted and stored under A; now it is refused."""
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        b_id = register(client, "vendor-b")
        a_id = register_other(client, "vendor-a", Ed25519PrivateKey.generate())
        envelope = envelope_of(bundle)
        envelope["signatures"].insert(0, {"keyid": a_id, "sig": b64(bytes(64))})
        forged = with_envelope(bundle, envelope)
        for answer in (submit(client, forged), claim(client, forged, "vendor-a")):
            assert answer.status_code == 401, answer.text
            assert f"signature by {a_id} does not verify" in answer.json()["detail"]
        assert rows(s) == 0

        # The same statement as B signed it is B's, and the receipt says so.
        answer = submit(client, bundle)
        assert answer.status_code == 201, answer.text
        receipt = verify_receipt(answer.json()["receipt"], collector_key(client))
        assert (receipt["vendor"], receipt["key_id"]) == ("vendor-b", b_id)
        assert vendors_of_rows(client) == [("vendor-b", b_id)]


def test_an_unknown_key_id_beside_a_valid_signature_is_ignored(bundle, tmp_path):
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        b_id = register(client, "vendor-b")
        envelope = envelope_of(bundle)
        envelope["signatures"].insert(0, {"keyid": "0" * 64, "sig": b64(bytes(64))})
        answer = submit(client, with_envelope(bundle, envelope))
        assert answer.status_code == 201, answer.text
        assert vendors_of_rows(client) == [("vendor-b", b_id)]


def test_a_co_signed_envelope_is_credited_to_the_claimed_vendor_only(bundle, tmp_path):
    s = settings(tmp_path)
    a_key = Ed25519PrivateKey.generate()
    with TestClient(create_app(s)) as client:
        b_id = register(client, "vendor-b")
        register_other(client, "vendor-a", a_key)
        envelope = envelope_of(bundle)
        envelope["signatures"].insert(0, signature(a_key, envelope))
        both = with_envelope(bundle, envelope)
        answer = submit(client, both)  # no claim: two vendors' keys verified
        assert answer.status_code == 400 and "ambiguous" in answer.json()["detail"]
        answer = claim(client, both, "vendor-c")
        assert answer.status_code == 403 and "of vendor 'vendor-c'" in answer.json()["detail"]
        assert rows(s) == 0
        answer = claim(client, both, "vendor-b")  # A is listed first; B is claimed
        assert answer.status_code == 201, answer.text
        receipt = verify_receipt(answer.json()["receipt"], collector_key(client))
        assert (receipt["vendor"], receipt["key_id"]) == ("vendor-b", b_id)
        assert vendors_of_rows(client) == [("vendor-b", b_id)]


def test_a_claim_needs_an_unrevoked_key_of_that_vendor(bundle, tmp_path):
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        b_id = register(client, "vendor-b")
        register_other(client, "vendor-a", Ed25519PrivateKey.generate())
        answer = claim(client, bundle, "vendor-a")  # A registered, but did not sign
        assert answer.status_code == 403 and "vendor 'vendor-a'" in answer.json()["detail"]
        assert client.post(f"/api/v1/keys/{b_id}/revoke", headers=ADMIN).status_code == 200
        answer = claim(client, bundle, "vendor-b")
        assert answer.status_code == 403 and "revoked" in answer.json()["detail"]
        assert rows(s) == 0


def replays(bundle: bytes) -> dict[str, bytes]:
    """The bundle's statement in other envelopes: what anyone can make of a public result."""
    envelope = envelope_of(bundle)
    (signed,) = envelope["signatures"]

    def urlsafe(value: str) -> str:
        return base64.urlsafe_b64encode(base64.b64decode(value)).decode()

    url_safe = {
        **envelope,
        "payload": urlsafe(envelope["payload"]),
        "signatures": [{**signed, "sig": urlsafe(signed["sig"])}],
    }
    stranger = Ed25519PrivateKey.generate()
    cosigned = {**envelope, "signatures": [*envelope["signatures"], signature(stranger, envelope)]}
    return {
        "whitespace": with_envelope(bundle, json.dumps(envelope, indent=9).encode() + b"\n\n"),
        "url-safe base64": with_envelope(bundle, url_safe),
        "re-signed with an extra signature": with_envelope(bundle, cosigned),
    }


def test_replays_make_no_row_and_cost_the_vendor_no_rate_limit(signed, bundle, tmp_path):
    """Item 2: re-posting a vendor's public statement in another envelope made new rows under
    the vendor and used up its key's budget; now each is the existing submission."""
    run_set, result = signed
    s = settings(tmp_path, rate_limit=RateLimit(burst=2, per_minute=0.001))
    app = create_app(s)
    with TestClient(app, client=("192.0.2.10", 1)) as vendor:
        register(vendor)
        first = submit(vendor, bundle)
        assert first.status_code == 201, first.text  # the key's first token
        for number, (case, body) in enumerate(replays(bundle).items()):
            with TestClient(app, client=(f"192.0.2.{66 + number}", 1)) as replayer:
                answer = submit(replayer, body)
            assert answer.status_code == 200, (case, answer.text)
            assert answer.json()["created"] is False, case
            assert answer.json()["submission_id"] == first.json()["submission_id"], case
            assert answer.json()["envelope_sha256"] == first.json()["envelope_sha256"], case
        assert rows(s) == 1
        # The vendor's next genuine result (another statement) still has its key's budget.
        (run_set / "run-1" / "workload-notes.txt").write_text("a file the workload wrote\n")
        sign_run_set(run_set, result, load_private_key())
        answer = submit(vendor, pack_run_set(run_set, tmp_path / "next.tar").read_bytes())
        assert answer.status_code == 201, answer.text
    assert rows(s) == 2


def test_any_altered_predicate_field_is_refused_by_the_collector(signed, tmp_path):
    """Item 3: signed with the right key, a predicate changed outside the six figures."""
    run_set, result = signed
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        register(client)
        for case, (alter, where) in ALTERED.items():
            claimed = result.model_dump(mode="json")
            alter(claimed)
            sign_run_set(run_set, Result.model_validate(claimed), load_private_key())
            answer = submit(client, pack_run_set(run_set, tmp_path / "b.tar").read_bytes())
            assert answer.status_code == 422, (case, answer.text)
            detail = answer.json()["detail"]
            assert detail == f"the predicate differs from its recomputation at {where}", case
        assert rows(s) == 0


def test_an_older_signed_run_set_is_accepted(signed, tmp_path):
    """Older agents signed report.html and their bookkeeping; those are not packed now, and
    verification does not need them."""
    run_set, result = signed
    sign_as_older_agents_did(run_set, result)
    bundle = pack_run_set(run_set, tmp_path / "old.tar")
    with tarfile.open(bundle) as tar:
        assert "report.html" not in tar.getnames() and "agent.log" not in tar.getnames()
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        register(client)
        answer = submit(client, bundle.read_bytes())
        assert answer.status_code == 201, answer.text


def payload_digests(s) -> list[str | None]:
    with create_engine(s.database_url).connect() as conn:
        return list(conn.execute(text("SELECT payload_sha256 FROM submissions")).scalars())


def test_rows_from_before_0003_get_their_payload_digest_at_start(bundle, tmp_path):
    s = settings(tmp_path)
    with TestClient(create_app(s)) as client:
        register(client)
        first = submit(client, bundle).json()
    (digest,) = payload_digests(s)
    with create_engine(s.database_url).begin() as conn:  # as a row from before 0003 is
        conn.execute(text("UPDATE submissions SET payload_sha256 = NULL"))
    with TestClient(create_app(s)) as client:  # a restart fills it from the kept envelope
        assert payload_digests(s) == [digest]
        answer = submit(client, replays(bundle)["whitespace"])
        assert answer.status_code == 200
        assert answer.json()["submission_id"] == first["submission_id"]
    assert rows(s) == 1


def test_the_0003_and_0004_migrations_keep_older_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    config = db.alembic_config(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(text("INSERT INTO vendors (id, name) VALUES (1, 'acme')"))
        conn.execute(
            text("INSERT INTO keys (key_id, vendor_id, public_key_pem) VALUES ('k', 1, 'pem')")
        )
        for envelope in ("e1", "e2"):  # two rows of one key, as older collectors kept replays
            conn.execute(
                text(
                    "INSERT INTO submissions (envelope_sha256, key_id, model, implements, config, "
                    "mode, nproc, platform, speed, result_json, received_at) VALUES (:e, 'k', "
                    "'sleeper', 'sleeper', 'mini', 'converge', 1, 'cpu: x', 1.5, '{}', "
                    "'2026-12-01 00:00:00')"
                ),
                {"e": envelope},
            )
        command.upgrade(config, "0005")  # not beyond: 0006 reads each row's result
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT envelope_sha256, payload_sha256, implementation FROM submissions")
        )
        # Older rows name no implementation: the leaderboard lists them apart (0004).
        assert sorted(got.all()) == [("e1", None, None), ("e2", None, None)]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0005"
