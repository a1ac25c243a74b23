"""A diagnosis: an evaluation against a baseline, through the rules, as findings with evidence.

Each finding names the model, the rule, its severity, the value beside the baseline's
reference and spread, their ratio, and the evidence (which runs, which windows). Everything
is read from the run sets' files and the baseline, in a fixed order, so the same input gives
the same findings and the same JSON bytes: a driver's CI can gate on the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deepspark_core.assess import event_log_path
from deepspark_core.baseline import (
    LIKE_FOR_LIKE,
    Baseline,
    Evaluated,
    Measured,
    ModelBaseline,
    Source,
    Spread,
    figures,
    source,
)
from deepspark_core.events import EventLogError, read_events
from deepspark_core.metrics import Sample, Window
from deepspark_core.report import NA, markdown_rows, number
from deepspark_core.results import RUN_FILE, TELEMETRY_FILE, Result, RunRecord, read_model
from deepspark_core.rules import Level, Rules, Severity
from deepspark_core.series import Series, read_series

DIAGNOSIS_SCHEMA = "deepspark.diagnosis/v1"
COLUMNS = ("severity", "model", "rule", "value", "baseline", "ratio", "finding", "evidence")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finding(_Strict):
    model: str  # the model key (workload-preset)
    rule: str  # e.g. ratio.speed, accuracy.below_target, throttling.clock
    severity: Severity
    message: str
    value: float | None = None
    baseline: Spread | None = None
    ratio: float | None = None
    evidence: list[str] = []  # the runs and windows it rests on


class Diagnosis(_Strict):
    schema_version: Literal["deepspark.diagnosis/v1"] = DIAGNOSIS_SCHEMA
    evaluation: Source
    baseline: list[Source]  # the evaluations the baseline was built from
    compared: int  # figures compared with the baseline's
    findings: list[Finding]
    verdict: Literal["regression", "pass"]


def diagnose(baseline: Baseline, rules: Rules, evaluated: Evaluated) -> Diagnosis:
    findings: list[Finding] = []
    compared = 0
    for key, expected in baseline.models.items():
        if key not in evaluated.models:
            findings += _finding(
                key, "model.missing", rules.models.missing, "not in the evaluation"
            )
            continue
        run_set, result = evaluated.models[key]
        checks = _Model(key, rules, expected, run_set, result)
        findings += checks.findings()
        compared += checks.compared
    for key in (k for k in evaluated.models if k not in baseline.models):
        level = rules.models.not_in_baseline
        findings += _finding(
            key, "model.not_in_baseline", level, "not in the baseline: not compared"
        )
    regression = any(f.severity == "regression" for f in findings)
    return Diagnosis(
        evaluation=source(evaluated),
        baseline=baseline.sources,
        compared=compared,
        findings=findings,
        verdict="regression" if regression else "pass",
    )


def _finding(model: str, rule: str, level: Level, message: str, **more: object) -> list[Finding]:
    """The finding, or none when its rule is off."""
    if level == "off":
        return []
    return [Finding(model=model, rule=rule, severity=level, message=message, **more)]


class _Model:
    """One model's checks, in a fixed order: its state, plan, accuracy, ratios, telemetry."""

    def __init__(
        self, key: str, rules: Rules, expected: ModelBaseline, run_set: Path, result: Result
    ) -> None:
        self.key, self.rules, self.expected = key, rules, expected
        self.run_set, self.result = run_set, result
        self.compared = 0

    def findings(self) -> list[Finding]:
        state = list(self._state())
        if any(f.rule == "model.failed" for f in state):
            return state  # nothing was measured: the failure is the finding
        return [
            *state,
            *self._plan(),
            *self._accuracy(),
            *self._ratios(),
            *_telemetry(self.key, self.rules, self.run_set, self.result),
        ]

    def _state(self) -> Iterator[Finding]:
        runs, models = self.result.runs, self.rules.models
        failed = [r for r in runs if r.status == "aborted"]
        if not any(r.status == "success" for r in runs):
            evidence = [f"{r.label}: {r.status}, {r.reason}" for r in runs]
            yield from _finding(
                self.key, "model.failed", models.failed, "no run succeeded", evidence=evidence
            )
            return
        if failed:
            evidence = [f"{r.label}: {r.reason}" for r in failed]
            message = f"{len(failed)} of {len(runs)} runs failed"
            yield from _finding(
                self.key, "model.aborted", models.aborted, message, evidence=evidence
            )
        if self.result.state == "incomplete":
            cut = [f"{r.label}: {r.reason}" for r in runs if r.status == "incomplete"]
            notes = [n for n in self.result.notes if "planned but not recorded" in n]
            message = "runs cut by the budget or not recorded"
            yield from _finding(
                self.key, "model.incomplete", models.incomplete, message, evidence=cut + notes
            )

    def _plan(self) -> Iterator[Finding]:
        plan, level = self.result.plan, self.rules.models.not_comparable
        for field in LIKE_FOR_LIKE:
            have, want = getattr(plan, field), getattr(self.expected, field)
            if have != want:
                message = f"{field} {have}, the baseline's {want}: not like for like"
                yield from _finding(self.key, f"plan.{field}", level, message)
        digest = plan.implementation.digest if plan.implementation else None
        if digest and self.expected.implementations and digest not in self.expected.implementations:
            message = f"the workload's digest {digest} is none of the baseline's"
            other = self.rules.models.other_implementation
            yield from _finding(self.key, "plan.implementation", other, message)

    def _accuracy(self) -> Iterator[Finding]:
        accuracy, rules = self.result.dimensions.accuracy, self.rules.accuracy
        if accuracy is None:
            return
        converge = [r for r in self.result.runs if r.mode == "converge" and r.accuracy is not None]
        evidence = [f"{r.label} (seed {r.seed}): {r.accuracy:.6g}" for r in converge]
        metric = self.expected.quality.metric
        if not accuracy.converged:
            message = f"{metric} {accuracy.value:.6g} misses the target {accuracy.target:.6g}"
            yield from _finding(
                self.key, "accuracy.below_target", rules.below_target, message,
                value=accuracy.value, evidence=evidence,
            )  # fmt: skip
        spread = self.expected.figures.get("accuracy")
        if spread is None:
            return
        tolerance = self.expected.tolerance if rules.tolerance is None else rules.tolerance
        sign = 1 if accuracy.direction == "higher" else -1
        if sign * (spread.reference - accuracy.value) > tolerance:
            word = "below" if sign > 0 else "above"
            message = (
                f"{metric} {accuracy.value:.6g} {word} the baseline's {spread.reference:.6g} "
                f"by more than {tolerance:g}"
            )
            yield from _finding(
                self.key, "accuracy.below_baseline", rules.below_baseline, message,
                value=accuracy.value, baseline=spread, evidence=evidence,
            )  # fmt: skip

    def _ratios(self) -> Iterator[Finding]:
        have = figures(self.result)
        for name, spread in self.expected.figures.items():
            if name == "accuracy":
                continue  # its own rules: a target, and a tolerance rather than a ratio
            measured = have.get(name)
            if measured is None:
                message = f"{name}: not measured ({self._why(name)})"
                yield from _finding(
                    self.key, f"ratio.{name}", self.rules.models.not_measured, message,
                    baseline=spread,
                )  # fmt: skip
            elif measured.scope != spread.scope:
                message = (
                    f"{name} measured at {measured.scope} scope, the baseline's at "
                    f"{spread.scope}: not compared"
                )
                yield from _finding(
                    self.key, f"ratio.{name}", self.rules.models.not_comparable, message,
                    value=measured.value, baseline=spread,
                )  # fmt: skip
            else:
                self.compared += 1
                yield from self._ratio(name, measured, spread)

    def _ratio(self, name: str, measured: Measured, spread: Spread) -> Iterator[Finding]:
        if spread.reference == 0:
            return  # no ratio to a zero; a zero baseline is rare (a perfectly stable model)
        ratio = measured.value / spread.reference
        severity = self.rules.ratio(name).severity(ratio)
        if severity is None:
            return
        unit = f" {measured.unit}" if measured.unit else ""
        message = (
            f"{name} {measured.value:.4g}{unit} is {ratio:.3f}x the baseline's "
            f"{spread.reference:.4g} (range {spread.min:.4g}..{spread.max:.4g})"
        )
        yield Finding(
            model=self.key, rule=f"ratio.{name}", severity=severity, message=message,
            value=measured.value, baseline=spread, ratio=ratio,
            evidence=_evidence(self.result, name, measured),
        )  # fmt: skip

    def _why(self, name: str) -> str:
        dims = self.result.dimensions
        if name in ("speed", "end_to_end_speed") and dims.speed_na:
            return dims.speed_na
        first = name.partition("_")[0].partition(".")[0]
        return next((n for n in self.result.notes if first in n), "no note says why")


def _evidence(result: Result, name: str, measured: Measured) -> list[str]:
    """Per run the figure comes from: its final value (accuracy, stability), else its
    measured windows' throughputs."""
    runs = [r for r in result.runs if r.label in measured.runs]
    if name in ("accuracy", "stability_cv"):
        return [f"{r.label} (seed {r.seed}): {number(r.accuracy)}" for r in runs]
    if name == "end_to_end_speed":
        return [f"{r.label}: all samples over run_start..run_stop" for r in runs]
    first = result.plan.warmup_windows
    return [
        f"{r.label}: windows {first}-{first + len(r.speed.per_window) - 1}: "
        + ", ".join(f"{t:.4g}" for t in r.speed.per_window)
        + " samples/s"
        for r in runs
        if r.speed
    ]


# --- telemetry: gaps and throttling ---------------------------------------------------------

WATCHED = ("power_w", "mem_used_bytes", "sm_clock_mhz", "temp_c")


def _telemetry(key: str, rules: Rules, run_set: Path, result: Result) -> list[Finding]:
    """Gaps (a slow recorder, measured windows without a reading) and throttling (a clock
    below a share of its highest, a temperature above a limit), one finding per kind with
    a line of evidence per run. Node 0's telemetry of a multi-node run."""
    tele, throttle = rules.telemetry, rules.throttling
    evidence: dict[str, list[str]] = {}
    worst: dict[str, float] = {}
    for run in result.runs:
        windows = _measured(run_set / run.label, result)
        if not windows:
            continue
        if run.telemetry_hz is not None and run.telemetry_hz < tele.min_rate * tele.recorder_hz:
            evidence.setdefault("slow", []).append(f"{run.label}: {run.telemetry_hz:.3g} Hz")
            worst["slow"] = min(worst.get("slow", run.telemetry_hz), run.telemetry_hz)
        series = read_series(run_set / run.label / TELEMETRY_FILE, WATCHED)
        readings = series["power_w"] or series["mem_used_bytes"]
        devices = list(readings[1].values()) if readings else []
        empty = [n for n, w in windows if not any(_inside(d, w) for d in devices)]
        if empty:
            evidence.setdefault("empty", []).append(f"{run.label}: windows {_numbers(empty)}")
        for device, lowest, peak, where in _low_clocks(series, windows, throttle.clock_fraction):
            evidence.setdefault("clock", []).append(
                f"{run.label}: {device} {lowest:.0f} of its {peak:.0f} MHz, windows {where}"
            )
            worst["clock"] = min(worst.get("clock", 1.0), lowest / peak)
        for device, hottest, where in _hot(series, windows, throttle.temperature_c):
            evidence.setdefault("temperature", []).append(
                f"{run.label}: {device} {hottest:.0f} C, windows {where}"
            )
            worst["temperature"] = max(worst.get("temperature", hottest), hottest)
    checks = {
        "slow": ("telemetry.rate", tele.slow,
                 f"achieved rate below {tele.min_rate:g} x the recorder's {tele.recorder_hz:g} Hz"),
        "empty": ("telemetry.empty_window", tele.empty_window,
                  "measured windows without a power or memory reading"),
        "clock": ("throttling.clock", throttle.clock,
                  f"SM clock below {throttle.clock_fraction:g} x its highest in measured windows"),
        "temperature": ("throttling.temperature", throttle.temperature,
                        f"temperature above {throttle.temperature_c:g} C in measured windows"),
    }  # fmt: skip
    found = []
    for kind, (rule, level, message) in checks.items():
        if kind in evidence:
            value = worst.get(kind)
            found += _finding(key, rule, level, message, value=value, evidence=evidence[kind])
    return found


def _measured(run_dir: Path, result: Result) -> list[tuple[int, Window]]:
    """A run's measured windows with their numbers; none when its log gives none."""
    try:
        record = read_model(run_dir / RUN_FILE, RunRecord)
        windows = read_events(event_log_path(run_dir)).windows(record.mono_offset_ns)
    except EventLogError:
        return []
    warmup = result.plan.warmup_windows
    return [(warmup + i, w) for i, w in enumerate(windows[warmup:])]


def _inside(readings: list[Sample], window: Window) -> list[Sample]:
    return [s for s in readings if window.start_ns <= s.t_ns <= window.stop_ns]


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _past(
    readings: list[Sample], windows: list[tuple[int, Window]], past: Callable[[float], bool]
) -> dict[int, list[float]]:
    """Per measured window (by number), its readings that are `past` a limit; none: left out."""
    found = {n: [s.value for s in _inside(readings, w) if past(s.value)] for n, w in windows}
    return {n: values for n, values in found.items() if values}


def _low_clocks(
    series: dict[str, Series | None], windows: list[tuple[int, Window]], fraction: float
) -> Iterator[tuple[str, float, float, str]]:
    """Per device with a clock inside a window below fraction x its highest reading of the
    run: the device, its lowest such reading, its highest, the windows."""
    clocks = series["sm_clock_mhz"]
    for device, readings in sorted(clocks[1].items()) if clocks else ():
        peak = max(s.value for s in readings)
        low = _past(readings, windows, lambda v, peak=peak: v < fraction * peak)
        if low:
            yield device, min(map(min, low.values())), peak, _numbers(list(low))


def _hot(
    series: dict[str, Series | None], windows: list[tuple[int, Window]], limit: float
) -> Iterator[tuple[str, float, str]]:
    """Per device with a temperature inside a window above limit: its hottest, the windows."""
    temps = series["temp_c"]
    for device, readings in sorted(temps[1].items()) if temps else ():
        hot = _past(readings, windows, lambda v: v > limit)
        if hot:
            yield device, max(map(max, hot.values())), _numbers(list(hot))


# --- as text ----------------------------------------------------------------------------------


def finding_row(finding: Finding) -> dict[str, str]:
    spread = finding.baseline
    reference = NA
    if spread is not None:
        sd = f", sd {spread.stdev:.3g}" if spread.stdev is not None else ""
        span = f"{spread.min:.4g}..{spread.max:.4g}{sd}, n={spread.evaluations}"
        reference = f"{spread.reference:.4g} ({span})"
    return {
        "severity": finding.severity,
        "model": finding.model,
        "rule": finding.rule,
        "value": number(finding.value),
        "baseline": reference,
        "ratio": NA if finding.ratio is None else f"{finding.ratio:.3f}",
        "finding": finding.message,
        "evidence": "; ".join(finding.evidence),
    }


def describe(source: Source) -> str:
    """An evaluation in one line: its name, host, accelerators and frameworks."""
    accelerators = "; ".join(source.accelerators) or "CPU only"
    frameworks = ", ".join(source.frameworks) or "no framework logged"
    return f"{source.name} ({source.host}: {accelerators}; {frameworks})"


def summary(diagnosis: Diagnosis) -> str:
    severities = [f.severity for f in diagnosis.findings]
    counts = {s: severities.count(s) for s in ("regression", "warning", "info")}
    said = ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())
    return f"verdict: {diagnosis.verdict} ({said}; {diagnosis.compared} figures compared)"


def markdown(diagnosis: Diagnosis) -> str:
    lines = [
        f"## Diagnosis of {describe(diagnosis.evaluation)}",
        "",
        *(f"- baseline: {describe(s)}" for s in diagnosis.baseline),
        "",
        *markdown_rows(COLUMNS, [finding_row(f) for f in diagnosis.findings]),
        "",
        summary(diagnosis),
    ]
    return "\n".join(lines)
