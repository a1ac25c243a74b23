"""The collector's database: vendors, their signing keys, and verified submissions.

SQLAlchemy 2 models. The schema is owned by Alembic (`migrations/`): `migrate` brings any
database to the newest revision; nothing here creates tables by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
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


class Submission(Base):
    """One verified run set; every figure is the collector's recomputation, not the claim.

    One row per statement and signing key (payload_sha256, key_id): a DSSE envelope is
    malleable (re-encoded, re-signed), its statement's bytes are not. envelope_sha256 names
    the envelope first accepted, whose files are kept under its digest."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ux_submissions_payload_key", "payload_sha256", "key_id", unique=True),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    envelope_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # NULL only for rows stored before revision 0003 whose kept envelope could not be read.
    payload_sha256: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"), index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)  # the workload
    # The DeepSpark model it implements (the workload's own name before plans said) and the
    # framework it declares: one model on two frameworks compares side by side.
    implements: Mapped[str] = mapped_column(String(200), index=True)
    framework: Mapped[str | None] = mapped_column(String(100))
    # Whose code ran: "reference" (the project's workload) or "vendor" (a vendor's folder or
    # image), as the signed plan records it; NULL for results from agents before that record.
    implementation: Mapped[str | None] = mapped_column(String(20), index=True)
    config: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    nproc: Mapped[int] = mapped_column(Integer)
    platform: Mapped[str] = mapped_column(String(300), index=True)  # accelerator name
    speed: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    power: Mapped[float | None] = mapped_column(Float)
    memory: Mapped[float | None] = mapped_column(Float)
    stability: Mapped[float | None] = mapped_column(Float)
    linearity: Mapped[float | None] = mapped_column(Float)
    result_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


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
    with factory() as session, session.begin():
        yield session
