"""Exit codes of `run`, `up` and `diagnose`, and which one an evaluation's outcomes get."""

from __future__ import annotations

from collections.abc import Sequence

from deepspark_agent.evaluations import ModelOutcome

EXIT_OK = 0
EXIT_FAILED = 1  # a model with no successful run (user errors exit 1 too)
EXIT_INCOMPLETE = 3  # every model has a successful run, but the budget cut some runs
EXIT_REGRESSION = 4  # diagnose: a finding of severity regression (a CI gates on it)
EXIT_INTERRUPTED = 130  # Ctrl-C: the runs recorded so far are kept for --resume


def exit_code(outcomes: Sequence[ModelOutcome]) -> int:
    """A model with no successful run first, then an incomplete one."""
    if not all(o.succeeded for o in outcomes):
        return EXIT_FAILED
    if not all(o.complete for o in outcomes):
        return EXIT_INCOMPLETE
    return EXIT_OK
