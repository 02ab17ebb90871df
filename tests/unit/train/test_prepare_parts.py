"""The parts of ``prepare`` that need no model: the on-screen speaker's streams, the face-centred crop box."""

import av
import numpy as np
import pytest
import torch
from audio_fixtures import read_wav

from beyond_monologue.errors import BMInputError
from beyond_monologue.train.prepare_clips import face_crop_box, speech_shares, sync_score
from beyond_monologue.train.prepare_split import on_screen_speaker, speaker_streams, turn_seconds


def _energy_in(stream: torch.Tensor, spans, rate: int) -> float:
    """Share of the stream's energy inside ``spans`` (seconds)."""
    mask = torch.zeros(stream.shape[0], dtype=torch.bool)
    for start, end in spans:
        mask[round(start * rate):round(end * rate)] = True
    energy = stream.double() ** 2
    return float(energy[mask].sum() / energy.sum())


def test_the_rttm_speaker_who_talks_most_is_on_screen_and_the_others_are_listened_to(assets):
    mono, rate = read_wav(assets / "sample.wav")
    rttm = (assets / "sample.rttm").read_text()
    streams = speaker_streams((torch.from_numpy(mono)[None], rate), "auto", rttm)
    from beyond_monologue.audio.turns import parse_turns_text

    turns = parse_turns_text(rttm)
    seconds = turn_seconds(turns)
    assert streams.split == "turns" and streams.speaker == max(seconds, key=seconds.get)
    other = next(name for name in turns if name != streams.speaker)
    assert _energy_in(streams.talk, turns[streams.speaker], rate) > 0.99
    assert _energy_in(streams.listen, turns[other], rate) > 0.99
    chosen = speaker_streams((torch.from_numpy(mono)[None], rate), "turns", rttm, speaker=other)
    assert chosen.speaker == other and torch.equal(chosen.talk, streams.listen)
    with pytest.raises(BMInputError, match=r"^speaker: 'nobody' is not a speaker of the RTTM"):
        on_screen_speaker(turns, "nobody", "the RTTM")


def test_diarize_finds_two_streams_in_the_real_conversation(assets):
    mono, rate = read_wav(assets / "sample.wav")
    streams = speaker_streams((torch.from_numpy(mono)[None], rate), "diarize")
    from beyond_monologue.audio.turns import parse_turns_text

    turns = parse_turns_text((assets / "sample.rttm").read_text())
    seconds = turn_seconds(turns)
    most, least = sorted(seconds, key=seconds.get, reverse=True)
    assert streams.split == "diarize" and streams.note.startswith("talks most")
    assert _energy_in(streams.talk, turns[most], rate) > 0.8  # diarize's turns are the RTTM's within its DER
    assert _energy_in(streams.listen, turns[least], rate) > 0.8


def test_one_voice_is_a_monologue_and_stereo_takes_the_chosen_channel(librivox):
    voice = torch.from_numpy(np.concatenate(librivox[:2]))[None]
    alone = speaker_streams((voice, 16000), "diarize")
    assert alone.split == "monologue" and torch.equal(alone.talk, voice[0]) and float(alone.listen.abs().max()) == 0.0
    n = min(len(librivox[2]), len(librivox[3]))
    two = torch.from_numpy(np.stack([librivox[2][:n], librivox[3][:n]]))
    right = speaker_streams((voice, 16000), "auto", conversation=(two, 16000), channel=2)
    assert right.split == "stereo" and right.speaker == "channel 2"
    assert float((right.talk - two[1]).abs().max()) <= float(two[1].abs().max())  # gated, never mixed with channel 1
    assert float(torch.corrcoef(torch.stack([right.talk, two[1]]))[0, 1]) > 0.9
    with pytest.raises(BMInputError, match=r"^split: is 'turns' but there is no NAME.rttm"):
        speaker_streams((voice, 16000), "turns")


def test_the_crop_is_centred_on_the_face_with_the_training_aspect_and_stays_inside_the_frame():
    face = np.array([[300.0, 100.0, 400.0, 220.0]])  # 100 x 120 px face centred at (350, 160)
    x, y, w, h = face_crop_box(face, 1920, 1080, 1280, 704)
    assert h == 360 and w == round(360 * 1280 / 704)  # three face heights, 16:8.8 like the training size
    assert x + w / 2 == pytest.approx(350, abs=1) and y == 0  # centred across, shifted down to stay inside
    x, y, w, h = face_crop_box(np.array([[0.0, 0.0, 60.0, 140.0]]), 176, 144, 64, 64)
    assert (w, h) == (144, 144) and x == 0 and y == 0  # the whole height, square, at the left edge
    x, y, w, h = face_crop_box(np.array([[10.0, 10.0, 50.0, 60.0]]), 100, 400, 1280, 704)
    assert w == 100 and h == round(100 * 704 / 1280)  # too wide for the frame: as wide as the frame


def test_sync_is_measured_on_talking_clips_only_and_is_unavailable_without_syncnet(assets, librivox):
    from beyond_monologue.audio.vad import speech_probabilities
    from beyond_monologue.evaluate.face_track import track_face
    from beyond_monologue.evaluate.syncnet import smoke_state_dict, syncnet_from_state_dict

    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(25), container.decode(video=0), strict=False)])
    images = torch.from_numpy(frames).float() / 255
    track = track_face(images)
    fps = 30000 / 1001
    speech = torch.from_numpy(librivox[0][32000:32000 + round(25 / fps * 16000)])
    silence = torch.zeros_like(speech)
    shares = speech_shares(speech_probabilities(speech), speech_probabilities(silence), 0, 25, fps)
    assert shares["talk"] > 0.8 and shares["listen"] == 0.0
    syncnet = syncnet_from_state_dict(smoke_state_dict(0))  # untrained: numbers, not meaningful ones
    found = sync_score(syncnet, images, track.boxes, fps, speech, 16000, shares)
    assert set(found) == {"lse_c", "lse_d", "offset_frames"} and found["lse_d"] > 0 and abs(found["offset_frames"]) <= 15
    assert sync_score(None, images, track.boxes, fps, speech, 16000, shares) == "unavailable"
    listening = {"talk": 0.2, "listen": 1.0, "speech": 1.0}
    assert sync_score(syncnet, images, track.boxes, fps, silence, 16000, listening).startswith("not measured: the talk stream")


def test_the_folder_finds_videos_with_their_turns_and_two_channel_recordings(librivox, tmp_path):
    from audio_fixtures import write_wav

    from beyond_monologue.train.prepare_media import find_videos, read_sound

    (tmp_path / "day1").mkdir()
    for name in ("day1/b.mp4", "a.mkv", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "day1" / "b.rttm").write_text("SPEAKER b 1 0.0 1.0 <NA> <NA> x <NA> <NA>\n")
    n = 16000
    write_wav(tmp_path / "a.conversation.wav", np.stack([librivox[0][:n], librivox[1][:n]], axis=1), 16000)
    jobs = find_videos(tmp_path)
    assert [(j.name, j.rttm is not None, j.conversation is not None) for j in jobs] == [("a", False, True),
                                                                                      ("day1/b", True, False)]
    wave, rate = read_sound(jobs[0].conversation)
    assert rate == 16000 and wave.shape[0] == 2 and abs(wave.shape[1] - n) <= 512
    assert float(torch.corrcoef(torch.stack([wave[0, :n - 512], torch.from_numpy(librivox[0][:n - 512])]))[0, 1]) > 0.99
