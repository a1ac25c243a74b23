"""Tacotron 2's training loss and the workload's quality metric, the held-out mel loss."""

import torch
import torch.nn.functional as F


def gate_targets(mel_lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """The stop token's target (B, frames): 1 from each utterance's last frame on."""
    return (torch.arange(frames, device=mel_lengths.device) >= mel_lengths[:, None] - 1).float()


def tacotron2_loss(
    frames: torch.Tensor,
    postnet: torch.Tensor,
    gate: torch.Tensor,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor,
) -> torch.Tensor:
    """NVIDIA's Tacotron2Loss: MSE of the decoder's and the post-net's frames (padding included,
    where both are 0) plus the stop token's binary cross-entropy."""
    mels = mels.float()
    return (
        F.mse_loss(frames.float(), mels)
        + F.mse_loss(postnet.float(), mels)
        + F.binary_cross_entropy_with_logits(gate.float(), gate_targets(mel_lengths, gate.size(1)))
    )


def mel_squared_error(
    postnet: torch.Tensor, mels: torch.Tensor, mel_lengths: torch.Tensor
) -> tuple[float, int]:
    """Sum of squared errors of the post-net's frames over the real (unpadded) frames, and how
    many values that sums: their ratio over all batches and ranks is the mean squared error."""
    real = torch.arange(mels.size(2), device=mels.device) < mel_lengths[:, None]  # (B, T)
    error = (postnet.float() - mels.float()).square().sum(1)  # (B, T), summed over mel bins
    return error[real].sum().item(), int(real.sum()) * mels.size(1)
