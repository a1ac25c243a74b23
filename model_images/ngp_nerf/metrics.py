"""The NeRF quality metric: PSNR of rendered held-out views against the ground truth."""

import torch


def psnr(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """10 log10(1 / MSE) in dB for one image with values in [0, 1] (the peak is 1); a view's
    PSNR is averaged over views, as NeRF papers report it."""
    mse = (prediction.float().clamp(0, 1) - truth.float()).square().mean()
    return (-10 * torch.log10(mse)).item()
