"""Vendor-tool telemetry: parsers on recorded outputs, and the sampler on a fake tool.

The recordings are real outputs (tests/data/vendor-smi/SOURCES.md says where each came from);
expected values are read off the files by hand, memory converted at 2**20 bytes per MiB.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path

import psutil
import pytest

from deepspark_agent.telemetry.smi import (
    TOOLS,
    SmiSampler,
    TelemetryError,
    parse_box_table,
    parse_hy_smi,
    parse_mthreads_gmi,
    parse_npu_smi_info,
    parse_query_csv,
    parse_rocm_smi_json,
    parse_xpu_smi_dump,
)

DATA = Path(__file__).parent / "data"
SMI = DATA / "vendor-smi"
FAKE = DATA / "fake_smi.py"
MiB = 2**20


def rec(name: str) -> str:
    return (SMI / name).read_text()


# --- nvidia-smi / ixsmi --query-gpu CSV -------------------------------------------------------

H100_IDLE = "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-h100-590.48.01-idle.txt"
H100_LOAD = "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-h100-590.48.01-load.txt"


def test_query_csv_header_with_units_h100() -> None:
    # power.draw.instant is preferred to power.draw (a 1 s average on Hopper), as NVML does.
    assert parse_query_csv(rec(H100_IDLE)) == {
        "nvidia:0": {
            "power_w": 69.62,
            "mem_used_bytes": 0,
            "mem_total_bytes": 81559 * MiB,
            "util_percent": 0,
            "temp_c": 41,
            "sm_clock_mhz": 345,
        }
    }
    assert parse_query_csv(rec(H100_LOAD))["nvidia:0"] == {
        "power_w": 625.68,
        "mem_used_bytes": 19818 * MiB,
        "mem_total_bytes": 81559 * MiB,
        "util_percent": 100,
        "temp_c": 59,
        "sm_clock_mhz": 1980,
    }


def test_query_csv_header_with_units_windows() -> None:
    name = "nvidia-smi__query-gpu-csv-header-units__nvgpuexp-rtx2080super-win-591.86-idle.txt"
    assert parse_query_csv(rec(name))["nvidia:0"] == {
        "power_w": 38.92,
        "mem_used_bytes": 702 * MiB,
        "mem_total_bytes": 8192 * MiB,
        "util_percent": 0,
        "temp_c": 40,
        "sm_clock_mhz": 300,
    }


def test_query_csv_header_nounits_without_index_column() -> None:
    # No index queried: the row's position is the index. No memory.total queried: absent.
    text = rec("nvidia-smi__query-gpu-csv-header-nounits__netdata-tesla-p100.txt")
    assert parse_query_csv(text) == {
        "nvidia:0": {
            "power_w": 28.16,
            "mem_used_bytes": 0,
            "util_percent": 0,
            "temp_c": 37,
            "sm_clock_mhz": 405,
        }
    }


def test_query_csv_noheader_read_by_the_query_fields() -> None:
    fields = [
        "power.limit",
        "power.min_limit",
        "power.max_limit",
        "memory.total",
        "vbios_version",
        "driver_version",
        "name",
        "gpu_uuid",
        "power.draw",
        "temperature.gpu",
        "temperature.memory",
        "clocks.current.graphics",
        "clocks.sm",
        "clocks.mem",
        "utilization.gpu",
        "utilization.memory",
        "fan.speed",
        "pcie.link.width.current",
        "pstate",
    ]
    text = rec("nvidia-smi__query-gpu-csv-noheader-nounits__rickslab-issue83-rtx2080-440.64.txt")
    assert parse_query_csv(text, fields=fields) == {
        "nvidia:0": {
            "power_w": 176.98,
            "mem_total_bytes": 7979 * MiB,
            "util_percent": 86,
            "temp_c": 45,
            "sm_clock_mhz": 1965,
        }
    }


def test_ixsmi_query_csv_keeps_units_on_values() -> None:
    fields = ["index", "name", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu"]
    text = rec("ixsmi__query-gpu-csv-noheader-units__gpustack-docstring-mr-v50-mr-v100.txt")
    readings = parse_query_csv(text, vendor="iluvatar", fields=fields)
    assert readings["iluvatar:0"]["mem_total_bytes"] == 16384 * MiB
    assert readings["iluvatar:1"] == {
        "mem_used_bytes": 27996 * MiB,
        "mem_total_bytes": 32768 * MiB,
        "util_percent": 0,
        "temp_c": 36,  # printed "36 C"
    }


def test_query_csv_unavailable_values_are_absent() -> None:
    line = "3, [N/A], 512 MiB, [Not Supported], N/A, , 1410 MHz\n"
    assert parse_query_csv(line) == {
        "nvidia:3": {"mem_used_bytes": 512 * MiB, "sm_clock_mhz": 1410}
    }
    # An unavailable preferred field falls back to the next one for the same metric.
    text = "index, power.draw.instant [W], power.draw [W]\n0, [N/A], 12.50 W\n"
    assert parse_query_csv(text) == {"nvidia:0": {"power_w": 12.5}}


# --- default tables ---------------------------------------------------------------------------


def test_nvidia_default_table() -> None:
    text = rec("nvidia-smi__default-table__nvgpuexp-h100-590.48.01-idle.txt")
    assert parse_box_table(text, "nvidia") == {
        "nvidia:0": {
            "power_w": 69,
            "temp_c": 41,
            "util_percent": 0,
            "mem_used_bytes": 0,
            "mem_total_bytes": 81559 * MiB,
        }
    }


def test_nvidia_default_table_with_mig() -> None:
    # GPU-Util is N/A under MIG: absent. The MIG devices table is not read as devices.
    text = rec("nvidia-smi__default-table-mig__nvgpuexp-h100mig-590.48.01-idle.txt")
    assert parse_box_table(text, "nvidia") == {
        "nvidia:0": {
            "power_w": 98,
            "temp_c": 42,
            "mem_used_bytes": 59 * MiB,
            "mem_total_bytes": 81559 * MiB,
        }
    }


def test_ixsmi_default_tables() -> None:
    v150 = parse_box_table(
        rec("ixsmi__default-table__paddlenlp-bi-v150x16-ixml4.1.0.txt"), "iluvatar"
    )
    assert len(v150) == 16
    assert v150["iluvatar:1"] == {
        "power_w": 93,
        "temp_c": 30,
        "util_percent": 0,
        "sm_clock_mhz": 1500,
        "mem_used_bytes": 116 * MiB,
        "mem_total_bytes": 32768 * MiB,
    }
    assert "power_w" not in v150["iluvatar:0"]  # "N/A / N/A": the board's other die reports
    name = "ixsmi__default-table__unknownrepo-mr-v100-duo-ixml4.4.0.txt"
    assert parse_box_table(rec(name), "iluvatar")["iluvatar:1"] == {
        "power_w": 40,
        "temp_c": 36,
        "util_percent": 0,
        "sm_clock_mhz": 500,
        "mem_used_bytes": 68 * MiB,
        "mem_total_bytes": 32768 * MiB,
    }


def test_cnmon_default_table() -> None:
    readings = parse_box_table(
        rec("cnmon__default-table__paddlenlp-mlu-cnmon5.10.31.txt"), "cambricon"
    )
    assert len(readings) == 8
    # The recording's memory total is anonymised ("xxxxx MiB"): absent, the used side kept.
    assert readings["cambricon:3"] == {
        "power_w": 109,
        "temp_c": 34,
        "util_percent": 0,
        "mem_used_bytes": 0,
    }


def test_mx_smi_default_table() -> None:
    readings = parse_box_table(
        rec("mx-smi__default-table__paddlenlp-c550x8-mxsmi2.1.6.txt"), "metax"
    )
    assert len(readings) == 8
    assert readings["metax:0"] == {
        "power_w": 44,
        "temp_c": 31,
        "util_percent": 0,
        "mem_used_bytes": 810 * MiB,
        "mem_total_bytes": 65536 * MiB,
    }


def test_kunlunxin_xpu_smi_default_table() -> None:
    text = rec("xpu_smi__default-table__paddlefleet-kunlunxin-p800x8.txt")
    readings = parse_box_table(text, "kunlunxin")
    assert len(readings) == 8
    assert readings["kunlunxin:7"] == {
        "power_w": 88,
        "temp_c": 42,
        "util_percent": 0,
        "mem_used_bytes": 0,
        "mem_total_bytes": 98304 * MiB,  # Memory-Usage, not the L3-Usage row below it
    }


def test_npu_smi_training_chips_report_hbm() -> None:
    text = rec("npu-smi__info-table__gpustack-atlas800-9010-910A-npusmi22.0.3.1.txt")
    readings = parse_npu_smi_info(text)
    assert sorted(readings) == [f"ascend:{i}" for i in range(8)]
    assert readings["ascend:3"] == {
        "power_w": 191.7,
        "temp_c": 42,
        "util_percent": 0,
        "mem_used_bytes": 0,
        "mem_total_bytes": 32768 * MiB,  # HBM-Usage(MB), not the 15077 MB of Memory-Usage
    }
    text = rec("npu-smi__info-table-with-processes__gpustack-atlas800-9010-npusmi24.1.RC2.txt")
    readings = parse_npu_smi_info(text)
    assert len(readings) == 8  # the process table is not read as devices
    assert readings["ascend:7"]["power_w"] == 203.2


def test_npu_smi_310_uses_the_device_column() -> None:
    old = parse_npu_smi_info(
        rec("npu-smi__info-table__gpustack-atlas800-3000-310-npusmi20.2.0.txt")
    )
    assert old["ascend:3"] == {
        "power_w": 12.8,
        "temp_c": 55,
        "util_percent": 0,
        "mem_used_bytes": 2703 * MiB,
        "mem_total_bytes": 8192 * MiB,
    }
    text = rec("npu-smi__info-table__gpustack-atlas800-3000-310-npusmi21.0.4.txt")
    new = parse_npu_smi_info(text)
    assert sorted(new) == ["ascend:3", "ascend:4", "ascend:5", "ascend:6"]
    # The Hugepages-Usage cell ("0        / 970") is not taken for memory or temperature.
    assert new["ascend:4"] == {
        "power_w": 12.8,
        "temp_c": 74,
        "util_percent": 0,
        "mem_used_bytes": 2867 * MiB,
        "mem_total_bytes": 8192 * MiB,
    }


def test_hy_smi_default_tables() -> None:
    dcu = parse_hy_smi(rec("hy-smi__default-table__paddlenlp-k100ai-dtk24.04.1.txt"))
    assert sorted(dcu) == [f"hygon:{i}" for i in range(4)]
    assert dcu["hygon:3"] == {"temp_c": 49, "power_w": 138, "util_percent": 0}
    hcu = parse_hy_smi(rec("hy-smi__default-table-hcu__unknownrepo-bw101.txt"))
    assert hcu == {"hygon:0": {"temp_c": 46, "power_w": 51, "util_percent": 0}}


def test_mthreads_gmi_default_tables() -> None:
    text = rec("mthreads-gmi__default-table__paddlefleet-musa-mtt-s5000x8-gmi2.4.1.txt")
    s5000 = parse_mthreads_gmi(text)
    assert len(s5000) == 8
    assert s5000["mthreads:5"] == {
        "util_percent": 0,
        "mem_used_bytes": 0,
        "mem_total_bytes": 81920 * MiB,
        "temp_c": 50,
    }
    s80 = parse_mthreads_gmi(rec("mthreads-gmi__default-table__unknownrepo-mtt-s80-gmi1.14.0.txt"))
    assert s80 == {
        "mthreads:0": {
            "util_percent": 0,
            "mem_used_bytes": 2 * MiB,
            "mem_total_bytes": 16384 * MiB,
            "temp_c": 49,
        }
    }


# --- JSON: rocm-smi -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "device", "expected"),
    [
        (
            "rocm-smi__json-showmeminfo-power-use-temp__gpustack-rx7800xt-rocm6.2.4.json.txt",
            "amd:0",
            {
                "power_w": 53,
                "temp_c": 45,
                "util_percent": 100,
                "mem_used_bytes": 11615076352,
                "mem_total_bytes": 17163091968,
            },
        ),
        (
            "rocm-smi__json-telegraf-fullset__telegraf-mi100x4-rocm6.0.2.json.txt",
            "amd:3",
            {
                "power_w": 39,
                "temp_c": 51,
                "util_percent": 0,
                "mem_used_bytes": 6750208,  # VRAM, not VIS_VRAM or GTT
                "mem_total_bytes": 34342961152,
                "sm_clock_mhz": 300,
            },
        ),
        (
            "rocm-smi__json-telegraf-fullset__telegraf-rx6700xt-rocm4.3.0.json.txt",
            "amd:0",
            {
                "power_w": 6,
                "temp_c": 45,
                "util_percent": 0,
                "mem_used_bytes": 1622728704,
                "mem_total_bytes": 12868124672,
                "sm_clock_mhz": 500,
            },
        ),
        (
            "rocm-smi__json-telegraf-fullset__telegraf-rx6700xt-rocm6.1.2.json.txt",
            "amd:0",
            {
                "power_w": 6,
                "temp_c": 45,
                "util_percent": 0,
                "mem_used_bytes": 1572745216,
                "mem_total_bytes": 12868124672,
                "sm_clock_mhz": 0,
            },
        ),
        (
            "rocm-smi-dtk__json-hygon-dcu__gpustack-dtk24.04.3.json.txt",
            "hygon:0",
            {
                "power_w": 80,
                "temp_c": 41,
                "util_percent": 0,
                "mem_used_bytes": 2 * MiB,
                "mem_total_bytes": 65520 * MiB,
            },
        ),
    ],
)
def test_rocm_smi_json(name: str, device: str, expected: dict[str, float]) -> None:
    readings = parse_rocm_smi_json(rec(name))
    assert readings[device] == expected


def test_rocm_smi_json_secondary_die_and_socket_power() -> None:
    doc = {
        "card0": {"Average Graphics Package Power (W)": "N/A (Secondary die)", "GPU use (%)": "7"},
        "card1": {
            "Current Socket Graphics Package Power (W)": "741.0",
            "Temperature (Sensor edge) (C)": "N/A",
            "Temperature (Sensor junction) (C)": "61.0",
        },
        "system": {"Driver version": "6.8.5"},
    }
    assert parse_rocm_smi_json(json.dumps(doc)) == {
        "amd:0": {"util_percent": 7},
        "amd:1": {"power_w": 741, "temp_c": 61},
    }


# --- Intel xpu-smi dump ---------------------------------------------------------------------------


def test_xpu_smi_dump_gives_each_devices_last_line() -> None:
    readings = parse_xpu_smi_dump(rec("xpu-smi__dump-csv__alcf-aurora-max1550x6.txt"))
    assert sorted(readings) == [f"intel-xpu:{i}" for i in range(6)]
    # GPU Utilization is N/A throughout; memory *utilization* is not a metric here.
    assert readings["intel-xpu:0"] == {"power_w": 280.21, "sm_clock_mhz": 1600}
    assert readings["intel-xpu:5"] == {"power_w": 285.54, "sm_clock_mhz": 1600}


def test_xpu_smi_dump_empty_fields_are_absent() -> None:
    text = rec("xpu-smi__dump-csv-empty-fields__xpumanager-issue69-flex170.txt")
    assert parse_xpu_smi_dump(text) == {"intel-xpu:0": {"power_w": 43.70, "sm_clock_mhz": 2050}}


# --- what is not a record ---------------------------------------------------------------------

PARSERS: dict[str, Callable[[str], dict[str, dict[str, float]]]] = {
    "query_csv": parse_query_csv,
    "rocm_smi_json": parse_rocm_smi_json,
    "xpu_smi_dump": parse_xpu_smi_dump,
    "box_table": partial(parse_box_table, vendor="nvidia"),
    "npu_smi_info": parse_npu_smi_info,
    "hy_smi": parse_hy_smi,
    "mthreads_gmi": parse_mthreads_gmi,
}
NOT_RECORDS = [
    "",
    "\n\n",
    "garbage\n",
    "\x00\xff{[|,,|]}\n",
    "[1, 2]",
    '{"card0": "N/A"}',
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
    'Field "clocks.sm" is not a valid field to query.\n',
]


@pytest.mark.parametrize("parser", PARSERS.values(), ids=PARSERS.keys())
@pytest.mark.parametrize("text", NOT_RECORDS)
def test_what_is_not_a_record_reads_as_no_devices(parser: Callable, text: str) -> None:
    assert parser(text) == {}


# --- the tools and the sampler ------------------------------------------------------------------


def test_nvidia_smi_streams_with_its_loop_flag() -> None:
    assert " ".join(TOOLS["nvidia-smi"].command) == (
        "nvidia-smi --query-gpu=index,power.draw,memory.used,memory.total,utilization.gpu,"
        "temperature.gpu,clocks.sm --format=csv,noheader,nounits -lms 100"
    )
    assert TOOLS["nvidia-smi"].poll_s is None and TOOLS["rocm-smi"].poll_s is not None


@pytest.mark.parametrize(
    ("tool", "name", "device"),
    [
        (
            "npu-smi",
            "npu-smi__info-table__gpustack-atlas800-9010-910A-npusmi22.0.3.1.txt",
            "ascend:0",
        ),
        ("cnmon", "cnmon__default-table__paddlenlp-mlu-cnmon5.10.31.txt", "cambricon:0"),
        ("hy-smi", "hy-smi__default-table__paddlenlp-k100ai-dtk24.04.1.txt", "hygon:0"),
        (
            "mthreads-gmi",
            "mthreads-gmi__default-table__unknownrepo-mtt-s80-gmi1.14.0.txt",
            "mthreads:0",
        ),
        ("mx-smi", "mx-smi__default-table__paddlenlp-c550x8-mxsmi2.1.6.txt", "metax:0"),
        ("xpu_smi", "xpu_smi__default-table__paddlefleet-kunlunxin-p800x8.txt", "kunlunxin:0"),
        (
            "rocm-smi",
            "rocm-smi__json-telegraf-fullset__telegraf-mi100x4-rocm6.0.2.json.txt",
            "amd:0",
        ),
    ],
)
def test_polled_tools_parse_their_whole_output(tool: str, name: str, device: str) -> None:
    assert TOOLS[tool].parse(rec(name))[device]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """make(binary name, *recorded files, once=, period=) -> path of a fake tool to run."""
    monkeypatch.setenv("FAKE_SMI_LOG", str(tmp_path / "starts.log"))

    def make(binary: str, *files: Path, once: bool = False, period: float = 0.05) -> str:
        monkeypatch.setenv("FAKE_SMI_FILES", os.pathsep.join(str(f) for f in files))
        monkeypatch.setenv("FAKE_SMI_PERIOD", str(period))
        if once:
            monkeypatch.setenv("FAKE_SMI_ONCE", "1")
        path = tmp_path / binary
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        path.chmod(0o755)
        return str(path)

    return make


def starts(tmp_path: Path) -> list[int]:
    log = tmp_path / "starts.log"
    return [int(pid) for pid in log.read_text().split()] if log.exists() else []


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sampler_streams_one_process_whose_readings_refresh(fake, tmp_path: Path) -> None:
    # The fake answers the sampler's real --query-gpu command from the idle and load captures,
    # alternately, every 100 ms (-lms 100).
    binary = fake("nvidia-smi", SMI / H100_IDLE, SMI / H100_LOAD)
    with closing(SmiSampler("nvidia-smi", binary=binary)) as sampler:
        assert sampler.scope == "accelerator"
        powers: set[float] = set()

        def both_seen() -> bool:
            powers.add(sampler.read().get("nvidia:0", {}).get("power_w", 0.0))
            return {69.85, 631.95} <= powers  # power.draw, the field the command asks for

        wait_for(both_seen)
        wait_for(lambda: sampler.read()["nvidia:0"]["power_w"] == 631.95)
        assert sampler.read() == {
            "nvidia:0": {
                "power_w": 631.95,
                "mem_used_bytes": 19818 * MiB,
                "mem_total_bytes": 81559 * MiB,
                "util_percent": 100,
                "temp_c": 59,
                "sm_clock_mhz": 1980,
            }
        }
        [pid] = starts(tmp_path)  # one process for the sampler's life
        assert psutil.pid_exists(pid)
    assert not psutil.pid_exists(pid)


def test_sampler_reads_nothing_before_the_first_record(fake, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with closing(SmiSampler("nvidia-smi", binary=fake("nvidia-smi", empty))) as sampler:
        wait_for(lambda: starts(tmp_path))
        time.sleep(0.1)
        assert sampler.read() == {}
    assert not psutil.pid_exists(starts(tmp_path)[0])


def test_sampler_keeps_a_streams_header(fake, tmp_path: Path) -> None:
    # xpu-smi dump prints its header once; the fake prints the recording once, then waits.
    binary = fake("xpu-smi", SMI / "xpu-smi__dump-csv__alcf-aurora-max1550x6.txt", period=10)
    with closing(SmiSampler("xpu-smi", binary=binary)) as sampler:
        wait_for(lambda: sampler.read().get("intel-xpu:5", {}).get("power_w") == 285.54)
        assert sampler.read()["intel-xpu:0"] == {"power_w": 280.21, "sm_clock_mhz": 1600}
    assert not psutil.pid_exists(starts(tmp_path)[0])


def test_sampler_polls_a_tool_without_a_loop_flag(fake, tmp_path: Path) -> None:
    name = "rocm-smi__json-telegraf-fullset__telegraf-mi100x4-rocm6.0.2.json.txt"
    binary = fake("rocm-smi", SMI / name, once=True)
    with closing(SmiSampler("rocm-smi", binary=binary, poll_s=0.05)) as sampler:
        wait_for(lambda: len(starts(tmp_path)) >= 3)  # one process per tick
        assert sorted(sampler.read()) == ["amd:0", "amd:1", "amd:2", "amd:3"]
        assert sampler.read()["amd:3"]["power_w"] == 39
    assert not any(psutil.pid_exists(pid) for pid in starts(tmp_path))


def test_a_stream_that_ends_leaves_no_stale_readings(fake, tmp_path: Path) -> None:
    binary = fake("nvidia-smi", SMI / H100_IDLE, once=True)  # prints one record and exits
    with closing(SmiSampler("nvidia-smi", binary=binary)) as sampler:
        wait_for(lambda: sampler.error is not None)
        assert sampler.read() == {}
        assert "exited (0)" in sampler.error


def test_a_missing_tool_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TelemetryError, match="not found") as missing:
        SmiSampler("nvidia-smi", binary=str(tmp_path / "nvidia-smi"))
    assert "\n" not in str(missing.value)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TelemetryError, match="'npu-smi' not found"):
        SmiSampler("npu-smi")
    with pytest.raises(TelemetryError, match="unknown telemetry tool"):
        SmiSampler("no-such-smi")


@pytest.fixture(autouse=True)
def _no_leftover_children() -> Iterator[None]:
    """No tool process a test started outlives it (others' fixtures may hold their own)."""
    before = set(psutil.Process().children(recursive=True))
    yield
    assert not set(psutil.Process().children(recursive=True)) - before
