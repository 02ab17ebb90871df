"""The audio features SyncNet was trained on: 13 MFCC at 100 Hz from 16 kHz speech, with torchaudio.

Source: joonson/syncnet_python ``SyncNetInstance.evaluate`` calls ``python_speech_features.mfcc(audio,
16000)`` with its defaults on the int16 samples of a 16 kHz mono WAV. Those defaults, matched here:
25 ms frames (400 samples) every 10 ms (160 samples), rectangular window, the last frame zero-padded
(frame count ``1 + ceil((N - 400) / 160)``), pre-emphasis 0.97, 512-point FFT power spectrum divided by
512, 26 triangular mel filters (HTK mel formula, 0 Hz to 8 kHz, peak 1), natural log, orthonormal
DCT-II keeping 13 coefficients, cepstral lifter 22, then coefficient 0 replaced by the log of the
frame's total power. Samples are scaled to the int16 range (x 32768) as the public code reads them.

torchaudio does the framing (``Spectrogram``), pre-emphasis and DCT matrix (``create_dct``). The mel
filterbank is the one place where torchaudio's own differs from the public features:
python_speech_features snaps each triangle's corners to whole FFT bins (``floor((nfft + 1) * f / sr)``)
while ``torchaudio.functional.melscale_fbanks`` evaluates the triangles at each bin's exact frequency.
At 26 filters over 257 bins the lowest filters are one or two bins wide, so the two differ by more
than the spread of the coefficients (measured on speech-like noise: up to ~1.3x the per-coefficient
standard deviation); SyncNet was trained on the snapped filters, so :func:`snapped_mel_filterbank`
builds those (26 x 257 weights, from the formula above).
"""

from __future__ import annotations

import math

import torch
import torchaudio

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms: 100 MFCC frames per second, 4 per video frame at 25 fps
N_FFT = 512
N_MELS = 26
N_MFCC = 13
PREEMPHASIS = 0.97
CEPSTRAL_LIFTER = 22
INT16_SCALE = 32768.0


def frame_count(num_samples: int) -> int:
    """MFCC frames python_speech_features makes from ``num_samples`` (the last frame zero-padded)."""
    if num_samples <= FRAME_LENGTH:
        return 1
    return 1 + math.ceil((num_samples - FRAME_LENGTH) / HOP_LENGTH)


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def snapped_mel_filterbank() -> torch.Tensor:
    """``[26, 257]`` float64 triangular mel filters (HTK mel, 0..8 kHz, peak 1) whose corners sit on
    whole FFT bins ``floor(513 * f / 16000)``: the filterbank of python_speech_features'
    ``get_filterbanks`` with the defaults SyncNet's features used (see the module docstring)."""
    mels = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(SAMPLE_RATE / 2.0, dtype=torch.float64))),
                          N_MELS + 2, dtype=torch.float64)
    corners = torch.floor((N_FFT + 1) * _mel_to_hz(mels) / SAMPLE_RATE)
    bins = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)
    low, mid, high = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = torch.where((bins >= low) & (bins < mid), (bins - low) / (mid - low).clamp_min(1), 0.0)
    falling = torch.where((bins >= mid) & (bins < high), (high - bins) / (high - mid).clamp_min(1), 0.0)
    return rising + falling


def syncnet_mfcc(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """SyncNet's audio features of one mono clip.

    Args:
        waveform: ``[T]`` or ``[C, T]`` float audio in -1..1 (channels are averaged, like ffmpeg's ``-ac 1``).
        sample_rate: Hz; resampled to 16 kHz with ``torchaudio.functional.resample`` when different.

    Returns:
        ``[13, F]`` float32 MFCC, ``F = frame_count(samples at 16 kHz)``, 100 frames per second.
    """
    audio = waveform.detach().to(torch.float64)
    if audio.ndim == 2:
        audio = audio.mean(0)
    if sample_rate != SAMPLE_RATE:
        audio = torchaudio.functional.resample(audio, sample_rate, SAMPLE_RATE)
    audio = audio * INT16_SCALE
    frames = frame_count(audio.numel())
    emphasised = torchaudio.functional.preemphasis(audio[None], PREEMPHASIS)[0]  # before the zero padding
    emphasised = torch.nn.functional.pad(emphasised, (0, (frames - 1) * HOP_LENGTH + FRAME_LENGTH - audio.numel()))
    # torch.stft centres the 400-sample window in each 512-sample FFT frame: shift by the 56 zeros so
    # that frame k covers samples [160 k, 160 k + 400) as in python_speech_features (magnitudes only).
    side = (N_FFT - FRAME_LENGTH) // 2
    emphasised = torch.nn.functional.pad(emphasised, (side, side))
    spectrogram = torchaudio.transforms.Spectrogram(
        n_fft=N_FFT, win_length=FRAME_LENGTH, hop_length=HOP_LENGTH, window_fn=torch.ones, power=2.0,
        center=False, normalized=False).to(torch.float64)
    power = spectrogram(emphasised) / N_FFT  # [257, F]
    mel = snapped_mel_filterbank() @ power  # [26, F]
    tiny = torch.finfo(torch.float64).eps
    log_mel = torch.where(mel == 0, tiny, mel).log()
    dct = torchaudio.functional.create_dct(N_MFCC, N_MELS, norm="ortho").to(torch.float64)  # [26, 13]
    cepstra = dct.T @ log_mel  # [13, F]
    n = torch.arange(N_MFCC, dtype=torch.float64)
    cepstra = cepstra * (1 + CEPSTRAL_LIFTER / 2 * torch.sin(math.pi * n / CEPSTRAL_LIFTER))[:, None]
    energy = power.sum(0)
    cepstra[0] = torch.where(energy == 0, tiny, energy).log()
    return cepstra.to(torch.float32)
