"""Rays and their colours for the instant-ngp NeRF workload.

A training batch is batch_size random rays (origins, unit directions, RGB in [0, 1]) drawn from
all training images; validation is a list of whole held-out views, each (origins, dirs, rgb) of
its H*W pixels.

mini: a fixed analytic scene (coloured, Lambert-shaded spheres in front of a white background)
rendered exactly by ray-sphere intersection at low resolution from cameras on a sphere around
it; training and held-out cameras differ. full, speed mode: synthetic rays of the real batch
shape, made once on the device. full, converge mode: a NeRF-synthetic (Blender) scene, e.g.
lego, as Mildenhall et al. 2020 released it, under $DS_DATA_DIR:

    transforms_train.json   camera_angle_x, frames[i].file_path ("./train/r_0"), transform_matrix
    transforms_val.json     (unused: the paper reports on the test views)
    transforms_test.json
    train/r_0.png ...       800x800 RGBA; alpha composited over white, as instant-ngp does
    test/r_0.png ...        (val/ may be present too)
    SHA256SUMS              sha256sum's manifest of every other file (docs/workload-contract.md)
"""

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepspark_workload import ContractError, Workload

Rays = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # origins, dirs, rgb: each (N, 3)

# The mini scene: (centre, radius, RGB) of opaque spheres inside [-1, 1]^3.
SPHERES = (
    ((0.0, 0.0, 0.0), 0.55, (0.9, 0.2, 0.15)),
    ((0.65, 0.35, 0.1), 0.3, (0.15, 0.7, 0.25)),
    ((-0.45, 0.55, -0.3), 0.35, (0.2, 0.3, 0.9)),
    ((0.1, -0.6, 0.45), 0.3, (0.95, 0.8, 0.1)),
    ((-0.5, -0.35, -0.5), 0.25, (0.6, 0.2, 0.7)),
)
LIGHT = (0.4, 0.5, 0.77)  # direction towards a distant light: view-independent shading


class RayBatches:
    """Each pass: this rank's share of a seeded shuffle of all rays, in full batches.

    Like wl.loader's DistributedSampler (drop_last, reshuffled every pass), but by slicing
    tensors on the device, since a batch is thousands of single-pixel samples.
    """

    def __init__(self, rays: Rays, wl: Workload) -> None:
        self.rays, self.batch = [r.to(wl.device) for r in rays], wl.batch_size
        self.seed, self.rank, self.world = wl.env.seed, wl.rank, wl.world_size
        self.steps = len(rays[0]) // (self.batch * self.world)
        self.epoch = 0
        if self.steps == 0:
            raise ContractError(f"{len(rays[0])} rays make no batch of {self.batch} per rank")

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Rays]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.rays[0]), generator=generator).to(self.rays[0].device)
        mine = order[self.rank : self.steps * self.batch * self.world : self.world]
        for step in range(self.steps):
            index = mine[step * self.batch : (step + 1) * self.batch]
            yield tuple(r[index] for r in self.rays)


def load(wl: Workload) -> tuple[RayBatches | Iterator[Rays], list[Rays] | None]:
    """Training batches for wl.windows(), and the held-out views (None when not needed)."""
    if wl.preset.data == "spheres":
        size = wl.preset.image_size
        train = render_views(fibonacci_cameras(wl.preset.train_views), size)
        test = render_views(fibonacci_cameras(wl.preset.test_views, turn=0.5), size)
        wl.log_generated_data("spheres", *concat(train), *concat(test))
        return RayBatches(concat(train), wl), test
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        g = torch.Generator(device=wl.device).manual_seed(0)
        origins = torch.nn.functional.normalize(
            torch.randn(wl.batch_size, 3, device=wl.device, generator=g), dim=-1
        )
        dirs = torch.nn.functional.normalize(
            -origins + 0.3 * torch.randn(wl.batch_size, 3, device=wl.device, generator=g), dim=-1
        )
        rgb = torch.rand(wl.batch_size, 3, device=wl.device, generator=g)
        return itertools.repeat((4 * origins, dirs, rgb)), None
    root = wl.data_dir()
    train = blender_split(root, "train")
    return RayBatches(concat(train), wl), blender_split(root, "test")


def concat(views: list[Rays]) -> Rays:
    return tuple(torch.cat(parts) for parts in zip(*views, strict=True))


def camera_rays(c2w: torch.Tensor, height: int, width: int, focal: float) -> Rays:
    """Pixel-centre rays of a pinhole camera (OpenGL convention: looks down -z, y up), as in
    NeRF's get_rays; returns (H*W, 3) origins and unit directions, and no colour."""
    j, i = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5,
        torch.arange(width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    cam = torch.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -torch.ones_like(i)], -1)
    dirs = torch.nn.functional.normalize(cam.reshape(-1, 3) @ c2w[:3, :3].T, dim=-1)
    origins = c2w[:3, 3].expand_as(dirs)
    return origins, dirs, torch.empty(0)


def look_at(eye: torch.Tensor) -> torch.Tensor:
    """Camera-to-world (4x4) of a camera at eye looking at the origin, z up."""
    back = eye / eye.norm()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype)
    if abs(float(back @ up)) > 0.99:
        up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype)
    right = torch.linalg.cross(up, back)
    right = right / right.norm()
    c2w = torch.eye(4, dtype=eye.dtype)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = (
        right,
        torch.linalg.cross(back, right),
        back,
        eye,
    )
    return c2w


def fibonacci_cameras(n: int, radius: float = 4.0, turn: float = 0.0) -> list[torch.Tensor]:
    """n cameras spread evenly over a sphere (a Fibonacci lattice), rotated by turn steps."""
    golden = math.pi * (3 - math.sqrt(5))
    cams = []
    for k in range(n):
        z = 1 - (2 * k + 1) / n
        r, phi = math.sqrt(1 - z * z), golden * (k + turn)
        eye = radius * torch.tensor([r * math.cos(phi), r * math.sin(phi), z], dtype=torch.float64)
        cams.append(look_at(eye))
    return cams


def render_spheres(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Exact colour of each ray: the nearest sphere hit, Lambert-shaded, else white."""
    rgb = torch.ones_like(origins)
    nearest = torch.full(origins.shape[:1], math.inf, dtype=origins.dtype)
    light = torch.nn.functional.normalize(torch.tensor(LIGHT, dtype=origins.dtype), dim=0)
    for centre, radius, colour in SPHERES:
        oc = origins - torch.tensor(centre, dtype=origins.dtype)
        b = (oc * dirs).sum(-1)
        disc = b * b - (oc * oc).sum(-1) + radius * radius
        t = -b - disc.clamp(min=0).sqrt()
        hit = (disc > 0) & (t > 0) & (t < nearest)
        normal = (oc + t[:, None] * dirs) / radius
        shade = 0.3 + 0.7 * (normal @ light).clamp(min=0)
        rgb[hit] = (shade[:, None] * torch.tensor(colour, dtype=origins.dtype))[hit]
        nearest = torch.where(hit, t, nearest)
    return rgb


def render_views(cameras: list[torch.Tensor], size: int, fov_degrees: float = 40.0) -> list[Rays]:
    """The mini scene seen by each camera at size x size: float32 rays and exact colours."""
    focal = 0.5 * size / math.tan(math.radians(fov_degrees) / 2)
    views = []
    for c2w in cameras:
        origins, dirs, _ = camera_rays(c2w, size, size, focal)
        rgb = render_spheres(origins, dirs)
        views.append((origins.float(), dirs.float(), rgb.float()))
    return views


def blender_split(root: Path, split: str) -> list[Rays]:
    """One NeRF-synthetic split: every view's rays, RGBA composited over white."""
    path = root / f"transforms_{split}.json"
    if not path.is_file():
        raise ContractError(f"{path} is missing (a NeRF-synthetic scene: see data.py)")
    meta = json.loads(path.read_text())
    views = []
    for frame in meta["frames"]:
        image = Image.open(root / f"{frame['file_path'].removeprefix('./')}.png").convert("RGBA")
        rgba = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)
        height, width = rgba.shape[:2]
        focal = 0.5 * width / math.tan(0.5 * meta["camera_angle_x"])
        c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
        origins, dirs, _ = camera_rays(c2w, height, width, focal)
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        views.append((origins.float(), dirs.float(), rgb.reshape(-1, 3)))
    if not views:
        raise ContractError(f"{path} lists no frames")
    return views
