"""`deepspark-agent`: the host agent's command line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from deepspark_agent import __version__, evaluations
from deepspark_agent.cli_images import bundle_app, images_app, import_offline
from deepspark_agent.cli_signing import ensure_key, keys_app, sign_if_keyed, verify
from deepspark_agent.cli_submit import CollectorOpt, pack_command, submit_after_run, submit_command
from deepspark_agent.console import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    JsonOpt,
    WorkloadsOpt,
    console,
    err_console,
    user_errors,
)
from deepspark_agent.devices import describe_system
from deepspark_agent.doctor import run_checks
from deepspark_agent.images import ImageError, engine
from deepspark_agent.images import pull as pull_image
from deepspark_agent.runner import Request, execute, run_plan, run_set_dir
from deepspark_agent.runtime.base import Cluster, LaunchError, Runtime
from deepspark_agent.runtime.docker import DockerRuntime, image_ref
from deepspark_agent.runtime.process import ProcessRuntime
from deepspark_agent.suites import Suite, SuiteError, load_suite
from deepspark_agent.tables import print_result, suite_table
from deepspark_agent.telemetry import DEFAULT_HZ
from deepspark_agent.telemetry.choose import accelerator_samplers
from deepspark_agent.workloads import Workload, find_workload, list_workloads
from deepspark_core.assess import assess
from deepspark_core.contract import Mode, Precision
from deepspark_core.files import write_atomic
from deepspark_core.report import (
    html_report,
    html_suite_report,
    markdown_table,
)
from deepspark_core.results import RUN_FILE, Result, RunPlan, RunRecord, read_model
from deepspark_core.runset import REPORT_HTML, REPORT_MD

app = typer.Typer(
    help="DeepSpark Bench host agent: run training workloads, measure six dimensions.",
    no_args_is_help=True,
    add_completion=False,
)
models_app = typer.Typer(help="The workloads this agent can run.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(images_app, name="images")
app.add_typer(bundle_app, name="bundle")
app.add_typer(keys_app, name="keys")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Where run directories are created.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"deepspark-agent {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """DeepSpark Bench host agent."""


@app.command()
@user_errors
def doctor(workloads: WorkloadsOpt = None, as_json: JsonOpt = False) -> None:
    """Check what this host has for running workloads: one line per check."""
    checks = run_checks(workloads or [])
    if as_json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        colors = {"ok": "green", "warn": "yellow", "missing": "red"}
        for c in checks:
            mark = f"[{colors[c.status]}]{c.status:>7}[/]"
            # A detail is plain text ("pip install 'deepspark[workloads]'"), never markup.
            console.print(f"{mark}  {escape(c.name)}: {escape(c.detail)}", highlight=False)
    if any(c.required and c.status != "ok" for c in checks):
        raise typer.Exit(1)


@app.command("devices")
@user_errors
def devices_(as_json: JsonOpt = False) -> None:
    """The accelerators and the host: the system description stored with every result."""
    system = describe_system()
    if as_json:
        print(system.model_dump_json(indent=2))
        return
    table = Table("device", "vendor", "model", "memory (GB)", "driver", "sdk", "bus id", "via")
    for a in system.accelerators:
        memory = f"{a.memory_bytes / 1e9:.1f}" if a.memory_bytes else ""
        table.add_row(
            str(a.index), a.vendor, a.name or "", memory, a.driver_version or "",
            a.sdk_version or "", a.bus_id or "", a.source,
        )  # fmt: skip
    if system.accelerators:
        console.print(table)
    else:
        console.print("accelerators: none found (CPU only)")
    for key, value in system.host.model_dump(exclude_none=True).items():
        console.print(f"{key}: {value}", highlight=False)
    console.print(f"docker: {system.docker_version or 'no engine answers'}", highlight=False)


@models_app.command("list")
@user_errors
def models_list(workloads: WorkloadsOpt = None, as_json: JsonOpt = False) -> None:
    """List the workloads: the DeepSpark model each implements, in which framework, whose
    implementation it is (the project's reference, or a vendor's added folder), its quality
    target and configs."""
    catalog = list_workloads(workloads or [])
    if as_json:
        print(json.dumps([w.model_dump(mode="json") for w in catalog], indent=2))
        return
    table = Table(
        "workload", "model", "framework", "implementation", "task", "metric",
        "configs (target, batch)",
    )  # fmt: skip
    for w in catalog:
        configs = ", ".join(f"{n} ({p.target:g}, bs {p.batch_size})" for n, p in w.configs.items())
        metric = f"{w.quality.metric} ({w.quality.direction})"
        origin = "reference" if w.reference else f"vendor ({w.path})"
        table.add_row(w.name, w.model, w.framework, origin, w.task, metric, configs)
    console.print(table)


RuntimeName = Literal["auto", "docker", "process"]
RuntimeOpt = Annotated[
    RuntimeName,
    typer.Option(
        help="docker: the workload's image; process: a local process; auto: docker when an "
        "engine answers and the images are present, else process."
    ),
]
DevicesOpt = Annotated[
    str,
    typer.Option(help="Docker: accelerators: none, nvidia[:IDS], cdi:NAMES or /dev/A,/dev/B."),
]
TelemetryOpt = Annotated[
    str, typer.Option(help="Accelerator telemetry: auto, nvml, smi:<tool> (nvidia-smi, ...), none.")
]
HzOpt = Annotated[float, typer.Option(min=0.1, max=1000, help="Telemetry samples per second.")]
MemoryOpt = Annotated[
    str | None, typer.Option(help="Docker: container memory limit, e.g. 8g (OOM is reported).")
]


def choose_runtime(
    name: RuntimeName,
    workloads: list[Workload],
    devices: str,
    memory_limit: str | None,
    telemetry: str,
    hz: float,
    network: str | None = None,
) -> Runtime:
    """The runtime asked for; `auto` says in one line which it took and why."""
    sensors, accelerators = accelerator_samplers(telemetry)
    err_console.print(f"accelerator telemetry: {sensors}, {hz:g} Hz", highlight=False)
    docker_options = {
        "mem_limit": memory_limit, "accelerators": accelerators, "hz": hz, "network": network
    }  # fmt: skip
    if name == "process":
        return ProcessRuntime(accelerators, hz)
    if name == "docker":
        return DockerRuntime(engine(), devices, **docker_options)
    try:
        client = engine()
    except ImageError as exc:
        err_console.print(f"runtime: process ({exc})", highlight=False)
        return ProcessRuntime(accelerators, hz)
    present = {tag for image in client.images.list(name="deepspark/*") for tag in image.tags}
    missing = [w.image for w in workloads if w.image not in present]
    if missing:
        err_console.print(
            f"runtime: process (image {missing[0]} is not present; `images build` or "
            "`images pull` it to run in containers)",
            highlight=False,
        )
        return ProcessRuntime(accelerators, hz)
    err_console.print("runtime: docker", highlight=False)
    return DockerRuntime(client, devices, **docker_options)


def _finish(run_set: Path, result: Result, as_json: bool, collector: str | None) -> None:
    """The run set's Markdown row, signature and submission; where it lies."""
    out = err_console if as_json else console
    (run_set / REPORT_MD).write_text(markdown_table([result]) + "\n")
    (run_set / REPORT_HTML).write_text(html_report(result, run_set))
    sign_if_keyed(run_set, result, out)
    if collector:
        submit_after_run(run_set, collector, out)
    out.print(f"run directory: {run_set}", highlight=False)


@app.command()
@user_errors
def run(
    model: Annotated[str, typer.Argument(help="Workload name, see `models list`.")],
    config: Annotated[str, typer.Option(help="Preset: mini (CPU, minutes) or full.")] = "mini",
    mode: Annotated[Mode, typer.Option(help="speed: timed windows; converge: train.")] = "speed",
    runs: Annotated[int, typer.Option(min=1, help="Runs, distinct seeds (5: stability).")] = 1,
    nproc: Annotated[int, typer.Option(min=1, help="Ranks; >1 adds a 1-rank baseline.")] = 1,
    seed: Annotated[int, typer.Option(help="First seed; run i uses seed + i.")] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Per-device batch.")] = None,
    precision: Annotated[Precision, typer.Option(help="fp32, amp or bf16.")] = "fp32",
    tolerance: Annotated[float, typer.Option(min=0, help="Stability band, +/-.")] = 0.01,
    windows: Annotated[int, typer.Option(min=1, help="Measured windows in speed mode.")] = 5,
    warmup_windows: Annotated[int, typer.Option(min=0, help="Windows discarded first.")] = 1,
    max_seconds: Annotated[float | None, typer.Option(min=1, help="Per-run budget.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset directory (full configs).")] = None,
    out: OutOpt = Path("runs"),
    workloads: WorkloadsOpt = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="A vendor's contract-following image to measure for MODEL (its own "
            "ENTRYPOINT/CMD, one rank), instead of the workload's image; implies docker."
        ),
    ] = None,
    runtime: RuntimeOpt = "auto",
    devices: DevicesOpt = "none",
    memory_limit: MemoryOpt = None,
    telemetry: TelemetryOpt = "auto",
    telemetry_hz: HzOpt = DEFAULT_HZ,
    collector: CollectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one workload and print its six-dimension row.

    Exit codes: 0 complete; 1 no run succeeded (or a user error); 3 incomplete (a run was
    killed at its time budget)."""
    workload = find_workload(model, workloads or [])
    workload.preset(config)  # fail before any run on an unknown preset
    vendor_image = None
    if image:  # measured for the catalog's model: its presets, metric and target
        if runtime == "process" or nproc > 1:
            raise LaunchError("--image runs the image's own ENTRYPOINT as one rank in docker")
        runtime, vendor_image = "docker", image_ref(engine(), image)
    request = Request(
        workload=workload, config=config, mode=mode, runs=runs, nproc=nproc,
        seed=seed, batch_size=batch_size, precision=precision, tolerance=tolerance,
        warmup_windows=warmup_windows, windows=windows, max_seconds=max_seconds,
        data_dir=data_dir, image=vendor_image,
    )  # fmt: skip
    chosen = choose_runtime(
        runtime, [request.workload], devices, memory_limit, telemetry, telemetry_hz
    )
    run_set = run_set_dir(out, request)
    result = execute(request, run_set, err_console if as_json else console, chosen)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        print_result(result, console)
    _finish(run_set, result, as_json, collector)
    _exit([result.state == "complete"], [any(r.status == "success" for r in result.runs)])


def _exit(complete: list[bool], succeeded: list[bool]) -> None:
    """run's and up's exit code: a model with no successful run first, then an incomplete one."""
    if not all(succeeded):
        raise typer.Exit(EXIT_FAILED)
    if not all(complete):
        raise typer.Exit(EXIT_INCOMPLETE)


@app.command()
@user_errors
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run set (`run`, one model of `up`) or an `up` evaluation.")
    ],
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report with plots here.")
    ] = None,
) -> None:
    """Recompute the six dimensions from the raw artifacts and print them.

    One run set's (`run`, or one model of `up`), or every model's of an `up` evaluation."""
    if not (run_dir / evaluations.EVALUATION_FILE).is_file():
        result = assess(run_dir)
        if html:
            write_atomic(html, html_report(result, run_dir).encode())
        elif as_json:
            print(result.model_dump_json(indent=2))
        elif markdown:
            print(markdown_table([result]))
        else:
            print_result(result, console)
    else:
        models = [(assess(run_set), run_set) for run_set in evaluations.run_sets(run_dir)]
        results = [result for result, _ in models]
        if html:
            write_atomic(html, html_suite_report(run_dir.name, models).encode())
        elif as_json:
            print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
        elif markdown:
            print(markdown_table(results))
        else:
            console.print(suite_table(results, run_dir.name, console.width))
    if html:
        console.print(f"report: {html}", highlight=False)


@app.command()
@user_errors
def up(
    suite: Annotated[
        str | None,
        typer.Option(
            help="Suite name (suites/NAME.toml) or path [default: smoke, or the bundle's]."
        ),
    ] = None,
    out: OutOpt = Path("runs"),
    workloads: WorkloadsOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Go on with the newest unfinished evaluation of the suite.")
    ] = False,
    registry: Annotated[
        str | None, typer.Option(help="Pull each model's image from this registry first.")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Pull nothing: the images come from --bundle or are present.")
    ] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(help="An offline bundle: verify it, load its images, run its suite."),
    ] = None,
    nnodes: Annotated[
        int, typer.Option(min=1, help="Nodes in the evaluation, one agent on each.")
    ] = 1,
    node_rank: Annotated[
        int, typer.Option(min=0, help="This node's rank; node 0 runs every run and reports.")
    ] = 0,
    master_addr: Annotated[
        str | None, typer.Option(help="Node 0's address, for multi-node runs.")
    ] = None,
    master_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Node 0's rendezvous port.")
    ] = 29500,
    network: Annotated[
        str, typer.Option(help="Docker network of multi-node runs: host, or one the nodes share.")
    ] = "host",
    runtime: RuntimeOpt = "auto",
    devices: DevicesOpt = "none",
    telemetry: TelemetryOpt = "auto",
    telemetry_hz: HzOpt = DEFAULT_HZ,
    collector: CollectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a suite: every model's six dimensions, reported, signed and submitted.

    Per model: speed at each scaling point (and across --nnodes nodes), then converge runs for
    accuracy and stability. On nodes 1.. only the multi-node runs; node 0 reports.

    Exit codes: 0 every model complete; 1 a model with no successful run (or a user error);
    3 incomplete: the budget killed or never started some run (stability is then not
    scored); 130 interrupted (`--resume` goes on)."""
    if registry and (offline or bundle):
        raise SuiteError("--registry pulls images; --offline and --bundle never do: pick one")
    cluster = _cluster(nnodes, node_rank, master_addr, master_port)
    spec = _load_bundle(bundle, suite) if bundle else load_suite(suite or "smoke")
    if resume:  # the suite as it was evaluated, not as its file may read now
        root, evaluation = evaluations.resume(out, spec.name)
        spec, node_devices = evaluation.suite, evaluation.node_devices
        if evaluation.nnodes != nnodes:
            raise SuiteError(f"--resume: {root} is an evaluation on {evaluation.nnodes} node(s)")
    else:
        found = len(describe_system().accelerators) if devices != "none" else 1
        node_devices = max(1, found)
    entries = spec.resolve(workloads or [])  # fail fast on a typo
    for entry, workload in entries:
        workload.preset(entry.config)
        entry.scaling(node_devices)
    _preflight(workloads or [])
    if node_rank == 0:
        ensure_key(err_console)
    if registry:
        _pull_images(registry, [w for _, w in entries])
    if registry or offline or bundle:
        runtime = "docker" if runtime == "auto" else runtime  # the images were the point
    if not resume:
        root, evaluation = evaluations.start(out, spec, node_devices, nnodes)
    chosen = choose_runtime(
        runtime, [w for _, w in entries], devices, None, telemetry, telemetry_hz, network
    )
    err_console.print(f"evaluation: {root}", highlight=False)
    live = err_console if as_json else console
    models: list[tuple[Result, Path]] = []  # node 0's results, with their run sets
    outcomes: list[evaluations.ModelOutcome] = []
    try:
        for index, (entry, workload) in enumerate(entries):
            node = entry.scaling(evaluation.node_devices)[-1]
            request = Request(
                workload=workload, config=entry.config, nproc=node, precision=entry.precision,
                batch_size=entry.batch_size, tolerance=entry.tolerance, windows=entry.windows,
                warmup_windows=entry.warmup_windows, budget_s=entry.budget_s,
                data_dir=entry.data_dir, cluster=cluster,
            )  # fmt: skip
            run_set = evaluations.run_set_path(root, index, workload.name, entry.config)
            runs = entry.planned_runs(evaluation.node_devices, evaluation.nnodes)
            if node_rank > 0:  # a helper node: its share of the multi-node runs; node 0 reports
                plan = run_plan(request, run_set, live, chosen, [r for r in runs if r.nnodes > 1])
                succeeded = complete = _report_node_runs(run_set, plan, node_rank)
            else:
                result = execute(request, run_set, live, chosen, runs)
                if not as_json:
                    print_result(result, console)
                _finish(run_set, result, as_json, collector)
                models.append((result, run_set))
                succeeded = any(r.status == "success" for r in result.runs)
                complete = result.state == "complete"
            outcome = evaluations.ModelOutcome(
                model=workload.name, run_set=run_set.name, succeeded=succeeded, complete=complete
            )
            outcomes.append(outcome)
    except KeyboardInterrupt:  # the runtime has stopped the running workload on its way out
        err_console.print(
            f"interrupted: finished runs are recorded in {root}; "
            "`up --resume` (same --suite and --out) goes on from there",
            highlight=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    results = [result for result, _ in models]
    if results:  # node 0: the evaluation's own reports, all models side by side
        (root / "report.md").write_text(markdown_table(results) + "\n")
        (root / "report.html").write_text(html_suite_report(root.name, models))
    evaluations.finish(root, outcomes)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    elif results:
        console.print(suite_table(results, root.name, console.width))
    err_console.print(f"evaluation: {root} (report.md, report.html)", highlight=False)
    _exit([o.complete for o in outcomes], [o.succeeded for o in outcomes])


def _cluster(nnodes: int, node_rank: int, master_addr: str | None, port: int) -> Cluster | None:
    """This node's place in a multi-node evaluation; None on one node."""
    if node_rank >= nnodes:
        raise SuiteError(f"--node-rank {node_rank}: ranks of {nnodes} node(s) are 0..{nnodes - 1}")
    if nnodes == 1:
        return None
    if not master_addr:
        raise SuiteError(f"--nnodes {nnodes} needs --master-addr, node 0's address")
    return Cluster(nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, master_port=port)


def _preflight(workloads: list[Path]) -> None:
    """up's doctor step: one line of what this host has; stop where a required part is missing."""
    checks = run_checks(workloads)
    err_console.print(
        "doctor: " + ", ".join(f"{c.name} {c.status}" for c in checks), highlight=False
    )
    for check in checks:
        if check.required and check.status != "ok":
            raise LaunchError(f"doctor: {check.name}: {check.detail}")


def _report_node_runs(run_set: Path, plan: RunPlan, node_rank: int) -> bool:
    """A helper node's line per run (its exit); whether they all exited 0."""
    ok = True
    for planned in plan.runs:
        record = read_model(run_set / planned.label / RUN_FILE, RunRecord)
        ok &= record.exit_code == 0
        how = record.error or f"exit {record.exit_code}"
        err_console.print(f"node {node_rank}: {plan.model} {planned.label}: {how}", highlight=False)
    return ok


def _load_bundle(path: Path, suite: str | None) -> Suite:
    """Verify and load an offline bundle's images; its suite, unless one is named."""
    with tempfile.TemporaryDirectory(prefix="deepspark-suite-") as tmp:
        kept = Path(tmp) / "suite.toml"
        import_offline(path, err_console, suite_to=kept)
        # The bundle's data_dir entries are relative to where the bundle lies.
        return load_suite(suite) if suite else load_suite(str(kept), base=path.parent)


def _pull_images(registry: str, workloads: list[Workload]) -> None:
    client = engine()
    for workload in {w.name: w for w in workloads}.values():
        ref = pull_image(client, workload, registry)
        err_console.print(f"pulled {ref.tag} {ref.id}", highlight=False)


app.command("verify")(verify)  # defined with the signing commands
app.command("submit")(submit_command)
app.command("pack")(pack_command)
