"""Log-mel spectrograms with numpy alone, for the speech workloads' data converters.

One STFT and one mel filterbank for every speech dataset, computed as librosa does (and so as
NVIDIA's Tacotron 2 does, whose STFT is librosa's): frames centred on every hop (the signal
reflect-padded by half an FFT each side), a periodic Hann window of `window` samples centred
in an FFT of `n_fft`, and Slaney's mel scale with area-normalised triangular filters
(librosa.filters.mel's defaults). Framework-free: converters run without torch.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# Slaney's mel scale (Auditory Toolbox): linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL  # 15
_LOG_STEP = np.log(6.4) / 27  # 6.4 kHz is mel 42


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log = _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(hz < _LOG_START_HZ, hz / _LINEAR_HZ_PER_MEL, log)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL))
    return np.where(mel < _LOG_START_MEL, mel * _LINEAR_HZ_PER_MEL, log)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced in mel from fmin to fmax Hz,
    each scaled to unit area in Hz (Slaney's normalisation)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    rising = (bins - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins) / np.diff(edges)[1:, None]
    triangles = np.maximum(0, np.minimum(rising, falling))
    return triangles * (2 / (edges[2:] - edges[:-2]))[:, None]


def stft_magnitude(signal: np.ndarray, n_fft: int, hop: int, window: int) -> np.ndarray:
    """(n_fft // 2 + 1, 1 + len(signal) // hop) magnitudes of frames centred every hop samples."""
    half = n_fft // 2
    padded = np.pad(np.asarray(signal, dtype=np.float64), half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    hann = np.zeros(n_fft)
    left = (n_fft - window) // 2
    hann[left : left + window] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    return np.abs(np.fft.rfft(frames * hann, axis=1)).T


@dataclass(frozen=True)
class LogMel:
    """A front end's parameters; calling it turns a mono signal in [-1, 1] into
    (n_mels, frames) float32 log(max(mel energies, floor)), energies of |STFT| ** power."""

    rate: int  # samples per second the signal must have
    n_fft: int
    hop: int
    window: int
    n_mels: int
    fmin: float
    fmax: float
    power: float  # 1: magnitudes (Tacotron 2), 2: power (ASR front ends)
    floor: float

    @cached_property
    def filterbank(self) -> np.ndarray:
        return mel_filterbank(self.rate, self.n_fft, self.n_mels, self.fmin, self.fmax)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        spectrum = stft_magnitude(signal, self.n_fft, self.hop, self.window) ** self.power
        return np.log(np.maximum(self.filterbank @ spectrum, self.floor)).astype(np.float32)
