from fractions import Fraction

import torch

from beyond_monologue.audio.speech_features import frames_for_duration
from beyond_monologue.video.video_audio import (
    fit_audio_to_frames,
    frame_rate,
    frames_covering_audio,
    mismatch_frames,
    samples_for_frames,
)


def test_frame_rate_is_rounded_like_comfyui_writes_it():
    assert frame_rate(25.0) == 25
    assert frame_rate(29.97) == Fraction(2997, 100)
    assert frame_rate(23.976023976) == Fraction(23976, 1000)


def test_audio_is_trimmed_to_the_frames():
    wave = torch.randn(2, 64000)  # 4 s at 16 kHz
    fitted = fit_audio_to_frames(wave, 16000, 81, frame_rate(25))
    assert fitted.shape == (2, 51840)  # 81 / 25 s
    assert torch.equal(fitted, wave[:, :51840])


def test_short_audio_is_padded_with_silence_at_the_end():
    wave = torch.randn(1, 1000)
    fitted = fit_audio_to_frames(wave, 44100, 17, frame_rate(24))
    assert fitted.shape == (1, round(17 * 44100 / 24))
    assert torch.equal(fitted[:, :1000], wave) and not fitted[:, 1000:].any()


def test_fractional_rates_round_to_whole_samples():
    assert samples_for_frames(33, 16000, frame_rate(29.97)) == round(33 * 16000 * 100 / 2997)


def test_mismatch_in_frames():
    assert mismatch_frames(16000, 16000, 25, frame_rate(25)) == 0
    assert mismatch_frames(16000, 16000, 20, frame_rate(25)) == 5
    assert mismatch_frames(8000, 16000, 25, frame_rate(25)) == -12.5


def test_the_4n_plus_1_tail_past_the_audio_is_dropped():
    for seconds, fps in ((30.0, 5.0), (30.0, 25.0), (12.34, 24.0), (3.0, 16.0)):
        samples = round(seconds * 16000)
        rendered = frames_for_duration(seconds, fps)  # what a render of the whole audio gives: 4n+1 frames
        kept = frames_covering_audio(rendered, samples, 16000, frame_rate(fps))
        assert rendered - 3 <= kept <= rendered
        assert abs(kept / fps - seconds) < 1 / fps  # ends with the audio, to within one frame
    assert frames_covering_audio(153, 480000, 16000, frame_rate(5)) == 150  # the real 30 s conversation at 5 fps


def test_longer_videos_and_longer_audio_keep_every_frame():
    assert frames_covering_audio(21, 16000, 16000, frame_rate(25)) == 21  # audio longer than the frames
    assert frames_covering_audio(21, 8000, 16000, frame_rate(25)) == 21  # 8.5 frames past the end: not padding
    assert frames_covering_audio(25, 16000, 16000, frame_rate(25)) == 25  # exact
