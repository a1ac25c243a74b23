"""MLPerf BERT's phase-1 checkpoint -> this model's state dict, which the full-phase1 preset's
converge runs start from ($DS_DATA_DIR/phase1.pt; README.md says how to get it).

    python convert_checkpoint.py bs64k_32k_ckpt/model.ckpt-28252 phase1.pt
    python convert_checkpoint.py nvidia_phase1.pt phase1.pt   # NVIDIA's converted {"model": ...}

The TF checkpoint (a tensor bundle: PREFIX.index and PREFIX.data-00000-of-00001) is read
without TensorFlow (deepspark_workload.tf_bundle); its kernels are [in, out], transposed to
torch's [out, in]; query, key and value become the one qkv projection; LayerNorm's gamma and
beta its weight and bias. Left out: the optimizer's slots (adam_m, adam_v), global_step, the
pooler and the next-sentence head, which this MLM-only model lacks (model.py). The decoder is
tied to the token embeddings, as in the checkpoint. Every tensor the model has must be there
with its shape: a missing tensor or another shape is a one-line error.
"""

import argparse
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from deepspark_workload.tf_bundle import Bundle, BundleError

Source = Callable[[str], np.ndarray]  # a TF name -> its array, kernels already [out, in]


class ConvertError(ValueError):
    """A checkpoint that is not this model's: one line saying why."""


def tf_names(layers: int) -> Iterator[tuple[str, list[str]]]:
    """Each state dict key of model.Bert and the TF names its tensor is made of."""

    def dense(ours: str, tf: str) -> Iterator[tuple[str, list[str]]]:
        yield f"{ours}.weight", [f"{tf}/kernel"]
        yield f"{ours}.bias", [f"{tf}/bias"]

    def norm(ours: str, tf: str) -> Iterator[tuple[str, list[str]]]:
        yield f"{ours}.weight", [f"{tf}/LayerNorm/gamma"]
        yield f"{ours}.bias", [f"{tf}/LayerNorm/beta"]

    embeddings = "bert/embeddings"
    yield "tokens.weight", [f"{embeddings}/word_embeddings"]
    yield "positions.weight", [f"{embeddings}/position_embeddings"]
    yield "types.weight", [f"{embeddings}/token_type_embeddings"]
    yield from norm("ln", embeddings)
    for i in range(layers):
        tf, ours = f"bert/encoder/layer_{i}", f"layers.{i}"
        qkv = [f"{tf}/attention/self/{part}" for part in ("query", "key", "value")]
        yield f"{ours}.attn.qkv.weight", [f"{p}/kernel" for p in qkv]
        yield f"{ours}.attn.qkv.bias", [f"{p}/bias" for p in qkv]
        yield from dense(f"{ours}.attn.out", f"{tf}/attention/output/dense")
        yield from norm(f"{ours}.ln1", f"{tf}/attention/output")
        yield from dense(f"{ours}.ffn.0", f"{tf}/intermediate/dense")
        yield from dense(f"{ours}.ffn.2", f"{tf}/output/dense")
        yield from norm(f"{ours}.ln2", f"{tf}/output")
    yield from dense("transform.0", "cls/predictions/transform/dense")
    yield from norm("transform.2", "cls/predictions/transform")
    yield "decoder_bias", ["cls/predictions/output_bias"]


def torch_name(tf: str) -> str:
    """The name NVIDIA's (and HuggingFace's) BertForPreTraining gives a TF tensor."""
    name = re.sub(r"layer_(\d+)", r"layer.\1", tf).replace("/", ".")
    name = re.sub(r"\.(kernel|gamma)$", ".weight", name).replace("LayerNorm.beta", "LayerNorm.bias")
    if name.endswith("_embeddings"):
        name += ".weight"
    return "cls.predictions.bias" if name == "cls.predictions.output_bias" else name


def tf_source(prefix: Path) -> Source:
    bundle = Bundle(prefix)

    def get(name: str) -> np.ndarray:
        array = bundle.read(name)
        return array.T if name.endswith("/kernel") else array

    return get


def torch_source(path: Path) -> Source:
    """NVIDIA's converted checkpoint ({"model": state dict}, or the state dict itself); its
    `dense_act` layers (a dense layer fused with its activation) are dense ones here."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a file it cannot read
        raise ConvertError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ConvertError(f"{path}: no state dict (a dict, or one under 'model')")
    tensors = {
        re.sub(r"^module\.", "", k).replace(".dense_act.", ".dense."): v
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }

    def get(name: str) -> np.ndarray:
        key = torch_name(name)
        if key not in tensors:
            raise ConvertError(f"{path}: no tensor {key!r}")
        return tensors[key].float().numpy()

    return get


def convert(source: Source, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The state dict of a model.Bert whose tensors have shapes, from source's tensors."""
    layers = len({key.split(".")[1] for key in shapes if key.startswith("layers.")})
    state = {}
    for key, names in tf_names(layers):
        array = np.concatenate([source(name) for name in names])
        if array.shape != tuple(shapes[key]):
            raise ConvertError(
                f"{', '.join(names)}: shape {list(array.shape)}, the model's {key} is "
                f"{list(shapes[key])}"
            )
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if missing := set(shapes) - set(state):
        raise ConvertError(f"no TF name for the model's {sorted(missing)[0]}")
    return state


def model_shapes(config: str) -> dict[str, torch.Size]:
    """The shapes of the model a preset of workload.toml builds (on the meta device)."""
    from deepspark_core.workload_spec import read_spec

    from model import Bert

    preset = read_spec(Path(__file__).parent).configs[config]
    with torch.device("meta"):
        return {k: v.shape for k, v in Bert(**preset.model).state_dict().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source", type=Path, help="TF_CKPT_PREFIX (PREFIX.index beside it) or a .pt"
    )
    parser.add_argument("out", type=Path, help="the state dict to write (OUT.pt)")
    parser.add_argument("--config", default="full-phase1", help="the preset whose model it fits")
    args = parser.parse_args(argv)
    try:
        shapes = model_shapes(args.config)
        pt = args.source.suffix == ".pt"
        state = convert((torch_source if pt else tf_source)(args.source), shapes)
    except (BundleError, ConvertError) as exc:
        raise SystemExit(f"error: {exc}") from None
    partial = args.out.with_name(args.out.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, args.out)  # whole or not at all
    print(f"{args.out}: {len(state)} tensors of the {args.config} model from {args.source}")


if __name__ == "__main__":
    main()
