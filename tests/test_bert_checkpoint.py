"""BERT-large from MLPerf's phase-1 checkpoint: the TF tensor-bundle reader, the converter to
this model's state dict, and a converge run that starts from it (the row says so).

The checkpoints are written here in TensorFlow's own layout by a writer of this test (an SSTable
index of BundleEntryProtos and a raw data file, after tensor_bundle.proto, tensor_bundle.cc and
LevelDB's table format), with a mini-sized BERT's weights under MLPerf's TF names, optimizer
slots and the heads this model lacks among them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepspark_core.datasets import write_manifest
from deepspark_workload import tf_bundle
from workload_runs import MODEL_IMAGES, environ, load_module, preset

WORKLOAD = MODEL_IMAGES / "bert_large"
model = load_module("bert_large", "model")
convert = load_module("bert_large", "convert_checkpoint")
MAGIC = 0xDB4775248B80FB57


# -- the writer: TensorFlow's tensor bundle, from its format's spec ---------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 fields: two's complement, ten bytes when negative
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes, fixed32: bool = False) -> bytes:
    if fixed32:
        return varint(number << 3 | 5) + struct.pack("<I", value)
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def block(entries: list[tuple[bytes, bytes]], restart_every: int = 16) -> bytes:
    """LevelDB's block: keys sharing a prefix with the previous one, a whole key at each
    restart point, the restart offsets and their count."""
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        last = key
    restarts = restarts or [0]
    return (
        bytes(out) + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    )


def table(entries: list[tuple[bytes, bytes]], per_block: int = 7, kind: int = 0) -> bytes:
    """An SSTable: data blocks of per_block entries, an empty metaindex block, the index
    block (each data block's last key -> its handle), the footer."""
    out = bytearray()

    def write(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        trailer = bytes([kind])
        out.extend(contents + trailer + struct.pack("<I", masked(crc(contents + trailer))))
        return handle

    index = []
    for start in range(0, len(entries), per_block):
        chunk = entries[start : start + per_block]
        index.append((chunk[-1][0], write(block(chunk))))
    meta = write(block([]))
    handles = meta + write(block(index))
    return bytes(out) + handles.ljust(40, b"\0") + struct.pack("<Q", MAGIC)


def crc(data: bytes) -> int:
    """CRC-32C, bit by bit (independent of the reader's tables)."""
    value = 0xFFFFFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ (0x82F63B78 if value & 1 else 0)
    return value ^ 0xFFFFFFFF


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """PREFIX.index and PREFIX.data-00000-of-00001, as TensorFlow's BundleWriter leaves them."""
    dtypes = {np.dtype("<f4"): 1, np.dtype("<i8"): 9}
    data, entries = bytearray(), []
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        shape = b"".join(field(2, field(1, d)) for d in tensors[name].shape)
        entry = field(1, dtypes[tensors[name].dtype]) + field(2, shape) + field(4, len(data))
        entry += field(5, len(raw)) + field(6, masked(crc(raw)), fixed32=True)
        entries.append((name.encode(), entry))
        data += raw
    header = field(1, 1) + field(3, field(1, 1))  # one shard, little-endian, version 1
    beside(prefix, INDEX).write_bytes(table([(b"", header), *entries]))
    beside(prefix, DATA).write_bytes(bytes(data))


# -- a mini BERT's weights under MLPerf's TF names, mapped by hand ----------------------------


def mini() -> torch.nn.Module:
    torch.manual_seed(0)
    net = model.Bert(**preset("bert_large", "mini").model).eval()
    with torch.no_grad():  # not BERT's zero biases and unit LayerNorms: every tensor told apart
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


def tf_weights(net: torch.nn.Module) -> dict[str, np.ndarray]:
    """net's weights as the phase-1 checkpoint names and lays them out (kernels [in, out]),
    with what the converter must leave out: LAMB's slots, global_step, pooler, NSP head."""
    s = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    h = s["ln.weight"].shape[0]
    out = {
        "bert/embeddings/word_embeddings": s["tokens.weight"],
        "bert/embeddings/position_embeddings": s["positions.weight"],
        "bert/embeddings/token_type_embeddings": s["types.weight"],
        "bert/embeddings/LayerNorm/gamma": s["ln.weight"],
        "bert/embeddings/LayerNorm/beta": s["ln.bias"],
        "cls/predictions/transform/dense/kernel": s["transform.0.weight"].T,
        "cls/predictions/transform/dense/bias": s["transform.0.bias"],
        "cls/predictions/transform/LayerNorm/gamma": s["transform.2.weight"],
        "cls/predictions/transform/LayerNorm/beta": s["transform.2.bias"],
        "cls/predictions/output_bias": s["decoder_bias"],
        "bert/pooler/dense/kernel": np.ones((h, h), np.float32),
        "bert/pooler/dense/bias": np.ones(h, np.float32),
        "cls/seq_relationship/output_weights": np.ones((2, h), np.float32),
        "cls/seq_relationship/output_bias": np.ones(2, np.float32),
        "global_step": np.array(28252, dtype=np.int64),
    }
    for i in range(len(net.layers)):
        t, o = f"bert/encoder/layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = s[f"{o}.attn.qkv.weight"], s[f"{o}.attn.qkv.bias"]
        for j, part in enumerate(("query", "key", "value")):
            out[f"{t}/attention/self/{part}/kernel"] = qkv_w[j * h : (j + 1) * h].T
            out[f"{t}/attention/self/{part}/bias"] = qkv_b[j * h : (j + 1) * h]
        for tf, ours in [
            ("attention/output/dense", "attn.out"),
            ("intermediate/dense", "ffn.0"),
            ("output/dense", "ffn.2"),
        ]:
            out[f"{t}/{tf}/kernel"] = s[f"{o}.{ours}.weight"].T
            out[f"{t}/{tf}/bias"] = s[f"{o}.{ours}.bias"]
        for tf, ours in [("attention/output", "ln1"), ("output", "ln2")]:
            out[f"{t}/{tf}/LayerNorm/gamma"] = s[f"{o}.{ours}.weight"]
            out[f"{t}/{tf}/LayerNorm/beta"] = s[f"{o}.{ours}.bias"]
    for name in [n for n in out if n.startswith("bert/encoder/layer_0/")]:
        out[f"{name}/adam_m"] = np.zeros_like(out[name])  # LAMB's slots, as in model.ckpt-28252
    return {k: np.ascontiguousarray(v, dtype=v.dtype) for k, v in out.items()}


def shapes(net: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in net.state_dict().items()}


def outputs(net: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 96, (3, 24), generator=g)
    types = (torch.arange(24) >= 12).long().expand(3, -1)
    positions = torch.randint(0, 24, (3, 4), generator=g)
    with torch.no_grad():
        return net(ids, types, None, positions)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    net = mini()
    prefix = tmp_path_factory.mktemp("ckpt") / "model.ckpt-28252"
    write_bundle(prefix, tf_weights(net))
    return prefix, net


# -- the reader --------------------------------------------------------------------------------


def test_crc32c_matches_the_published_check_values() -> None:
    assert tf_bundle.crc32c(b"123456789") == 0xE3069283  # the CRC catalogue's check value
    assert tf_bundle.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    data = np.random.default_rng(0).integers(0, 256, 300_007, dtype=np.uint8).tobytes()
    assert tf_bundle.crc32c(data) == crc(data)  # the segmented path against bit by bit


def test_the_reader_reads_every_tensor_the_writer_wrote(checkpoint) -> None:
    prefix, net = checkpoint
    written = tf_weights(net)
    bundle = tf_bundle.Bundle(prefix)
    assert bundle.shards == 1 and set(bundle.entries) == set(written)
    for name, array in written.items():
        read = bundle.read(name)
        assert read.dtype == array.dtype and read.shape == array.shape
        assert np.array_equal(read, array), name


# -- the converter -----------------------------------------------------------------------------


def test_the_converted_weights_are_the_models_and_give_its_outputs(checkpoint) -> None:
    prefix, net = checkpoint
    state = convert.convert(convert.tf_source(prefix), shapes(net))
    assert state.keys() == net.state_dict().keys()
    for key, tensor in net.state_dict().items():
        assert torch.equal(state[key], tensor), key  # values, transposes and the qkv order
    loaded = model.Bert(**preset("bert_large", "mini").model).eval()
    loaded.load_state_dict(state)
    assert torch.equal(outputs(loaded), outputs(net))


def test_nvidias_converted_pytorch_checkpoint_is_accepted(checkpoint, tmp_path: Path) -> None:
    """NVIDIA's layout: BertForPreTraining's names, dense_act for the fused dense layers,
    [out, in] weights, under "model"; the tied decoder and the heads left out."""
    _, net = checkpoint
    state = {}
    for name, array in tf_weights(net).items():
        if name.endswith("adam_m") or name == "global_step":
            continue
        key = convert.torch_name(name).replace("intermediate.dense.", "intermediate.dense_act.")
        state[f"module.{key}"] = torch.from_numpy(array.T if name.endswith("/kernel") else array)
    state["module.cls.predictions.decoder.weight"] = state[
        "module.bert.embeddings.word_embeddings.weight"
    ]
    torch.save({"model": state, "epoch": 0}, tmp_path / "nvidia.pt")
    converted = convert.convert(convert.torch_source(tmp_path / "nvidia.pt"), shapes(net))
    assert all(torch.equal(converted[k], v) for k, v in net.state_dict().items())


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "convert_checkpoint.py", *map(str, args)], cwd=WORKLOAD,
        env=environ("bert_large", WORKLOAD), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def copy_bundle(prefix: Path, to: Path) -> Path:
    to.mkdir()
    for f in prefix.parent.glob(prefix.name + ".*"):
        shutil.copyfile(f, to / f.name)
    return to / prefix.name


def damage(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


DATA, INDEX = ".data-00000-of-00001", ".index"


def beside(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


@pytest.mark.parametrize(
    ("harm", "says"),
    [
        (lambda p: beside(p, DATA).write_bytes(b"\0" * 100), "truncated"),
        (lambda p: damage(beside(p, DATA), 5), "CRC32C does not match"),
        (lambda p: beside(p, INDEX).write_bytes(b"\0" * 60), "not a TensorFlow checkpoint"),
        (lambda p: damage(beside(p, INDEX), 20), "corrupt"),
        (lambda p: beside(p, INDEX).unlink(), "No such file"),
    ],
)  # fmt: skip
def test_a_damaged_checkpoint_is_one_line(checkpoint, tmp_path: Path, harm, says: str) -> None:
    prefix = copy_bundle(checkpoint[0], tmp_path / "ckpt")
    harm(prefix)
    with pytest.raises(tf_bundle.BundleError, match=says) as caught:
        convert.convert(convert.tf_source(prefix), shapes(checkpoint[1]))
    assert "\n" not in str(caught.value)


def test_a_compressed_block_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.index").write_bytes(table([(b"", field(1, 1))], kind=1))
    with pytest.raises(tf_bundle.BundleError, match="compressed block"):
        tf_bundle.Bundle(tmp_path / "c")


def test_the_command_refuses_a_missing_tensor_and_another_shape(checkpoint, tmp_path) -> None:
    prefix, net = checkpoint
    weights = tf_weights(net)
    del weights["bert/encoder/layer_1/output/dense/bias"]
    write_bundle(tmp_path / "missing", weights)
    result = cli(tmp_path / "missing", tmp_path / "out.pt", "--config", "mini")
    assert result.returncode == 1 and not (tmp_path / "out.pt").exists()
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/missing: no tensor 'bert/encoder/layer_1/output/dense/bias'"
    ]
    result = cli(prefix, tmp_path / "out.pt")  # a mini's weights against BERT-large
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "bert/embeddings/word_embeddings: shape [96, 64], the model's tokens.weight is " in (
        result.stderr
    )
    assert cli(prefix, tmp_path / "out.pt", "--config", "mini").returncode == 0
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


# -- a converge run from the converted checkpoint, and its row -----------------------------------


def test_a_converge_run_starts_from_the_checkpoint_and_the_row_says_so(
    checkpoint, tmp_path: Path
) -> None:
    """The workload copied under another name with a one-epoch mini preset that names the
    checkpoint (the full-phase1 preset's key), run by the agent: the run logs the weights it
    started from and the row's config cell names them with their sha256."""
    folder = tmp_path / "workloads" / "bert_from_phase1"
    shutil.copytree(WORKLOAD, folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (
        (folder / "workload.toml")
        .read_text()
        .replace('name = "bert_large"', 'name = "bert_from_phase1"')
    )
    toml += '\n[configs.mini-phase1]\nbase = "mini"\nepochs = 2\n'
    toml += '[configs.mini-phase1.init_checkpoint]\nfile = "init/phase1.pt"\nname = "phase-1"\n'
    (folder / "workload.toml").write_text(toml)
    data = tmp_path / "data"
    (data / "init").mkdir(parents=True)
    assert cli(checkpoint[0], data / "init" / "phase1.pt", "--config", "mini").returncode == 0
    write_manifest(data)
    out = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "deepspark_agent", "run", "bert_from_phase1", "--workloads",
         str(folder.parent), "--config", "mini-phase1", "--mode", "converge", "--runs", "1",
         "--data-dir", str(data), "--runtime", "process", "--out", str(out), "--json"],
        env=environ("bert_large", out), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run_set,) = [p.parent for p in out.rglob("result.json")]
    log = [
        json.loads(x.removeprefix(":::MLLOG "))
        for x in (run_set / "run-1" / "mllog.log").read_text().splitlines()
    ]
    (weights,) = [e for e in log if e["key"] == "weights"]
    digest = hashlib.sha256((data / "init" / "phase1.pt").read_bytes()).hexdigest()
    assert (weights["value"], weights["metadata"]["sha256"], weights["metadata"]["name"]) == (
        "checkpoint",
        digest,
        "phase-1",
    )
    summary = json.loads((run_set / "result.json").read_text())
    assert summary["runs"][0]["start_weights"] == f"phase-1 checkpoint sha256:{digest}"
    assert (
        f"mini-phase1 (from phase-1 checkpoint sha256:{digest[:12]})"
        in (run_set / "report.md").read_text()
    )
