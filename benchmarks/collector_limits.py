"""The collector under attack: what large uploads, slow clients and a flood of connections get.

.venv/bin/python benchmarks/collector_limits.py [--large 4] [--large-mb 250] [--slow 300]
    [--flood 1100] [--nofile 1024] [--only large|slow|flood]

Each scenario meets a fresh `deepspark-collector serve` with its default options (so that the
same script measures an older collector), its open-files limit set to --nofile (soft and
hard, as a service manager's default), spoken to over raw sockets:

- large: --large clients at once each POST --large-mb MB of junk (one address, as from one
  host): their answers, the MB each had sent when answered, the spool's peak.
- slow: --slow clients each send a submission's headers, then a byte a second: their answers,
  the seconds until the last, the spool folders at their peak.
- flood: --flood connections at once, each GET /api/v1/results: answers by status ("reset":
  closed without one, "none": no answer in 60 s), the bytes of log the collector wrote.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MB = 10**6
SUBMISSIONS = "/api/v1/submissions"


@contextmanager
def served(work: Path, nofile: int) -> Iterator[tuple[int, Path, Path]]:
    """`deepspark-collector serve` on a free port: (port, its spool folder, its log)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data, log = work / f"data-{port}", work / f"serve-{port}.log"
    exe = Path(sys.executable).parent / "deepspark-collector"
    command = [exe, "serve", "--port", str(port), "--data-dir", str(data)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
    try:
        deadline = time.monotonic() + 60
        while not answers(port):
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield port, data / "spool", log
    finally:
        process.terminate()
        process.wait(timeout=30)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def post_headers(port: int, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST {SUBMISSIONS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def status_of(sock: socket.socket) -> str:
    """The status of the answer waiting on `sock` ("reset" if it closed without one)."""
    try:
        line = sock.recv(4096).split(b"\r\n", 1)[0].split()
    except TimeoutError:
        return "none"
    except OSError:
        return "reset"
    return line[1].decode() if len(line) > 1 else "reset"


def answered(sock: socket.socket) -> bool:
    """Whether an answer (or the connection's end) is waiting, without waiting."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # a byte, or b"" at the end: either way, answered
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


class Peak:
    """The largest value of `measure()`, sampled every 0.1 s while it runs."""

    def __init__(self, measure: Callable[[], float]) -> None:
        self.measure, self.value, self._stop = measure, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, self.measure())
            time.sleep(0.1)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def spool_bytes(spool: Path) -> float:
    total = 0
    for path in spool.rglob("*"):
        with contextlib.suppress(OSError):  # removed while we looked
            total += path.stat().st_size if path.is_file() else 0
    return total


def large(port: int, spool: Path, clients: int, size_mb: int) -> None:
    results: list[tuple[str, float, float]] = []

    def upload() -> None:
        start = time.monotonic()
        sock = post_headers(port, size_mb * MB)
        sent, chunk = 0, b"\0" * MB
        try:
            while sent < size_mb * MB and not answered(sock):
                sock.sendall(chunk)
                sent += MB
        except OSError:  # the collector answered and closed while we sent
            pass
        status = status_of(sock)
        sock.close()
        results.append((status, sent / MB, time.monotonic() - start))

    with Peak(lambda: spool_bytes(spool)) as peak:
        threads = [threading.Thread(target=upload) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for status, sent, seconds in sorted(results):
        print(f"  {status}: after {sent:.0f} MB sent, {seconds:.1f} s")
    print(f"  spool peak {peak.value / 2**20:.0f} MiB")


def slow(port: int, spool: Path, clients: int) -> None:
    statuses: list[str] = []
    start = time.monotonic()

    def trickle() -> None:
        sock = post_headers(port, MB)
        sock.settimeout(1)
        status = "none"
        for _ in range(120):  # a byte a second for at most two minutes
            try:
                sock.sendall(b"x")
            except OSError:
                status = "reset"
                break
            status = status_of(sock)
            if status != "none":
                break
        sock.close()
        statuses.append(status)

    with Peak(lambda: len(list(spool.glob("submission-*")))) as peak:
        threads = [threading.Thread(target=trickle) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(f"  answers {dict(collections.Counter(statuses))}")
    print(f"  last after {time.monotonic() - start:.1f} s; spool folders peak {peak.value:.0f}")


def flood(port: int, log: Path, connections: int) -> None:
    before = log.stat().st_size
    start = time.monotonic()
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(b"GET /api/v1/results HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    statuses = collections.Counter(status_of(sock) for sock in socks)
    for sock in socks:
        sock.close()
    time.sleep(1)  # what the collector logs as the connections go
    print(f"  answers {dict(statuses)} in {time.monotonic() - start:.1f} s")
    print(f"  log written {(log.stat().st_size - before) / 1000:.1f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=250)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--flood", type=int, default=1100)
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--only", choices=("large", "slow", "flood"))
    args = parser.parse_args()
    # This process holds every client's socket.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="collector-limits-") as tmp:
        work = Path(tmp)
        os.environ.pop("DEEPSPARK_COLLECTOR_DB_URL", None)  # SQLite in each data folder
        if args.only in (None, "large"):
            print(f"large: {args.large} uploads of {args.large_mb} MB at once")
            with served(work, args.nofile) as (port, spool, _):
                large(port, spool, args.large, args.large_mb)
        if args.only in (None, "slow"):
            print(f"slow: {args.slow} clients sending a byte a second")
            with served(work, args.nofile) as (port, spool, _):
                slow(port, spool, args.slow)
        if args.only in (None, "flood"):
            print(f"flood: {args.flood} connections at once, open files {args.nofile}")
            with served(work, args.nofile) as (port, _, log):
                flood(port, log, args.flood)


if __name__ == "__main__":
    main()
