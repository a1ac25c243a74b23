"""The agent's command layer stays thin: commands parse options, call a service and print."""

from __future__ import annotations

import ast
from pathlib import Path

import deepspark_agent.cli

MAX_LINES = 60


def test_no_function_in_the_command_layer_is_over_60_lines():
    long = []
    for path in sorted(Path(deepspark_agent.cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - first + 1
                if lines > MAX_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long
