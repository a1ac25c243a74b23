"""Every input the collector is sent is answered 4xx, never 5xx, on SQLite and PostgreSQL.

One test per probe that once answered 500 (issue 17): NUL characters in URLs and in strings
the collector stores, ids beyond 32 bits, envelopes with too many signatures or nested too
deep, over-length names. Each runs on both databases (`collector`) and checks that nothing
was stored. Real signed run sets, changed and signed again with the test's key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conftest import ADMIN, TOKEN, ServedCollector
from deepspark_collector import db
from deepspark_collector.app import create_app
from deepspark_collector.settings import Settings
from deepspark_core.assess import assess
from deepspark_core.attest import STATEMENT_FILE, sign_run_set
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result
from deepspark_core.signing import PAYLOAD_TYPE, key_id, load_private_key, pae
from test_collector import register, retar, submit

DEEP = "[" * 200_000 + "]" * 200_000
PUBLIC_PEM = PublicFormat.SubjectPublicKeyInfo
TABLES = ("vendors", "keys", "submissions")


@pytest.fixture
def collector(database_url, tmp_path) -> Iterator[tuple[Settings, TestClient]]:
    """The collector on a fresh SQLite file or PostgreSQL schema: its settings and a client
    that answers a server error as a 500 instead of raising it."""
    s = Settings(data_dir=tmp_path / "collector", db_url=database_url, admin_token=TOKEN)
    with TestClient(create_app(s), raise_server_exceptions=False) as client:
        yield s, client


def stored(s: Settings) -> dict[str, int]:
    engine = create_engine(s.database_url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def refused(answer, status: int, *words: str) -> None:
    """`answer` is `status` with a one-line JSON detail naming each of `words`."""
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert all(word in detail for word in words), detail


def resigned(run_set: Path, change: Callable[[Path], None], claim: Result | None = None) -> bytes:
    """The run set changed by `change`, signed again with the test's key (claiming its
    recomputed result, or `claim`), packed as a bundle."""
    change(run_set)
    sign_run_set(run_set, claim or assess(run_set), load_private_key())
    return pack_run_set(run_set, run_set.parent / "changed.tar").read_bytes()


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "url",
    [
        "/models/%00",
        "/models/a%00b",
        "/results/1%00",
        "/compare?model=a%00&a=x&b=y",
        "/api/v1/results?vendor=a%00b",
        "/api/v1/results?model=%00&config=x",
        "/api/v1/results/1%00",
        "/api/v1/compare?model=%00",
    ],
)
def test_a_nul_in_a_path_or_query_is_refused(collector, url):
    s, client = collector
    refused(client.get(url), 422, "NUL")
    refused(client.post("/api/v1/keys/a%00b/revoke", headers=ADMIN), 422, "NUL")
    refused(client.post("/api/v1/submissions?vendor=a%00b", content=b"x"), 422, "NUL")
    assert stored(s) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("vendors", {"name": "a\0b"}, "name"),
        ("vendors", {"name": "v" * 201}, "name"),
        ("vendors", {"name": ""}, "name"),
        ("keys", {"vendor": "a\0b", "public_key_pem": "x"}, "vendor"),
        ("keys", {"vendor": "v" * 201, "public_key_pem": "x"}, "vendor"),
        ("keys", {"vendor": "acme", "public_key_pem": "-----BEGIN\0"}, "public_key_pem"),
        ("keys", {"vendor": "acme", "public_key_pem": "k" * 5000}, "public_key_pem"),
    ],
)
def test_admin_strings_that_no_column_holds_are_refused(collector, path, body, field):
    s, client = collector
    client.post("/api/v1/vendors", json={"name": "acme"}, headers=ADMIN)
    refused(client.post(f"/api/v1/{path}", json=body, headers=ADMIN), 422, field)
    assert stored(s) == {"vendors": 1, "keys": 0, "submissions": 0}


def test_ids_are_64_bit_integers(collector):
    s, client = collector
    for sid in (2**31, 2**32 + 1, 2**63 - 1):
        refused(client.get(f"/api/v1/results/{sid}"), 404, str(sid))
        refused(client.get(f"/api/v1/results/{sid}/artifacts"), 404, str(sid))
        assert client.get(f"/results/{sid}").status_code == 404
    for sid in (2**63, 2**64, 0, -1):
        refused(client.get(f"/api/v1/results/{sid}"), 422, "submission_id")
        assert client.get(f"/results/{sid}").status_code == 422
    # A vendor numbered beyond 32 bits gets keys: the foreign key is 64-bit too.
    engine = create_engine(s.database_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO vendors (id, name) VALUES (:id, 'big')"), {"id": 2**40})
    engine.dispose()
    pem = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PUBLIC_PEM)
    body = {"vendor": "big", "public_key_pem": pem.decode()}
    assert client.post("/api/v1/keys", json=body, headers=ADMIN).status_code == 201
    assert stored(s) == {"vendors": 1, "keys": 1, "submissions": 0}


def envelope_of(bundle: bytes, change: Callable[[dict], object]) -> bytes:
    """The bundle with its statement envelope replaced by `change(envelope)` (JSON, or text)."""

    def swap(name: str, data: bytes) -> bytes:
        if name != STATEMENT_FILE:
            return data
        new = change(json.loads(data))
        return new.encode() if isinstance(new, str) else json.dumps(new).encode()

    return retar(bundle, swap)


def more_signatures(count: int) -> Callable[[dict], dict]:
    def change(envelope: dict) -> dict:
        extra = [{"keyid": f"k{i}", "sig": ""} for i in range(count)]
        return {**envelope, "signatures": envelope["signatures"] + extra}

    return change


def test_an_envelope_with_too_many_signatures_is_refused(collector, bundle):
    s, client = collector
    register(client)
    for count in (16, 100_000):  # with the real one: 17; more than PostgreSQL binds at once
        answer = submit(client, envelope_of(bundle, more_signatures(count)))
        refused(answer, 400, "more than 16 signatures")
    nul = envelope_of(bundle, lambda e: {**e, "signatures": [{"keyid": "a\0b", "sig": ""}]})
    refused(submit(client, nul), 400, "NUL")
    assert stored(s)["submissions"] == 0
    answer = submit(client, envelope_of(bundle, more_signatures(15)))  # 16 are enough
    assert answer.status_code == 201, answer.text


def test_an_envelope_nested_deep_is_refused(collector, bundle, signed):
    s, client = collector
    register(client)
    refused(submit(client, envelope_of(bundle, lambda _: DEEP)), 400, STATEMENT_FILE)
    nested = json.loads("[" * 100 + "]" * 100)  # within Python's limit, over the collector's
    refused(submit(client, envelope_of(bundle, lambda e: {**e, "x": nested})), 400)

    # Its payload nested deep, signed: the signature verifies, the statement is not read.
    key = load_private_key()
    payload = DEEP.encode()
    sig = base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()
    deep = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": sig}],
    }
    refused(submit(client, envelope_of(bundle, lambda _: deep)), 401, "nested deeper")
    assert stored(s)["submissions"] == 0


@pytest.mark.parametrize("name", ["plan.json", "run-1/run.json"])
def test_a_signed_file_nested_deep_is_refused(collector, signed, name):
    s, client = collector
    register(client)
    run_set, claim = signed

    def nest(root: Path) -> None:  # a first key whose value is 300 arrays deep
        path = root / name
        path.write_text(
            path.read_text().replace("{", '{"deep": ' + DEEP[:300] + DEEP[-300:] + ",", 1)
        )

    refused(submit(client, resigned(run_set, nest, claim)), 422, name.rsplit("/")[-1])
    assert stored(s)["submissions"] == 0


def test_event_and_telemetry_lines_nested_deep_are_malformed_lines(collector, signed):
    _, client = collector
    register(client)
    run_set, claim = signed

    def add_deep_lines(root: Path) -> None:
        for name, line in (("mllog.log", f":::MLLOG {DEEP}"), ("telemetry.jsonl", DEEP)):
            with (root / "run-1" / name).open("a") as out:
                out.write(line + "\n")

    answer = submit(client, resigned(run_set, add_deep_lines))
    assert answer.status_code == 201, answer.text
    result = client.get(f"/api/v1/results/{answer.json()['submission_id']}").json()["result"]
    before = [run.malformed_lines for run in claim.runs]
    assert [run["malformed_lines"] for run in result["runs"]] == [before[0] + 1, *before[1:]]
    assert result["dimensions"] == claim.model_dump(mode="json")["dimensions"]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda plan: plan.update(model="m" * 201), ("model", "longer than 200")),
        (lambda plan: plan.update(framework="a\0b"), ("framework", "NUL")),
        (lambda plan: plan.update(config="c" * 201), ("config", "longer than 200")),
        (lambda plan: plan["system"]["host"].update(cpu_model="x" * 300), ("platform",)),
    ],
)
def test_signed_plan_strings_that_no_column_holds_are_refused(collector, signed, change, words):
    s, client = collector
    register(client)
    run_set, _ = signed
    bundle = resigned(run_set, lambda root: edit_json(root / "plan.json", change))
    refused(submit(client, bundle), 422, "signed plan", *words)
    assert stored(s)["submissions"] == 0


def test_0005_makes_postgresql_ids_64_bit_and_keeps_rows(postgres_url):
    engine = db.make_engine(postgres_url)
    config = db.alembic_config(postgres_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(text("INSERT INTO vendors (name) VALUES ('acme')"))
        conn.execute(
            text("INSERT INTO keys (key_id, vendor_id, public_key_pem) VALUES ('k', 1, 'p')")
        )
    db.migrate(engine)
    types = text(
        "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND column_name IN ('id', 'vendor_id')"
    )
    with engine.begin() as conn:
        assert dict(conn.execute(types).all()) == {
            "vendors.id": "bigint", "keys.vendor_id": "bigint", "submissions.id": "bigint",
            "standings.id": "bigint", "scenario_figures.id": "bigint"
        }  # fmt: skip
        conn.execute(text("SELECT setval('vendors_id_seq', :n)"), {"n": 2**40})
        new = conn.execute(text("INSERT INTO vendors (name) VALUES ('big') RETURNING id"))
        assert new.scalar_one() == 2**40 + 1  # the sequence numbers beyond 32 bits too
        conn.execute(text("DELETE FROM vendors WHERE name = 'big'"))  # to go back, fit 32 bits
        conn.execute(text("SELECT setval('vendors_id_seq', 1)"))
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
        assert dict(conn.execute(types).all())["keys.vendor_id"] == "integer"
        assert conn.execute(text("SELECT name FROM vendors")).scalars().all() == ["acme"]
    engine.dispose()


def test_a_served_collector_refuses_nul_in_urls_as_uvicorn_decodes_them(tmp_path):
    collector = ServedCollector(tmp_path / "served").start()
    try:
        for url in ("/models/%00", "/api/v1/results?vendor=a%00b", "/api/v1/results/1%00"):
            refused(httpx.get(collector.url + url), 422, "NUL")
        assert httpx.get(f"{collector.url}/api/v1/results/{2**63 - 1}").status_code == 404
    finally:
        collector.stop()
