"""Frame counts, latent-window boundaries and the two interpolation orders of the dual-stream features."""

import math

import pytest
import torch
import torch.nn.functional as F

from beyond_monologue.audio.audio_checks import fit_length
from beyond_monologue.audio.speech_features import (
    encode_duplex,
    frames_for_duration,
    loudness_lufs,
    loudness_normalise,
    prepare_streams,
    samples_for_frames,
    wav2vec2_frame_features,
)
from beyond_monologue.errors import BMInputError
from beyond_monologue.timebase import frames_of_latent, is_valid_frame_count

SR = 16000


class ClockExtractor(torch.nn.Module):
    """wav2vec2's CNN geometry (400-sample receptive field, 320-sample hop = 50 Hz); outputs the mean input."""

    def forward(self, x):  # [B, T] -> [B, T', 1]
        return x.unfold(-1, 400, 320).mean(-1, keepdim=True)


class ClockModel(torch.nn.Module):
    """Stand-in for ComfyUI's Wav2Vec2Model: forward(x [B, C, T]) -> (last, (pre, layer1, layer2))."""

    def __init__(self, nonlinear: bool = False):
        super().__init__()
        self.feature_extractor = ClockExtractor()
        self.nonlinear = nonlinear

    def forward(self, x):
        features = self.feature_extractor(x.mean(dim=1))
        second = features.pow(2) if self.nonlinear else 2 * features
        return second, (features * 0, features, second)


def ramp(seconds: float) -> torch.Tensor:
    """A signal whose value is its own time in seconds: feature = time of the 50 Hz window centre."""
    return torch.arange(round(seconds * SR), dtype=torch.float32) / SR


@pytest.mark.parametrize("duration, fps, frames", [(3.2, 25, 81), (3.25, 25, 85), (30.0, 25, 753), (0.01, 25, 5),
                                                   (2.0, 30, 61), (1.0, 24, 25)])
def test_frames_for_duration_is_the_smallest_covering_4n_plus_1(duration, fps, frames):
    assert frames_for_duration(duration, fps) == frames
    assert is_valid_frame_count(frames) and frames / fps >= duration - 1e-9
    assert frames == 5 or (frames - 4) / fps < duration


def test_samples_and_fit_length():
    assert samples_for_frames(81, 25) == 51840 and samples_for_frames(5, 25.0) == 3200
    wav = torch.ones(10)
    assert torch.equal(fit_length(wav, 4), torch.ones(4))
    padded = fit_length(wav, 15)
    assert padded.shape == (15,) and padded[10:].abs().max() == 0


def test_loudness_normalise_reaches_minus_23_lufs_and_leaves_silence(librivox):
    quiet = torch.from_numpy(librivox[0]) * 0.05
    assert loudness_lufs(quiet) < -35
    assert loudness_lufs(loudness_normalise(quiet)) == pytest.approx(-23.0, abs=0.1)
    silence = torch.zeros(SR)
    assert torch.equal(loudness_normalise(silence), silence) and loudness_lufs(silence) == -math.inf


def test_prepare_streams_pads_the_shorter_stream_with_silence(librivox):
    talk = torch.from_numpy(librivox[0])  # 7.1 s
    listen = torch.from_numpy(librivox[1])  # 2.99 s
    t, listen_out, frames = prepare_streams(talk, listen, fps=25)
    assert frames == 181 and t.shape == listen_out.shape == (samples_for_frames(181, 25),)
    assert listen_out[round(3.0 * SR):].abs().max() == 0  # silence after the listen stream ended
    t2, l2, frames2 = prepare_streams(talk, listen, fps=25, num_frames=81)  # explicit length trims both
    assert frames2 == 81 and t2.shape == l2.shape == (51840,)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_frames": 80}, "4n\\+1"),
    ({"silent": True}, "both streams are silent"),
    ({"short": True}, "at least 0.20 s"),
])
def test_prepare_streams_rejects(kwargs, fragment, librivox):
    talk = torch.from_numpy(librivox[0])
    listen = torch.zeros(SR)
    if kwargs.pop("silent", False):
        talk = torch.zeros(2 * SR)
    if kwargs.pop("short", False):
        talk, listen = talk[:1600], listen[:1600]
    with pytest.raises(BMInputError, match=fragment):
        prepare_streams(talk, listen, fps=25, **kwargs)


@pytest.mark.parametrize("order", ["conv_features", "hidden_states"])
def test_every_frame_carries_its_own_time(order):
    frames = 81
    wav = ramp(samples_for_frames(frames, 25) / SR)
    features = wav2vec2_frame_features(ClockModel(), wav, frames, order)
    assert features.shape == (frames, 2, 1)
    # window i of the 50 Hz encoder is centred at 0.0125 + i / 50 s; frame i lands at i / 25 s after it
    expected = 0.0125 + torch.arange(frames) / 25.0
    assert torch.allclose(features[:, 0, 0], expected, atol=1e-4)
    assert torch.allclose(features[:, 1, 0], 2 * expected, atol=2e-4)


def test_the_two_orders_interpolate_before_and_after_the_nonlinear_part():
    wav = ramp(1.0) * 3
    frames = 21  # 49 encoder frames onto 21: between the 50 Hz grid points, so the orders differ
    conv = wav2vec2_frame_features(ClockModel(nonlinear=True), wav, frames, "conv_features")
    hidden = wav2vec2_frame_features(ClockModel(nonlinear=True), wav, frames, "hidden_states")
    native = ClockExtractor()(wav.view(1, -1))  # [1, 49, 1] at 50 Hz

    def interp(x):
        return F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)[0, :, 0]

    assert torch.allclose(conv[:, 1, 0], interp(native).pow(2), atol=1e-5)  # InfiniteTalk: interpolate, then layers
    assert torch.allclose(hidden[:, 1, 0], interp(native.pow(2)), atol=1e-5)  # ComfyUI: layers, then interpolate
    assert not torch.allclose(conv[:, 1, 0], hidden[:, 1, 0], atol=1e-4)
    assert torch.allclose(conv[:, 0, 0], hidden[:, 0, 0], atol=1e-5)  # the linear layer agrees


def test_hook_is_removed_even_when_the_model_fails():
    class Broken(ClockModel):
        def forward(self, x):
            self.feature_extractor(x.mean(dim=1))
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        wav2vec2_frame_features(model, ramp(1.0), 25, "conv_features")
    assert not model.feature_extractor._forward_hooks
    with pytest.raises(BMInputError, match="feature_order"):
        wav2vec2_frame_features(model, ramp(1.0), 25, "sideways")


def test_latent_windows_cover_the_right_seconds(librivox):
    """End to end: latent k's audio window holds the features of frames 4k-5 .. 4k+2 (times in seconds)."""
    talk = torch.from_numpy(librivox[2])  # 5.3 s of real speech
    listen = torch.zeros(3 * SR)  # shorter and silent: padded, inactive
    calls = []
    duplex = encode_duplex(ClockModel(), talk, SR, listen, 22050, fps=25.0,
                           on_progress=lambda done, total: calls.append((done, total)))
    assert [call for call in dict.fromkeys(calls) if call[0]] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # after each step
    assert calls == sorted(calls)  # VAD's Cancel checks repeat the last step's count, never go back
    assert duplex.num_frames == 133 and duplex.num_latents == 34 and duplex.feature_order == "conv_features"
    assert duplex.talk.shape == duplex.listen.shape == (133, 2, 1)
    assert float(duplex.listen_activity.max()) < 0.1 and float(duplex.talk_activity.max()) > 0.9
    assert "133 frames (34 latent frames" in str(duplex)

    ramp_duplex = encode_duplex(ClockModel(), ramp(133 / 25), SR, torch.zeros(SR), SR, fps=25.0)
    frame_times = ramp_duplex.talk[:, 0, 0]  # loudness-normalised ramp: time x gain, same gain for all
    gain = float(frame_times[10] - frame_times[9]) * 25.0
    first, rest = ramp_duplex.latent_windows("talk")
    assert first.shape == (5, 2, 1) and rest.shape == (33, 8, 2, 1)
    for k in (1, 2, 17, 33):
        low, high = frames_of_latent(k)
        assert (low, high) == (4 * k - 3, 4 * k)
        window_frames = torch.arange(low - 2, high + 3).clamp(0, 132)
        expected = (0.0125 + window_frames / 25.0) * gain
        assert torch.allclose(rest[k - 1, :, 0, 0], expected, atol=2e-3 * gain), k
    assert torch.allclose(first[:, 0, 0], (0.0125 + torch.tensor([0, 0, 0, 1, 2]) / 25.0) * gain, atol=2e-3 * gain)
