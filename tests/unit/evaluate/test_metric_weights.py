"""Public checkpoints -> safetensors (weights_only) -> the pack's loaders, on random weights in the public layouts."""

from __future__ import annotations

import pytest
import torch

from beyond_monologue.evaluate import identity, syncnet
from beyond_monologue.evaluate.convert import convert_checkpoint
from beyond_monologue.evaluate.metric_weights import (
    FACENET_FILE,
    SYNCNET_FILE,
    MetricWeightsUnavailable,
    load_face_embedder,
    load_syncnet,
    missing,
)


@pytest.mark.parametrize("zip_format", [True, False])  # the public file predates the zip format
def test_syncnet_checkpoint_converts_and_loads(tmp_path, zip_format):
    state = syncnet.smoke_state_dict(seed=4)
    source = tmp_path / "syncnet_v2.model"
    torch.save(state, source, _use_new_zipfile_serialization=zip_format)
    target = convert_checkpoint(source, tmp_path / "models" / "bm_evaluation" / SYNCNET_FILE, "syncnet")
    model = load_syncnet(target)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not model.training


def test_facenet_checkpoint_drops_its_classifier_and_loads(tmp_path):
    state = identity.smoke_state_dict(seed=1)
    source = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(state, source)
    model = load_face_embedder(convert_checkpoint(source, tmp_path / FACENET_FILE, "facenet"))
    assert "logits.weight" not in model.state_dict()
    assert torch.equal(model.state_dict()["last_bn.running_var"], state["last_bn.running_var"])
    with torch.no_grad():
        embedding = model(torch.randn(2, 3, 160, 160))
    assert embedding.shape == (2, 512) and torch.allclose(embedding.norm(dim=1), torch.ones(2), atol=1e-5)


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    source = tmp_path / "other.pt"
    torch.save({"netcnnaud.0.weight": torch.zeros(3, 3)}, source)
    with pytest.raises(ValueError, match="not a SyncNet v2 state dict"):
        convert_checkpoint(source, tmp_path / "x.safetensors", "syncnet")
    with pytest.raises(MetricWeightsUnavailable, match="cannot be used"):
        load_syncnet(source)  # not a safetensors file: never unpickled


def test_the_missing_message_says_which_file_where_and_how_to_get_it():
    text = str(missing(SYNCNET_FILE, "ComfyUI/models/bm_evaluation"))
    assert "syncnet_v2.safetensors is not in ComfyUI/models/bm_evaluation" in text
    assert "syncnet_v2.model" in text and "robots.ox.ac.uk" in text and "beyond_monologue.evaluate convert syncnet" in text
