"""BM Sampler with ComfyUI's own speed-up tools on the adapter-patched MODEL (tiny Wan2.1-I2V, smoke adapter).

Each test applies one native tool together with BM Apply's patches and checks that the render runs,
that the adapter is still attached and active (the render differs from the same render with the
adapter at strength 0) and, where the tool is exact, that the render equals the one without the tool.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch
from safetensors.torch import save_file
from sampler_fixtures import attach_adapter, duplex_audio
from tiny_wan_vae import wan21_vae_state_dict
from wan_fixtures import conditioning, tiny_wan, tiny_wan_state_dict

pytestmark = pytest.mark.usefixtures("comfy_inference_mode")  # as ComfyUI runs nodes

KIND = "wan21_i2v"
ACTIVE = 1e-3  # adapter on vs strength 0: 8e-3 to 2e-2 relative on this tiny model (measured); float32 noise ~1e-7


@pytest.fixture(scope="module")
def vae(comfy):
    import comfy.sd

    return comfy.sd.VAE(sd=wan21_vae_state_dict())


@pytest.fixture(scope="module")
def duplex(bm):
    return duplex_audio(bm, 9)


@pytest.fixture(scope="module")
def render(pack_nodes, vae, duplex):
    """``render(model, **overrides)``: BM Sampler's LATENT samples for one 9-frame window at 32x32."""
    import comfy.clip_vision

    node = pack_nodes["BMSampler"]
    image = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))

    def run(model, **overrides):
        clip = comfy.clip_vision.Output()
        clip["penultimate_hidden_states"] = torch.randn((1, 257, 1280), generator=torch.Generator().manual_seed(0))
        inputs = {"positive": conditioning(1), "negative": conditioning(2), "width": 32, "height": 32, "seed": 1,
                  "steps": 4, "sampler_name": "euler", "scheduler": "simple", "shift": 5.0, "cfg_text": 2.0,
                  "cfg_talk": 1.5, "cfg_listen": 1.0, "window_frames": 9, "motion_latents": 1,
                  "guide_position": "auto", "guide_offset": 1, "clip_vision_output": clip, **overrides}
        return node.execute(model=model, duplex_audio=duplex, vae=vae, reference=image, **inputs).result[0]["samples"]

    return run


@pytest.fixture(scope="module")
def base(comfy):
    return tiny_wan(KIND)


@pytest.fixture(scope="module")
def plain(bm, base, render):
    """The renders without any tool: ``(adapter on, adapter at strength 0)``."""
    with torch.inference_mode():
        return render(attached(bm, base)), render(attached(bm, base, strength=0.0))


def attached(bm, model, strength=1.0, **kw):
    patched = attach_adapter(bm, model, KIND, strength=strength, **kw)
    assert bm.model.wan_patch.attached_adapter(patched) is not None
    return patched


def still_attached(bm, model):
    found = bm.model.wan_patch.attached_adapter(model)
    return found is not None and found[1].scales.get("talk") == 1.0


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    """``folder(kind)``: a temporary ComfyUI model folder (``loras``, ``diffusion_models``) registered with folder_paths."""
    import folder_paths

    def folder(kind):
        path = tmp_path / kind
        path.mkdir(exist_ok=True)
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(path)], {".safetensors"}))
        return path

    return folder


def test_lora_loader_model_only_before_or_after_the_adapter(bm, base, render, plain, models_folder):
    import nodes as comfy_nodes

    g = torch.Generator().manual_seed(7)
    lora, weights = {}, tiny_wan_state_dict(KIND)
    for block in range(2):
        for layer in ("self_attn.q", "self_attn.v", "cross_attn.o", "ffn.0"):  # a LoRA in ComfyUI's lora_up/down keys
            key = f"diffusion_model.blocks.{block}.{layer}"
            weight = weights[f"blocks.{block}.{layer}.weight"]
            lora[f"{key}.lora_up.weight"] = torch.randn(weight.shape[0], 4, generator=g) * 0.3
            lora[f"{key}.lora_down.weight"] = torch.randn(4, weight.shape[1], generator=g) * 0.3
    save_file(lora, models_folder("loras") / "tiny_wan_lora.safetensors")
    loader = comfy_nodes.LoraLoaderModelOnly()

    lora_first = render(attached(bm, loader.load_lora_model_only(base, "tiny_wan_lora.safetensors", 1.0)[0]))
    adapter_first_model = loader.load_lora_model_only(attached(bm, base), "tiny_wan_lora.safetensors", 1.0)[0]
    assert still_attached(bm, adapter_first_model)
    adapter_first = render(adapter_first_model)
    off = render(attached(bm, loader.load_lora_model_only(base, "tiny_wan_lora.safetensors", 1.0)[0], strength=0.0))
    assert relative(lora_first, plain[0]) > 0.05  # the LoRA changes the DiT
    assert relative(lora_first, off) > ACTIVE  # and the adapter still acts on the LoRA'd DiT
    assert torch.equal(lora_first, adapter_first)  # the order of LoRA loader and BM Apply does not matter


def test_unet_loader_fp8_weights(bm, render, models_folder):
    import nodes as comfy_nodes

    save_file(tiny_wan_state_dict(KIND), models_folder("diffusion_models") / "tiny_wan.safetensors")
    loader = comfy_nodes.UNETLoader()
    full = loader.load_unet("tiny_wan.safetensors", "default")[0]
    fp8 = loader.load_unet("tiny_wan.safetensors", "fp8_e4m3fn")[0]
    assert fp8.model.diffusion_model.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    reference, reference_off = render(attached(bm, full)), render(attached(bm, full, strength=0.0))
    on, off = render(attached(bm, fp8)), render(attached(bm, fp8, strength=0.0))
    # measured: fp8 vs full weights 0.053 relative, the adapter's effect 0.021 relative with either, the cosine of the
    # two effects 0.999 (the bounds 0.1 and 0.95 are the pack's). ComfyUI casts fp8 weights to float32 per layer.
    assert relative(on, reference) < 0.1
    assert relative(on, off) > ACTIVE
    effect, reference_effect = (on - off).flatten(), (reference - reference_off).flatten()
    assert torch.nn.functional.cosine_similarity(effect, reference_effect, dim=0) > 0.95  # the same audio effect


class ChunkRecorder:
    """``model_function_wrapper`` keeping each anchor's denoised output of every step (shared by MODEL clones)."""

    def __init__(self):
        self.outputs: dict[int, list[torch.Tensor]] = {}

    def __deepcopy__(self, memo):
        return self

    def __call__(self, apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        for index, chunk in zip(args["cond_or_uncond"], out.chunk(len(args["cond_or_uncond"])), strict=True):
            self.outputs.setdefault(index, []).append(chunk.clone())
        return out


def test_easycache_skips_steps_but_keeps_the_talk_anchor_apart(bm, base, render, caplog):
    from comfy_extras.nodes_easycache import EasyCacheNode

    def cached(model):
        return EasyCacheNode.execute(model, reuse_threshold=3.0, start_percent=0.0, end_percent=1.0, verbose=False).result[0]

    model = cached(attached(bm, base))
    assert still_attached(bm, model)
    recorder = ChunkRecorder()
    model.set_model_unet_function_wrapper(recorder)
    with caplog.at_level(logging.INFO):
        on = render(model, steps=8)
    skipped = [int(m.group(1)) for m in re.finditer(r"EasyCache - skipped (\d+)/8 steps", caplog.text)]
    assert skipped and skipped[0] > 0
    # anchors (prompt, talk on), (negative prompt, talk on), (negative prompt, talk null): the last two share
    # a CONDITIONING; the talk CFG term, their difference, must survive the cached steps
    assert len(recorder.outputs[1]) == 8
    for talk_on, talk_null in zip(recorder.outputs[1], recorder.outputs[2], strict=True):
        assert relative(talk_on, talk_null) > ACTIVE
    off = render(cached(attached(bm, base, strength=0.0)), steps=8)
    assert relative(on, off) > ACTIVE
    assert torch.equal(render(attached(bm, cached(base)), steps=8), on)  # EasyCache before BM Apply: the same


def test_torch_compile_model_keeps_the_adapter(bm, base, render, plain):
    """TorchCompileModel's wrapper with the ``eager`` backend: dynamo traces the patched forward, no code
    generation. Inductor takes ~70 s per compile on 2 CPU cores (measured), too slow for this tier."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    graphs = []

    def eager(graph_module, example_inputs):  # torch.compile's "eager" backend, counting the traced graphs
        graphs.append(graph_module)
        return graph_module.forward

    compiled = attached(bm, base)
    set_torch_compile_wrapper(model=compiled, backend=eager)  # what TorchCompileModel does with its backend
    assert still_attached(bm, compiled)
    try:
        assert torch.equal(render(compiled), plain[0])
    finally:
        torch._dynamo.reset()  # no compiled code left for later tests
    assert graphs  # dynamo did trace the patched DiT
    assert relative(plain[0], plain[1]) > ACTIVE


class LowVramRecorder:
    """``model_function_wrapper`` noting whether the DiT and the adapter were partially loaded at each call."""

    def __init__(self, dit, adapter):
        self.dit, self.adapter, self.seen = dit, adapter, []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, apply_model, args):
        self.seen.append((self.dit.model_lowvram, self.adapter.model_lowvram))
        return apply_model(args["input"], args["timestep"], **args["c"])


def test_lowvram_partial_loading_of_dit_and_adapter(bm, base, render, plain, monkeypatch):
    import comfy.model_management as mm

    model = attached(bm, base)
    full, off = plain
    recorder = LowVramRecorder(model.model, bm.model.wan_patch.attached_adapter(model)[0].model)
    lowvram = model.clone()
    lowvram.set_model_unet_function_wrapper(recorder)
    mm.unload_all_models()
    # --novram on a GPU: every weight stays on the offload device and is cast in at use. On this CPU-only
    # runner ComfyUI never loads partially, so the device check is bypassed for the render.
    monkeypatch.setattr(mm, "vram_state", mm.VRAMState.NO_VRAM)
    monkeypatch.setattr(mm, "is_device_cpu", lambda device: False)
    try:
        partial = render(lowvram)
    finally:
        mm.unload_all_models()
    assert recorder.seen and all(dit and adapter for dit, adapter in recorder.seen)
    assert torch.equal(partial, full)
    assert relative(full, off) > ACTIVE


@pytest.mark.parametrize("function", ["attention_basic", "attention_split", "attention_sub_quad", "attention_pytorch"])
def test_comfy_attention_functions_run_the_dit_with_the_adapter(bm, base, render, plain, function):
    """The DiT on each of ComfyUI's CPU attention functions (what --use-split-cross-attention,
    --use-quad-cross-attention, --use-pytorch-cross-attention select), through ComfyUI's per-model override."""
    import comfy.ldm.modules.attention as attention

    chosen = getattr(attention, function)

    def override(func, *args, **kwargs):
        return chosen(*args, **kwargs)

    model = attached(bm, base)
    model.model_options["transformer_options"]["optimized_attention_override"] = override
    on = render(model)
    # the same attention up to float32 rounding, far below the adapter's effect: the adapter ran
    assert relative(on, plain[0]) < 1e-4 < ACTIVE < relative(plain[0], plain[1])


def test_attention_flags_and_a_missing_mhgk_backend_fall_back_with_a_log_line(bm, pack, base, render, plain,
                                                                               monkeypatch, caplog):
    import comfy.cli_args

    mhgk = pack.beyond_monologue.model.mhgk_attention
    monkeypatch.setattr(mhgk, "_unavailable_warned", set())
    monkeypatch.setattr(bm.model.wan_patch, "_noted_flags", set())
    monkeypatch.setattr(comfy.cli_args.args, "use_sage_attention", True)  # read at call time by ComfyUI
    with caplog.at_level(logging.INFO):
        model = attached(bm, base, backend="xformers")  # xformers needs CUDA: not available on this runner
        chosen = render(model)
    assert "ComfyUI runs the Wan DiT's attention with SageAttention's sageattn (--use-sage-attention)" in caplog.text
    assert "MHGK attention backend 'xformers' is not available here" in caplog.text
    assert mhgk.auto_excluded() == {"xformers"}  # ComfyUI has xformers off on the CPU: auto follows
    assert torch.equal(chosen, plain[0])  # the fallback is auto


def test_a_block_patch_after_bm_apply_is_refused_instead_of_dropping_the_adapter(bm, base, render, plain, caplog):
    def other_pack_block(args, extra):  # e.g. another pack's replacement of Wan block 1
        return extra["original_block"](args)

    after = attached(bm, base)
    after.set_model_patch_replace(other_pack_block, "dit", "double_block", 1)
    assert bm.model.wan_patch.attached_adapter(after) is not None  # still looks attached
    with pytest.raises(ValueError, match=re.escape("model: has the duplex adapter attached, but a node after BM Apply "
                                                   "Duplex Adapter replaced the adapter's patches (Wan block 1)")):
        render(after)
    before = base.clone()
    before.set_model_patch_replace(other_pack_block, "dit", "double_block", 1)
    with caplog.at_level(logging.WARNING):
        model = attached(bm, before)  # BM Apply after it: the adapter's patch wins, with a warning
    assert "replacing another block patch of Wan block 1" in caplog.text
    assert torch.equal(render(model), plain[0])
