import math

import pytest
import torch

from beyond_monologue.audio.audio_checks import check_audio, make_audio
from beyond_monologue.audio.conversation import smooth_mask, speaker_index, split_by_turns, split_stereo
from beyond_monologue.audio.turns import turns_to_mask
from beyond_monologue.errors import BMInputError

SR = 16000


def tone(seconds, freq, sr=SR):
    t = torch.arange(int(seconds * sr)) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_stereo_split_keeps_each_speaker_and_silences_crosstalk():
    left = torch.cat([tone(1.0, 220), torch.zeros(SR)])
    right = torch.cat([torch.zeros(SR), tone(1.0, 330)])
    bleed = 0.005  # each microphone hears the other speaker 40 dB down
    talk, listen, turns = split_stereo(torch.stack([left + bleed * right, right + bleed * left]), SR, avatar=1)
    (s1, e1), = turns["speaker_1"]
    (s2, e2), = turns["speaker_2"]
    assert s1 == pytest.approx(0.0, abs=0.03) and e1 == pytest.approx(1.0, abs=0.03)
    assert s2 == pytest.approx(1.0, abs=0.03) and e2 == pytest.approx(2.0, abs=0.03)
    inside_2, inside_1 = slice(int(1.05 * SR), int(1.95 * SR)), slice(int(0.05 * SR), int(0.95 * SR))
    assert torch.equal(talk[inside_2], (right + bleed * left)[inside_2])
    assert torch.equal(listen[inside_1], (left + bleed * right)[inside_1])
    assert talk[: int(0.95 * SR)].abs().max() == 0 and listen[int(1.05 * SR):].abs().max() == 0  # bleed gated out


def test_stereo_split_rejects_dual_mono():
    voice = tone(1.0, 220)
    with pytest.raises(BMInputError, match="same signal"):
        split_stereo(torch.stack([voice, voice.clone()]), SR, 0)


def test_stereo_split_rejects_mono():
    with pytest.raises(BMInputError, match="stereo mode needs 2"):
        split_stereo(torch.zeros(1, SR), SR, 0)


def test_turns_split_masks_and_keeps_overlap():
    mono = tone(3.0, 200).unsqueeze(0)
    turns = {"a": [(0.0, 1.5)], "b": [(1.2, 3.0)]}
    talk, listen, _ = split_by_turns(mono, SR, turns, avatar=0)
    assert talk.shape == listen.shape == (3 * SR,)
    overlap = slice(int(1.25 * SR), int(1.45 * SR))
    assert torch.allclose(talk[overlap], mono[0, overlap]) and torch.allclose(listen[overlap], mono[0, overlap])
    assert talk[int(1.6 * SR):].abs().max() == 0  # silence outside the avatar's turns
    assert listen[: int(1.1 * SR)].abs().max() == 0


def test_turns_split_needs_two_speakers_inside_audio():
    mono = torch.zeros(1, SR)
    with pytest.raises(BMInputError, match="exactly two speakers"):
        split_by_turns(mono, SR, {"a": [(0, 1)]}, 0)
    with pytest.raises(BMInputError, match="after the audio ends"):
        split_by_turns(mono, SR, {"a": [(5, 6)], "b": [(7, 8)]}, 0)


def test_smooth_mask_has_exact_plateau_and_short_continuous_ramps():
    mask = turns_to_mask([(0.5, 1.0)], 2 * SR, SR)
    gain = smooth_mask(mask, SR, ramp_s=0.01)
    assert torch.all(gain[mask] == 1.0)
    assert gain[: int(0.489 * SR)].max() == 0 and gain[int(1.011 * SR):].max() == 0
    assert 0 < gain[int(0.495 * SR)] < 1 and 0 < gain[int(1.005 * SR)] < 1
    assert gain.diff().abs().max() < 0.05  # no click: a 10 ms Hann ramp steps at most ~pi/160 per sample


@pytest.mark.parametrize("bad, fragment", [
    ({"waveform": torch.zeros(1, 3, 10), "sample_rate": SR}, "3 channels"),
    ({"waveform": torch.zeros(2, 1, 10), "sample_rate": SR}, "batch of 2"),
    ({"waveform": torch.zeros(1, 1, 0), "sample_rate": SR}, "no samples"),
    ({"waveform": torch.tensor([[[0.0, float("nan")]]]), "sample_rate": SR}, "NaN"),
    ({"waveform": torch.zeros(1, 1, 10)}, "not an AUDIO value"),
])
def test_check_audio_rejects(bad, fragment):
    with pytest.raises(BMInputError, match=fragment):
        check_audio(bad, "conversation")


def test_check_audio_and_make_audio_round_trip():
    audio = make_audio(torch.ones(2, 5), 8000)
    clip, sr = check_audio(audio, "x")
    assert clip.shape == (2, 5) and sr == 8000 and audio["waveform"].shape == (1, 2, 5)
    assert speaker_index("speaker_2") == 1
    with pytest.raises(BMInputError):
        speaker_index("speaker_3")
