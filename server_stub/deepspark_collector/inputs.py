"""What the collector refuses of any request before a route runs, and how it says so.

A NUL character in a URL's path or query is refused here, for every route at once: no name
holds one, and PostgreSQL refuses it in a query (a 500 otherwise). Strings in JSON bodies
are constrained by their models (`text`), to what their columns hold. FastAPI's validation
errors are answered as every other error is, `{"detail": "one line"}`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from starlette.types import ASGIApp, Receive, Scope, Send

NO_NUL = r"^[^\x00]*$"


def text(max_length: int) -> Any:
    """A body string of 1 to `max_length` characters (its column's size), without NUL."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_length, pattern=NO_NUL)]


class RefuseNul:
    """ASGI middleware: a request whose path or query holds a NUL (%00) is a 422."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\0" in scope["path"] or b"\0" in unquote_to_bytes(scope["query_string"])
        ):
            refused = JSONResponse({"detail": "a NUL character in the URL"}, status_code=422)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _one_line(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return JSONResponse({"detail": f"{where}: {first['msg']}"}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_middleware(RefuseNul)
    app.add_exception_handler(RequestValidationError, _one_line)
