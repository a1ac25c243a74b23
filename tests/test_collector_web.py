"""The collector's web pages: a real collector, a real signed run set, headless Chromium.

The browser is Debian's chromium (scripts/browser-env installs it), driven by the Python
`playwright` package through `executable_path`; no browser is ever downloaded. In CI (CI set)
a missing chromium fails the browser test; elsewhere it is skipped with the reason. The
OpenAPI property test (Schemathesis) runs against the ASGI app in-process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from conftest import ADMIN, DATA, ServedCollector
from deepspark_agent import workloads
from deepspark_collector.app import create_app
from deepspark_collector.settings import RateLimit
from deepspark_core.result_bundle import pack_run_set
from test_collector import TAR, register
from test_collector import settings as collector_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        reason = f"{CHROMIUM} missing: run scripts/browser-env"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    """A real collector (`deepspark-collector serve`, uvicorn) on a free port: its base URL."""
    collector = ServedCollector(tmp_path / "served").start()
    try:
        yield collector.url
    finally:
        collector.stop()


@pytest.mark.browser
def test_leaderboard_group_compare_and_result_pages_in_headless_chromium(
    served, cli, sleeper, bundle, tmp_path
):
    """A converge result and a speed result of one group: one leaderboard row, the speed
    from the speed result, the accuracy from the converge one, each a click from the group's
    results and from its own page; compare's menus pick both sides."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    (speed_bundle,) = signed_bundles(cli, tmp_path, ("sleeper",), mode="speed").values()
    with httpx.Client(base_url=served, timeout=60) as api:
        register(api)
        sids = {}
        for kind, body in (("converge", bundle), ("speed", speed_bundle)):
            answer = api.post("/api/v1/submissions", content=body, headers=TAR)
            assert answer.status_code == 201, answer.text
            sids[kind] = answer.json()["submission_id"]
        stored = {kind: api.get(f"/api/v1/results/{sid}").json() for kind, sid in sids.items()}
    windows = stored["converge"]["result"]["dimensions"]["speed"]["per_window"]
    assert len(windows) >= 3
    platform, speed = stored["speed"]["platform"], stored["speed"]["speed"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            console: list[str] = []  # a policy the pages break would be reported here
            page.on("console", lambda message: console.append(message.text))
            assert page.goto(f"{served}/models/sleeper").status == 200
            # The inline stylesheet applies under the Content-Security-Policy (by its hash).
            assert page.evaluate("getComputedStyle(document.body).color") == "rgb(34, 34, 34)"
            (row,) = page.locator("table.leaderboard tbody tr").all()
            text = row.inner_text()
            assert "sleeper" in text and platform in text and "acme" in text
            # The speed result's speed, as the row prints it (one decimal, as the agent's
            # row does) and exactly in the cell's title; the converge result's accuracy.
            cell = row.locator("td.speed")
            assert f"{speed:.1f}/s" in cell.inner_text()
            assert cell.get_attribute("title") == f"{speed} samples/s"
            assert row.locator(f'td.speed-result a[data-result="{sids["speed"]}"]').count() == 1
            accuracy = f"{stored['converge']['accuracy']:.4g}"
            assert accuracy in text

            row.locator("td.converge-result a.all").click()  # the group's converge results
            page.wait_for_url(f"{served}/results?*kind=converge*")
            listed = page.locator("table.results a[data-result]")
            assert [a.get_attribute("data-result") for a in listed.all()] == [str(sids["converge"])]
            listed.first.click()
            page.wait_for_url(f"{served}/results/{sids['converge']}")
            plot = page.locator("svg.plot.windows")
            assert plot.is_visible()
            assert plot.locator("rect.bar").count() == len(windows)
            # Memory over time, from the telemetry the collector kept with the artifacts.
            memory = page.locator("svg.plot.memory-t polyline.line")
            assert memory.is_visible()
            assert len(memory.get_attribute("points").split()) >= 5  # >= 0.5 s at 10 Hz
            shot = page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
            assert page.evaluate("getComputedStyle(document.body).color") == "rgb(34, 34, 34)"

            page.goto(f"{served}/models/sleeper")
            page.click("text=compare platforms")
            for side in "ab":  # no side is chosen for the user
                assert page.locator(f"select[name={side}]").input_value() == ""
                page.select_option(f"select[name={side}]", platform)
            page.click("button[type=submit]")
            ratios = page.locator("table.compare")
            assert "1.000" in ratios.inner_text()
            assert ratios.locator(f'a[href="/results/{sids["speed"]}"]').count() == 2
            assert not [text for text in console if "Content Security Policy" in text]
        finally:
            browser.close()
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 1000
    assert (tmp_path / "result.png").read_bytes() == shot


def test_pages_escape_compare_and_answer_404(bundle, tmp_path):
    with TestClient(create_app(collector_settings(tmp_path))) as client:
        register(client)
        sid = client.post("/api/v1/submissions", content=bundle, headers=TAR).json()[
            "submission_id"
        ]
        platform = client.get(f"/api/v1/results/{sid}").json()["platform"]
        index = client.get("/")
        assert index.status_code == 200 and 'href="/models/sleeper"' in index.text
        compare = client.get("/compare", params={"model": "sleeper", "a": platform, "b": platform})
        assert compare.status_code == 200 and "1.000" in compare.text
        assert f'href="/results/{sid}"' in compare.text
        missing = client.get("/compare", params={"model": "sleeper", "a": platform, "b": "x"})
        assert missing.status_code == 404 and "No result for sleeper on x" in missing.text
        hostile = client.get("/models/<img src=x onerror=alert(1)>")
        assert hostile.status_code == 404
        assert "<img" not in hostile.text and "&lt;img src=x onerror=alert(1)&gt;" in hostile.text
        assert client.get("/results/999").status_code == 404
        assert client.get("/results/abc").status_code == 422
        assert client.get(f"/results/{2**64}").status_code == 422  # not SQLite's 500


@pytest.fixture
def stored_app(database_url, bundle, tmp_path) -> FastAPI:
    """The collector on SQLite or PostgreSQL, with a vendor, this test's key and one real
    submission stored: what the property tests' reads then find."""
    unlimited = RateLimit(burst=10**6, per_minute=10**6)  # the cases' answers, not 429s
    app = create_app(collector_settings(tmp_path, db_url=database_url, rate_limit=unlimited))
    with TestClient(app) as client:
        register(client)
        stored = client.post("/api/v1/submissions", content=bundle, headers=TAR)
        assert stored.status_code == 201, stored.text
    return app


# derandomize: the same cases every run, so CI cannot pass or fail by luck.
PROPERTY = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.mark.property
def test_no_operation_answers_a_server_error(stored_app):
    """Property: whatever the OpenAPI schema allows, or nearly allows, nothing answers 5xx.

    Schemathesis's Python API against the ASGI app, each operation a Hypothesis property with
    valid and invalid inputs (its pytest plugin's `from_fixture` does not run under pytest 9).
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", stored_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/", "/models/{model}", "/compare", "/results/{submission_id}"} <= {
        op.path for op in operations
    }
    for operation in operations:
        no_server_error(operation)()


def admin_headers(case) -> dict[str, str] | None:
    return ADMIN if case.operation.path.startswith("/api/v1/") else None


def no_server_error(operation):
    """A Hypothesis test: cases of `operation`, valid and invalid, never answer 5xx."""
    modes = st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

    @given(case=modes.flatmap(operation.as_strategy))
    @settings(PROPERTY, max_examples=20)
    def check(case):
        case.call_and_validate(headers=admin_headers(case), checks=[not_a_server_error])

    return check


@pytest.mark.property
def test_no_sequence_of_operations_answers_a_server_error(stored_app):
    """Property, stateful: sequences that follow the schema's links (a vendor to its keys to
    a revocation, a listed result to the result, its page, artifacts and each artifact) with
    values from earlier answers, starting from stored rows, never answer 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", stored_app)

    class Sequences(schema.as_state_machine()):
        def setup(self):
            # Each sequence starts from the fixture's rows, as Hypothesis replays sequences
            # to shrink them and needs the same answers: no added vendor, no revoked key.
            with stored_app.state.engine.begin() as conn:
                added = "SELECT id FROM vendors WHERE name <> 'acme'"
                conn.execute(text(f"DELETE FROM keys WHERE vendor_id IN ({added})"))
                conn.execute(text("DELETE FROM vendors WHERE name <> 'acme'"))
                conn.execute(text("UPDATE keys SET revoked_at = NULL"))

        def get_call_kwargs(self, case):
            return {"headers": admin_headers(case)}

        def validate_response(self, response, case, **kwargs):
            answered.add((case.operation.method.upper(), case.operation.path, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])

    answered: set[tuple[str, str, int]] = set()
    Sequences.run(settings=settings(PROPERTY, max_examples=120, stateful_step_count=13))
    # The links were followed to stored rows: a listed result and a revoked key always, and
    # further down the links (derandomized, but which sequences go that deep moves with any
    # change to the schema or the answers) at least one of the result's page, artifact and
    # leaderboard.
    assert {
        ("GET", "/api/v1/results/{submission_id}", 200),
        ("POST", "/api/v1/keys/{kid}/revoke", 200),
    } <= answered, sorted(answered)
    deeper = {
        ("GET", "/api/v1/results/{submission_id}/artifacts/{name}", 200),
        ("GET", "/results/{submission_id}", 200),
        ("GET", "/models/{model}", 200),
    }
    assert deeper & answered, sorted(answered)


def test_an_id_beyond_sqlite_integers_is_a_client_error(tmp_path):
    with TestClient(create_app(collector_settings(tmp_path)), raise_server_exceptions=False) as c:
        assert c.get(f"/api/v1/results/{2**63}").status_code == 422  # found by the property


def signed_bundles(
    cli, tmp_path, names: tuple[str, ...], *options: str, mode: str = "converge"
) -> dict[str, bytes]:
    """Each workload run (2 runs of `mode`, process runtime), signed with this test's key and
    packed."""
    bundles = {}
    for workload in names:
        out = tmp_path / "runs" / mode / workload
        args = ("--runtime", "process", "--mode", mode, "--runs", "2", "--out", str(out))
        assert cli("run", workload, *options, *args)[0] == 0
        (run_set,) = out.iterdir()
        packed = pack_run_set(run_set, tmp_path / f"{workload}-{mode}.tar")
        bundles[workload] = packed.read_bytes()
    return bundles


def submit_all(client: TestClient, bundles: dict[str, bytes]) -> dict[str, int]:
    """Register the test vendor and key, submit every bundle: their submission ids."""
    register(client)
    return {
        w: client.post("/api/v1/submissions", content=b, headers=TAR).json()["submission_id"]
        for w, b in bundles.items()
    }


def test_one_model_on_two_frameworks_compares_side_by_side(cli, sleeper_twin, bundle, tmp_path):
    """The same model, two workloads in two frameworks, one host: the compare page puts the
    frameworks side by side, and the model's results list both. The sleeper's is the session's
    signed run set; the twin's is signed with the same key."""
    bundles = {"sleeper": bundle, **signed_bundles(cli, tmp_path, ("sleeper_twin",))}
    with TestClient(create_app(collector_settings(tmp_path / "collector"))) as client:
        ids = submit_all(client, bundles)
        listed = client.get("/api/v1/results", params={"model": "sleeper"}).json()
        assert {(r["model"], r["implements"], r["framework"]) for r in listed} == {
            ("sleeper", "sleeper", "none"),
            ("sleeper_twin", "sleeper", "twin"),
        }
        platform = listed[0]["platform"]
        sides = {"model": "sleeper", "a": platform, "fa": "none", "b": platform, "fb": "twin"}
        page = client.get("/compare", params=sides)
        assert page.status_code == 200, page.text
        assert f"{platform} · none" in page.text and f"{platform} · twin" in page.text
        assert '<option value="twin">' in page.text  # the frameworks to pick from
        tail = page.text.partition("<td>converge result</td>")[2]
        assert tail.index(f'/results/{ids["sleeper"]}"') < tail.index(
            f'/results/{ids["sleeper_twin"]}"'
        )
        missing = client.get("/compare", params={**sides, "fb": "paddlepaddle"})
        assert missing.status_code == 404 and f"on {platform} · paddlepaddle" in missing.text


def test_reference_and_vendor_implementations_rank_in_separate_divisions(
    cli, tmp_path, monkeypatch
):
    """A result of the catalog's own workload and one of a vendor's folder implementing the
    same model: the API says which is which (and filters by it), and the leaderboard ranks
    them in two divisions, as MLPerf separates closed from open."""
    catalog, vendor = tmp_path / "catalog", tmp_path / "vendor"
    shutil.copytree(DATA / "workloads" / "sleeper", catalog / "sleeper")
    shutil.copytree(DATA / "workloads" / "sleeper", vendor / "acme_sleeper")
    toml = vendor / "acme_sleeper" / "workload.toml"
    toml.write_text(
        toml.read_text().replace('name = "sleeper"', 'name = "acme_sleeper"\nmodel = "sleeper"')
    )
    monkeypatch.setattr(workloads, "BUILT_IN", catalog)  # the sleeper stands for the catalog
    monkeypatch.delenv(workloads.WORKLOADS_ENV, raising=False)
    assert cli("keys", "init")[0] == 0
    bundles = signed_bundles(cli, tmp_path, ("sleeper", "acme_sleeper"), "--workloads", str(vendor))
    with TestClient(create_app(collector_settings(tmp_path / "collector"))) as client:
        ids = submit_all(client, bundles)
        listed = client.get("/api/v1/results", params={"model": "sleeper"}).json()
        assert {(r["model"], r["implementation"]) for r in listed} == {
            ("sleeper", "reference"),
            ("acme_sleeper", "vendor"),
        }
        only = client.get("/api/v1/results", params={"implementation": "vendor"}).json()
        assert [r["id"] for r in only] == [ids["acme_sleeper"]]
        assert client.get("/api/v1/results", params={"implementation": "x"}).status_code == 422
        compared = client.get(
            "/api/v1/compare", params={"model": "sleeper", "implementation": "reference"}
        ).json()
        assert [r["converge"]["id"] for r in compared["platforms"]] == [ids["sleeper"]]
        page = client.get("/models/sleeper").text
        reference = page.partition('data-division="reference"')[2].partition("</table>")[0]
        vendor_table = page.partition('data-division="vendor"')[2].partition("</table>")[0]
        assert f'/results/{ids["sleeper"]}"' in reference
        assert f'/results/{ids["acme_sleeper"]}"' not in reference
        assert f'/results/{ids["acme_sleeper"]}"' in vendor_table
        assert "Reference implementations" in page and "Vendor implementations" in page
        assert "not recorded" not in page
