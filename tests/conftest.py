from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from resource import RLIMIT_NOFILE, setrlimit
from types import ModuleType

import docker
import httpx
import pytest
from collector_load import postgres_schema
from docker.errors import DockerException, ImageNotFound
from typer.testing import CliRunner

from deepspark_agent import placement
from deepspark_agent.cli import app
from deepspark_agent.images import DEFAULT_BASE, default_base
from deepspark_agent.placement import Roots
from deepspark_agent.telemetry import DEFAULT_HZ, ipmi, rapl
from deepspark_agent.workloads import WORKLOADS_ENV, Workload
from deepspark_core.datasets import CACHE_ENV
from deepspark_core.events import read_events
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result
from deepspark_core.signing import PUBLIC_KEY_NAME, default_key_dir

DATA = Path(__file__).parent / "data"
ROOTFS_IMAGE = "deepspark/rootfs:bookworm"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test that uses the Docker engine is marked `docker`, as it is collected:
    scripts/test runs the others on every core (pytest-xdist) and then these one after
    another, since they share images, tags and the registries, and some stop or remove
    what others would use."""
    if "docker_client" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.docker)
    if "slurm_cluster" in getattr(item, "fixturenames", ()):  # one cluster: jobs would queue
        item.add_marker(pytest.mark.slurm)


@pytest.fixture(autouse=True)
def own_config_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own config directory: no test signs with, or finds, a real key."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own cache (datasets verified before): none sees another's, or the host's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


@pytest.fixture(autouse=True)
def no_host_devices(tmp_path_factory, monkeypatch) -> Roots:
    """`--devices auto` sees an empty device tree and no NVML: no test depends on this host's
    accelerators. A test that wants devices points placement.HOST at its own tree."""
    root = tmp_path_factory.mktemp("host")
    roots = Roots(dev=root / "dev", sysfs=root / "sys", proc=root / "proc")
    monkeypatch.setattr(placement, "HOST", roots)
    monkeypatch.setattr(placement, "nvidia_accelerators", lambda: [])
    monkeypatch.setattr(placement, "run_tool", lambda command: None)
    # Nor on its node power: no powercap tree, no in-band BMC (a test names its own).
    monkeypatch.setenv(rapl.ROOT_ENV, str(root / "powercap"))
    monkeypatch.setattr(ipmi, "DEV", roots.dev)
    return roots


@pytest.fixture(autouse=True)
def short_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` and `up` sample the idle floor 1 s, not 30, before their first run (only where
    a power source answers: with none there is nothing to wait for)."""
    monkeypatch.setenv("DEEPSPARK_IDLE_SECONDS", "1")


@pytest.fixture
def sleeper(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Add the test workloads (the framework-free `sleeper`, `contract_only`) to the catalog."""
    root = DATA / "workloads"
    monkeypatch.setenv(WORKLOADS_ENV, str(root))
    return root


def fake_smi_tool(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`nvidia-smi` in bin_dir, first on PATH: fake_smi.py replaying FAKE_SMI_FILES."""
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\nexec {sys.executable} {DATA / "fake_smi.py"} "$@"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return tool


def twin_workloads(root: Path) -> Path:
    """A workloads folder at root where `sleeper` (framework "none") has a twin,
    `sleeper_twin`, that implements the same model in framework "twin"."""
    for name in ("sleeper", "sleeper_twin"):
        shutil.copytree(DATA / "workloads" / "sleeper", root / name)
    toml = root / "sleeper_twin" / "workload.toml"
    text = toml.read_text().replace('name = "sleeper"', 'name = "sleeper_twin"\nmodel = "sleeper"')
    toml.write_text(text.replace('framework = "none"', 'framework = "twin"'))
    return root


@pytest.fixture
def sleeper_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Test workloads added to the catalog, `sleeper` and its twin (`twin_workloads`)."""
    root = twin_workloads(tmp_path / "workloads")
    monkeypatch.setenv(WORKLOADS_ENV, str(root))
    return root


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    return invoke


# --- a signed run set, made once per test session -------------------------------------------


@dataclass(frozen=True)
class SignedOnce:
    """The session's signed run set, its result and the key directory that signed it."""

    run_set: Path
    result: Result
    key_dir: Path


@pytest.fixture(scope="session")
def signed_once(tmp_path_factory: pytest.TempPathFactory) -> SignedOnce:
    """A sleeper run set (2 converge runs, process runtime) signed by a fresh key: each run
    takes seconds, so the tests that only read, tamper with or submit one share this and get
    their own copy (`signed`). Never use it directly: tests change their run sets."""
    config = tmp_path_factory.mktemp("signed-once-config")
    out = tmp_path_factory.mktemp("signed-once-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(config))
        patch.setenv(WORKLOADS_ENV, str(DATA / "workloads"))
        assert invoke("keys", "init")[0] == 0
        code, stdout, err = invoke(
            "run", "sleeper", "--runtime", "process", "--mode", "converge", "--runs", "2",
            "--out", str(out), "--json",
        )  # fmt: skip
        key_dir = default_key_dir()
    assert code == 0 and "signed:" in err, err
    (run_set,) = out.iterdir()
    return SignedOnce(run_set, Result.model_validate_json(stdout), key_dir)


@pytest.fixture
def signed(signed_once: SignedOnce, own_config_dir: Path, tmp_path: Path) -> tuple[Path, Result]:
    """This test's own copy of the session's signed run set, and its result; the key that
    signed it becomes this test's signing key (what `keys init` then `run` would leave)."""
    shutil.copytree(signed_once.key_dir, default_key_dir())
    run_set = tmp_path / "runs" / signed_once.run_set.name
    shutil.copytree(signed_once.run_set, run_set)
    return run_set, signed_once.result.model_copy(deep=True)


@pytest.fixture
def run_set(signed: tuple[Path, Result]) -> Path:
    return signed[0]


@pytest.fixture
def bundle(run_set: Path, tmp_path: Path) -> bytes:
    """The test's signed run set packed as a result bundle."""
    return pack_run_set(run_set, tmp_path / "result.tar").read_bytes()


def require(module: str) -> ModuleType:
    """Import a package the tests need: a missing one fails in CI (scripts/setup installs it),
    and elsewhere skips the module that needs it with the reason."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is missing: scripts/setup installs it"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def _docker_unavailable(reason: str) -> None:
    """CI must have Docker: fail there; elsewhere skip with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs scripts/test, which starts the engine)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        _docker_unavailable(f"no Docker engine answers: {exc}")
    return client


@pytest.fixture(scope="session")
def slurm_cluster() -> list[str]:
    """The idle nodes of the Slurm cluster scripts/slurm-env starts (CI must have it)."""
    try:
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-t", "idle,mixed", "-o", "%N"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        nodes, why = [], str(exc)
    else:
        why = f"{len(nodes)} idle node(s)"
    if len(nodes) < 2:
        reason = f"no Slurm cluster of 2 nodes answers ({why}): run scripts/slurm-env"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return nodes


@pytest.fixture
def leftovers(docker_client, tmp_path: Path) -> Callable[[], list]:
    """This test's run containers still on the engine: those labelled with a run directory
    under its tmp_path (another agent's runs may share the engine)."""
    from deepspark_agent.runtime.docker import RUN_LABEL

    def find() -> list:
        mine = str(tmp_path.resolve())
        containers = docker_client.containers.list(all=True, filters={"label": RUN_LABEL})
        return [c for c in containers if c.labels[RUN_LABEL].startswith(mine)]

    return find


def _built(client, image: str, command: str) -> str:
    """`image` if the engine has it; else the test needs `command` run first."""
    try:
        client.images.get(image)
    except ImageNotFound:
        _docker_unavailable(f"{image} is not built: run {command}")
    return image


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The CPU base every PyTorch workload image builds FROM (scripts/build-base-image)."""
    return _built(docker_client, DEFAULT_BASE, "scripts/build-base-image")


@pytest.fixture(scope="session")
def rootfs_image(docker_client) -> str:
    """The Debian rootfs the base images and the collector's build FROM (build-base-image)."""
    return _built(docker_client, ROOTFS_IMAGE, "scripts/build-base-image")


@pytest.fixture(scope="session")
def framework_base(docker_client) -> Callable[[Workload], str]:
    """The CPU base a workload's image builds FROM, its framework's (images.default_base):
    deepspark/base:<flavor>, built by scripts/build-base-image [<flavor>]."""

    def base(workload: Workload) -> str:
        image = default_base(workload)
        flavor = image.partition(":")[2]
        flavor = "" if flavor == "cpu" else f" {flavor}"
        return _built(docker_client, image, f"scripts/build-base-image{flavor}")

    return base


@pytest.fixture(scope="session")
def registries() -> dict[str, str]:
    """Addresses and test credentials of the local registries that scripts/docker-env starts."""
    env_file = Path(__file__).parents[1] / ".docker-env"
    if not env_file.is_file():
        _docker_unavailable(f"{env_file} missing: run scripts/docker-env")
    return dict(line.split("=", 1) for line in env_file.read_text().split() if "=" in line)


def assert_telemetry_covers_the_run(run_dir: Path, scope: str) -> None:
    """The run's telemetry of `scope` starts before its first measured window and lasts to
    its end: what power and memory are computed over.

    The warm-up windows need not be covered: a container's sampler starts once the engine
    says the container runs, which on a loaded host can be after the workload's first window
    began (0.34 s seen in CI). "To its end" is within one 10 Hz period: nothing can be
    sampled of a process that has exited, and a workload exits milliseconds after its last
    window.
    """
    warmup = json.loads((run_dir.parent / "plan.json").read_text())["warmup_windows"]
    windows = read_events(run_dir / "mllog.log").windows()[warmup:]
    times = [
        row["t_ns"]
        for row in map(json.loads, (run_dir / "telemetry.jsonl").read_text().splitlines())
        if row["scope"] == scope
    ]
    period_ns = 1e9 / DEFAULT_HZ
    assert min(times) <= windows[0].start_ns
    assert max(times) >= windows[-1].stop_ns - period_ns


# --- a real collector --------------------------------------------------------------------

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def await_collector(url: str, running: Callable[[], bool], seconds: float = 30) -> httpx.Response:
    """The first answer of the collector at `url` to GET /api/v1/results, while `running()`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(f"{url}/api/v1/results", timeout=1)
        except httpx.TransportError:
            assert running() and time.monotonic() < deadline, f"no collector answers at {url}"
            time.sleep(0.2)


def emptied(folder: Path, seconds: float = 10) -> bool:
    """Whether `folder` is empty within `seconds`: the collector removes a submission's spool
    folder in the background, after answering."""
    deadline = time.monotonic() + seconds
    while any(folder.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class ServedCollector:
    """`deepspark-collector serve` (uvicorn) in a subprocess, stoppable and restartable on
    one port and data directory; `bin_dir` is the folder of its executable (default: this
    interpreter's), `options` more of serve's options, `nofile` its open-files limit (soft
    and hard). Its output goes to `log`, beside the data directory."""

    def __init__(
        self,
        data: Path,
        bin_dir: Path | None = None,
        options: tuple[str, ...] = (),
        nofile: int | None = None,
    ) -> None:
        self.data = data
        self.exe = (bin_dir or Path(sys.executable).parent) / "deepspark-collector"
        self.options = options  # more `serve` options (--workers N, limits)
        self.nofile = nofile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.with_name(f"{data.name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServedCollector:
        env = {**os.environ, "DEEPSPARK_COLLECTOR_ADMIN_TOKEN": TOKEN}
        nofile = self.nofile
        limit = None if nofile is None else lambda: setrlimit(RLIMIT_NOFILE, (nofile, nofile))
        command = [self.exe, "serve", "--port", str(self.port), "--data-dir", str(self.data)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = self.process = subprocess.Popen(
                [*command, *self.options],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        await_collector(self.url, lambda: process.poll() is None)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def register(self, vendor: str = "acme") -> None:
        """The vendor and this test's signing key, through the admin API."""
        api = f"{self.url}/api/v1"
        assert httpx.post(f"{api}/vendors", json={"name": vendor}, headers=ADMIN).is_success
        pem = (default_key_dir() / PUBLIC_KEY_NAME).read_text()
        body = {"vendor": vendor, "public_key_pem": pem}
        assert httpx.post(f"{api}/keys", json=body, headers=ADMIN).is_success

    def results(self) -> list[dict]:
        """Every stored result, page after page."""
        listed, url = [], f"{self.url}/api/v1/results"
        params: dict[str, int] | None = {"limit": 1000}
        while url:
            answer = httpx.get(url, params=params)
            listed += answer.json()
            url, params = answer.links.get("next", {}).get("url"), None
        return listed


POSTGRES_ENV_FILE = Path(__file__).parents[1] / ".postgres-env"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL of the `deepspark` database (scripts/postgres-env; CI must have it) whose
    connections see only a schema of this test's own, empty, what a fresh database would be:
    tests on several xdist workers share the server, never a schema."""
    if not POSTGRES_ENV_FILE.is_file():
        reason = f"{POSTGRES_ENV_FILE} missing: run scripts/postgres-env"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    base = dict(line.split("=", 1) for line in POSTGRES_ENV_FILE.read_text().split())[
        "DS_TEST_POSTGRES_URL"
    ]
    with postgres_schema(base, "test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each test that takes it runs twice: on the collector's default database (None: SQLite
    in its data directory) and on PostgreSQL (`postgres_url`)."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
