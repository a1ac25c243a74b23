"""The collector's HTTP API: admin, submissions, and read-only results.

`prepare(settings)` does what must happen once per data directory and database, before any
worker serves: the database brought to the newest Alembic revision, the receipt key loaded
(or created), older rows' payload digests filled, the spool emptied. `create_app(settings)`
prepares and builds the FastAPI application; `worker_app` is uvicorn's factory for each of
`serve --workers N`'s processes, which the parent prepared: they share nothing but the
database and the data directory. Every error is JSON `{"detail": "..."}` with a status a
client can act on.
"""

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from deepspark_collector import board, db, inputs, links, spool, store, web
from deepspark_collector.headers import SecurityHeaders, content_security_policy
from deepspark_collector.limits import (
    BUSY_RETRY_AFTER,
    UploadGate,
    database_unreachable,
    out_of_descriptors,
    quiet_accept_errors,
    receive,
)
from deepspark_collector.ratelimit import RateLimiter
from deepspark_collector.settings import Settings
from deepspark_collector.verify import (
    Rejected,
    Signed,
    check_run_set,
    check_signature,
    read_envelope,
)
from deepspark_core import export
from deepspark_core.receipts import KEY_ID_HEADER, collector_key, sign_receipt
from deepspark_core.result_bundle import Limits, ResultBundleError, unpack
from deepspark_core.results import Result
from deepspark_core.signing import key_id

API = "/api/v1"
BUNDLE_FILE = "bundle.tar"
log = logging.getLogger("deepspark_collector")


VendorName = inputs.text(db.Vendor.__table__.c.name.type.length)
PublicKeyPem = inputs.text(4096)  # an Ed25519 key's PEM is 113 characters


class VendorIn(BaseModel):
    name: VendorName


class KeyIn(BaseModel):
    vendor: VendorName
    public_key_pem: PublicKeyPem


Limit = Annotated[int, Query(ge=1, le=store.PAGE_MAX)]


def result_filters(
    model: str | None = None,
    vendor: str | None = None,
    device: str | None = None,
    config: str | None = None,
    suite: str | None = None,
    mode: str | None = None,
    implementation: store.Origin | None = None,
    framework: str | None = None,
    kind: board.Kind | None = None,
) -> store.Filters:
    """The filters of a list of results, from its query (`suite` another name for config)."""
    return store.Filters(
        model=model, vendor=vendor, device=device, config=config or suite, mode=mode,
        implementation=implementation, framework=framework, kind=kind,
    )  # fmt: skip


@dataclass(frozen=True)
class Format:
    """An export's form: its lines and media type."""

    lines: Callable[[Iterable[export.Row]], Iterator[str]]
    media_type: str


# The export's forms by file suffix (`/results.csv`, `/results.jsonl`).
Suffix = Literal["csv", "jsonl"]
FORMATS: dict[str, Format] = {
    "csv": Format(export.csv_lines, "text/csv; charset=utf-8; header=present"),
    "jsonl": Format(export.jsonl_lines, "application/x-ndjson"),
}
EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}
}


def _download(
    suffix: str, rows: Iterable[export.Row], name: str, headers: dict[str, str] | None = None
) -> StreamingResponse:
    """Rows streamed as an attachment (a download, never a page rendered in our origin)."""
    form = FORMATS[suffix]
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{suffix}"'}
    return StreamingResponse(
        form.lines(rows), media_type=form.media_type, headers=(headers or {}) | disposition
    )


def prepare(settings: Settings) -> None:
    """What runs once before the collector serves, in `serve`'s parent process."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    spool.clear(settings.spool_dir)
    collector_key(settings.key_dir)
    engine = db.make_engine(settings.database_url)
    try:
        db.migrate(engine)
        store.fill_payload_digests(db.sessions(engine), settings.artifacts_dir)  # before 0003
    finally:
        engine.dispose()


def worker_app() -> FastAPI:
    """uvicorn's factory: one worker's app, from the settings its parent prepared."""
    return create_app(Settings.from_parent(), prepared=True)


def create_app(settings: Settings, prepared: bool = False) -> FastAPI:
    """The app; prepared: `prepare(settings)` ran already (else it runs here)."""
    if not prepared:
        prepare(settings)
    engine = db.make_engine(settings.database_url)
    factory = db.sessions(engine)
    writer = db.Writer(engine)
    received = spool.Spool(settings.spool_dir)
    # Per process: with N workers an address or key gets up to N x burst (settings.RateLimit).
    limiter = RateLimiter(settings.rate_limit.burst, settings.rate_limit.per_minute)
    uploads = UploadGate(settings.uploads.concurrent, settings.uploads.spool_bytes)
    receipt_key = collector_key(settings.key_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = db.THREADS
        quiet_accept_errors(asyncio.get_running_loop())
        yield
        engine.dispose()

    # No /docs nor /redoc: their pages load scripts from a CDN, which the policy refuses.
    app = FastAPI(
        title="DeepSpark collector", version="1", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.add_middleware(SecurityHeaders, policy=content_security_policy(web.templates))
    app.state.settings = settings
    app.state.engine = engine
    app.state.pages = web.Pages()
    app.state.collector_key_id = key_id(receipt_key.public_key())
    inputs.install(app)

    bearer = HTTPBearer(auto_error=False)

    def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if settings.admin_token is None:
            raise HTTPException(503, "the admin API is disabled: no admin token is configured")
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.admin_token.encode()):
            raise HTTPException(
                401, "admin token missing or wrong", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(Rejected)
    async def rejected(_request: Request, exc: Rejected) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    # Out of descriptors under a flood, or a database out of reach: a 503 and one log line
    # (the cause, which the client is not told), not a traceback per request.
    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        if not out_of_descriptors(exc):
            raise exc
        return _unavailable(request, "the collector has no file descriptor left", exc.strerror)

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError) -> JSONResponse:
        if not database_unreachable(exc):
            raise exc
        cause = str(exc.orig).partition("\n")[0]
        return _unavailable(request, "the collector cannot reach its database", cause)

    def _unavailable(request: Request, detail: str, cause: str) -> JSONResponse:
        log.warning("%s %s: 503, %s", request.method, request.url.path, cause)
        headers = {"Retry-After": str(BUSY_RETRY_AFTER)}
        return JSONResponse({"detail": f"{detail}; try again later"}, 503, headers=headers)

    # --- admin ----------------------------------------------------------------------------

    @app.post(f"{API}/vendors", status_code=201, dependencies=[Depends(admin)])
    def add_vendor(body: VendorIn) -> dict[str, Any]:
        try:
            return {"id": store.add_vendor(factory, body.name), "name": body.name}
        except store.Conflict as exc:
            raise HTTPException(409, str(exc)) from None

    @app.post(f"{API}/keys", status_code=201, dependencies=[Depends(admin)])
    def add_key(body: KeyIn) -> dict[str, Any]:
        try:
            kid = store.add_key(factory, body.vendor, body.public_key_pem)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except store.Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, f"public_key_pem: {exc}") from None
        return {"key_id": kid, "vendor": body.vendor}

    @app.post(f"{API}/keys/{{kid}}/revoke", dependencies=[Depends(admin)])
    def revoke_key(kid: str) -> dict[str, Any]:
        try:
            revoked_at = store.revoke_key(factory, kid)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"key_id": kid, "revoked_at": revoked_at.isoformat()}

    # --- submissions ----------------------------------------------------------------------

    @app.post(f"{API}/submissions")
    async def submit(request: Request, vendor: str | None = None) -> JSONResponse:
        """A result bundle; `vendor` claims whose result it is (a verified, unrevoked key of
        that vendor must have signed it); without it, every verified key must be one
        vendor's."""
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else settings.max_body
        if size > settings.max_body:
            raise Rejected(413, f"a result bundle may be at most {settings.max_body} bytes")
        with uploads.slot(size):  # every check before a byte of the body is read
            _charge_before_body(request)
            work = received.folder()
            try:
                bundle = work / BUNDLE_FILE
                await receive(request, bundle, settings.max_body, settings.uploads)
                status, body = await run_in_threadpool(_process, bundle, work, vendor)
            finally:
                received.discard(work)
        return JSONResponse(body, status_code=status)

    def _charge_before_body(request: Request) -> None:
        """The sender's address is charged; the key the agent names (unverified) is only
        looked at: an empty bucket answers 429 at once, a forged name uses up nothing. The
        key that really signed is charged after verification."""
        client = request.client.host if request.client else "unknown"
        if not limiter.allow(address := f"address {client}"):
            busy = "too many submissions from this address; try again later"
            raise Rejected(429, busy, limiter.retry_after(address))
        named = request.headers.get(KEY_ID_HEADER)
        if named and not limiter.has_token(claimed := f"key {named}"):
            busy = "too many submissions for this key; try again later"
            raise Rejected(429, busy, limiter.retry_after(claimed))

    def _process(bundle: Path, work: Path, vendor: str | None) -> tuple[int, dict[str, Any]]:
        if bundle.stat().st_size == 0:
            raise Rejected(400, "empty body: send a result bundle (application/x-tar)")
        try:
            unpacked = unpack(bundle, work / "unpacked", Limits(total=settings.max_body))
        except ResultBundleError as exc:
            raise Rejected(400, f"not a valid result bundle: {exc}") from None
        run_set = unpacked.run_set
        envelope = read_envelope(run_set)
        keys, stored = store.key_states(factory, envelope.keyids, envelope.payload_sha256)
        signed = check_signature(envelope, keys, vendor)  # cheap: before any charge
        # The same statement by the same key (re-encoded, re-signed, replayed) is the same
        # submission: answered before the key's limit is charged or anything is recomputed.
        if (existing := stored.get((signed.payload_sha256, signed.key_id))) is not None:
            return 200, _receipt_body(existing, signed, created=False)
        if not limiter.allow(charged := f"key {signed.key_id}"):  # the key that really signed
            busy = "too many submissions for this key; try again later"
            raise Rejected(429, busy, limiter.retry_after(charged))
        result = check_run_set(unpacked, signed)
        try:
            row, created = writer.run(lambda: store.add_submission(factory, signed, result))
        except store.Conflict as exc:
            raise Rejected(409, str(exc)) from None
        except store.Revoked as exc:
            raise Rejected(403, str(exc)) from None
        except store.Unfit as exc:
            raise Rejected(422, str(exc)) from None
        kept = settings.artifacts_dir / row.envelope_sha256
        if created and not kept.exists():  # the verified files, for download and plots
            kept.parent.mkdir(parents=True, exist_ok=True)
            run_set.rename(kept)  # moved within the data directory, never copied
        return (201 if created else 200), _receipt_body(row, signed, created)

    def _receipt_body(row: db.Submission, signed: Signed, created: bool) -> dict[str, Any]:
        receipt = {
            "submission_id": row.id,
            "envelope_sha256": row.envelope_sha256,
            "payload_sha256": signed.payload_sha256,
            "key_id": row.key_id,
            "vendor": signed.vendor,
            "received_at": row.received_at.isoformat(),
        }
        return {
            **receipt,
            "created": created,
            "receipt": sign_receipt(receipt, receipt_key),
        }

    # --- read -----------------------------------------------------------------------------

    @app.get(f"{API}/results")
    def list_results(
        request: Request,
        response: Response,
        filters: Annotated[store.Filters, Depends(result_filters)],
        limit: Limit = store.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> list[dict[str, Any]]:
        """A page of results, oldest first; the next page's URL is the `Link` header's
        rel="next" (none on the last page). An empty framework is an unrecorded one."""
        page, following = store.list_results(factory, filters, web.after(cursor), limit)
        if following is not None:
            response.headers["Link"] = _next(request, following)
        return page

    def _next(request: Request, cursor: str) -> str:
        return f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'

    @app.get(f"{API}/results.{{suffix}}", response_class=StreamingResponse, responses=EXPORTS)
    def export_results(
        request: Request,
        suffix: Suffix,
        filters: Annotated[store.Filters, Depends(result_filters)],
        limit: Limit = store.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> StreamingResponse:
        """The page of results `/results` lists as rows of the export schema
        (`deepspark.export/v1`, docs/exports.md): `results.csv` or `results.jsonl`, streamed
        a result at a time; the next page is the `Link` header's rel="next"."""
        stored, following = store.export_results(factory, filters, web.after(cursor), limit)
        rows = (row for result, where in stored for row in export.rows(result, where))
        headers = {"Link": _next(request, following)} if following else {}
        return _download(suffix, rows, "results", headers)

    @app.get(
        f"{API}/results/{{submission_id}}/export.{{suffix}}",
        response_class=StreamingResponse,
        responses=EXPORTS,
    )
    def export_result(submission_id: web.SubmissionId, suffix: Suffix) -> StreamingResponse:
        """One result's rows of the export schema: its training row, a row per infer run."""
        return _download(suffix, _rows(submission_id), f"result-{submission_id}")

    def _rows(submission_id: int) -> list[export.Row]:
        try:
            found = store.get_result(factory, submission_id)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        where = export.Stored(submission_id, found["vendor"], found["received_at"])
        return export.rows(Result.model_validate(found["result"]), where)

    @app.get(f"{API}/results/{{submission_id}}")
    def get_result(submission_id: web.SubmissionId) -> dict[str, Any]:
        try:
            return store.get_result(factory, submission_id)
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get(f"{API}/results/{{submission_id}}/artifacts")
    def list_artifacts(submission_id: web.SubmissionId) -> list[dict[str, Any]]:
        """The verified raw artifacts of a result (events, telemetry, records, statement)."""
        return [
            {"name": name, "size": path.stat().st_size}
            for name, path in _artifacts(submission_id).items()
        ]

    @app.get(f"{API}/results/{{submission_id}}/artifacts/{{name:path}}")
    def get_artifact(submission_id: web.SubmissionId, name: str) -> FileResponse:
        files = _artifacts(submission_id)  # only names listed here: no path from the client
        if name not in files:
            raise HTTPException(404, f"result {submission_id} has no artifact {name!r}")
        # A download, never a page: a browser must not render an artifact in our origin.
        return FileResponse(
            files[name], media_type="application/octet-stream", filename=Path(name).name
        )

    def _artifacts(submission_id: int) -> dict[str, Path]:
        try:
            sha = store.get_result(factory, submission_id)["envelope_sha256"]
        except store.NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return web.artifact_files(settings.artifacts_dir / sha)

    @app.get(f"{API}/compare")
    def compare(model: str, implementation: store.Origin | None = None) -> dict[str, Any]:
        return {
            "model": model,
            "implementation": implementation,
            "platforms": store.compare(factory, model, implementation),
        }

    @app.get(f"{API}/collector-key")
    def public_key() -> dict[str, str]:
        """The collector's receipt key, for clients to verify receipts with."""
        pem = receipt_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"key_id": app.state.collector_key_id, "public_key_pem": pem.decode()}

    app.include_router(web.router)
    links.install(app)
    return app
