"""The adapter on tiny native Wan models, through ComfyUI's real loader, patcher, memory manager and sampler."""

import pytest
import torch
from wan_fixtures import ChunkRecorder, conditioning, sample, tiny_wan

LATENTS, FRAMES = 4, 13  # 13 video frames = 4 latent frames


@pytest.fixture(scope="module")
def wan22(pack):
    return tiny_wan("wan22_5b")


@pytest.fixture(scope="module")
def bm(pack):
    return pack.beyond_monologue


def _audio(bm, seed, talk_shift=0.0, listen_shift=0.0):
    g = torch.Generator().manual_seed(seed)
    talk, listen = (torch.randn(FRAMES, 12, 768, generator=g) for _ in range(2))
    ones = torch.ones(FRAMES)
    return bm.audio.duplex_audio.DuplexAudio(talk + talk_shift, listen + listen_shift, ones, ones, fps=25.0)


def _adapter_patcher(bm, layout="beyond_monologue", zero_output=True, zero_listen=False, seed=1):
    import comfy.model_management as mm
    import comfy.model_patcher

    cfg = bm.model.adapter_checkpoint.smoke_config(layout, model_dim=256, num_layers=2)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(seed, zero_output=zero_output)
    if zero_listen:
        for block in adapter.blocks:
            torch.nn.init.zeros_(block["listen"].o.weight)
            torch.nn.init.zeros_(block["listen"].o.bias)
    return comfy.model_patcher.ModelPatcher(adapter, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def _with_call(model, call):
    patched = model.clone()
    patched.model_options["transformer_options"]["bm_duplex"] = call
    return patched


def _record(model, call=None):
    patched = _with_call(model, call) if call is not None else model.clone()
    recorder = ChunkRecorder()
    patched.set_model_unet_function_wrapper(recorder)
    sample(patched, 48, frames=LATENTS, steps=1)
    return recorder.outputs


def test_zero_initialised_adapter_reproduces_the_base_model_exactly_across_offloading(bm, wan22):
    import comfy.model_management as mm

    base = sample(wan22, 48, frames=LATENTS)
    ap = _adapter_patcher(bm, zero_output=True)
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, ap)
    call = bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS, branches={1: {"talk": "null", "listen": "null"}})
    seen = []
    residual = ap.model.residual
    ap.model.residual = lambda index, stream, *a, **k: seen.append((index, stream)) or residual(index, stream, *a, **k)
    try:
        first = sample(_with_call(patched, call), 48, frames=LATENTS)
        mm.unload_all_models()  # offload everything; the next run reloads and re-applies the patches
        second = sample(_with_call(patched, call), 48, frames=LATENTS)
    finally:
        del ap.model.residual
    assert {(0, "talk"), (1, "talk"), (0, "listen"), (1, "listen")} <= set(seen)
    assert torch.equal(first, base) and torch.equal(second, base)


def test_talk_branch_changes_only_what_it_should(bm, wan22):
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, _adapter_patcher(bm, zero_output=False, zero_listen=True))
    null_uncond = {1: {"talk": "null", "listen": "null"}}

    def run(audio, branches=null_uncond):
        return _record(patched, bm.model.wan_patch.prepare_window(patched, audio, 0, LATENTS, branches=branches))

    base = _record(wan22)
    a = run(_audio(bm, 0))
    talk_moved = run(_audio(bm, 0, talk_shift=1.0))
    listen_moved = run(_audio(bm, 0, listen_shift=1.0))
    off = {i: {"talk": "off", "listen": "off"} for i in (0, 1)}
    switched_off = run(_audio(bm, 0), off)
    assert not torch.allclose(a[0][0], base[0][0])  # talk on: the cond row changes
    assert not torch.equal(a[0][0], talk_moved[0][0])  # ... and follows the talk audio
    assert torch.equal(a[1][0], talk_moved[1][0])  # the null (uncond) row ignores the talk audio
    assert not torch.equal(a[1][0], base[1][0])  # but still gets the learned null tokens
    assert all(torch.equal(a[i][0], listen_moved[i][0]) for i in (0, 1))  # zero-initialised listen branch
    assert all(torch.equal(switched_off[i][0], base[i][0]) for i in (0, 1))
    uncond_off = run(_audio(bm, 0), {1: {"talk": "off", "listen": "off"}})
    assert torch.equal(uncond_off[1][0], base[1][0])  # only the rows of cond index 1 lose the audio
    torch.testing.assert_close(uncond_off[0][0], a[0][0], rtol=1e-5, atol=1e-6)


def test_removing_the_adapter_restores_the_original_model(bm, wan22):
    from comfy.ldm.wan.model import WanAttentionBlock, WanModel

    base = sample(wan22, 48, frames=LATENTS)
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, _adapter_patcher(bm, zero_output=False))
    call = bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS)
    assert not torch.equal(sample(_with_call(patched, call), 48, frames=LATENTS), base)
    assert torch.equal(sample(patched, 48, frames=LATENTS), base)  # no bm_duplex in the options: the base model
    detached = bm.model.wan_patch.detach_duplex_adapter(patched)
    assert bm.model.wan_patch.attached_adapter(detached) is None and bm.model.wan_patch.attached_adapter(patched) is not None
    assert not detached.get_additional_models() and not detached.model_options["transformer_options"]["patches_replace"]["dit"]
    assert torch.equal(sample(_with_call(detached, call), 48, frames=LATENTS), base)
    assert torch.equal(sample(wan22, 48, frames=LATENTS), base)
    dm = wan22.model.diffusion_model
    assert dm.rope_encode.__func__ is WanModel.rope_encode
    assert all(block.forward.__func__ is WanAttentionBlock.forward and "forward" not in vars(block) for block in dm.blocks)


def test_attaching_twice_replaces_the_first_adapter(bm, wan22):
    first = bm.model.wan_patch.attach_duplex_adapter(wan22, _adapter_patcher(bm, seed=1))
    second_patcher = _adapter_patcher(bm, seed=2)
    second = bm.model.wan_patch.attach_duplex_adapter(first, second_patcher)
    assert second.get_additional_models() == [second_patcher]
    replaced = second.model_options["transformer_options"]["patches_replace"]["dit"]
    assert sorted(replaced) == [("double_block", 0), ("double_block", 1)]
    assert all(patch.hook.adapter_patcher is second_patcher for patch in replaced.values())


def test_wrong_model_family_is_refused(bm, wan22):
    import comfy.model_patcher

    cfg = bm.model.adapter_checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=3)
    wrong = comfy.model_patcher.ModelPatcher(bm.model.duplex_adapter.DuplexAdapter(cfg), "cpu", "cpu")
    with pytest.raises(ValueError, match="adapter: is an adapter for a Wan DiT with dim 256 and 3 blocks"):
        bm.model.wan_patch.attach_duplex_adapter(wan22, wrong)


def test_guide_latent_gets_the_requested_rope_index_and_a_clean_timestep(bm, wan22):
    from unittest import mock

    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, _adapter_patcher(bm))
    guide = torch.randn(1, 48, 1, 8, 8)
    dm = wan22.model.diffusion_model
    for index in (LATENTS, 21, 2):
        call = bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS,
                                           guide=bm.sampling.duplex_call.GuideLatent(guide, rope_index=index))
        attn = type(dm.blocks[0].self_attn)
        with mock.patch.object(type(dm), "forward_orig", autospec=True, side_effect=type(dm).forward_orig) as spy, \
                mock.patch.object(attn, "forward", autospec=True, side_effect=attn.forward) as self_attn:
            out = sample(_with_call(patched, call), 48, frames=LATENTS, steps=1)
        x, t = spy.call_args.args[1:3]
        assert self_attn.call_count == len(dm.blocks)  # one batched cond+uncond call per block
        assert x.shape[2] == LATENTS + 1 and out.shape[2] == LATENTS
        assert t.shape[-1] == LATENTS + 1 and torch.all(t[:, -1] == 0) and torch.all(t[:, :-1] > 0)
        tokens = 4 * 4  # 8x8 latent, 2x2 patches
        ids = torch.zeros(LATENTS + 1, 4, 4, 3)
        ids[..., 0] = torch.tensor([*range(LATENTS), index], dtype=torch.float32).view(-1, 1, 1)
        ids[..., 1] = torch.arange(4.0).view(1, -1, 1)
        ids[..., 2] = torch.arange(4.0).view(1, 1, -1)
        expected = dm.rope_embedder(ids.reshape(1, -1, 3)).movedim(1, 2)
        for block_call in self_attn.call_args_list:
            freqs = block_call.args[2]
            assert freqs.shape[1] == (LATENTS + 1) * tokens
            torch.testing.assert_close(freqs, expected.to(freqs), rtol=0, atol=1e-6)


def test_guide_one_past_the_window_equals_comfyui_time_concat(bm, wan22):
    """With a shared timestep, index T is what ComfyUI's own time_dim_concat conditioning does."""
    raw = torch.randn(1, 48, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    native = sample(wan22, 48, frames=LATENTS, positive=conditioning(1, {"time_dim_concat": raw}),
                    negative=conditioning(2, {"time_dim_concat": raw}))
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, _adapter_patcher(bm))
    guide = bm.sampling.duplex_call.GuideLatent(wan22.model.process_latent_in(raw), rope_index=None, clean_timestep=False)
    call = bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS, guide=guide)
    ours = sample(_with_call(patched, call), 48, frames=LATENTS)
    torch.testing.assert_close(ours, native, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, sample(wan22, 48, frames=LATENTS))


def test_guide_tokens_get_no_audio_residual(bm, wan22):
    wp = bm.model.wan_patch
    ap = _adapter_patcher(bm, zero_output=False)
    patched = wp.attach_duplex_adapter(wan22, ap)
    hook = patched.get_attachment(wp.ADAPTER_KEY)
    call = wp.prepare_window(patched, _audio(bm, 0), 0, LATENTS)
    state = hook.forward_state(call, (LATENTS, 4, 4), 0, 2, {"cond_or_uncond": [0, 1]}, torch.device("cpu"), torch.float32)
    x = torch.randn(2, (LATENTS + 1) * 16, 256)  # window tokens + one guide frame
    out = hook.apply(x.clone(), 0, {wp.STATE_KEY: state})
    assert torch.equal(out[:, LATENTS * 16:], x[:, LATENTS * 16:])
    assert not torch.allclose(out[:, :LATENTS * 16], x[:, :LATENTS * 16])


def test_attn2_patch_path_matches_the_block_replacement_path(bm, wan22, monkeypatch):
    """Upstream ComfyUI calls attn2_patch after the text cross-attention with block_index set; simulate it."""
    import comfy.ldm.wan.model as wan

    wp = bm.model.wan_patch
    audio = _audio(bm, 0)
    ap = _adapter_patcher(bm, zero_output=False)
    replaced = wp.attach_duplex_adapter(wan22, ap)
    expected = sample(_with_call(replaced, wp.prepare_window(replaced, audio, 0, LATENTS)), 48, frames=LATENTS)
    index_of = {id(block): i for i, block in enumerate(wan22.model.diffusion_model.blocks)}

    def upstream_forward(self, x, e, freqs, context, context_img_len=257, transformer_options={}):  # noqa: B006
        transformer_options = {**transformer_options, "block_index": index_of[id(self)]}  # upstream: in forward_orig
        patches, repeat_e = transformer_options.get("patches", {}), wan.repeat_e
        modulation = wan.comfy.model_management.cast_to(self.modulation, dtype=x.dtype, device=x.device)
        e = (modulation + e).chunk(6, dim=1) if e.ndim < 4 else (modulation.unsqueeze(0) + e).unbind(2)
        x = x.contiguous()
        y = self.self_attn(torch.addcmul(repeat_e(e[0], x), self.norm1(x), 1 + repeat_e(e[1], x)), freqs,
                           transformer_options=transformer_options)
        x = torch.addcmul(x, y, repeat_e(e[2], x))
        x = x + self.cross_attn(self.norm3(x), context, context_img_len=context_img_len, transformer_options=transformer_options)
        for patch in patches.get("attn2_patch", []):
            x = patch({"x": x, "transformer_options": transformer_options})
        y = self.ffn(torch.addcmul(repeat_e(e[3], x), self.norm2(x), 1 + repeat_e(e[4], x)))
        return torch.addcmul(x, y, repeat_e(e[5], x))

    monkeypatch.setattr(wan.WanAttentionBlock, "forward", upstream_forward)
    monkeypatch.setattr(wp, "supports_attn2_patch", lambda: True)
    hooked = wp.attach_duplex_adapter(wan22, ap)
    assert not hooked.get_attachment(wp.ADAPTER_KEY).in_block_forward
    assert any(isinstance(p, wp._DuplexHook) for p in hooked.model_options["transformer_options"]["patches"]["attn2_patch"])
    got = sample(_with_call(hooked, wp.prepare_window(hooked, audio, 0, LATENTS)), 48, frames=LATENTS)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler_name", ["euler", "euler_cfg_pp"])
def test_text_only_duplex_guidance_equals_comfyui_cfg_guider(bm, wan22, sampler_name):
    """With talk = listen = text scale the duplex mix is plain CFG, also for CFG++ (post-CFG hook) samplers."""
    import comfy.samplers

    adapter = _adapter_patcher(bm, zero_output=False)
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, adapter)
    anchors = bm.sampling.guidance.guidance_anchors(bm.sampling.guidance.GuidanceScales(3.0, 3.0, 3.0), adapter.model.streams)
    assert len(anchors) == 2  # c and u only
    call = bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, 4, branches=bm.sampling.guidance.anchor_branches(anchors))
    model = _with_call(patched, call)
    noise = torch.randn(1, 48, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigmas = comfy.samplers.KSampler(model, steps=3, device="cpu", sampler=sampler_name, scheduler="simple").sigmas
    results = []
    for guider in (bm.sampling.duplex_guider.DuplexGuider(model, anchors), comfy.samplers.CFGGuider(model)):
        guider.set_conds(conditioning(1), conditioning(2))
        guider.set_cfg(3.0)
        results.append(guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object(sampler_name),
                                     sigmas, seed=0, disable_pbar=True))
    assert torch.isfinite(results[0]).all()
    assert torch.allclose(results[0], results[1], atol=1e-4, rtol=1e-4)


def test_talk_and_listen_branches_read_the_same_tokens_in_parallel(bm, wan22):
    """Both cross-attentions see the block's tokens before either residual is added (IP-Adapter style),
    so the order of the streams in the adapter's config does not matter."""
    import dataclasses

    outputs = []
    for order in (("talk", "listen"), ("listen", "talk")):
        adapter = _adapter_patcher(bm, zero_output=False)
        adapter.model.config = dataclasses.replace(adapter.model.config, streams=order)
        patched = bm.model.wan_patch.attach_duplex_adapter(wan22, adapter)
        outputs.append(_record(patched, bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS)))
    assert not torch.allclose(outputs[0][0][0], _record(wan22)[0][0])  # both branches are active
    torch.testing.assert_close(outputs[0][0][0], outputs[1][0][0], rtol=1e-5, atol=1e-6)


def test_time_rope_is_applied_through_the_patch_and_depends_only_on_time_differences(bm, wan22):
    import dataclasses

    ap = _adapter_patcher(bm, zero_output=False)
    assert ap.model.config.rope is not None  # layout (a) smoke adapters carry the time-RoPE
    patched = bm.model.wan_patch.attach_duplex_adapter(wan22, ap)
    # latents >= 1 are 4 frames apart (latent 0 holds one frame), so windows from latent 1 on shift rigidly
    call = dataclasses.replace(bm.model.wan_patch.prepare_window(patched, _audio(bm, 0), 0, LATENTS),
                               video_first_latent=1, audio_first_latent=1)
    a = _record(patched, call)
    later = _record(patched, dataclasses.replace(call, video_first_latent=57, audio_first_latent=57))
    keys_moved = _record(patched, dataclasses.replace(call, audio_first_latent=2))
    torch.testing.assert_close(later[0][0], a[0][0], rtol=1e-5, atol=1e-5)  # the same window 8.96 s later
    assert not torch.allclose(keys_moved[0][0], a[0][0], rtol=1e-4, atol=1e-4)

    no_rope = _adapter_patcher(bm, zero_output=False)
    no_rope.model.config = dataclasses.replace(no_rope.model.config, rope=None)
    plain = _record(bm.model.wan_patch.attach_duplex_adapter(wan22, no_rope), call)
    assert not torch.allclose(plain[0][0], a[0][0], rtol=1e-4, atol=1e-4)
