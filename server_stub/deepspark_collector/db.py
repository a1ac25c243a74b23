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


class Base(DeclarativeBase):
    pass


class Vendor(Base):
    __tablename__ = "vendors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Key(Base):
    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendors.id"), index=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Submission(Base):
    """One verified run set; every figure is the collector's recomputation, not the claim.

    One row per statement and signing key (payload_sha256, key_id): a DSSE envelope is
    malleable (re-encoded, re-signed), its statement's bytes are not. envelope_sha256 names
    the envelope first accepted, whose files are kept under its digest."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ux_submissions_payload_key", "payload_sha256", "key_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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
