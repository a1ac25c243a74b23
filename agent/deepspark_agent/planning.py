"""All planning: which runs a run set holds, and the plan.json that records them.

`run` plans N runs of one mode (distinct seeds) plus a 1-rank baseline; `up` plans, per
suite entry, a speed run at each scaling point (and across the nodes), then the converge
runs at the node's scale; an inference entry (one with scenarios) its converge runs, then an
infer run per scenario and engine on one device, loading the first converge run's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deepspark_agent import __version__
from deepspark_agent.devices import describe_system
from deepspark_agent.runtime.base import Cluster
from deepspark_agent.suites import SuiteEntry, SuiteError
from deepspark_agent.workloads import Workload, folder_digest
from deepspark_core.contract import Engine, Mode, Precision, Scenario
from deepspark_core.results import (
    ImageRef,
    Implementation,
    PlannedRun,
    QualityTarget,
    Reproduces,
    RunPlan,
)

BASELINE_LABEL = "baseline-1x"


@dataclass(frozen=True)
class Request:
    """A `run` as the user asked for it; presets fill what is left unset."""

    workload: Workload
    config: str = "mini"
    mode: Mode = "converge"
    runs: int = 1
    nproc: int = 1
    seed: int = 0
    batch_size: int | None = None
    precision: Precision = "fp32"
    tolerance: float = 0.01
    warmup_windows: int = 1
    windows: int = 5
    max_seconds: float | None = None  # each run's; None: the preset's
    budget_s: float | None = None  # all of the run set's runs together
    data_dir: Path | None = None
    cluster: Cluster | None = None  # this node's place in the plan's multi-node runs
    image: ImageRef | None = None  # a vendor's image, run instead of the workload's own
    scenario: Scenario = "offline"  # infer mode's
    engine: Engine = "eager"  # infer mode's
    checkpoint: Path | None = None  # the weights infer runs load where no run of the set wrote any
    reproduces: Reproduces | None = None  # the published result this run set reproduces


def single_runs(req: Request) -> list[PlannedRun]:
    """`run`'s runs: distinct seeds at nproc, then a 1-rank baseline for card linearity."""
    infer = {"scenario": req.scenario, "engine": req.engine} if req.mode == "infer" else {}
    runs = [
        PlannedRun(label=f"run-{i + 1}", mode=req.mode, seed=req.seed + i, nproc=req.nproc, **infer)
        for i in range(req.runs)
    ]
    if req.nproc > 1:
        runs.append(PlannedRun(label=BASELINE_LABEL, mode=req.mode, seed=req.seed, nproc=1))
    return runs


def scaling(entry: SuiteEntry, node_devices: int) -> list[int]:
    """A suite entry's scaling points on one node, in devices, smallest first."""
    points = sorted({node_devices if p == "all" else p for p in entry.devices})
    if points[-1] > node_devices:
        raise SuiteError(
            f"{entry.model}: devices {points[-1]} asked, this node has {node_devices} "
            '(devices = [1, "all"] takes what the node has)'
        )
    return points


def suite_runs(
    entry: SuiteEntry, node_devices: int, nnodes: int = 1, seed: int = 0
) -> list[PlannedRun]:
    """A suite entry's runs: speed at each scaling point (and at nnodes nodes), then the
    converge runs at the node's scale with distinct seeds. An inference entry: its converge
    runs, then an infer run per scenario and engine on one device (the figures are one
    device's), each loading the first converge run's checkpoint (none: the entry's own file,
    else random weights)."""
    points = scaling(entry, node_devices)
    node = points[-1]
    runs = []
    if not entry.scenarios:
        runs += [PlannedRun(label=f"speed-{n}x", mode="speed", seed=seed, nproc=n) for n in points]
    if nnodes > 1 and not entry.scenarios:
        label = f"speed-{node}x-{nnodes}n"
        runs.append(PlannedRun(label=label, mode="speed", seed=seed, nproc=node, nnodes=nnodes))
    runs += [
        PlannedRun(label=f"converge-{i + 1}", mode="converge", seed=seed + i, nproc=node)
        for i in range(entry.stability_runs)
    ]
    trained = "converge-1" if entry.stability_runs else None
    runs += [
        PlannedRun(
            label=f"infer-{scenario}-{engine}",
            mode="infer",
            seed=seed,
            nproc=1,
            scenario=scenario,
            engine=engine,
            checkpoint_from=trained,
        )
        for scenario in entry.scenarios
        for engine in entry.engines
    ]
    return runs


def suite_request(
    entry: SuiteEntry, workload: Workload, node_devices: int, cluster: Cluster | None
) -> Request:
    """A suite entry's model as one run set at the node's scale (its runs: `suite_runs`)."""
    return Request(
        workload=workload, config=entry.config, nproc=scaling(entry, node_devices)[-1],
        precision=entry.precision, batch_size=entry.batch_size, tolerance=entry.tolerance,
        windows=entry.windows, warmup_windows=entry.warmup_windows, budget_s=entry.budget_s,
        data_dir=entry.data_dir, cluster=cluster, checkpoint=entry.checkpoint,
    )  # fmt: skip


def implementation(req: Request) -> Implementation:
    """What the plan measures: a vendor's image, or a workload folder pinned by its digest."""
    if req.image:
        return Implementation(
            origin="vendor",
            kind="image",
            source=req.image.tag,
            digest=req.image.id,
            repo_digests=req.image.repo_digests,
        )
    workload = req.workload
    return Implementation(
        origin="reference" if workload.reference else "vendor", kind="folder",
        source=str(workload.path), digest=folder_digest(workload.path),
    )  # fmt: skip


def make_plan(req: Request, runtime: str, runs: list[PlannedRun]) -> RunPlan:
    """The plan.json of a new run set: the request, its runs, the system it runs on."""
    preset = req.workload.preset(req.config)
    reference = preset.reference_convergence
    return RunPlan(
        agent_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=req.workload.name,
        implements=req.workload.model,
        # A vendor's image declares no framework: its `framework` event says which it ran.
        framework=None if req.image else req.workload.framework,
        implementation=implementation(req),
        task=req.workload.task,
        config=req.config,
        variant=preset.variant or None,
        precision=req.precision,
        batch_size=req.batch_size or preset.batch_size,
        nproc=req.nproc,
        nnodes=max(r.nnodes for r in runs),
        runs=runs,
        warmup_windows=req.warmup_windows,
        windows=req.windows,
        tolerance=req.tolerance,
        runtime=runtime,
        quality=QualityTarget(
            metric=req.workload.quality.metric,
            direction=req.workload.quality.direction,
            target=preset.target,
            source=preset.target_source,
            validated=preset.target_validated,
            reference_epochs=reference.epochs if reference else None,
            reference_batch=reference.global_batch if reference else None,
        ),
        system=describe_system(),
        reproduces=req.reproduces,
    )
