"""Workload images: build from model_images/, push to and pull from any registry, list.

All through the Docker SDK. An image is `deepspark/<model>:<version>` locally; in a registry
it is `<registry>/deepspark/<model>:<version>`, pulled by that tag or by its digest and then
tagged with the local name so that the runtime finds it.
"""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import docker
import docker.utils
from docker.errors import APIError, DockerException, ImageNotFound

import deepspark_core
from deepspark_agent.runtime.docker import image_ref
from deepspark_agent.workloads import IMAGE_NAMESPACE, Workload
from deepspark_core.errors import DeepSparkError
from deepspark_core.results import ImageRef

DEFAULT_BASE = "deepspark/base:cpu"
# The CPU base each framework's workloads build FROM (scripts/build-base-image [FLAVOR],
# dockerfiles/README.md); a framework not listed gets DEFAULT_BASE.
FRAMEWORK_BASES = {"pytorch": DEFAULT_BASE, "paddlepaddle": "deepspark/base:paddle-cpu"}
Auth = dict[str, str] | None  # {"username": ..., "password": ...}; None: the Docker config's
Progress = Callable[[dict[str, Any]], None]  # one decoded message of the engine's stream
CORE = Path(deepspark_core.__file__).parent  # the library reads workload.toml through it


class ImageError(DeepSparkError):
    """An image operation the engine or the registry refused."""


def engine(timeout: int = 600) -> docker.DockerClient:
    """A client for the local engine, or a one-line error saying none answers."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise ImageError(f"no Docker engine answers: {exc}") from None
    return client


def source_revision(workload: Workload) -> str:
    """The git commit the workload's files come from, for the image's OCI label."""
    try:
        out = subprocess.run(
            ["git", "-C", str(workload.path), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _follow(stream: Iterable[dict[str, Any]], progress: Progress) -> Iterator[dict[str, Any]]:
    """Pass the engine's messages to progress; raise on the first error message."""
    for message in stream:
        if "error" in message:
            raise ImageError(str(message["error"]).strip())
        progress(message)
        yield message


def default_base(workload: Workload) -> str:
    """The base a workload's image builds FROM unless told otherwise: its framework's."""
    return FRAMEWORK_BASES.get(workload.framework, DEFAULT_BASE)


def build_context(folder: Path, dockerfile: str) -> IO[bytes]:
    """The build context: the workloads folder as a tar (less what its .dockerignore names but
    the Dockerfile, a path in folder), and the core package beside it as deepspark_core/, which
    the helper library imports."""
    ignore = folder / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    exclude = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    context = docker.utils.tar(str(folder), exclude=exclude, dockerfile=(dockerfile, None))
    with tarfile.open(fileobj=context, mode="a") as tar:
        tar.add(CORE, "deepspark_core", filter=lambda i: None if "__pycache__" in i.name else i)
    context.seek(0)
    return context


def build(
    client: docker.DockerClient,
    workload: Workload,
    base: str | None = None,
    progress: Progress = lambda m: None,
) -> ImageRef:
    """Build deepspark/<model>:<version> from the workload's own Dockerfile, if it has one,
    else the workloads folder's shared one (model_images/Dockerfile). base: ARG BASE_IMAGE,
    by default the CPU base of the workload's framework."""
    base = base or default_base(workload)
    context = workload.path.parent
    own = workload.path / "Dockerfile"
    dockerfile = own if own.is_file() else context / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(f"{own}: no such file, and no shared {dockerfile} beside it")
    args = {"MODEL": workload.name, "VERSION": workload.version, "BASE_IMAGE": base}
    relative = dockerfile.relative_to(context).as_posix()
    try:
        # The workloads folder, so the image can copy the shared helper library; and the core.
        stream = client.api.build(
            fileobj=build_context(context, relative),
            custom_context=True,
            dockerfile=relative,
            tag=workload.image,
            buildargs={**args, "SOURCE_REVISION": source_revision(workload)},
            rm=True, forcerm=True, decode=True,
        )  # fmt: skip
        for _ in _follow(stream, progress):
            pass
    except APIError as exc:
        raise ImageError(f"building {workload.image}: {exc.explanation or exc}") from None
    return image_ref(client, workload.image)


def registry_repo(registry: str, workload: Workload) -> str:
    return f"{registry.rstrip('/')}/{IMAGE_NAMESPACE}/{workload.name}"


def push(
    client: docker.DockerClient,
    workload: Workload,
    registry: str,
    auth: Auth = None,
    progress: Progress = lambda m: None,
) -> str:
    """Push the local image to registry; returns `<repo>@<digest>`, the reference to pin."""
    repo = registry_repo(registry, workload)
    try:
        image = client.images.get(workload.image)
    except ImageNotFound:
        raise ImageError(f"image {workload.image} is not present locally: build it first") from None
    image.tag(repo, workload.version)
    digest = None
    try:
        stream = client.api.push(repo, workload.version, stream=True, decode=True, auth_config=auth)
        for message in _follow(stream, progress):
            digest = message.get("aux", {}).get("Digest", digest)
    except APIError as exc:
        raise ImageError(f"pushing {repo}:{workload.version}: {exc.explanation or exc}") from None
    if digest is None:
        raise ImageError(f"pushing {repo}:{workload.version}: the registry sent no digest")
    return f"{repo}@{digest}"


def pull(
    client: docker.DockerClient,
    workload: Workload,
    registry: str,
    digest: str | None = None,
    auth: Auth = None,
    progress: Progress = lambda m: None,
) -> ImageRef:
    """Pull by tag (the workload's version) or by digest, then tag it with the local name."""
    repo = registry_repo(registry, workload)
    ref = f"{repo}@{digest}" if digest else f"{repo}:{workload.version}"
    try:
        stream = client.api.pull(ref, stream=True, decode=True, auth_config=auth)
        for _ in _follow(stream, progress):
            pass
        image = client.images.get(ref)
    except (APIError, ImageNotFound) as exc:
        explanation = getattr(exc, "explanation", None) or exc
        raise ImageError(f"pulling {ref}: {explanation}") from None
    image.tag(f"{IMAGE_NAMESPACE}/{workload.name}", workload.version)
    return image_ref(client, workload.image)


def local_images(client: docker.DockerClient) -> list[dict[str, Any]]:
    """The deepspark/* images present locally, with their OCI labels."""
    rows = []
    for image in client.images.list(name=f"{IMAGE_NAMESPACE}/*"):
        labels = image.labels or {}
        rows.append(
            {
                "tags": image.tags,
                "id": image.id,
                "repo_digests": image.attrs.get("RepoDigests") or [],
                "size_mb": round(image.attrs.get("Size", 0) / 1e6, 1),
                "model": labels.get("org.deepspark.model", ""),
                "contract": labels.get("org.deepspark.contract", ""),
                "revision": labels.get("org.opencontainers.image.revision", ""),
            }
        )
    return rows
