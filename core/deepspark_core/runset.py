"""Which files of a run set are raw, derived, or the agent's own bookkeeping.

Raw artifacts are what a result is a pure function of: `plan.json`, the idle floor's
`idle.jsonl` and, in each run's directory, `run.json`, `mllog.log`, `stdout.log`,
`telemetry.jsonl` and whatever else the workload wrote there. They are the signed
statement's subjects and what a result bundle carries. Derived files are written from them
(`result.json`, `report.md`, `report.html`, a reproduction's `reproduction.md` beside the
result it reproduces) or sign them (`statement.dsse.json`): a verifier recomputes or checks
them, never trusts them, so a new report template cannot
break a signature. The agent's bookkeeping (`agent.log`, a run's `process-group.json`) is
neither signed nor packed, nor is a converge run's `checkpoint.pt` (its weights: up to
gigabytes, which no figure reads; the run's signed log holds its sha256, which the infer
runs that load it log too).
"""

from __future__ import annotations

from pathlib import Path

from deepspark_core.contract import CHECKPOINT_FILE
from deepspark_core.results import RESULT_FILE

STATEMENT_FILE = "statement.dsse.json"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
REPRODUCTION_MD = "reproduction.md"  # `up --reproduce`: the published result beside this one
AGENT_LOG = "agent.log"  # the agent's log lines about the run set, at its top
# In a run's directory: the running group's id and start time, so that an agent resumed
# after being killed (SIGKILL leaves no time to clean up) can stop what it left.
GROUP_FILE = "process-group.json"
DERIVED = frozenset({RESULT_FILE, REPORT_MD, REPORT_HTML, REPRODUCTION_MD, STATEMENT_FILE})


def is_raw(name: str) -> bool:
    """Whether the file `name` (POSIX, relative to the run set) is a raw artifact."""
    top, _, rest = name.partition("/")
    if not rest:
        return top not in DERIVED and top != AGENT_LOG
    return rest not in (GROUP_FILE, CHECKPOINT_FILE)


def raw_files(run_set: Path) -> list[Path]:
    """The run set's raw artifacts, sorted: the subjects a signature covers."""
    return sorted(
        path
        for path in run_set.rglob("*")
        if path.is_file() and is_raw(path.relative_to(run_set).as_posix())
    )
