"""The collector's web pages: server-rendered HTML, no JavaScript, nothing fetched from elsewhere.

`/` lists the models, `/models/{model}` is a leaderboard in the seed table's columns (best speed
first; reference implementations and vendors' own ranked apart), `/compare?model=&a=&b=[&fa=&fb=]`
sets two platforms (or one platform on two frameworks) side by side with ratios, `/results/{id}`
is one result with its plots. Pages read what the API reads (`store`); every cell is the
collector's recomputed figure formatted as the agent's own row (`report.seed_row`). Plots are
inline SVG made here; Jinja's autoescape escapes every value a template prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from deepspark_collector import db, store
from deepspark_core.report import TEMPLATES, page_context, seed_row
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


# The leaderboard's columns: the seed table's, then where the figures come from.
COLUMNS = (
    "task", "model", "target", "config", "speed", "accuracy",
    "power (W)", "linearity", "memory (GB)", "stability", "platform", "vendor",
)  # fmt: skip
# Figures compared as a ratio a / b, with the direction that is better.
RATIOS = (
    ("speed", "samples/s", "higher"),
    ("accuracy", "", "higher"),
    ("power_w", "W", "lower"),
    ("linearity", "", "higher"),
    ("memory_gb", "GB", "lower"),
    ("stability", "", "higher"),
)


def _factory(request: Request):
    return db.sessions(request.app.state.engine)


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status_code)


def _row(summary: dict[str, Any], result: Result) -> dict[str, Any]:
    """One leaderboard row: the seed table's cells, the platform, vendor and raw figures."""
    cells = seed_row(result)
    cells["platform"] = summary["platform"]
    cells["vendor"] = summary["vendor"]
    return {"id": summary["id"], "cells": cells, "summary": summary, "unranked": result.unranked}


def _rows(request: Request, model: str) -> list[dict[str, Any]]:
    rows = [
        _row(summary, Result.model_validate(summary["result"]))
        for summary in store.list_results(_factory(request), model=model, with_result=True)
    ]
    # Best speed first; rows without a speed last; oldest first among equals (a stable sort).
    return sorted(rows, key=lambda r: _speed_order(r["summary"]["speed"]))


def _speed_order(speed: float | None) -> tuple[bool, float]:
    return speed is None, -(speed or 0.0)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    models: dict[str, dict[str, Any]] = {}
    for row in store.list_results(_factory(request)):
        entry = models.setdefault(
            row["model"], {"model": row["model"], "results": 0, "platforms": set(), "best": None}
        )
        entry["results"] += 1
        entry["platforms"].add(row["platform"])
        if row["speed"] is not None and (entry["best"] is None or row["speed"] > entry["best"]):
            entry["best"] = row["speed"]
    return _render("index.html", models=[models[name] for name in sorted(models)])


# The leaderboard's divisions, in order: like MLPerf's closed and open divisions, results of
# the project's reference code rank apart from those of a vendor's own implementation.
DIVISIONS = (
    ("reference", "Reference implementations",
     "The project's own workloads: the same code on every platform."),
    ("vendor", "Vendor implementations",
     "A vendor's own folder or image, measured by the same agent against the same target."),
    (None, "Implementation not recorded",
     "Submitted by an agent that did not yet record whose implementation ran."),
)  # fmt: skip


@router.get("/models/{model}", response_class=HTMLResponse)
def leaderboard(request: Request, model: str) -> HTMLResponse:
    rows = _rows(request, model)
    platforms = sorted({r["summary"]["platform"] for r in rows})
    divisions = [
        {"name": name, "title": title, "note": note, "rows": _ranked(chosen)}
        for origin, title, note in DIVISIONS
        if (chosen := [r for r in rows if r["summary"]["implementation"] == origin])
        for name in [origin or "unrecorded"]
    ]
    return _render(
        "model.html",
        status_code=200 if rows else 404,
        model=model,
        columns=COLUMNS,
        divisions=divisions,
        platforms=platforms,
    )


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rows (best speed first) numbered, those that must not rank after them, unnumbered
    (a converge result on synthetic data: its accuracy says nothing of the task)."""
    ranked = [r for r in rows if not r["unranked"]]
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    return ranked + [r for r in rows if r["unranked"]]


@router.get("/compare", response_class=HTMLResponse)
def compare(
    request: Request,
    model: str = "",
    a: str | None = None,
    b: str | None = None,
    fa: str | None = None,
    fb: str | None = None,
) -> HTMLResponse:
    """Two sides, each a platform (and optionally a framework): its fastest result for model.
    One platform on two frameworks is a side-by-side of the frameworks."""
    rows = store.compare(_factory(request), model) if model else []
    asked = {"a": (a, fa or None), "b": (b, fb or None)}
    labels = {k: " · ".join(filter(None, side)) for k, side in asked.items() if side[0]}
    chosen = {k: _fastest(rows, *asked[k]) for k in labels}
    missing = [labels[k] for k, row in chosen.items() if row is None]
    ratios = []
    if len(chosen) == 2 and not missing:
        for key, unit, better in RATIOS:
            va, vb = chosen["a"][key], chosen["b"][key]
            ratio = va / vb if va is not None and vb else None
            ratios.append(
                {"name": key, "unit": unit, "better": better, "a": va, "b": vb, "ratio": ratio}
            )
    return _render(
        "compare.html",
        status_code=404 if missing else 200,
        model=model,
        a=a,
        b=b,
        fa=fa,
        fb=fb,
        labels=labels,
        platforms=sorted({r["platform"] for r in rows}),
        frameworks=sorted({r["framework"] for r in rows if r["framework"]}),
        missing=missing,
        rows=chosen,
        ratios=ratios,
    )


def _fastest(rows: list[dict[str, Any]], platform: str, framework: str | None) -> dict | None:
    """The first (fastest) of rows on platform, and on framework when one is given."""
    for row in rows:
        if row["platform"] == platform and framework in (None, row["framework"]):
            return row
    return None


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
    return _render("result.html", stored=stored, **context)


def artifact_files(run_set: Path) -> dict[str, Path]:
    """A stored run set's files by their relative names (empty if none were kept)."""
    if not run_set.is_dir():
        return {}
    return {p.relative_to(run_set).as_posix(): p for p in sorted(run_set.rglob("*")) if p.is_file()}
