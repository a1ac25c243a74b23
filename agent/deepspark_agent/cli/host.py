"""`deepspark-agent doctor`, `devices` and `models list`: what this host has and can run."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from deepspark_agent.console import JsonOpt, WorkloadsOpt, console, user_errors
from deepspark_agent.devices import describe_system
from deepspark_agent.doctor import node_power_checks, run_checks
from deepspark_agent.workloads import list_workloads

models_app = typer.Typer(help="The workloads this agent can run.", no_args_is_help=True)


@user_errors
def doctor(workloads: WorkloadsOpt = None, as_json: JsonOpt = False) -> None:
    """Check what this host has for running workloads: one line per check."""
    checks = [*run_checks(workloads or []), *node_power_checks()]
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


@user_errors
def devices(as_json: JsonOpt = False) -> None:
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
    for check in node_power_checks():
        console.print(f"{check.name}: {check.detail}", highlight=False)


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
        configs = ", ".join(
            f"{n} ({p.target:g}{'' if p.target_validated else ' unvalidated'}, bs {p.batch_size})"
            for n, p in w.configs.items()
        )
        metric = f"{w.quality.metric} ({w.quality.direction})"
        origin = "reference" if w.reference else f"vendor ({w.path})"
        table.add_row(w.name, w.model, w.framework, origin, w.task, metric, configs)
    console.print(table)
