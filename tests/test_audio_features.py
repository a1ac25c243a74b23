"""The speech converters' one log-mel front end (deepspark_workload.audio), numpy alone."""

import numpy as np
import pytest
import torch

from deepspark_workload.audio import LogMel, hz_to_mel, mel_filterbank, mel_to_hz, stft_magnitude


def test_stft_matches_torch_centred_reflect_padded_stft() -> None:
    signal = np.random.default_rng(0).normal(size=4001)
    window = torch.hann_window(400, dtype=torch.float64)  # periodic, centred in the FFT
    ours = stft_magnitude(signal, n_fft=512, hop=160, window=400)
    theirs = torch.stft(
        torch.from_numpy(signal), 512, 160, 400, window=window, center=True, pad_mode="reflect",
        return_complex=True,
    ).abs()  # fmt: skip
    assert ours.shape == (257, 1 + 4001 // 160)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-9)


def test_slaney_mel_scale() -> None:
    # linear below 1 kHz (200/3 Hz a mel), then 27 mels for every factor of 6.4
    np.testing.assert_allclose(hz_to_mel([0, 500, 1000, 6400]), [0, 7.5, 15, 42])
    hz = np.array([40.0, 999.0, 1001.0, 7999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz)


def test_filters_are_unit_area_triangles_at_mel_spaced_centres() -> None:
    rate, n_fft = 16000, 4096  # fine bins, so that the sums approximate the integrals
    bank = mel_filterbank(rate, n_fft, n_mels=40, fmin=0, fmax=8000)
    assert bank.shape == (40, n_fft // 2 + 1) and (bank >= 0).all()
    np.testing.assert_allclose(bank.sum(1) * rate / n_fft, 1, atol=0.02)
    centres = np.fft.rfftfreq(n_fft, 1 / rate)[bank.argmax(1)]
    spacing = np.diff(hz_to_mel(centres))
    np.testing.assert_allclose(spacing, spacing.mean(), atol=0.05)


def test_a_tone_peaks_in_its_filter_and_silence_sits_at_the_floor() -> None:
    features = LogMel(16000, 512, 160, 400, n_mels=80, fmin=0, fmax=8000, power=2, floor=1e-10)
    t = np.arange(16000) / 16000
    tone = features(0.5 * np.sin(2 * np.pi * 1000 * t))
    centres = mel_to_hz(np.linspace(0, hz_to_mel(8000), 82))[1:-1]
    assert tone.shape == (80, 101) and tone.dtype == np.float32
    assert abs(centres[int(np.median(tone.argmax(0)))] - 1000) < 60
    silence = features(np.zeros(1600))
    np.testing.assert_array_equal(silence, np.float32(np.log(1e-10)))


@pytest.mark.parametrize("power", [1, 2])
def test_a_louder_signal_shifts_the_log_by_power_times_the_gain(power: int) -> None:
    signal = np.random.default_rng(1).normal(size=2000)
    features = LogMel(22050, 1024, 256, 1024, n_mels=80, fmin=0, fmax=8000, power=power, floor=0)
    np.testing.assert_allclose(
        features(3 * signal) - features(signal), power * np.log(3), atol=1e-5
    )
