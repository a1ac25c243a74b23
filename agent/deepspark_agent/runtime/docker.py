"""The Docker runtime: a workload image run through the Docker SDK (never the CLI).

The container gets the contract's environment, the run directory mounted at /ds/out, the data
directory read-only at /ds/data (an infer run's checkpoint at /ds/in/checkpoint.pt), no
network (workloads must not download anything) unless it is one node of a multi-node run
(then the network the nodes share), a large /dev/shm for data loaders, and the accelerators
it is given. The agent kills it at the
deadline, reads whether the kernel killed it for memory, keeps its logs in stdout.log, and
always removes it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

from deepspark_agent.devices import visible_devices_env
from deepspark_agent.placement import CDI_DOMAINS, CPU, Placement, span
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
    Sampler,
    SamplerFactory,
    no_samplers,
)
from deepspark_agent.telemetry.cgroup import CgroupSampler
from deepspark_agent.telemetry.node import NodeFactory, no_node_samplers
from deepspark_core.results import STDOUT_FILE, TELEMETRY_FILE, ImageRef

OUT_MOUNT, DATA_MOUNT = Path("/ds/out"), Path("/ds/data")
CHECKPOINT_MOUNT = Path("/ds/in/checkpoint.pt")  # an infer run's weights, read-only
RUN_LABEL = "org.deepspark.run"  # on every container the agent starts, to find leftovers
POLL_S = 0.2
STOP_GRACE_S = 10  # SIGTERM, then SIGKILL: time for the workload to log run_stop


_CDI_KIND = re.compile(r'"?kind"?\s*:\s*"?([\w-]+(?:\.[\w-]+)+/[\w.-]+)')  # YAML or JSON


def cdi_kinds(client: docker.DockerClient) -> set[str] | None:
    """The device kinds (vendor.com/class) of the CDI specs the engine reads; None where the
    engine has no CDI (`docker info` lists no CDISpecDirs: before Docker 25, or disabled)."""
    try:
        dirs = client.info().get("CDISpecDirs") or []
    except DockerException:
        return None
    if not dirs:
        return None
    kinds: set[str] = set()
    for spec in (path for folder in dirs for path in sorted(Path(folder).glob("*"))):
        if spec.suffix in (".json", ".yaml", ".yml"):
            with contextlib.suppress(OSError):
                kinds.update(_CDI_KIND.findall(spec.read_text(errors="replace")))
    return kinds


def container_devices(
    placement: Placement, kinds: set[str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The container options and environment that pass a placement's devices in.

    NVIDIA: a GPU request (NVIDIA container toolkit). CDI names: those asked for (cdi:NAMES),
    or the vendor's own where the engine has its CDI spec (`kinds`). Otherwise the device nodes
    and control nodes, and the visible-devices variable numbering the devices as the container
    sees them (0..n-1).
    """
    if placement.cdi:
        return {"device_requests": [DeviceRequest(driver="cdi", device_ids=[*placement.cdi])]}, {}
    ids = [str(i) for i in placement.indices]
    if placement.vendor == "nvidia":
        request = DeviceRequest(driver="nvidia", device_ids=ids, capabilities=[["gpu"]])
        return {"device_requests": [request]}, {}
    vendor_kinds = (
        k for k in sorted(kinds or ()) if CDI_DOMAINS.get(k.split("/")[0]) == placement.vendor
    )
    kind = next(vendor_kinds, None)
    if kind and ids:
        names = [f"{kind}={i}" for i in ids]
        return {"device_requests": [DeviceRequest(driver="cdi", device_ids=names)]}, {}
    nodes = [*placement.nodes, *placement.control]
    devices = [f"{placement.dev / node}:{Path('/dev', node)}:rwm" for node in nodes]
    env = {}
    if placement.vendor and placement.nodes:
        env = visible_devices_env(placement.vendor, range(len(placement.nodes)))
    return ({"devices": devices} if devices else {}), env


def passes(options: dict[str, Any], env: dict[str, str]) -> str:
    """What container_devices passes, in words for the one line."""
    if "device_requests" in options:
        (request,) = options["device_requests"]
        ids = request["DeviceIDs"]
        if request["Driver"] == "nvidia":
            return f"docker --gpus device={span([int(i) for i in ids])}"
        return f"docker CDI {', '.join(ids)}"
    if "devices" not in options:
        return "docker: no devices"
    nodes = ", ".join(d.split(":")[1] for d in options["devices"])
    words = ", ".join(f"{k}={v}" for k, v in env.items())
    return f"docker {nodes}" + (f", {words}" if words else "")


def image_ref(client: docker.DockerClient, tag: str) -> ImageRef:
    """The local image for tag; a clear error, never an implicit pull, when it is missing."""
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        raise LaunchError(
            f"image {tag} is not present locally: `deepspark-agent images build` or "
            "`images pull` it (the agent never pulls implicitly)"
        ) from None
    return ImageRef(tag=tag, id=image.id, repo_digests=image.attrs.get("RepoDigests") or [])


class DockerRuntime:
    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient,
        placement: Placement = CPU,
        shm_size: str = "2g",
        mem_limit: str | None = None,
        accelerators: SamplerFactory = no_samplers,
        hz: float = DEFAULT_HZ,
        network: str | None = None,
        node: NodeFactory = no_node_samplers,
    ) -> None:
        self.client = client
        self.node = node  # the node's power sources, beside the accelerators'
        self.network = network  # for multi-node runs: "host", or a network the nodes share
        self.accelerators, self.hz = accelerators, hz
        self.placement = placement
        # Devices other than NVIDIA's GPU request go in as CDI names where the engine has specs.
        wants_cdi = placement.cdi or placement.vendor not in (None, "nvidia")
        self.cdi = cdi_kinds(client) if wants_cdi else None
        if placement.cdi and self.cdi is None:
            raise LaunchError(
                f"--devices cdi:{','.join(placement.cdi)}: this Docker engine has no CDI "
                "(Docker 25+ lists CDISpecDirs in `docker info`)"
            )
        self.shm_size, self.mem_limit = shm_size, mem_limit

    def run(self, launch: Launch, on_tick: Callable[[], None] = lambda: None) -> Outcome:
        image = image_ref(self.client, launch.image or launch.workload.image)
        volumes = {str(launch.out_dir): {"bind": str(OUT_MOUNT), "mode": "rw"}}
        if launch.data_dir:
            volumes[str(launch.data_dir)] = {"bind": str(DATA_MOUNT), "mode": "ro"}
        if launch.checkpoint:
            volumes[str(launch.checkpoint)] = {"bind": str(CHECKPOINT_MOUNT), "mode": "ro"}
        several = launch.spec.nproc > 1 or launch.cluster is not None
        if several and launch.image:
            raise LaunchError(f"image {launch.image} runs its own ENTRYPOINT: one rank, one node")
        devices, device_env = container_devices(self.placement.first(launch.spec.nproc), self.cdi)
        started = time.monotonic()
        try:
            container = self.client.containers.create(
                image.id,
                # One rank (and a vendor's image): the image's own ENTRYPOINT and CMD. Several:
                # torchrun, or the workload's launcher.
                entrypoint=argv(launch, "python3", OUT_MOUNT) if several else None,
                environment={
                    **launch.spec.env(
                        OUT_MOUNT,
                        DATA_MOUNT if launch.data_dir else None,
                        CHECKPOINT_MOUNT if launch.checkpoint else None,
                    ),
                    "PYTHONUNBUFFERED": "1",
                    **device_env,
                },
                volumes=volumes,
                **self._network(launch),
                ipc_mode="private",
                init=True,  # a real PID 1 that forwards SIGTERM and reaps zombies
                shm_size=self.shm_size,
                mem_limit=self.mem_limit,
                memswap_limit=self.mem_limit,  # no swap beyond the limit: a real OOM, not thrash
                labels={RUN_LABEL: str(launch.out_dir)},
                **devices,
            )
        except (APIError, DockerException) as exc:
            return Outcome(exit_code=None, wall_s=0.0, error=f"cannot create container: {exc}")
        try:
            return self._run(container, launch, image, started, on_tick)
        finally:
            _remove(container)

    def _network(self, launch: Launch) -> dict:
        """No network, but for a node of a multi-node run. On a user-defined network, node 0's
        container also answers to the master address, so the other nodes' containers find it
        by that name (on the host network the master address is node 0's host)."""
        if launch.cluster is None:
            return {"network_mode": "none"}
        if self.network is None:
            raise LaunchError("a multi-node run needs a network: host, or one the nodes share")
        if self.network == "host" or launch.cluster.node_rank != 0:
            return {"network": self.network}
        aliases = [launch.cluster.master_addr]
        config = {self.network: self.client.api.create_endpoint_config(aliases=aliases)}
        return {"network": self.network, "networking_config": config}

    def reap(self, run_dir: Path) -> None:
        """Remove the container an earlier, killed agent left running for run_dir."""
        label = f"{RUN_LABEL}={run_dir.resolve()}"
        for container in self.client.containers.list(all=True, filters={"label": label}):
            _remove(container)

    def _run(
        self,
        container: Container,
        launch: Launch,
        image: ImageRef,
        started: float,
        on_tick: Callable[[], None],
    ) -> Outcome:
        container.start()
        container.reload()
        logs = threading.Thread(
            target=_copy_logs, args=(container, launch.out_dir / STDOUT_FILE), daemon=True
        )
        logs.start()
        deadline = started + launch.spec.max_seconds
        timed_out = False
        # The container's processes are host processes: sample their tree like a local run's.
        pid = container.attrs["State"]["Pid"]  # 0 once the container has already exited
        samplers = [*_host_samplers(pid), *(self.accelerators(pid) if pid else []), *self.node()]
        with Recorder(samplers, launch.out_dir / TELEMETRY_FILE, self.hz):
            while container.status in ("created", "running"):
                if time.monotonic() > deadline:
                    container.stop(timeout=STOP_GRACE_S)
                    timed_out = True
                    break
                on_tick()
                time.sleep(POLL_S)
                container.reload()
        state = container.wait()
        logs.join(timeout=10)
        container.reload()
        error = None
        if timed_out:
            error = f"killed after {launch.spec.max_seconds:g} s budget"
        elif container.attrs["State"].get("OOMKilled"):
            error = f"killed for memory (out of memory, limit {self.mem_limit or 'none'})"
        return Outcome(
            exit_code=state.get("StatusCode"),
            wall_s=time.monotonic() - started,
            error=error,
            timed_out=timed_out,
            image=image,
        )


def _host_samplers(pid: int) -> list[Sampler]:
    """The container's cgroup, as `docker stats` sees it; its process tree where no cgroup
    can be found (the container's processes are host processes either way)."""
    if not pid:
        return []
    try:
        return [CgroupSampler(pid)]
    except (OSError, StopIteration, ValueError):
        return [ProcessTreeSampler(pid)]


def _copy_logs(container: Container, path: Path) -> None:
    with path.open("wb") as out:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            out.write(chunk)
            out.flush()


def _remove(container: Container) -> None:
    with contextlib.suppress(NotFound):  # already gone
        container.remove(force=True)
