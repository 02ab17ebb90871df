"""Two speakers in one frame: routing and L-RoPE binding against an independent reference of the official code.

The reference below is written from MeiGen-AI/InfiniteTalk ``wan/utils/multitalk_utils.py``
(``get_attn_map_with_target`` with its 2 head chunks, ``normalize_and_scale``, ``RotaryPositionalEmbedding1D``)
and ``wan/modules/attention.py`` (``SingleStreamMutiAttention.forward``), on the public key layout.
"""

import math

import pytest
import torch

from beyond_monologue.model import infinitetalk, speaker_binding
from beyond_monologue.model.adapter_checkpoint import smoke_config
from beyond_monologue.model.duplex_adapter import DuplexAdapter

DIM, HEADS, HD = 256, 2, 128
FRAMES, GRID = 3, (4, 6)
S = GRID[0] * GRID[1]
N = 4  # audio tokens per speaker per frame (the smoke config's context_tokens)


def _adapter(seed=3):
    cfg = smoke_config("infinitetalk", model_dim=DIM, num_layers=2, audio_layers=3, audio_dim=16)
    adapter = DuplexAdapter(cfg).reset_parameters(seed=seed, zero_output=False)
    return adapter, infinitetalk.from_internal(adapter.state_dict())


def _official_attn_map(q, k, masks, split_num=2):
    """q, k [1, L, H, D]; masks [C, S] -> [C, L] (batch 1, as the official code runs it)."""
    ref_k = k[:, :masks.shape[1]]
    chunk = q.shape[2] // split_num
    total = torch.zeros(masks.shape[0], q.shape[1])
    for i in range(split_num):
        vq = q[:, :, i * chunk:(i + 1) * chunk] * (1.0 / q.shape[-1] ** 0.5)
        rk = ref_k[:, :, i * chunk:(i + 1) * chunk]
        attn = (vq.transpose(1, 2) @ rk.transpose(1, 2).transpose(-2, -1)).softmax(-1)  # [1, h, L, S]
        maps = [((attn * m[None, None, None]).sum(-1) / m.sum()).permute(0, 2, 1).mean(-1) for m in masks]
        total += torch.cat(maps, dim=0)
    return total / split_num


def _official_rope(x, pos):
    """RotaryPositionalEmbedding1D: x [B, H, L, D], pos [L]."""
    d = x.shape[-1]
    freqs = 1.0 / (10000 ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    f = torch.einsum("..., f -> ... f", pos.float(), freqs).repeat_interleave(2, dim=-1)
    pairs = x.unflatten(-1, (-1, 2))
    rot = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * f.cos()[None, None] + rot * f.sin()[None, None]


def _official_multi_attention(sd, block, x_normed, audio, x_ref_attn_map):
    """SingleStreamMutiAttention.forward (human_num 2, qk_norm False): x_normed [1, T*S, DIM], audio [1, T, 2N, C]."""
    p = f"blocks.{block}.audio_cross_attn."
    x = x_normed.view(FRAMES, S, DIM)
    q = (x @ sd[p + "q_linear.weight"].T + sd[p + "q_linear.bias"]).view(FRAMES, S, HEADS, HD).permute(0, 2, 1, 3)
    mx, mn = x_ref_attn_map.max(1).values, x_ref_attn_map.min(1).values

    def scale(col, lo, hi, new_lo, new_hi):
        return (col - lo) / (hi - lo + 1e-8) * (new_hi - new_lo) + new_lo

    h1 = scale(x_ref_attn_map[0], mn[0], mx[0], 0, 4)
    h2 = scale(x_ref_attn_map[1], mn[1], mx[1], 20, 24)
    back = torch.full((x_ref_attn_map.shape[1],), 12.0)
    pos = torch.stack([h1, h2, back], dim=1)[range(x_ref_attn_map.shape[1]), x_ref_attn_map.argmax(0)]
    q = q.permute(1, 0, 2, 3).reshape(1, HEADS, FRAMES * S, HD)
    q = _official_rope(q, pos).view(HEADS, FRAMES, S, HD).permute(1, 0, 2, 3)
    kv = (audio[0] @ sd[p + "kv_linear.weight"].T + sd[p + "kv_linear.bias"]).view(FRAMES, 2 * N, 2, HEADS, HD)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # [T, H, 2N, HD]
    per_frame = torch.cat([torch.full((N,), 2.0), torch.full((N,), 22.0)])
    k = _official_rope(k.permute(1, 0, 2, 3).reshape(1, HEADS, FRAMES * 2 * N, HD), per_frame.repeat(FRAMES))
    k = k.view(HEADS, FRAMES, 2 * N, HD).permute(1, 0, 2, 3)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(HD), dim=-1)
    out = (w @ v).permute(0, 2, 1, 3).reshape(1, FRAMES * S, DIM)
    return out @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]


def _half_masks():
    masks = torch.zeros(2, 40, 60)
    masks[0, 4:36, 3:27] = 1  # speaker 1: left
    masks[1, 4:36, 33:57] = 1  # speaker 2: right
    return masks


def test_token_masks_and_reference_map_equal_the_official_routing():
    g = torch.Generator().manual_seed(0)
    masks = speaker_binding.token_masks(_half_masks(), GRID)
    assert masks.shape == (3, S) and torch.equal(masks.sum(0), torch.ones(S))
    q, k = torch.randn(1, FRAMES * S, HEADS, HD, generator=g), torch.randn(1, FRAMES * S, HEADS, HD, generator=g)
    got = speaker_binding.reference_attention_map(q, k, S, masks)
    torch.testing.assert_close(got[0], _official_attn_map(q, k, masks), rtol=1e-5, atol=1e-7)


def test_binding_residual_equals_the_official_two_speaker_attention():
    adapter, sd = _adapter()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, FRAMES * S, DIM, generator=g)
    audio = torch.randn(1, FRAMES, 2 * N, 64, generator=g)
    attn_map = torch.rand(3, FRAMES * S, generator=g)
    attn = adapter.blocks[1]["talk"]
    got = speaker_binding.binding_residual(attn, x, audio, speaker_binding.query_positions(attn_map[None]))
    normed = torch.nn.functional.layer_norm(x, (DIM,), sd["blocks.1.norm_x.weight"], sd["blocks.1.norm_x.bias"], eps=1e-6)
    torch.testing.assert_close(got, _official_multi_attention(sd, 1, normed, audio, attn_map), rtol=1e-4, atol=1e-5)


def test_each_speakers_region_is_routed_to_its_own_position_range():
    """Tokens that look at speaker 1's region of the reference frame sit in [0, 4], speaker 2's in [20, 24]."""
    masks = speaker_binding.token_masks(_half_masks(), GRID)
    classes = masks.argmax(0)  # 0 left, 1 right, 2 background per reference token
    basis = torch.eye(HD)[:3] * 8.0
    k = basis[classes].view(1, S, 1, HD).expand(1, S, HEADS, HD).repeat(1, FRAMES, 1, 1)  # every frame like frame 0
    q = basis[classes.repeat(FRAMES)].view(1, FRAMES * S, 1, HD).expand(1, FRAMES * S, HEADS, HD)
    pos = speaker_binding.query_positions(speaker_binding.reference_attention_map(q, k, S, masks))[0]
    region = classes.repeat(FRAMES)
    assert torch.all((pos[region == 0] >= 0) & (pos[region == 0] <= 4))
    assert torch.all((pos[region == 1] >= 20) & (pos[region == 1] <= 24))
    assert torch.all(pos[region == 2] == 12)
    # the audio keys: speaker 1 at 2 (inside its range), speaker 2 at 22
    assert speaker_binding.SpeakerLayout().key_positions(N).tolist() == [2.0] * N + [22.0] * N


def _routed_positions(region_masks):
    """Self-attention q/k of a frame whose tokens look only at their own region of the reference frame."""
    masks = speaker_binding.token_masks(region_masks, GRID)
    classes = masks.argmax(0)
    g = torch.Generator().manual_seed(5)
    basis = torch.eye(HD)[:3] * 8.0
    k = basis[masks[:3].argmax(0)].view(1, S, 1, HD).expand(1, S, HEADS, HD).repeat(1, FRAMES, 1, 1)
    q = (basis[classes.repeat(FRAMES)] * (1 + torch.rand(FRAMES * S, 1, generator=g))).view(1, FRAMES * S, 1, HD)
    q = q.expand(1, FRAMES * S, HEADS, HD)
    return speaker_binding.query_positions(speaker_binding.reference_attention_map(q, k, S, masks)), classes.repeat(FRAMES)


def test_each_voice_reaches_its_own_region_and_swapping_the_speakers_swaps_the_regions():
    """An attention whose logits depend only on the L-RoPE distance (keys equal in content, slow RoPE pair):
    the tokens of speaker 1's region hear speaker 1's voice, speaker 2's region speaker 2's; with the masks
    swapped the regions swap voices. (The official binding is soft: trained weights, not a hard mask, make it.)"""
    import types

    dim = 16
    u = torch.zeros(dim)
    u[4] = 10.0  # only the pair (4, 5), frequency 10000^(-4/16) = 0.1: a distance 0..2 beats 18..22
    attn = types.SimpleNamespace(num_heads=1, norm_x=lambda x: x, q=lambda x: u.expand_as(x),
                                 k=lambda t: u.expand(*t.shape[:-1], dim), v=lambda t: t, o=lambda x: x)
    g = torch.Generator().manual_seed(6)
    voice_a, voice_b = torch.randn(1, FRAMES, N, dim, generator=g), torch.randn(1, FRAMES, N, dim, generator=g)
    voices = torch.cat([voice_a, voice_b], dim=2)
    x = torch.zeros(1, FRAMES * S, dim)
    hear_a = voice_a.mean(2).repeat_interleave(S, dim=1)[0]  # [T * S, dim]: what a token of each frame hears of a
    hear_b = voice_b.mean(2).repeat_interleave(S, dim=1)[0]
    masks = _half_masks()
    for region_masks, left_voice, right_voice in ((masks, hear_a, hear_b), (masks.flip(0), hear_b, hear_a)):
        positions, region = _routed_positions(region_masks)
        out = speaker_binding.binding_residual(attn, x, voices, positions)[0]
        left = (region == 0) if region_masks is masks else (region == 1)
        right = ~left & (region != 2)
        torch.testing.assert_close(out[left], left_voice[left], rtol=0, atol=1e-4)
        torch.testing.assert_close(out[right], right_voice[right], rtol=0, atol=1e-4)
    # flipping the masks moves every speaker token to the other range with the same offset inside it
    positions, region = _routed_positions(masks)
    flipped, _ = _routed_positions(masks.flip(0))
    torch.testing.assert_close(flipped[0, region == 0], positions[0, region == 0] + 20)
    torch.testing.assert_close(flipped[0, region == 1], positions[0, region == 1] - 20)


def test_wrong_masks_are_refused():
    with pytest.raises(ValueError, match=r"need \[2, H, W\] speaker masks"):
        speaker_binding.token_masks(torch.ones(3, 8, 8), GRID)
