"""SyncNet's MFCC and face crops against references written from reading the public code
(python_speech_features 0.6 ``mfcc`` defaults as SyncNetInstance calls it; syncnet_python's
``crop_video``)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.fftpack import dct
from scipy.signal import medfilt

from beyond_monologue.evaluate.lip_sync import face_crops, resample_indices
from beyond_monologue.evaluate.mfcc import syncnet_mfcc


def reference_mfcc(signal: np.ndarray, rate: int = 16000) -> np.ndarray:
    """python_speech_features.mfcc(signal, 16000) with its defaults, in numpy: ``[frames, 13]``."""
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    frame_len, step = 400, 160
    count = 1 if len(signal) <= frame_len else 1 + math.ceil((len(signal) - frame_len) / step)
    padded = np.concatenate([signal, np.zeros((count - 1) * step + frame_len - len(signal))])
    frames = np.stack([padded[i * step:i * step + frame_len] for i in range(count)])
    power = np.abs(np.fft.rfft(frames, 512)) ** 2 / 512
    energy = power.sum(1)
    energy[energy == 0] = np.finfo(float).eps
    mel = np.linspace(0, 2595 * np.log10(1 + (rate / 2) / 700), 28)
    bins = np.floor(513 * (700 * (10 ** (mel / 2595) - 1)) / rate)
    bank = np.zeros((26, 257))
    for j in range(26):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    feat = power @ bank.T
    feat[feat == 0] = np.finfo(float).eps
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    cep *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    cep[:, 0] = np.log(energy)
    return cep


def test_mfcc_matches_python_speech_features_defaults():
    g = torch.Generator().manual_seed(0)
    for samples in (32123, 16000, 1000, 300):
        t = torch.arange(samples) / 16000
        audio = 0.3 * torch.sin(2 * math.pi * 220 * t) * torch.sin(2 * math.pi * 3 * t) + 0.05 * torch.randn(samples, generator=g)
        ours = syncnet_mfcc(audio, 16000).double().numpy()
        ref = reference_mfcc((audio.double() * 32768).numpy()).T
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())  # float32 output of float64 maths


def test_mfcc_of_stereo_at_another_rate_is_the_mono_16k_feature():
    g = torch.Generator().manual_seed(1)
    mono = torch.randn(48000, generator=g) * 0.1
    ours = syncnet_mfcc(torch.stack([mono, mono]), 48000)
    assert ours.shape == (13, 1 + math.ceil((16000 - 400) / 160))


def reference_crop(frame_bgr: np.ndarray, half: float, centre_x: float, centre_y: float) -> np.ndarray:
    """crop_video's slice of one frame (before its resize): pad with 110, cut 2.8 x half the box size."""
    cs = 0.4
    pad = int(half * (1 + 2 * cs))
    frame = np.pad(frame_bgr, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = centre_y + pad, centre_x + pad
    return frame[int(my - half):int(my + half * (1 + 2 * cs)), int(mx - half * (1 + cs)):int(mx + half * (1 + cs))]


def test_face_crops_cut_what_crop_video_cuts():
    g = torch.Generator().manual_seed(2)
    frames = torch.rand(15, 300, 320, 3, generator=g)
    # half size 80 -> the crop is exactly 224 pixels, so no resize is involved; boxes jitter by a pixel
    boxes = np.array([[100 + (i % 2), 60, 260 + (i % 2), 220] for i in range(15)], dtype=np.float64)
    crops = face_crops(frames, boxes)
    size = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_x, centre_y = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, 13), medfilt((boxes[:, 1] + boxes[:, 3]) / 2, 13)
    size = medfilt(size, 13)
    for i in (3, 7, 11):  # away from medfilt's zero-padded ends
        bgr = frames[i].numpy()[:, :, ::-1] * 255
        expected = reference_crop(bgr, size[i], centre_x[i], centre_y[i])
        assert expected.shape == (224, 224, 3)
        assert np.allclose(crops[i].permute(1, 2, 0).numpy(), expected, atol=1e-3)


def test_a_face_at_the_border_is_padded_with_grey():
    frames = torch.zeros(1, 100, 100, 3)
    crops = face_crops(frames, np.array([[0.0, 0.0, 40.0, 40.0]]))
    assert float(crops[0, :, 0, 0].min()) == 110.0 and float(crops[0, :, 150, 150].max()) == 0.0


def test_frames_are_resampled_to_25_fps_by_nearest_time():
    assert resample_indices(50, 25.0).tolist() == list(range(50))
    assert resample_indices(16, 16.0).tolist() == [0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 10, 10, 11, 12, 12,
                                                   13, 13, 14, 15, 15]
