from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepspark_agent.cli import app
from deepspark_agent.workloads import WORKLOADS_ENV

DATA = Path(__file__).parent / "data"


@pytest.fixture
def sleeper(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the agent at the test workloads (the framework-free `sleeper`)."""
    root = DATA / "workloads"
    monkeypatch.setenv(WORKLOADS_ENV, str(root))
    return root


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return invoke
