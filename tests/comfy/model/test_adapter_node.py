"""BMApplyDuplexAdapter: adapter files from ComfyUI's folders, both layouts, overrides and clear errors."""

import math

import pytest
import torch
from safetensors.torch import save_file
from wan_fixtures import sample, tiny_wan

LATENTS, FRAMES = 4, 13


@pytest.fixture()
def patches_dir(pack, tmp_path, monkeypatch):
    """A temporary models/model_patches folder registered with folder_paths."""
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "model_patches", ([str(tmp_path)], {".safetensors"}))
    return tmp_path


@pytest.fixture(scope="module")
def node(pack_nodes):
    return pack_nodes["BMApplyDuplexAdapter"]


def _execute(node, model, adapter, **overrides):
    inputs = {"talk_strength": 1.0, "listen_strength": 1.0, **overrides}
    return node.execute(model=model, adapter=adapter, **inputs).result[0]


def _audio(pack, seed=0):
    g = torch.Generator().manual_seed(seed)
    talk, listen = (torch.randn(FRAMES, 12, 768, generator=g) for _ in range(2))
    return pack.beyond_monologue.audio.duplex_audio.DuplexAudio(talk, listen, torch.ones(FRAMES), torch.ones(FRAMES), fps=25.0)


def _infinitetalk_file(pack, folder, name, zero_proj, num_layers=2):
    """A public-layout InfiniteTalk model patch (fp16, public key names, scaled sizes)."""
    bm = pack.beyond_monologue
    cfg = bm.model.adapter_checkpoint.smoke_config("infinitetalk", model_dim=256, num_layers=num_layers)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(seed=11, zero_output=zero_proj)
    public = {k: v.half() for k, v in bm.model.infinitetalk.from_internal(adapter.state_dict()).items()}
    save_file(public, str(folder / name))
    return name


def test_infinitetalk_model_patch_drives_wan21_i2v_as_the_talking_branch(pack, node, patches_dir):
    wan21 = tiny_wan("wan21_i2v", seed=3)
    wp = pack.beyond_monologue.model.wan_patch
    base = sample(wan21, 16, frames=LATENTS)
    outputs = {}
    for zero in (True, False):
        name = _infinitetalk_file(pack, patches_dir, f"infinitetalk_{zero}.safetensors", zero_proj=zero)
        model = _execute(node, wan21, name)
        adapter, settings = wp.attached_adapter(model)
        assert adapter.model.config.layout == "infinitetalk" and adapter.model.streams == ("talk",)
        assert settings.kernels["talk"].sigma_s == (0.0, 0.0) and settings.kernels["talk"].alpha == (math.inf,) * 2
        call = wp.prepare_window(model, _audio(pack), 0, LATENTS, branches={1: {"talk": "null"}})
        with_call = model.clone()
        with_call.model_options["transformer_options"]["bm_duplex"] = call
        outputs[zero] = sample(with_call, 16, frames=LATENTS)
    assert torch.equal(outputs[True], base)
    assert not torch.allclose(outputs[False], base)


def test_adapter_for_another_depth_is_refused_naming_the_file(pack, node, patches_dir):
    name = _infinitetalk_file(pack, patches_dir, "deeper.safetensors", zero_proj=True, num_layers=3)
    with pytest.raises(ValueError, match=r"adapter file 'deeper.safetensors': is an adapter for a Wan DiT with dim 256 and 3 blocks"):
        _execute(node, tiny_wan("wan22_5b"), name)


def test_smoke_adapter_with_kernel_overrides(pack, node, patches_dir):
    bm = pack.beyond_monologue
    sd, meta = bm.model.adapter_checkpoint.smoke_state_dict("beyond_monologue", seed=0, model_dim=256, num_layers=2)
    save_file(sd, str(patches_dir / "bm_smoke.safetensors"), metadata=meta)
    assert "bm_smoke.safetensors" in pack.nodes.model.adapter_files()
    model = _execute(node, tiny_wan("wan22_5b"), "bm_smoke.safetensors", talk_sigma="0.1", listen_alpha="2, inf",
                     listen_strength=0.5, attention_backend="grouped")
    _, settings = bm.model.wan_patch.attached_adapter(model)
    assert settings.kernels["talk"].sigma_s == (0.1, 0.1)
    assert settings.kernels["talk"].alpha == bm.model.mhgk.MHGKKernel.default("talk", 2).alpha
    assert settings.kernels["listen"].alpha == (2.0, math.inf)
    assert settings.scales == {"talk": 1.0, "listen": 0.5} and settings.backend == "grouped"
    with pytest.raises(ValueError, match="talk_alpha: has 3 values but the adapter has 2 heads"):
        _execute(node, tiny_wan("wan22_5b"), "bm_smoke.safetensors", talk_alpha="1 2 3")


def test_validation_and_missing_files(pack, node, patches_dir):
    assert node.validate_inputs(talk_sigma="0.04, inf", listen_alpha="") is True
    message = node.validate_inputs(talk_sigma="wide")
    assert isinstance(message, str) and "talk_sigma" in message and "not a list of numbers" in message
    with pytest.raises(ValueError, match=r"adapter: file 'nope.safetensors' is not in models/beyond_monologue or models/model_patches"):
        _execute(node, tiny_wan("wan22_5b"), "nope.safetensors")
    # a file the weights manifest knows: the message names its set and where to download it
    with pytest.raises(ValueError, match=r"https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged.*infinitetalk-wan21-14b-480p"):
        _execute(node, tiny_wan("wan22_5b"), "wan2.1_infiniteTalk_single_fp16.safetensors")


def test_sigma_alone_on_a_hard_masked_infinitetalk_adapter_is_refused(pack, node, patches_dir):
    name = _infinitetalk_file(pack, patches_dir, "infinitetalk_hard.safetensors", zero_proj=True)
    wan21 = tiny_wan("wan21_i2v", seed=3)
    with pytest.raises(ValueError, match="talk_sigma: has no effect: this adapter's talk alpha is inf"):
        _execute(node, wan21, name, talk_sigma="0.2")
    model = _execute(node, wan21, name, talk_sigma="0.2", talk_alpha="8")  # a soft kernel: accepted
    _, settings = pack.beyond_monologue.model.wan_patch.attached_adapter(model)
    assert settings.kernels["talk"].sigma_s == (0.2, 0.2) and settings.kernels["talk"].alpha == (8.0, 8.0)
