"""What every command shares: the consoles, the --json and --workloads options, one-line user
errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from deepspark_agent.exits import EXIT_FAILED
from deepspark_core.errors import DeepSparkError

# Output to a file or a pipe (CI, nohup, tee) is read later, whole: no width to fold or cut
# tables to (a terminal keeps its own width).
PLAIN_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    # soft_wrap: a path, tag or digest printed on its own stays on one line for copying.
    made = Console(stderr=stderr, soft_wrap=True)
    if not made.is_terminal:
        made.width = PLAIN_WIDTH
    return made


console = _console()
err_console = _console(stderr=True)

# Errors a user can cause and fix: one line on stderr, exit 1, no traceback.
USER_ERRORS = (DeepSparkError, OSError)
EXIT_BAD_INPUT = 2  # an argument that names nothing usable, as click's usage errors
P = ParamSpec("P")
R = TypeVar("R")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
WorkloadsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--workloads",
        help="A folder of workloads (a vendor's own) added to the built-in catalog; repeatable.",
    ),
]


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            raise user_error(exc) from None

    return wrapper


def user_error(exc: Exception, code: int = EXIT_FAILED) -> typer.Exit:
    """exc printed as one line on stderr; the exit to raise, with code."""
    err_console.print(f"[red]error:[/] {exc}", highlight=False)
    return typer.Exit(code)
