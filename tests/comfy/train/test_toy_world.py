"""Issue 12 item 6: the duplex adapter learns what each part is for, proven on a CPU in the toy world.

``toy_world.py`` builds latent videos whose "mouth" follows the talk stream's loudness frame by frame and
whose "head" follows the listen stream's loudness over the last second, from real speech encoded by a
full-size wav2vec2 base with random weights. A tiny Wan2.2-shaped DiT is taught the unconditional world and
frozen; the adapter is trained through ``train_adapter`` (the BM Train Duplex Adapter node's engine: the
real recipe with dropout, diffusion forcing, clean prefixes and guide frames), stage 1 (talking) then
stage 2 (both), and held-out conversations (speech never seen in training) are rendered with BM
Sampler's engine. ``bench/train_toy.py`` prints the same figures with timings.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import toy_world as tw
from audio_fixtures import read_wav
from wan_fixtures import tiny_wan

pytestmark = pytest.mark.timeout(1800)  # the module fixture trains for about 6 minutes on 2 idle cores

PRETRAIN_STEPS, STAGE1_STEPS, STAGE2_STEPS = 150, 100, 300
CLIPS, CLIP_FRAMES, HELD_OUT, HELD_FRAMES = 48, 41, 24, 61


@pytest.fixture(scope="module")
def toy(pack, librivox, assets, wav2vec2_base_file, tmp_path_factory):
    """Everything trained once: the world, the frozen backbone, the held-out conversations, and the adapters."""
    import comfy.audio_encoders.audio_encoders
    import comfy.utils

    bm = tw.modules(f"{pack.__name__}.beyond_monologue")
    encoder = comfy.audio_encoders.audio_encoders.load_audio_encoder_from_sd(
        comfy.utils.load_torch_file(str(wav2vec2_base_file), safe_load=True))
    demo = importlib.import_module(f"{pack.__name__}.beyond_monologue.comfyui.demo")
    speakers = [read_wav(p)[0] for p in demo.speaker_streams(assets, tmp_path_factory.mktemp("speakers"))]
    train_sources, held_sources = tw.split_sources(bm, encoder.model, librivox, speakers)
    world = tw.World(0)
    model = tiny_wan("wan22_5b")
    with torch.inference_mode(False):
        tw.pretrain_backbone(model, world, steps=PRETRAIN_STEPS)
    training_set = tw.training_set(bm, world, model, train_sources, clips=CLIPS, frames=CLIP_FRAMES)
    config = bm.checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    untrained = bm.duplex_adapter.DuplexAdapter(config).reset_parameters(1, zero_output=True).float()
    stage1 = bm.trainer.train_adapter(model, training_set, tw.recipe(bm, "talking", STAGE1_STEPS),
                                      adapter=untrained).trained.adapter
    stage2 = bm.trainer.train_adapter(model, training_set, tw.recipe(bm, "both", STAGE2_STEPS),
                                      adapter=stage1).trained.adapter
    held = tw.conversations(bm, held_sources, HELD_OUT, HELD_FRAMES, seed=1)
    targets = tw.pearson(*(np.concatenate([c[k] for c in held]) for k in (1, 2)))

    def measure(adapter, listen_strength=1.0):
        return tw.measure(bm, model, adapter, world, held, listen_strength)

    results = {"untrained": measure(untrained), "stage1": measure(stage1), "stage2": measure(stage2),
               "stage2_listen_0": measure(stage2, listen_strength=0.0)}
    for name, r in results.items():  # the figures, for the log of a failing run
        print(name, {k: round(v, 3) for k, v in r.items() if k != "listening"},
              {k: v if not isinstance(v, float) else round(v, 3) for k, v in r["listening"].items()})
    return {**results, "targets": targets}


def test_held_out_streams_are_independent(toy):
    """The leak figures below mean something only if talk and listen do not correlate in the held-out set."""
    assert abs(toy["targets"]) < 0.1, toy["targets"]


def test_untrained_adapter_follows_neither_stream(toy):
    r = toy["untrained"]
    assert abs(r["mouth~talk"]) < 0.2 and abs(r["head~listen"]) < 0.2, r


def test_trained_adapter_moves_the_mouth_with_talk_and_the_head_with_listen(toy):
    r = toy["stage2"]
    assert r["mouth~talk"] >= 0.6 and r["head~listen"] >= 0.6, r


def test_the_streams_do_not_leak_into_each_others_region(toy):
    r = toy["stage2"]
    assert abs(r["mouth~listen"]) < 0.2 and abs(r["head~talk"]) < 0.2, r


def test_listen_strength_zero_stops_the_head_but_not_the_mouth(toy):
    r = toy["stage2_listen_0"]
    assert abs(r["head~listen"]) < 0.2 and r["mouth~talk"] >= 0.6, r


def test_stage_one_moves_the_mouth_but_not_the_head(toy):
    r = toy["stage1"]
    assert r["mouth~talk"] >= 0.6 and abs(r["head~listen"]) < 0.2, r


def test_the_listening_metrics_separate_the_trained_adapter_from_the_untrained_one(toy):
    """Issue 17 item 5: the evaluation stage's listening metrics (on the regions' levels, see ``tw.measure``)."""
    untrained, trained, silent = (toy[k]["listening"] for k in ("untrained", "stage2", "stage2_listen_0"))
    assert 0.8 < untrained["listen_to_silent_motion_ratio"] < 1.2, untrained
    assert trained["listen_to_silent_motion_ratio"] > 1.5, trained  # the head moves while listening
    assert silent["listen_to_silent_motion_ratio"] < 1.2, silent  # ... only through the Listening branch
    assert abs(untrained["listen_motion_correlation"]) < 0.2 and trained["listen_motion_correlation"] > 0.5
    assert untrained["listen_to_talk_mouth_ratio"] > 0.85 and trained["listen_to_talk_mouth_ratio"] < 0.75
