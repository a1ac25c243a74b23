"""The process runtime: a workload as a local process group (torchrun when nproc > 1)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from deepspark_agent.placement import CPU, Placement
from deepspark_agent.runtime.base import (
    Launch,
    LaunchError,
    Outcome,
    argv,
)
from deepspark_agent.telemetry import (
    DEFAULT_HZ,
    ProcessTreeSampler,
    Recorder,
    SamplerFactory,
    no_samplers,
)
from deepspark_agent.telemetry.node import NodeFactory, no_node_samplers
from deepspark_agent.workloads import python_path
from deepspark_core.results import STDOUT_FILE, TELEMETRY_FILE
from deepspark_core.runset import GROUP_FILE

TERM_GRACE_S = 10.0  # after SIGTERM, time for the workload to log run_stop before SIGKILL
POLL_S = 0.2


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        accelerators: SamplerFactory = no_samplers,
        hz: float = DEFAULT_HZ,
        placement: Placement = CPU,
        node: NodeFactory = no_node_samplers,
    ) -> None:
        self.accelerators, self.hz, self.placement = accelerators, hz, placement
        self.node = node  # the node's power sources, beside the accelerators'

    def run(self, launch: Launch, on_tick: Callable[[], None] = lambda: None) -> Outcome:
        """Run to completion or to the spec's deadline, killing the whole process group then."""
        if launch.image:
            raise LaunchError(f"image {launch.image} runs in the docker runtime, not as a process")
        env = {
            **os.environ,
            **launch.spec.env(launch.out_dir, launch.data_dir, launch.checkpoint),
            # The ranks see the run's devices: the first nproc of the placement's.
            **self.placement.first(launch.spec.nproc).env(),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": python_path(launch.workload),
        }
        command = argv(launch, python=sys.executable)
        started = time.monotonic()
        with (launch.out_dir / STDOUT_FILE).open("wb") as log:
            try:
                proc = subprocess.Popen(
                    command, cwd=launch.workload.path, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                error = f"cannot start {command[0]}: {exc}"
                return Outcome(exit_code=None, wall_s=0.0, error=error)
            try:
                with contextlib.suppress(psutil.Error):  # gone already: nothing to leave behind
                    started_at = psutil.Process(proc.pid).create_time()
                    group = {"pgid": proc.pid, "started": started_at}
                    (launch.out_dir / GROUP_FILE).write_text(json.dumps(group))
                samplers = [
                    ProcessTreeSampler(proc.pid),
                    *self.accelerators(proc.pid),
                    *self.node(),
                ]
                with Recorder(samplers, launch.out_dir / TELEMETRY_FILE, self.hz):
                    timed_out = self._wait(proc, started + launch.spec.max_seconds, on_tick)
            finally:
                _kill_group(proc)  # also on Ctrl-C: leave no rank behind
        return Outcome(
            exit_code=proc.returncode,
            wall_s=time.monotonic() - started,
            error=f"killed after {launch.spec.max_seconds:g} s budget" if timed_out else None,
            timed_out=timed_out,
        )

    @staticmethod
    def reap(run_dir: Path) -> None:
        """Stop the process group an earlier, killed agent left running for run_dir."""
        try:
            group = json.loads((run_dir / GROUP_FILE).read_text())
            leader = psutil.Process(int(group["pgid"]))
            if leader.create_time() != group["started"]:
                return  # the id was reused: not ours
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, sig)
            with contextlib.suppress(psutil.Error):
                leader.wait(TERM_GRACE_S)
            if not _group_alive(leader.pid):
                return

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], deadline: float, on_tick: Callable[[], None]) -> bool:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                _kill_group(proc)
                return True
            on_tick()
            time.sleep(POLL_S)
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the group is gone
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
