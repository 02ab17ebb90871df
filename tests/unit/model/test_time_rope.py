"""Time-scaled 1D RoPE of the audio cross-attention: exact properties, float64 reference, every backend."""

import math

import pytest
import torch

from beyond_monologue.model.adapter_checkpoint import smoke_config
from beyond_monologue.model.duplex_adapter import LAYOUT_INFINITETALK, AdapterConfig, AudioCrossAttention
from beyond_monologue.model.mhgk import MHGKKernel, kernel_times
from beyond_monologue.model.mhgk_attention import backend_available
from beyond_monologue.model.time_rope import TimeRoPE, rotate

B, H, TQ, S, TK, N, D = 2, 4, 5, 6, 7, 3, 16
FPS = 25.0


def _qk(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, TQ * S, D, generator=g, dtype=dtype)
    k = torch.randn(B, H, TK * N, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, TK * N, D, generator=g, dtype=dtype)
    return q, k, v


def _logits(rope, q, k, q_times, k_times):
    tables = rope.tables(q_times, k_times, dtype=torch.float64)
    return rotate(q, tables.q_cos, tables.q_sin) @ rotate(k, tables.k_cos, tables.k_sin).transpose(-1, -2)


def _complex_reference_logits(rope, q, k, q_times, k_times):
    """Independent form: pair (x[j], x[j + r/2]) as the complex number x[j] + i x[j + r/2], times e^{i angle}."""
    half = rope.rotary_dims // 2
    periods = [rope.min_period_s * (rope.max_period_s / rope.min_period_s) ** (j / max(1, half - 1)) for j in range(half)]
    omega = torch.tensor([2 * math.pi / p for p in periods], dtype=torch.float64)

    def rot(x, times, per_group):
        t = times.double().repeat_interleave(per_group)
        phase = torch.polar(torch.ones(t.numel(), half, dtype=torch.float64), t[:, None] * omega[None])
        z = torch.complex(x[..., :half], x[..., half:2 * half]) * phase
        return torch.cat([z.real, z.imag, x[..., 2 * half:]], dim=-1)

    return rot(q, q_times, S) @ rot(k, k_times, N).transpose(-1, -2)


def test_scores_depend_only_on_time_differences():
    rope = TimeRoPE(rotary_dims=D)
    q, k, _ = _qk()
    q_times, k_times = kernel_times(TQ, TK, FPS, query_first_latent=3, key_first_latent=1)
    base = _logits(rope, q, k, q_times, k_times)
    for shift in (0.16, 7.3, 612.48):  # up to ten minutes into a long video
        moved = _logits(rope, q, k, q_times + shift, k_times + shift)
        assert torch.allclose(moved, base, rtol=0, atol=1e-10), shift
    changed = _logits(rope, q, k, q_times + 0.16, k_times)  # moving only the queries changes the scores
    assert (changed - base).abs().max() > 1e-2


def test_equal_times_leave_scores_unchanged_and_other_times_change_them():
    rope = TimeRoPE(rotary_dims=D)
    q, k, _ = _qk()
    times = kernel_times(TQ, TK, FPS)[1]  # keys' windows 0..6; queries at windows 0..4 (same clock)
    rotated = _logits(rope, q, k, times[:TQ], times)
    plain = q @ k.transpose(-1, -2)
    same = torch.zeros(TQ * S, TK * N, dtype=torch.bool)
    for i in range(TQ):
        same[i * S:(i + 1) * S, i * N:(i + 1) * N] = True
    assert torch.allclose(rotated[..., same], plain[..., same], rtol=0, atol=1e-12)
    assert (rotated[..., ~same] - plain[..., ~same]).abs().max() > 1e-1


@pytest.mark.parametrize("rotary_dims", [D, 8, 2])
def test_rotation_matches_an_independent_float64_reference(rotary_dims):
    rope = TimeRoPE(rotary_dims=rotary_dims, min_period_s=0.32, max_period_s=64.0) if rotary_dims > 2 else \
        TimeRoPE(rotary_dims=2, min_period_s=1.0, max_period_s=1.0)
    q, k, _ = _qk(seed=1)
    q_times, k_times = kernel_times(TQ, TK, FPS, 10, 8)
    expected = _complex_reference_logits(rope, q, k, q_times, k_times)
    assert torch.allclose(_logits(rope, q, k, q_times, k_times), expected, rtol=0, atol=1e-10)


def test_rotation_keeps_norms_and_dtype():
    rope = TimeRoPE(rotary_dims=D)
    q, _, _ = _qk(torch.bfloat16)
    tables = rope.tables(*kernel_times(TQ, TK, FPS))
    out = tables.rotate_queries(q)
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    assert torch.allclose(out.float().norm(dim=-1), q.float().norm(dim=-1), rtol=2e-2)


GENERAL = ["reference", "grouped", "augmented", "flex", "xformers"]


@pytest.mark.parametrize("backend", GENERAL)
def test_cross_attention_with_rope_agrees_with_the_float64_reference_on_every_backend(backend):
    if not backend_available(backend, "cpu"):
        pytest.skip(f"{backend} cannot run on this machine (CPU only)")
    torch.manual_seed(0)
    dim, heads = 64, 4
    attn = AudioCrossAttention(dim, 32, heads, qk_norm=True)
    torch.nn.init.normal_(attn.o.weight, std=0.2)
    rope = TimeRoPE(rotary_dims=dim // heads)
    x = torch.randn(B, TQ * S, dim)
    tokens = torch.randn(B, TK * N, 32)
    q_times, k_times = kernel_times(TQ, TK, FPS, 4, 2)
    kernel = MHGKKernel((0.04, 0.5, 2.0, math.inf), (8.0, 8.0, 8.0, 0.0))
    table = kernel.bias_table(q_times, k_times)
    attn64 = AudioCrossAttention(dim, 32, heads, qk_norm=True).double()
    attn64.load_state_dict(attn.state_dict())
    with torch.no_grad():  # FlexAttention has no backward on the CPU
        expected = attn64(x.double(), tokens.double(), table, "reference",
                          rope=rope.tables(q_times, k_times, dtype=torch.float64))
        out = attn(x, tokens, table.float(), backend, rope=rope.tables(q_times, k_times))
        without = attn(x, tokens, table.float(), backend)
    assert ((out.double() - expected).norm() / expected.norm()).item() < 1e-5
    assert ((without.double() - expected).norm() / expected.norm()).item() > 1e-2  # RoPE really changes the result


def test_rope_is_refused_for_the_infinitetalk_layout_and_for_too_many_dims():
    it = smoke_config(LAYOUT_INFINITETALK)
    with pytest.raises(ValueError, match="InfiniteTalk"):
        AdapterConfig(it.layout, it.model_dim, it.num_layers, it.num_heads, it.streams, it.qk_norm, it.encoder,
                      it.kernels, rope=TimeRoPE(rotary_dims=16))
    bm = smoke_config("beyond_monologue")
    with pytest.raises(ValueError, match="head dim"):
        AdapterConfig(bm.layout, bm.model_dim, bm.num_layers, bm.num_heads, bm.streams, bm.qk_norm, bm.encoder,
                      bm.kernels, rope=TimeRoPE(rotary_dims=bm.model_dim // bm.num_heads + 2))
    with pytest.raises(ValueError):
        TimeRoPE(rotary_dims=3)
    with pytest.raises(ValueError):
        TimeRoPE(min_period_s=2.0, max_period_s=1.0)
