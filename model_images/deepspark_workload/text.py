"""Edit distance for text metrics (CER, WER): framework-free, for any workload."""

from collections.abc import Sequence


def edit_distance(hyp: Sequence, ref: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions from hyp to ref
    (strings, or lists of label ids or words)."""
    row = list(range(len(ref) + 1))  # distances from hyp[:0] to every prefix of ref
    for i, h in enumerate(hyp, 1):
        diagonal, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (h != r))
    return row[-1]
