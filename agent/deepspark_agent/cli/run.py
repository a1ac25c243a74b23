"""`deepspark-agent run`: one workload's run set and its six-dimension row."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.cli.options import (
    BmcCaOpt,
    BmcCredentialsOpt,
    CollectorOpt,
    DataDirOpt,
    DevicesOpt,
    HzOpt,
    IdleOpt,
    IpmiHostOpt,
    MemoryOpt,
    NodePowerOpt,
    OutOpt,
    RedfishOpt,
    RuntimeOpt,
    TelemetryOpt,
)
from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, err_console, user_errors
from deepspark_agent.evaluate import Output, run_model
from deepspark_agent.planning import Request
from deepspark_agent.progress import Bars
from deepspark_agent.runtime.choose import RuntimeChoice
from deepspark_agent.tables import print_result
from deepspark_agent.telemetry import DEFAULT_HZ
from deepspark_agent.telemetry.idle import DEFAULT_IDLE_S
from deepspark_agent.telemetry.node import NodePowerChoice
from deepspark_agent.workloads import find_workload
from deepspark_core.contract import Engine, Mode, Precision, Scenario
from deepspark_core.results import Result

ModelArg = Annotated[str, typer.Argument(help="Workload name, see `models list`.")]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        help="A vendor's contract-following image to measure for MODEL (its own "
        "ENTRYPOINT/CMD, one rank), instead of the workload's image; implies docker."
    ),
]


@user_errors
def run(
    model: ModelArg,
    config: Annotated[str, typer.Option(help="Preset: mini (CPU, minutes) or full.")] = "mini",
    mode: Annotated[
        Mode, typer.Option(help="speed: timed windows; converge: train; infer: inference.")
    ] = "speed",
    scenario: Annotated[
        Scenario,
        typer.Option(help="infer: offline (throughput at the batch) or latency (batch 1)."),
    ] = "offline",
    engine: Annotated[Engine, typer.Option(help="infer: eager, or torch.compile.")] = "eager",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="infer: weights (a converge run's checkpoint.pt); none: random."),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Runs, distinct seeds (5: stability).")] = 1,
    nproc: Annotated[int, typer.Option(min=1, help="Ranks; >1 adds a 1-rank baseline.")] = 1,
    seed: Annotated[int, typer.Option(help="First seed; run i uses seed + i.")] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Per-device batch.")] = None,
    precision: Annotated[Precision, typer.Option(help="fp32, amp or bf16.")] = "fp32",
    tolerance: Annotated[float, typer.Option(min=0, help="Stability band, +/-.")] = 0.01,
    windows: Annotated[int, typer.Option(min=1, help="Measured windows in speed mode.")] = 5,
    warmup_windows: Annotated[int, typer.Option(min=0, help="Windows discarded first.")] = 1,
    max_seconds: Annotated[float | None, typer.Option(min=1, help="Per-run budget.")] = None,
    data_dir: DataDirOpt = None,
    out: OutOpt = Path("runs"),
    workloads: WorkloadsOpt = None,
    image: ImageOpt = None,
    runtime: RuntimeOpt = "auto",
    devices: DevicesOpt = "auto",
    memory_limit: MemoryOpt = None,
    telemetry: TelemetryOpt = "auto",
    telemetry_hz: HzOpt = DEFAULT_HZ,
    node_power: NodePowerOpt = "auto",
    redfish: RedfishOpt = None,
    ipmi_host: IpmiHostOpt = None,
    bmc_credentials: BmcCredentialsOpt = None,
    bmc_ca: BmcCaOpt = None,
    idle_seconds: IdleOpt = DEFAULT_IDLE_S,
    collector: CollectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one workload and print its six-dimension row.

    Exit codes: 0 complete; 1 no run succeeded (or a user error); 3 incomplete (a run was
    killed at its time budget)."""
    request = Request(
        workload=find_workload(model, workloads or []), config=config, mode=mode, runs=runs,
        nproc=nproc, seed=seed, batch_size=batch_size, precision=precision, tolerance=tolerance,
        warmup_windows=warmup_windows, windows=windows, max_seconds=max_seconds,
        data_dir=data_dir, scenario=scenario, engine=engine, checkpoint=checkpoint,
    )  # fmt: skip
    node = NodePowerChoice(node_power, redfish, ipmi_host, bmc_credentials, bmc_ca)
    choice = RuntimeChoice(
        runtime, devices, memory_limit, telemetry, telemetry_hz, None, node, idle_s=idle_seconds
    )
    code = run_model(request, out, choice, image, _output(as_json), collector)
    raise typer.Exit(code)


def _output(as_json: bool) -> Output:
    """The run's result on stdout (JSON, or its tables); the rest on stderr under --json."""

    def show(result: Result) -> None:
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            print_result(result, console)

    live = err_console if as_json else console
    return Output(notes=err_console, live=live, show=show, progress=Bars(live))
