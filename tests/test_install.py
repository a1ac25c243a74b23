"""The separate installs: in a fresh venv, `deepspark[collector]` serves the collector's API
without the agent's dependencies, and `deepspark[agent]` runs doctor without the collector's.

Each venv installs this checkout's wheel with its extra's declared dependencies from the
package index (pip's cache makes that take seconds): never `--no-deps`, which would test
nothing of what pyproject.toml declares.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ServedCollector

ROOT = Path(__file__).parents[1]
SOURCES = ("pyproject.toml", "README.md", "core", "agent", "server_stub")  # what the wheel needs
AGENT_ONLY = {"docker", "psutil", "nvidia-ml-py"}
COLLECTOR_ONLY = {"fastapi", "sqlalchemy", "uvicorn", "alembic"}


def isolated_env() -> dict[str, str]:
    """The environment without PYTHONPATH, which could lend the venv this checkout's code."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=isolated_env(), capture_output=True, text=True, timeout=600
    )


def checked(*argv: str | Path, cwd: Path) -> str:
    done = run(*argv, cwd=cwd)
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """This checkout's wheel, built from a copy of its sources: the checkout gets no build/
    folder, whose stale modules a later build would package."""
    work = tmp_path_factory.mktemp("wheel")
    src, dist = work / "src", work / "dist"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy(ROOT / name, src / name)
    pip("wheel", "-q", "--no-deps", "-w", dist, src, cwd=work)
    (built,) = dist.glob("deepspark-*.whl")
    return built


def pip(*args: str | Path, cwd: Path) -> str:
    return checked(sys.executable, "-m", "pip", *args, cwd=cwd)


def installed(wheel: Path, extra: str, root: Path) -> Path:
    """A fresh venv holding `deepspark[extra]` and its dependencies: its bin folder. This
    interpreter's pip installs into it (`--python`), which spares the venv a pip of its own."""
    checked(sys.executable, "-m", "venv", "--without-pip", "venv", cwd=root)
    bin_dir = root / "venv" / "bin"
    pip("--python", bin_dir / "python", "install", "-q", f"{wheel}[{extra}]", cwd=root)
    return bin_dir


def distributions(bin_dir: Path) -> set[str]:
    listed = pip("--python", bin_dir / "python", "list", "--format", "json", cwd=bin_dir)
    return {row["name"].lower() for row in json.loads(listed)}


@pytest.fixture(scope="session")
def collector_bin(wheel, tmp_path_factory) -> Path:
    return installed(wheel, "collector", tmp_path_factory.mktemp("collector-install"))


@pytest.fixture(scope="session")
def agent_bin(wheel, tmp_path_factory) -> Path:
    return installed(wheel, "agent", tmp_path_factory.mktemp("agent-install"))


def test_a_collector_only_install_serves_the_results_api(collector_bin, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the served process sees the venv alone
    collector = ServedCollector(tmp_path / "data", bin_dir=collector_bin).start()
    try:
        answer = httpx.get(f"{collector.url}/api/v1/results")
    finally:
        collector.stop()
    assert answer.status_code == 200
    assert answer.json() == []


def test_a_collector_only_install_has_none_of_the_agent_s_dependencies(collector_bin, tmp_path):
    assert distributions(collector_bin) & AGENT_ONLY == set()
    # The agent's modules are in the wheel, but its commands cannot load without its extra.
    done = run(collector_bin / "python", "-c", "import deepspark_agent.cli", cwd=tmp_path)
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named" in done.stderr


def test_an_agent_only_install_runs_doctor_without_the_collector_s_dependencies(
    agent_bin, tmp_path
):
    assert distributions(agent_bin) & COLLECTOR_ONLY == set()
    for module in ("fastapi", "sqlalchemy"):
        done = run(agent_bin / "python", "-c", f"import {module}", cwd=tmp_path)
        assert f"No module named '{module}'" in done.stderr
    done = run(agent_bin / "deepspark-agent", "doctor", cwd=tmp_path)
    # 1 when a required check fails (here: no workloads folder beside an installed agent).
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for check in ("python: 3.", "workloads:", "docker engine:", "accelerators:"):
        assert check in done.stdout
