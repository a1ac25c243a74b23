"""A tiny character-level GPT for the serving benchmark's local server: cpm's GPT-2 decoder,
sized to train in seconds on a CPU, on the Zen of Python (the text CPython ships in `this`)."""

from __future__ import annotations

import codecs
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import torch

from cpm.model import CPM

SIZE = {"context": 64, "d_model": 64, "n_layers": 2, "n_heads": 4, "dropout": 0.0}


def corpus() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


class Chars:
    """The text's characters are the tokens; one the model never saw reads as a space."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.ids = {c: i for i, c in enumerate(chars)}

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(c, self.ids[" "]) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def build(chars: Chars) -> CPM:
    return CPM(vocab_size=len(chars.chars), **SIZE)


def save(path: Path, model: CPM, chars: Chars) -> None:
    torch.save({"chars": chars.chars, "state": model.state_dict()}, path)


def load(path: Path) -> tuple[CPM, Chars]:
    saved = torch.load(path, weights_only=True)
    chars = Chars(saved["chars"])
    model = build(chars)
    model.load_state_dict(saved["state"])
    return model.eval(), chars


@torch.inference_mode()
def generate(
    model: CPM, prompt: list[int], n: int, temperature: float, rng: torch.Generator
) -> Iterator[int]:
    """n next tokens, one at a time (greedy at temperature 0), each over the last `context`."""
    ids = torch.tensor([prompt or [0]])
    for _ in range(n):
        logits = model(ids[:, -model.context :])[0, -1]
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=rng))
        else:
            token = int(logits.argmax())
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        yield token
