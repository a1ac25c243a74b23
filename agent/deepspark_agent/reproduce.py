"""`up --reproduce URL`: a result published on a collector, run again here and set beside it.

Fetched: the result (`/api/v1/results/<id>`), its signed statement and its `plan.json` (two
of its artifacts). Checked before anything runs: the statement's sha256 is the one the
collector verified (`payload_sha256`), plan.json's sha256 is the statement's subject, the
signed result is of that plan and is the one the collector serves. The signature itself is
the collector's to check (it holds the vendors' keys); these digests tie what it verified to
what runs here. Then the same plan: the workload by name, its config, precision, batch,
windows, warm-up, tolerance and runs (seeds, ranks), the published image by digest when the
result measured an image and this host can have it. A run this host cannot hold (more nodes,
more devices) is said and skipped; the new plan's `reproduces` (signed with it) names the
collector, the result, its statement's digest and what was skipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from docker.errors import DockerException
from pydantic import ValidationError

from deepspark_agent.evaluate import Output, measure, model_runtime
from deepspark_agent.exits import exit_code
from deepspark_agent.images import ImageError, engine
from deepspark_agent.placement import Placement, resolve
from deepspark_agent.planning import Request
from deepspark_agent.publish import ensure_key
from deepspark_agent.runtime.choose import RuntimeChoice
from deepspark_agent.workloads import WorkloadError, find_workload, folder_digest
from deepspark_core.compare import Labelled, compare
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import first_error, stamped_path, write_atomic
from deepspark_core.reproduction import ratios
from deepspark_core.results import (
    PLAN_FILE,
    Implementation,
    PlannedRun,
    Reproduces,
    Result,
    RunPlan,
)
from deepspark_core.runset import REPRODUCTION_MD, STATEMENT_FILE
from deepspark_core.signing import VerificationError, payload_sha256, unverified_statement

API = "/api/v1"
# http(s)://HOST[/PREFIX]/api/v1/results/ID, or the result's page http(s)://HOST[/PREFIX]/results/ID
RESULT_PATH = re.compile(r"(?P<prefix>.*?)/(?:api/v1/)?results/(?P<id>[1-9][0-9]{0,18})/?")
TIMEOUT_S = 60.0


class ReproduceError(DeepSparkError):
    """A result that cannot be fetched, checked or run again here."""


@dataclass(frozen=True)
class Published:
    """A collector's result as fetched and checked: where, whose, its statement's digest."""

    collector: str  # the collector's base URL
    id: int
    vendor: str
    platform: str
    statement: str  # the sha256 of its signed statement
    result: Result  # the signed result (its plan is the signed plan.json)

    @property
    def label(self) -> str:
        return f"published #{self.id} ({self.vendor}, {self.platform})"

    @property
    def url(self) -> str:
        return f"{self.collector}/results/{self.id}"


@dataclass(frozen=True)
class Reproduction:
    """The published plan as this host runs it: the request, the runs kept, the image."""

    request: Request
    runs: list[PlannedRun]
    image: str | None = None  # the published image, present or pulled here
    notes: list[str] = field(default_factory=list)  # where it differs from the published


@dataclass(frozen=True)
class ReproduceRequest:
    """`up --reproduce` as asked."""

    url: str
    out: Path = Path("runs")
    workloads: tuple[Path, ...] = ()
    runtime: RuntimeChoice = field(default_factory=RuntimeChoice)
    collector: str | None = None  # where the reproduction is submitted
    data_dir: Path | None = None  # the dataset of full presets' converge runs


@dataclass(frozen=True)
class Reproduced:
    published: Published
    result: Result
    run_set: Path
    notes: list[str]
    exit_code: int

    def as_dict(self) -> dict[str, Any]:
        """`--json`: the published result and the reproduction, the ratios, the notes."""
        published = self.published
        return {
            "published": {
                "collector": published.collector, "id": published.id,
                "vendor": published.vendor, "platform": published.platform,
                "statement": published.statement,
                "result": published.result.model_dump(mode="json"),
            },
            "reproduction": self.result.model_dump(mode="json"),
            "run_set": str(self.run_set),
            "ratios": [
                {"dimension": r.dimension, "published": r.published, "here": r.here,
                 "ratio": r.ratio, "better": r.better}
                for r in ratios(published.result, self.result)
            ],
            "notes": self.notes,
        }  # fmt: skip


def result_address(url: str) -> tuple[str, int]:
    """A collector result's URL (its API or its page) as the collector's base URL and the id."""
    parts = urlsplit(url)
    found = RESULT_PATH.fullmatch(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or not found:
        raise ReproduceError(
            f"{url}: not a collector result's URL "
            "(http(s)://HOST/api/v1/results/ID or http(s)://HOST/results/ID)"
        )
    return f"{parts.scheme}://{parts.netloc}{found['prefix']}", int(found["id"])


def fetch(url: str) -> Published:
    """The published result behind `url`, its statement and plan checked against each other."""
    base, ident = result_address(url)
    api = f"{base}{API}/results/{ident}"
    with httpx.Client(timeout=TIMEOUT_S) as client:
        summary = _json(_get(client, api, base), base)
        envelope = _get(client, f"{api}/artifacts/{STATEMENT_FILE}", base).content
        plan_json = _get(client, f"{api}/artifacts/{PLAN_FILE}", base).content
    try:
        statement = unverified_statement(envelope)
        digest = payload_sha256(envelope)
    except VerificationError as exc:
        raise ReproduceError(f"result {ident}: its {STATEMENT_FILE}: {exc}") from None
    if digest != summary["payload_sha256"]:
        raise ReproduceError(f"result {ident}: its statement is not the one {base} verified")
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    if subjects.get(PLAN_FILE) != hashlib.sha256(plan_json).hexdigest():
        raise ReproduceError(f"result {ident}: its {PLAN_FILE} is not the signed one")
    try:
        plan = RunPlan.model_validate_json(plan_json)
        result = Result.model_validate(statement["predicate"].get("result"))
        served = Result.model_validate(summary["result"])
    except ValidationError as exc:  # its title names the schema: RunPlan or Result
        raise ReproduceError(f"result {ident}: {first_error(Path(exc.title), exc)}") from None
    if result.plan != plan or served != result:
        raise ReproduceError(f"result {ident}: the signed result is not the one {base} serves")
    return Published(base, ident, summary["vendor"], summary["platform"], digest, result)


def _get(client: httpx.Client, url: str, base: str) -> httpx.Response:
    """A 2xx answer of the collector at `base`, or one line saying why not: the collector's
    own (JSON with a `detail`), else that the server is none."""
    try:
        answer = client.get(url)
    except httpx.HTTPError as exc:
        raise ReproduceError(f"{base}: no collector answers: {exc}") from None
    if answer.is_success:
        return answer
    if _is_detail(answer):
        raise ReproduceError(f"{base}: HTTP {answer.status_code}: {answer.json()['detail']}")
    raise ReproduceError(f"{base}: not a DeepSpark collector ({url}: HTTP {answer.status_code})")


def _is_detail(answer: httpx.Response) -> bool:
    """Whether the answer is a collector's error: JSON with a `detail`."""
    try:
        return isinstance(answer.json().get("detail"), str)
    except (ValueError, AttributeError):
        return False


def _json(answer: httpx.Response, base: str) -> dict:
    """A result summary's JSON, or one line saying the server is no collector."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    keys = ("payload_sha256", "vendor", "platform", "result")
    if not isinstance(body, dict) or not all(k in body for k in keys):
        raise ReproduceError(f"{base}: not a DeepSpark collector ({answer.url} is no result)")
    return body


def plan_here(published: Published, req: ReproduceRequest, placement: Placement) -> Reproduction:
    """The published plan on this host: its workload from the catalog, the runs it can hold
    (the others said and skipped), what of the implementation differs."""
    plan = published.result.plan
    try:
        workload = find_workload(plan.model, req.workloads)
    except WorkloadError:
        raise ReproduceError(
            f"result {published.id} ran workload {plan.model!r}, which this host's catalog "
            "does not have (add its folder with --workloads)"
        ) from None
    runs, skipped = _runs_here(plan.runs, placement)
    if not runs:
        held = "; ".join(skipped)
        raise ReproduceError(f"result {published.id}: this host can hold none of its runs: {held}")
    notes = [f"skipped here: {why}" for why in skipped]
    image = None
    if plan.implementation and plan.implementation.kind == "image":
        image, said = _published_image(plan.implementation, req.runtime.name)
        notes.append(said)
    elif plan.implementation and (digest := folder_digest(workload.path)) != (
        published_digest := plan.implementation.digest
    ):
        notes.append(
            f"implementation differs: {workload.name}'s folder here is {digest}, "
            f"the published one {published_digest}"
        )
    reproduces = Reproduces(
        collector=published.collector, id=published.id, statement=published.statement,
        skipped=skipped,
    )  # fmt: skip
    request = Request(
        workload=workload, config=plan.config, nproc=max(r.nproc for r in runs),
        batch_size=plan.batch_size, precision=plan.precision, tolerance=plan.tolerance,
        warmup_windows=plan.warmup_windows, windows=plan.windows,
        data_dir=req.data_dir, reproduces=reproduces,
    )  # fmt: skip
    return Reproduction(request, runs, image, notes)


def _runs_here(runs: list[PlannedRun], placement: Placement) -> tuple[list[PlannedRun], list[str]]:
    """The runs this host can hold, and why each other one is skipped: more nodes than one,
    more devices than it has (a CPU host runs any number of ranks, as `run --nproc` does), or
    an infer run whose weights come from a skipped run."""
    kept: list[PlannedRun] = []
    skipped: dict[str, str] = {}
    for run in runs:
        if run.nnodes > 1:
            skipped[run.label] = f"{run.nnodes} nodes, this host is one"
        elif placement.count and run.nproc > placement.count:
            skipped[run.label] = f"{run.nproc} devices, this host has {placement.found()}"
        elif run.checkpoint_from in skipped:
            skipped[run.label] = f"its weights come from {run.checkpoint_from}, skipped"
        else:
            kept.append(run)
    return kept, [f"{label} ({why})" for label, why in skipped.items()]


def _published_image(implementation: Implementation, runtime: str) -> tuple[str | None, str]:
    """The published image (present here by its id, else pulled by a registry digest) and a
    line saying so; None and why, when this host cannot have it: the catalog's workload runs."""
    if runtime == "process":
        return (
            None,
            "the published image needs docker, not --runtime process: the catalog's workload runs",
        )
    try:
        client = engine()
        client.images.get(implementation.digest)
        return implementation.digest, f"image {implementation.digest}: present here"
    except ImageError as exc:
        return None, f"the published image cannot run here ({exc}): the catalog's workload runs"
    except DockerException:
        pass
    for ref in implementation.repo_digests:
        try:
            client.images.pull(ref)
            return ref, f"image {ref}: pulled"
        except DockerException:
            continue
    why = f"image {implementation.source} ({implementation.digest}) is neither here nor pullable"
    return None, f"{why}: the catalog's workload runs"


def reproduce(req: ReproduceRequest, output: Output) -> Reproduced:
    """Fetch, check, run the published plan here, sign and submit it; the side by side is
    written beside its reports (`reproduction.md`)."""
    published = fetch(req.url)
    placement = resolve(req.runtime.devices)
    here = plan_here(published, req, placement)
    output.notes.print(f"reproducing {published.label} from {published.collector}")
    for note in here.notes:
        output.notes.print(f"note: {note}", highlight=False)
    ensure_key(output.notes)
    modes = {r.mode for r in here.runs}
    request, runtime = model_runtime(
        here.request, modes, req.runtime, placement, here.image, output
    )
    plan = published.result.plan
    run_set = stamped_path(req.out, f"{plan.model}-{plan.config}-reproduce-{published.id}")
    result, outcome = measure(request, run_set, runtime, here.runs, output, req.collector)
    write_atomic(
        run_set / REPRODUCTION_MD, side_by_side(published, result, run_set, here.notes).encode()
    )
    return Reproduced(published, result, run_set, here.notes, exit_code([outcome]))


def side_by_side(published: Published, here: Result, run_set: Path, notes: list[str]) -> str:
    """The published result and its reproduction as Markdown, through `compare`: both rows,
    the ratio row here / published (what differs named in it), the notes."""
    skipped = here.plan.reproduces.skipped if here.plan.reproduces else []
    sides = [
        Labelled("published", published.result, source=f"{published.label}: {published.url}"),
        Labelled("here", here, run_set, source=str(run_set)),
    ]
    lines = [f"Reproduction of {published.url}", "", compare(sides).markdown()]
    lines += [f"- skipped here: {', '.join(skipped)}"] if skipped else []
    return "\n".join(lines + [f"- note: {note}" for note in notes]) + "\n"
