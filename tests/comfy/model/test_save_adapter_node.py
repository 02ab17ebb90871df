"""BM Save Duplex Adapter and the in-memory input of BM Apply Duplex Adapter: bit-exact round trip, clear errors."""

import json

import pytest
import torch
from safetensors import safe_open
from wan_fixtures import ChunkRecorder, sample, tiny_wan

LATENTS, FRAMES = 4, 13
METADATA = {"bm_train_stage": "both", "bm_train_steps": "120", "bm_train_samples": "8", "bm_train_audio_hours": "0.01",
            "bm_train_base_model": "wan2.2_ti2v_5B_fp16.safetensors", "bm_train_base_model_sha256": "unknown",
            "bm_train_dropout": json.dumps({"talk": 0.1, "listen": 0.1, "text": 0.1}), "bm_train_seed": "3",
            "bm_train_lr_new": "1e-05", "bm_train_lr_backbone": "0", "bm_train_ema": "0.999"}


@pytest.fixture()
def adapters_dir(pack, tmp_path, monkeypatch):
    """models/ in a temporary folder, with models/beyond_monologue registered as the node does."""
    import folder_paths

    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "beyond_monologue",
                        ([str(tmp_path / "beyond_monologue")], {".safetensors"}))
    return tmp_path / "beyond_monologue"


def _trained(pack, seed=5, metadata=METADATA):
    bm = pack.beyond_monologue
    cfg = bm.model.adapter_checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(seed, zero_output=False)
    return bm.model.trained_adapter.TrainedAdapter(adapter, dict(metadata))


def _render(pack, model):
    wp = pack.beyond_monologue.model.wan_patch
    g = torch.Generator().manual_seed(0)
    talk, listen = (torch.randn(FRAMES, 12, 768, generator=g) for _ in range(2))
    duplex = pack.beyond_monologue.audio.duplex_audio.DuplexAudio(talk, listen, torch.ones(FRAMES), torch.ones(FRAMES), fps=25.0)
    patched = model.clone()
    patched.model_options["transformer_options"]["bm_duplex"] = wp.prepare_window(model, duplex, 0, LATENTS)
    recorder = ChunkRecorder()
    patched.set_model_unet_function_wrapper(recorder)
    sample(patched, 48, frames=LATENTS, steps=1)
    return recorder.outputs


def test_saved_file_round_trips_bit_exactly_through_apply(pack, pack_nodes, adapters_dir):
    save, apply = pack_nodes["BMSaveDuplexAdapter"], pack_nodes["BMApplyDuplexAdapter"]
    trained = _trained(pack)
    listed = save.execute(trained_adapter=trained, filename_prefix="stage2/bm_adapter").result[0]
    again = save.execute(trained_adapter=trained, filename_prefix="stage2/bm_adapter").result[0]
    assert listed == "stage2/bm_adapter_00001_.safetensors" and again == "stage2/bm_adapter_00002_.safetensors"
    path = adapters_dir / listed
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        saved = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["bm_trained"] == "true" and meta["bm_format_version"] == "2"
    assert {k: meta[k] for k in METADATA} == METADATA
    assert json.loads(meta["bm_adapter_config"])["rope"]["rotary_dims"] == 128
    state = trained.adapter.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)

    wan22 = tiny_wan("wan22_5b")
    inputs = {"talk_strength": 1.0, "listen_strength": 0.7}
    from_file = apply.execute(model=wan22, adapter=listed, **inputs).result[0]
    in_memory = apply.execute(model=wan22, adapter="not-a-file.safetensors", trained_adapter=trained, **inputs).result[0]
    wp = pack.beyond_monologue.model.wan_patch
    a, b = wp.attached_adapter(from_file)[0].model, wp.attached_adapter(in_memory)[0].model
    assert a.config == b.config and a.config.trained
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a is not trained.adapter and b is not trained.adapter  # the training module is never shared
    out_file, out_memory = _render(pack, from_file), _render(pack, in_memory)
    assert out_file.keys() == out_memory.keys() and out_file
    assert all(torch.equal(x, y) for i in out_file for x, y in zip(out_file[i], out_memory[i], strict=True))


def test_bad_training_metadata_and_prefixes_are_refused_with_the_input_named(pack, pack_nodes, adapters_dir):
    save = pack_nodes["BMSaveDuplexAdapter"]
    errors = pack.beyond_monologue.errors
    with pytest.raises(errors.BMInputError, match=r"trained_adapter.*bm_train_steps"):
        save.execute(trained_adapter=_trained(pack, metadata={"bm_train_stage": "both"}), filename_prefix="x")
    with pytest.raises(errors.BMInputError, match=r"trained_adapter.*stage"):
        save.execute(trained_adapter=_trained(pack, metadata={**METADATA, "bm_train_stage": "dancing"}), filename_prefix="x")
    with pytest.raises(errors.BMInputError, match=r"trained_adapter.*unknown metadata key 'author'"):
        save.execute(trained_adapter=_trained(pack, metadata={**METADATA, "author": "me"}), filename_prefix="x")
    with pytest.raises(errors.BMInputError, match="filename_prefix"):
        save.execute(trained_adapter=_trained(pack), filename_prefix="../../escape")
    assert not adapters_dir.exists() or not any(adapters_dir.rglob("*.safetensors"))  # nothing written


def test_apply_without_file_or_trained_adapter_names_the_folder(pack, pack_nodes, adapters_dir):
    apply = pack_nodes["BMApplyDuplexAdapter"]
    assert apply.validate_inputs(adapter="missing.safetensors") is True  # the list check waits for execute
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match="models/beyond_monologue"):
        apply.execute(model=tiny_wan("wan22_5b"), adapter="missing.safetensors", talk_strength=1.0, listen_strength=1.0)
