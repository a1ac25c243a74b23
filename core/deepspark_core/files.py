"""Read and write the agent's TOML and JSON files as pydantic models, with one-line errors."""

from __future__ import annotations

import os
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def first_error(path: Path, exc: ValidationError) -> str:
    """The first validation problem as `path: field.sub: message`; an unknown key first, as
    a misspelt key is also a missing one and the unknown spelling is the one to fix."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = (unknown or errors)[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    return f"{path}: {where}: {'unknown key' if unknown else first['msg']}"


def read_toml(
    path: Path, model: type[M], error: type[Exception], extra: dict[str, Any] | None = None
) -> M:
    """Validate a TOML file (plus `extra` fields) as `model`, raising `error` on any problem."""
    try:
        return model.model_validate({**tomllib.loads(path.read_text()), **(extra or {})})
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from None
    except ValidationError as exc:
        raise error(first_error(path, exc)) from None


def read_json(path: Path, model: type[M], error: type[Exception]) -> M:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except ValidationError as exc:
        raise error(first_error(path, exc)) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write atomically: a killed writer leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, model: BaseModel) -> None:
    write_atomic(path, (model.model_dump_json(indent=2) + "\n").encode())


def stamped_path(parent: Path, name: str) -> Path:
    """parent/NAME-YYYYmmdd-HHMMSS (UTC), not yet taken: .2, .3, ... for two in one second."""
    base = parent / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}.{n}")
    return path
