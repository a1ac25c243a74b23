"""The instant-ngp NeRF workload: the model, its data, its metric, and whole runs under the
contract."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, preset, spec

NAME = "ngp_nerf"
PRESETS = spec(NAME)["configs"]
# The paper's NeRF model (Müller et al. 2022, sec. 4 and 5.4): 16 levels of F=2 features,
# T=2^19, N_min=16, N_max=2048. A level holds min(T, (N_l+1)^3) entries: levels 0-4 (N_l = 16,
# 22, 30, 42, 58) are dense, 331,757 entries together, the other 11 hold 2^19 each: 6,098,925
# entries, 12,197,850 table parameters. The MLPs, biasless as in tiny-cuda-nn: density 32-64-16
# (3,072) and colour 32-64-64-3 (6,336). Total 12,207,258.
REFERENCE_PARAMETERS = 12_197_850 + 3_072 + 6_336


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_reference_parameters() -> None:
    with torch.device("meta"):
        model = load("model").InstantNGP(**PRESETS["full"]["model"])
    assert abs(parameters(model) / REFERENCE_PARAMETERS - 1) < 0.02
    assert parameters(model) == 12_207_258
    assert load("model").level_resolutions(16, 16, 2048)[:6] == [16, 22, 30, 42, 58, 80]
    assert load("model").level_resolutions(16, 16, 2048)[-1] == 2048


def test_full_model_forward_backward() -> None:
    """The full model (all 16 levels, 2^19 tables, 128 samples a ray) on a batch of 256 rays
    rather than 4096: the same code path, a sixteenth of the points."""
    torch.manual_seed(0)
    model = load("model").InstantNGP(**PRESETS["full"]["model"])
    origins = torch.tensor([0.0, -4.0, 0.5]).expand(256, 3)
    dirs = torch.nn.functional.normalize(-origins + 0.3 * torch.randn(256, 3), dim=-1)
    rgb = model(origins, dirs)
    assert rgb.shape == (256, 3) and ((rgb >= 0) & (rgb <= 1)).all()
    ((rgb - 0.3) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_psnr_by_hand() -> None:
    psnr = load("metrics").psnr
    truth = torch.zeros(2, 2, 3)
    # every value off by 0.1: MSE 0.01, PSNR 10 log10(100) = 20 dB
    assert psnr(truth + 0.1, truth) == pytest.approx(20.0, rel=1e-5)
    # one of 4 pixels wrong by 1 in all channels: MSE 0.25, PSNR 10 log10(4) = 6.0206 dB
    guess = truth.clone()
    guess[0, 0] = 1
    assert psnr(guess, truth) == pytest.approx(10 * math.log10(4), rel=1e-5)
    # predictions are clipped to [0, 1] first: 1.5 scores as 1
    guess[0, 0] = 1.5
    assert psnr(guess, truth) == pytest.approx(10 * math.log10(4), rel=1e-5)


def test_hash_grid_interpolates_and_hashes() -> None:
    """A vertex's own position reads its entry exactly; a dense level indexes i + j s + k s^2,
    a hashed one (i xor j*p2 xor k*p3) mod T."""
    model = load("model")
    grid = model.HashGrid(levels=2, features=1, log2_table_size=6, base_resolution=2,
                          finest_resolution=4)  # fmt: skip
    assert grid.resolution.tolist() == [2, 4]  # (2+1)^3 = 27 fit in 64: dense; 5^3 = 125 hashed
    assert grid.size.tolist() == [27, 64] and grid.dense.tolist() == [True, False]
    with torch.no_grad():
        grid.table.copy_(torch.arange(91.0)[:, None])
    x = torch.tensor([[0.5, 0.0, 1.0], [0.25, 0.75, 0.5]])
    # level 0 (N=2): vertex (1, 0, 2) -> 1 + 0*3 + 2*9 = 19; (0.5, 1.5, 1) lies midway between
    # vertices (0|1, 1|2, 1): entries 12, 13, 15, 16, mean 14
    # level 1 (N=4): vertex (2, 0, 4) -> (2 ^ 0 ^ 4*805459861) % 64, (1, 3, 2) likewise
    h1 = (2 ^ 0 ^ 4 * 805459861) % 64
    h2 = (1 ^ 3 * 2654435761 ^ 2 * 805459861) % 64
    out = grid(x)
    assert out[0].tolist() == pytest.approx([19.0, 27.0 + h1])
    assert out[1, 0].item() == pytest.approx(14.0)
    assert out[1, 1].item() == pytest.approx(27.0 + h2)


def test_compositing_and_box() -> None:
    model = load("model").InstantNGP(**PRESETS["mini"]["model"])
    # a ray along x from (-3, 0, 0) enters the box [-1.2, 1.2]^3 at 1.8 and leaves at 4.2
    near, far = model.box_span(torch.tensor([[-3.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]))
    assert (near.item(), far.item()) == pytest.approx((1.8, 4.2))
    miss = model.box_span(torch.tensor([[-3.0, 2, 0]]), torch.tensor([[1.0, 0, 0]]))
    assert miss[0].item() == miss[1].item()
    # an opaque first sample shows its colour; empty space shows the background
    rgb = torch.tensor([[[0.2, 0.4, 0.6], [1.0, 0.0, 0.0]]])
    delta = torch.tensor([[0.5]])
    opaque = model.composite(torch.tensor([[1e4, 1e4]]), rgb, delta)
    assert opaque[0].tolist() == pytest.approx([0.2, 0.4, 0.6])
    empty = model.composite(torch.zeros(1, 2), rgb, delta)
    assert empty[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    # sigma*delta = ln 2 per sample: weights 1/2 and 1/4, 1/4 of background left
    half = model.composite(torch.full((1, 2), 2 * math.log(2)), rgb, delta)
    expected = [0.5 * 0.2 + 0.25 * 1 + 0.25, 0.5 * 0.4 + 0.25, 0.5 * 0.6 + 0.25]
    assert half[0].tolist() == pytest.approx(expected)


def test_spherical_harmonics_are_orthonormal() -> None:
    """Real SH up to degree 4 are orthonormal over the sphere: their mean products are I/(4pi)."""
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(200_000, 3, dtype=torch.float64), dim=-1)
    sh = load("model").spherical_harmonics(d).double()
    gram = sh.T @ sh / len(d) * 4 * math.pi
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.03)


def test_spheres_scene() -> None:
    data = load("data")
    cams = data.fibonacci_cameras(4)
    views = data.render_views(cams, 16)
    again = data.render_views(data.fibonacci_cameras(4), 16)
    assert all(torch.equal(torch.cat(v), torch.cat(w)) for v, w in zip(views, again, strict=True))
    for origins, dirs, rgb in views:
        assert origins.shape == dirs.shape == rgb.shape == (256, 3)
        assert torch.allclose(dirs.norm(dim=-1), torch.ones(256))
        white = (rgb == 1).all(-1).float().mean()
        assert 0.3 < white < 0.9  # both spheres and background in view
    # the central pixel rays pass through the origin, so they hit the big red sphere
    origins, dirs, rgb = views[0]
    assert rgb[8 * 16 + 8, 0] > rgb[8 * 16 + 8, 1:].max()
    # held-out cameras see views no training camera sees
    test = data.fibonacci_cameras(4, turn=0.5)
    assert all(not torch.allclose(a, b) for a in test for b in cams)


def test_ray_batches_shard_and_reshuffle() -> None:
    data = load("data")
    rays = tuple(torch.arange(30.0)[:, None].expand(30, 3) for _ in range(3))
    shares = []
    for rank in (0, 1):
        wl = SimpleNamespace(device=torch.device("cpu"), batch_size=4, rank=rank, world_size=2,
                             env=SimpleNamespace(seed=3))  # fmt: skip
        batches = data.RayBatches(rays, wl)
        assert len(batches) == 3  # 30 rays: 3 global batches of 8, the tail dropped
        first, second = list(batches), list(batches)
        assert len(first) == 3 and all(b[0].shape == (4, 3) for b in first)
        assert not torch.equal(torch.cat([b[0] for b in first]), torch.cat([b[0] for b in second]))
        shares.append(torch.cat([b[0][:, 0] for b in first]))
    assert len(set(torch.cat(shares).tolist())) == 24  # the ranks' shares are disjoint


def test_untrained_model_is_far_from_target() -> None:
    data, metrics = load("data"), load("metrics")
    views = data.render_views(data.fibonacci_cameras(4, turn=0.5), 24)
    torch.manual_seed(0)
    model = load("model").InstantNGP(**PRESETS["mini"]["model"]).eval()
    with torch.no_grad():
        scores = [metrics.psnr(model(o, d), rgb) for o, d, rgb in views]
    assert sum(scores) / len(scores) < 10 < PRESETS["mini"]["target"]
    # predicting the white background everywhere is a better but still distant guess
    white = [metrics.psnr(torch.ones_like(rgb), rgb) for _, _, rgb in views]
    assert sum(white) / len(white) < PRESETS["mini"]["target"] - 5


def test_full_speed_data_shapes() -> None:
    wl = SimpleNamespace(preset=preset(NAME, "full"), converge=False, batch_size=8,
                         device=torch.device("cpu"))  # fmt: skip
    batches, val = load("data").load(wl)
    origins, dirs, rgb = next(iter(batches))
    assert val is None and origins.shape == dirs.shape == rgb.shape == (8, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(8))


def test_blender_layout(tmp_path: Path) -> None:
    data = load("data")
    with pytest.raises(ContractError, match=r"transforms_test\.json"):
        data.blender_split(tmp_path, "test")
    (tmp_path / "test").mkdir()
    pixels = np.zeros((4, 6, 4), dtype=np.uint8)
    pixels[..., 0], pixels[..., 3] = 255, 255  # opaque red ...
    pixels[1, 1, 3] = 0  # ... but for one transparent pixel
    Image.fromarray(pixels, "RGBA").save(tmp_path / "test" / "r_0.png")
    frame = {"file_path": "./test/r_0", "transform_matrix": np.eye(4).tolist()}
    meta = {"camera_angle_x": 2 * math.atan(0.5), "frames": [frame]}
    (tmp_path / "transforms_test.json").write_text(json.dumps(meta))
    ((origins, dirs, rgb),) = data.blender_split(tmp_path, "test")
    assert origins.shape == dirs.shape == rgb.shape == (24, 3)
    assert rgb[0].tolist() == [1, 0, 0] and rgb[1 * 6 + 1].tolist() == [1, 1, 1]  # over white
    # focal 6 (= width): the central ray looks down -z; the top-left one up and to the left
    assert dirs[2 * 6 + 3].tolist() == pytest.approx([0.5 / 6, -0.5 / 6, -1], abs=0.01)
    assert dirs[0, 0] < 0 < dirs[0, 1]


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    batch = PRESETS["mini"]["batch_size"]
    assert all(m["samples_count"] == 32 * 24 * 24 // batch * batch for m in stops)
