"""The Conformer workload's quality metric: character error rate of greedy CTC transcripts."""

import torch

from deepspark_workload.text import edit_distance


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance: each frame's top label, repeats collapsed, then blanks dropped.

    logits: (batch, frames, labels); lengths: each utterance's valid frames.
    """
    best = logits.argmax(-1).cpu()
    out = []
    for path, n in zip(best, lengths.tolist(), strict=True):
        path = torch.unique_consecutive(path[:n])
        out.append(path[path != blank].tolist())
    return out


def char_errors(hyps: list[list[int]], refs: list[list[int]]) -> tuple[int, int]:
    """(edit errors, reference characters) summed over utterances: CER is their ratio."""
    errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    return errors, sum(len(r) for r in refs)
