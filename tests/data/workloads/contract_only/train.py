"""A workload that does nothing but follow the contract: the standard library only, no helper
library, and it never creates a folder (DS_OUT_DIR must exist, and be usable from wherever the
workload starts). Each window "trains" 64 samples in about 0.1 s; the score rises per window."""

import json
import os
import time

env = os.environ
windows = int(env["DS_WARMUP_WINDOWS"]) + int(env["DS_WINDOWS"])
log_path = os.path.join(env["DS_OUT_DIR"], "mllog.log")


def emit(key, value=None, event_type="POINT_IN_TIME", **metadata):
    event = {
        "namespace": "", "time_ms": time.time() * 1e3, "event_type": event_type, "key": key,
        "value": value, "metadata": {**metadata, "mono_ns": time.monotonic_ns(), "rank": 0},
    }  # fmt: skip
    line = ":::MLLOG " + json.dumps(event)
    print(line, flush=True)
    with open(log_path, "a") as log:  # appends; the agent made the directory
        log.write(line + "\n")


emit("submission_benchmark", env["DS_MODEL"])
emit("framework", "none", device="cpu")
emit("seed", int(env["DS_SEED"]))
emit("run_start", event_type="INTERVAL_START")
for window in range(windows):
    emit("block_start", event_type="INTERVAL_START", window=window)
    time.sleep(0.1)
    emit("block_stop", event_type="INTERVAL_END", window=window, samples_count=64)
    emit("eval_accuracy", 0.5 + window / 10, epoch_num=window)
emit("run_stop", event_type="INTERVAL_END", status="success")
