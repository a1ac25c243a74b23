"""The evaluation service: `up`'s suite and `run`'s single model, measured, reported, signed,
submitted, and the exit code their outcomes give.

`up` on node 0 runs each model's whole plan and reports; on nodes 1.. (helper nodes) only
the multi-node runs, one line per run. Planning itself is `planning`'s; executing a plan
is `runner`'s; this module strings them together and says what happened.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from deepspark_agent import evaluations, nodes, planning, slurm
from deepspark_agent.bundle import import_offline
from deepspark_agent.devices import describe_system
from deepspark_agent.doctor import run_checks
from deepspark_agent.evaluations import EVALUATION_FILE, Evaluation, ModelOutcome
from deepspark_agent.exits import EXIT_INTERRUPTED, exit_code
from deepspark_agent.fit import check_data_dir, check_fit
from deepspark_agent.images import engine, pull
from deepspark_agent.placement import Placement, resolve
from deepspark_agent.planning import Request
from deepspark_agent.publish import ensure_key, publish
from deepspark_agent.runner import RunProgress, execute, run_plan, run_set_dir
from deepspark_agent.runtime.base import Cluster, LaunchError, Runtime
from deepspark_agent.runtime.choose import RuntimeChoice, choose_runtime
from deepspark_agent.runtime.docker import image_ref
from deepspark_agent.slurm import Place
from deepspark_agent.suites import Suite, SuiteEntry, SuiteError, load_suite
from deepspark_agent.telemetry.idle import idle_samplers, record_idle
from deepspark_agent.workloads import Workload
from deepspark_core.files import write_atomic
from deepspark_core.report import html_suite_report, markdown_table
from deepspark_core.results import IDLE_FILE, RUN_FILE, PlannedRun, Result, RunRecord, read_model
from deepspark_core.system import SystemDescription


@dataclass(frozen=True)
class Output:
    """Where the service speaks: notes (stderr), live (progress and each model's lines),
    show (each model's result once assessed), progress (the runner's listener)."""

    notes: Console
    live: Console
    show: Callable[[Result], None]
    progress: RunProgress


@dataclass(frozen=True)
class UpRequest:
    """`up` as asked: the suite, where it goes, the images, this node, the runtime."""

    suite: str | None = None  # default: smoke, or the bundle's
    out: Path = Path("runs")
    workloads: tuple[Path, ...] = ()
    resume: bool = False
    registry: str | None = None
    offline: bool = False
    bundle: Path | None = None
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = 29500
    runtime: RuntimeChoice = field(default_factory=RuntimeChoice)
    collector: str | None = None
    executor: str | None = None  # local, slurm; None: a Slurm job step's agent finds its place
    evaluation: Path | None = None  # a Slurm job's agents: the evaluation they work in


@dataclass(frozen=True)
class Evaluated:
    """An evaluation's end: its directory, node 0's results with their run sets, the code."""

    root: Path
    models: list[tuple[Result, Path]]
    exit_code: int

    @property
    def interrupted(self) -> bool:
        return self.exit_code == EXIT_INTERRUPTED


def measure(
    request: Request,
    run_set: Path,
    runtime: Runtime,
    runs: list[PlannedRun],
    output: Output,
    collector: str | None,
    attach: Sequence[Path] = (),
    idle: Path | None = None,
) -> tuple[Result, ModelOutcome]:
    """One model's run set on node 0: executed, shown, reported, signed, submitted.
    attach: files copied into its `slurm/` folder first, signed with it (the batch scripts);
    idle: the idle floor recorded before the first run, which a new run set gets a copy of."""
    result = execute(request, run_set, output.progress, runtime, runs, idle)
    output.show(result)
    for path in attach:
        (run_set / "slurm").mkdir(exist_ok=True)
        shutil.copyfile(path, run_set / "slurm" / path.name)
    publish(run_set, result, output.live, collector)
    outcome = ModelOutcome(
        model=request.workload.name, run_set=run_set.name, complete=result.state == "complete",
        succeeded=any(r.status == "success" for r in result.runs),
    )  # fmt: skip
    return result, outcome


def run_model(
    request: Request,
    out: Path,
    choice: RuntimeChoice,
    image: str | None,
    output: Output,
    collector: str | None,
) -> int:
    """`run`: one workload's run set (a vendor's image for it, if given); the exit code."""
    if request.mode == "infer" and request.nproc > 1:
        raise LaunchError(f"--nproc {request.nproc}: an infer run measures one device")
    placement = resolve(choice.devices)
    request, runtime = model_runtime(request, {request.mode}, choice, placement, image, output)
    run_set = run_set_dir(out, request)
    with tempfile.TemporaryDirectory(prefix="deepspark-idle-") as tmp:
        idle = measure_idle(Path(tmp) / IDLE_FILE, choice, runtime, output.notes)
        runs = planning.single_runs(request)
        _, outcome = measure(request, run_set, runtime, runs, output, collector, idle=idle)
    return exit_code([outcome])


def model_runtime(
    request: Request,
    modes: set[str],
    choice: RuntimeChoice,
    placement: Placement,
    image: str | None,
    output: Output,
) -> tuple[Request, Runtime]:
    """One model's checks before any run (`run`'s, a reproduction's) and its runtime; with
    `image`, a vendor's image measured for the catalog's model (its presets, metric, target)."""
    if image:
        if choice.name == "process" or request.nproc > 1:
            raise LaunchError("--image runs the image's own ENTRYPOINT as one rank in docker")
        request = dataclasses.replace(request, image=image_ref(engine(), image))
        choice = dataclasses.replace(choice, name="docker")
    _can_run(request, modes, placement, describe_system())  # before any run
    if placement.count and request.nproc > placement.count:
        raise LaunchError(
            f"--nproc {request.nproc}: this node has {placement.found()} (see --devices)"
        )
    return request, choose_runtime(choice, [request.workload], output.notes, placement)


def measure_idle(
    path: Path, choice: RuntimeChoice, runtime: Runtime, notes: Console
) -> Path | None:
    """The idle floor into path before the first run (`--idle-seconds`), path kept when it
    is there (an evaluation resumed); None when not measured (0 s)."""
    if path.is_file():
        return path
    if not choice.idle_s:
        notes.print("idle floor: not measured (--idle-seconds 0)", highlight=False)
        return None
    samplers = idle_samplers(runtime.accelerators, runtime.node)
    notes.print(record_idle(path, samplers, choice.idle_s, choice.hz), highlight=False)
    return path


def evaluate(req: UpRequest, output: Output) -> Evaluated:
    """`up`: every model of the suite in one evaluation directory, then its reports."""
    if req.registry and (req.offline or req.bundle):
        raise SuiteError("--registry pulls images; --offline and --bundle never do: pick one")
    place = _slurm_place(req)
    if place:  # one of a Slurm job's agents: its place from Slurm, nothing typed by hand
        master = slurm.node_addr(place.hosts[0])
        req = dataclasses.replace(
            req, nnodes=place.nnodes, node_rank=place.node_rank, master_addr=master,
            master_port=place.master_port,
        )  # fmt: skip
    cluster = node_cluster(req)
    root, evaluation, entries, runtime, peers = _prepare(req, output.notes, place)
    if cluster and peers:
        cluster = dataclasses.replace(cluster, peers=peers)
    output.notes.print(f"evaluation: {root}", highlight=False)
    scripts = sorted((root / "slurm").glob("*.sbatch")) if place else []
    idle = None
    if req.node_rank == 0:  # node 0 measures: a helper's node power at idle is not recorded
        idle = measure_idle(root / IDLE_FILE, req.runtime, runtime, output.notes)
    models: list[tuple[Result, Path]] = []  # node 0's results, with their run sets
    outcomes: list[ModelOutcome] = []
    try:
        with _sigterm_interrupts():
            for index, (entry, workload) in enumerate(entries):
                request = planning.suite_request(entry, workload, evaluation.node_devices, cluster)
                runs = planning.suite_runs(entry, evaluation.node_devices, evaluation.nnodes)
                run_set = evaluations.run_set_path(root, index, workload.name, entry.config)
                if req.node_rank > 0:  # a helper node: its share of the multi-node runs
                    outcomes += _helper_node(request, run_set, runtime, runs, output, peers)
                    continue
                result, outcome = measure(
                    request, run_set, runtime, runs, output, req.collector, scripts, idle
                )
                models.append((result, run_set))
                outcomes.append(outcome)
    except KeyboardInterrupt:  # the runtime has stopped the running workload on its way out
        output.notes.print(
            f"interrupted: finished runs are recorded in {root}; "
            "`up --resume` (same --suite and --out) goes on from there",
            highlight=False,
        )
        return Evaluated(root, models, EXIT_INTERRUPTED)
    if models:  # node 0: the evaluation's own reports, all models side by side
        results = [result for result, _ in models]
        write_atomic(root / "report.md", (markdown_table(results) + "\n").encode())
        write_atomic(root / "report.html", html_suite_report(root.name, models).encode())
    if req.node_rank == 0 or not peers:  # a shared evaluation is node 0's to finish
        evaluations.finish(root, outcomes)
    return Evaluated(root, models, exit_code(outcomes))


def _slurm_place(req: UpRequest) -> Place | None:
    """This agent's place in a Slurm job step, unless told otherwise (--executor local, or
    the multi-node options typed by hand)."""
    typed = req.nnodes > 1 or req.node_rank > 0 or req.master_addr
    place = None if req.executor == "local" or typed else slurm.here()
    if req.evaluation and place is None:
        raise SuiteError("--evaluation is for the agents of a Slurm job (srun starts them)")
    return place


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (scancel, a batch system's stop) ends the evaluation as Ctrl-C does: the
    runtime stops the running workload, and what was recorded is resumable."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class PlannedModel:
    """One suite entry as `up` would run it on this node: its workload and its runs."""

    entry: SuiteEntry
    workload: Workload
    runs: list[PlannedRun]

    def describe(self) -> dict[str, Any]:
        """The entry's settings, its preset's batch where it sets none, and its runs."""
        entry = self.entry
        return {
            "workload": self.workload.name,
            "config": entry.config,
            "precision": entry.precision,
            "batch_size": entry.batch_size or self.workload.preset(entry.config).batch_size,
            "budget_s": entry.budget_s,
            "data_dir": str(entry.data_dir) if entry.data_dir else None,
            "runs": [run.model_dump() for run in self.runs],
        }


def plan(req: UpRequest) -> tuple[str, int, list[PlannedModel]]:
    """`up --plan`: the suite's name, this node's devices and each model's runs, as `up`
    would plan them; nothing runs and nothing is written."""
    if req.bundle or req.resume:
        raise SuiteError("--plan reads a suite file: not with --bundle or --resume")
    spec = load_suite(req.suite or "smoke")
    node_devices = max(1, resolve(req.runtime.devices).count)  # as `up` sizes the node
    models = []
    for entry, workload in spec.resolve(req.workloads):
        workload.preset(entry.config)  # an unknown config fails here, as in `up`
        runs = planning.suite_runs(entry, node_devices, req.nnodes)
        models.append(PlannedModel(entry, workload, runs))
    return spec.name, node_devices, models


def node_cluster(req: UpRequest) -> Cluster | None:
    """This node's place in a multi-node evaluation; None on one node."""
    nnodes, node_rank = req.nnodes, req.node_rank
    if node_rank >= nnodes:
        raise SuiteError(f"--node-rank {node_rank}: ranks of {nnodes} node(s) are 0..{nnodes - 1}")
    if nnodes == 1:
        return None
    if not req.master_addr:
        raise SuiteError(f"--nnodes {nnodes} needs --master-addr, node 0's address")
    return Cluster(
        nnodes=nnodes, node_rank=node_rank, master_addr=req.master_addr, master_port=req.master_port
    )


Entries = list[tuple[SuiteEntry, Workload]]


def _prepare(
    req: UpRequest, notes: Console, place: Place | None
) -> tuple[Path, Evaluation, Entries, Runtime, Path | None]:
    """Everything checked before the first run: the suite (from a bundle, a file, or the
    evaluation resumed), the host, the key, the images; then the evaluation's directory
    (new, or the one resumed), the runtime, and a Slurm job's folder of the nodes' shares."""
    if req.bundle:
        spec = _load_bundle(req.bundle, req.suite, notes)
    else:
        spec = load_suite(req.suite or "smoke")
    root = peers = None
    if place:  # every node sees one directory: each checks in, node 0 sees them all
        root = _job_root(req, spec.name, place)
        peers = nodes.join(root, place)
        resumed = _in_job(root, place)
    else:
        resumed = _resumed(req, spec.name) if req.resume else None
    if resumed and resumed[1].nnodes != req.nnodes:
        raise SuiteError(f"{resumed[0]} is an evaluation on {resumed[1].nnodes} node(s)")
    placement = resolve(req.runtime.devices)
    if resumed:  # the suite as it was evaluated, not as its file may read now
        spec, node_devices = resumed[1].suite, resumed[1].node_devices
    else:  # every device found: scaling points `all` mean this many
        node_devices = max(1, placement.count)
    entries = spec.resolve(req.workloads)  # fail fast on a typo
    system = describe_system()  # probed once: each model's fit is checked against it
    for entry, workload in entries:
        request = planning.suite_request(entry, workload, node_devices, None)
        modes = {r.mode for r in planning.suite_runs(entry, node_devices)}
        _can_run(request, modes, placement, system)
    _preflight(req.workloads, notes, placement, local_ranks=req.runtime.name != "docker")
    if req.node_rank == 0:
        ensure_key(notes)
    if req.registry:
        _pull_images(req.registry, [w for _, w in entries], notes)
    choice = req.runtime
    if (req.registry or req.offline or req.bundle) and choice.name == "auto":
        choice = dataclasses.replace(choice, name="docker")  # the images were the point
    root, evaluation = resumed or evaluations.start(
        req.out, spec, node_devices, req.nnodes, path=root
    )
    runtime = choose_runtime(choice, [w for _, w in entries], notes, placement)
    return root, evaluation, entries, runtime, peers


EVALUATION_WAIT_S = 600.0  # a helper node's wait for node 0's checks and evaluation.json


def _job_root(req: UpRequest, suite_name: str, place: Place) -> Path:
    """A Slurm job's evaluation: the one its script names, the one resumed, or one named
    after the job (node 0 makes it)."""
    if req.evaluation:
        return req.evaluation.resolve()
    if req.resume:
        return evaluations.resume(req.out, suite_name)[0]
    root = (req.out / f"{suite_name}-job{place.job_id}").resolve()
    if place.node_rank == 0:
        root.mkdir(parents=True, exist_ok=True)
    return root


def _in_job(root: Path, place: Place) -> tuple[Path, Evaluation] | None:
    """The evaluation a job goes on with; None where node 0 starts it (a helper waits)."""
    path = root / EVALUATION_FILE
    if place.node_rank > 0 and not nodes.wait_for(path.is_file, EVALUATION_WAIT_S):
        raise nodes.SharedDirError(
            f"node {place.node_rank} ({place.host}): node 0 wrote no {path} in "
            f"{EVALUATION_WAIT_S:g} s"
        )
    return (root, evaluations.load(root)) if path.is_file() else None


def _can_run(
    request: Request, modes: set[str], placement: Placement, system: SystemDescription
) -> None:
    """The workload runs these modes, its preset exists, fits one device's memory and, for
    converge runs, has its dataset."""
    for mode in sorted(modes):
        request.workload.check_mode(mode)
    preset = request.workload.preset(request.config)
    name = f"{request.workload.name} {request.config}"
    check_fit(name, preset, request.batch_size, system, placement)
    if "converge" in modes:
        check_data_dir(name, preset, request.data_dir)
    if request.checkpoint is not None and not request.checkpoint.is_file():
        raise LaunchError(f"{name}: checkpoint {request.checkpoint} is not a file")


def _resumed(req: UpRequest, suite_name: str) -> tuple[Path, Evaluation]:
    return evaluations.resume(req.out, suite_name)


def _helper_node(
    request: Request,
    run_set: Path,
    runtime: Runtime,
    runs: list[PlannedRun],
    output: Output,
    peers: Path | None,
) -> list[ModelOutcome]:
    """A helper node's share of a model: its multi-node runs, a line per run (its exit).
    On a shared filesystem, those node 0 has not recorded, in this job's folder for the node."""
    node_rank = request.cluster.node_rank if request.cluster else 0
    runs = [r for r in runs if r.nnodes > 1]
    if peers:
        runs = [r for r in runs if not (run_set / r.label / RUN_FILE).is_file()]
        run_set = nodes.helper_set(peers, node_rank, run_set.name)
    if not runs:
        return []
    plan = run_plan(request, run_set, output.progress, runtime, runs)
    ok = True
    for planned in plan.runs:
        record = read_model(run_set / planned.label / RUN_FILE, RunRecord)
        ok &= record.exit_code == 0
        how = record.error or f"exit {record.exit_code}"
        output.notes.print(
            f"node {node_rank}: {plan.model} {planned.label}: {how}", highlight=False
        )
    return [ModelOutcome(model=plan.model, run_set=run_set.name, succeeded=ok, complete=ok)]


def _preflight(
    workloads: tuple[Path, ...], notes: Console, placement: Placement, local_ranks: bool
) -> None:
    """up's doctor step: one line of what this host has; stop where a required part is missing.
    The host's framework matters to local ranks only: an image brings its own."""
    checks = run_checks(workloads, placement, local_ranks)
    notes.print("doctor: " + ", ".join(f"{c.name} {c.status}" for c in checks), highlight=False)
    for check in checks:
        if check.required and check.status != "ok":
            raise LaunchError(f"doctor: {check.name}: {check.detail}")


def _load_bundle(path: Path, suite: str | None, notes: Console) -> Suite:
    """Verify and load an offline bundle's images; its suite, unless one is named."""
    with tempfile.TemporaryDirectory(prefix="deepspark-suite-") as tmp:
        kept = Path(tmp) / "suite.toml"
        import_offline(path, notes, notes, suite_to=kept)
        # The bundle's data_dir entries are relative to where the bundle lies.
        return load_suite(suite) if suite else load_suite(str(kept), base=path.parent)


def _pull_images(registry: str, workloads: list[Workload], notes: Console) -> None:
    client = engine()
    for workload in {w.name: w for w in workloads}.values():
        ref = pull(client, workload, registry)
        notes.print(f"pulled {ref.tag} {ref.id}", highlight=False)
