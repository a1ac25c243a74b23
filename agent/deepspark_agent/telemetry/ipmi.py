"""Node power from the BMC through IPMI DCMI: `ipmitool dcmi power reading`, once per tick.

In-band (the host's own BMC through /dev/ipmi0, root only by default) or a remote BMC over
`-I lanplus` with a user and password (the password passed in the environment, `-E`, never on
a command line others can read). One process per tick at 1 Hz: BMCs refresh the reading
about once a second, and a process that hangs is killed by its timeout without a reader
thread to stop. A reading whose state is "deactivated" (the DCMI spec: the BMC does not
measure; some BMCs then print a stale or zero figure) is no reading.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deepspark_agent.telemetry.smi import TelemetryError

HZ = 1.0
TIMEOUT_S = 3.0
DEV = Path("/dev")
IN_BAND = ("ipmi0", "ipmi/0", "ipmidev/0")  # where ipmitool's open interface looks
DEVICE = "ipmi"

# Searched anywhere, not per line: ipmitool 1.8.19 prints the timestamp without its newline,
# so "IPMI timestamp: ... Sampling period: ..." share a line.
_WATTS = {
    "power_w": r"Instantaneous power reading:\s*(\d+(?:\.\d+)?)\s*Watts",
    "min_w": r"Minimum during sampling period:\s*(\d+(?:\.\d+)?)\s*Watts",
    "max_w": r"Maximum during sampling period:\s*(\d+(?:\.\d+)?)\s*Watts",
    "average_w": r"Average power reading over sample period:\s*(\d+(?:\.\d+)?)\s*Watts",
}
_PERIOD = re.compile(r"Sampling period:\s*(\d+)\s*Seconds")
_STATE = re.compile(r"Power reading state is:[ \t]*(\w+)")


@dataclass(frozen=True)
class DcmiReading:
    """`dcmi power reading`'s fields; active is None when the output has no state."""

    power_w: float
    min_w: float | None = None
    max_w: float | None = None
    average_w: float | None = None
    period_s: int | None = None
    active: bool | None = None


def _number(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match[1]) if match else None


def parse_dcmi_power(text: str) -> DcmiReading | None:
    """The reading, or None when the output has no instantaneous power (an error message)."""
    power = _number(_WATTS["power_w"], text)
    if power is None:
        return None
    period, state = _PERIOD.search(text), _STATE.search(text)
    return DcmiReading(
        power_w=power,
        min_w=_number(_WATTS["min_w"], text),
        max_w=_number(_WATTS["max_w"], text),
        average_w=_number(_WATTS["average_w"], text),
        period_s=int(period[1]) if period else None,
        active=state[1] == "activated" if state else None,
    )


def dcmi_power_w(text: str) -> float | None:
    """The node's power in watts, or None: no reading, or the BMC says it does not measure."""
    reading = parse_dcmi_power(text)
    return None if reading is None or reading.active is False else reading.power_w


def why_not(text: str) -> str:
    """In one line, why an output gave no power."""
    reading = parse_dcmi_power(text)
    if reading is not None and reading.active is False:
        return "the BMC's power reading state is deactivated"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:160] if lines else "no output"


@dataclass(frozen=True)
class Bmc:
    """A remote BMC over IPMI v2 (lanplus)."""

    host: str
    user: str
    password: str


def command(bmc: Bmc | None) -> list[str]:
    remote = ["-I", "lanplus", "-H", bmc.host, "-U", bmc.user, "-E"] if bmc else []
    return ["ipmitool", *remote, "dcmi", "power", "reading"]


class IpmiSampler:
    """The node's power from `ipmitool dcmi power reading`, device "ipmi", scope "node".
    Raises TelemetryError, with the reason, when the first reading gives no power."""

    scope = "node"
    hz = HZ

    def __init__(self, bmc: Bmc | None = None, dev: Path | None = None) -> None:
        dev = DEV if dev is None else dev
        if shutil.which("ipmitool") is None:
            raise TelemetryError("ipmitool not installed")
        if bmc is None and not any((dev / name).exists() for name in IN_BAND):
            raise TelemetryError(f"no {dev / IN_BAND[0]} (no in-band BMC interface)")
        self._command = command(bmc)
        self._env = {**os.environ, "IPMI_PASSWORD": bmc.password} if bmc else None
        first = self._run()
        if dcmi_power_w(first) is None:
            raise TelemetryError(f"ipmitool dcmi power reading: {why_not(first)}")
        self.first_w = dcmi_power_w(first)

    def _run(self) -> str:
        try:
            done = subprocess.run(
                self._command, capture_output=True, text=True, timeout=TIMEOUT_S, env=self._env
            )
        except subprocess.TimeoutExpired:
            return f"no answer in {TIMEOUT_S:g} s"
        except OSError as exc:
            return str(exc)
        return done.stdout if done.returncode == 0 else done.stderr or done.stdout

    def describe(self) -> str:
        return f"{self.first_w:g} W now"

    def read(self) -> dict[str, dict[str, float]]:
        power = dcmi_power_w(self._run())
        return {} if power is None else {DEVICE: {"power_w": power}}

    def close(self) -> None:
        pass
