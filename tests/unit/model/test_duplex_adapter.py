"""Per-block audio cross-attention and the InfiniteTalk layout, checked against the public formulas."""

import math

import infinitetalk_reference
import pytest
import torch

from beyond_monologue.audio.duplex_audio import DuplexAudio
from beyond_monologue.model import infinitetalk
from beyond_monologue.model.adapter_checkpoint import smoke_config
from beyond_monologue.model.duplex_adapter import DuplexAdapter
from beyond_monologue.model.mhgk import MHGKKernel, kernel_times

T, S, DIM = 5, 6, 256


def _adapter(layout, zero_output, seed=1):
    cfg = smoke_config(layout, model_dim=DIM, num_layers=2, audio_layers=3, audio_dim=16)
    return DuplexAdapter(cfg).reset_parameters(seed=seed, zero_output=zero_output)


def _table(kernel, frames=T):
    return kernel.bias_table(*kernel_times(frames, frames, 25.0))


def test_zero_initialised_output_adds_exactly_nothing():
    adapter = _adapter("beyond_monologue", zero_output=True)
    x = torch.randn(2, T * S, DIM)
    tokens = torch.randn(2, T * 4, 64)
    for stream in ("talk", "listen"):
        residual = adapter.residual(1, stream, x, tokens, _table(adapter.config.kernel(stream)))
        assert torch.count_nonzero(residual) == 0


@pytest.mark.parametrize("layout", ["beyond_monologue", "infinitetalk"])
def test_a_new_adapter_starts_as_the_identity_with_defined_weights(layout):
    cfg = smoke_config(layout, model_dim=DIM, num_layers=2, audio_layers=3, audio_dim=16)
    adapter = DuplexAdapter(cfg)
    assert all(torch.isfinite(p).all() for p in adapter.parameters())
    assert all(torch.count_nonzero(b[s].o.weight) + torch.count_nonzero(b[s].o.bias) == 0
               for b in adapter.blocks for s in cfg.streams)
    assert torch.count_nonzero(adapter.blocks[0][cfg.streams[0]].q.weight) > 0
    duplex = DuplexAudio(*(torch.randn(9, 3, 16) for _ in range(2)), torch.ones(9), torch.ones(9), fps=25.0)
    for stream in cfg.streams:
        tokens = adapter.encode(duplex, stream, 0, 3)
        assert torch.isfinite(tokens).all()
        residual = adapter.residual(0, stream, torch.randn(1, 3 * S, DIM), tokens.reshape(1, -1, tokens.shape[-1]),
                                    _table(adapter.config.kernel(stream), frames=3))
        assert torch.count_nonzero(residual) == 0


def test_frame_local_kernel_lets_a_window_drive_only_its_own_latent_frame():
    adapter = _adapter("beyond_monologue", zero_output=False)
    x = torch.randn(1, T * S, DIM)
    tokens = torch.randn(1, T * 4, 64)
    moved = tokens.clone()
    moved[:, 2 * 4:3 * 4] += 1.0  # window of latent 2
    local = _table(MHGKKernel.frame_local(adapter.config.num_heads))
    delta = (adapter.residual(0, "talk", x, moved, local) - adapter.residual(0, "talk", x, tokens, local)).abs()
    per_frame = delta.view(T, S, DIM).amax(dim=(1, 2))
    assert per_frame[2] > 1e-4 and torch.count_nonzero(per_frame[[0, 1, 3, 4]]) == 0
    wide = _table(MHGKKernel.default("listen", adapter.config.num_heads))
    delta = (adapter.residual(0, "talk", x, moved, wide) - adapter.residual(0, "talk", x, tokens, wide)).abs()
    assert torch.all(delta.view(T, S, DIM).amax(dim=(1, 2)) > 1e-6)


def _public_state(seed=3):
    adapter = _adapter("infinitetalk", zero_output=False, seed=seed)
    return adapter, infinitetalk.from_internal(adapter.state_dict())


def test_infinitetalk_block_equals_the_public_per_frame_attention():
    """MultiTalk SingleStreamAttention: q_linear(norm_x(x)); kv_linear(tokens) viewed (2, heads, hd); per frame; proj."""
    adapter, sd = _public_state()
    heads, hd = DIM // 128, 128
    x = torch.randn(1, T * S, DIM)
    tokens = torch.randn(1, T * 4, 64)
    p = "blocks.1."
    normed = torch.nn.functional.layer_norm(x, (DIM,), sd[p + "norm_x.weight"], sd[p + "norm_x.bias"], eps=1e-6)
    q = (normed @ sd[p + "audio_cross_attn.q_linear.weight"].T + sd[p + "audio_cross_attn.q_linear.bias"]).view(T, S, heads, hd)
    kv = (tokens @ sd[p + "audio_cross_attn.kv_linear.weight"].T + sd[p + "audio_cross_attn.kv_linear.bias"]).view(T, 4, 2, heads, hd)
    k, v = kv.unbind(2)
    w = torch.softmax(torch.einsum("tshd,tnhd->thsn", q, k) / math.sqrt(hd), dim=-1)
    out = torch.einsum("thsn,tnhd->tshd", w, v).reshape(1, T * S, DIM)
    expected = out @ sd[p + "audio_cross_attn.proj.weight"].T + sd[p + "audio_cross_attn.proj.bias"]
    got = adapter.residual(1, "talk", x, tokens, _table(adapter.config.kernel("talk")))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_infinitetalk_audio_proj_equals_the_public_window_selection_and_mlp():
    """Per video frame i a 5-window i-2..i+2 (clamped); later latents take 3+1+1+3 of their 4 frames' windows."""
    adapter, sd = _public_state()
    frames = 4 * 4 + 1
    feats = torch.randn(frames, 3, 16, generator=torch.Generator().manual_seed(0))
    audio = DuplexAudio(feats, feats, torch.ones(frames), torch.ones(frames), fps=25.0)
    per_frame = feats[(torch.arange(frames)[:, None] + torch.arange(-2, 3)[None, :]).clamp(0, frames - 1)]  # [F, 5, L, D]
    first = per_frame[0]
    rest = []
    for lat in range(1, 5):
        f = per_frame[4 * lat - 3:4 * lat + 1]
        rest.append(torch.cat([f[0, :3], f[1, 2:3], f[2, 2:3], f[3, 2:]], dim=0))
    rest = torch.stack(rest)

    def lin(name, x):
        return x @ sd[f"audio_proj.{name}.weight"].T + sd[f"audio_proj.{name}.bias"]

    h = torch.relu(torch.cat([lin("proj1", first.reshape(1, -1)), lin("proj1_vf", rest.flatten(1))]))
    tokens = lin("proj3", torch.relu(lin("proj2", h))).view(5, 4, 64)
    expected = torch.nn.functional.layer_norm(tokens, (64,), sd["audio_proj.norm.weight"], sd["audio_proj.norm.bias"])
    torch.testing.assert_close(adapter.encode(audio, "talk", 0, 5), expected, rtol=1e-4, atol=1e-5)
    zero = DuplexAudio(torch.zeros_like(feats), feats, torch.ones(frames), torch.ones(frames), fps=25.0)
    torch.testing.assert_close(adapter.null_tokens("talk", 0, 5), adapter.encode(zero, "talk", 0, 5))


def test_public_keys_round_trip_and_split_kv():
    adapter, sd = _public_state()
    assert set(sd) == set(infinitetalk.public_shapes(DIM, 2, adapter.config.encoder))
    back = infinitetalk.to_internal(sd)
    own = adapter.state_dict()
    assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)
    assert torch.equal(back["blocks.0.talk.k.weight"], sd["blocks.0.audio_cross_attn.kv_linear.weight"][:DIM])


def test_listen_branch_missing_from_infinitetalk_is_a_clear_error():
    adapter, _ = _public_state()
    audio = DuplexAudio(torch.zeros(9, 3, 16), torch.zeros(9, 3, 16), torch.ones(9), torch.ones(9), fps=25.0)
    with pytest.raises(ValueError, match="adapter: has no listen branch"):
        adapter.encode(audio, "listen", 0, 3)


def test_prepare_duplex_call_takes_the_audio_span_from_options_when_given():
    from beyond_monologue.sampling.duplex_call import prepare_duplex_call

    adapter = _adapter("beyond_monologue", zero_output=True)
    duplex = DuplexAudio(*(torch.randn(17, 3, 16) for _ in range(2)), torch.ones(17), torch.ones(17), fps=25.0)
    default = prepare_duplex_call(adapter, duplex, 1, 3)
    shifted = prepare_duplex_call(adapter, duplex, 1, 3, audio_first_latent=2)
    assert default.video_first_latent == default.audio_first_latent == 1
    assert shifted.video_first_latent == 1 and shifted.audio_first_latent == 2



def test_every_infinitetalk_window_restarts_like_an_official_clip():
    """Clip k starts at frame 4 (W - M) k: its latent 0 takes the 5-frame window through proj1 (not proj1_vf)."""
    adapter, sd = _public_state()
    window, frames = 5, 4 * 9 + 1  # 10 latents; 2 motion latents: windows at latents 0, 3, 6 (the last past the end)
    feats = torch.randn(frames, 3, 16, generator=torch.Generator().manual_seed(5))
    audio = DuplexAudio(feats, torch.zeros_like(feats), torch.ones(frames), torch.ones(frames), fps=25.0)
    clip_frames = 4 * (window - 1) + 1
    for first_latent in (0, 3):
        start = 4 * first_latent  # the official clip's frame 0 is the last frame of the window's first latent
        expected = infinitetalk_reference.clip_tokens(sd, feats, start, clip_frames)
        torch.testing.assert_close(adapter.encode(audio, "talk", first_latent, window), expected, rtol=1e-5, atol=1e-6)
    # the null (zero-audio) tokens of a later clip also start with the zero proj1 window
    zero = DuplexAudio(torch.zeros_like(feats), feats, torch.ones(frames), torch.ones(frames), fps=25.0)
    torch.testing.assert_close(adapter.null_tokens("talk", 3, window), adapter.encode(zero, "talk", 3, window))


def test_last_infinitetalk_window_is_full_over_mirrored_audio():
    adapter, sd = _public_state()
    window, frames, first_latent = 5, 4 * 9 + 1, 6
    feats = torch.randn(frames, 3, 16, generator=torch.Generator().manual_seed(6))
    audio = DuplexAudio(feats, torch.zeros_like(feats), torch.ones(frames), torch.ones(frames), fps=25.0)
    start, clip_frames = 4 * first_latent, 4 * (window - 1) + 1
    padded = infinitetalk_reference.last_clip_audio(feats, start + clip_frames)
    expected = infinitetalk_reference.clip_tokens(sd, padded, start, clip_frames)
    got = adapter.encode(audio, "talk", first_latent, window, padding="mirror")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):  # without mirroring the audio ends at latent 9
        adapter.encode(audio, "talk", first_latent, window)
