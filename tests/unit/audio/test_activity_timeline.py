"""The timeline payload that nodes send to the web extension (beyond_monologue.audio.activity_timeline)."""

import pytest

from beyond_monologue.audio.activity_timeline import (
    TIMELINE_VERSION,
    clip_turns,
    conversation_timeline,
    timeline_payload,
)


def test_clip_turns_sorts_merges_clips_and_rounds():
    turns = [(5.0, 7.0), (-1.0, 0.5), (6.5, 8.0), (9.5, 12.0), (11.0, 11.5), (13.0, 14.0)]
    assert clip_turns(turns, 10.0) == [[0.0, 0.5], [5.0, 8.0], [9.5, 10.0]]
    assert clip_turns([(1.23456, 2.0004)], 5.0) == [[1.235, 2.0]]


def test_conversation_timeline_puts_the_avatar_on_the_talk_lane():
    turns = {"alice": [(0.0, 2.0), (5.0, 6.0)], "bob": [(2.0, 4.5)]}
    audio = {"filename": "ComfyUI_temp_x_00001_.flac", "subfolder": "", "type": "temp", "extra": 1}
    payload = conversation_timeline(turns, 1, 6.0, audio)
    assert payload == {
        "version": TIMELINE_VERSION,
        "duration_s": 6.0,
        "lanes": [{"id": "talk", "label": "talk: bob", "turns": [[2.0, 4.5]]},
                  {"id": "listen", "label": "listen: alice", "turns": [[0.0, 2.0], [5.0, 6.0]]}],
        "audio": {"filename": "ComfyUI_temp_x_00001_.flac", "subfolder": "", "type": "temp"},
    }


def test_listen_lane_merges_every_other_speaker():
    turns = {"a": [(0.0, 1.0)], "b": [(1.0, 2.0)], "c": [(1.5, 3.0)]}
    payload = conversation_timeline(turns, 0, 4.0)
    assert payload["lanes"][1] == {"id": "listen", "label": "listen: b, c", "turns": [[1.0, 3.0]]}
    assert payload["audio"] is None


def test_duration_must_be_positive():
    with pytest.raises(ValueError, match="duration_s"):
        timeline_payload([("talk", "t", [])], 0.0)
