"""Follow the workload contract with the standard library only; a behaviour picks a fault.

ok: 6 windows of 100 samples, ~0.2 s each (two telemetry ticks); final score 0.5 + seed/100.
hang: two windows, then a child process and this one sleep forever (the agent must kill both).
crash: two windows, then exit 3 without run_stop.
oom: two windows, then allocate (and touch) memory until the container's limit kills it.
garbage: no events at all, just noise.
nan: as ok, but the run with seed 1 ends with eval_accuracy NaN (one seed of a set diverged).
slow: as ok, but each window takes 0.3 s and the score ends 0.1 lower, below the target (a
  stack that regressed, for `diagnose`).
devices: as ok, after writing devices.json: the visible-devices variables and /dev's char devices.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

# From the environment (process runtime) or the data mount (a container sees no host variables).
behaviour = os.environ.get("SLEEPER_BEHAVIOUR", "ok")
behaviour_file = pathlib.Path(os.environ.get("DS_DATA_DIR") or "/nonexistent", "behaviour")
if behaviour_file.exists():
    behaviour = behaviour_file.read_text().strip()
seed = int(os.environ["DS_SEED"])
log_path = os.path.join(os.environ["DS_OUT_DIR"], "mllog.log")


def emit(key, value=None, event_type="POINT_IN_TIME", **metadata):
    metadata |= {"mono_ns": time.monotonic_ns(), "rank": 0}
    line = ":::MLLOG " + json.dumps(
        {
            "namespace": "",
            "time_ms": time.time() * 1e3,
            "event_type": event_type,
            "key": key,
            "value": value,
            "metadata": metadata,
        }
    )
    print(f"[rank0]: {line}", flush=True)  # a rank prefix, as torchrun's --tee writes
    with open(log_path, "a") as log:
        log.write(line + "\n")


if behaviour == "devices":  # what the runtime passed in
    seen = {
        "env": {k: v for k, v in os.environ.items() if k.endswith("VISIBLE_DEVICES")},
        "char_devices": sorted(
            p.name for p in pathlib.Path("/dev").iterdir() if p.is_char_device()
        ),
    }
    pathlib.Path(os.environ["DS_OUT_DIR"], "devices.json").write_text(json.dumps(seen))
if behaviour == "garbage":
    print("no events here\n:::MLLOG {not json", flush=True)
    sys.exit(0)
emit("submission_benchmark", "sleeper")
emit("seed", seed)
if behaviour == "synthetic":  # data the run made itself, as deepspark_workload logs it
    emit("dataset", "synthetic", generator="sleeper numbers", files=0)
emit("run_start", event_type="INTERVAL_START")
for window in range(6):
    if window == 2 and behaviour == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(os.environ["DS_OUT_DIR"], "child.pid"), "w") as f:
            f.write(str(child.pid))
        time.sleep(600)
    if window == 2 and behaviour == "crash":
        sys.exit(3)
    if window == 2 and behaviour == "oom":
        hog = [b"x" * (64 << 20) for _ in range(64)]  # 4 GiB, every page written
    emit("block_start", event_type="INTERVAL_START", window=window)
    time.sleep(0.3 if behaviour == "slow" else 0.2)
    print("some framework chatter", flush=True)
    emit("block_stop", event_type="INTERVAL_END", window=window, samples_count=100)
    diverged = behaviour == "nan" and seed == 1 and window == 5
    score = 0.4 if behaviour == "slow" else 0.5
    emit("eval_accuracy", float("nan") if diverged else score + seed / 100, epoch_num=window)
emit("run_stop", event_type="INTERVAL_END", status="success")
