"""`deepspark-agent compare`: two real evaluations side by side (terminal, Markdown, HTML,
JSON), a result bundle and a collector's result beside the run set they hold, bad sides."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import DATA, ServedCollector, invoke
from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_core.assess import assess
from deepspark_core.compare import SEED_FIGURES, Labelled, compare
from deepspark_core.result_bundle import pack_run_set
from deepspark_core.results import Result

ENTRY = '[[workloads]]\nmodel = "{model}"\ndevices = [1]\nstability_runs = {runs}\n{extra}'


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two `up` evaluations of the sleeper: A at the preset's batch size in fp32 with 2
    converge runs; B at batch size 20 in bf16 with 3, and a second model A lacks."""
    root = tmp_path_factory.mktemp("compare")
    suites = {
        "a": ENTRY.format(model="sleeper", runs=2, extra=""),
        "b": ENTRY.format(model="sleeper", runs=3, extra='batch_size = 20\nprecision = "bf16"\n')
        + ENTRY.format(model="contract_only", runs=0, extra=""),
    }
    made = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(root / "config"))
        patch.setenv(WORKLOADS_ENV, str(DATA / "workloads"))
        for name, entries in suites.items():
            suite = root / f"{name}.toml"
            suite.write_text(f'name = "{name}"\n{entries}')
            out = root / name
            code, _, err = invoke(
                "up", "--suite", str(suite), "--runtime", "process", "--devices", "none",
                "--out", str(out),
            )  # fmt: skip
            assert code == 0, err
            (evaluation,) = out.iterdir()
            made.append(evaluation)
    return made[0], made[1]


def sleeper(evaluation: Path) -> Result:
    return assess(next(evaluation.glob("01-sleeper-*")))


def test_two_evaluations_side_by_side_with_ratios_and_what_differs(cli, evaluations):
    a, b = evaluations
    code, stdout, err = cli("compare", str(a), str(b), "--json")
    assert code == 0, err
    compared = json.loads(stdout)
    assert [s["label"] for s in compared["sides"]] == ["A", "B"]
    assert [s["source"] for s in compared["sides"]] == [str(a), str(b)]
    first, second = compared["models"]
    assert [r["kind"] for r in first["rows"]] == ["result", "result", "ratio"]
    ratio = first["rows"][2]
    assert ratio["cells"]["side"] == "B/A"
    for column, figure in SEED_FIGURES.items():  # recomputed from each side's raw files
        was, now = figure(sleeper(a)), figure(sleeper(b))
        expected = None if was is None or now is None else now / was
        assert ratio["ratios"][column] == pytest.approx(expected)
    assert ratio["differences"] == ["precision: fp32 vs bf16", "batch size: 10 vs 20"]
    assert ratio["cells"]["power (W)"] == "N/A: no figure on A or B"  # a CPU has no power
    assert (second["model"], [r["kind"] for r in second["rows"]]) == (
        "contract_only", ["missing", "result"]
    )  # fmt: skip
    assert second["rows"][0]["cells"]["speed"] == "missing"

    code, markdown, _ = cli("compare", str(a), str(b), "--markdown")
    assert code == 0
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    assert [r[0] for r in rows] == ["| side", "| A", "| B", "| B/A", "| A", "| B"]
    speed = rows[3][5]
    assert speed == f"{sleeper(b).dimensions.speed.value / sleeper(a).dimensions.speed.value:.3g}x"
    assert "differs: precision: fp32 vs bf16; batch size: 10 vs 20" in rows[3][4]
    assert "- sleeper B/A: precision: fp32 vs bf16; batch size: 10 vs 20" in markdown

    code, terminal, _ = cli("compare", str(a), str(b))
    assert code == 0
    assert f"A: {a}" in terminal and "B/A" in terminal and speed in terminal
    assert "differs: sleeper B/A: precision: fp32 vs bf16" in terminal


class Page(HTMLParser):
    """A page's table rows (each cell's text) and its SVGs' classes, with what they hold."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.svgs: list[dict[str, int | str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        elif tag == "svg":
            self.svgs.append({"class": found["class"] or ""})
        elif tag in ("polyline", "circle") and self.svgs:
            self.svgs[-1][tag] = int(self.svgs[-1].get(tag, 0)) + 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None


def test_the_html_page_holds_both_sides_the_ratio_and_the_overlaid_plots(
    cli, evaluations, tmp_path
):
    a, b = evaluations
    code, _, err = cli("compare", str(a), str(b), "--html", str(tmp_path / "c.html"))
    assert code == 0, err
    text = (tmp_path / "c.html").read_text()
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    page = Page()
    page.feed(text)
    rows = {(row[0], row[2]): row for row in page.rows if row}
    for side, evaluation in (("A", a), ("B", b)):
        assert f"{sleeper(evaluation).dimensions.speed.value:.1f}/s" in rows[side, "sleeper"][5]
    assert rows["B/A", "sleeper"][5].endswith("x")
    assert rows["A", "contract_only"][5] == "missing"
    sleeper_svgs = {svg["class"]: svg for svg in page.svgs[:3]}  # the first model's section
    assert sleeper_svgs["plot windows-c"]["polyline"] == 2  # a line per side
    assert sleeper_svgs["plot memory-c"]["polyline"] == 2
    assert sleeper_svgs["plot spread"]["circle"] == 2 + 3  # every converge run of both
    assert "Power over time N/A: no side recorded power." in text


def test_a_bundle_and_a_collectors_result_recompute_as_the_run_set_they_hold(
    cli, run_set, tmp_path
):
    """The session's signed run set, packed and submitted: each side is recomputed from the
    same raw files, so every ratio is 1; a result kept without artifacts is figures alone."""
    bundle = pack_run_set(run_set, tmp_path / "result.tar")
    served = ServedCollector(tmp_path / "collector").start()
    try:
        served.register()
        code, _, err = cli("submit", str(run_set), "--collector", served.url)
        assert code == 0, err
        (stored,) = served.results()
        url = f"{served.url}/api/v1/results/{stored['id']}"
        args = ("compare", str(run_set), str(bundle), url, "--json")
        code, stdout, err = cli(*args)
        assert code == 0, err
        rows = json.loads(stdout)["models"][0]["rows"]
        assert [r["cells"]["side"] for r in rows] == ["A", "B", "B/A", "C", "C/A"]
        for ratio in (rows[2], rows[4]):
            assert ratio["cells"]["config"] == "same settings" and not ratio["differences"]
            assert {v for v in ratio["ratios"].values() if v is not None} == {1.0}

        shutil.rmtree(served.data / "artifacts")  # kept from before artifacts were
        html = tmp_path / "bare.html"
        code, _, err = cli("compare", str(run_set), str(stored["id"]), "--collector",
                           served.url, "--html", str(html))  # fmt: skip
        assert code == 0, err
        assert "Over time N/A for B: figures alone, no raw artifacts." in html.read_text()

        code, stdout, err = cli("compare", str(run_set), f"{served.url}/api/v1/results/999")
        assert code == 2 and stdout == ""
        assert err.strip().endswith("/api/v1/results/999: HTTP 404: no result 999")
        assert len(err.strip().splitlines()) == 1
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("side", "message"),
    [
        ("missing", "missing: no such file or directory"),
        ("folder", "folder: not a run set, an `up` evaluation, a result bundle or a result"),
        ("7", "7: no such file or directory (a result id needs --collector)"),
        ("https://example.org/results/7", "not a collector result's URL"),
    ],
)
def test_a_bad_side_is_one_line_and_exit_2(cli, run_set, tmp_path, monkeypatch, side, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    code, stdout, err = cli("compare", str(run_set), side)
    assert (code, stdout) == (2, "")
    assert len(err.strip().splitlines()) == 1 and message in err
    code, _, err = cli("compare", str(run_set))
    assert code == 2 and "compare needs two sides at least" in err


def test_infer_runs_are_compared_per_scenario_and_engine(tmp_path):
    """The known inference run set of test_inference on both sides: a ratio row per infer run
    of the same scenario and engine, each figure's ratio 1; none where A lacks the run."""
    from test_inference import test_an_infer_runs_figures_and_row_from_a_known_run_set as known

    known(tmp_path)  # writes the run set into tmp_path, and checks its figures
    result = assess(tmp_path)
    lacking = result.model_copy(update={"runs": result.runs[:-1]})  # no latency-eager run
    compared = compare([Labelled("A", lacking, tmp_path), Labelled("B", result, tmp_path)])
    (model,) = compared.models
    assert [(r.kind, r.cells["side"]) for r in model.infer_rows] == [
        *[("result", "A")] * 2, *[("result", "B"), ("ratio", "B/A")] * 2, ("result", "B"),
    ]  # fmt: skip
    for row in model.infer_rows[3:6:2]:
        assert {v for v in row.ratios.values() if v is not None} == {1.0}, row.ratios
        assert row.cells["latency (ms)"] == "1x" and row.cells["config"].endswith("same settings")
    assert "| B/A |" in compared.markdown()


def test_two_real_mini_runs_of_resnet50_compared(cli, tmp_path: Path) -> None:
    """A real workload, twice: its speed runs at two batch sizes, the ratio recomputed."""
    sides = []
    for name, batch in (("a", "16"), ("b", "32")):
        code, _, err = cli(
            "run", "resnet50", "--runtime", "process", "--mode", "speed", "--windows", "3",
            "--warmup-windows", "0",
            "--batch-size", batch, "--out", str(tmp_path / name),
        )  # fmt: skip
        assert code == 0, err
        (run_set,) = (tmp_path / name).iterdir()
        sides.append(run_set)
    code, stdout, err = cli("compare", *map(str, sides), "--json")
    assert code == 0, err
    (model,) = json.loads(stdout)["models"]
    ratio = model["rows"][2]
    a, b = (assess(s).dimensions.speed.value for s in sides)
    assert ratio["ratios"]["speed"] == pytest.approx(b / a)
    assert ratio["differences"] == ["batch size: 16 vs 32"]
