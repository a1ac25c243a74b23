"""The base Dockerfiles, linted here since CI cannot build the accelerator ones (their FROM
images are in registries it cannot reach); and the accelerator Dockerfile built for real on
the CPU base, which stands in for a vendor's framework image."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from deepspark_agent.devices import VISIBLE_DEVICES

ROOT = Path(__file__).parents[1]
DOCKERFILES = ROOT / "dockerfiles"
ACCELERATOR = DOCKERFILES / "accelerator" / "Dockerfile"
ALL = [*sorted(DOCKERFILES.glob("*/Dockerfile")), DOCKERFILES / "Dockerfile"]
ALL.append(ROOT / "model_images" / "Dockerfile")
FLAVORS = sorted(p.parent.name for p in DOCKERFILES.glob("*/build-args"))
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
# Instructions whose ${VAR}s the builder expands (RUN's are the shell's: build args and its own).
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME"}
EXPANDED |= {"WORKDIR"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts, 1-based
    name: str  # upper case
    args: str  # continuation lines joined


def parse(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions: comments and blank lines dropped, `\\` continuations
    joined (comment lines inside a continuation are skipped, as the builder does)."""
    out: list[Instruction] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        start, text = pending or (number, "")
        text = f"{text} {line}".strip()
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        name, _, args = text.partition(" ")
        out.append(Instruction(start, name.upper(), args.strip()))
    assert pending is None, f"{path}: the file ends inside a continued line"
    return out


def build_args(flavor: str) -> dict[str, str]:
    lines = (DOCKERFILES / flavor / "build-args").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def stages(instructions: list[Instruction]) -> tuple[set[str], list[list[Instruction]]]:
    """The ARGs declared before the first FROM, and each stage's instructions (FROM first)."""
    global_args: set[str] = set()
    parts: list[list[Instruction]] = []
    for ins in instructions:
        if ins.name == "FROM":
            parts.append([ins])
        elif parts:
            parts[-1].append(ins)
        else:
            assert ins.name == "ARG", f"line {ins.line}: only ARG may come before FROM"
            global_args.add(ins.args.split("=")[0])
    return global_args, parts


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dockerfile_parses_and_declares_each_argument_where_it_is_used(path) -> None:
    instructions = parse(path)
    assert {i.name for i in instructions} <= INSTRUCTIONS
    global_args, parts = stages(instructions)
    assert parts, "no FROM"
    for stage in parts:
        image = stage[0].args.split()[0]
        # A FROM sees the ARGs before the first FROM only; the stage, those it declares again.
        assert set(VARIABLE.findall(image)) <= global_args, f"line {stage[0].line}: {image}"
        declared: set[str] = set()
        for ins in stage[1:]:
            if ins.name == "ARG":
                declared.add(ins.args.split("=")[0])
            elif ins.name in EXPANDED:
                used = set(VARIABLE.findall(ins.args))
                undeclared = used - declared - _env_names(stage)
                assert not undeclared, f"{path.name} line {ins.line}: {sorted(undeclared)}"


def _env_names(stage: list[Instruction]) -> set[str]:
    return {m for i in stage if i.name == "ENV" for m in re.findall(r"([A-Z_]+)=", i.args)}


def test_the_accelerator_base_is_from_its_argument_with_the_labels_and_the_checks() -> None:
    instructions = parse(ACCELERATOR)
    global_args, (stage,) = stages(instructions)
    assert global_args == {"BASE"} and stage[0].args == "${BASE}"
    labels = " ".join(i.args for i in stage if i.name == "LABEL")
    for label in ("flavor", "from", "visible-devices"):
        assert f"org.deepspark.base.{label}=" in labels
    env = " ".join(i.args for i in stage if i.name == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    (run,) = [i.args for i in stage if i.name == "RUN"]
    assert "${FRAMEWORK}" in run and "-m ${LAUNCHER} --help" in run and "${PLUGIN}" in run
    assert [i.args for i in stage if i.name == "CMD"] == ['["python3"]']


@pytest.mark.parametrize("flavor", FLAVORS)
def test_each_flavor_sets_only_arguments_its_dockerfile_declares(flavor) -> None:
    args = build_args(flavor)
    accelerator = "BASE" in args
    dockerfile = ACCELERATOR if accelerator else DOCKERFILES / "Dockerfile"
    declared = {i.args.split("=")[0] for i in parse(dockerfile) if i.name == "ARG"}
    assert set(args) <= declared, f"{flavor}: {sorted(set(args) - declared)}"
    assert {"FRAMEWORK", "LAUNCHER"} <= set(args)
    if accelerator:
        assert "VISIBLE_DEVICES" in args
        template = flavor == "vendor-sdk"  # the one a vendor fills in: BASE left empty
        assert bool(args["BASE"]) != template
        if not template:
            assert args["VISIBLE_DEVICES"] in VISIBLE_DEVICES.values()


def test_the_accelerator_requirements_leave_the_image_s_framework_alone() -> None:
    lines = (ACCELERATOR.parent / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[=<>\[ ]", line)[0] for line in lines if line and line[0] != "#"}
    assert names == {"numpy", "scikit-learn", "pillow", "pydantic"}


def test_the_template_is_refused_until_it_is_filled_in() -> None:
    done = subprocess.run(
        [ROOT / "scripts" / "build-base-image", "vendor-sdk"], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "build-base-image: error: dockerfiles/vendor-sdk/build-args: BASE is empty: "
        "a template, fill it in (dockerfiles/README.md)"
    ]


@pytest.mark.docker
def test_the_accelerator_dockerfile_builds_from_a_framework_image(
    docker_client, base_image
) -> None:
    """FROM the CPU base (torch and the workloads' packages already there, so pip fetches
    nothing): the build's own checks pass and the labels carry the flavor's arguments."""
    args = build_args("cuda") | {"BASE": base_image, "FLAVOR": "cuda-test"}
    tag = "deepspark/base:accelerator-test"
    command = ["docker", "build", "-q", "-f", ACCELERATOR, "-t", tag]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    done = subprocess.run([*command, ACCELERATOR.parent], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        labels = docker_client.images.get(tag).labels
        assert labels["org.deepspark.base.from"] == base_image
        assert labels["org.deepspark.base.visible-devices"] == "CUDA_VISIBLE_DEVICES"
        out = docker_client.containers.run(tag, ["python3", "-c", "import torch"], remove=True)
        assert out == b""
    finally:
        docker_client.images.remove(tag, force=True)
