"""Diarization on real speech: DER and SI-SDR on the real conversation, mixes of real recordings, bad input.

DER uses pyannote.metrics (test-only dependency), with the NIST 0.25 s collar (``der`` in audio_fixtures).
"""

import numpy as np
import pytest
import torch
from audio_fixtures import SOLO_SPANS, cards_clips, der, join_turns, stretches
from signal_metrics import si_sdr

from beyond_monologue.audio.conversation import split_by_turns
from beyond_monologue.audio.diarization import ALIKE_R, ONE_VOICE_R, diarize
from beyond_monologue.errors import BMInputError

SR = 16000


def overlap_s(a, b) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def test_der_and_si_sdr_on_the_real_conversation(conversation):
    mono, rate, reference = conversation
    calls = []
    result = diarize(torch.from_numpy(mono), rate, on_progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]  # progress reaches the end (the node's bar and Cancel)
    ders = {collar: der(reference, result.turns, collar) for collar in (0.25, 0.125, 0.0)}

    # SI-SDR of the talk/listen streams against the streams cut with the ground-truth turns, for
    # either speaker as the avatar (found speakers matched to reference speakers by overlap).
    ref_names, found_names = list(reference), list(result.turns)
    same = overlap_s(reference[ref_names[0]], result.turns[found_names[0]]) + \
        overlap_s(reference[ref_names[1]], result.turns[found_names[1]])
    crossed = overlap_s(reference[ref_names[0]], result.turns[found_names[1]]) + \
        overlap_s(reference[ref_names[1]], result.turns[found_names[0]])
    match = [0, 1] if same >= crossed else [1, 0]
    wave = torch.from_numpy(mono).unsqueeze(0)
    scores = {}
    for avatar, name in enumerate(ref_names):
        ref_talk, ref_listen, _ = split_by_turns(wave, rate, reference, avatar)
        talk, listen, _ = split_by_turns(wave, rate, result.turns, match[avatar])
        scores[name] = (si_sdr(talk, ref_talk), si_sdr(listen, ref_listen))
    print(f"\nreal conversation sample.wav: DER {ders[0.25]:.1%} (0.25 s collar), {ders[0.125]:.1%} (0.125 s), "
          f"{ders[0.0]:.1%} (no collar); speaker centroid cosine {result.speaker_cosine:.3f}, "
          f"concentration {result.concentration:.3f}")
    for name, (talk_db, listen_db) in scores.items():
        print(f"  avatar = {name}: SI-SDR talk {talk_db:.1f} dB, listen {listen_db:.1f} dB")
    assert ders[0.25] < 0.15
    assert ders[0.0] < 0.30
    assert all(db > 3.0 for pair in scores.values() for db in pair)
    assert sum(db for pair in scores.values() for db in pair) / 4 > 6.0


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_diarization_works_at_common_sample_rates(conversation, rate):
    import torchaudio

    mono, source_rate, reference = conversation
    wave = torchaudio.functional.resample(torch.from_numpy(mono), source_rate, rate)
    assert der(reference, diarize(wave, rate).turns, 0.25) < 0.15


def build_mix(librivox, mono, snr_db: float):
    """A two-voice conversation from real recordings over a noise + music bed, with its true turns.

    Voice A: the LibriVox reader; voice B: the second speaker of sample.wav (only his solo parts).
    Each turn is set to the same RMS; the bed (brown noise + plucked C-major chord) sits ``snr_db`` below.
    """
    b_parts = [mono[round(21.78 * SR):round(27.8 * SR)], mono[round(14.75 * SR):round(17.92 * SR)]]
    parts = [("A", librivox[0]), ("B", b_parts[0]), ("A", librivox[2]), ("B", b_parts[1]), ("A", librivox[3])]
    gap = SR // 2
    total = sum(len(p) for _, p in parts) + gap * (len(parts) + 1)
    mix, turns, pos = np.zeros(total, np.float32), {"A": [], "B": []}, gap
    for speaker, part in parts:
        mix[pos:pos + len(part)] += part / np.sqrt(np.mean(part ** 2)) * 0.05
        turns[speaker].append((pos / SR, (pos + len(part)) / SR))
        pos += len(part) + gap
    rng = np.random.default_rng(0)
    brown = np.cumsum(rng.standard_normal(total))
    brown -= np.convolve(brown, np.ones(1601) / 1601, mode="same")
    t = np.arange(total) / SR
    chord = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * ((2 * t) % 1)) for f in (130.8, 164.8, 196.0))
    bed = brown / np.sqrt(np.mean(brown ** 2)) + chord / np.sqrt(np.mean(chord ** 2))
    bed *= 0.05 * 10 ** (-snr_db / 20) / np.sqrt(np.mean(bed ** 2))
    return (mix + bed).astype(np.float32), turns


def test_mix_of_real_voices_over_noise_and_music(librivox, conversation):
    mono, _, _ = conversation
    mix, turns = build_mix(librivox, mono, snr_db=5.0)
    result = diarize(torch.from_numpy(mix), SR)
    error = der(turns, result.turns, 0.25)
    print(f"\nLibriVox reader + sample.wav speaker over noise and music at 5 dB SNR: DER {error:.1%}")
    assert error < 0.05


def test_a_single_short_utterance_is_refused_as_one_voice(librivox):
    lone = np.concatenate([np.zeros(SR, np.float32), librivox[1][:SR], np.zeros(SR, np.float32)])
    with pytest.raises(BMInputError, match="one voice only") as error:
        diarize(torch.from_numpy(lone), SR)
    assert error.value.input_name == "conversation" and "turns" in error.value.fix


def test_silence_is_refused():
    with pytest.raises(BMInputError, match="no speech"):
        diarize(torch.zeros(1, 3 * SR), SR)


# Speaker-count estimation (diarization module doc): real one-speaker and two-speaker recordings.


@pytest.mark.parametrize("name", ["LibriVox clips 3+4 (10.5 s)", "pocketsphinx cards", "sample.wav speaker91 alone"])
def test_one_speaker_recordings_are_refused_with_the_fix(name, librivox, conversation):
    # measured concentration: 0.900, 0.903, 0.884 (>= ONE_VOICE_R = 0.88); before, the first came out
    # split 6.8 s / 2.0 s into two "speakers" without a word
    parts = {"LibriVox clips 3+4 (10.5 s)": lambda: librivox[3:],
             "pocketsphinx cards": cards_clips,
             "sample.wav speaker91 alone": lambda: stretches(conversation[0], SOLO_SPANS["speaker91"])}[name]()
    with pytest.raises(BMInputError, match="one voice only") as error:
        diarize(torch.from_numpy(join_turns(parts)), SR)
    assert error.value.input_name == "conversation"
    assert all(word in error.value.fix for word in ("talk", "'stereo'", "'turns'"))
    assert "concentration" in error.value.problem


def test_a_one_speaker_recording_in_the_ambiguous_range_is_split_with_a_warning(conversation, caplog):
    # speaker90's solo stretches: concentration 0.857, inside sample.wav's two-speaker range (0.854-0.869)
    with caplog.at_level("WARNING", logger="beyond_monologue.audio.diarization"):
        result = diarize(torch.from_numpy(join_turns(stretches(conversation[0], SOLO_SPANS["speaker90"]))), SR)
    assert ALIKE_R <= result.concentration < ONE_VOICE_R
    assert any("as alike as one speaker" in r.getMessage() and "'stereo'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("span", [(0.0, 30.0), (9.9, 21.5)])
def test_two_speaker_recordings_are_not_refused(conversation, span):
    # sample.wav: 0.854 whole, 0.869 for this 11.6 s excerpt (the highest two-speaker value measured)
    mono = conversation[0]
    result = diarize(torch.from_numpy(mono[round(span[0] * SR):round(span[1] * SR)]), SR)
    print(f"\nsample.wav {span[0]}-{span[1]} s: concentration {result.concentration:.4f}")
    assert result.concentration < ONE_VOICE_R - 0.005
    assert all(turns for turns in result.turns.values())


def test_two_distinct_voices_give_no_warning(librivox, conversation, caplog):
    solo = stretches(conversation[0], SOLO_SPANS["speaker91"])
    mix = join_turns([librivox[0], solo[0], librivox[1], solo[1]])
    with caplog.at_level("WARNING", logger="beyond_monologue.audio.diarization"):
        result = diarize(torch.from_numpy(mix), SR)
    assert result.concentration < ALIKE_R
    assert not [r for r in caplog.records if "as alike" in r.getMessage()]
