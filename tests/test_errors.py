"""One error base class: every error a user can cause is a DeepSparkError, stated in one line."""

from __future__ import annotations

import pytest
import typer

from deepspark_agent.console import user_errors
from deepspark_agent.submit import SubmitError
from deepspark_core.errors import DeepSparkError


def test_a_message_that_spans_lines_reads_as_one() -> None:
    assert str(DeepSparkError("engine said:\n  no such image\n\n")) == "engine said: no such image"


def test_a_user_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise SubmitError("http://collector: refused\nretry later")

    with pytest.raises(typer.Exit) as exit_:
        command()
    assert exit_.value.exit_code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: http://collector: refused retry later"
    ]
