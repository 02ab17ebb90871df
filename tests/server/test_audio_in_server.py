"""The audio stage through the HTTP API: diarize the real conversation, encode both streams with wav2vec2."""

import json
import shutil

import pytest
from audio_fixtures import der

from beyond_monologue.audio.turns import parse_turns_text
from beyond_monologue.comfyui.comfy_client import PromptRejected

ENCODER_NAME = "wav2vec2-base-random_fp16.safetensors"


@pytest.fixture(scope="module")
def encoder_in_server(comfy_server, wav2vec2_base_file):
    """The random full-size wav2vec2 base file in the server's models/audio_encoders."""
    folder = comfy_server.base_dir / "models" / "audio_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wav2vec2_base_file, folder / ENCODER_NAME)
    return ENCODER_NAME


def graph(audio_name: str, encoder: str, length: int = 0) -> dict:
    return {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": audio_name}},
        "2": {"class_type": "BMSplitConversation",
              "inputs": {"conversation": ["1", 0], "mode": "diarize", "avatar_speaker": "speaker_1", "turns": ""}},
        "3": {"class_type": "AudioEncoderLoader", "inputs": {"audio_encoder_name": encoder}},
        "4": {"class_type": "BMDualStreamEncode",
              "inputs": {"talk": ["2", 0], "listen": ["2", 1], "audio_encoder": ["3", 0], "fps": 25.0,
                         "length": length, "feature_order": "conv_features"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }


def test_diarize_and_encode_the_real_conversation(client, assets, encoder_in_server):
    name = client.upload_file(assets / "sample.wav")
    result = client.run(graph(name, encoder_in_server), timeout_s=540)
    assert result.status == "success", result.error_message()

    summary = result.outputs["5"]["text"][0]
    # 30 s at 25 fps -> 750 frames -> 753 (4n+1) -> 189 latent frames; wav2vec2 base: 12 layers x 768
    assert "753 frames (189 latent frames" in summary and "12 layers x 768" in summary, summary
    assert "order conv_features" in summary and "encoder wav2vec2 12x768" in summary

    turns = {k: [tuple(t) for t in v] for k, v in json.loads(result.outputs["6"]["text"][0]).items()}
    reference = parse_turns_text((assets / "sample.rttm").read_text())
    error = der(reference, turns, 0.25)
    print(f"\nserver: diarize DER on sample.wav {error:.1%} (0.25 s collar)")
    assert error < 0.15

    # both nodes send the web timeline (talk/listen lanes + a playable preview)
    for node_id in ("2", "4"):
        (timeline,) = result.outputs[node_id]["bm_timeline"]
        assert [lane["id"] for lane in timeline["lanes"]] == ["talk", "listen"]
        assert timeline["duration_s"] == pytest.approx(30.0, abs=0.2) and timeline["audio"]["type"] == "temp"
        assert all(lane["turns"] for lane in timeline["lanes"])


def test_bad_length_is_refused_before_running(client, assets, encoder_in_server):
    name = client.upload_file(assets / "sample.wav")
    prompt = graph(name, encoder_in_server, length=80)
    del prompt["6"]  # ComfyUI would still run the outputs that validate
    with pytest.raises(PromptRejected, match="4n\\+1"):
        client.run(prompt, timeout_s=60)
    assert client.system_stats()  # still serving
