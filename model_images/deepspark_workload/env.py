"""The environment the agent sets for a workload (docs/workload-contract.md)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CONTRACT_VERSIONS = ("1", "1.1")  # 1.1: infer mode
MODES = ("speed", "converge", "infer")
PRECISIONS = ("fp32", "amp", "bf16")
SCENARIOS = ("offline", "latency")
ENGINES = ("eager", "compile")


class ContractError(ValueError):
    """A DS_* variable or a workload.toml entry breaks the contract."""


@dataclass(frozen=True)
class Env:
    """The DS_* variables, parsed. Unset and empty mean the same; defaults suit a manual run."""

    model: str | None = None  # None: whatever workload.toml names
    config: str = "mini"
    mode: str = "speed"
    batch_size: int | None = None  # per device; None: the preset's own
    precision: str = "fp32"
    seed: int = 0
    warmup_windows: int = 1
    windows: int = 5
    data_dir: Path | None = None
    out_dir: Path | None = None  # None: log to stdout only
    max_seconds: float | None = None  # the agent enforces it; kept for the workload's information
    scenario: str = "offline"  # infer mode's: offline or latency
    engine: str = "eager"  # infer mode's: eager or compile
    checkpoint: Path | None = None  # the weights an infer run loads; None: random weights

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "Env":
        def get(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        def number(name: str, kind: type, low: float, default: float | None = None):
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ContractError(f"{name}={raw!r} is not {kind.__name__}") from None
            if not value >= low:  # also rejects nan
                raise ContractError(f"{name}={raw!r} must be >= {low}")
            return value

        def choice(name: str, options: tuple[str, ...], default: str) -> str:
            value = get(name) or default
            if value not in options:
                raise ContractError(f"{name}={value!r} is not one of {', '.join(options)}")
            return value

        version = get("DS_CONTRACT_VERSION") or CONTRACT_VERSIONS[-1]
        if version not in CONTRACT_VERSIONS:
            raise ContractError(
                f"DS_CONTRACT_VERSION={version!r}: this library speaks version 1 and 1.1"
            )
        mode = choice("DS_MODE", MODES, "speed")
        if mode == "infer" and version == "1":
            raise ContractError("DS_MODE=infer needs DS_CONTRACT_VERSION=1.1")
        checkpoint = get("DS_CHECKPOINT")
        seed = number("DS_SEED", int, 0, 0)
        if seed >= 2**32:  # numpy's limit
            raise ContractError(f"DS_SEED={seed} must be < 2**32")
        data_dir, out_dir = get("DS_DATA_DIR"), get("DS_OUT_DIR")
        return cls(
            model=get("DS_MODEL"),
            config=get("DS_CONFIG") or "mini",
            mode=mode,
            batch_size=number("DS_BATCH_SIZE", int, 1),
            precision=choice("DS_PRECISION", PRECISIONS, "fp32"),
            seed=seed,
            warmup_windows=number("DS_WARMUP_WINDOWS", int, 0, 1),
            windows=number("DS_WINDOWS", int, 1, 5),
            data_dir=Path(data_dir) if data_dir else None,
            out_dir=Path(out_dir) if out_dir else None,
            max_seconds=number("DS_MAX_SECONDS", float, 0),
            scenario=choice("DS_SCENARIO", SCENARIOS, "offline"),
            engine=choice("DS_ENGINE", ENGINES, "eager"),
            checkpoint=Path(checkpoint) if checkpoint else None,
        )
