"""JSON text with its nesting bounded: what a submission sends is read without recursing deep.

Python's json recurses once per level and raises RecursionError (not a ValueError) at about
a thousand, and whatever walks the parsed value afterwards recurses as deep. Every JSON the
core reads from a run set (the envelope and its statement, event and telemetry lines) goes
through `check_depth` first, so that deep nesting is bad input like any malformed JSON: a
ValueError that the tolerant readers count as a malformed line and the strict ones refuse.
pydantic's own JSON parser (plan.json, run.json) stops at 200 levels by itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # far more than any file the agent writes; far less than the recursion limit

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class TooDeep(ValueError):
    """JSON text nested deeper than MAX_DEPTH."""


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """TooDeep if `text` opens more than `limit` arrays or objects inside each other.

    Text with fewer brackets than the limit cannot be deeper (a count at C speed, which is
    all a telemetry or event line needs); otherwise brackets inside strings are skipped and
    the rest counted. Malformed text may count too deep: it is refused either way."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            raise TooDeep(f"nested deeper than {limit} levels")


def loads(text: str, **options: Any) -> Any:
    """json.loads of text nested at most MAX_DEPTH levels; ValueError otherwise."""
    check_depth(text)
    return json.loads(text, **options)
