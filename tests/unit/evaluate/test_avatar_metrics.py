"""evaluate_avatar: refused inputs name the input; metrics without weights or audio are unavailable with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from beyond_monologue.errors import BMInputError
from beyond_monologue.evaluate.avatar_metrics import MetricModels, Stream, evaluate_avatar

FPS = 25.0


@pytest.fixture(scope="module")
def face_video(assets) -> torch.Tensor:
    """1.2 s of a real portrait drifting right by a pixel per frame (30 frames, 128 x 128)."""
    image = np.array(Image.open(assets / "grace_hopper.jpg").convert("RGB").resize((160, 160)))
    frames = [image[16:144, 8 + i // 2:136 + i // 2] for i in range(30)]
    return torch.from_numpy(np.stack(frames)).float() / 255


def silence(seconds: float) -> Stream:
    return Stream(torch.zeros(1, round(16000 * seconds)), 16000)


@pytest.mark.parametrize(("kwargs", "name", "words"), [
    ({"fps": 0.0}, "fps", "positive"),
    ({"frames": 1}, "frames", "has 1 frame"),
    ({"talk": silence(3.0)}, "talk_audio", "lasts 3.00 s but the frames last 1.20 s"),
    ({"listen": silence(0.5)}, "listen_audio", "lasts 0.50 s"),
])
def test_bad_inputs_are_refused_naming_the_input(face_video, kwargs, name, words):
    args = {"fps": FPS, **kwargs, "frames": face_video[:kwargs.get("frames", len(face_video))]}
    with pytest.raises(BMInputError) as error:
        evaluate_avatar(**args)
    assert error.value.input_name == name and words in str(error.value)


def test_frames_without_a_face_are_named(face_video):
    frames = face_video.clone()
    frames[2:30] = 0.5  # the face only in frames 0-1
    with pytest.raises(BMInputError, match="no face found in 28 of 30 frames: 2-29") as error:
        evaluate_avatar(frames, FPS)
    assert error.value.input_name == "frames"


def test_missing_weights_and_streams_are_reported_not_invented(face_video):
    reasons = MetricModels(syncnet_missing="syncnet_v2.safetensors is not in models/bm_evaluation",
                           embedder_missing="facenet_vggface2.safetensors is not in models/bm_evaluation")
    report = evaluate_avatar(face_video, FPS, talk=silence(1.2), reference=face_video[0], models=reasons,
                             activity=(np.zeros(30), np.zeros(30)))
    assert report["lip_sync"] == {"unavailable": reasons.syncnet_missing}
    assert report["identity"] == {"unavailable": reasons.embedder_missing}
    assert report["face"]["detected_fraction"] == 1.0
    assert report["head_motion"]["mean"] > 0  # the drift
    assert report["listening"]["listen_to_silent_motion_ratio"] is None
    assert "listen_to_silent_motion_ratio" in report["listening"]["unavailable"]
    assert report["series"]["seconds"] == [0, 1] and len(report["series"]["head_motion"]) == 2
    no_listen = evaluate_avatar(face_video, FPS)
    assert no_listen["listening"] == {"unavailable": "no listen audio (the other person's speech) was given"}
    assert no_listen["lip_sync"] == {"unavailable": "no talk audio (the avatar's own speech) was given"}
