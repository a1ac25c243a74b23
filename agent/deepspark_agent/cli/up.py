"""`deepspark-agent up`: evaluate a suite (the evaluation service does the work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.batch import submit_evaluation
from deepspark_agent.cli.options import (
    BmcCaOpt,
    BmcCredentialsOpt,
    CollectorOpt,
    DataDirOpt,
    DevicesOpt,
    HzOpt,
    IdleOpt,
    IpmiHostOpt,
    NodePowerOpt,
    OutOpt,
    RedfishOpt,
    RuntimeOpt,
    TelemetryOpt,
)
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.evaluate import Evaluated, Output, UpRequest, evaluate, plan
from deepspark_agent.progress import Bars
from deepspark_agent.reproduce import ReproduceError, ReproduceRequest, reproduce, side_by_side
from deepspark_agent.runtime.choose import RuntimeChoice
from deepspark_agent.slurm import Executor, JobOptions
from deepspark_agent.suites import SuiteError
from deepspark_agent.tables import plan_table, print_result, result_tables
from deepspark_agent.telemetry import DEFAULT_HZ
from deepspark_agent.telemetry.idle import DEFAULT_IDLE_S
from deepspark_agent.telemetry.node import NodePowerChoice
from deepspark_core.runset import REPRODUCTION_MD

SuiteOpt = Annotated[
    str | None,
    typer.Option(help="Suite name (suites/NAME.toml) or path \\[default: smoke, or the bundle's]."),
]
ResumeOpt = Annotated[
    bool, typer.Option(help="Go on with the newest unfinished evaluation of the suite.")
]
RegistryOpt = Annotated[
    str | None, typer.Option(help="Pull each model's image from this registry first.")
]
OfflineOpt = Annotated[
    bool, typer.Option(help="Pull nothing: the images come from --bundle or are present.")
]
BundleOpt = Annotated[
    Path | None, typer.Option(help="An offline bundle: verify it, load its images, run its suite.")
]
NnodesOpt = Annotated[int, typer.Option(min=1, help="Nodes in the evaluation, one agent on each.")]
NodeRankOpt = Annotated[
    int, typer.Option(min=0, help="This node's rank; node 0 runs every run and reports.")
]
MasterAddrOpt = Annotated[str | None, typer.Option(help="Node 0's address, for multi-node runs.")]
MasterPortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Node 0's rendezvous port.")]
PlanOpt = Annotated[
    bool, typer.Option("--plan", help="Print the runs the suite would make here; run nothing.")
]
ExecutorOpt = Annotated[
    Executor | None,
    typer.Option(
        help="local: run here; slurm: submit an sbatch job, one agent per node, and follow it "
        "\\[default: local, or this node's place when srun started the agent].",
    ),
]
NodesOpt = Annotated[int, typer.Option(min=1, help="slurm: nodes to allocate, one agent on each.")]
PartitionOpt = Annotated[str | None, typer.Option(help="slurm: the partition to run in.")]
AccountOpt = Annotated[str | None, typer.Option(help="slurm: the account to charge.")]
TimeOpt = Annotated[
    str | None, typer.Option(help="slurm: the job's time limit (minutes, or [D-]HH:MM:SS).")
]
ContainerImageOpt = Annotated[
    str | None,
    typer.Option(
        help="slurm: run each node's agent in this image with pyxis (srun --container-image); "
        "without pyxis, the workloads run in their images through each node's Docker engine."
    ),
]
EvaluationOpt = Annotated[
    Path | None,
    typer.Option(
        help="The evaluation a Slurm job's agents work in (the sbatch script names it).",
    ),
]
ReproduceOpt = Annotated[
    str | None,
    typer.Option(
        help="Run a collector's published result again here and set it beside the original: "
        "http(s)://HOST/api/v1/results/ID or http(s)://HOST/results/ID.",
    ),
]
NetworkOpt = Annotated[
    str, typer.Option(help="Docker network of multi-node runs: host, or one the nodes share.")
]


@user_errors
def up(
    suite: SuiteOpt = None,
    out: OutOpt = Path("runs"),
    workloads: WorkloadsOpt = None,
    resume: ResumeOpt = False,
    registry: RegistryOpt = None,
    offline: OfflineOpt = False,
    bundle: BundleOpt = None,
    nnodes: NnodesOpt = 1,
    node_rank: NodeRankOpt = 0,
    master_addr: MasterAddrOpt = None,
    master_port: MasterPortOpt = 29500,
    network: NetworkOpt = "host",
    runtime: RuntimeOpt = "auto",
    devices: DevicesOpt = "auto",
    telemetry: TelemetryOpt = "auto",
    telemetry_hz: HzOpt = DEFAULT_HZ,
    node_power: NodePowerOpt = "auto",
    redfish: RedfishOpt = None,
    ipmi_host: IpmiHostOpt = None,
    bmc_credentials: BmcCredentialsOpt = None,
    bmc_ca: BmcCaOpt = None,
    idle_seconds: IdleOpt = DEFAULT_IDLE_S,
    collector: CollectorOpt = None,
    executor: ExecutorOpt = None,
    nodes: NodesOpt = 1,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    time: TimeOpt = None,
    container_image: ContainerImageOpt = None,
    evaluation: EvaluationOpt = None,
    reproduce: ReproduceOpt = None,
    data_dir: DataDirOpt = None,
    show_plan: PlanOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a suite: every model's six dimensions, reported, signed and submitted.

    Per model: speed at each scaling point (and across --nnodes nodes: node 0 reports), then
    converge runs. Exit codes: 0 every model complete; 1 a model with no successful run (or a
    user error); 3 incomplete (a run the budget killed or never started: stability not
    scored); 130 interrupted, or the Slurm job cancelled (`--resume` goes on)."""
    node = NodePowerChoice(node_power, redfish, ipmi_host, bmc_credentials, bmc_ca)
    request = UpRequest(
        suite=suite, out=out, workloads=tuple(workloads or []), resume=resume, registry=registry,
        offline=offline, bundle=bundle, nnodes=nnodes, node_rank=node_rank, evaluation=evaluation,
        master_addr=master_addr, master_port=master_port, collector=collector, executor=executor,
        runtime=RuntimeChoice(
            runtime, devices, None, telemetry, telemetry_hz, network, node, idle_s=idle_seconds
        ),
    )  # fmt: skip
    if reproduce or data_dir:
        _reproduce(request, reproduce, data_dir, as_json, show_plan or executor == "slurm")
    if show_plan:
        return _print_plan(request, as_json)
    job, output = JobOptions(nodes, partition, account, time, container_image), _output(as_json)
    slurm = executor == "slurm"
    done = submit_evaluation(request, job, output) if slurm else evaluate(request, output)
    _report(done, as_json, table=evaluation is None)


def _output(as_json: bool) -> Output:
    """The results' tables on stdout (nothing under --json: `_report` prints them); notes on
    stderr."""
    live = err_console if as_json else console
    show = (lambda _: None) if as_json else (lambda result: print_result(result, console))
    return Output(notes=err_console, live=live, show=show, progress=Bars(live))


def _report(done: Evaluated, as_json: bool, table: bool = True) -> None:
    """The evaluation's seed table (or its results as JSON), where it lies; its exit code.
    A job's agent (--evaluation: `up --executor slurm` wrote its script) leaves the table to
    the `up` that follows the job (table=False): relayed from the job too, it would show twice."""
    if not done.interrupted:
        results = [result for result, _ in done.models]
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
        elif results and table:
            console.print(*result_tables(results, done.root.name, console.width))
        err_console.print(f"evaluation: {done.root} (report.md, report.html)", highlight=False)
    raise typer.Exit(done.exit_code)


def _reproduce(
    request: UpRequest, url: str | None, data_dir: Path | None, as_json: bool, other: bool
) -> None:
    """`up --reproduce URL`: the published plan run here, then both side by side."""
    if url is None:
        raise SuiteError("--data-dir is for --reproduce: a suite's entries name their own")
    given = request.suite or request.resume or request.bundle or request.registry
    if given or other or request.offline or request.nnodes > 1 or request.evaluation:
        raise ReproduceError("--reproduce runs the published plan on this node: not with "
                             "--suite, --resume, --bundle, --registry, --offline, --plan, "
                             "--nnodes, --executor slurm or --evaluation")  # fmt: skip
    asked = ReproduceRequest(
        url=url, out=request.out, workloads=request.workloads, runtime=request.runtime,
        collector=request.collector, data_dir=data_dir,
    )  # fmt: skip
    done = reproduce(asked, _output(as_json))
    text = side_by_side(done.published, done.result, done.run_set, done.notes)
    if as_json:
        print(json.dumps(done.as_dict(), indent=2))
    else:
        console.print(text, markup=False, highlight=False)
    err_console.print(f"reproduction: {done.run_set} ({REPRODUCTION_MD})", highlight=False)
    raise typer.Exit(done.exit_code)


def _print_plan(request: UpRequest, as_json: bool) -> None:
    name, node_devices, models = plan(request)
    rows = [m.describe() for m in models]
    if as_json:
        print(json.dumps({"suite": name, "node_devices": node_devices, "models": rows}, indent=2))
    else:
        title = f"{name}: the plan on this node ({node_devices} device(s)); nothing runs"
        console.print(plan_table(title, rows))
