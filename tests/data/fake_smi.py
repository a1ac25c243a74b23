#!/usr/bin/env python3
"""A stand-in for a vendor monitoring tool that replays recorded outputs (tests only).

Environment:
  FAKE_SMI_FILES   recorded outputs, os.pathsep-separated: one per tick, in a loop
  FAKE_SMI_PERIOD  seconds between ticks (default 0.05); `-lms N` on the command line wins
  FAKE_SMI_ONCE    set: print the first file once and exit, as a tool run without a loop flag
  FAKE_SMI_LOG     a file to which each start appends its pid, so a test can count starts

With `--query-gpu=F1,F2,... --format=csv[,noheader][,nounits]` the files must be query-gpu
CSVs with a header (nvidia-smi --format=csv); the fake prints the requested columns of each
row as nvidia-smi would, so the sampler's real command line is exercised. Other arguments
are ignored.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import sys
import time
from pathlib import Path

ALIASES = {"clocks.sm": "clocks.current.sm"}  # nvidia-smi accepts both names


def project(text: str, fields: list[str], form: str) -> str:
    """The requested columns of a recorded query-gpu CSV, in the requested format."""
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    names = [cell.split(" [")[0] for cell in rows[0]]
    columns = [names.index(f if f in names else ALIASES.get(f, f)) for f in fields]
    out = [] if "noheader" in form else [", ".join(fields)]
    for row in rows[1:]:
        values = [row[c] for c in columns]
        if "nounits" in form:
            values = [re.sub(r" (W|MiB|%|MHz)$", "", v) for v in values]
        out.append(", ".join(values))
    return "\n".join(out) + "\n"


def option(argv: list[str], prefix: str) -> str | None:
    return next((arg[len(prefix) :] for arg in argv if arg.startswith(prefix)), None)


def main(argv: list[str]) -> None:
    if log := os.environ.get("FAKE_SMI_LOG"):
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")
    records = [Path(p).read_text() for p in os.environ["FAKE_SMI_FILES"].split(os.pathsep)]
    query = option(argv, "--query-gpu=")
    if query:
        form = option(argv, "--format=") or "csv"
        records = [project(r, query.split(","), form) for r in records]
    if os.environ.get("FAKE_SMI_ONCE"):
        sys.stdout.write(records[0])
        return
    period = float(os.environ.get("FAKE_SMI_PERIOD", "0.05"))
    if "-lms" in argv:
        period = int(argv[argv.index("-lms") + 1]) / 1000
    for record in itertools.cycle(records):
        sys.stdout.write(record)
        sys.stdout.flush()
        time.sleep(period)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BrokenPipeError:  # the sampler went away first
        sys.exit(0)
