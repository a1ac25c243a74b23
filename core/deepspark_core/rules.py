"""The rules a diagnosis applies: ratio thresholds per figure, and the checks beyond ratios.

Built in (the defaults here, which `rules/default.toml` spells out and documents). A team's
own TOML file sets what it names; the rest keeps the defaults, but a `[ratios.<figure>]`
table is taken whole (its direction, and no threshold it leaves out). Every table forbids
unknown keys: a misspelt rule would otherwise be a rule silently not applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from deepspark_core.errors import DeepSparkError
from deepspark_core.files import read_toml

Severity = Literal["regression", "warning", "info"]
Level = Literal["regression", "warning", "info", "off"]  # a check's severity, or not applied


class RulesError(DeepSparkError):
    """A rules file that does not read as rules."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ratio(_Strict):
    """Value over the baseline's reference. direction higher: better is higher, so a ratio
    below `regression` (or `warning`) is one; lower: a ratio above it is."""

    direction: Literal["higher", "lower"]
    regression: PositiveFloat | None = None
    warning: PositiveFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Ratio:
        if self.regression and self.warning:
            worse = self.regression <= self.warning
            if worse != (self.direction == "higher"):
                raise ValueError("the regression threshold must be past the warning one")
        return self

    def severity(self, ratio: float) -> Severity | None:
        def past(threshold: float | None) -> bool:
            if threshold is None:
                return False
            return ratio < threshold if self.direction == "higher" else ratio > threshold

        if past(self.regression):
            return "regression"
        return "warning" if past(self.warning) else None


def _higher(regression: float | None, warning: float) -> Ratio:
    return Ratio(direction="higher", regression=regression, warning=warning)


def _lower(regression: float | None, warning: float) -> Ratio:
    return Ratio(direction="lower", regression=regression, warning=warning)


class Ratios(_Strict):
    """One threshold pair per figure of a baseline; an infer run's throughput takes `speed`'s
    and its p90 latency `latency`'s."""

    speed: Ratio = _higher(0.95, 0.98)
    end_to_end_speed: Ratio = _higher(0.90, 0.95)  # evaluation and start-up included: noisier
    linearity: Ratio = _higher(0.95, 0.98)
    node_linearity: Ratio = _higher(0.95, 0.98)
    power: Ratio = _lower(None, 1.10)  # more watts at the same energy per sample is no loss
    energy: Ratio = _lower(1.10, 1.05)
    memory: Ratio = _lower(1.10, 1.05)
    stability_cv: Ratio = _lower(None, 2.0)  # the converge runs' spread: few runs, noisy
    latency: Ratio = _lower(1.05, 1.02)


class AccuracyRules(_Strict):
    below_target: Level = "regression"
    below_baseline: Level = "regression"
    # How far below the baseline's reference, in the metric's units; unset: the plan's own
    # tolerance (the stability band)
    tolerance: float | None = Field(default=None, ge=0)


class ModelRules(_Strict):
    missing: Level = "regression"  # in the baseline, not in the evaluation
    failed: Level = "regression"  # no run succeeded
    aborted: Level = "warning"  # some runs failed on their own
    incomplete: Level = "warning"  # the budget cut runs, or planned runs are not recorded
    not_measured: Level = "warning"  # a figure of the baseline the evaluation lacks
    not_comparable: Level = "warning"  # another preset, batch, scale, or telemetry scope
    other_implementation: Level = "info"  # the workload's digest is none of the baseline's
    not_in_baseline: Level = "info"  # a model the baseline lacks


class TelemetryRules(_Strict):
    recorder_hz: PositiveFloat = 10.0  # the rate asked of the recorder (the agent's --hz)
    min_rate: float = Field(default=0.5, gt=0, le=1)  # achieved below this share: a gap
    slow: Level = "warning"
    empty_window: Level = "warning"  # a measured window without a power or memory reading


class ThrottlingRules(_Strict):
    # An SM clock inside a measured window below this share of the device's highest in the run
    clock_fraction: float = Field(default=0.90, gt=0, le=1)
    clock: Level = "warning"
    temperature_c: float = 85.0  # a reading inside a measured window above it
    temperature: Level = "warning"


class Rules(_Strict):
    ratios: Ratios = Ratios()
    accuracy: AccuracyRules = AccuracyRules()
    models: ModelRules = ModelRules()
    telemetry: TelemetryRules = TelemetryRules()
    throttling: ThrottlingRules = ThrottlingRules()

    def ratio(self, figure: str) -> Ratio:
        """The thresholds of a baseline's figure (`<label>.throughput` is an infer run's)."""
        kind = figure.rpartition(".")[2]
        return getattr(
            self.ratios, {"throughput": "speed", "p90_latency": "latency"}.get(kind, kind)
        )


def read_rules(path: Path | None) -> Rules:
    """A rules file over the built-in defaults; None: the defaults."""
    return Rules() if path is None else read_toml(path, Rules, RulesError)
