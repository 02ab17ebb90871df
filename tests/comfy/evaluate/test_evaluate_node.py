"""BM Evaluate Avatar in-process on a real talking-head clip (carphone) with real speech (LibriVox),
metric weights generated in the public layouts into a models/bm_evaluation folder."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from audio_fixtures import audio_dict
from PIL import Image
from safetensors.torch import save_file

FPS = 30000 / 1001
FRAMES = 30  # 1 s


@pytest.fixture(scope="module")
def clip(assets, librivox):
    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(FRAMES), container.decode(video=0), strict=False)]
    samples = round(16000 * FRAMES / FPS)
    reference = np.array(Image.fromarray(frames[0]))
    return {"frames": torch.from_numpy(np.stack(frames)).float() / 255, "fps": FPS,
            "talk_audio": audio_dict(librivox[0][16000:16000 + samples], 16000),
            "listen_audio": audio_dict(librivox[1][16000:16000 + samples], 16000),
            "reference": torch.from_numpy(reference).float()[None] / 255, "every_nth": 10}


@pytest.fixture
def metric_folder(pack, tmp_path, monkeypatch):
    """An empty models/bm_evaluation registered with folder_paths (the node registered the key)."""
    import folder_paths

    folder = tmp_path / "bm_evaluation"
    folder.mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "bm_evaluation", ([str(folder)], {".safetensors"}))
    return folder


def write_weights(pack, folder):
    evaluate = pack.beyond_monologue.evaluate
    save_file(evaluate.syncnet.smoke_state_dict(0), str(folder / "syncnet_v2.safetensors"))
    facenet = {k: v.contiguous() for k, v in evaluate.identity.smoke_state_dict(0).items() if not k.startswith("logits.")}
    save_file(facenet, str(folder / "facenet_vggface2.safetensors"))


def test_the_node_measures_a_real_clip(pack, pack_nodes, clip, metric_folder):
    write_weights(pack, metric_folder)
    node = pack_nodes["BMEvaluateAvatar"]
    assert node.validate_inputs(fps=FPS, every_nth=10) is True
    output = node.execute(**clip)
    report = json.loads(output.result[0])
    assert report["face"]["detected_fraction"] >= 0.95
    sync = report["lip_sync"]
    assert sync["lse_d"] > 0 and sync["lse_c"] >= 0 and -15 <= sync["offset_frames"] <= 15  # random weights
    identity = report["identity"]
    assert identity["frames_compared"] == 3 and -1 <= identity["csim_min"] <= identity["csim_mean"] <= 1
    assert identity["csim_mean"] > 0.9  # the reference is frame 0 of the same clip
    assert report["head_motion"]["mean"] > 0
    assert len(report["series"]["sync_confidence"]) == len(report["series"]["seconds"]) == 2
    plot = output.result[1]
    assert plot.shape == (1, 600, 960, 3) and float(plot.min()) >= 0 and float(plot.max()) <= 1
    assert output.ui is not None


def test_missing_weights_are_reported_with_the_folder_and_source(pack_nodes, clip, metric_folder):
    report = json.loads(pack_nodes["BMEvaluateAvatar"].execute(**{**clip, "reference": None}).result[0])
    reason = report["lip_sync"]["unavailable"]
    assert "syncnet_v2.safetensors is not in" in reason and str(metric_folder) in reason and "syncnet_v2.model" in reason
    assert report["identity"] == {"unavailable": "no reference portrait was given"}


def test_bad_values_are_refused(pack, pack_nodes, clip, metric_folder):
    node, errors = pack_nodes["BMEvaluateAvatar"], pack.beyond_monologue.errors
    assert node.validate_inputs(fps=0.0).startswith("fps: must be a positive frame rate")
    assert node.validate_inputs(fps=None) is True  # linked from Get Video Components: checked at run time
    with pytest.raises(errors.BMInputError, match=r"^fps: must be a positive"):
        node.execute(**{**clip, "fps": 0.0})
    with pytest.raises(errors.BMInputError, match=r"^frames: has 1 frame"):
        node.execute(**{**clip, "frames": clip["frames"][:1]})
    with pytest.raises(errors.BMInputError, match=r"^talk_audio: lasts 2\.00 s"):
        node.execute(**{**clip, "talk_audio": audio_dict(np.zeros(32000, np.float32), 16000)})
    blank = clip["frames"].clone()
    blank[4:] = 0.5  # 26 frames: one more than the gap the public tracker bridges
    with pytest.raises(errors.BMInputError, match=r"no face found in 26 of 30 frames: 4-29"):
        node.execute(**{**clip, "frames": blank})


def test_duplex_audio_activity_is_read_at_each_video_frames_time(pack):
    import importlib

    evaluate_nodes = importlib.import_module(f"{pack.__name__}.nodes.evaluate")
    DuplexAudio = pack.beyond_monologue.audio.duplex_audio.DuplexAudio
    talk = torch.zeros(25)
    talk[:10] = 1
    listen = 1 - talk
    duplex = DuplexAudio(torch.zeros(25, 1, 4), torch.zeros(25, 1, 4), talk, listen, fps=25.0)
    talk_act, listen_act = evaluate_nodes._duplex_activity(duplex, 50, 50.0)  # same second at twice the rate
    assert talk_act.tolist() == [1.0] * 20 + [0.0] * 30
    assert listen_act.tolist() == [0.0] * 20 + [1.0] * 30
