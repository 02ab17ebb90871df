"""CSIM on real portraits with random embedding weights in the public layout, and the pack's
listening metrics on constructed series."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from beyond_monologue.evaluate.face_track import track_face
from beyond_monologue.evaluate.identity import (
    face_embedder_from_state_dict,
    face_patches,
    identity_similarity,
    smoke_state_dict,
)
from beyond_monologue.evaluate.listening import listening_metrics, spans


def portrait(path, size=(256, 256)) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB").resize(size))).float() / 255


@pytest.fixture(scope="module")
def embedder():
    state = {k: v for k, v in smoke_state_dict(seed=3).items() if not k.startswith("logits.")}
    return face_embedder_from_state_dict(state)


def test_csim_is_one_for_the_same_face_and_lower_for_another(assets, embedder):
    hopper, astronaut = portrait(assets / "grace_hopper.jpg"), portrait(assets / "astronaut.png")
    frames = torch.stack([hopper, hopper, astronaut])
    boxes = np.concatenate([track_face(frames[:2]).boxes, track_face(frames[2:]).boxes])  # one track per person
    patches = face_patches(frames, boxes)
    assert patches.shape == (3, 3, 160, 160)
    same = identity_similarity(embedder, patches[0], patches[:2], [0, 1])
    assert same.csim_mean == pytest.approx(1.0, abs=1e-5) and same.csim_min == pytest.approx(1.0, abs=1e-5)
    mixed = identity_similarity(embedder, patches[0], patches, [0, 1, 2])
    assert mixed.csim_min == pytest.approx(mixed.per_frame[2]) and mixed.per_frame[2] < 0.999
    assert mixed.csim_mean < same.csim_mean


FPS = 25.0


def conversation(listen_motion: float, silent_motion: float, listen_mouth: float):
    """6 s: 1 s talk, 3 s of a listen stream that speaks 0.8 s and pauses 0.4 s, 2 s of silence. Head
    speed is small noise plus a reaction that follows the listen stream's activity 0.2 s later."""
    rng = np.random.default_rng(0)
    t = 150
    talk = np.zeros(t)
    talk[:25] = 1
    listen = np.zeros(t)
    listen[25:100] = (np.arange(75) % 30) < 20
    motion = np.abs(rng.normal(size=t)) * silent_motion
    motion[30:] += listen_motion * listen[25:-5]
    mouth = np.full(t, 0.05)
    mouth[:25] = 1.0
    mouth[listen > 0] = listen_mouth
    return motion, mouth, talk, listen


def test_a_reacting_listener_scores_as_one():
    metrics = listening_metrics(*conversation(listen_motion=1.0, silent_motion=0.05, listen_mouth=0.1), FPS)
    assert metrics["spans_s"] == {"talk": 1.0, "listen_only": 2.2, "silent": 2.8}
    assert metrics["listen_to_silent_motion_ratio"] > 2  # the 0.2 s reaction lag spills into pauses
    assert metrics["listen_motion_correlation"] > 0.8 and metrics["listen_motion_lag_s"] == pytest.approx(0.2)
    assert metrics["listen_to_talk_mouth_ratio"] == pytest.approx(0.1)
    assert metrics["unavailable"] == {}


def test_a_lip_syncing_listener_is_caught_by_the_mouth_ratio():
    metrics = listening_metrics(*conversation(listen_motion=1.0, silent_motion=0.05, listen_mouth=1.0), FPS)
    assert metrics["listen_to_talk_mouth_ratio"] == pytest.approx(1.0)


def test_metrics_without_their_span_are_unavailable_with_a_reason():
    motion, mouth, talk, listen = conversation(1.0, 0.05, 0.1)
    metrics = listening_metrics(motion, mouth, np.zeros_like(talk), np.zeros_like(listen), FPS)
    assert metrics["head_motion_energy_listen_only"] is None and metrics["listen_motion_correlation"] is None
    assert "0.00 s" in metrics["unavailable"]["head_motion_energy_listen_only"]
    assert set(metrics["unavailable"]) >= {"listen_to_silent_motion_ratio", "listen_to_talk_mouth_ratio"}


def test_spans_split_the_frames():
    masks = spans(np.array([1, 1, 0, 0, 0.2]), np.array([1, 0, 1, 0, 0.9]))
    assert masks["talk"].tolist() == [True, True, False, False, False]
    assert masks["listen_only"].tolist() == [False, False, True, False, True]
    assert masks["silent"].tolist() == [False, False, False, True, False]
