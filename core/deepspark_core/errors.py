"""The one base class of the errors a user can cause and fix."""

from __future__ import annotations


class DeepSparkError(ValueError):
    """A problem the user can fix, stated in one line: the agent prints it as `error: ...`
    and exits 1, the collector answers it with a 4xx."""

    def __str__(self) -> str:
        # Messages quote other tools' text (an engine's answer, a parser's), which may span
        # lines; a user reads one line, and logs keep one record per error.
        return " ".join(line.strip() for line in super().__str__().splitlines() if line.strip())
