"""The collector's database: vendors, their signing keys, and verified submissions.

SQLAlchemy 2 models. The schema is owned by Alembic (`migrations/`): `migrate` brings any
database to the newest revision; nothing here creates tables by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# A process's threadpool threads (the app sets anyio's limiter to it) and so its connections:
# one each, none waited for; small, since PostgreSQL's 100 connections are shared by every
# worker process, and two cores gain nothing from more threads.
THREADS = 8
BUSY_TIMEOUT_MS = 10_000  # SQLite: how long another process's write transaction is waited for
IMMEDIATE = "deepspark_immediate"  # execution option: a SQLite write transaction

T = TypeVar("T")

# What makes a leaderboard group (`Standing`).
GROUP = ("model", "implements", "implementation", "platform", "framework", "config", "kind")

# Row ids are 64-bit (revision 0005), as a client may name any id up to 2^63 - 1. On SQLite an
# INTEGER PRIMARY KEY is the 64-bit rowid already, and only that spelling makes it the rowid.
ID = BigInteger().with_variant(Integer(), "sqlite")
INT32 = 2**31
INT64 = 2**63


class Base(DeclarativeBase):
    pass


class Vendor(Base):
    __tablename__ = "vendors"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Key(Base):
    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor_id: Mapped[int] = mapped_column(ID, ForeignKey("vendors.id"), index=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


# The submissions' columns the read API filters on (vendor through key_id).
FILTERED = ("key_id", "model", "implements", "framework", "implementation", "config", "mode",
            "platform")  # fmt: skip


class Submission(Base):
    """One verified run set; every figure is the collector's recomputation, not the claim.

    One row per statement and signing key (payload_sha256, key_id): a DSSE envelope is
    malleable (re-encoded, re-signed), its statement's bytes are not. envelope_sha256 names
    the envelope first accepted, whose files are kept under its digest."""

    __tablename__ = "submissions"
    __table_args__ = (
        Index("ux_submissions_payload_key", "payload_sha256", "key_id", unique=True),
        # Every filter of the read API, each with the id: a keyset page (id > cursor, in id
        # order) of any one filter is a range of one index (revision 0006).
        *(Index(f"ix_submissions_{column}_id", column, "id") for column in FILTERED),
        Index("ix_submissions_reproduces_id_id", "reproduces_id", "id"),  # revision 0008
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    envelope_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # NULL only for rows stored before revision 0003 whose kept envelope could not be read.
    payload_sha256: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"))
    model: Mapped[str] = mapped_column(String(200))  # the workload
    # The DeepSpark model it implements (the workload's own name before plans said) and the
    # framework it declares: one model on two frameworks compares side by side.
    implements: Mapped[str] = mapped_column(String(200))
    framework: Mapped[str | None] = mapped_column(String(100))
    # Whose code ran: "reference" (the project's workload) or "vendor" (a vendor's folder or
    # image), as the signed plan records it; NULL for results from agents before that record.
    implementation: Mapped[str | None] = mapped_column(String(20))
    config: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    nproc: Mapped[int] = mapped_column(Integer)
    platform: Mapped[str] = mapped_column(String(300))  # accelerator name
    speed: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    power: Mapped[float | None] = mapped_column(Float)
    memory: Mapped[float | None] = mapped_column(Float)
    stability: Mapped[float | None] = mapped_column(Float)
    linearity: Mapped[float | None] = mapped_column(Float)
    # Why the result is not ranked (converge runs on synthetic data), from the recomputation:
    # said wherever the result is listed, without parsing its JSON (revision 0006).
    unranked: Mapped[str | None] = mapped_column(String(200))
    result_json: Mapped[str] = mapped_column(Text)
    # The result its signed plan says it reproduces (revision 0008): an id and that result's
    # statement digest, which tells this collector's result from another's with the same id.
    reproduces_id: Mapped[int | None] = mapped_column(ID)
    reproduces_statement: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Its inference figures, a row per scenario it ran (revision 0007); loaded with it.
    scenarios: Mapped[list[ScenarioFigures]] = relationship(
        lazy="selectin", order_by="ScenarioFigures.scenario"
    )


class ScenarioFigures(Base):
    """A result's figures in one inference scenario: its best infer run's (`scenarios`),
    which its standing in the scenario's kind ranks by; NULL where the run has none."""

    __tablename__ = "scenario_figures"
    __table_args__ = (
        Index("ux_scenario_figures_submission", "submission_id", "scenario", unique=True),
        # The read API's kind filter (infer-offline, infer-latency) as a range of one index.
        Index("ix_scenario_figures_scenario_id", "scenario", "submission_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    scenario: Mapped[str] = mapped_column(String(20))  # offline or latency
    engine: Mapped[str] = mapped_column(String(20))  # eager or compile
    status: Mapped[str] = mapped_column(String(20))  # the run's: success, aborted, incomplete
    throughput: Mapped[float | None] = mapped_column(Float)  # samples/s
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p90_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    j_per_inference: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    memory_gb: Mapped[float | None] = mapped_column(Float)

    def as_dict(self) -> dict[str, object]:
        return {c.key: getattr(self, c.key) for c in self.__table__.columns
                if c.key not in ("id", "submission_id")}  # fmt: skip


class Standing(Base):
    """One group of the leaderboard: its results' count and its best one, kept in the
    transaction that stores each result (`board.record`), so that the leaderboard and the
    index read one row per group, not every result.

    A group is a workload on one platform, framework and preset, in one division, of one
    kind: "speed" (results with speed runs, best by speed), "converge" (results with
    converge runs, best by accuracy in its metric's direction), "infer-offline" or
    "infer-latency" (results with infer runs in that scenario, best by throughput or by p90
    latency: `scenarios`); a result of several kinds is in each. The best is a ranked result
    over an unranked one, then the higher score. An unrecorded implementation or framework
    is "" here: NULLs would be distinct in the unique index that an upsert needs."""

    __tablename__ = "standings"
    __table_args__ = (Index("ux_standings_group", *GROUP, unique=True),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    implements: Mapped[str] = mapped_column(String(200), index=True)
    implementation: Mapped[str] = mapped_column(String(20))
    platform: Mapped[str] = mapped_column(String(300))
    framework: Mapped[str] = mapped_column(String(100))
    config: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    results: Mapped[int] = mapped_column(Integer)
    best_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    best_ranked: Mapped[bool] = mapped_column(Boolean)
    # Higher is better: the speed, the accuracy signed by its metric's direction, the
    # throughput, or the p90 latency negated; NULL when the best result has no such figure
    # (its runs failed).
    best_score: Mapped[float | None] = mapped_column(Float)


def misfit(row: Base) -> str | None:
    """Why `row` cannot be stored as it is (a string longer than its column, or with a NUL,
    which PostgreSQL refuses; an integer beyond its column), naming the field; None if it
    fits. Checked before an insert, so that bad input is the client's error, not the
    database's."""
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, str):
            if "\0" in value:
                return f"{column.key} holds a NUL character"
            length = getattr(column.type, "length", None)
            if length is not None and len(value) > length:
                return f"{column.key} is longer than {length} characters"
        elif isinstance(value, int) and not isinstance(value, bool):
            bound = INT64 if isinstance(column.type, BigInteger) else INT32
            if not -bound <= value < bound:
                return f"{column.key} {value} is out of range"
    return None


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_size=THREADS, max_overflow=0)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(connection, _record) -> None:
    # WAL: readers never wait for the writer; NORMAL: a commit is not synced (a power cut may
    # lose the last commits, never the database). The driver's own transaction handling is
    # off so that _sqlite_begin says which kind each transaction is.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock first (BEGIN IMMEDIATE), waiting up to the busy
    # timeout: one that read first could not upgrade after another process wrote (its
    # snapshot is stale, SQLITE_BUSY at once, no waiting).
    immediate = connection.get_execution_options().get(IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """`alembic upgrade head` on `engine`'s database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write transaction (on SQLite it holds the write lock from its start)."""
    with factory() as session, session.begin():
        session.connection(execution_options={IMMEDIATE: True})
        yield session


class Writer:
    """Where a process runs its submissions' write transactions: on SQLite one thread (a
    queue), since the database has one write lock and threads waiting for it in its busy
    handler only burn CPU; elsewhere (PostgreSQL) the caller's thread, on its own pooled
    connection."""

    def __init__(self, engine: Engine) -> None:
        single = engine.dialect.name == "sqlite"
        self._thread = ThreadPoolExecutor(1, "sqlite-writer") if single else None

    def run(self, write: Callable[[], T]) -> T:
        return write() if self._thread is None else self._thread.submit(write).result()
