"""Limits on uploads and connections, applied before and while a body is read.

`UploadGate` caps the uploads a worker receives and checks at once, and the bytes they
declare (each holds a spool folder); `receive` streams one body to its file, cutting it when
it is too large (413) or too slow (408); `raise_nofile` and `connection_limit` size uvicorn's
connection limit to the descriptors the process may open, so that a flood is answered 503 by
uvicorn itself rather than failing inside the app; `out_of_descriptors` and
`database_unreachable` recognise what still fails (EMFILE, a database that cannot be opened),
and `quiet_accept_errors` keeps asyncio from logging a traceback for each accept() that fails
so.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect, Request

from deepspark_collector.settings import UploadLimits
from deepspark_collector.verify import Rejected

# Seconds a client is told to wait when the collector is busy (uploads, descriptors).
BUSY_RETRY_AFTER = 5
# Descriptors kept for what is not one per connection: the database, logs, the listening
# socket, the threadpool's files.
FD_RESERVE = 64
# Connections served at once, however many descriptors there are: past it, uvicorn answers 503.
MAX_CONNECTIONS = 2048
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message
SQLITE_CANTOPEN = 14

log = logging.getLogger("deepspark_collector")


class UploadGate:
    """At most `limit` uploads at once in this worker, declaring at most `spool_bytes` in all
    (its event loop counts them: no lock). One upload alone always passes the byte budget:
    the size limit is the body's own."""

    def __init__(self, limit: int, spool_bytes: int) -> None:
        self._limit = limit
        self._spool_bytes = spool_bytes
        self._open = 0
        self._reserved = 0

    @contextmanager
    def slot(self, size: int) -> Iterator[None]:
        """Held from before the body of `size` bytes is read until its spool folder is gone;
        503 when the worker has no room for it."""
        if self._open >= self._limit or (self._open and self._reserved + size > self._spool_bytes):
            busy = (
                f"the collector is receiving {self._open} uploads ({self._reserved} bytes) "
                "already; try again later"
            )
            raise Rejected(503, busy, BUSY_RETRY_AFTER)
        self._open += 1
        self._reserved += size
        try:
            yield
        finally:
            self._open -= 1
            self._reserved -= size


async def receive(request: Request, path: Path, max_bytes: int, limits: UploadLimits) -> None:
    """Stream the body to `path`: 413 as soon as it passes `max_bytes`; 408 when a chunk takes
    longer than `limits.idle_s`, or the body falls behind `limits.min_rate` bytes/s once
    `idle_s` have passed since it started (a trickle of a byte a second is cut too)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = 0
    chunks = aiter(request.stream())
    with path.open("wb") as out:
        while True:
            # The moment the bytes received so far stop meeting the floor on the rate.
            behind = start + limits.idle_s + _seconds(received, limits.min_rate)
            wait = max(0.0, min(limits.idle_s, behind - loop.time()))
            try:
                chunk = await asyncio.wait_for(anext(chunks), wait)
            except StopAsyncIteration:
                return
            except TimeoutError:
                too_slow = (
                    f"the body arrived too slowly ({received} bytes in "
                    f"{loop.time() - start:.0f} s): a chunk at least every {limits.idle_s:g} s "
                    f"and {limits.min_rate:g} bytes/s after the first {limits.idle_s:g} s"
                )
                raise Rejected(408, too_slow) from None
            except ClientDisconnect:
                raise Rejected(400, "the client left before its body was received") from None
            received += len(chunk)
            if received > max_bytes:
                raise Rejected(413, f"a result bundle may be at most {max_bytes} bytes")
            out.write(chunk)


def _seconds(size: int, rate: float) -> float:
    return size / rate if rate > 0 else math.inf


def out_of_descriptors(exc: OSError) -> bool:
    """The process (EMFILE) or the system (ENFILE) has no file descriptor left."""
    return exc.errno in (errno.EMFILE, errno.ENFILE)


def database_unreachable(exc: OperationalError) -> bool:
    """No connection could be made (SQLAlchemy names no statement), or SQLite could not open
    its files: what running out of descriptors does to the database, as does a server down."""
    return exc.statement is None or getattr(exc.orig, "sqlite_errorcode", None) == SQLITE_CANTOPEN


def raise_nofile() -> int:
    """Raise this process's soft limit on open files to its hard limit (Linux often starts
    services at 1024 of a hard 524288); the soft limit it has now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 2**16)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # some systems refuse the hard limit itself (macOS)
            pass
    return soft


def connection_limit(nofile: int) -> int:
    """The connections to serve at once with `nofile` descriptors: each may hold its socket
    and a file (its spool file, an artifact being sent), and the reserve stays free."""
    return max(1, min(MAX_CONNECTIONS, (nofile - FD_RESERVE) // 2))


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """One line a second, no traceback, for accept() finding no descriptor. asyncio logs a
    traceback for each try, and on Linux (which needs a free descriptor even to find the
    queue empty) it tries up to the listen backlog (2048 under uvicorn) times per wake-up;
    then it pauses accepting for a second, the connections waiting in the backlog."""
    previous = loop.get_exception_handler()
    said = -math.inf

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        nonlocal said
        exc = context.get("exception")
        if context.get("message") != ACCEPT_FAILED or not isinstance(exc, OSError):
            if previous is None:
                loop.default_exception_handler(context)
            else:
                previous(loop, context)
        elif loop.time() - said >= 1:
            said = loop.time()
            log.warning("accept(): %s; new connections wait", exc.strerror)

    loop.set_exception_handler(handler)
