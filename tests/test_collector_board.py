"""The leaderboard at scale: pages of the read API by cursor, and the standings (one row per
group) kept with each insert, on SQLite and PostgreSQL, with real signed submissions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import TOKEN
from deepspark_collector.app import create_app
from deepspark_collector.settings import Settings
from deepspark_core.attest import sign_run_set
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import PLAN_FILE, Result
from deepspark_core.signing import load_private_key
from test_collector import register, submit

COPIES = 5


def copies(run_set: Path, result: Result, count: int, out: Path, first: int = 1) -> list[bytes]:
    """`count` distinct signed bundles of one run set: its plan's `created_at` differs, so
    each is a statement of its own with the same recomputed figures."""
    plan = json.loads((run_set / PLAN_FILE).read_text())
    start = datetime.fromisoformat(plan["created_at"])
    bundles = []
    for i in range(count):
        plan["created_at"] = (start + timedelta(seconds=first + i)).isoformat()
        (run_set / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        changed = result.plan.model_copy(update={"created_at": plan["created_at"]})
        sign_run_set(run_set, result.model_copy(update={"plan": changed}), load_private_key())
        bundles.append(pack_run_set(run_set, out / f"copy-{i}.tar").read_bytes())
    return bundles


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path) -> TestClient:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    settings = Settings(data_dir=tmp_path / "collector", db_url=url, admin_token=TOKEN)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def stored(client, signed, tmp_path) -> list[int]:
    """COPIES submissions of one group: their ids, oldest first."""
    register(client)
    ids = []
    for body in copies(*signed, COPIES, tmp_path):
        answer = submit(client, body)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["submission_id"])
    return ids


def test_results_come_in_pages_linked_by_cursor(client, stored):
    answer = client.get("/api/v1/results", params={"limit": 2, "model": "sleeper"})
    pages = [[r["id"] for r in answer.json()]]
    while "next" in answer.links:
        answer = client.get(answer.links["next"]["url"])
        assert answer.status_code == 200
        pages.append([r["id"] for r in answer.json()])
    assert pages == [stored[:2], stored[2:4], stored[4:]]  # the filter kept on every page
    assert [r["id"] for r in client.get("/api/v1/results").json()] == stored  # default 100
    assert "link" not in client.get("/api/v1/results").headers
    for kind, listed in (("converge", stored), ("speed", [])):
        got = client.get("/api/v1/results", params={"kind": kind}).json()
        assert [r["id"] for r in got] == listed
    assert client.get("/api/v1/results", params={"framework": "none"}).json()
    assert client.get("/api/v1/results", params={"framework": ""}).json() == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "nope"}, {"cursor": "YWZ0ZXI6eA"}):
        refused = client.get("/api/v1/results", params=bad)
        assert refused.status_code == 422 and refused.json()["detail"], bad


def test_the_leaderboard_shows_a_group_once_with_its_results_one_click_away(client, stored):
    page = client.get("/models/sleeper").text
    (row,) = page.partition("<tbody>")[2].partition("</tbody>")[0].split("<tr ")[1:]
    # The best of equals is the first stored; the others are on the group's page.
    assert f'data-result="{stored[0]}"' in row and "all 5" in row
    assert "no speed runs" in row
    for other in stored[1:]:
        assert f"/results/{other}" not in page
    group = httpx.URL(row.partition('href="/results?')[2].partition('"')[0].replace("&amp;", "&"))
    listed = client.get("/results", params=group.query.decode())
    assert listed.status_code == 200
    assert all(f'data-result="{sid}"' in listed.text for sid in stored)
    index = client.get("/").text
    assert '<td class="num">5</td>' in index and '<td class="num">0</td>' in index


def test_a_new_result_shows_on_pages_rendered_before_it(client, stored, signed, tmp_path):
    """The pages of the standings are kept rendered until a result arrives, not after."""
    assert "all 5" in client.get("/models/sleeper").text
    assert client.get("/models/sleeper").text == client.get("/models/sleeper").text
    (body,) = copies(*signed, 1, tmp_path, first=COPIES + 1)
    assert submit(client, body).status_code == 201
    assert "all 6" in client.get("/models/sleeper").text
    assert '<td class="num">6</td>' in client.get("/").text


def test_a_model_name_with_a_slash_has_a_page(client):
    assert client.get("/models/acme/sleeper").status_code == 404  # reached: no results
    assert "No results for this model" in client.get("/models/acme%2Fsleeper").text
    assert client.get("/compare", params={"model": "acme/sleeper"}).status_code == 200
