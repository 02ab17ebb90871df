"""Two people in one frame through the patched Wan2.1-I2V DiT: every block routes with its own self-attention.

The positions each block hands to the two-speaker attention are recomputed here from the queries and keys
ComfyUI's own ``WanSelfAttention`` passes to ``optimized_attention`` in that block (the official
``x_ref_attn_map`` comes from inside the self-attention), and the unconditional rows keep the plain
single-speaker path (the official uncond pass has zero audio of one speaker).
"""

import pytest
import torch
from wan_fixtures import ChunkRecorder, conditioning, sample, tiny_wan

LATENTS, FRAMES, SIZE = 3, 9, 8  # 3 latent frames of 8 x 8 latents = 4 x 4 tokens per frame


@pytest.fixture(scope="module")
def bm(pack):
    return pack.beyond_monologue


@pytest.fixture(scope="module")
def wan21(bm):
    import comfy.model_management as mm
    import comfy.model_patcher

    cfg = bm.model.adapter_checkpoint.smoke_config("infinitetalk", model_dim=256, num_layers=2)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(1, zero_output=False)
    patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    return bm.model.wan_patch.attach_duplex_adapter(tiny_wan("wan21_i2v"), patcher)


def _audio(bm):
    g = torch.Generator().manual_seed(0)
    talk, listen = (torch.randn(FRAMES, 12, 768, generator=g) for _ in range(2))
    ones = torch.ones(FRAMES)
    return bm.audio.duplex_audio.DuplexAudio(talk, listen, ones, ones, fps=25.0)


def _masks():
    masks = torch.zeros(2, 32, 32)
    masks[0, :, :16], masks[1, :, 16:] = 1, 1
    return masks


def _with_call(model, call):
    patched = model.clone()
    patched.model_options["transformer_options"]["bm_duplex"] = call
    return patched


def test_every_block_routes_the_speakers_with_its_own_self_attention(bm, wan21, monkeypatch):
    import comfy.ldm.wan.model as wan

    wp, sb = bm.model.wan_patch, bm.model.speaker_binding
    duplex = _audio(bm)
    call = wp.prepare_window(wan21, duplex, 0, LATENTS, speaker_masks=_masks())
    adapter = wp.attached_adapter(wan21)[0].model
    expected_tokens = torch.cat([adapter.encode(duplex, "talk", 0, LATENTS), adapter.encode(duplex, "listen", 0, LATENTS,
                                                                                            encoder_stream="talk")], dim=1)
    torch.testing.assert_close(call.speakers.tokens, expected_tokens)

    self_attention, bound = [], []
    attention, residual = wan.optimized_attention, wp.binding_residual

    def recording_attention(q, k, v, heads, **kwargs):
        if k.shape[1] == q.shape[1]:  # the self-attention of a block (cross-attentions read text/image tokens)
            self_attention.append((q.clone(), k.clone(), heads))
        return attention(q, k, v, heads, **kwargs)

    def recording_residual(attn, x, tokens, positions, *args):
        bound.append((positions.clone(), tokens.clone()))
        return residual(attn, x, tokens, positions, *args)

    monkeypatch.setattr(wan, "optimized_attention", recording_attention)
    monkeypatch.setattr(wp, "binding_residual", recording_residual)
    sample(_with_call(wan21, call), 16, frames=LATENTS, steps=1, cfg=1.0, size=SIZE)
    assert len(self_attention) == len(bound) == 2  # one call, 2 blocks
    masks = sb.token_masks(_masks(), (SIZE // 2, SIZE // 2))
    for (q, k, heads), (positions, tokens) in zip(self_attention, bound, strict=True):
        b, s, _ = q.shape
        attn_map = sb.reference_attention_map(q.view(b, s, heads, -1), k.view(b, s, heads, -1), s // LATENTS, masks)
        torch.testing.assert_close(positions, sb.query_positions(attn_map), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tokens[0], call.speakers.tokens.to(tokens))
    assert not torch.equal(bound[0][0], bound[1][0])  # each block its own routing


def test_unconditional_rows_keep_the_single_speaker_path_and_conditional_rows_change(bm, wan21):
    wp = bm.model.wan_patch
    duplex = _audio(bm)
    branches = {1: {"talk": "null"}}

    def outputs(**options):
        recorder = ChunkRecorder()
        model = _with_call(wan21, wp.prepare_window(wan21, duplex, 0, LATENTS, branches=branches, **options))
        model.set_model_unet_function_wrapper(recorder)
        sample(model, 16, frames=LATENTS, steps=1, cfg=3.0, size=SIZE, positive=conditioning(1), negative=conditioning(2))
        return recorder.outputs

    single, two = outputs(), outputs(speaker_masks=_masks())
    torch.testing.assert_close(two[1][0], single[1][0], rtol=0, atol=1e-6)
    assert not torch.allclose(two[0][0], single[0][0], atol=1e-4)
