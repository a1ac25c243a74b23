"""Node power sources: IPMI DCMI and Redfish on recorded outputs (tests/data/node-power,
SOURCES.md), RAPL on generated sysfs trees, the recorder at each source's own rate, and a run
that records the node beside the workload."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import DATA
from deepspark_agent.telemetry import Recorder
from deepspark_agent.telemetry.ipmi import Bmc, IpmiSampler, dcmi_power_w, parse_dcmi_power
from deepspark_agent.telemetry.node import (
    NodePowerChoice,
    NodePowerError,
    local_sources,
    node_samplers,
    read_credentials,
)
from deepspark_agent.telemetry.rapl import ROOT_ENV, RaplSampler, unwrap
from deepspark_agent.telemetry.redfish import RedfishSampler
from deepspark_agent.telemetry.smi import TelemetryError
from deepspark_core.results import Result
from deepspark_core.series import load_series

NODE = DATA / "node-power"


# --- IPMI DCMI --------------------------------------------------------------------------


def test_dcmi_readings_of_two_vendors_bmcs():
    supermicro = parse_dcmi_power((NODE / "ipmitool-supermicro.txt").read_text())
    assert supermicro is not None
    assert (supermicro.power_w, supermicro.min_w, supermicro.max_w) == (109, 38, 242)
    assert (supermicro.average_w, supermicro.period_s) == (102, 65530)  # on the timestamp's line
    assert supermicro.active is None  # the state was cut off: the reading stands
    activated = (NODE / "ipmitool-activated.txt").read_text()
    assert parse_dcmi_power(activated).active is True
    assert dcmi_power_w(activated) == 186
    # IBM's OpenBMC: a stale 319 W under "deactivated" is no reading.
    witherspoon = (NODE / "ipmitool-ibm-witherspoon.txt").read_text()
    assert parse_dcmi_power(witherspoon).power_w == 319
    assert dcmi_power_w(witherspoon) is None
    assert dcmi_power_w((NODE / "ipmitool-no-device.txt").read_text()) is None
    assert parse_dcmi_power("") is None


@pytest.fixture
def fake_ipmitool(tmp_path, monkeypatch):
    """An `ipmitool` on PATH that prints a recorded output (and notes its argv and password)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "ipmitool"
    log = tmp_path / "ipmitool.log"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$* password=$IPMI_PASSWORD" >> {log}\n'
        f'if [ -n "$FAKE_IPMI_FAIL" ]; then cat "$FAKE_IPMI_FAIL" >&2; exit 1; fi\n'
        f'cat "$FAKE_IPMI_OUTPUT"\n'
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_IPMI_OUTPUT", str(NODE / "ipmitool-activated.txt"))
    dev = tmp_path / "dev"
    dev.mkdir()
    return dev, log


def test_ipmi_sampler_reads_through_the_in_band_interface_or_says_why_not(
    fake_ipmitool, monkeypatch
):
    dev, _ = fake_ipmitool
    with pytest.raises(TelemetryError, match=r"no .*ipmi0"):
        IpmiSampler(dev=dev)
    (dev / "ipmi0").touch()
    sampler = IpmiSampler(dev=dev)
    assert (sampler.scope, sampler.hz) == ("node", 1.0)
    assert sampler.read() == {"ipmi": {"power_w": 186.0}}
    monkeypatch.setenv("FAKE_IPMI_OUTPUT", str(NODE / "ipmitool-ibm-witherspoon.txt"))
    assert sampler.read() == {}
    with pytest.raises(TelemetryError, match="deactivated"):
        IpmiSampler(dev=dev)
    monkeypatch.setenv("FAKE_IPMI_FAIL", str(NODE / "ipmitool-no-device.txt"))
    with pytest.raises(TelemetryError, match="Could not open device at /dev/ipmi0"):
        IpmiSampler(dev=dev)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TelemetryError, match="ipmitool not installed"):
        IpmiSampler(dev=dev)


def test_a_remote_bmc_gets_its_password_in_the_environment_not_the_command_line(fake_ipmitool):
    _, log = fake_ipmitool
    IpmiSampler(Bmc("bmc.example", "admin", "s3cret"))  # no /dev/ipmi0 needed
    line = log.read_text().splitlines()[-1]
    assert line.startswith("-I lanplus -H bmc.example -U admin -E dcmi power reading")
    assert line.count("s3cret") == 1 and line.endswith("password=s3cret")


# --- RAPL -------------------------------------------------------------------------------


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(f"{label}\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def rapl_tree(root: Path) -> Path:
    """Two packages, package 0 with core and dram subzones, and the MMIO duplicate."""
    zone(root, "intel-rapl:0", "package-0", 900_000)
    zone(root, "intel-rapl:0:0", "core", 5)
    zone(root, "intel-rapl:0:1", "dram", 10)
    zone(root, "intel-rapl:1", "package-1", 0)
    zone(root, "intel-rapl-mmio:0", "package-0", 7)
    return root


def test_unwrap_adds_the_range_when_the_counter_wrapped():
    assert unwrap(100, 250, 1000) == 150
    assert unwrap(900, 100, 1000) == 200


def test_rapl_counters_become_cumulative_joules_across_a_wrap(tmp_path):
    root = rapl_tree(tmp_path / "powercap")
    sampler = RaplSampler(root)
    assert sampler.describe() == "package-0, dram-0, package-1 (energy counters)"
    assert (sampler.scope, sampler.hz) == ("node", 10.0)
    first = sampler.read()
    assert first["rapl:package-0"] == {"energy_j": 0.9}
    assert set(first) == {"rapl:package-0", "rapl:dram-0", "rapl:package-1"}
    (root / "intel-rapl:0" / "energy_uj").write_text("100000\n")  # wrapped at 1 J
    assert sampler.read()["rapl:package-0"]["energy_j"] == pytest.approx(1.1)
    (root / "intel-rapl:0" / "energy_uj").write_text("400000\n")
    assert sampler.read()["rapl:package-0"]["energy_j"] == pytest.approx(1.4)


def test_rapl_that_cannot_be_read_is_a_reason(tmp_path, monkeypatch):
    with pytest.raises(TelemetryError, match="no RAPL package zone"):
        RaplSampler(tmp_path)
    root = rapl_tree(tmp_path / "powercap")
    real = Path.read_text

    def root_only(path: Path, *args, **kwargs) -> str:  # as Linux 5.10+ for a non-root user
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    with pytest.raises(TelemetryError, match=r"energy_uj not readable \(root only\)"):
        RaplSampler(root)


# --- Redfish ----------------------------------------------------------------------------

USER, PASSWORD = "admin", "redfish-pw"
REDFISH = NODE / "redfish"


def routes(schema: str) -> dict[str, bytes]:
    """The recorded files of one schema, at the URL each names."""
    files = [REDFISH / "chassis-collection.json", *sorted((REDFISH / schema).glob("*.json"))]
    return {json.loads(f.read_text())["@odata.id"]: f.read_bytes() for f in files}


def without_power(chassis: bytes, chassis_id: str) -> bytes:
    """A chassis that links to no power resource (an enclosure, a backplane): the recorded
    chassis with its power links taken out, renamed."""
    body = json.loads(chassis)
    for key in ("Power", "PowerSubsystem", "EnvironmentMetrics"):
        body.pop(key, None)
    body["Id"], body["@odata.id"] = chassis_id, f"/redfish/v1/Chassis/{chassis_id}"
    return json.dumps(body).encode()


@pytest.fixture
def bmc():
    """A local Redfish service (stdlib http.server in a thread) with basic auth; the test
    sets `served` to the routes it wants."""
    served: dict[str, bytes] = {}
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Basic {token}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="redfish"')
                self.end_headers()
                return
            body = served.get(self.path.rstrip("/"))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", served
    server.shutdown()
    server.server_close()


def test_redfish_reads_the_deprecated_power_and_the_newer_environment_metrics(bmc):
    url, served = bmc
    served.update(routes("power-2019"))
    sampler = RedfishSampler(url, USER, PASSWORD)
    assert (sampler.scope, sampler.hz) == ("node", 1.0)
    assert sampler.read() == {"redfish:1U": {"power_w": 344.0}}  # PowerControl[0]
    sampler.close()
    served.clear()
    served.update(routes("environment-2022"))  # Power is linked too, but not served: not read
    sampler = RedfishSampler(url, USER, PASSWORD)
    assert sampler.read() == {"redfish:1U": {"power_w": 374.0}}  # EnvironmentMetrics.PowerWatts
    sampler.close()


def test_redfish_leaves_out_a_chassis_without_power_and_says_when_none_has_it(bmc):
    url, served = bmc
    served.update(routes("power-2019"))
    chassis = served["/redfish/v1/Chassis/1U"]
    served["/redfish/v1/Chassis/Backplane"] = without_power(chassis, "Backplane")
    collection = json.loads(served["/redfish/v1/Chassis"])
    collection["Members"].append({"@odata.id": "/redfish/v1/Chassis/Backplane"})
    served["/redfish/v1/Chassis"] = json.dumps(collection).encode()
    sampler = RedfishSampler(url, USER, PASSWORD)
    assert sampler.read() == {"redfish:1U": {"power_w": 344.0}}
    sampler.close()
    collection["Members"] = collection["Members"][1:]
    served["/redfish/v1/Chassis"] = json.dumps(collection).encode()
    with pytest.raises(TelemetryError, match="no chassis reports power"):
        RedfishSampler(url, USER, PASSWORD)


def test_redfish_wrong_credentials_are_a_401(bmc):
    url, served = bmc
    served.update(routes("power-2019"))
    with pytest.raises(TelemetryError, match="401 unauthorized"):
        RedfishSampler(url, USER, "wrong")


def test_credentials_files_are_guarded_like_an_ssh_key(tmp_path):
    path = tmp_path / "bmc"
    path.write_text(f"{USER}\n{PASSWORD}\n")
    path.chmod(0o644)
    with pytest.raises(NodePowerError, match=r"mode 0644\); run `chmod 600`"):
        read_credentials(path)
    path.chmod(0o600)
    assert read_credentials(path) == (USER, PASSWORD)
    path.write_text("only-a-user\n")
    with pytest.raises(NodePowerError, match="expected the user, then the password"):
        read_credentials(path)


def test_node_power_choices(bmc, tmp_path, monkeypatch):
    url, served = bmc
    served.update(routes("environment-2022"))
    monkeypatch.setenv(ROOT_ENV, str(rapl_tree(tmp_path / "powercap")))
    monkeypatch.setenv("PATH", "/nonexistent")  # no ipmitool
    words, factory = node_samplers(NodePowerChoice("auto"))
    assert words == "rapl package-0, dram-0, package-1 (energy counters)"  # no BMC unless named
    assert [s.scope for s in factory()] == ["node"]
    with pytest.raises(NodePowerError, match="--node-power ipmi: ipmitool not installed"):
        node_samplers(NodePowerChoice("ipmi"))
    with pytest.raises(NodePowerError, match="--redfish needs --bmc-credentials"):
        node_samplers(NodePowerChoice("redfish", redfish=url))
    with pytest.raises(NodePowerError, match="expected auto, none, or a list"):
        node_samplers(NodePowerChoice("rapl,bogus"))
    credentials = tmp_path / "bmc"
    credentials.write_text(f"{USER}\n{PASSWORD}\n")
    credentials.chmod(0o600)
    named = NodePowerChoice("auto", redfish=url, credentials=credentials)
    words, factory = node_samplers(named)
    assert "redfish 1U at http://127.0.0.1" in words
    assert sorted(type(s).__name__ for s in factory()) == ["RaplSampler", "RedfishSampler"]
    wrong = NodePowerChoice("auto", ipmi_host="bmc.example", credentials=credentials)
    with pytest.raises(NodePowerError, match="--node-power ipmi: ipmitool not installed"):
        node_samplers(wrong)  # a BMC named must answer, even under auto
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "empty"))
    words, factory = node_samplers(NodePowerChoice("auto"))
    assert words.startswith("none (rapl: no RAPL package zone") and factory() == []
    assert local_sources(NodePowerChoice("rapl,redfish", redfish=url)) == "rapl"
    assert local_sources(NodePowerChoice("ipmi", ipmi_host="bmc")) == "none"


# --- the recorder and a run -------------------------------------------------------------


class Fixed:
    def __init__(self, device: str, hz: float | None, delay_s: float = 0.0) -> None:
        self.scope, self.device, self.hz, self.delay_s = "node", device, hz, delay_s

    def read(self) -> dict[str, dict[str, float]]:
        time.sleep(self.delay_s)  # a slow source: an ipmitool process, a BMC's answer
        return {self.device: {"power_w": 1.0}}

    def close(self) -> None:
        pass


def test_the_recorder_reads_each_source_at_its_own_rate(tmp_path):
    path = tmp_path / "telemetry.jsonl"
    samplers = [Fixed("fast", None), Fixed("slow", 2.0, delay_s=0.3)]
    with Recorder(samplers, path, hz=20):  # the fast one at the recorder's rate
        time.sleep(2.0)
    counts = Counter(json.loads(line)["device"] for line in path.read_text().splitlines())
    assert 3 <= counts["slow"] <= 6  # 2 Hz over 2 s
    # The slow source's 0.3 s reads do not hold the fast one back: ~40 ticks at 20 Hz.
    assert counts["fast"] >= 30


def test_a_run_records_the_node_beside_the_workload(cli, sleeper, tmp_path, monkeypatch):
    root = rapl_tree(tmp_path / "powercap")
    monkeypatch.setenv(ROOT_ENV, str(root))
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "--node-power", "rapl", "--idle-seconds", "1",
        "--out", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert "node power: rapl package-0, dram-0, package-1 (energy counters)" in err
    # The idle floor sampled the node's sources too, and the row reads both (counters that
    # stood still: 0 W)
    result = Result.model_validate_json(out)
    assert set(result.idle.node_w) == {"rapl:package-0", "rapl:dram-0", "rapl:package-1"}
    assert set(result.idle.node_w.values()) == {0.0}
    sources = {s.source: s for s in result.dimensions.node_power}
    assert set(sources) == set(result.idle.node_w)
    assert sources["rapl:package-0"].hz > 5  # its own 10 Hz, from a run of seconds
    (run_set,) = (tmp_path / "out").iterdir()
    telemetry = run_set / "run-1" / "telemetry.jsonl"
    rows = [json.loads(line) for line in telemetry.read_text().splitlines()]
    node = [r for r in rows if r["scope"] == "node"]
    assert {r["device"] for r in node} == {"rapl:package-0", "rapl:dram-0", "rapl:package-1"}
    assert {r["energy_j"] for r in node if r["device"] == "rapl:package-0"} == {0.9}
    assert len(node) >= 3 * 5  # 10 Hz over a run of seconds
    # A node line is never a device's series: memory stays the process tree's.
    assert load_series(telemetry, "energy_j") is None
    assert load_series(telemetry, "mem_used_bytes")[0] == "process-tree"


def test_node_power_options_fail_in_one_line(cli, sleeper, tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "none"))
    code, _, err = cli("run", "sleeper", "--node-power", "rapl", "--out", str(tmp_path))
    assert code != 0 and "--node-power rapl: no RAPL package zone under" in err
    assert len(err.strip().splitlines()) <= 3, err
