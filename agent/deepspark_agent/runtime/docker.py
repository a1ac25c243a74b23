"""The Docker runtime: a workload image run through the Docker SDK (never the CLI).

The container gets the contract's environment, the run directory mounted at /ds/out, the data
directory read-only at /ds/data, no network (workloads must not download anything) unless
it is one node of a multi-node run (then the network the nodes share), a large
/dev/shm for data loaders, and the accelerators it is given. The agent kills it at the
deadline, reads whether the kernel killed it for memory, keeps its logs in stdout.log, and
always removes it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

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
from deepspark_core.results import STDOUT_FILE, TELEMETRY_FILE, ImageRef

OUT_MOUNT, DATA_MOUNT = Path("/ds/out"), Path("/ds/data")
RUN_LABEL = "org.deepspark.run"  # on every container the agent starts, to find leftovers
POLL_S = 0.2
STOP_GRACE_S = 10  # SIGTERM, then SIGKILL: time for the workload to log run_stop


def device_options(devices: str) -> dict:
    """Container options that pass accelerators through, from `--devices`.

    none | nvidia | nvidia:0,1 (NVIDIA container toolkit) | cdi:NAME[,NAME] (CDI device names,
    e.g. cdi:nvidia.com/gpu=all) | /dev/a,/dev/b (explicit nodes, for other vendors' devices).
    """
    if devices == "none":
        return {}
    if devices == "nvidia" or devices.startswith("nvidia:"):
        ids = devices.partition(":")[2]
        request = DeviceRequest(
            driver="nvidia",
            count=0 if ids else -1,  # -1: all GPUs
            device_ids=ids.split(",") if ids else None,
            capabilities=[["gpu"]],
        )
        return {"device_requests": [request]}
    if devices.startswith("cdi:"):
        names = devices.removeprefix("cdi:").split(",")
        return {"device_requests": [DeviceRequest(driver="cdi", device_ids=names)]}
    if devices.startswith("/dev/"):
        return {"devices": [f"{node}:{node}:rwm" for node in devices.split(",")]}
    raise LaunchError(f"--devices {devices!r}: expected none, nvidia[:IDS], cdi:NAMES or /dev/...")


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
        devices: str = "none",
        shm_size: str = "2g",
        mem_limit: str | None = None,
        accelerators: SamplerFactory = no_samplers,
        hz: float = DEFAULT_HZ,
        network: str | None = None,
    ) -> None:
        self.client = client
        self.network = network  # for multi-node runs: "host", or a network the nodes share
        self.accelerators, self.hz = accelerators, hz
        self.devices = device_options(devices)
        self.shm_size, self.mem_limit = shm_size, mem_limit

    def run(self, launch: Launch, on_tick: Callable[[], None] = lambda: None) -> Outcome:
        image = image_ref(self.client, launch.image or launch.workload.image)
        volumes = {str(launch.out_dir): {"bind": str(OUT_MOUNT), "mode": "rw"}}
        if launch.data_dir:
            volumes[str(launch.data_dir)] = {"bind": str(DATA_MOUNT), "mode": "ro"}
        several = launch.spec.nproc > 1 or launch.cluster is not None
        if several and launch.image:
            raise LaunchError(f"image {launch.image} runs its own ENTRYPOINT: one rank, one node")
        started = time.monotonic()
        try:
            container = self.client.containers.create(
                image.id,
                # One rank (and a vendor's image): the image's own ENTRYPOINT and CMD. Several:
                # torchrun, or the workload's launcher.
                entrypoint=argv(launch, "python3", OUT_MOUNT) if several else None,
                environment={
                    **launch.spec.env(OUT_MOUNT, DATA_MOUNT if launch.data_dir else None),
                    "PYTHONUNBUFFERED": "1",
                },
                volumes=volumes,
                **self._network(launch),
                ipc_mode="private",
                init=True,  # a real PID 1 that forwards SIGTERM and reaps zombies
                shm_size=self.shm_size,
                mem_limit=self.mem_limit,
                memswap_limit=self.mem_limit,  # no swap beyond the limit: a real OOM, not thrash
                labels={RUN_LABEL: str(launch.out_dir)},
                **self.devices,
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
        samplers = [*_host_samplers(pid), *(self.accelerators(pid) if pid else [])]
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
