"""`--runtime`: which runtime runs the workloads, with the accelerator and node telemetry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console

from deepspark_agent.images import ImageError, engine
from deepspark_agent.placement import CPU, Placement
from deepspark_agent.runtime.base import Runtime
from deepspark_agent.runtime.docker import DockerRuntime, container_devices, passes
from deepspark_agent.runtime.process import ProcessRuntime
from deepspark_agent.telemetry import DEFAULT_HZ
from deepspark_agent.telemetry.choose import accelerator_samplers
from deepspark_agent.telemetry.idle import DEFAULT_IDLE_S
from deepspark_agent.telemetry.node import NodePowerChoice, node_samplers
from deepspark_agent.workloads import Workload

RuntimeName = Literal["auto", "docker", "process"]


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime options as given: `--runtime`, `--devices`, `--telemetry`..."""

    name: RuntimeName = "auto"
    devices: str = "auto"  # auto, none, VENDOR[:IDS], cdi:NAMES or /dev/A,/dev/B
    memory_limit: str | None = None  # docker: the container's
    telemetry: str = "auto"
    hz: float = DEFAULT_HZ
    network: str | None = None  # docker: a multi-node run's network
    node_power: NodePowerChoice = field(default_factory=NodePowerChoice)
    idle_s: float = DEFAULT_IDLE_S  # the idle floor's sampling before the first run; 0: none


def choose_runtime(
    choice: RuntimeChoice, workloads: list[Workload], notes: Console, placement: Placement = CPU
) -> Runtime:
    """The runtime asked for (`auto` says in one line which it took and why), given the
    placement's devices; one line says what was found and what the runtime passes."""
    runtime = _runtime(choice, workloads, notes, placement)
    if isinstance(runtime, DockerRuntime):
        given = passes(*container_devices(placement, runtime.cdi))
    else:
        given = placement.env_words() or "CPU run"
    notes.print(f"devices: {placement.found()} -> {given}", highlight=False)
    return runtime


def _runtime(
    choice: RuntimeChoice, workloads: list[Workload], notes: Console, placement: Placement
) -> Runtime:
    sensors, accelerators = accelerator_samplers(choice.telemetry)
    notes.print(f"accelerator telemetry: {sensors}, {choice.hz:g} Hz", highlight=False)
    sources, node = node_samplers(choice.node_power)
    notes.print(f"node power: {sources}", highlight=False)
    docker_options = {
        "mem_limit": choice.memory_limit, "accelerators": accelerators, "hz": choice.hz,
        "network": choice.network, "placement": placement, "node": node,
    }  # fmt: skip
    if choice.name == "process":
        return ProcessRuntime(accelerators, choice.hz, placement, node)
    if choice.name == "docker":
        return DockerRuntime(engine(), **docker_options)
    try:
        client = engine()
    except ImageError as exc:
        notes.print(f"runtime: process ({exc})", highlight=False)
        return ProcessRuntime(accelerators, choice.hz, placement, node)
    present = {tag for image in client.images.list(name="deepspark/*") for tag in image.tags}
    missing = [w.image for w in workloads if w.image not in present]
    if missing:
        notes.print(
            f"runtime: process (image {missing[0]} is not present; `images build` or "
            "`images pull` it to run in containers)",
            highlight=False,
        )
        return ProcessRuntime(accelerators, choice.hz, placement, node)
    notes.print("runtime: docker", highlight=False)
    return DockerRuntime(client, **docker_options)
