"""Scene-text metrics: word accuracy as the STR benchmarks count it, and character error rate.

Both compare normalised strings: lower case, with everything but 0-9 and a-z removed (MMOCR's
"ignore_case_symbol" mode, the convention of the published IIIT5K / SVT / IC13 / IC15 / SVTP /
CUTE80 figures).
"""

import re

from deepspark_workload.text import edit_distance

_NOT_ALNUM = re.compile("[^0-9a-z]")


def normalise(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def word_hits(predictions: list[str], targets: list[str]) -> int:
    """How many predictions equal their target after normalisation."""
    return sum(normalise(p) == normalise(t) for p, t in zip(predictions, targets, strict=True))


def char_errors(predictions: list[str], targets: list[str]) -> tuple[int, int]:
    """(edit operations, target characters) summed over pairs: their ratio is the CER."""
    pairs = [(normalise(p), normalise(t)) for p, t in zip(predictions, targets, strict=True)]
    return sum(edit_distance(p, t) for p, t in pairs), sum(len(t) for _, t in pairs)
