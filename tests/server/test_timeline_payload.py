"""BMSplitConversation sends its talk/listen timeline (ui payload "bm_timeline") with a playable preview."""

import io

import av
import pytest


def test_split_sends_timeline_payload_with_a_playable_preview(client, assets):
    name = client.upload_file(assets / "sample.wav")
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
        "2": {"class_type": "BMSplitConversation",
              "inputs": {"conversation": ["1", 0], "mode": "turns", "avatar_speaker": "speaker_1",
                         "turns": (assets / "sample.rttm").read_text()}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    result = client.run(prompt, timeout_s=120)
    assert result.status == "success", result.error_message()
    (payload,) = result.outputs["2"]["bm_timeline"]
    assert payload["duration_s"] == pytest.approx(30.0, abs=0.01)
    talk, listen = payload["lanes"]
    assert (talk["id"], listen["id"]) == ("talk", "listen")
    assert talk["label"] == "talk: speaker90" and talk["turns"][0] == [6.69, 7.12]  # first RTTM turn
    assert listen["turns"][0][0] == pytest.approx(7.55)
    audio = payload["audio"]
    assert audio["type"] == "temp"
    with av.open(io.BytesIO(client.view(audio["filename"], audio["subfolder"], audio["type"]))) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        assert samples / stream.rate == pytest.approx(30.0, abs=0.01)
