"""The collector's web pages: server-rendered HTML, no JavaScript, nothing fetched from elsewhere.

`/` lists the models, `/models/{model}` is a leaderboard: one row per group (workload,
platform, framework, preset) with its best speed result and its best converge result in the
seed table's columns (best speed first; reference implementations and vendors' own ranked
apart), then a table per inference scenario in the inference table's columns, each linking
to a page of the group's results (`/results?...`, paginated).
`/compare?model=&a=&b=[&fa=&fb=]` sets two platforms the user picks (or one platform on two
frameworks) side by side with ratios, `/results/{id}` is one result with its plots. Pages read
what the API reads (`store`), the leaderboard and the index from the standings (one row per
group, `board`); every cell is the collector's recomputed figure formatted as the agent's own
row (`report.seed_row`). Plots are inline SVG made here; Jinja's autoescape escapes every value
a template prints.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from deepspark_collector import board, db, scenarios, store
from deepspark_core.report import (
    INFER_COLUMNS,
    TEMPLATES,
    inference_row,
    number,
    page_context,
    seed_row,
)
from deepspark_core.results import Result

# A submission's id as a path parameter: what a 64-bit id holds, SQLite's INTEGER and
# PostgreSQL's BIGINT (a larger one would be a 500, not a client's 422). The API uses it too.
SubmissionId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]

router = APIRouter()
templates = Environment(
    # The collector's pages, then the agent's: the result body and style the report shares.
    loader=ChoiceLoader([PackageLoader("deepspark_collector", "templates"), TEMPLATES]),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


# The leaderboard's columns after the group's own (platform, model, framework, preset): the
# seed table's figures of the group's best speed result, then of its best converge result.
SPEED_COLUMNS = ("speed", "power (W)", "memory (GB)", "linearity")
CONVERGE_COLUMNS = ("accuracy", "stability", "target")
# An inference table's figures: the core's inference row after its task, model, target and
# config (shown whole: preset, batch, scenario, engine, whose weights, synthetic data).
INFERENCE_COLUMNS = INFER_COLUMNS[4:]
# Each kind as the pages name it.
KIND_TITLES = {"speed": "speed", "converge": "converge", "infer-offline": "inference, offline",
               "infer-latency": "inference, latency"}  # fmt: skip
RANKED_BY = {"offline": "throughput, highest first", "latency": "p90 latency, lowest first"}
# Figures compared as a ratio a / b: its name, its key in a side's best result of the kind
# that measures it, its unit and the direction that is better. Speed, power and memory from
# speed runs; accuracy, stability from converge runs; an inference scenario's from its best
# infer run (lower latency and energy per inference are better).
RATIOS = (
    ("speed", "speed", "samples/s", "higher", "speed"),
    ("accuracy", "accuracy", "", "higher", "converge"),
    ("power_w", "power_w", "W", "lower", "speed"),
    ("linearity", "linearity", "", "higher", "speed"),
    ("memory_gb", "memory_gb", "GB", "lower", "speed"),
    ("stability", "stability", "", "higher", "converge"),
    ("offline throughput", "throughput", "samples/s", "higher", "infer-offline"),
    ("offline accuracy", "accuracy", "", "higher", "infer-offline"),
    ("offline energy", "j_per_inference", "J/inference", "lower", "infer-offline"),
    ("latency p50", "latency_p50_ms", "ms", "lower", "infer-latency"),
    ("latency p90", "latency_p90_ms", "ms", "lower", "infer-latency"),
    ("latency p99", "latency_p99_ms", "ms", "lower", "infer-latency"),
    ("latency energy", "j_per_inference", "J/inference", "lower", "infer-latency"),
)


def _factory(request: Request):
    return db.sessions(request.app.state.engine)


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status_code)


class Pages:
    """One app's rendered pages by URL and version, the least recently used dropped past
    `size` (`app.state.pages`: an app of its own, so that apps in one process never share).
    A stored result is never changed or removed, so the newest result's id says whether a
    page of the standings is still true: a hit costs one indexed query, not a render (20
    clients reloading the leaderboard must not stall every other request)."""

    def __init__(self, size: int = 512) -> None:
        self._pages: OrderedDict[tuple, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, request: Request, render: Callable[[], HTMLResponse]) -> HTMLResponse:
        version = store.latest_id(_factory(request))
        key = (request.url.path, request.url.query, version)
        with self._lock:
            if (hit := self._pages.get(key)) is not None:
                self._pages.move_to_end(key)
        if hit is None:
            page = render()
            hit = page.body, page.status_code
            with self._lock:
                self._pages[key] = hit
                while len(self._pages) > self._size:
                    self._pages.popitem(last=False)
        return HTMLResponse(hit[0], status_code=hit[1])


def after(cursor: str | None) -> int:
    """The id a page's `cursor` continues after (0: the first page); 422 for a bad one."""
    try:
        return store.decode_cursor(cursor) if cursor else 0
    except ValueError as exc:
        raise HTTPException(422, f"cursor: {exc}") from None


def _row(
    summary: dict[str, Any], result: Result, cells: dict[str, str] | None = None
) -> dict[str, Any]:
    """One result's cells (the seed table's, unless given), the platform and vendor, and its
    raw figures."""
    cells = dict(seed_row(result) if cells is None else cells)
    cells["platform"] = summary["platform"]
    cells["vendor"] = summary["vendor"]
    return {"id": summary["id"], "cells": cells, "summary": summary, "unranked": result.unranked}


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    return request.app.state.pages.get(
        request,
        lambda: _render("index.html", models=store.models(_factory(request)), kinds=KIND_TITLES),
    )


# The leaderboard's divisions, in order: like MLPerf's closed and open divisions, results of
# the project's reference code rank apart from those of a vendor's own implementation.
DIVISIONS = (
    ("reference", "Reference implementations",
     "The project's own workloads: the same code on every platform."),
    ("vendor", "Vendor implementations",
     "A vendor's own folder or image, measured by the same agent against the same target."),
    ("", "Implementation not recorded",
     "Submitted by an agent that did not yet record whose implementation ran."),
)  # fmt: skip


@router.get("/models/{model:path}", response_class=HTMLResponse)
def leaderboard(request: Request, model: str) -> HTMLResponse:
    """One row per group (workload, platform, framework, preset) in each division: the best
    speed result and the best converge result, each with a link to all of the group's."""
    return request.app.state.pages.get(request, lambda: _leaderboard(request, model))


def _leaderboard(request: Request, model: str) -> HTMLResponse:
    groups = store.standings(_factory(request), model)
    rows = _group_rows([g for g in groups if g["kind"] in board.TRAINING])
    inference = [_inference_part(g) for g in groups if g["kind"] in board.INFERENCE]
    divisions = []
    for origin, title, note in DIVISIONS:
        tables = _inference_tables([p for p in inference if p["group"]["implementation"] == origin])
        chosen = [r for r in rows if r["group"]["implementation"] == origin]
        if chosen or tables:
            divisions.append({"name": origin or "unrecorded", "title": title, "note": note,
                              "rows": _ranked(chosen), "inference": tables})  # fmt: skip
    return _render(
        "model.html",
        status_code=200 if groups else 404,
        model=model,
        speed_columns=SPEED_COLUMNS,
        converge_columns=CONVERGE_COLUMNS,
        inference_columns=INFERENCE_COLUMNS,
        divisions=divisions,
        export_limit=store.PAGE_MAX,
        export_query=urlencode({"model": model, "limit": store.PAGE_MAX}),
    )


def _counted(group: dict[str, Any]) -> dict[str, Any]:
    """A group's count, its best's score, and the link to a page of all its results."""
    query = {c: group[c] for c in ("implementation", "platform", "framework", "config")}
    query |= {"workload": group["model"], "kind": group["kind"]}
    return {"results": group["results"], "score": group["best_score"],
            "all": f"/results?{urlencode(query)}"}  # fmt: skip


def _group_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The speed and converge standings of one model as rows, a group's speed and converge
    standings side by side; best speed first, then best accuracy (a stable sort keeps the
    rest in order)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for group in groups:
        key = tuple(group[c] for c in board.GROUP if c != "kind")
        row = rows.setdefault(key, {"group": group, "speed": None, "converge": None})
        best = group["best"]
        row[group["kind"]] = _row(best, Result.model_validate(best["result"])) | _counted(group)
    for row in rows.values():
        parts = [row[kind] for kind in board.TRAINING if row[kind]]
        # Unranked only when every part is: one ranked result ranks the group.
        ranked = any(not p["unranked"] for p in parts)
        row["unranked"] = None if ranked else parts[0]["unranked"]
    return sorted(
        rows.values(),
        key=lambda r: tuple(_score_order(r[kind] and r[kind]["score"]) for kind in board.TRAINING),
    )


def _inference_tables(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A division's inference rows as a table per scenario, each ranked by its figure."""
    tables = []
    for kind, scenario in board.INFERENCE.items():
        chosen = sorted(
            (p for p in parts if p["group"]["kind"] == kind), key=lambda p: _score_order(p["score"])
        )
        if chosen:
            tables.append({"kind": kind, "scenario": scenario, "ranked_by": RANKED_BY[scenario],
                           "rows": _ranked(chosen)})  # fmt: skip
    return tables


def _inference_part(group: dict[str, Any]) -> dict[str, Any]:
    """An inference group's row: its best result's run in the scenario as the core's
    inference row (the config cell names the scenario, the engine and whose weights)."""
    best = group["best"]
    result = Result.model_validate(best["result"])
    run = scenarios.best_runs(result)[board.INFERENCE[group["kind"]]]
    part = _row(best, result, inference_row(result, run)) | _counted(group)
    return part | {"group": group, "engine": run.engine}


def _score_order(score: float | None) -> tuple[bool, float]:
    return score is None, -(score or 0.0)


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rows (best first) numbered, those that must not rank after them, unnumbered (a
    converge result on synthetic data: its accuracy says nothing of the task)."""
    ranked = [r for r in rows if not r["unranked"]]
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    return ranked + [r for r in rows if r["unranked"]]


@router.get("/results", response_class=HTMLResponse)
def results_page(
    request: Request,
    workload: str | None = None,
    implementation: str | None = None,
    platform: str | None = None,
    framework: str | None = None,
    config: str | None = None,
    kind: board.Kind | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    """A page of results, oldest first, of one leaderboard group (or any filter of them): an
    empty implementation or framework is an unrecorded one."""
    filters = store.Filters(
        workload=workload, implementation=implementation, device=platform,
        framework=framework, config=config, kind=kind,
    )  # fmt: skip
    page, following = store.list_results(_factory(request), filters, after(cursor))
    asked = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return _render(
        "results.html",
        asked=asked,
        rows=page,
        next=f"/results?{urlencode(asked | {'cursor': following})}" if following else None,
    )


@router.get("/compare", response_class=HTMLResponse)
def compare(
    request: Request,
    model: str = "",
    a: str = "",
    b: str = "",
    fa: str = "",
    fb: str = "",
) -> HTMLResponse:
    """Two sides, each a platform (and optionally a framework) the user picks among those
    with results for model: its best result of each kind (speed, converge, each inference
    scenario). One platform on two
    frameworks is a side-by-side of the frameworks. Nothing is picked for the user."""
    return request.app.state.pages.get(request, lambda: _compare(request, model, a, b, fa, fb))


def _compare(request: Request, model: str, a: str, b: str, fa: str, fb: str) -> HTMLResponse:
    factory = _factory(request)
    sides = store.compare(factory, model) if model else []
    asked = {"a": (a, fa), "b": (b, fb)}
    labels = {k: " · ".join(filter(None, side)) for k, side in asked.items() if side[0]}
    chosen = {k: _side(sides, *asked[k]) for k in labels}
    missing = [labels[k] for k, side in chosen.items() if side is None]
    ratios = []
    if len(chosen) == 2 and not missing:
        for name, key, unit, better, kind in RATIOS:
            va, vb = (_figure(chosen[side], kind, key) for side in "ab")
            ratio = va / vb if va is not None and vb else None
            ratios.append(
                {"name": name, "unit": unit, "better": better, "a": va, "b": vb, "ratio": ratio}
            )
    return _render(
        "compare.html",
        status_code=404 if missing else 200,
        model=model,
        picked={"a": a, "b": b, "fa": fa, "fb": fb},
        models=[m["model"] for m in store.models(factory)],
        labels=labels,
        platforms=sorted({s["platform"] for s in sides}),
        frameworks=sorted({s["framework"] for s in sides if s["framework"]}),
        missing=missing,
        sides=chosen,
        ratios=ratios,
        kinds=KIND_TITLES,
    )


def _side(sides: list[dict[str, Any]], platform: str, framework: str) -> dict | None:
    """The first (fastest) side on platform, and on framework when one is given."""
    for side in sides:
        if side["platform"] == platform and framework in ("", side["framework"]):
            return side
    return None


def _figure(side: dict[str, Any], kind: str, key: str) -> float | None:
    return side[kind][key] if side[kind] else None


@router.get("/results/{submission_id}", response_class=HTMLResponse)
def result_page(request: Request, submission_id: SubmissionId) -> HTMLResponse:
    try:
        stored = store.get_result(_factory(request), submission_id)
    except store.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    result = Result.model_validate(stored["result"])
    kept = request.app.state.settings.artifacts_dir / stored["envelope_sha256"]
    context = page_context(result, kept)
    context["row"] = _row(stored, result)["cells"]
    return _render("result.html", stored=stored, ratio=lambda r: number(r, ".3f"), **context)


def artifact_files(run_set: Path) -> dict[str, Path]:
    """A stored run set's files by their relative names (empty if none were kept)."""
    if not run_set.is_dir():
        return {}
    return {p.relative_to(run_set).as_posix(): p for p in sorted(run_set.rglob("*")) if p.is_file()}
