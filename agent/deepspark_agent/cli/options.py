"""Options that several commands share (`--json` and `--workloads`: `console`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepspark_agent.runtime.choose import RuntimeName

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Where run directories are created.")]
RuntimeOpt = Annotated[
    RuntimeName,
    typer.Option(
        help="docker: the workload's image; process: a local process; auto: docker when an "
        "engine answers and the images are present, else process."
    ),
]
DevicesOpt = Annotated[
    str,
    typer.Option(
        help="Accelerators: auto (every one found), none (CPU), VENDOR[:IDS] (nvidia:0,1, "
        "ascend, amd...), cdi:NAMES or /dev/A,/dev/B."
    ),
]
TelemetryOpt = Annotated[
    str, typer.Option(help="Accelerator telemetry: auto, nvml, smi:<tool> (nvidia-smi, ...), none.")
]
HzOpt = Annotated[float, typer.Option(min=0.1, max=1000, help="Telemetry samples per second.")]
MemoryOpt = Annotated[
    str | None, typer.Option(help="Docker: container memory limit, e.g. 8g (OOM is reported).")
]
CollectorOpt = Annotated[
    str | None,
    typer.Option("--collector", help="Collector URL: submit the signed result after the run."),
]
DataDirOpt = Annotated[Path | None, typer.Option(help="Dataset directory (full configs).")]
NodePowerOpt = Annotated[
    str,
    typer.Option(
        help="Node power: auto (every local source that answers: RAPL, ipmitool in-band; a "
        "remote BMC only when named), none, or a list of rapl, ipmi, redfish."
    ),
]
RedfishOpt = Annotated[
    str | None, typer.Option(help="The BMC's Redfish service (https://HOST): node power.")
]
IpmiHostOpt = Annotated[
    str | None, typer.Option(help="A remote BMC for ipmitool (-I lanplus): node power.")
]
BmcCredentialsOpt = Annotated[
    Path | None,
    typer.Option(help="The BMC's user and password (two lines), a file of mode 0600."),
]
BmcCaOpt = Annotated[
    Path | None, typer.Option(help="The CA of the BMC's TLS certificate (else the system's).")
]
IdleOpt = Annotated[
    float,
    typer.Option(
        "--idle-seconds",
        min=0,
        envvar="DEEPSPARK_IDLE_SECONDS",
        help="Before the first run, sample every power source this long with nothing running "
        "(the idle floor); 0: not measured.",
    ),
]
