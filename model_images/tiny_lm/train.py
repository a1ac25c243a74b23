"""Train the tiny character-level GPT on the Zen of Python: seconds on a CPU.

PYTHONPATH=model_images python model_images/tiny_lm/train.py --out tiny_lm.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from model import SIZE, Chars, build, corpus, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a model this small runs slower on more threads than one
    torch.manual_seed(args.seed)
    text = corpus()
    chars = Chars("".join(sorted(set(text))))
    data = torch.tensor(chars.encode(text))
    model = build(chars)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    t = SIZE["context"]
    for step in range(args.steps):
        starts = torch.randint(len(data) - t - 1, (args.batch_size,))
        x = torch.stack([data[s : s + t] for s in starts])
        y = torch.stack([data[s + 1 : s + t + 1] for s in starts])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    save(args.out, model, chars)


if __name__ == "__main__":
    main()
