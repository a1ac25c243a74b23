"""Node energy from RAPL through the powercap sysfs tree: package and DRAM counters.

`/sys/class/powercap/intel-rapl:<P>` is a package zone (name `package-<N>`), and
`intel-rapl:<P>:<S>` its subzones (`core`, `uncore`, `dram`); AMD's RAPL (Zen, kernel 5.8+)
fills the same tree. Each zone's `energy_uj` is a microjoule counter that wraps at
`max_energy_range_uj`; the sampler turns it into a cumulative `energy_j` that only increases.
Only package and DRAM zones are read: core and uncore are parts of their package, and psys
overlaps everything. Since Linux 5.10 `energy_uj` is readable by root only (a side channel,
CVE-2020-8694): that is a reason this source does not answer, not an error.

`DEEPSPARK_POWERCAP` names another root (a container's bind mount of the host's tree, or a
generated tree in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepspark_agent.telemetry.smi import TelemetryError

POWERCAP = Path("/sys/class/powercap")
ROOT_ENV = "DEEPSPARK_POWERCAP"
HZ = 10.0  # the counter updates every ~1 ms; 10 Hz resolves a window's energy to 0.1 s


def powercap_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or POWERCAP)


def unwrap(previous_uj: int, current_uj: int, max_range_uj: int) -> int:
    """The energy between two readings of a counter that wraps at max_range_uj."""
    delta = current_uj - previous_uj
    return delta + max_range_uj if delta < 0 else delta


@dataclass
class Counter:
    """One zone's counter made cumulative: joules since the zone's counter's first value."""

    max_range_uj: int
    last_uj: int | None = None
    total_j: float = 0.0

    def add(self, raw_uj: int) -> float:
        if self.last_uj is None:
            self.total_j = raw_uj / 1e6
        else:
            self.total_j += unwrap(self.last_uj, raw_uj, self.max_range_uj) / 1e6
        self.last_uj = raw_uj
        return self.total_j


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def domains(root: Path) -> dict[str, Path]:
    """{device name ("rapl:package-0", "rapl:dram-0"): zone folder} of a powercap tree."""
    found: dict[str, Path] = {}
    for zone in sorted(root.glob("intel-rapl:*")):
        name = _read(zone / "name") or ""
        parts = zone.name.split(":")
        if name.startswith("package-") and len(parts) == 2:
            found[f"rapl:{name}"] = zone
        elif name == "dram" and len(parts) == 3:
            package = _read(root / f"intel-rapl:{parts[1]}" / "name") or f"package-{parts[1]}"
            found[f"rapl:dram-{package.removeprefix('package-')}"] = zone
    return found


class RaplSampler:
    """Each package and DRAM zone's cumulative energy_j, scope "node"."""

    scope = "node"
    hz = HZ

    def __init__(self, root: Path | None = None) -> None:
        root = powercap_root() if root is None else root
        zones = domains(root)
        if not zones:
            raise TelemetryError(f"no RAPL package zone under {root}")
        self._counters: dict[str, tuple[Path, Counter]] = {}
        for device, zone in zones.items():
            try:
                (zone / "energy_uj").read_text()
            except PermissionError:
                raise TelemetryError("energy_uj not readable (root only)") from None
            except OSError as exc:
                raise TelemetryError(f"{zone}/energy_uj: {exc.strerror}") from None
            max_range = int(_read(zone / "max_energy_range_uj") or 0) or 2**32
            self._counters[device] = (zone / "energy_uj", Counter(max_range))

    def describe(self) -> str:
        return ", ".join(d.removeprefix("rapl:") for d in self._counters) + " (energy counters)"

    def read(self) -> dict[str, dict[str, float]]:
        readings: dict[str, dict[str, float]] = {}
        for device, (path, counter) in self._counters.items():
            raw = _read(path)
            if raw is not None and raw.isdigit():
                readings[device] = {"energy_j": counter.add(int(raw))}
        return readings

    def close(self) -> None:
        pass
