"""`up --executor slurm`: an evaluation as one Slurm job, one agent per node.

Here, on the host that submits: the suite checked, the evaluation's directory made (or the
unfinished one found, `--resume`), its sbatch script written into `slurm/job-<n>.sbatch`
(node 0 signs it with each run set), the job submitted and followed (its state and nodes,
the agents' output as it grows: node 0's progress), then its results read back from the
directory as node 0 left them. Ctrl-C cancels the job; what was recorded is resumable.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from deepspark_agent import evaluations, slurm
from deepspark_agent.evaluate import Evaluated, Output, UpRequest
from deepspark_agent.evaluations import SUMMARY_FILE, Summary
from deepspark_agent.exits import EXIT_FAILED, EXIT_INTERRUPTED, exit_code
from deepspark_agent.slurm import JobOptions, JobState, SlurmError
from deepspark_agent.suites import SuiteError, load_suite
from deepspark_agent.telemetry.node import local_sources
from deepspark_core.files import read_json, stamped_path
from deepspark_core.results import RESULT_FILE, Result, read_model

POLL_S = 2.0


def submit_evaluation(req: UpRequest, job: JobOptions, output: Output) -> Evaluated:
    """Write the evaluation's sbatch script, submit it, follow the job to its end."""
    if req.bundle or req.registry or req.offline:
        raise SuiteError("--executor slurm: the nodes use their own images; not with --bundle, "
                         "--registry or --offline")  # fmt: skip
    if req.nnodes > 1 or req.node_rank or req.master_addr:
        raise SuiteError("--executor slurm: Slurm gives each node its place; --nodes N, not "
                         "--nnodes, --node-rank or --master-addr")  # fmt: skip
    spec = load_suite(req.suite or "smoke")
    spec.resolve(req.workloads)  # a typo fails here, not on the cluster
    if req.resume:
        root, evaluation = evaluations.resume(req.out, spec.name)
        if evaluation.nnodes != job.nodes:
            raise SuiteError(f"--resume: {root} is an evaluation on {evaluation.nnodes} node(s)")
    else:
        root = stamped_path(req.out, spec.name).resolve()
    path, log = _write_script(req, job, root, output.notes)
    try:
        job_id = slurm.submit(path)
    except SlurmError as exc:
        raise SlurmError(f"{exc} ({_withdraw(root, path, req.resume)})") from None
    output.notes.print(f"submitted: job {job_id} on {job.nodes} node(s), {path}", highlight=False)
    try:
        state = _follow(job_id, log, output)
    except KeyboardInterrupt:
        slurm.cancel(job_id)
        output.notes.print(
            f"interrupted: job {job_id} cancelled; finished runs are recorded in {root}; "
            "`up --resume --executor slurm` (same --suite and --out) goes on from there",
            highlight=False,
        )
        return Evaluated(root, [], EXIT_INTERRUPTED)
    return _ended(root, job_id, state, log, output.notes)


def _write_script(req: UpRequest, job: JobOptions, root: Path, notes: Console) -> tuple[Path, Path]:
    """The next `slurm/job-<n>.sbatch` of the evaluation, and where its job's output goes."""
    folder = root / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("job-*.sbatch"))) + 1
    path, log = folder / f"job-{n}.sbatch", folder / f"job-{n}.out"
    runtime = req.runtime.name
    pyxis = bool(job.container_image) and slurm.has_pyxis()
    if job.container_image and not pyxis:
        notes.print("no pyxis on this cluster (srun has no --container-image): each node's "
                    "agent runs the workloads' images through its Docker engine")  # fmt: skip
        job, runtime = dataclasses.replace(job, container_image=None), "docker"
    mounts = [root, *(w.resolve() for w in req.workloads)]
    script = slurm.script(
        job, f"deepspark-{root.name}", log, _agent_argv(req, root, runtime), mounts
    )
    path.write_text(script)
    return path, log


def _withdraw(root: Path, script: Path, resumed: bool) -> str:
    """What a job sbatch refused leaves: nothing. A new evaluation's directory (its script
    alone) is removed; a resumed one keeps what it had but the refused script, which node 0
    would otherwise sign with the run sets. What was removed, said after the error."""
    if resumed:
        script.unlink(missing_ok=True)
        return "the script is removed; the evaluation is as it was"
    shutil.rmtree(root, ignore_errors=True)
    return "nothing is kept"


def _agent_argv(req: UpRequest, root: Path, runtime: str) -> list[str]:
    """Each node's agent: this interpreter's, in the evaluation, with the runtime options."""
    suite = req.suite or "smoke"
    if Path(suite).is_file():  # the job may start elsewhere than here
        suite = str(Path(suite).resolve())
    choice = req.runtime
    argv = [
        sys.executable, "-m", "deepspark_agent", "up", "--evaluation", str(root),
        "--suite", suite, "--runtime", runtime, "--devices", choice.devices,
        "--telemetry", choice.telemetry, "--telemetry-hz", f"{choice.hz:g}",
    ]  # fmt: skip
    argv += ["--network", choice.network] if choice.network else []
    argv += ["--node-power", local_sources(choice.node_power)]
    argv += ["--collector", req.collector] if req.collector else []
    for folder in req.workloads:
        argv += ["--workloads", str(folder.resolve())]
    return argv


def _follow(job_id: str, log: Path, output: Output) -> JobState:
    """The job's state and nodes as they change, and its output as it grows, to its end."""
    seen, offset = None, 0
    while True:
        state = slurm.job_state(job_id)
        if (state.state, state.nodes) != seen:
            seen = (state.state, state.nodes)
            where = f" on {state.nodes}" if state.nodes else ""
            why = f" ({state.reason})" if state.reason not in ("None", "") else ""
            output.notes.print(f"job {job_id}: {state.state}{where}{why}", highlight=False)
        offset = _relay(log, offset, output.live)
        if state.ended:
            return state
        time.sleep(POLL_S)


def _relay(log: Path, offset: int, live: Console) -> int:
    """The job output's whole lines past offset, printed; the new offset."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:  # not written before the job starts
        return offset
    done = chunk.rfind(b"\n") + 1
    for line in chunk[:done].decode(errors="replace").splitlines():
        live.print(line, highlight=False, markup=False)
    return offset + done


def _ended(root: Path, job_id: str, state: JobState, log: Path, notes: Console) -> Evaluated:
    """The job's evaluation as node 0 left it: its results and exit code once finished;
    resumable when it was cancelled; a one-line error when it failed on its way."""
    if (root / SUMMARY_FILE).is_file():
        summary = read_json(root / SUMMARY_FILE, Summary, SuiteError)
        models = [
            (read_model(root / m.run_set / RESULT_FILE, Result), root / m.run_set)
            for m in summary.models
            if (root / m.run_set / RESULT_FILE).is_file()
        ]
        return Evaluated(root, models, exit_code(summary.models) if models else EXIT_FAILED)
    if state.state in ("CANCELLED", "PREEMPTED", "TIMEOUT"):
        notes.print(
            f"job {job_id} {state.state}: finished runs are recorded in {root}; "
            "`up --resume --executor slurm` (same --suite and --out) goes on from there",
            highlight=False,
        )
        return Evaluated(root, [], EXIT_INTERRUPTED)
    raise SlurmError(f"job {job_id} {state.state} (exit {state.exit_code}): {_last_error(log)}")


def _last_error(log: Path) -> str:
    """The agents' last error line in the job's output, else where the output is."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"no output at {log}"
    errors = [line for line in lines if "error:" in line]
    return errors[-1].strip() if errors else f"see {log}"
