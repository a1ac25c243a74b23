"""Samplers and the recorder: cgroup v1 and v2 on fake trees, scopes, rates."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest

from deepspark_agent.telemetry import (
    ProcessTreeSampler,
    Recorder,
    cgroup,
)
from deepspark_agent.telemetry.cgroup import CgroupSampler
from deepspark_core.metrics import Sample
from deepspark_core.series import load_series, sample_rate_hz


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock that advances exactly 1 s per call."""
    ticks = itertools.count(step=1_000_000_000)
    monkeypatch.setattr(cgroup.time, "monotonic_ns", lambda: next(ticks))


def test_cgroup_v1_memory_excludes_inactive_cache_and_cpu_is_a_rate(tmp_path, clock):
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(proc / "42" / "cgroup", "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    (root / "cpu,cpuacct").mkdir(parents=True)
    write(root / "memory/docker/abc/memory.usage_in_bytes", "1000\n")
    write(root / "memory/docker/abc/memory.stat", "cache 500\ntotal_inactive_file 200\n")
    usage = root / "cpu,cpuacct/docker/abc/cpuacct.usage"
    write(usage, str(2_000_000_000))  # 2 s of CPU, in ns
    sampler = CgroupSampler(42, root, proc)
    assert sampler.read() == {"container": {"mem_used_bytes": 800}}  # no rate on the first tick
    write(usage, str(3_500_000_000))  # 1.5 s more CPU over 1 s of wall time: 1.5 cores
    assert sampler.read()["container"]["cpu_percent"] == pytest.approx(150)


def test_cgroup_v2(tmp_path, clock):
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(proc / "7" / "cgroup", "0::/system.slice/docker-abc.scope\n")
    d = root / "system.slice/docker-abc.scope"
    write(d / "memory.current", "5000\n")
    write(d / "memory.stat", "anon 3000\ninactive_file 1000\n")
    write(d / "cpu.stat", "usage_usec 1000000\nuser_usec 900000\n")
    sampler = CgroupSampler(7, root, proc)
    sampler.read()
    write(d / "cpu.stat", "usage_usec 1500000\n")
    assert sampler.read() == {"container": {"mem_used_bytes": 4000, "cpu_percent": 50}}


def test_a_vanished_cgroup_reads_as_nothing(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(proc / "9" / "cgroup", "4:memory:/docker/gone\n2:cpuacct:/docker/gone\n")
    (root / "memory").mkdir(parents=True)
    assert CgroupSampler(9, root, proc).read() == {}


def test_recorder_rows_carry_their_scope_and_the_most_specific_scope_wins(tmp_path):
    class Fixed:
        def __init__(self, scope: str, device: str, value: float) -> None:
            self.scope, self.device, self.value = scope, device, value

        def read(self):
            return {self.device: {"mem_used_bytes": self.value}}

        def close(self) -> None:
            self.closed = True

    path = tmp_path / "telemetry.jsonl"
    samplers = [Fixed("process-tree", "process-tree", 1.0), Fixed("accelerator", "nvidia:0", 2.0)]
    with Recorder(samplers, path, hz=50):
        time.sleep(0.5)
    assert all(s.closed for s in samplers)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["scope"] for r in rows} == {"process-tree", "accelerator"}
    scope, series = load_series(path, "mem_used_bytes")
    assert scope == "accelerator" and list(series) == ["nvidia:0"]
    assert {s.value for s in series["nvidia:0"]} == {2.0}
    assert 30 <= sample_rate_hz(series["nvidia:0"]) <= 55  # asked 50 Hz
    assert load_series(path, "power_w") is None


def test_sample_rate_of_a_hand_made_series():
    series = [Sample(0, 1), Sample(100_000_000, 1), Sample(200_000_000, 1)]
    assert sample_rate_hz(series) == pytest.approx(10)
    assert sample_rate_hz(series[:1]) is None


def test_process_tree_sampler_reads_this_process():
    reading = ProcessTreeSampler(os.getpid()).read()["process-tree"]
    assert reading["mem_used_bytes"] > 10e6
    assert ProcessTreeSampler(2**22 + 12345).read() == {}  # no such process: nothing, no error
