"""workload.toml's one schema (deepspark_core.workload_spec): the agent and the helper library
read it alike; a workload's own keys are declared in its preset.py; unknown keys are errors."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from deepspark_agent import images
from deepspark_agent.workloads import BUILT_IN, list_workloads
from deepspark_core.workload_spec import Optim, Preset, WorkloadError, preset_class, read_spec

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
OWN_KEYS = """
from deepspark_core import workload_spec as ws


class Preset(ws.Preset):
    rows: int
"""


def workload_folder(tmp_path: Path, preset_py: str | None = None, extra: str = "") -> Path:
    """contract_only's folder, with a preset.py and extra lines in its [configs.mini]."""
    folder = tmp_path / "workloads" / "contract_only"
    shutil.copytree(DATA / "workloads" / "contract_only", folder)
    if preset_py is not None:
        (folder / "preset.py").write_text(preset_py)
    toml = folder / "workload.toml"
    toml.write_text(toml.read_text() + extra)
    return folder


def test_every_built_in_workload_declares_its_own_keys_or_needs_none():
    for workload in list_workloads():
        folder = workload.path
        assert type(workload.configs["mini"]) is preset_class(folder)
        assert (folder / "preset.py").is_file() == (preset_class(folder) is not Preset)


def test_a_workloads_own_keys_are_typed_and_a_typo_names_file_preset_and_key(tmp_path):
    folder = workload_folder(tmp_path, OWN_KEYS, "rows = 3\n")
    assert read_spec(folder).configs["mini"].rows == 3
    toml = folder / "workload.toml"
    toml.write_text(toml.read_text().replace("rows = 3", "rowz = 3"))
    with pytest.raises(WorkloadError) as typo:
        read_spec(folder)
    assert str(typo.value) == f"{toml}: configs.mini.rowz: unknown key"
    toml.write_text(toml.read_text().replace("rowz = 3", 'rows = "three"'))
    with pytest.raises(WorkloadError, match=r"configs.mini.rows: Input should be a valid int"):
        read_spec(folder)


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('name = "contract_only"', 'nmae = "x"\nname = "contract_only"', "nmae"),
        ('direction = "higher"', 'direction = "higher"\nunit = "%"', "quality.unit"),
        (
            "max_seconds = 60",
            "max_seconds = 60\n[configs.mini.optim]\nlr = 1\nlrr = 1",
            "configs.mini.optim.lrr",
        ),
    ],
)
def test_unknown_keys_are_errors_in_every_table(tmp_path, old, new, key):
    folder = workload_folder(tmp_path)
    toml = folder / "workload.toml"
    toml.write_text(toml.read_text().replace(old, new))
    with pytest.raises(WorkloadError) as unknown:
        read_spec(folder)
    assert str(unknown.value) == f"{toml}: {key}: unknown key"


@pytest.mark.parametrize(
    "preset_py, message",
    [
        ("import no_such_module\n", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("Preset = dict\n", "no Preset class (a deepspark_core Preset subclass)"),
    ],
)
def test_a_broken_preset_py_is_a_one_line_error_naming_it(tmp_path, preset_py, message):
    folder = workload_folder(tmp_path, preset_py)
    with pytest.raises(WorkloadError) as broken:
        read_spec(folder)
    assert str(broken.value) == f"{folder / 'preset.py'}: {message}"


def test_scaled_lr_is_the_scripts_own_arithmetic():
    optim = Optim(lr=0.1, lr_batch=12)
    assert optim.scaled_lr(36) == 0.1 * 36 / 12  # not 0.1 * (36 / 12), another float
    assert optim.scaled_lr(48, "sqrt") == 0.1 * 2.0
    assert Optim(lr=0.1).scaled_lr(512) == 0.1  # no lr_batch: not scaled


def test_models_list_names_the_file_and_the_key_of_a_typo(cli, tmp_path):
    folder = workload_folder(tmp_path, extra="batch_sise = 3\n")
    code, _, err = cli("models", "list", "--workloads", str(folder.parent))
    assert code == 1
    assert err == f"error: {folder / 'workload.toml'}: configs.mini.batch_sise: unknown key\n"


def run_train_py(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """folder's train.py as the agent's process runtime starts it (speed mode, one window)."""
    path = [str(BUILT_IN), str(ROOT / "core"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "DS_MODEL": folder.name,
        "DS_CONFIG": "mini",
        "DS_WINDOWS": "1",
        "DS_OUT_DIR": str(tmp_path / "out"),
    }
    return subprocess.run(
        [sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True
    )


def aborted_with(tmp_path: Path) -> str:
    last = (tmp_path / "out" / "mllog.log").read_text().splitlines()[-1]
    stop = json.loads(last.removeprefix(":::MLLOG "))
    assert stop["key"] == "run_stop" and stop["metadata"]["status"] == "aborted"
    return stop["metadata"]["reason"]


@pytest.mark.parametrize(
    "table, wrong, message",
    [
        ("[configs.mini.optim]", "mixupp = 0.0", "configs.mini.optim.mixupp: unknown key"),
        (
            "[configs.mini.model]",
            "widths = 1",
            "[configs.mini.model]: WaveMLP() got an unexpected keyword argument 'widths'",
        ),
    ],
)
def test_a_workload_run_names_the_file_and_the_key_of_a_typo(tmp_path, table, wrong, message):
    """The library checks the preset (its optim table of wave_mlp's own Optim) and the
    model's constructor arguments before the run starts: one line, exit 1, run_stop aborted."""
    folder = tmp_path / "wave_mlp"
    shutil.copytree(BUILT_IN / "wave_mlp", folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "workload.toml"
    toml.write_text(toml.read_text().replace(f"{table}\n", f"{table}\n{wrong}\n", 1))
    done = run_train_py(folder, tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"error: {toml}: {message}\n"
    assert message in aborted_with(tmp_path)


def test_the_image_build_context_carries_the_core_beside_the_library(tmp_path):
    """images.build's context: model_images/ less its .dockerignore (the Dockerfile kept),
    with deepspark_core/ added, whose workload_spec imports pydantic alone."""
    with tarfile.open(fileobj=images.build_context(BUILT_IN, "Dockerfile")) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path, filter="data")
    assert {"Dockerfile", "deepspark_workload/core.py", "resnet50/train.py"} <= names
    assert {"deepspark_core/__init__.py", "deepspark_core/workload_spec.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    code = (
        "import sys, deepspark_workload.core; "
        "assert not {'torch', 'cryptography', 'jinja2', 'docker'} & set(sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the image's /opt/deepspark alone
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)


def test_a_preset_takes_its_bases_keys_and_overrides_them(tmp_path):
    """`base`: a variant of a preset without a copy of it; a table given replaces the base's."""
    extra = '[configs.mini.model]\nwidth = 4\n\n[configs.long]\nbase = "mini"\nepochs = 12\n'
    toml = workload_folder(tmp_path, extra=extra) / "workload.toml"
    spec = read_spec(toml.parent)
    mini, long = spec.configs["mini"], spec.configs["long"]
    assert (long.epochs, long.target, long.batch_size, long.model) == (12, 0.9, 64, {"width": 4})
    assert mini.epochs == 6
    toml.write_text(toml.read_text() + '\n[configs.longer]\nbase = "long"\n')
    with pytest.raises(WorkloadError, match=r"longer\.base: 'long' is not a preset without"):
        read_spec(toml.parent)
    toml.write_text(toml.read_text().replace('base = "long"', 'base = "nine"'))
    with pytest.raises(WorkloadError, match=r"configs\.longer\.base: 'nine' is not a preset"):
        read_spec(toml.parent)
