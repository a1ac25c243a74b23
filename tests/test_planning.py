"""Planning, all in one place: `run`'s runs, a suite entry's scaling points and runs."""

from __future__ import annotations

import pytest

from deepspark_agent.planning import Request, scaling, single_runs, suite_request, suite_runs
from deepspark_agent.runtime.base import Cluster
from deepspark_agent.suites import SuiteEntry, SuiteError
from deepspark_agent.workloads import find_workload


def labels(runs) -> list[tuple[str, str, int, int, int]]:
    return [(r.label, r.mode, r.seed, r.nproc, r.nnodes) for r in runs]


def test_run_plans_distinct_seeds_and_a_one_rank_baseline(sleeper):
    request = Request(workload=find_workload("sleeper"), mode="speed", runs=2, nproc=4, seed=7)
    assert labels(single_runs(request)) == [
        ("run-1", "speed", 7, 4, 1),
        ("run-2", "speed", 8, 4, 1),
        ("baseline-1x", "speed", 7, 1, 1),
    ]
    assert labels(single_runs(Request(workload=request.workload))) == [
        ("run-1", "converge", 0, 1, 1)
    ]


def test_a_suite_entry_plans_speed_per_scaling_point_then_converge_at_the_node_scale():
    entry = SuiteEntry(model="sleeper", devices=[1, "all", 2], stability_runs=2)
    assert scaling(entry, 8) == [1, 2, 8]
    assert labels(suite_runs(entry, 8, nnodes=3)) == [
        ("speed-1x", "speed", 0, 1, 1),
        ("speed-2x", "speed", 0, 2, 1),
        ("speed-8x", "speed", 0, 8, 1),
        ("speed-8x-3n", "speed", 0, 8, 3),
        ("converge-1", "converge", 0, 8, 1),
        ("converge-2", "converge", 1, 8, 1),
    ]


def test_a_scaling_point_beyond_the_node_is_a_suite_error():
    with pytest.raises(SuiteError, match=r"sleeper: devices 4 asked, this node has 2"):
        scaling(SuiteEntry(model="sleeper", devices=[4]), 2)


def test_a_suite_request_runs_at_the_node_scale_with_the_entry_s_settings(sleeper):
    entry = SuiteEntry(model="sleeper", devices=[1, "all"], windows=7, budget_s=30)
    cluster = Cluster(nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500)
    request = suite_request(entry, find_workload("sleeper"), 4, cluster)
    assert (request.nproc, request.windows, request.budget_s) == (4, 7, 30)
    assert request.cluster == cluster
