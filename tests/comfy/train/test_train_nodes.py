"""The training nodes in-process: a real clip becomes a sample, sets save and load, the train node runs and checkpoints."""

import numpy as np
import pytest
import torch
from audio_fixtures import audio_dict
from wan_fixtures import tiny_wan

FRAMES, SIZE, FPS = 9, 64, 25.0  # 9 frames = 3 latent frames of 4 x 4 (Wan2.2 VAE: 16x16 space)


@pytest.fixture(scope="module")
def audio_encoder(wav2vec2_base_file):
    import comfy.audio_encoders.audio_encoders
    import comfy.model_patcher
    import comfy.utils

    return comfy.audio_encoders.audio_encoders.load_audio_encoder_from_sd(
        comfy.utils.load_torch_file(str(wav2vec2_base_file), safe_load=True))


@pytest.fixture(scope="module")
def clip_inputs(librivox, wan22_vae, audio_encoder):
    samples = int(16000 * FRAMES / FPS)
    g = torch.Generator().manual_seed(0)
    return {"images": torch.rand(FRAMES, SIZE, SIZE, 3, generator=g), "talk": audio_dict(librivox[0][32000:32000 + samples], 16000),
            "listen": audio_dict(librivox[1][32000:32000 + samples], 16000), "vae": wan22_vae, "audio_encoder": audio_encoder,
            "reference": torch.rand(1, 96, 80, 3, generator=g), "positive": [[torch.randn(1, 8, 4096, generator=g), {}]],
            "fps": FPS}


@pytest.fixture(scope="module")
def one_clip_set(pack_nodes, clip_inputs):
    return pack_nodes["BMTrainingSample"].execute(**clip_inputs, source="librivox 0/1").result[0]


def test_a_real_clip_becomes_a_sample_of_the_models_shapes(one_clip_set):
    (sample,) = one_clip_set.samples
    assert sample.latents.shape == (48, 3, 4, 4) and sample.reference.shape == (48, 1, 4, 4)
    assert sample.audio.talk.shape == (FRAMES, 12, 768) and sample.text.shape == (8, 4096)
    assert float(sample.audio.talk_activity.max()) > 0.5  # real speech is found by the VAD
    assert not torch.equal(sample.audio.talk, sample.audio.listen) and sample.source == "librivox 0/1"


def test_bad_clips_name_the_input(pack, pack_nodes, clip_inputs):
    node, errors = pack_nodes["BMTrainingSample"], pack.beyond_monologue.errors
    with pytest.raises(errors.BMInputError, match=r"^talk: lasts"):
        node.execute(**{**clip_inputs, "talk": audio_dict(np.zeros(16000 * 2, np.float32) + 0.1, 16000)})
    with pytest.raises(errors.BMInputError, match=r"^images: has 3 frames"):
        short = {k: v for k, v in clip_inputs.items()}
        short["images"] = clip_inputs["images"][:3]
        short["talk"] = short["listen"] = audio_dict(np.full(int(16000 * 3 / FPS), 0.1, np.float32), 16000)
        node.execute(**short)
    silent = audio_dict(np.zeros(int(16000 * FRAMES / FPS), np.float32), 16000)
    with pytest.raises(errors.BMInputError, match="silent"):
        node.execute(**{**clip_inputs, "talk": silent, "listen": silent})


def test_sets_append_save_and_load(pack_nodes, one_clip_set, tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "bm_training_sets",
                        ([str(tmp_path / "bm_training_sets")], {".safetensors"}))
    both = pack_nodes["BMAppendTrainingSamples"].execute(training_set=one_clip_set, more=one_clip_set).result[0]
    assert len(both) == 2
    listed = pack_nodes["BMSaveTrainingSet"].execute(training_set=both, filename_prefix="clips").result[0]
    assert listed == "clips_00001_.safetensors"
    loaded = pack_nodes["BMLoadTrainingSet"].execute(training_set=listed).result[0]
    assert len(loaded) == 2 and torch.equal(loaded.samples[1].latents, both.samples[1].latents)


def test_train_node_gives_an_adapter_and_a_loss_map_and_checkpointing_changes_nothing(pack, pack_nodes, one_clip_set):
    node = pack_nodes["BMTrainDuplexAdapter"]
    inputs = {"model": tiny_wan("wan22_5b"), "training_set": one_clip_set, "stage": "both", "steps": 2, "batch_size": 1,
              "grad_accumulation": 1, "lr_new": 1e-4, "optimizer": "AdamW", "ema_decay": 0.0, "seed": 3,
              "training_dtype": "float32", "dropout_talk": 0.1, "dropout_listen": 0.1, "dropout_text": 0.1,
              "diffusion_forcing": 0.5, "guide_probability": 0.8, "window_latents": 21}
    plain = node.execute(**inputs, gradient_checkpointing=False)
    with torch.inference_mode():  # as ComfyUI runs nodes: the model and the inputs are inference tensors
        checkpointed = node.execute(**{**inputs, "model": tiny_wan("wan22_5b")}, gradient_checkpointing=True)
    trained, loss = plain.result
    assert len(loss["loss"]) == 2 and all(np.isfinite(loss["loss"]))
    assert trained.adapter.config.trained and trained.metadata["bm_train_samples"] == "1"
    torch.testing.assert_close(checkpointed.result[1]["loss"], loss["loss"], rtol=1e-5, atol=1e-6)
    other = checkpointed.result[0].adapter.state_dict()
    assert all(torch.allclose(v, other[k], rtol=1e-4, atol=1e-6) for k, v in trained.adapter.state_dict().items())
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match="training_set"):
        node.execute(**{**inputs, "model": tiny_wan("wan21_i2v")}, gradient_checkpointing=False)
