"""Results side by side: the seed table's rows of each side, ratios against the first side,
and what differs between them (config, precision, batch size, data, devices, framework).

The agent's `compare` and `up --reproduce`, and the collector, call `compare` with labelled
results; a side is every result given under one label (an evaluation's models, or one run
set). Results are matched by the DeepSpark model they implement, so one model on two
frameworks is compared, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from markupsafe import Markup

from deepspark_core.errors import DeepSparkError
from deepspark_core.plots import overlaid_plots
from deepspark_core.report import (
    INFER_COLUMNS,
    NA,
    SEED_COLUMNS,
    inference_row,
    markdown_rows,
    seed_row,
    templates,
    training_results,
)
from deepspark_core.results import Result, RunSummary

SIDE = "side"
COLUMNS = (SIDE, *SEED_COLUMNS)
INFER_TABLE = (SIDE, *INFER_COLUMNS)
MISSING = "missing"


@dataclass(frozen=True)
class Labelled:
    """One result of a side: the side's label, and the run set holding its raw artifacts
    (None: a result known by its figures alone, so its over-time plots are N/A)."""

    label: str
    result: Result
    run_set: Path | None = None
    source: str = ""  # where the side came from, for the legend (a path, a URL)

    @property
    def model(self) -> str:
        """The DeepSpark model its workload implements: what results are matched by."""
        return self.result.plan.implements or self.result.plan.model


def _per_device(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# Each dimension's figure, as its cell leads with it (per device for power and memory).
SEED_FIGURES: dict[str, Callable[[Result], float | None]] = {
    "speed": lambda r: r.dimensions.speed.value if r.dimensions.speed else None,
    "accuracy": lambda r: r.dimensions.accuracy.value if r.dimensions.accuracy else None,
    "power (W)": lambda r: _per_device(r.dimensions.power.mean_w) if r.dimensions.power else None,
    # The chip's, as its cell leads with it: the energy counter's where it has one
    "energy (J/sample)": lambda r: (
        r.dimensions.counter_j_per_sample
        or (r.dimensions.power.j_per_sample if r.dimensions.power else None)
    ),
    "linearity": lambda r: r.dimensions.linearity.card if r.dimensions.linearity else None,
    "memory (GB)": lambda r: (
        _per_device(r.dimensions.memory.mean_gb) if r.dimensions.memory else None
    ),
    "stability": lambda r: r.dimensions.stability.score if r.dimensions.stability else None,
}
INFER_FIGURES: dict[str, Callable[[RunSummary], float | None]] = {
    "throughput": lambda r: r.speed.value if r.speed else None,
    "latency (ms)": lambda r: (
        r.inference.latency.p90_ms if r.inference and r.inference.latency else None
    ),
    "accuracy": lambda r: (
        r.inference.accuracy.value if r.inference and r.inference.accuracy else None
    ),
    "power (W)": lambda r: _per_device(r.power.mean_w) if r.power else None,
    "energy (J/inference)": lambda r: (
        r.inference.counter_j_per_inference or r.inference.j_per_inference if r.inference else None
    ),
    "memory (GB)": lambda r: _per_device(r.memory.mean_gb) if r.memory else None,
}


def _frameworks(result: Result) -> str:
    found = sorted({r.framework for r in result.runs if r.framework})
    return ", ".join(found) or result.plan.framework or "unrecorded"


def _data(result: Result) -> str:
    if result.synthetic_data:
        return "synthetic"
    datasets = sorted({r.dataset for r in result.runs if r.dataset})
    return ", ".join(datasets) or "unrecorded"


# What must match for a ratio to compare like with like; a difference is said in the table.
SETTINGS: dict[str, Callable[[Result], str]] = {
    "workload": lambda r: r.plan.model,
    "framework": _frameworks,
    "implementation": lambda r: (
        r.plan.implementation.origin if r.plan.implementation else "unrecorded"
    ),
    "config": lambda r: r.plan.config,
    "precision": lambda r: r.plan.precision,
    "batch size": lambda r: str(r.plan.batch_size),
    "devices": lambda r: f"{r.plan.nproc}x" + (f"*{r.plan.nnodes}n" if r.plan.nnodes > 1 else ""),
    "data": _data,
    "runs": lambda r: r.plan.mode,
}


def differences(reference: Result, other: Result) -> list[str]:
    """Each setting that differs, as `name: reference's vs other's`."""
    return [
        f"{name}: {of(reference)} vs {of(other)}"
        for name, of in SETTINGS.items()
        if of(reference) != of(other)
    ]


def ratio(reference: float | None, other: float | None, names: tuple[str, str]) -> str:
    """other / reference as a cell, or N/A with its reason."""
    if reference is None or other is None:
        lacking = [n for n, v in zip(names, (reference, other), strict=True) if v is None]
        return f"{NA}: no figure on {' or '.join(lacking)}"
    if reference == 0:
        return f"{NA}: {names[0]}'s is 0"
    return f"{other / reference:.3g}x"


@dataclass(frozen=True)
class Row:
    """A row of a table: a side's result (or infer run), `missing`, or a ratio row with its
    figures and the settings that differ from the reference's."""

    kind: Literal["result", "missing", "ratio"]
    cells: dict[str, str]
    ratios: dict[str, float | None] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelComparison:
    """One model on every side: its seed-table rows and its inference rows, each side's row
    followed by its ratio row against the first side's."""

    model: str
    members: list[Labelled]
    rows: list[Row]
    infer_rows: list[Row]

    def plots(self, sides: Sequence[str]) -> dict[str, Markup]:
        """The members' plots overlaid, a series per member, and a place for each side
        without one, so that a side has one colour in every model's plots."""
        named: list[tuple[str, Result | None, Path | None]] = []
        for side in sides:
            mine = [m for m in self.members if m.label == side]
            named += [
                (side if len(mine) == 1 else f"{side} {m.result.plan.model}", m.result, m.run_set)
                for m in mine
            ] or [(side, None, None)]
        return overlaid_plots(named)


@dataclass(frozen=True)
class Comparison:
    sides: list[str]
    sources: dict[str, str]
    models: list[ModelComparison]

    def rows(self) -> list[dict[str, str]]:
        """The seed table's rows of every model, a side column first."""
        return [row.cells for model in self.models for row in model.rows]

    def infer_rows(self) -> list[dict[str, str]]:
        return [row.cells for model in self.models for row in model.infer_rows]

    def notes(self) -> list[str]:
        """A line per ratio that compares results of different settings, naming them."""
        return [
            f"{row.cells['model']} {row.cells[SIDE]}: {'; '.join(row.differences)}"
            for model in self.models
            for row in [*model.rows, *model.infer_rows]
            if row.differences
        ]

    def markdown(self) -> str:
        lines = [f"- {side}: {self.sources[side]}" for side in self.sides if self.sources[side]]
        for columns, rows in ((COLUMNS, self.rows()), (INFER_TABLE, self.infer_rows())):
            if rows:
                lines += ["", *markdown_rows(columns, rows)]
        if notes := self.notes():
            lines += ["", "Differences:", *(f"- {note}" for note in notes)]
        return "\n".join(lines).strip("\n")

    def html(self, title: str) -> str:
        """A self-contained page: the tables, then each model's plots overlaid."""
        return (
            templates()
            .get_template("compare.html")
            .render(title=title, comparison=self, columns=COLUMNS, infer_columns=INFER_TABLE)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "sides": [{"label": side, "source": self.sources[side]} for side in self.sides],
            "models": [
                {
                    "model": m.model,
                    "rows": [asdict(r) for r in m.rows],
                    "inference": [asdict(r) for r in m.infer_rows],
                }
                for m in self.models
            ],
        }


def compare(results: Sequence[Labelled]) -> Comparison:
    """Labelled results -> per model (in order of first appearance) each side's rows (sides
    in order of first appearance), a ratio row against the first side's, what differs."""
    sides = list(dict.fromkeys(r.label for r in results))
    if len(sides) < 2:
        raise DeepSparkError(f"compare needs two sides at least, got {len(sides)}")
    sources = {side: next(r.source for r in results if r.label == side) for side in sides}
    models = list(dict.fromkeys(r.model for r in results))
    return Comparison(
        sides, sources, [_model(m, sides, [r for r in results if r.model == m]) for m in models]
    )


def _model(model: str, sides: list[str], members: list[Labelled]) -> ModelComparison:
    firsts = [m for m in members if m.label == sides[0]]
    rows: list[Row] = []
    infer: list[Row] = []
    for side in sides:
        mine = [m for m in members if m.label == side]
        if not mine:
            missing = {SIDE: side, **dict.fromkeys(SEED_COLUMNS, MISSING), "model": model}
            rows.append(Row("missing", missing))
        for member in mine:
            # The first side's result of the same workload, else its first of this model.
            ref = None
            if side != sides[0] and firsts:
                same = [f for f in firsts if f.result.plan.model == member.result.plan.model]
                ref = (same or firsts)[0]
            if training_results([member.result]):
                rows.append(Row("result", {SIDE: side, **seed_row(member.result)}))
                if ref:
                    rows.append(_seed_ratio(ref, member))
            infer += _infer_rows(ref, member)
    return ModelComparison(model, members, rows, infer)


def _ratio_row(
    ref: Labelled, member: Labelled, head: dict[str, str], figures: dict[str, tuple]
) -> Row:
    """The ratio row of member against ref: head's cells, then each figure's ratio."""
    found = differences(ref.result, member.result)
    names = (ref.label, member.label)
    cells = head | {
        SIDE: f"{member.label}/{ref.label}",
        "model": member.result.plan.model,
        "config": "differs: " + "; ".join(found) if found else "same settings",
    }
    cells |= {column: ratio(a, b, names) for column, (a, b) in figures.items()}
    ratios = {c: b / a if a and b is not None else None for c, (a, b) in figures.items()}
    return Row("ratio", cells, ratios, found)


def _seed_ratio(ref: Labelled, member: Labelled) -> Row:
    figures = {c: (of(ref.result), of(member.result)) for c, of in SEED_FIGURES.items()}
    head = dict.fromkeys(SEED_COLUMNS, "") | {"task": member.result.plan.task}
    return _ratio_row(ref, member, head, figures)


def _infer_rows(ref: Labelled | None, member: Labelled) -> list[Row]:
    """Each infer run's row, then its ratio row against the reference's run of the same
    scenario and engine (none where the reference has no such run)."""
    rows = []
    for run in member.result.infer_runs:
        rows.append(Row("result", {SIDE: member.label, **inference_row(member.result, run)}))
        kind = (run.scenario, run.engine)
        same = [r for r in ref.result.infer_runs if (r.scenario, r.engine) == kind] if ref else []
        if ref and same:
            figures = {c: (of(same[0]), of(run)) for c, of in INFER_FIGURES.items()}
            head = dict.fromkeys(INFER_COLUMNS, "") | {"task": member.result.plan.task}
            row = _ratio_row(ref, member, head, figures)
            row.cells["config"] = f"{run.scenario}, {run.engine}; {row.cells['config']}"
            rows.append(row)
    return rows
