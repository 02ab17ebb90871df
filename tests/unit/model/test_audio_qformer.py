"""Causal Audio Q-Former: shapes, causality over windows, window-by-window encoding, learned null."""

import pytest
import torch

from beyond_monologue.audio.duplex_audio import DuplexAudio
from beyond_monologue.errors import BMInputError
from beyond_monologue.model.adapter_checkpoint import smoke_config
from beyond_monologue.model.duplex_adapter import DuplexAdapter

FRAMES = 4 * 30 + 1  # 31 latents
LAYERS, DIM = 3, 16


def _audio(seed=0, talk=None):
    g = torch.Generator().manual_seed(seed)
    talk = torch.randn(FRAMES, LAYERS, DIM, generator=g) if talk is None else talk
    listen = torch.randn(FRAMES, LAYERS, DIM, generator=g)
    return DuplexAudio(talk, listen, torch.ones(FRAMES), torch.ones(FRAMES), fps=25.0)


@pytest.fixture(scope="module")
def adapter():
    cfg = smoke_config("beyond_monologue", model_dim=128, num_layers=1, audio_layers=LAYERS, audio_dim=DIM)
    return DuplexAdapter(cfg).reset_parameters(seed=5)


def test_tokens_per_latent_window(adapter):
    tokens = adapter.encode(_audio(), "talk", 0, 31)
    cfg = adapter.config.encoder
    assert tokens.shape == (31, cfg.num_queries, cfg.context_dim) and tokens.dtype == torch.float32
    assert torch.isfinite(tokens).all()


def test_output_of_a_window_does_not_depend_on_later_audio(adapter):
    base = _audio()
    talk = base.talk.clone()
    first, last = 4 * 12 - 3, 4 * 12  # frames of latent 12
    talk[first:last + 1] += 3.0
    changed = adapter.encode(_audio(talk=talk), "talk", 0, 31)
    before = adapter.encode(base, "talk", 0, 31)
    # latent 12's frames are in the windows of latents 11 (2 frames of context), 12 and 13
    assert torch.equal(changed[:11], before[:11])
    assert not torch.allclose(changed[11:14], before[11:14])


def test_encoding_window_by_window_equals_encoding_the_whole_stream(adapter):
    audio = _audio(seed=2)
    whole = adapter.encode(audio, "listen", 0, 31)
    for first, count in ((0, 9), (9, 11), (20, 11)):
        part = adapter.encode(audio, "listen", first, count)
        torch.testing.assert_close(part, whole[first:first + count], rtol=1e-5, atol=1e-6)


def test_learned_null_is_the_same_for_every_window_and_ignores_audio(adapter):
    null = adapter.null_tokens("talk", 5, 7)
    cfg = adapter.config.encoder
    assert null.shape == (7, cfg.num_queries, cfg.context_dim)
    assert torch.equal(null[0], null[-1])
    assert torch.equal(null[0], adapter.encoders["talk"].null_tokens)
    assert not torch.allclose(null, adapter.encode(_audio(), "talk", 5, 7))


def test_features_of_another_encoder_are_rejected_clearly(adapter):
    g = torch.Generator().manual_seed(0)
    wrong = DuplexAudio(torch.randn(FRAMES, 12, 768, generator=g), torch.randn(FRAMES, 12, 768, generator=g),
                        torch.ones(FRAMES), torch.ones(FRAMES), fps=25.0)
    with pytest.raises(BMInputError, match=r"audio: features are \(12, 768\).*expects \(3, 16\)"):
        adapter.encode(wrong, "talk", 0, 3)
    base = _audio()
    other_context = DuplexAudio(base.talk, base.listen, base.talk_activity, base.listen_activity, fps=25.0, context_frames=1)
    with pytest.raises(BMInputError, match="1 context frames; the adapter expects 2"):
        adapter.encode(other_context, "talk", 0, 3)
