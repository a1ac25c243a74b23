"""Image classification data for the Paddle ResNet-50: the library's arrays in paddle loaders.

mini: the generated glyph scenes of deepspark_workload/images.py (the PyTorch twin's, to the
byte: both log the same sha256). full, speed mode: synthetic batches of the real
shape, made once on the device. full, converge mode: the ImageNet-style folder of images.py,
checked against its manifest and decoded with Pillow.
"""

import itertools
from collections.abc import Iterable

import paddle
from paddle.io import DataLoader

from deepspark_workload import images
from deepspark_workload.paddle_workload import Workload


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Training batches for wl.windows(), and the validation loader (None when not needed)."""
    if wl.preset.data == "glyphs":
        x_train, y_train, x_val, y_val = images.glyph_splits(wl.preset.image_size)
        wl.log_generated_data("glyph scenes", x_train, y_train, x_val, y_val)
        # (image, label) pairs of numpy arrays: paddle's collate stacks them into tensors
        train, val = list(zip(x_train, y_train, strict=True)), list(zip(x_val, y_val, strict=True))
        return wl.loader(train, train=True), wl.loader(val, train=False)
    size, model = wl.preset.image_size, wl.preset.model
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        x = paddle.randn([wl.batch_size, model["in_channels"], size, size])
        y = paddle.randint(0, model["num_classes"], [wl.batch_size])
        return itertools.repeat((x, y)), None
    train, val = images.image_folder(wl.data_dir(), size)
    kwargs = wl.loader_options()
    wl.log_data_loader("pillow", kwargs["num_workers"])
    return wl.loader(train, train=True, **kwargs), wl.loader(val, train=False, **kwargs)
