"""The collector's settings: where it keeps its data, who may administer it, its limits.

Every field has a default or comes from the environment (`Settings.from_env`); the CLI
overrides what its options name (the rate and upload limits are `serve`'s options). The admin
token is never logged nor stored in the database.
"""

from __future__ import annotations

import base64
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from deepspark_core.errors import DeepSparkError

DATA_DIR_ENV = "DEEPSPARK_COLLECTOR_DATA_DIR"
DB_URL_ENV = "DEEPSPARK_COLLECTOR_DB_URL"
ADMIN_TOKEN_ENV = "DEEPSPARK_COLLECTOR_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "DEEPSPARK_COLLECTOR_ADMIN_TOKEN_FILE"
# `serve --workers N`: the parent's settings, handed to the worker processes it starts.
WORKER_SETTINGS_ENV = "DEEPSPARK_COLLECTOR_WORKER_SETTINGS"
DEFAULT_DATA_DIR = Path("collector-data")
DEFAULT_MAX_BODY = 256 * 2**20
DB_FILE = "collector.sqlite3"


class SettingsError(DeepSparkError):
    """A setting that cannot be used (an unreadable token file, an empty token)."""


@dataclass(frozen=True)
class RateLimit:
    """Token buckets per sender address (before verification) and per verified signing key:
    `burst` submissions at once, `per_minute` sustained.

    The buckets live in each worker process's memory: with `serve --workers N` an address or
    key gets up to N x burst at once and N x per_minute sustained (a connection's requests
    stay on one worker; new connections are spread by the kernel)."""

    burst: int = 10
    per_minute: float = 60.0


@dataclass(frozen=True)
class UploadLimits:
    """How a submission's body must arrive, checked before and while it is read.

    Per worker, at most `concurrent` uploads at once, and no more than `spool_bytes` declared
    by those being received and checked (a body without a Content-Length counts as the
    largest allowed); past either, 503 at once, before reading. A body whose next chunk takes
    more than `idle_s`, or that falls behind `min_rate` bytes/s once `idle_s` have passed
    since its start, is cut with 408: a slow client cannot hold a connection and a spool
    folder for long.
    """

    concurrent: int = 64
    spool_bytes: int = 2**29
    idle_s: float = 10.0
    min_rate: float = 64 * 2**10


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    db_url: str | None = None  # any SQLAlchemy URL; default: SQLite in data_dir
    admin_token: str | None = None  # None: the admin API answers 503
    max_body: int = DEFAULT_MAX_BODY
    rate_limit: RateLimit = field(default_factory=RateLimit)
    uploads: UploadLimits = field(default_factory=UploadLimits)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / DB_FILE).resolve()}"

    @property
    def key_dir(self) -> Path:
        """The collector's own receipt-signing key."""
        return self.data_dir / "keys"

    @property
    def artifacts_dir(self) -> Path:
        """Each accepted run set's raw artifacts, under its envelope's sha256."""
        return self.data_dir / "artifacts"

    @property
    def spool_dir(self) -> Path:
        """Where submissions are received and unpacked, each in its own temporary directory."""
        return self.data_dir / "spool"

    def for_workers(self) -> str:
        """These settings as the value of $DEEPSPARK_COLLECTOR_WORKER_SETTINGS."""
        return base64.b64encode(pickle.dumps(self)).decode()

    @classmethod
    def from_parent(cls) -> Settings:
        """A worker's settings: its parent's (`for_workers`), whatever their fields. The
        variable is set by the parent process for its own children: never user input."""
        settings = pickle.loads(base64.b64decode(os.environ[WORKER_SETTINGS_ENV]))
        if not isinstance(settings, cls):
            raise SettingsError(f"${WORKER_SETTINGS_ENV} holds no collector settings")
        return settings

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment; `overrides` that are not None win."""
        values: dict[str, object] = {}
        if data_dir := os.environ.get(DATA_DIR_ENV):
            values["data_dir"] = Path(data_dir)
        if db_url := os.environ.get(DB_URL_ENV):
            values["db_url"] = db_url
        values["admin_token"] = admin_token_from_env()
        values |= {name: value for name, value in overrides.items() if value is not None}
        return cls(**values)  # type: ignore[arg-type]


def admin_token_from_env() -> str | None:
    """$DEEPSPARK_COLLECTOR_ADMIN_TOKEN, else the first line of $..._ADMIN_TOKEN_FILE."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if token is None and (path := os.environ.get(ADMIN_TOKEN_FILE_ENV)):
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read the admin token: {exc.strerror}") from None
    if token is not None and not token.strip():
        raise SettingsError("the admin token is empty")
    return token
