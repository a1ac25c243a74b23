"""`baseline create` and `diagnose`: the evaluations given on the command line recomputed and
handed to the core (`baseline`, `diagnosis`); the baseline written; the findings as a table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from deepspark_agent import evaluations
from deepspark_core.baseline import (
    Baseline,
    BaselineError,
    Evaluated,
    build,
    evaluate_run_sets,
    read_baseline,
)
from deepspark_core.diagnosis import COLUMNS, Diagnosis, describe, diagnose, finding_row, summary
from deepspark_core.files import write_json
from deepspark_core.results import PLAN_FILE
from deepspark_core.rules import read_rules


def evaluated(path: Path) -> Evaluated:
    """An `up` evaluation's models, or a lone run set's, each assessed from its files."""
    if (path / evaluations.EVALUATION_FILE).is_file():
        run_sets = evaluations.run_sets(path)
    elif (path / PLAN_FILE).is_file():
        run_sets = [path]
    elif path.is_dir():
        raise BaselineError(
            f"{path}: neither an evaluation ({evaluations.EVALUATION_FILE}) "
            f"nor a run set ({PLAN_FILE})"
        )
    else:
        raise BaselineError(f"{path}: no such evaluation or run set")
    return evaluate_run_sets(path.resolve().name, run_sets)


def create(paths: list[Path], out: Path) -> Baseline:
    """The baseline of the evaluations, written atomically to out."""
    resolved = [p.resolve() for p in paths]
    if twice := next((p for p in resolved if resolved.count(p) > 1), None):
        raise BaselineError(f"{twice}: given twice (it would count double)")
    made = build([evaluated(p) for p in paths], datetime.now(UTC).isoformat(timespec="seconds"))
    write_json(out, made)
    return made


def run(path: Path, baseline: Path, rules: Path | None) -> Diagnosis:
    """The evaluation at path against the baseline file, through the rules (or the defaults)."""
    return diagnose(read_baseline(baseline), read_rules(rules), evaluated(path))


def findings_table(diagnosis: Diagnosis) -> Table:
    """The findings, a row each; the baseline's evaluations and the verdict below."""
    table = Table(title=f"diagnosis of {describe(diagnosis.evaluation)}", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for finding in diagnosis.findings:
        table.add_row(*finding_row(finding).values())
    table.caption = "\n".join(
        [*(f"baseline: {describe(s)}" for s in diagnosis.baseline), summary(diagnosis)]
    )
    table.caption_justify = "left"
    return table
