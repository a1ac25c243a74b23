"""The six-dimension engine: speed, accuracy, linearity, power, memory, stability.

Pure functions over plain numbers: no I/O, no framework. The runner feeds them windows parsed
from a workload's event log and telemetry samples; the collector calls the same functions to
recompute a submission's figures from its raw artifacts, so both sides agree by construction.
All times are on the host's monotonic clock, in nanoseconds.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal, cast

from deepspark_core.errors import DeepSparkError

NS_PER_S = 1e9
BYTES_PER_GB = 1e9
# Absolute slack for the stability band, so a value exactly at baseline +/- tolerance counts as
# inside even when float subtraction lands a hair past it (0.76 - 0.75 = 0.010000000000000009).
STABILITY_EPSILON = 1e-12
# Score lost per run outside the band (DeepSpark: 5 runs, 0.2 each).
STABILITY_PENALTY_RUNS = 5
# The trimmed mean drops one highest and one lowest window: 3 leave one to average.
SPEED_MIN_WINDOWS = 3


class MetricError(DeepSparkError):
    """Input that no metric can be computed from; the message is one line."""


# --- speed -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One measured training window (block_start .. block_stop) on the monotonic clock."""

    start_ns: int
    stop_ns: int
    samples: int
    # rank 0's wait for its batches inside the window (block_stop's optional data_wait_ms);
    # NaN when logged but not a number, so that `loader` can say so
    data_wait_ms: float | None = None
    # block_start's `window`, which infer_latency events name; not part of what it measured
    number: int | None = field(default=None, compare=False)

    @property
    def seconds(self) -> float:
        return (self.stop_ns - self.start_ns) / NS_PER_S

    @property
    def throughput(self) -> float:
        """Samples per second in this window."""
        seconds = self.seconds
        if seconds <= 0:
            raise MetricError(
                f"window {self.start_ns}..{self.stop_ns} has non-positive length {seconds} s"
            )
        if self.samples < 0:
            raise MetricError(f"window {self.start_ns}..{self.stop_ns} has negative samples")
        return self.samples / seconds


@dataclass(frozen=True)
class Speed:
    value: float  # samples/s, trimmed mean of the windows' throughputs
    windows: int  # measured windows used (before trimming)
    per_window: tuple[float, ...]  # each window's throughput, in input order


def speed(windows: Sequence[Window]) -> Speed:
    """Trimmed mean of per-window throughput.

    DeepSpark's rule is 5 windows, drop the highest and the lowest, mean of the middle 3. For
    any n >= 3 windows this drops exactly one highest and one lowest throughput (ties: only one
    copy of each is dropped) and averages the remaining n - 2. Fewer than 3 windows leave
    nothing after trimming, so they are an error rather than a silently untrimmed mean.
    """
    if len(windows) < SPEED_MIN_WINDOWS:
        plural = "" if len(windows) == 1 else "s"
        raise MetricError(
            f"{len(windows)} measured window{plural}, the rule needs {SPEED_MIN_WINDOWS}"
        )
    per_window = tuple(w.throughput for w in windows)
    middle = sorted(per_window)[1:-1]
    return Speed(value=statistics.fmean(middle), windows=len(windows), per_window=per_window)


def end_to_end_speed(samples: int, seconds: float) -> float:
    """All samples over total run time (init, eval and warm-up included): the user's view."""
    if not seconds > 0 or not math.isfinite(seconds):
        raise MetricError(f"end-to-end speed needs a positive duration, got {seconds} s")
    if samples < 0:
        raise MetricError(f"end-to-end speed needs non-negative samples, got {samples}")
    return samples / seconds


# --- the input pipeline ----------------------------------------------------------------------

# A training loop that waits for its data longer than this share of its windows measured its
# loader, not its accelerator.
INPUT_BOUND_SHARE = 0.10


@dataclass(frozen=True)
class Loader:
    """How the input pipeline kept up over the measured windows (rank 0's wait)."""

    wait_s: float  # waiting for the next batch, summed over the windows
    share: float  # of the windows' time
    speed: float | None  # samples/s the loader delivered when input-bound; None: it kept up
    compute_speed: float | None  # samples/s over the windows' time less the wait

    @property
    def note(self) -> str | None:
        """The row's note when the run was input-bound; None when the loader kept up."""
        if self.speed is None:
            return None
        alone = f"; without the wait ~{self.compute_speed:,.0f}/s" if self.compute_speed else ""
        return (
            f"input-bound: {self.share:.0%} of the time waiting for data "
            f"(loader ~{self.speed:,.0f} samples/s{alone})"
        )


def loader(windows: Sequence[Window]) -> Loader | None:
    """The windows' wait for data against their time; None when none logged its wait.

    When input-bound the loader cannot have delivered more than the windows consumed (its
    workers never idle while the loop waits), so its speed is the windows' throughput;
    otherwise it kept up and its own speed is not measured.
    """
    if all(w.data_wait_ms is None for w in windows):
        return None
    for index, w in enumerate(windows):
        wait = w.data_wait_ms
        if wait is None or not 0 <= wait <= w.seconds * 1e3:  # NaN fails both comparisons
            raise MetricError(
                f"loader: measured window {index} data_wait_ms {wait!r} is not a time "
                f"within the window ({w.seconds * 1e3:.3f} ms)"
            )
    seconds = sum(w.seconds for w in windows)
    samples = sum(w.samples for w in windows)
    wait_s = sum(cast(float, w.data_wait_ms) for w in windows) / 1e3
    share = wait_s / seconds
    return Loader(
        wait_s=wait_s,
        share=share,
        speed=samples / seconds if share > INPUT_BOUND_SHARE else None,
        compute_speed=samples / (seconds - wait_s) if wait_s < seconds else None,
    )


# --- inference latency -----------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Per-query latency over the measured windows, in ms (a query: one batch in the offline
    scenario, one sample in the latency scenario)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    queries: int


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of all values at or
    below it, i.e. the k-th smallest for k = ceil(p / 100 * n) (MLPerf's loadgen picks the
    same value). It is always a value that was measured, never an interpolation."""
    if not values:
        raise MetricError("a percentile needs at least one value")
    if not 0 < p <= 100:
        raise MetricError(f"percentile p must be in (0, 100], got {p}")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]  # p * n first: exact


def latency(values_ms: Sequence[float]) -> Latency:
    """p50, p90 and p99 (nearest rank) and the mean of the recorded per-query latencies."""
    if not values_ms:
        raise MetricError("latency: no query latency recorded in the measured windows")
    for v in values_ms:
        if not (math.isfinite(v) and v >= 0):
            raise MetricError(f"latency: {v!r} ms is not a non-negative time")
    return Latency(
        p50_ms=percentile(values_ms, 50),
        p90_ms=percentile(values_ms, 90),
        p99_ms=percentile(values_ms, 99),
        mean_ms=statistics.fmean(values_ms),
        queries=len(values_ms),
    )


# --- accuracy --------------------------------------------------------------------------------

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Accuracy:
    value: float
    target: float
    direction: Direction
    converged: bool


def accuracy(value: float, target: float, direction: str) -> Accuracy:
    """Final quality value against the target; reaching the target exactly counts."""
    if direction not in ("higher", "lower"):
        raise MetricError(f"accuracy direction must be 'higher' or 'lower', got {direction!r}")
    if not math.isfinite(value):
        raise MetricError(f"accuracy value must be finite, got {value}")
    if not math.isfinite(target):
        raise MetricError(f"accuracy target must be finite, got {target}")
    return Accuracy(
        value=value,
        target=target,
        direction=cast(Direction, direction),
        converged=reached(value, target, direction),
    )


def reached(value: float, target: float, direction: str) -> bool:
    """A quality value at or past the target in the metric's direction."""
    return value >= target if direction == "higher" else value <= target


# --- reference convergence (MLPerf's RCPs, adapted) ------------------------------------------

# A converge run is slow when it needs more epochs than the reference sweep's slowest seed plus
# this margin. MLPerf compares a submission's mean with the reference runs' distribution; a
# mini's ten seeds spread over a few epochs, so one epoch past the slowest is within noise.
SLOW_MARGIN_EPOCHS = 1


def epochs_to_target(
    evaluations: Sequence[tuple[int, float]], target: float, direction: str
) -> int | None:
    """The epoch of the first evaluation that reached the target; None when none did."""
    return next(
        (e for e, v in evaluations if math.isfinite(v) and reached(v, target, direction)), None
    )


def slow_convergence(epochs: int, reference: Sequence[int]) -> bool:
    """More epochs to target than the reference's slowest seed plus SLOW_MARGIN_EPOCHS."""
    if not reference:
        raise MetricError("a reference convergence needs at least one seed's epochs")
    return epochs > max(reference) + SLOW_MARGIN_EPOCHS


# --- linearity -------------------------------------------------------------------------------


def linearity(speed_n: float, n: int, speed_1: float) -> float:
    """Scaling efficiency: (speed on n units / n) / speed on 1 unit; 1.0 is perfect.

    The same formula serves card linearity (n devices vs 1 device) and node linearity
    (n nodes vs 1 node); the caller picks which speeds to pass.
    """
    if n < 1:
        raise MetricError(f"linearity needs n >= 1, got {n}")
    if not speed_1 > 0 or not math.isfinite(speed_1):
        raise MetricError(f"linearity needs a positive single-unit speed, got {speed_1}")
    if not speed_n >= 0 or not math.isfinite(speed_n):
        raise MetricError(f"linearity needs a non-negative speed on {n} units, got {speed_n}")
    return (speed_n / n) / speed_1


# --- telemetry: power and memory -------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One telemetry reading: W for power, bytes for memory."""

    t_ns: int
    value: float


def _check_windows(windows: Sequence[Window], what: str) -> None:
    if not windows:
        raise MetricError(f"{what} needs at least one measured window")
    for w in windows:
        if w.stop_ns < w.start_ns:
            raise MetricError(f"{what}: window {w.start_ns}..{w.stop_ns} ends before it starts")


def _inside(readings: Sequence[Sample], windows: Sequence[Window]) -> list[Sample]:
    """Readings inside some window (edges included), each counted once even if windows touch."""
    return [s for s in readings if any(w.start_ns <= s.t_ns <= w.stop_ns for w in windows)]


def _readings_in_windows(
    series: Sequence[Sequence[Sample]], windows: Sequence[Window], what: str
) -> list[list[Sample]]:
    """Per device, its readings inside the windows; error naming the first device with none."""
    if not series:
        raise MetricError(f"{what} needs at least one device")
    _check_windows(windows, what)
    per_device = []
    for i, readings in enumerate(series):
        inside = _inside(readings, windows)
        if not inside:
            raise MetricError(f"{what}: device {i} has no reading inside the measured windows")
        per_device.append(inside)
    return per_device


def _value_at(readings: Sequence[Sample], times: Sequence[int], t_ns: int) -> float:
    """Reading at t_ns, linearly interpolated; clamped to the first/last reading outside them.

    `readings` is sorted by time and `times` is its list of t_ns.
    """
    if t_ns <= times[0]:
        return readings[0].value
    if t_ns >= times[-1]:
        return readings[-1].value
    j = bisect_left(times, t_ns)  # times[j-1] < t_ns <= times[j]
    right = readings[j]
    if right.t_ns == t_ns:
        return right.value
    left = readings[j - 1]
    frac = (t_ns - left.t_ns) / (right.t_ns - left.t_ns)
    return left.value + frac * (right.value - left.value)


def _window_energy_j(readings: Sequence[Sample], times: Sequence[int], w: Window) -> float:
    """Trapezoid integral of power over one window, edges interpolated so no time is lost."""
    points = [(w.start_ns, _value_at(readings, times, w.start_ns))]
    points += [(s.t_ns, s.value) for s in readings if w.start_ns < s.t_ns < w.stop_ns]
    points.append((w.stop_ns, _value_at(readings, times, w.stop_ns)))
    return sum((t1 - t0) / NS_PER_S * (v0 + v1) / 2 for (t0, v0), (t1, v1) in pairwise(points))


@dataclass(frozen=True)
class Power:
    mean_w: tuple[float, ...]  # per device, mean of its readings inside the measured windows
    energy_j: float  # all devices, integrated over the measured windows
    j_per_sample: float | None  # energy_j / samples, when samples was given

    @property
    def devices(self) -> int:
        return len(self.mean_w)

    @property
    def total_w(self) -> float:
        return sum(self.mean_w)


def power(
    series: Sequence[Sequence[Sample]], windows: Sequence[Window], samples: int | None = None
) -> Power:
    """Device power over the measured windows.

    series[i] holds device i's readings in W. The mean counts only readings inside some window
    (start_ns <= t_ns <= stop_ns). Energy integrates each device over each window with the
    trapezoid rule; the power at a window's edges is interpolated from the neighbouring
    readings (clamped to the nearest reading past either end of the series), so a short window
    that falls between two readings still gets its share of energy.
    """
    if samples is not None and samples <= 0:
        raise MetricError(f"power: samples must be positive, got {samples}")
    inside = _readings_in_windows(series, windows, "power")
    energy = 0.0
    for readings in series:
        ordered = sorted(readings, key=lambda s: s.t_ns)
        times = [s.t_ns for s in ordered]
        energy += sum(_window_energy_j(ordered, times, w) for w in windows)
    return Power(
        mean_w=tuple(statistics.fmean(s.value for s in dev) for dev in inside),
        energy_j=energy,
        j_per_sample=None if samples is None else energy / samples,
    )


def counter_energy_j(series: Sequence[Sequence[Sample]], windows: Sequence[Window]) -> float:
    """Energy over the windows from cumulative energy counters (J), all devices together.

    Where the hardware keeps such a counter (NVML's total energy, Volta and later) this is
    the reference the trapezoid integral of sampled power is checked against. The counter's
    value at each window edge is interpolated like power's.
    """
    _check_windows(windows, "energy counter")
    total = 0.0
    for i, readings in enumerate(series):
        if len(readings) < 2:
            raise MetricError(f"energy counter: device {i} has fewer than 2 readings")
        ordered = sorted(readings, key=lambda s: s.t_ns)
        times = [s.t_ns for s in ordered]
        total += sum(
            _value_at(ordered, times, w.stop_ns) - _value_at(ordered, times, w.start_ns)
            for w in windows
        )
    return total


def spans(readings: Sequence[Sample], windows: Sequence[Window]) -> bool:
    """Whether a series has a reading at or before the first window's start and at or after
    the last one's stop, so that its value at every window edge is interpolated between two
    readings, never extrapolated past its ends."""
    times = [s.t_ns for s in readings]
    start, stop = min(w.start_ns for w in windows), max(w.stop_ns for w in windows)
    return bool(times) and min(times) <= start and max(times) >= stop


# Past this relative gap between an energy counter and the integral of sampled power over
# the same windows, the row says they disagree (a slow sensor, or a counter that misses
# part of what the power reading covers).
ENERGY_DISAGREEMENT = 0.10


def disagreement(counter_j: float | None, integral_j: float | None) -> float | None:
    """|integral - counter| / counter; None without both or with a zero counter."""
    if counter_j is None or integral_j is None or not counter_j:
        return None
    return abs(integral_j - counter_j) / abs(counter_j)


@dataclass(frozen=True)
class SourcePower:
    """A node power source (IPMI, Redfish, a RAPL domain) over the measured windows."""

    mean_w: float  # its power readings' mean, else its counter's energy over the windows' time
    basis: Literal["power", "counter"]  # which of the two the mean comes from
    readings: int  # inside the windows, of that basis
    counter_j: float | None  # its energy counter's increase over the windows
    integral_j: float | None  # the trapezoid integral of its power readings over the windows
    samples: int | None  # samples trained or inferred in the windows

    def per_sample(self, joules: float | None) -> float | None:
        return None if joules is None or not self.samples else joules / self.samples


def source_power(
    watts: Sequence[Sample],
    counter: Sequence[Sample],
    windows: Sequence[Window],
    samples: int | None = None,
) -> SourcePower:
    """One node source's power and energy over the windows, from its power readings, its
    cumulative energy counter (J, unwrapped), or both. A slow source (IPMI, ~1 Hz) over short
    windows may read nothing inside them: its mean is then N/A (MetricError with the reason),
    never extrapolated from readings outside. Energy needs the series to span the windows
    (`spans`): at each edge the counter, or power, is interpolated between two readings."""
    _check_windows(windows, "node power")
    seconds = sum(w.seconds for w in windows)
    why: list[str] = []
    mean = integral = counted = None
    basis: Literal["power", "counter"] = "power"
    readings = 0
    if watts:
        inside = _inside(watts, windows)
        if not inside:
            why.append(f"no power reading inside the measured windows ({seconds:.3g} s)")
        else:
            mean, readings = statistics.fmean(s.value for s in inside), len(inside)
            if spans(watts, windows):
                integral = power([watts], windows).energy_j
    if counter:
        if spans(counter, windows):
            counted = counter_energy_j([counter], windows)
        else:
            why.append("its energy counter does not span the measured windows")
    if mean is None and counted is not None and seconds > 0:
        mean, basis, readings = counted / seconds, "counter", len(_inside(counter, windows))
    if mean is None:
        raise MetricError("; ".join(why) or "no power or energy reading")
    return SourcePower(mean, basis, readings, counted, integral, samples)


@dataclass(frozen=True)
class Memory:
    mean_gb: tuple[float, ...]  # per device, GB = 1e9 bytes
    peak_gb: tuple[float, ...]  # per device, largest reading inside the windows

    @property
    def devices(self) -> int:
        return len(self.mean_gb)


def memory(series: Sequence[Sequence[Sample]], windows: Sequence[Window]) -> Memory:
    """Mean and peak device memory (readings in bytes) over the measured windows, per device.

    Same window rule as power: only readings with start_ns <= t_ns <= stop_ns of some window.
    """
    inside = _readings_in_windows(series, windows, "memory")
    return Memory(
        mean_gb=tuple(statistics.fmean(s.value for s in dev) / BYTES_PER_GB for dev in inside),
        peak_gb=tuple(max(s.value for s in dev) / BYTES_PER_GB for dev in inside),
    )


# --- stability -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stability:
    score: float  # max(0, 1 - 0.2 * outside)
    baseline: float  # median final value of the successful runs
    outside: int  # runs outside baseline +/- tolerance, failed runs included
    runs: int
    failed: int
    cv: float | None  # sample stdev / |mean| of the successful runs
    tolerance: float


def stability(values: Sequence[float | None], tolerance: float = 0.01) -> Stability:
    """Score repeated converge runs (different seeds) by how many land near their median.

    values[i] is run i's final quality value, None when the run failed; a failed run counts as
    outside. The band check allows STABILITY_EPSILON so that a value exactly at the edge is
    inside. cv uses the sample standard deviation (n - 1: the runs are a sample of the seeds
    one could draw) over the absolute mean, and is None with fewer than 2 successful runs or a
    zero mean.
    """
    if len(values) < 2:
        raise MetricError(f"stability needs at least 2 runs, got {len(values)}")
    if not tolerance >= 0 or not math.isfinite(tolerance):
        raise MetricError(f"stability tolerance must be a non-negative number, got {tolerance}")
    ok = [v for v in values if v is not None]
    if not ok:
        raise MetricError("stability: every run failed")
    for v in ok:
        if not math.isfinite(v):
            raise MetricError(f"stability: run value must be finite or None, got {v}")
    failed = len(values) - len(ok)
    baseline = statistics.median(ok)
    outside = failed + sum(1 for v in ok if abs(v - baseline) > tolerance + STABILITY_EPSILON)
    # (5 - k) / 5 rather than 1 - 0.2 * k: same value, but exact for k = 3 (0.4, not 0.39999...).
    score = max(0.0, (STABILITY_PENALTY_RUNS - outside) / STABILITY_PENALTY_RUNS)
    cv = None
    if len(ok) >= 2:
        mean = statistics.fmean(ok)
        if mean != 0:
            cv = statistics.stdev(ok) / abs(mean)
    return Stability(
        score=score,
        baseline=baseline,
        outside=outside,
        runs=len(values),
        failed=failed,
        cv=cv,
        tolerance=tolerance,
    )
