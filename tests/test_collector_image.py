"""The collector's image (scripts/build-collector-image) built from this checkout and run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import await_collector, free_port

pytestmark = pytest.mark.docker
ROOT = Path(__file__).parents[1]
IMAGE = "deepspark/collector"


@pytest.fixture(scope="module")
def collector_image(docker_client, rootfs_image) -> str:
    """Its id: built, or found up to date by its inputs' label (then in about a second)."""
    done = subprocess.run(
        [ROOT / "scripts" / "build-collector-image"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return docker_client.images.get(IMAGE).id


def test_the_image_serves_results_as_a_non_root_user_with_data_in_its_volume(
    docker_client, collector_image
):
    port = free_port()
    container = docker_client.containers.run(
        collector_image, detach=True, ports={"8000/tcp": ("127.0.0.1", port)}
    )

    def running() -> bool:
        container.reload()
        return container.status == "running"

    try:
        answer = await_collector(f"http://127.0.0.1:{port}", running)
        assert answer.status_code == 200, container.logs().decode()[-2000:]
        assert answer.json() == []
        code, uid = container.exec_run(["id", "-u"])
        assert code == 0 and int(uid) != 0
        # The database (and the receipt key) in the volume /data, which outlives the container.
        (volume,) = container.attrs["Mounts"]
        assert volume["Type"] == "volume" and volume["Destination"] == "/data"
        code, listed = container.exec_run(["ls", "/data"])
        assert {"collector.sqlite3", "keys"} <= set(listed.decode().split())
    finally:
        container.remove(force=True, v=True)
