"""Smoke layouts against ComfyUI's own modules (real sizes, meta device) and smoke files through ComfyUI's loaders.

The key layouts are written from the original model code; here they must equal, key for key and
shape for shape, the state dicts of the modules ComfyUI builds for the real files. Then the
generated smoke files go through ComfyUI's loading functions and one forward pass each.
"""

import importlib
import json
import logging
import math
import time
from pathlib import Path

import pytest
import torch

LOAD_WARNINGS = ("unet missing", "unet unexpected", "Missing VAE keys", "missing audio encoder",
                 "unexpected audio encoder")


def shapes(module_or_layout) -> dict:
    if isinstance(module_or_layout, dict):
        return {k: tuple(s.shape) for k, s in module_or_layout.items()}
    return {k: tuple(v.shape) for k, v in module_or_layout.state_dict().items()}


@pytest.fixture(scope="module")
def weights(pack):
    """The pack's weights package (no node imports it yet, so import it inside the pack)."""
    return importlib.import_module(f"{pack.__name__}.beyond_monologue.weights")


@pytest.fixture(scope="module")
def smoke(weights):
    return importlib.import_module(f"{weights.__name__}.smoke")


@pytest.mark.usefixtures("comfy")
def test_manifest_folders_are_comfyui_model_folders(weights):
    import folder_paths

    for file in weights.load_manifest().files.values():
        assert file.folder in folder_paths.folder_names_and_paths, file.id


@pytest.mark.parametrize(("i2v", "in_dim", "out_dim"), [(False, 48, 48), (True, 36, 16)])
def test_wan_dit_layout_equals_comfyui_wan_model(smoke, i2v, in_dim, out_dim):
    import comfy.ldm.wan.model
    import comfy.ops

    dims = {"dim": 5120, "ffn_dim": 13824, "num_layers": 40, "in_dim": in_dim, "out_dim": out_dim}
    layout = smoke.wan_dit.wan_dit_layout(**dims, i2v=i2v)
    ops = comfy.ops.scaled_fp8_ops(scale_input=True, override_dtype=torch.float8_e4m3fn) if i2v \
        else comfy.ops.disable_weight_init
    model = comfy.ldm.wan.model.WanModel(model_type="i2v" if i2v else "t2v", num_heads=40, device="meta",
                                         operations=ops, **dims)
    reference = shapes(model)
    if i2v:  # compare the scaled-fp8 storage too (scale_weight / scale_input per Linear)
        meta = {k: torch.empty(spec.shape, device="meta") for k, spec in layout.items()}
        stored = smoke.tensors.to_scaled_fp8(meta, layout, scale_input=True)
        assert set(stored) - {"scaled_fp8"} == set(reference)
    assert shapes(layout) == {k: v for k, v in reference.items() if not k.endswith(("scale_weight", "scale_input"))}


def test_wan_vae_layouts_equal_comfyui_vaes(smoke):
    import comfy.ldm.wan.vae
    import comfy.ldm.wan.vae2_2

    config = {"dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
              "temperal_downsample": [False, True, True], "dropout": 0.0}  # comfy/sd.py VAE.__init__
    with torch.device("meta"):
        wan21 = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, **config)
        wan22 = comfy.ldm.wan.vae2_2.WanVAE(dim=160, z_dim=48, **config)
    assert shapes(smoke.wan_vae.wan21_vae_layout(96)) == shapes(wan21)
    assert shapes(smoke.wan_vae.wan22_vae_layout()) == shapes(wan22)


def test_umt5_layout_equals_comfyui_umt5_xxl(smoke):
    import comfy.ops
    import comfy.text_encoders.t5

    config = json.loads((Path(comfy.text_encoders.t5.__file__).parent / "umt5_config_xxl.json").read_text())
    real = smoke.umt5.REAL_DIMS
    assert {k: config[k] for k in real} == real
    ops = comfy.ops.scaled_fp8_ops(override_dtype=torch.float8_e4m3fn)
    module = comfy.text_encoders.t5.T5(config, torch.float16, "meta", ops)
    layout = smoke.umt5.umt5_layout(**real)
    meta = {k: torch.empty(spec.shape, device="meta") for k, spec in layout.items()}
    stored = smoke.tensors.to_scaled_fp8(meta, layout, scale_input=False)
    assert set(stored) - {"scaled_fp8"} == set(shapes(module))
    assert shapes(layout) == {k: v for k, v in shapes(module).items() if not k.endswith("scale_weight")}


def test_wav2vec2_layout_equals_comfyui_audio_encoder(smoke):
    from comfy.audio_encoders.wav2vec2 import Wav2Vec2Model

    with torch.device("meta"):
        module = Wav2Vec2Model(embed_dim=768, num_heads=12, num_layers=12, conv_norm=False, conv_bias=False,
                               do_normalize=False, do_stable_layer_norm=False, operations=torch.nn)
    names = {"encoder.pos_conv_embed.conv.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
             "encoder.pos_conv_embed.conv.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1"}
    ours = {names.get(k.removeprefix("wav2vec2."), k.removeprefix("wav2vec2.")): v
            for k, v in shapes(smoke.wav2vec2.wav2vec2_base_layout()).items()}
    assert ours == shapes(module)


@pytest.mark.usefixtures("comfy")
def test_clip_vision_h_layout_equals_comfyui_vit_h_and_is_detected_as_vit_h(smoke):
    import comfy.clip_vision
    import comfy.ops
    from comfy.clip_model import CLIPVisionModelProjection

    config = json.loads((Path(comfy.clip_vision.__file__).parent / "clip_vision_config_h.json").read_text())
    module = CLIPVisionModelProjection(config, torch.float16, "meta", comfy.ops.manual_cast)
    layout = smoke.clip_vision.clip_vision_layout()
    assert shapes(layout) == shapes(module)
    # ComfyUI picks the ViT-H config from the keys alone (a 31st layer, fewer than 48)
    assert "vision_model.encoder.layers.30.layer_norm1.weight" in layout
    assert "vision_model.encoder.layers.47.layer_norm1.weight" not in layout
    assert sum(math.prod(spec.shape) for spec in layout.values()) == pytest.approx(632.1e6, rel=0.001)


@pytest.mark.parametrize(("filename", "config_class", "latent_channels"), [
    ("wan2.2_ti2v_5B_fp16.safetensors", "WAN22_T2V", 48),
    ("Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors", "WAN21_I2V", 16),
])
@pytest.mark.usefixtures("comfy")
def test_smoke_dits_load_and_denoise_through_comfyui(smoke_models, caplog, filename, config_class, latent_channels):
    import comfy.sd

    caplog.set_level(logging.INFO)
    patcher = comfy.sd.load_diffusion_model(str(smoke_models / "diffusion_models" / filename))
    model = patcher.model
    assert type(model.model_config).__name__ == config_class
    assert not [r for r in caplog.records if r.getMessage().startswith(LOAD_WARNINGS)]
    x = torch.randn(1, latent_channels, 3, 8, 8)  # 3 latent frames (9 video frames), 64x64 / 128x128 px
    extra = {}
    if config_class == "WAN21_I2V":
        extra = {"c_concat": torch.randn(1, 20, 3, 8, 8), "clip_fea": torch.randn(1, 257, 1280)}
    with torch.no_grad():
        start = time.perf_counter()
        out = model.apply_model(x, torch.tensor([0.7]), c_crossattn=torch.randn(1, 512, 4096), **extra)
        seconds = time.perf_counter() - start
    assert out.shape == x.shape and torch.isfinite(out).all() and out.std() > 0
    print(f"{filename}: one denoising step on a {tuple(x.shape)} latent in {seconds:.3f} s")


def test_reduced_smoke_umt5_encodes_through_comfyui_text_encoder_code(tmp_path, smoke):
    """CLIPLoader cannot take a reduced umT5 (see smoke.umt5); ComfyUI's own CLIP/T5/tokenizer code can.

    (The full-size smoke file goes through the native CLIPLoader in the example-workflow server tests.)"""
    import types

    import comfy.sd
    import comfy.text_encoders.sd3_clip
    import comfy.text_encoders.wan
    import comfy.utils
    from safetensors import safe_open

    tensors, metadata = smoke.umt5.umt5_xxl_fp8_scaled_reduced(0)
    path = tmp_path / "umt5_reduced.safetensors"
    importlib.import_module(f"{smoke.__name__}.generate").write_checkpoint(path, tensors, metadata)
    state_dict = comfy.utils.load_torch_file(str(path), safe_load=True)
    with safe_open(str(path), "pt") as handle:
        dims = json.loads(handle.metadata()["bm_smoke_dims"])
    target = types.SimpleNamespace(params={}, tokenizer=comfy.text_encoders.wan.WanT5Tokenizer,
                                   clip=comfy.text_encoders.wan.te(**comfy.text_encoders.sd3_clip.t5_xxl_detect(state_dict)))
    clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": state_dict["spiece_model"]},
                         model_options={"umt5xxl_model_config": dims})
    missing, unexpected = clip.load_sd(state_dict)
    assert missing == [] and unexpected == ["spiece_model"]  # the tokenizer travels in the same file
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a person talks, the other one listens"))
    embedding = cond[0][0]
    assert embedding.shape == (1, 512, 4096) and torch.isfinite(embedding).all()


def test_full_set_generation_is_cached_and_has_the_real_sizes(smoke_models, weights):
    manifest = weights.load_manifest()
    generate_set = importlib.import_module(f"{weights.__name__}.smoke.generate").generate_set
    for name in ("beyond-monologue-wan22-5b", "infinitetalk-wan21-14b-480p"):
        results = generate_set(manifest, name, smoke_models)  # already generated by the fixture: all kept
        written = [r for r in results if r.outcome != "no-builder"]
        assert written and {r.outcome for r in written} == {"kept"}
    vae = smoke_models / "vae" / "wan2.2_vae.safetensors"
    # ComfyUI hard-codes the Wan2.2 VAE size: 704.7 M values in fp16, the size of the real file (1.31 GiB)
    assert vae.stat().st_size == pytest.approx(1.409e9, rel=0.001)
    # CLIPLoader builds the fixed umT5-XXL: the smoke file matches the real 6,735,906,897-byte file up to
    # the tokenizer it carries (a tiny SentencePiece model instead of umT5's 4.5 MB one)
    text = smoke_models / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    assert text.stat().st_size == pytest.approx(6_735_906_897, rel=0.001)
    wav2vec2 = smoke_models / "audio_encoders" / "wav2vec2-chinese-base_fp16.safetensors"
    assert wav2vec2.stat().st_size == pytest.approx(188.8e6, rel=0.01)  # real file: about 190 MB


@pytest.mark.parametrize(("dit_file", "adapter_file", "streams"), [
    ("wan2.2_ti2v_5B_fp16.safetensors", "beyond_monologue_wan2.2_5B_adapter.safetensors", ("talk", "listen")),
    ("Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors", "wan2.1_infiniteTalk_single_fp16.safetensors", ("talk",)),
])
def test_smoke_adapters_attach_to_the_smoke_dits(pack, pack_nodes, smoke_models, monkeypatch, dit_file, adapter_file,
                                                 streams):
    import comfy.sd
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, "model_patches",
                        ([str(smoke_models / "model_patches")], {".safetensors"}))
    model = comfy.sd.load_diffusion_model(str(smoke_models / "diffusion_models" / dit_file))
    patched = pack_nodes["BMApplyDuplexAdapter"].execute(model=model, adapter=adapter_file, talk_strength=1.0,
                                                         listen_strength=1.0).result[0]
    adapter, _ = pack.beyond_monologue.model.wan_patch.attached_adapter(patched)
    assert adapter.model.streams == streams and not adapter.model.config.trained
