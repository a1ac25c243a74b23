"""Limits before bodies, connection limits and security headers: a real collector under
uvicorn (`deepspark-collector serve`), spoken to over raw sockets where the test needs a
client that sends headers and then holds, trickles or never sends its body."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import ServedCollector
from deepspark_collector.app import create_app
from deepspark_collector.settings import Settings
from deepspark_core.receipts import KEY_ID_HEADER
from deepspark_core.signing import key_id, load_private_key

SUBMISSIONS = "/api/v1/submissions"
BIG = 100 * 2**20  # a Content-Length the body never reaches: answers come before it


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def detail(self) -> str:
        return json.loads(self.body)["detail"]


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """Start a collector with serve's `options`; every one started is stopped at the end."""
    started: list[ServedCollector] = []

    def start(*options: str, nofile: int | None = None) -> ServedCollector:
        served = ServedCollector(tmp_path / f"served{len(started)}", options=options, nofile=nofile)
        started.append(served)
        return served.start()

    yield start
    for served in started:
        served.stop()


def post_headers(served: ServedCollector, length: int, **headers: str) -> socket.socket:
    """A connection that has sent a submission's headers (with `length`) and no body yet."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=15)
    lines = [
        f"POST {SUBMISSIONS} HTTP/1.1",
        f"Host: 127.0.0.1:{served.port}",
        "Content-Type: application/x-tar",
        f"Content-Length: {length}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def answer(sock: socket.socket) -> Answer:
    """The response on `sock`, read to its Content-Length (the server need not close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return Answer(int(status_line.split()[1]), headers, body)


def spooled(served: ServedCollector) -> list[Path]:
    return list((served.data / "spool").glob("submission-*"))


def until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the collector did not get there in time"
        time.sleep(0.05)


# --- limits before bodies ------------------------------------------------------------------


def test_a_body_that_stalls_or_trickles_is_cut_with_408_and_its_spool_removed(serve):
    served = serve("--body-timeout", "1", "--min-body-rate", "1000")
    silent = post_headers(served, 10_000)
    start = time.monotonic()
    stalled = answer(silent)
    assert stalled.status == 408 and "too slowly" in stalled.detail()
    assert 0.9 <= time.monotonic() - start < 5

    trickle = post_headers(served, 10_000)
    until(lambda: len(spooled(served)) == 1)  # receiving: its spool folder exists
    trickle.settimeout(0.3)
    sent = 0
    while True:  # 10 bytes every 0.3 s: never idle for 1 s, far below 1000 bytes/s
        trickle.sendall(b"x" * 10)
        sent += 10
        try:
            cut = answer(trickle)
            break
        except TimeoutError:
            assert sent < 200, "a trickle of 33 bytes/s was never cut"
    assert cut.status == 408 and "1000 bytes/s" in cut.detail()
    until(lambda: spooled(served) == [])  # removed in the background after the answer
    silent.close()
    trickle.close()


def test_uploads_past_the_cap_get_503_before_their_bodies(serve):
    served = serve("--max-uploads", "2")
    held = [post_headers(served, BIG) for _ in range(2)]
    for sock in held:
        sock.sendall(b"x" * 1000)  # receiving, far from done
    until(lambda: len(spooled(served)) == 2)
    extra = post_headers(served, BIG)  # no byte of its body is ever sent
    busy = answer(extra)
    assert busy.status == 503 and "2 uploads" in busy.detail()
    assert int(busy.headers["retry-after"]) >= 1
    assert len(spooled(served)) == 2
    for sock in held:
        sock.close()
    until(lambda: spooled(served) == [])  # the held uploads left: their slots are free
    empty = httpx.post(f"{served.url}{SUBMISSIONS}", content=b"")
    assert empty.status_code == 400 and "empty body" in empty.json()["detail"]
    extra.close()


def test_uploads_past_the_spool_budget_get_503_before_their_bodies(serve):
    served = serve("--max-spool", "3000")
    held = post_headers(served, 2000)
    held.sendall(b"x" * 10)
    until(lambda: len(spooled(served)) == 1)
    too_big = post_headers(served, 1500)
    busy = answer(too_big)
    assert busy.status == 503 and "1 uploads (2000 bytes)" in busy.detail()
    fits = post_headers(served, 1000)
    fits.sendall(b"y" * 1000)
    assert answer(fits).status == 400  # received and checked: not a bundle
    for sock in (held, too_big, fits):
        sock.close()


def test_a_rate_limited_address_gets_429_before_its_body(serve):
    served = serve("--rate-burst", "1", "--rate-per-minute", "1")
    assert httpx.post(f"{served.url}{SUBMISSIONS}", content=b"").status_code == 400
    sock = post_headers(served, BIG)
    limited = answer(sock)
    assert limited.status == 429 and "from this address" in limited.detail()
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    until(lambda: spooled(served) == [])  # the first (400) one's, removed in the background
    sock.close()


def test_the_key_header_is_looked_at_before_the_body_and_never_charged(serve, bundle):
    """The agent names its key; an empty bucket answers 429 before the body, a forged name
    costs the key nothing. Each request comes from its own address (X-Forwarded-For from a
    configured proxy), so that only the key's bucket is in play."""
    served = serve(
        "--forwarded-allow-ips", "127.0.0.1", "--rate-burst", "1", "--rate-per-minute", "0.01"
    )
    served.register()
    kid = key_id(load_private_key().public_key())

    def post(address: str, body: bytes, **headers: str) -> httpx.Response:
        headers = {"X-Forwarded-For": address, "Content-Type": "application/x-tar", **headers}
        return httpx.post(f"{served.url}{SUBMISSIONS}", content=body, headers=headers, timeout=60)

    named = {KEY_ID_HEADER: kid}
    assert post("192.0.2.1", b"not a bundle" * 50, **named).status_code == 400  # forged
    assert post("192.0.2.2", bundle, **named).status_code == 201  # the key's one token
    sock = post_headers(served, BIG, X_Forwarded_For="192.0.2.3", **{KEY_ID_HEADER: kid})
    spent = answer(sock)
    assert spent.status == 429 and "for this key" in spent.detail()
    assert int(spent.headers["retry-after"]) > 60
    sock.close()
    # The same statement again, unnamed, from a fresh address: a duplicate, never charged.
    assert post("192.0.2.4", bundle).status_code == 200


def test_forwarded_headers_are_ignored_unless_from_a_configured_proxy(serve):
    def post(served: ServedCollector, address: str) -> int:
        headers = {"X-Forwarded-For": address}
        return httpx.post(f"{served.url}{SUBMISSIONS}", content=b"", headers=headers).status_code

    limits = ("--rate-burst", "1", "--rate-per-minute", "1")
    served = serve(*limits)  # by default the peer (loopback) is the client, whatever it says
    assert [post(served, "192.0.2.1"), post(served, "192.0.2.2")] == [400, 429]
    proxied = serve(*limits, "--forwarded-allow-ips", "127.0.0.1")
    assert [post(proxied, a) for a in ("192.0.2.1", "192.0.2.2", "192.0.2.1")] == [400, 400, 429]


# --- security headers ----------------------------------------------------------------------


def test_every_response_carries_the_security_headers(serve):
    served = serve()
    for path in ("/", "/api/v1/results", "/models/none", "/openapi.json"):
        got = httpx.get(f"{served.url}{path}")
        policy = got.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy and "'unsafe-inline'" not in policy
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["x-frame-options"] == "DENY"
        assert got.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{served.url}/docs").status_code == 404  # its scripts come from a CDN


# --- connection limits ---------------------------------------------------------------------


def descriptors(served: ServedCollector) -> int:
    assert served.process is not None
    return len(list(Path(f"/proc/{served.process.pid}/fd").iterdir()))


def settled_descriptors(served: ServedCollector) -> int:
    """The collector's open descriptors once the count holds still (start's own request
    gone): from then on only the test's connections change it."""
    counts = [descriptors(served)]
    while len(counts) < 2 or counts[-1] != counts[-2]:
        time.sleep(0.3)
        counts.append(descriptors(served))
    return counts[-1]


def get(served: ServedCollector) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=15)
    sock.sendall(b"GET /api/v1/results HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_a_flood_of_connections_is_answered_503_not_500(serve):
    """200 open files: serve limits itself to 68 connections; 150 at once are each answered
    (503 by uvicorn past the limit), with no error in the log."""
    served = serve(nofile=200)
    flood = [get(served) for _ in range(150)]
    statuses = [answer(sock).status for sock in flood]
    for sock in flood:
        sock.close()
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 150 - 68
    assert httpx.get(f"{served.url}/api/v1/results").status_code == 200
    log = served.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log


def test_no_descriptor_left_for_the_spool_answers_503_in_one_log_line(serve):
    """The connection limit set too high for the open files: idle connections take every
    descriptor but one, the submission's own socket takes that, and its spool file cannot be
    opened: a 503 and one line, not a traceback. accept() fails too, once the table is full:
    a line a second, not asyncio's traceback per try. Once they leave, submissions go on."""
    served = serve("--limit-concurrency", "1000", nofile=100)
    base = settled_descriptors(served)
    idle = []
    for _ in range(99 - base):  # one at a time, each accepted
        idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=15))
        until(lambda: descriptors(served) == base + len(idle))
    sock = post_headers(served, 1000)
    refused = answer(sock)
    assert refused.status == 503 and "no file descriptor left" in refused.detail()
    assert refused.headers["retry-after"] == "5"
    for s in [sock, *idle]:
        s.close()
    until(lambda: descriptors(served) == base)
    assert httpx.post(f"{served.url}{SUBMISSIONS}", content=b"").status_code == 400
    until(lambda: spooled(served) == [])
    log = served.log.read_text().splitlines()
    assert not [line for line in log if "Traceback" in line]
    assert log.count(f"POST {SUBMISSIONS}: 503, Too many open files") == 1
    accept = [line for line in log if line.startswith("accept(): Too many open files")]
    assert 1 <= len(accept) <= 5 and len(log) < 30


def test_a_database_out_of_reach_answers_503_in_one_log_line(tmp_path, caplog):
    """What running out of descriptors does to SQLite (it cannot open its file), made
    plainly: the pool emptied and the database's folder moved away."""
    data = tmp_path / "collector"
    with TestClient(create_app(Settings(data_dir=data))) as client:
        client.app.state.engine.dispose()
        data.rename(tmp_path / "moved")
        got = client.get("/api/v1/results")
        assert got.status_code == 503 and got.headers["retry-after"] == "5"
        assert got.json() == {"detail": "the collector cannot reach its database; try again later"}
    logged = [r.getMessage() for r in caplog.records if r.name == "deepspark_collector"]
    assert logged == ["GET /api/v1/results: 503, unable to open database file"]
