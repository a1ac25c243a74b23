"""The collector's inference kinds, on SQLite and PostgreSQL: a real infer run (ResNet50 mini,
offline, random weights) and hand-made run sets of known figures, each signed with the test's
key and submitted. The leaderboard's inference tables rank each scenario by its figure, the
API's kind filter finds them with their figures, compare gives the ratios; revision 0007
fills results stored before it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from conftest import SignedOnce, invoke
from deepspark_collector import board, db
from deepspark_collector.app import create_app
from deepspark_core.assess import assess
from deepspark_core.attest import sign_run_set
from deepspark_core.files import write_json
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import PLAN_FILE, PlannedRun, Result
from deepspark_core.signing import default_key_dir, load_private_key
from test_assess import plan, write_run
from test_collector import TAR, register
from test_collector import settings as collector_settings
from test_events import line
from test_inference import infer_run

WEIGHTS = "ab" * 32  # the hand-made converge run's checkpoint digest


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> SignedOnce:
    """`run resnet50 --mode infer` (offline, eager, random weights), signed by a fresh key."""
    out = tmp_path_factory.mktemp("infer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("infer-config")))
        assert invoke("keys", "init")[0] == 0
        code, stdout, err = invoke(
            "run", "resnet50", "--mode", "infer", "--scenario", "offline", "--runtime",
            "process", "--out", str(out), "--json",
        )  # fmt: skip
        key_dir = default_key_dir()
    assert code == 0 and "signed:" in err, err
    (run_set,) = out.iterdir()
    return SignedOnce(run_set, Result.model_validate_json(stdout), key_dir)


def known(out: Path, framework: str, speed: int, ms: float) -> bytes:
    """A hand-made resnet50 run set on `framework`, signed and packed: a converge run that
    writes the weights, then infer runs with them: offline (eager), latency eager and
    compiled, the compiled one's latencies half the eager's. Each infer run measures 3
    windows of `speed` samples a second, latencies 1..9 ms times `ms` (eager), 90 J/s."""
    runs = [
        PlannedRun(label="converge-1", mode="converge", seed=0, nproc=1),
        *(
            PlannedRun(label=f"infer-{scenario}-{engine}", mode="infer", seed=0, nproc=1,
                       scenario=scenario, engine=engine, checkpoint_from="converge-1")
            for scenario, engine in (("offline", "eager"), ("latency", "eager"),
                                     ("latency", "compile"))
        ),
    ]  # fmt: skip
    update = {"model": "resnet50", "implements": "resnet50", "framework": framework}
    write_json(out / PLAN_FILE, plan(runs, nproc=1, nnodes=1).model_copy(update=update))
    write_run(out, runs[0], speed, 0.6)
    with (out / "converge-1" / "mllog.log").open("a") as log:
        log.write(line("checkpoint", "checkpoint.pt", sha256=WEIGHTS) + "\n")
    weights = [line("weights", "checkpoint", sha256=WEIGHTS)]
    for planned in runs[1:]:
        infer_run(out, planned, weights, speed, ms / 2 if planned.engine == "compile" else ms)
    sign_run_set(out, assess(out), load_private_key())
    return pack_run_set(out, out.parent / f"{framework}.tar").read_bytes()


@pytest.fixture
def client(database_url, real, tmp_path) -> TestClient:
    shutil.copytree(real.key_dir, default_key_dir())  # this test signs with the real run's key
    with TestClient(create_app(collector_settings(tmp_path, db_url=database_url))) as client:
        register(client)
        yield client


def submitted(client: TestClient, bodies: dict[str, bytes]) -> dict[str, int]:
    ids = {}
    for name, body in bodies.items():
        answer = client.post("/api/v1/submissions", content=body, headers=TAR)
        assert answer.status_code == 201, answer.text
        ids[name] = answer.json()["submission_id"]
    return ids


def table(page: str, division: str, kind: str) -> list[str]:
    """The rows of a division's table of `kind` on a leaderboard page."""
    found = page.partition(f'data-division="{division}" data-kind="{kind}"')[2]
    return found.partition("</tbody>")[0].split("<tr ")[1:]


def compared_ratios(page: str) -> dict[str, tuple[str, str]]:
    """Each figure of a compare page: its ratio a / b as printed, and "better", "worse" or ""
    (equal, or N/A) for side a."""
    cells = re.findall(
        r'data-figure="([^"]+)">.*?</td>\s*<td class="num">[^<]*</td>\s*'
        r'<td class="num">[^<]*</td>\s*<td class="num ?([a-z]*)">([^<]*)</td>',
        page,
        re.S,
    )
    return {name: (ratio, verdict) for name, verdict, ratio in cells}


def test_the_leaderboard_ranks_each_scenario_and_the_api_and_compare_read_it(
    client, real, tmp_path
):
    ids = submitted(
        client,
        {
            "real": pack_run_set(real.run_set, tmp_path / "real.tar").read_bytes(),
            "alpha": known(tmp_path / "alpha" / "set", "alpha", speed=50, ms=1.0),
            "beta": known(tmp_path / "beta" / "set", "beta", speed=100, ms=2.0),
        },
    )
    (run,) = real.result.runs
    # The API: each kind filter finds its results, with each scenario's figures.
    for kind, listed in (
        ("infer-offline", ["real", "alpha", "beta"]),
        ("infer-latency", ["alpha", "beta"]),
        ("converge", ["alpha", "beta"]),
        ("speed", []),
    ):
        got = client.get("/api/v1/results", params={"kind": kind}).json()
        assert [r["id"] for r in got] == [ids[name] for name in listed], kind
    got = {r["id"]: r["inference"] for r in client.get("/api/v1/results").json()}
    offline = got[ids["real"]]["offline"]
    assert offline["throughput"] == run.speed.value and offline["engine"] == "eager"
    latency = run.inference.latency
    assert (offline["latency_p50_ms"], offline["latency_p90_ms"], offline["latency_p99_ms"]) == (
        latency.p50_ms,
        latency.p90_ms,
        latency.p99_ms,
    )
    assert offline["accuracy"] is None and list(got[ids["real"]]) == ["offline"]
    alpha = got[ids["alpha"]]
    assert (alpha["offline"]["throughput"], alpha["offline"]["accuracy"]) == (50, 0.6)
    assert alpha["offline"]["j_per_inference"] == pytest.approx(1.8)  # 270 J / 150 samples
    # The latency scenario's best run is the compiled one: half the eager latencies.
    assert alpha["latency"]["engine"] == "compile"
    assert (alpha["latency"]["latency_p50_ms"], alpha["latency"]["latency_p90_ms"]) == (2.5, 4.5)
    assert got[ids["beta"]]["latency"]["latency_p90_ms"] == 9.0

    # The leaderboard: the real run's row in the reference division, unranked, as its result
    # says; the hand-made ones ranked per scenario: offline by throughput, latency by p90.
    page = client.get("/models/resnet50").text
    (row,) = table(page, "reference", "infer-offline")
    assert f'data-result="{ids["real"]}"' in row
    assert f"<td>{run.speed.value:.1f}/s ({run.speed.windows} windows)</td>" in row
    assert "N/A: random weights (no checkpoint): says nothing of the model" in row
    assert f"unranked: {real.result.unranked}" in row
    assert "offline, eager, random weights" in row
    assert not table(page, "reference", "infer-latency")
    fastest, slower = table(page, "unrecorded", "infer-offline")
    assert '<td class="num">1</td>' in fastest and f'data-result="{ids["beta"]}"' in fastest
    assert "<td>100.0/s (3 windows)</td>" in fastest
    # Energy per inference by both, the counter's and the power integral's, and their gap
    both = "<td>chip 0.9 (energy counter), 1 (power integral), differing by 11% (over 10%)</td>"
    assert both in fastest
    assert '<td class="num">2</td>' in slower and f'data-result="{ids["alpha"]}"' in slower
    quickest, _ = table(page, "unrecorded", "infer-latency")
    assert f'data-result="{ids["alpha"]}"' in quickest and "<td>compile</td>" in quickest
    assert "p50 2.5, p90 4.5, p99 4.5 (9 queries)" in quickest
    assert "latency, compile, converge-1&#39;s weights" in quickest
    counts = "".join(f'<td class="num">{n}</td>' for n in (0, 2, 3, 2))  # speed ... latency
    assert counts in client.get("/").text

    # Compare: alpha against beta, each figure's ratio and which side it favours (lower
    # latency and energy per inference are better).
    platform = client.get("/api/v1/results").json()[0]["platform"]
    sides = {"model": "resnet50", "a": platform, "fa": "alpha", "b": platform, "fb": "beta"}
    compared = client.get("/compare", params=sides)
    assert compared.status_code == 200, compared.text
    ratios = compared_ratios(compared.text)
    assert ratios["offline throughput"] == ("0.500", "worse")
    assert ratios["offline accuracy"] == ("1.000", "")
    assert ratios["offline energy"] == ("2.000", "worse")  # 1.8 J against 0.9 J
    assert ratios["latency p90"] == ("0.500", "better")  # 4.5 ms against 9 ms
    assert ratios["latency p99"] == ("0.500", "better")
    assert ratios["latency energy"] == ("2.000", "worse")
    assert ratios["speed"] == ("N/A", "")  # neither has speed runs
    # The real run against beta: its throughput over 100, its accuracy N/A.
    sides |= {"fa": "pytorch"}
    ratios = compared_ratios(client.get("/compare", params=sides).text)
    assert ratios["offline throughput"][0] == f"{run.speed.value / 100:.3f}"
    assert ratios["offline accuracy"] == ("N/A", "")
    # The standings kept with each insert are those a rebuild makes from the results.
    engine = client.app.state.engine
    columns = [getattr(db.Standing, c) for c in board.COLUMNS]
    with engine.connect() as conn:
        kept = sorted(conn.execute(select(*columns)).all())
    with engine.begin() as conn:
        board.rebuild(conn)
        assert sorted(conn.execute(select(*columns)).all()) == kept
    kinds = {row[board.COLUMNS.index("kind")] for row in kept}
    assert kinds == {"converge", "infer-offline", "infer-latency"}


def test_0007_gives_results_stored_before_it_their_scenarios(tmp_path, own_config_dir):
    """A database at 0006 holding a result with infer runs: 0007 stores its figures per
    scenario and its standings in the inference kinds (the latency one: the compiled run's
    p90, negated)."""
    assert invoke("keys", "init")[0] == 0
    known(tmp_path / "set", "alpha", speed=50, ms=1.0)
    result = assess(tmp_path / "set")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    config = db.alembic_config(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
        conn.execute(text("INSERT INTO vendors (id, name) VALUES (1, 'acme')"))
        conn.execute(
            text("INSERT INTO keys (key_id, vendor_id, public_key_pem) VALUES ('k', 1, 'pem')")
        )
        conn.execute(
            text(
                "INSERT INTO submissions (envelope_sha256, key_id, model, implements, config, "
                "mode, nproc, platform, accuracy, result_json, received_at) VALUES ('e', 'k', "
                "'resnet50', 'resnet50', 'mini', :mode, 1, 'cpu: x', 0.6, :r, "
                "'2026-12-01 00:00:00')"
            ),
            {"mode": result.plan.mode, "r": result.model_dump_json()},
        )
    db.migrate(engine)
    with engine.connect() as conn:
        figures = conn.execute(
            text(
                "SELECT scenario, engine, throughput, latency_p90_ms, accuracy "
                "FROM scenario_figures ORDER BY scenario"
            )
        ).all()
        standings = conn.execute(
            text("SELECT kind, results, best_score FROM standings ORDER BY kind")
        ).all()
    assert result.plan.mode == "infer+converge"
    assert figures == [("latency", "compile", 50.0, 4.5, 0.6), ("offline", "eager", 50.0, 9.0, 0.6)]
    assert standings == [
        ("converge", 1, 0.6),
        ("infer-latency", 1, -4.5),
        ("infer-offline", 1, 50.0),
    ]
