"""Which node power sources a run gets, from `--node-power`: RAPL, IPMI DCMI, Redfish.

A node source's samplers write telemetry lines like any other, with scope "node" and the
source as the device ("rapl:package-0", "ipmi", "redfish:<chassis>"): `power_w` where the
source gives power (IPMI, Redfish), `energy_j` where it gives an energy counter (RAPL). Each
sampler has its own rate (`hz`), which the recorder keeps.

auto takes every local source that answers (RAPL readable, ipmitool answering through the
host's /dev/ipmi0) and a remote BMC only when one is named (`--redfish`, `--ipmi-host`): the
agent never talks to a BMC it was not told about.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deepspark_agent.telemetry.ipmi import Bmc, IpmiSampler
from deepspark_agent.telemetry.rapl import RaplSampler
from deepspark_agent.telemetry.recorder import Sampler
from deepspark_agent.telemetry.redfish import RedfishSampler
from deepspark_agent.telemetry.smi import TelemetryError
from deepspark_core.errors import DeepSparkError

SOURCES = ("rapl", "ipmi", "redfish")
CHOICES = "auto, none, or a list of rapl, ipmi, redfish"

NodeFactory = Callable[[], list[Sampler]]  # a run's node samplers, made fresh for each run


class NodePowerError(DeepSparkError):
    """A node power choice this host cannot honour, or credentials that cannot be used."""


@dataclass(frozen=True)
class NodePowerChoice:
    """`--node-power` and the BMC it may name."""

    sources: str = "auto"
    redfish: str | None = None  # the BMC's Redfish service, https://HOST
    ipmi_host: str | None = None  # a remote BMC for ipmitool -I lanplus
    credentials: Path | None = None  # the BMC's user (first line) and password (second)
    ca_file: Path | None = None  # the CA that signed the BMC's TLS certificate


class NodeSampler(Sampler, Protocol):
    def describe(self) -> str:
        """What the source gives, in words (its domains, chassis, or reading)."""
        ...


def no_node_samplers() -> list[Sampler]:
    return []


def read_credentials(path: Path) -> tuple[str, str]:
    """(user, password) from a file only its owner can read, as an SSH key."""
    try:
        mode = path.stat().st_mode
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise NodePowerError(f"--bmc-credentials {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise NodePowerError(
            f"--bmc-credentials {path}: readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600` on it"
        )
    if len(lines) < 2 or not lines[0].strip():
        raise NodePowerError(f"--bmc-credentials {path}: expected the user, then the password")
    return lines[0].strip(), lines[1]


def _credentials(choice: NodePowerChoice, flag: str) -> tuple[str, str]:
    if choice.credentials is None:
        raise NodePowerError(f"{flag} needs --bmc-credentials FILE (user, password)")
    return read_credentials(choice.credentials)


def _maker(choice: NodePowerChoice, source: str) -> Callable[[], NodeSampler]:
    """How to make one source's sampler (it raises TelemetryError with the reason when the
    source does not answer); credentials are read once, here."""
    if source == "rapl":
        return RaplSampler
    if source == "ipmi":
        if choice.ipmi_host is None:
            return IpmiSampler
        bmc = Bmc(choice.ipmi_host, *_credentials(choice, "--ipmi-host"))
        return lambda: IpmiSampler(bmc)
    if choice.redfish is None:
        return _not_named
    if choice.ca_file is not None and not choice.ca_file.is_file():
        raise NodePowerError(f"--bmc-ca {choice.ca_file}: no such file")
    user, password = _credentials(choice, "--redfish")
    return lambda: RedfishSampler(choice.redfish, user, password, choice.ca_file)


def _not_named() -> NodeSampler:
    raise TelemetryError("no BMC named (--redfish URL)")


@dataclass(frozen=True)
class SourceState:
    """Whether one node source answers: what it gives, or why not."""

    name: str
    answers: bool
    detail: str


def probe(choice: NodePowerChoice, sources: tuple[str, ...] = SOURCES) -> list[SourceState]:
    """Each source tried once (a sampler made, read, closed)."""
    states = []
    for source in sources:
        try:
            sampler = _maker(choice, source)()
        except TelemetryError as exc:
            states.append(SourceState(source, False, str(exc)))
            continue
        states.append(SourceState(source, True, sampler.describe()))
        sampler.close()
    return states


def _asked(choice: NodePowerChoice) -> tuple[str, ...]:
    if choice.sources in ("auto", "none"):
        return SOURCES if choice.sources == "auto" else ()
    asked = tuple(s.strip() for s in choice.sources.split(",") if s.strip())
    unknown = [s for s in asked if s not in SOURCES]
    if unknown or not asked:
        raise NodePowerError(f"--node-power {choice.sources!r}: expected {CHOICES}")
    return asked


def local_sources(choice: NodePowerChoice) -> str:
    """`--node-power` for another node's agent (a Slurm job's): a BMC named here is this
    host's, so the sources that would reach it are left out."""
    if choice.sources in ("auto", "none"):
        return choice.sources
    remote = {"redfish"} | ({"ipmi"} if choice.ipmi_host else set())
    return ",".join(s for s in _asked(choice) if s not in remote) or "none"


def node_samplers(choice: NodePowerChoice) -> tuple[str, NodeFactory]:
    """(what was chosen, in words; the factory). A source listed, or a BMC named, must
    answer."""
    states = probe(choice, _asked(choice))
    named = {"redfish": choice.redfish is not None, "ipmi": choice.ipmi_host is not None}
    for state in states:
        if not state.answers and (choice.sources != "auto" or named.get(state.name)):
            raise NodePowerError(f"--node-power {state.name}: {state.detail}")
    answering = [s for s in states if s.answers]
    makers = [_maker(choice, s.name) for s in answering]

    def factory() -> list[Sampler]:
        samplers = []
        for make in makers:
            try:
                samplers.append(make())
            except TelemetryError:  # it stopped answering since: the run goes on without it
                continue
        return samplers

    if not answering:
        why = "; ".join(f"{s.name}: {s.detail}" for s in states) or "--node-power none"
        return f"none ({why})", factory
    words = ", ".join(f"{s.name} {s.detail}" for s in answering)
    return words, factory
