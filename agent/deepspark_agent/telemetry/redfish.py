"""Node power from a BMC's Redfish service: each chassis's power, once per tick.

The chassis come from `/redfish/v1/Chassis`. A chassis's power is read, in this order, from
what it links to (DMTF's schemas; their public mockups are the tests' recorded JSON):

* `EnvironmentMetrics` (Redfish 2020.4 and later): `PowerWatts.Reading`, the chassis's power
  sensor, the newer model's place for it beside `PowerSubsystem`;
* `Power` (deprecated since 2020.4, what most BMCs in service still serve):
  `PowerControl[].PowerConsumedWatts`, the first entry that has one (the chassis's input
  power; further entries, where a BMC has them, are parts of it).

`PowerSubsystem`'s supplies are not summed: a supply without metrics would make the sum a
silent undercount. A chassis with neither reading (an enclosure, a backplane) is left out.
Basic authentication; TLS always verified, against the system's CAs or the CA file given (a
BMC's own certificate authority).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from deepspark_agent.telemetry.smi import TelemetryError

HZ = 1.0
TIMEOUT_S = 5.0
CHASSIS = "/redfish/v1/Chassis"


def _link(resource: Any, key: str) -> str | None:
    link = resource.get(key) if isinstance(resource, dict) else None
    target = link.get("@odata.id") if isinstance(link, dict) else None
    return target if isinstance(target, str) else None


def _watts(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def chassis_members(collection: Any) -> list[str]:
    """The chassis URLs of a `ChassisCollection`."""
    members = collection.get("Members") if isinstance(collection, dict) else None
    return [m for m in map(lambda m: _link({"m": m}, "m"), members or []) if m]


def environment_power_w(metrics: Any) -> float | None:
    """`EnvironmentMetrics.PowerWatts.Reading`."""
    power = metrics.get("PowerWatts") if isinstance(metrics, dict) else None
    return _watts(power.get("Reading")) if isinstance(power, dict) else None


def power_control_w(power: Any) -> float | None:
    """The first `Power.PowerControl[].PowerConsumedWatts`."""
    controls = power.get("PowerControl") if isinstance(power, dict) else None
    for control in controls if isinstance(controls, list) else []:
        watts = _watts(control.get("PowerConsumedWatts")) if isinstance(control, dict) else None
        if watts is not None:
            return watts
    return None


READERS = (("EnvironmentMetrics", environment_power_w), ("Power", power_control_w))


class RedfishSampler:
    """Each chassis's power in watts, devices "redfish:<chassis id>", scope "node". Raises
    TelemetryError when the service does not answer or no chassis reports power."""

    scope = "node"
    hz = HZ

    def __init__(self, url: str, user: str, password: str, ca_file: Path | None = None) -> None:
        verify = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._client = httpx.Client(
            base_url=url.rstrip("/"), auth=(user, password), verify=verify, timeout=TIMEOUT_S
        )
        self._url = url
        try:
            self._sources = self._discover()
        except TelemetryError:
            self._client.close()
            raise

    def _get(self, path: str) -> Any:
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise TelemetryError(f"redfish {self._url}: {exc}") from None
        if response.status_code == 401:
            raise TelemetryError(f"redfish {self._url}: 401 unauthorized (the credentials)")
        if response.status_code != 200:
            raise TelemetryError(f"redfish {self._url}{path}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise TelemetryError(f"redfish {self._url}{path}: not JSON") from None

    def _discover(self) -> dict[str, tuple[str, Any]]:
        """{device: (URL, reader)} of every chassis with a power reading."""
        sources: dict[str, tuple[str, Any]] = {}
        for member in chassis_members(self._get(CHASSIS)):
            chassis = self._get(member)
            device = f"redfish:{chassis.get('Id') or member.rstrip('/').rsplit('/', 1)[-1]}"
            for key, reader in READERS:
                link = _link(chassis, key)
                try:
                    found = link and reader(self._get(link)) is not None
                except TelemetryError:  # a link that does not answer: try the next
                    found = False
                if found:
                    sources[device] = (link, reader)
                    break
        if not sources:
            raise TelemetryError(f"redfish {self._url}: no chassis reports power")
        return sources

    def describe(self) -> str:
        return ", ".join(d.removeprefix("redfish:") for d in self._sources) + f" at {self._url}"

    def read(self) -> dict[str, dict[str, float]]:
        readings: dict[str, dict[str, float]] = {}
        for device, (link, reader) in self._sources.items():
            try:
                watts = reader(self._get(link))
            except TelemetryError:
                continue
            if watts is not None:
                readings[device] = {"power_w": watts}
        return readings

    def close(self) -> None:
        self._client.close()
