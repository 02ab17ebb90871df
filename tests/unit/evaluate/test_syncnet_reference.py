"""SyncNet and LSE against an independent reference written from reading joonson/syncnet_python.

The reference below follows SyncNetModel.py (layer by layer, as functional calls on the state dict)
and SyncNetInstance.evaluate / calc_pdist (window loop, per-frame distance loop with
``pairwise_distance``'s eps, mean, min, median) without using the pack's code; it shares only the
random weights (exact public key layout, float32) and the inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from beyond_monologue.evaluate.lip_sync import (
    audio_embeddings,
    lip_embeddings,
    lse_from_embeddings,
    syncnet_embeddings,
    window_count,
)
from beyond_monologue.evaluate.mfcc import syncnet_mfcc
from beyond_monologue.evaluate.syncnet import smoke_state_dict, syncnet_from_state_dict

# (kind, module index, conv stride, conv padding, pool after: (kernel, stride, padding) or None)
AUDIO_LAYERS = [(0, (1, 1), (1, 1), ((1, 1), (1, 1), 0)), (4, (1, 1), (1, 1), ((3, 3), (1, 2), 0)),
                (8, (1, 1), (1, 1), None), (11, (1, 1), (1, 1), None), (14, (1, 1), (1, 1), ((3, 3), (2, 2), 0)),
                (18, (1, 1), (0, 0), None)]
LIP_LAYERS = [(0, (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2), 0)), (4, (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
              (8, 1, (0, 1, 1), None), (11, 1, (0, 1, 1), None), (14, 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2), 0)),
              (18, 1, 0, None)]


def reference_tower(state, prefix, layers, x, conv, pool):
    for index, stride, padding, after in layers:
        x = conv(x, state[f"{prefix}.{index}.weight"], state[f"{prefix}.{index}.bias"], stride=stride, padding=padding)
        bn = f"{prefix}.{index + 1}"
        x = F.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"],
                         state[f"{bn}.bias"], training=False, eps=1e-5)
        x = torch.relu(x)
        if after is not None:
            x = pool(x, kernel_size=after[0], stride=after[1], padding=after[2])
    return x.reshape(x.shape[0], -1)


def reference_head(state, prefix, x):
    x = F.linear(x, state[f"{prefix}.0.weight"], state[f"{prefix}.0.bias"])
    x = F.batch_norm(x, state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"],
                     state[f"{prefix}.1.weight"], state[f"{prefix}.1.bias"], training=False, eps=1e-5)
    return F.linear(torch.relu(x), state[f"{prefix}.3.weight"], state[f"{prefix}.3.bias"])


def reference_forward_aud(state, x):
    return reference_head(state, "netfcaud", reference_tower(state, "netcnnaud", AUDIO_LAYERS, x, F.conv2d, F.max_pool2d))


def reference_forward_lip(state, x):
    return reference_head(state, "netfclip", reference_tower(state, "netcnnlip", LIP_LAYERS, x, F.conv3d, F.max_pool3d))


def reference_evaluate(state, imtv, cct, num_audio_samples, vshift=15, batch_size=20):
    """SyncNetInstance.evaluate from the loaded arrays: imtv [1, 3, T, 224, 224], cct [1, 1, 13, F]."""
    min_length = min(imtv.shape[2], math.floor(num_audio_samples / 640))
    lastframe = min_length - 5
    im_feat, cc_feat = [], []
    for i in range(0, lastframe, batch_size):
        frames = range(i, min(lastframe, i + batch_size))
        im_feat.append(reference_forward_lip(state, torch.cat([imtv[:, :, v:v + 5] for v in frames], 0)))
        cc_feat.append(reference_forward_aud(state, torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in frames], 0)))
    im_feat, cc_feat = torch.cat(im_feat), torch.cat(cc_feat)
    win_size = vshift * 2 + 1
    padded = torch.cat([torch.zeros(vshift, cc_feat.shape[1]), cc_feat, torch.zeros(vshift, cc_feat.shape[1])])
    dists = []
    for i in range(len(im_feat)):
        diff = im_feat[[i], :].repeat(win_size, 1) - padded[i:i + win_size] + 1e-6  # pairwise_distance's eps
        dists.append(diff.pow(2).sum(1).sqrt())
    mdist = torch.stack(dists, 1).mean(1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(torch.median(mdist) - minval), float(minval), mdist


def test_syncnet_towers_match_the_public_layer_list():
    state = smoke_state_dict(seed=1)
    model = syncnet_from_state_dict(state)
    assert set(model.state_dict()) - set(state) == {k for k in model.state_dict() if k.endswith("num_batches_tracked")}
    g = torch.Generator().manual_seed(0)
    mfcc = torch.randn(3, 1, 13, 20, generator=g) * 10
    lips = torch.rand(1, 3, 5, 224, 224, generator=g) * 255
    with torch.no_grad():
        assert torch.allclose(model.forward_audio(mfcc), reference_forward_aud(state, mfcc), rtol=0, atol=1e-5)
        assert torch.allclose(model.forward_lips(lips), reference_forward_lip(state, lips), rtol=0, atol=1e-5)


def test_lse_matches_the_public_evaluation_on_random_weights():
    state = smoke_state_dict(seed=2)
    model = syncnet_from_state_dict(state)
    g = torch.Generator().manual_seed(3)
    frames = 9
    crops = torch.rand(frames, 3, 224, 224, generator=g) * 255
    samples = frames * 640 + 333
    audio = torch.randn(samples, generator=g) * 0.1
    mfcc = syncnet_mfcc(audio, 16000)
    windows = window_count(frames, samples)
    assert windows == frames - 5
    video, sound = syncnet_embeddings(model, crops, mfcc, windows, batch_size=4)  # batches != the reference's
    ours = lse_from_embeddings(video, sound)
    with torch.no_grad():
        offset, conf, minval, mdist = reference_evaluate(state, crops.permute(1, 0, 2, 3)[None], mfcc[None, None], samples)
    assert ours.offset_frames == offset
    assert abs(ours.lse_c - conf) <= 1e-5 and abs(ours.lse_d - minval) <= 1e-5
    assert np.allclose(ours.mean_distances, mdist.numpy(), rtol=0, atol=1e-5)


FRAMES = 14  # 25 fps frames of the synthetic pair: 9 windows
LEAD = 4  # spare frames of audio on each side of the pair, for shifting


def fitted_sync_state(seed: int = 5):
    """Random SyncNet weights whose fully connected heads are then set (same key layout) so that one
    synthetic pair is in sync: lip head = identity onto the first 512 of 1024 dimensions, audio head
    = the least-squares map from the pair's audio conv features to its lip conv features.

    Returns ``(state, crops [FRAMES, 3, 224, 224], audio [(FRAMES + 2 LEAD) * 640] at 16 kHz)``; the
    in-sync audio is ``audio[LEAD * 640:]``."""
    state = smoke_state_dict(seed)
    model = syncnet_from_state_dict(state)
    g = torch.Generator().manual_seed(seed)
    crops = torch.rand(FRAMES, 3, 224, 224, generator=g) * 255
    audio = torch.randn((FRAMES + 2 * LEAD) * 640, generator=g) * 0.1
    mfcc = syncnet_mfcc(audio[LEAD * 640:], 16000)
    windows = FRAMES - 5
    with torch.no_grad():
        lip_features = model.netcnnlip(torch.stack([crops[i:i + 5].permute(1, 0, 2, 3) for i in range(windows)])).flatten(1)
        audio_features = model.netcnnaud(torch.stack([mfcc[:, 4 * i:4 * i + 20] for i in range(windows)])[:, None]).flatten(1)
    scale = 10.0 / float(lip_features.norm(dim=1).mean())
    mapping = torch.linalg.pinv(audio_features.double()) @ lip_features.double()  # [512, 512]
    for head, last in (("netfclip", torch.eye(512)), ("netfcaud", mapping.T.float())):
        state[f"{head}.0.weight"] = torch.eye(512)
        state[f"{head}.0.bias"] = torch.zeros(512)
        state[f"{head}.1.running_mean"] = torch.zeros(512)
        state[f"{head}.1.running_var"] = torch.full((512,), 1 - 1e-5)
        state[f"{head}.1.weight"] = torch.ones(512)
        state[f"{head}.1.bias"] = torch.zeros(512)
        state[f"{head}.3.weight"] = torch.cat([last * scale, torch.zeros(512, 512)])
        state[f"{head}.3.bias"] = torch.zeros(1024)
    return state, crops, audio


@pytest.fixture(scope="module")
def synced():
    """``(state, model, crops, audio, lip embeddings)`` of the fitted synthetic pair."""
    state, crops, audio = fitted_sync_state()
    model = syncnet_from_state_dict(state)
    return state, model, crops, audio, lip_embeddings(model, crops, FRAMES - 5)


def lse_of(model, lips, audio):
    mfcc = syncnet_mfcc(audio, 16000)
    return lse_from_embeddings(lips, audio_embeddings(model, mfcc, window_count(FRAMES, audio.numel())))


def test_an_audio_offset_of_k_frames_moves_the_best_offset_by_k(synced):
    _, model, _, audio, lips = synced
    in_sync = lse_of(model, lips, audio[LEAD * 640:])
    assert in_sync.offset_frames == 0 and in_sync.lse_d < 0.5 and in_sync.lse_c > 5
    for k in (3, -2):  # audio delayed by 3 frames, then 2 frames early
        shifted = lse_of(model, lips, audio[(LEAD - k) * 640:])
        assert shifted.offset_frames == -k
        assert shifted.lse_c > 2 * in_sync.lse_d


def test_lse_matches_the_public_evaluation_on_a_synced_pair(synced):
    state, model, crops, audio, _ = synced
    shifted = audio[(LEAD - 2) * 640:]
    windows = window_count(FRAMES, shifted.numel())
    ours = lse_from_embeddings(*syncnet_embeddings(model, crops, syncnet_mfcc(shifted, 16000), windows, batch_size=4))
    with torch.no_grad():
        offset, conf, minval, mdist = reference_evaluate(
            state, crops.permute(1, 0, 2, 3)[None], syncnet_mfcc(shifted, 16000)[None, None], shifted.numel())
    assert ours.offset_frames == offset == -2 and conf > 1
    assert abs(ours.lse_c - conf) <= 1e-5 and abs(ours.lse_d - minval) <= 1e-5
    assert np.allclose(ours.mean_distances, mdist.numpy(), rtol=0, atol=1e-5)
