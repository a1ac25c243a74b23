"""The HTML report: inline SVG plots, a page that re-renders offline, and Chromium drawing it."""

import io
import re

import pytest
from PIL import Image

from deepspark_core.plots import bar_chart, spread_chart
from deepspark_core.results import Result
from test_collector_web import CHROMIUM_ARGS, chromium


def test_spread_chart_marks_runs_outside_the_band() -> None:
    svg = spread_chart([("s0", 0.90), ("s1", 0.95), ("s2", 0.951)], 0.95, 0.01, "final top1")
    assert svg.count('class="dot inside"') == 2 and svg.count('class="dot outside"') == 1
    ys = [float(y) for y in re.findall(r'cy="([\d.]+)"', svg)]
    assert ys[0] > ys[1] > ys[2]  # SVG y grows downwards: the lowest value sits lowest
    assert spread_chart([], 0.5, 0.01, "none") == ""


def test_plot_labels_are_escaped() -> None:
    svg = bar_chart([("<script>alert(1)</script>", 3.0)], "W", "a & b", "power")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg


@pytest.mark.browser
def test_report_html_in_headless_chromium(cli, sleeper, tmp_path) -> None:
    """A 3-run converge set: the page up writes, re-rendered offline, drawn by Chromium."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    args = ("--runtime", "process", "--mode", "converge", "--runs", "3", "--json")
    code, out, err = cli("run", "sleeper", *args, "--out", str(tmp_path / "runs"))
    assert code == 0, err
    result = Result.model_validate_json(out)
    (run_set,) = (tmp_path / "runs").iterdir()
    written = (run_set / "report.html").read_text()
    code, _, err = cli("report", str(run_set), "--html", str(tmp_path / "again.html"))
    assert code == 0, err
    assert (tmp_path / "again.html").read_text() == written  # recomputed from the artifacts
    assert "http" not in written.replace("http://www.w3.org/2000/svg", "")  # self-contained

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((run_set / "report.html").as_uri())
            row = page.locator("table.row tbody tr")
            assert "sleeper" in row.inner_text() and "3 runs" in row.inner_text()
            windows = page.locator("svg.plot.windows rect.bar")
            assert windows.count() == len(result.dimensions.speed.per_window) >= 3
            dots = page.locator("svg.plot.spread circle.dot")
            assert dots.count() == 3 and dots.first.is_visible()
            outside = page.locator("svg.plot.spread circle.dot.outside").count()
            assert outside == result.dimensions.stability.outside
            memory = page.locator("svg.plot.memory-t polyline.line")
            assert memory.is_visible() and len(memory.get_attribute("points").split()) >= 5
            assert page.locator("table.runs tbody tr").count() == 3
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width == 1280 and image.height > 900  # the whole page, plots included
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20  # drawn, not blank
    (tmp_path / "report.png").write_bytes(shot)


@pytest.mark.browser
def test_evaluation_report_puts_models_side_by_side(cli, sleeper, tmp_path) -> None:
    """`up`'s own report.html: the suite's table, one row per model, then each model's plots."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    entry = '[[workloads]]\nmodel = "sleeper"\ndevices = [1]\nstability_runs = {}\n'
    suite = tmp_path / "pair.toml"
    suite.write_text('name = "pair"\n' + entry.format(2) + entry.format(3))
    args = ("--suite", str(suite), "--runtime", "process", "--out", str(tmp_path / "o"))
    code, _, err = cli("up", *args)
    assert code == 0, err
    (root,) = (tmp_path / "o").iterdir()
    written = (root / "report.html").read_text()
    code, _, err = cli("report", str(root), "--html", str(tmp_path / "again.html"))
    assert code == 0, err
    assert (tmp_path / "again.html").read_text() == written
    code, markdown, _ = cli("report", str(root), "--markdown")
    assert markdown == (root / "report.md").read_text()
    assert [line.count("sleeper") for line in markdown.splitlines()[2:]] == [1, 1]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((root / "report.html").as_uri())
            rows = page.locator("table.suite tbody tr")
            assert rows.count() == 2
            assert "2 runs" in rows.nth(0).inner_text() and "3 runs" in rows.nth(1).inner_text()
            assert page.locator("section").count() == 2
            assert page.locator("section svg.plot.spread").count() == 2
            assert page.locator("section").nth(1).locator("svg.plot.spread circle.dot").count() == 3
        finally:
            browser.close()
