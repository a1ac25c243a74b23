"""Accelerator telemetry from vendors' monitoring tools (nvidia-smi, ixsmi, npu-smi, ...).

Two halves:

* **Parsers**: pure functions from one record of a tool's text output to
  `{device id: {metric: value}}`, device ids `"<vendor>:<index>"`. Metrics, where the format
  has them: `power_w` (W), `mem_used_bytes` and `mem_total_bytes` (bytes), `util_percent`,
  `temp_c`, `sm_clock_mhz`. A value the tool leaves empty or marks unavailable (`N/A`,
  `[N/A]`, `[Not Supported]`, `-`, anything that is not a number) is left out for that
  device, never reported as 0. Input a parser cannot read (empty, garbage, another tool's
  format) gives `{}`, never an exception: the reader thread runs a parser several times a
  second, and the Sampler protocol already means "a metric that cannot be read is left out".
* **`SmiSampler`**: one long-lived process per tool, started with the tool's own loop flag,
  whose output a reader thread parses as it arrives; `read()` returns the latest readings.
  A tool without a loop flag (rocm-smi and the default-table tools) is polled instead: one
  process per tick, at a lower rate (`Tool.poll_s`).

Memory units. Every tool here means binary units: nvidia-smi, ixsmi, cnmon, mx-smi,
mthreads-gmi, xpu_smi and xpu-smi print MiB; rocm-smi prints bytes (`(B)`), Hygon's DTK build
MiB (`(MiB)`); npu-smi's `(MB)` is MiB too (a 910A's HBM is "32768 MB": 32 GiB less a
reserve), so it counts 2**20 bytes.

Formats and what each gives (see TOOLS for the commands):

| parser | tool output | metrics |
| --- | --- | --- |
| parse_query_csv | nvidia-smi, ixsmi `--query-gpu=...` CSV, any header/units form | all six |
| parse_rocm_smi_json | rocm-smi `--json` (ROCm 4.3 to 6.x; Hygon DTK build) | all six |
| parse_xpu_smi_dump | Intel xpu-smi `dump` CSV | power, util, temp, SM clock, mem used |
| parse_npu_smi_info | Ascend `npu-smi info` table | power, temp, AICore util, memory |
| parse_box_table | default table: nvidia-smi, ixsmi, cnmon, mx-smi, xpu_smi | see below |
| parse_hy_smi | Hygon `hy-smi` default table | power, temp, util (VRAM only as a %) |
| parse_mthreads_gmi | Moore Threads `mthreads-gmi` default table | util, temp, memory |

The box tables are read by column header (`Pwr:Usage/Cap` or `Power`, `Temp`,
`Memory-Usage`, `*-Util`, `Clock-SM`), so a vendor's variant of the nvidia-smi layout needs no
code of its own; only the first table is read (not MIG devices, not processes).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

Metrics = dict[str, float]
Readings = dict[str, Metrics]  # {device id: {metric: value}}
Parser = Callable[[str], Readings]


class TelemetryError(RuntimeError):
    """A telemetry source cannot be used (its tool is missing or will not start)."""


# --- shared helpers: numbers, units, device ids ---------------------------------------------

# A number with an optional unit glued on or after a space: "69W", "81559 MiB", "30 C", "0.0%".
# "N/A", "[N/A]", "[Not Supported]", "", "-", "xxxxx MiB" do not match: the value is absent.
_NUMBER = re.compile(r"\s*([-+]?\d+(?:\.\d+)?)\s*([^\d\s]*)\s*")
_BYTES_PER = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _value_unit(text: str) -> tuple[float, str] | None:
    """A number and its unit ("" when bare), or None when the text is not a number."""
    match = _NUMBER.fullmatch(text)
    return (float(match[1]), match[2]) if match else None


def _value(text: str) -> float | None:
    parsed = _value_unit(text)
    return parsed[0] if parsed else None


def _index(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _to_bytes(value: float, unit: str) -> float | None:
    per = _BYTES_PER.get(unit)
    return value * per if per else None


def _bytes(text: str, default_unit: str) -> float | None:
    """A memory size such as "116 MiB", or a bare number in `default_unit`."""
    parsed = _value_unit(text)
    return _to_bytes(parsed[0], parsed[1] or default_unit) if parsed else None


def _put(metrics: Metrics, name: str, value: float | None) -> None:
    if value is not None:
        metrics[name] = value


def _device(vendor: str, index: int | str) -> str:
    return f"{vendor}:{index}"


# --- nvidia-smi / ixsmi --query-gpu CSV -----------------------------------------------------

# What the streaming command asks for, and how a header-less record is read.
QUERY_FIELDS = (
    "index",
    "power.draw",
    "memory.used",
    "memory.total",
    "utilization.gpu",
    "temperature.gpu",
    "clocks.sm",
)
# Query fields per metric, first available wins. power.draw.instant first, as NvmlSampler
# does: power.draw is a 1 s average on Ampere and newer. gpu.power.draw is ixsmi 4.x's name.
_QUERY_METRICS: dict[str, tuple[str, ...]] = {
    "power_w": ("power.draw.instant", "power.draw", "gpu.power.draw"),
    "mem_used_bytes": ("memory.used",),
    "mem_total_bytes": ("memory.total",),
    "util_percent": ("utilization.gpu",),
    "temp_c": ("temperature.gpu",),
    "sm_clock_mhz": ("clocks.sm", "clocks.current.sm"),
}
_QUERY_KNOWN = {"index", *(f for fields in _QUERY_METRICS.values() for f in fields)}
_HEADER_CELL = re.compile(r"\s*([^\s\[]+)\s*(?:\[([^\]]*)\])?\s*")  # "memory.used [MiB]"


def _header_cell(cell: str) -> tuple[str, str]:
    match = _HEADER_CELL.fullmatch(cell)
    return (match[1], match[2] or "") if match else (cell.strip(), "")


def _query_metric(metric: str, cells: dict[str, tuple[str, str]]) -> float | None:
    for field in _QUERY_METRICS[metric]:
        if field not in cells:
            continue
        text, header_unit = cells[field]
        # Memory: the value's own unit ("116 MiB"), else the header's ("[MiB]"), else MiB.
        is_memory = metric.startswith("mem_")
        value = _bytes(text, header_unit or "MiB") if is_memory else _value(text)
        if value is not None:
            return value
    return None


def parse_query_csv(
    text: str, vendor: str = "nvidia", fields: Sequence[str] = QUERY_FIELDS
) -> Readings:
    """`--query-gpu=... --format=csv[,noheader][,nounits]` of nvidia-smi or ixsmi.

    Columns are named by the header when there is one (a first row naming a known field),
    else by `fields`, the query the tool was given. Units on values or in the header are
    stripped. Without an `index` column a row's position is its index.
    """
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if row]
    if not rows:
        return {}
    named = [_header_cell(cell) for cell in rows[0]]
    if any(name in _QUERY_KNOWN for name, _ in named):
        header, rows = named, rows[1:]
    else:
        header = [(field, "") for field in fields]
    readings: Readings = {}
    for position, row in enumerate(rows):
        if len(row) != len(header):
            continue  # a line cut short, or not this query's output
        cells = {name: (value, unit) for (name, unit), value in zip(header, row, strict=True)}
        index = _index(cells["index"][0]) if "index" in cells else position
        if index is None:
            continue
        metrics: Metrics = {}
        for metric in _QUERY_METRICS:
            _put(metrics, metric, _query_metric(metric, cells))
        readings[_device(vendor, index)] = metrics
    return readings


# --- rocm-smi --json (AMD, Hygon DTK) ---------------------------------------------------

_ROCM_POWER = ("Current Socket Graphics Package Power (W)", "Average Graphics Package Power (W)")
# The edge sensor is the classic GPU temperature; MI300 has none and reports the junction.
_ROCM_TEMP = ("Temperature (Sensor edge) (C)", "Temperature (Sensor junction) (C)")
_ROCM_UTIL = ("GPU use (%)", "DCU use (%)", "HCU use (%)")  # AMD, Hygon DTK, newer Hygon
# "VRAM Total Used Memory (B)" (AMD), "vram Total Used Memory (MiB)" (Hygon DTK).
_ROCM_MEMORY = re.compile(r"vram total (used )?memory \((b|mib)\)", re.IGNORECASE)
_ROCM_UNITS = {"b": "B", "mib": "MiB"}


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _first_value(card: dict[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        value = _value(str(card.get(key, "")))  # "N/A (Secondary die)" is no number
        if value is not None:
            return value
    return None


def _rocm_metrics(card: dict[str, Any]) -> Metrics:
    metrics: Metrics = {}
    _put(metrics, "power_w", _first_value(card, _ROCM_POWER))
    _put(metrics, "temp_c", _first_value(card, _ROCM_TEMP))
    _put(metrics, "util_percent", _first_value(card, _ROCM_UTIL))
    for key, text in card.items():
        match = _ROCM_MEMORY.fullmatch(key)
        if match:
            name = "mem_used_bytes" if match[1] else "mem_total_bytes"
            _put(metrics, name, _bytes(str(text), _ROCM_UNITS[match[2].lower()]))
    sclk = str(card.get("sclk clock speed:", "")).strip("()")  # "(500Mhz)"
    _put(metrics, "sm_clock_mhz", _value(sclk))
    return metrics


def _is_hygon(card: dict[str, Any]) -> bool:
    vendor = str(card.get("Card Vendor", card.get("Card vendor", "")))
    return "Haiguang" in vendor or any(key.startswith(("DCU", "HCU")) for key in card)


def parse_rocm_smi_json(text: str) -> Readings:
    """`rocm-smi --showpower --showuse --showtemp --showmeminfo vram --showclocks --json`.

    Key names differ across ROCm releases and Hygon's DTK build; both are read. A DTK card
    (Hygon vendor name, `DCU`/`HCU` keys) gets a `hygon:` id, any other an `amd:` id.
    """
    doc = _load_json(text)
    if not isinstance(doc, dict):
        return {}
    readings: Readings = {}
    for key, card in doc.items():
        match = re.fullmatch(r"card(\d+)", key)
        if match and isinstance(card, dict):
            vendor = "hygon" if _is_hygon(card) else "amd"
            readings[_device(vendor, int(match[1]))] = _rocm_metrics(card)
    return readings


# --- Intel xpu-smi dump ---------------------------------------------------------------------

_XPU_COLUMNS = {
    "GPU Utilization (%)": "util_percent",
    "GPU Power (W)": "power_w",
    "GPU Frequency (MHz)": "sm_clock_mhz",  # the GT (compute) clock: SM clock's counterpart
    "GPU Core Temperature (Celsius Degree)": "temp_c",
    "GPU Memory Used (MiB)": "mem_used_bytes",
}


def parse_xpu_smi_dump(text: str) -> Readings:
    """`xpu-smi dump -d ... -m ...` CSV: one line per device per sample, after one header.

    Unsupported metrics are `N/A` or empty fields (both absent). A dump of several samples
    gives each device's last line. xpu-smi has no memory total in `dump`.
    """
    rows = [
        [c.strip() for c in r] for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)
    ]
    header = next((row for row in rows if "DeviceId" in row), None)
    if header is None:
        return {}
    readings: Readings = {}
    for row in rows:
        cells = dict(zip(header, row, strict=False))  # a trailing empty field may be cut
        index = _index(cells.get("DeviceId", ""))
        if index is None:
            continue  # the header itself, or garbage
        metrics: Metrics = {}
        for column, metric in _XPU_COLUMNS.items():
            text_value = cells.get(column, "")
            value = _bytes(text_value, "MiB") if metric == "mem_used_bytes" else _value(text_value)
            _put(metrics, metric, value)
        readings[_device("intel-xpu", index)] = metrics
    return readings


# --- box-drawn tables: nvidia-smi and its look-alikes, npu-smi -----------------------------

Cells = list[str]
_RULE = re.compile(r"[+|][-=+| ]*[-=][-=+| ]*")  # "+----+", "|====|", "|----+----|"


def _is_rule(line: str) -> bool:
    return bool(_RULE.fullmatch(line.strip()))


def _cells(line: str) -> Cells:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _box_table(text: str) -> tuple[list[Cells], list[list[Cells]]]:
    """The first box-drawn table: its header rows and its device blocks, rows as cells.

    The header is the run of `|` rows just above the first `===` rule; a device block is
    the run of `|` rows between two rules below it. The table ends at a blank or unboxed
    line or at a process table, so MIG and process tables are not read.
    """
    lines = text.splitlines()
    top = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("|=", "+="))), None)
    if top is None:
        return [], []
    header: list[Cells] = []
    for line in reversed(lines[:top]):
        if _is_rule(line) or not line.lstrip().startswith("|"):
            break
        header.insert(0, _cells(line))
    blocks: list[list[Cells]] = []
    block: list[Cells] = []
    for line in lines[top + 1 :]:
        if _is_rule(line):
            if block:
                blocks.append(block)
            block = []
        elif line.lstrip().startswith("|") and "Process" not in line:
            block.append(_cells(line))
        else:
            break
    if block:
        blocks.append(block)
    return header, blocks


def _locate(header: list[Cells], *labels: str) -> tuple[int, int] | None:
    """(row, column) of the header cell naming one of `labels`."""
    for r, row in enumerate(header):
        for c, cell in enumerate(row):
            if any(label in cell for label in labels):
                return r, c
    return None


def _cell(block: list[Cells], at: tuple[int, int] | None) -> str:
    if at is None or at[0] >= len(block) or at[1] >= len(block[at[0]]):
        return ""
    return block[at[0]][at[1]]


def _unit_value(cell: str, unit: str) -> float | None:
    """The first number followed by `unit` in a cell: "69W /  700W" -> 69 for "W"."""
    match = re.search(rf"(?<![\w.])(\d+(?:\.\d+)?)\s*{unit}(?![A-Za-z])", cell)
    return float(match[1]) if match else None


def _used_total(cell: str) -> tuple[float | None, float | None]:
    """A "used / total" memory cell in bytes; a bare side takes the other side's unit."""
    left, slash, right = cell.partition("/")
    if not slash:
        return None, None
    used, total = _value_unit(left), _value_unit(right)
    unit = (used and used[1]) or (total and total[1]) or ""
    return _side_bytes(used, unit), _side_bytes(total, unit)


def _side_bytes(side: tuple[float, str] | None, unit: str) -> float | None:
    return _to_bytes(side[0], side[1] or unit) if side else None


def parse_box_table(text: str, vendor: str) -> Readings:
    """The default table of nvidia-smi, ixsmi, cnmon, mx-smi or Kunlunxin's xpu_smi.

    Cells are found by their column header, values by their unit (`41C`, `69W`, `0%`,
    `1500MHz`, `0MiB / 81559MiB`), so the vendors' rearranged columns read alike. What a
    table does not show (nvidia-smi's SM clock) or marks `N/A` is absent.
    """
    header, blocks = _box_table(text)
    at = {
        "power": _locate(header, "Pwr", "Power"),
        "temp": _locate(header, "Temp"),
        "memory": _locate(header, "Memory-Usage"),
        "util": _locate(header, "Util"),
        "clock": _locate(header, "Clock-SM"),
    }
    readings: Readings = {}
    for block in blocks:
        first = block[0][0].split()
        index = _index(first[0]) if first else None
        if index is None:
            continue
        metrics: Metrics = {}
        _put(metrics, "power_w", _unit_value(_cell(block, at["power"]), "W"))
        _put(metrics, "temp_c", _unit_value(_cell(block, at["temp"]), "C"))
        _put(metrics, "util_percent", _unit_value(_cell(block, at["util"]), "%"))
        _put(metrics, "sm_clock_mhz", _unit_value(_cell(block, at["clock"]), "MHz"))
        used, total = _used_total(_cell(block, at["memory"]))
        _put(metrics, "mem_used_bytes", used)
        _put(metrics, "mem_total_bytes", total)
        readings[_device(vendor, index)] = metrics
    return readings


_PAIR = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")  # "57784/ 65536", "0    / 32768"


def _ascend_id(npu_cell: str, chip_cell: str, has_device: bool) -> str | None:
    """The logical device index: the Device column where the table has one (Atlas 310),
    else the NPU ID (one chip per NPU); a further chip of an NPU is `<npu>-<chip>`."""
    npu, ids = npu_cell.split()[:1], chip_cell.split()
    npu_id = _index(npu[0]) if npu else None
    chip = _index(ids[0]) if ids else None
    if has_device:
        device = _index(ids[1]) if len(ids) > 1 else None
        return str(device) if device is not None else None
    if npu_id is None or chip is None:
        return None
    return str(npu_id) if chip == 0 else f"{npu_id}-{chip}"


def parse_npu_smi_info(text: str) -> Readings:
    """Ascend `npu-smi info`: two rows per chip (NPU row, chip row); 20.x to 24.x layouts.

    Power and temperature lead the NPU row's third cell, AICore % the chip row's; memory is
    HBM where the table has an HBM-Usage column (training chips), else Memory-Usage (310).
    Values are MB, which npu-smi means as MiB. A `-` (an A3 second chip's power) is absent.
    A 310 card repeats its NPU row in every chip's block: that power is reported per chip
    as printed (npu-smi does not say whether it is the chip's or the card's).
    """
    header, blocks = _box_table(text)
    if len(header) < 2 or len(header[1]) < 3:
        return {}
    has_device = "Device" in header[1][0]
    has_hbm = "HBM" in header[1][2]
    readings: Readings = {}
    for block in blocks:
        if len(block) < 2 or len(block[0]) < 3 or len(block[1]) < 3:
            continue
        index = _ascend_id(block[0][0], block[1][0], has_device)
        if index is None:
            continue
        power_temp, usage = block[0][2].split(), block[1][2]
        metrics: Metrics = {}
        _put(metrics, "power_w", _value(power_temp[0]) if power_temp else None)
        _put(metrics, "temp_c", _value(power_temp[1]) if len(power_temp) > 1 else None)
        _put(metrics, "util_percent", _value(usage.split()[0]) if usage.split() else None)
        pairs = _PAIR.findall(usage)
        memory = pairs[1] if has_hbm and len(pairs) > 1 else pairs[0] if pairs else None
        if memory:
            metrics["mem_used_bytes"] = float(memory[0]) * 2**20
            metrics["mem_total_bytes"] = float(memory[1]) * 2**20
        readings[_device("ascend", index)] = metrics
    return readings


# --- whitespace tables: hy-smi, mthreads-gmi ------------------------------------------------


def parse_hy_smi(text: str) -> Readings:
    """Hygon `hy-smi`: one whitespace-separated row per device under a `DCU`/`HCU` header.

    Gives temperature, average power and DCU/HCU %; memory is only a percentage (`VRAM%`),
    so no memory metric (rocm-smi --json of the DTK has it in MiB).
    """
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.split()[:1] in (["DCU"], ["HCU"])), None
    )
    if start is None:
        return {}
    names = lines[start].split()
    columns = {"Temp": "temp_c", "AvgPwr": "power_w", f"{names[0]}%": "util_percent"}
    readings: Readings = {}
    for line in lines[start + 1 :]:
        values = line.split()
        index = _index(values[0]) if values else None
        if index is None:
            break  # the closing ==== rule
        if len(values) != len(names):
            continue
        cells = dict(zip(names, values, strict=True))
        metrics: Metrics = {}
        for column, metric in columns.items():
            _put(metrics, metric, _value(cells.get(column, "")))
        readings[_device("hygon", index)] = metrics
    return readings


# First row of a device: "0    MTT S5000  |00000000:18:00.0    |0%    0MiB(81920MiB)".
_GMI_USAGE = re.compile(r"(\d+(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)\s*(\w+)\((\d+(?:\.\d+)?)\s*(\w+)\)")
_GMI_TEMP = re.compile(r"(\d+(?:\.\d+)?)C\b")  # second row's third part: "48C   YES"


def parse_mthreads_gmi(text: str) -> Readings:
    """Moore Threads `mthreads-gmi`: three `|`-split rows per GPU; no power in this table."""
    lines = text.splitlines()
    readings: Readings = {}
    for i, line in enumerate(lines):
        if line.startswith("Processes"):
            break
        parts = line.split("|")
        index = _index(parts[0].split()[0]) if parts[0].split() else None
        usage = _GMI_USAGE.match(parts[2].strip()) if len(parts) == 3 else None
        if index is None or usage is None:
            continue
        metrics: Metrics = {"util_percent": float(usage[1])}
        _put(metrics, "mem_used_bytes", _to_bytes(float(usage[2]), usage[3]))
        _put(metrics, "mem_total_bytes", _to_bytes(float(usage[4]), usage[5]))
        below = lines[i + 1].split("|") if i + 1 < len(lines) else []
        temp = _GMI_TEMP.match(below[2].strip()) if len(below) == 3 else None
        _put(metrics, "temp_c", float(temp[1]) if temp else None)
        readings[_device("mthreads", index)] = metrics
    return readings


# --- the tools ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """How to run one vendor tool for telemetry, and how to read one record of its output.

    `poll_s` None: the command loops by itself and prints one line per device per tick
    (`header_prefix` marks a header line, kept and put before each line it names). Otherwise
    the command prints once, and runs every `poll_s` seconds: its whole output is a record.
    """

    vendor: str
    binary: str
    args: tuple[str, ...]
    parse: Parser
    poll_s: float | None = None
    header_prefix: str | None = None

    @property
    def command(self) -> tuple[str, ...]:
        return (self.binary, *self.args)


_QUERY_ARGS = (
    f"--query-gpu={','.join(QUERY_FIELDS)}",
    "--format=csv,noheader,nounits",
    "-lms",
    "100",
)
_POLL_S = 1.0  # a process per tick: each start costs tens to hundreds of ms of CPU

TOOLS: dict[str, Tool] = {
    "nvidia-smi": Tool(
        "nvidia", "nvidia-smi", _QUERY_ARGS, partial(parse_query_csv, vendor="nvidia")
    ),
    # ixsmi copies nvidia-smi's query interface. Corex 4.x reportedly names power
    # gpu.power.draw (not verified against a recording): override the command if it refuses.
    "ixsmi": Tool("iluvatar", "ixsmi", _QUERY_ARGS, partial(parse_query_csv, vendor="iluvatar")),
    # -i is whole seconds on stdout (--ims only writes to a file); -d -1 is every device;
    # metrics 0 util, 1 power, 2 frequency, 3 core temperature, 18 memory used (MiB).
    "xpu-smi": Tool(
        "intel-xpu",
        "xpu-smi",
        ("dump", "-d", "-1", "-m", "0,1,2,3,18", "-i", "1"),
        parse_xpu_smi_dump,
        header_prefix="Timestamp",
    ),
    # No loop flag (ROCm/rocm_smi_lib#216 points to amd-smi monitor instead): polled.
    # Also reads the Hygon DTK build of rocm-smi, whose cards get hygon: ids.
    "rocm-smi": Tool(
        "amd",
        "rocm-smi",
        (
            "--showpower",
            "--showuse",
            "--showtemp",
            "--showmeminfo",
            "vram",
            "--showclocks",
            "--json",
        ),
        parse_rocm_smi_json,
        poll_s=_POLL_S,
    ),
    # The default tables below: no loop flag known to reprint the same table, so polled.
    "npu-smi": Tool("ascend", "npu-smi", ("info",), parse_npu_smi_info, poll_s=_POLL_S),
    "cnmon": Tool(
        "cambricon", "cnmon", (), partial(parse_box_table, vendor="cambricon"), poll_s=_POLL_S
    ),
    "hy-smi": Tool("hygon", "hy-smi", (), parse_hy_smi, poll_s=_POLL_S),
    "mthreads-gmi": Tool("mthreads", "mthreads-gmi", (), parse_mthreads_gmi, poll_s=_POLL_S),
    "mx-smi": Tool("metax", "mx-smi", (), partial(parse_box_table, vendor="metax"), poll_s=_POLL_S),
    "xpu_smi": Tool(
        "kunlunxin", "xpu_smi", (), partial(parse_box_table, vendor="kunlunxin"), poll_s=_POLL_S
    ),
}


# --- the sampler ----------------------------------------------------------------------------

_STOP_WAIT_S = 2.0  # after SIGTERM, before SIGKILL


def _stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a child and reap it; SIGKILL if it ignores SIGTERM."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SmiSampler:
    """Per-device readings from a vendor tool: one streaming process, or one per poll.

    A streaming tool (its loop flag) runs once for the sampler's life; a reader thread parses
    each line as it arrives (one line is one device's complete record) and merges it into the
    latest readings. A polled tool runs every `poll_s` seconds and its whole output replaces
    them. `read()` returns a copy of the latest readings: empty before the first record, and
    again once a streaming tool has exited (see `error`), so no stale value is recorded.
    """

    scope = "accelerator"

    def __init__(self, tool: str, binary: str | None = None, poll_s: float | None = None) -> None:
        if tool not in TOOLS:
            raise TelemetryError(f"unknown telemetry tool {tool!r}; known: {', '.join(TOOLS)}")
        self._tool = TOOLS[tool]
        path = shutil.which(binary or self._tool.binary)
        if path is None:
            raise TelemetryError(
                f"{tool}: {binary or self._tool.binary!r} not found; is the {self._tool.vendor} "
                "driver installed and its tool on PATH?"
            )
        self._command = [path, *self._tool.args]
        self._poll_s = poll_s if poll_s is not None else self._tool.poll_s
        self._latest: Readings = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self.error: str | None = None  # why readings stopped or never came, if known
        if self._poll_s is None:
            self._proc = self._spawn(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            target = self._stream
        else:
            target = self._poll
        self._thread = threading.Thread(target=target, name=f"smi-{tool}", daemon=True)
        self._thread.start()

    def read(self) -> Readings:
        with self._lock:
            return {device: dict(metrics) for device, metrics in self._latest.items()}

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _stop(proc)
        self._thread.join()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def _spawn(self, **pipes: Any) -> subprocess.Popen[str]:
        try:
            return subprocess.Popen(self._command, text=True, errors="replace", **pipes)
        except OSError as exc:
            raise TelemetryError(f"{self._command[0]}: cannot start: {exc.strerror}") from exc

    def _stream(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        header: str | None = None
        last_unread = ""
        for line in proc.stdout:  # stderr is merged in: a tool's complaint shows up in `error`
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if self._tool.header_prefix and line.lstrip().startswith(self._tool.header_prefix):
                header = line
                continue
            readings = self._tool.parse(f"{header}\n{line}" if header else line)
            if readings:
                with self._lock:
                    self._latest.update(readings)
            else:
                last_unread = line
        code = proc.wait()
        if not self._stopping.is_set():
            with self._lock:
                self._latest = {}
            self.error = f"{self._command[0]} exited ({code}); last unread output: {last_unread!r}"

    def _poll(self) -> None:
        assert self._poll_s is not None
        next_s = time.monotonic()
        while True:
            with self._lock:  # close() sets the flag, then takes the lock: no late start
                if self._stopping.is_set():
                    return
                try:
                    self._proc = self._spawn(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                except TelemetryError as exc:
                    self.error = str(exc)
                    return
                proc = self._proc
            out, err = self._communicate(proc)
            if self._stopping.is_set():
                return
            readings = self._tool.parse(out)
            with self._lock:
                self._latest = readings
            self.error = None if readings else f"{self._command[0]}: nothing read: {err.strip()!r}"
            next_s = max(next_s + self._poll_s, time.monotonic())
            self._stopping.wait(next_s - time.monotonic())

    def _communicate(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        """A polled tool's output; one that hangs (npu-smi can) is killed after a while."""
        assert self._poll_s is not None
        try:
            return proc.communicate(timeout=max(10.0, 5 * self._poll_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=_STOP_WAIT_S)
            return "", "timed out"
