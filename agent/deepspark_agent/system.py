"""Facts about the host, stored with every result (the system description)."""

from __future__ import annotations

import os
import platform

import psutil


def cpu_model() -> str:
    """The CPU's marketing name; platform.processor() is often empty on Linux."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_host() -> dict[str, str | int | float]:
    return {
        "hostname": platform.node(),
        "os": platform.platform(terse=True),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
    }
