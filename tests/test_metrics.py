"""Hand-computed cases for the six-dimension engine; the arithmetic is in the comments."""

import math

import pytest

from deepspark_core.metrics import (
    Accuracy,
    MetricError,
    Sample,
    Window,
    accuracy,
    counter_energy_j,
    end_to_end_speed,
    linearity,
    loader,
    memory,
    power,
    speed,
    stability,
)

S = 1_000_000_000  # ns per second


def windows_1s(*samples: int) -> list[Window]:
    """Back-to-back 1 s windows, so each window's throughput equals its sample count."""
    return [Window(i * S, (i + 1) * S, n) for i, n in enumerate(samples)]


def at(t_s: float, value: float) -> Sample:
    return Sample(round(t_s * S), value)


# --- speed -----------------------------------------------------------------------------------


def test_window_seconds_and_throughput() -> None:
    # 500 samples over 2 s = 250/s; 100 samples over 0.5 s = 200/s
    assert Window(0, 2 * S, 500).seconds == 2.0
    assert Window(0, 2 * S, 500).throughput == pytest.approx(250.0)
    assert Window(S, S + S // 2, 100).throughput == pytest.approx(200.0)


@pytest.mark.parametrize("stop_ns", [5 * S, 4 * S])
def test_window_throughput_rejects_empty_or_reversed(stop_ns: int) -> None:
    with pytest.raises(MetricError, match="non-positive length"):
        _ = Window(5 * S, stop_ns, 10).throughput


def test_speed_drops_highest_and_lowest_of_five() -> None:
    # throughputs 100, 110, 120, 130, 200: drop 100 and 200 -> (110 + 120 + 130) / 3 = 120
    result = speed(windows_1s(130, 100, 200, 110, 120))
    assert result.value == pytest.approx(120.0)
    assert result.windows == 5
    assert result.per_window == pytest.approx((130, 100, 200, 110, 120))  # input order kept


def test_speed_with_ties_drops_only_one_copy_of_min_and_max() -> None:
    # 100, 100, 130, 200, 200: drop one 100 and one 200 -> (100 + 130 + 200) / 3 = 143.33...
    # (dropping every copy of the extremes would wrongly give 130)
    assert speed(windows_1s(100, 200, 130, 100, 200)).value == pytest.approx(430 / 3)


def test_loader_share_over_unequal_windows() -> None:
    # 1 s with 100 samples waiting 200 ms, 3 s with 300 waiting 400 ms: 0.6 s of 4 s = 15%,
    # input-bound; the loader gave 400/4 = 100/s, the device alone 400/3.4 = 117.6/s
    ws = [Window(0, S, 100, 200.0), Window(S, 4 * S, 300, 400.0)]
    result = loader(ws)
    assert (result.wait_s, result.share) == pytest.approx((0.6, 0.15))
    assert (result.speed, result.compute_speed) == pytest.approx((100, 400 / 3.4))
    assert result.note == (
        "input-bound: 15% of the time waiting for data (loader ~100 samples/s; without the wait"
        " ~118/s)"
    )
    assert loader([Window(0, S, 100, 100.0)]).note is None  # exactly 10%: keeps up
    assert loader([Window(0, S, 100, 1000.0)]).compute_speed is None  # all of it waiting
    assert loader(windows_1s(100, 100)) is None  # no window logged its wait


@pytest.mark.parametrize("waits", [(10.0, None), (math.nan, 1.0), (-0.5, 1.0), (1000.1, 1.0)])
def test_loader_refuses_a_wait_that_cannot_be(waits: tuple) -> None:
    ws = [Window(i * S, (i + 1) * S, 10, wait) for i, wait in enumerate(waits)]
    with pytest.raises(MetricError, match=r"data_wait_ms .* is not a time within the window"):
        loader(ws)


def test_speed_with_unequal_window_lengths() -> None:
    # 400 samples / 2 s = 200; 150 / 0.5 s = 300; 100 / 1 s = 100 -> middle one is 200
    ws = [Window(0, 2 * S, 400), Window(2 * S, 2 * S + S // 2, 150), Window(3 * S, 4 * S, 100)]
    assert speed(ws).value == pytest.approx(200.0)


def test_speed_four_windows_averages_middle_two() -> None:
    # 50, 60, 90, 100: drop 50 and 100 -> (60 + 90) / 2 = 75
    assert speed(windows_1s(90, 50, 100, 60)).value == pytest.approx(75.0)


def test_speed_needs_three_windows() -> None:
    with pytest.raises(MetricError, match="2 measured windows, the rule needs 3"):
        speed(windows_1s(100, 110))


def test_end_to_end_speed() -> None:
    # 1000 samples / 8 s = 125
    assert end_to_end_speed(1000, 8.0) == pytest.approx(125.0)
    with pytest.raises(MetricError):
        end_to_end_speed(1000, 0.0)


# --- accuracy --------------------------------------------------------------------------------


def test_accuracy_higher_is_better() -> None:
    assert accuracy(0.759, 0.759, "higher") == Accuracy(0.759, 0.759, "higher", True)  # tie
    assert accuracy(0.7589, 0.759, "higher").converged is False


def test_accuracy_lower_is_better() -> None:
    # perplexity 3.2 against target 3.5: lower is better, so converged
    assert accuracy(3.2, 3.5, "lower").converged is True
    assert accuracy(3.6, 3.5, "lower").converged is False


def test_accuracy_rejects_bad_input() -> None:
    with pytest.raises(MetricError, match="direction"):
        accuracy(0.7, 0.75, "up")
    with pytest.raises(MetricError, match="finite"):
        accuracy(math.nan, 0.75, "higher")


# --- linearity -------------------------------------------------------------------------------


def test_linearity_cards_and_nodes() -> None:
    # cards: (6800 / 8) / 1000 = 850 / 1000 = 0.85
    assert linearity(6800.0, 8, 1000.0) == pytest.approx(0.85)
    # nodes: (15000 / 2) / 8000 = 7500 / 8000 = 0.9375
    assert linearity(15000.0, 2, 8000.0) == pytest.approx(0.9375)
    # one unit against itself is perfect
    assert linearity(1000.0, 1, 1000.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("speed_n", "n", "speed_1"), [(100.0, 0, 100.0), (100.0, 2, 0.0)])
def test_linearity_rejects_bad_input(speed_n: float, n: int, speed_1: float) -> None:
    with pytest.raises(MetricError):
        linearity(speed_n, n, speed_1)


# --- power -----------------------------------------------------------------------------------


def test_power_interpolates_window_edges_and_ignores_outside_readings() -> None:
    readings = [at(0, 100), at(1, 200), at(2, 300), at(3, 100), at(10, 500)]
    # window 0.5 s .. 2.5 s; inside readings: t=1 (200 W), t=2 (300 W) -> mean 250 W
    # (t=0, t=3 and the 500 W reading at t=10 are outside and must not count)
    # edge at 0.5: halfway between 100 and 200 -> 150; edge at 2.5: halfway 300..100 -> 200
    # trapezoids: 0.5*(150+200)/2 = 87.5; 1*(200+300)/2 = 250; 0.5*(300+200)/2 = 125
    # energy = 87.5 + 250 + 125 = 462.5 J; 462.5 J / 925 samples = 0.5 J/sample
    result = power([readings], [Window(S // 2, 5 * S // 2, 925)], samples=925)
    assert result.mean_w == pytest.approx((250.0,))
    assert result.energy_j == pytest.approx(462.5)
    assert result.j_per_sample == pytest.approx(0.5)
    assert result.devices == 1


def test_power_window_between_readings_still_gets_energy() -> None:
    readings = [at(0, 100), at(1, 200), at(4, 400)]
    windows = [Window(0, S, 10), Window(2 * S, 3 * S, 10)]
    # window 1 (0..1 s): readings 100 and 200 -> 1*(100+200)/2 = 150 J
    # window 2 (2..3 s) has no reading; interpolate on 200 W @1 s .. 400 W @4 s:
    #   at 2 s: 200 + 200/3 = 266.67; at 3 s: 200 + 400/3 = 333.33 -> 1*(800/3+1000/3)/2 = 300 J
    # energy = 150 + 300 = 450 J; mean counts only readings inside: (100 + 200)/2 = 150 W
    result = power([readings], windows)
    assert result.energy_j == pytest.approx(450.0)
    assert result.mean_w == pytest.approx((150.0,))
    assert result.j_per_sample is None


def test_power_clamps_edges_beyond_the_readings() -> None:
    # window 0..3 s, readings only at 1 s (100 W) and 2 s (300 W):
    # edge at 0 clamps to 100, edge at 3 clamps to 300
    # trapezoids: 1*(100+100)/2 = 100; 1*(100+300)/2 = 200; 1*(300+300)/2 = 300 -> 600 J
    result = power([[at(1, 100), at(2, 300)]], [Window(0, 3 * S, 1)])
    assert result.energy_j == pytest.approx(600.0)
    assert result.mean_w == pytest.approx((200.0,))


def test_power_two_devices() -> None:
    dev0 = [at(t, 100) for t in range(5)]
    # device 1 given out of order, with a 1000 W spike at 10 s outside the window
    dev1 = [at(3, 50), at(10, 1000), at(0, 50), at(2, 50), at(1, 50), at(4, 50)]
    # window 1..3 s: dev0 mean 100 W, energy 2 s * 100 W = 200 J
    #                dev1 mean 50 W, energy 2 s * 50 W = 100 J -> total 300 J, 150 W
    # 300 J / 600 samples = 0.5 J/sample
    result = power([dev0, dev1], [Window(S, 3 * S, 600)], samples=600)
    assert result.mean_w == pytest.approx((100.0, 50.0))
    assert result.total_w == pytest.approx(150.0)
    assert result.devices == 2
    assert result.energy_j == pytest.approx(300.0)
    assert result.j_per_sample == pytest.approx(0.5)


def test_power_reading_on_a_shared_window_edge_counts_once() -> None:
    # windows 0..1 s and 1..2 s; readings 100, 400, 100 at 0, 1, 2 s
    # mean: (100 + 400 + 100) / 3 = 200 (counting t=1 twice would give 1000/4 = 250)
    # energy: 1*(100+400)/2 + 1*(400+100)/2 = 250 + 250 = 500 J
    result = power([[at(0, 100), at(1, 400), at(2, 100)]], [Window(0, S, 1), Window(S, 2 * S, 1)])
    assert result.mean_w == pytest.approx((200.0,))
    assert result.energy_j == pytest.approx(500.0)


def test_power_errors() -> None:
    window = [Window(S, 2 * S, 10)]
    with pytest.raises(MetricError, match="device 1 has no reading"):
        power([[at(1.5, 100)], [at(0, 100), at(3, 100)]], window)
    with pytest.raises(MetricError, match="at least one measured window"):
        power([[at(1.5, 100)]], [])
    with pytest.raises(MetricError, match="samples"):
        power([[at(1.5, 100)]], window, samples=0)


# --- memory ----------------------------------------------------------------------------------


def test_memory_mean_and_peak_per_device() -> None:
    dev0 = [at(0, 2e9), at(1, 4e9), at(2, 6e9), at(3, 5e9), at(5, 9e9)]
    dev1 = [at(1.5, 1e9), at(2.5, 3e9)]
    # window 1..3 s: dev0 inside 4, 6, 5 GB -> mean 5, peak 6 (the 9 GB at 5 s is outside)
    #                dev1 inside 1, 3 GB -> mean 2, peak 3
    result = memory([dev0, dev1], [Window(S, 3 * S, 1)])
    assert result.mean_gb == pytest.approx((5.0, 2.0))
    assert result.peak_gb == pytest.approx((6.0, 3.0))
    assert result.devices == 2


def test_memory_device_without_readings() -> None:
    with pytest.raises(MetricError, match="device 0 has no reading"):
        memory([[at(9, 1e9)]], [Window(S, 3 * S, 1)])


# --- stability -------------------------------------------------------------------------------


def test_stability_one_run_outside() -> None:
    # baseline = median(0.75, 0.75, 0.75, 0.75, 0.77) = 0.75; 0.77 is 0.02 away -> 1 outside
    # score = 1 - 0.2 * 1 = 0.8
    # cv: mean 0.754; deviations -0.004 (x4), +0.016; squares 4*1.6e-5 + 2.56e-4 = 3.2e-4
    #     sample variance 3.2e-4 / 4 = 8e-5; cv = sqrt(8e-5) / 0.754 = 0.011862
    result = stability([0.75, 0.75, 0.77, 0.75, 0.75])
    assert result.baseline == pytest.approx(0.75)
    assert result.outside == 1
    assert result.score == pytest.approx(0.8)
    assert result.cv == pytest.approx(math.sqrt(8e-5) / 0.754)
    assert (result.runs, result.failed, result.tolerance) == (5, 0, 0.01)


def test_stability_failed_run_counts_outside() -> None:
    # successful: 0.75, 0.751, 0.749, 0.75 -> median (0.75 + 0.75)/2 = 0.75, all within 0.01
    # the failed run counts outside -> score 0.8
    result = stability([0.75, None, 0.751, 0.749, 0.75])
    assert result.baseline == pytest.approx(0.75)
    assert (result.outside, result.failed, result.runs) == (1, 1, 5)
    assert result.score == pytest.approx(0.8)


def test_stability_value_exactly_at_tolerance_is_inside() -> None:
    # baseline 0.75; 0.76 and 0.74 are exactly 0.01 away. In floats 0.76 - 0.75 is
    # 0.010000000000000009 > 0.01, which is why the comparison needs the epsilon.
    assert abs(0.76 - 0.75) > 0.01
    result = stability([0.75, 0.76, 0.75, 0.74, 0.75])
    assert result.outside == 0
    assert result.score == 1.0


def test_stability_tolerance_is_configurable() -> None:
    values = [0.75, 0.75, 0.75, 0.77, 0.73]
    # tolerance 0.01: 0.77 and 0.73 are 0.02 away -> 2 outside -> 1 - 0.4 = 0.6
    assert stability(values).score == pytest.approx(0.6)
    # tolerance 0.02: both exactly at the edge -> inside -> 1.0
    wide = stability(values, tolerance=0.02)
    assert (wide.outside, wide.score, wide.tolerance) == (0, 1.0, 0.02)


def test_stability_even_run_count_uses_middle_mean() -> None:
    # median(0.70, 0.74, 0.75, 0.80) = (0.74 + 0.75)/2 = 0.745
    # 0.70 is 0.045 away, 0.80 is 0.055 away -> 2 outside -> 0.6
    result = stability([0.80, 0.70, 0.75, 0.74])
    assert result.baseline == pytest.approx(0.745)
    assert result.score == pytest.approx(0.6)


def test_stability_all_equal_has_zero_cv() -> None:
    result = stability([0.8] * 5)
    assert result.cv == 0.0
    assert result.score == 1.0


def test_stability_score_exact_and_floored() -> None:
    # 3 outside: 1 - 0.2*3 = 0.4 exactly (not 0.39999999999999997)
    assert stability([0.75, 0.75, None, None, None]).score == 0.4
    # 6 outside: 1 - 1.2 < 0 -> floored at 0.0
    assert stability([0.75, None, None, None, None, None, None]).score == 0.0


def test_stability_cv_none_cases() -> None:
    # one successful run: no spread to measure
    one = stability([0.75, None])
    assert (one.cv, one.baseline, one.score) == (None, 0.75, 0.8)
    # mean of (-0.005, 0.005) is 0: cv undefined
    assert stability([-0.005, 0.005]).cv is None


def test_stability_errors() -> None:
    with pytest.raises(MetricError, match="at least 2 runs, got 1"):
        stability([0.75])
    with pytest.raises(MetricError, match="stability: every run failed"):
        stability([None, None, None])
    with pytest.raises(MetricError, match="tolerance"):
        stability([0.75, 0.75], tolerance=-0.01)


def test_counter_energy_interpolates_the_counter_at_window_edges():
    # Counter 100 J at t=0 s, 300 J at t=2 s (100 W). Window 0.5..1.5 s: 250 - 150 = 100 J.
    # Second device: 0 J at 0 s, 50 J at 2 s: 37.5 - 12.5 = 25 J. Total 125 J.
    windows = [Window(start_ns=500_000_000, stop_ns=1_500_000_000, samples=10)]
    a = [Sample(0, 100.0), Sample(2_000_000_000, 300.0)]
    b = [Sample(0, 0.0), Sample(2_000_000_000, 50.0)]
    assert counter_energy_j([a, b], windows) == pytest.approx(125.0)
    with pytest.raises(MetricError, match="fewer than 2 readings"):
        counter_energy_j([a[:1]], windows)
