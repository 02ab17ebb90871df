"""Chunked overlap-add and the Mel-Band RoFormer checkpoint loader (on the reduced smoke checkpoint)."""

import math
import re

import pytest
import torch
from safetensors.torch import save_file

from beyond_monologue.audio.melband_roformer import (
    REAL_CONFIG,
    SMOKE_CONFIG,
    build_model,
    config_from_shapes,
    load_state_dict_file,
    model_from_state_dict,
    separate_speech,
    smoke_state_dict,
)
from beyond_monologue.audio.separation import chunk_starts, fade_window, overlap_add
from beyond_monologue.errors import BMInputError


@pytest.mark.parametrize("length, chunk, overlaps", [(10_000, 1000, 2), (10_007, 1000, 3), (700, 1000, 2),
                                                     (2500, 1000, 1), (1001, 1000, 4)])
def test_overlap_add_of_identity_returns_the_input(length, chunk, overlaps):
    audio = torch.randn(2, length)
    calls = []
    out = overlap_add(lambda part: part.clone(), audio, chunk, overlaps, on_chunk=lambda d, n: calls.append((d, n)))
    assert out.shape == audio.shape
    assert torch.allclose(out, audio, atol=1e-5)
    assert calls and calls[-1][0] == calls[-1][1] == len(calls)


def test_overlap_add_blends_chunk_outputs_with_the_fade_weights():
    audio = torch.ones(1, 5000)
    counter = iter(range(100))
    out = overlap_add(lambda part: torch.full_like(part, float(next(counter))), audio, 1000, 2)
    assert out.shape == (1, 5000)
    assert float(out.min()) >= 0 and float(out.max()) <= 10  # convex blend of the chunk constants
    assert not torch.allclose(out, out[:, :1])  # later chunks really contribute


def test_chunk_starts_and_fade_window():
    assert chunk_starts(2500, 1000, 500) == [0, 500, 1000, 1500]
    assert chunk_starts(800, 1000, 500) == [0]
    window = fade_window(10, 3, fade_in=True, fade_out=False)
    assert window[:3].tolist() == [0.0, 0.5, 1.0] and window[3:].eq(1).all()


def test_smoke_checkpoint_has_the_real_key_layout():
    state, metadata = smoke_state_dict(seed=3)
    with torch.device("meta"):
        real = build_model(REAL_CONFIG).state_dict()
    assert len(real) == 684 and sum(v.numel() for v in real.values()) == pytest.approx(228.2e6, rel=1e-3)

    def pattern(key):
        return re.sub(r"\d+", "N", key)

    assert {pattern(k) for k in state} == {pattern(k) for k in real}
    assert all(v.dtype == torch.float16 for v in state.values())
    assert metadata["bm_smoke"] == "untrained"
    assert config_from_shapes({k: tuple(v.shape) for k, v in state.items()}) == SMOKE_CONFIG
    assert config_from_shapes({k: tuple(v.shape) for k, v in real.items()}) == REAL_CONFIG
    again, _ = smoke_state_dict(seed=3)
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_loader_reads_the_smoke_file_and_separates(tmp_path, librivox):
    state, metadata = smoke_state_dict(seed=0)
    path = tmp_path / "MelBandRoformer_smoke.safetensors"
    save_file(state, str(path), metadata=metadata)
    loaded, config = load_state_dict_file(path)
    model = model_from_state_dict(loaded, config)
    assert model.audio_channels == 2 and next(model.parameters()).dtype == torch.float32

    speech_in = torch.from_numpy(librivox[1][:32000]).unsqueeze(0)  # 2 s mono at 16 kHz
    speech, background = separate_speech(model, speech_in, 16000, chunk_s=1.0, overlaps=2)
    assert speech.shape == background.shape == speech_in.shape
    assert torch.allclose(speech + background, speech_in, atol=1e-6)
    assert math.isfinite(float(speech.abs().sum()))


def test_loader_refuses_other_families_damaged_and_pickled_files(tmp_path):
    other = tmp_path / "wan.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(4, 4)}, str(other))
    with pytest.raises(BMInputError, match="not a Mel-Band RoFormer"):
        load_state_dict_file(other)

    state, _ = smoke_state_dict(seed=0)
    damaged = tmp_path / "damaged.safetensors"
    save_file(state, str(damaged))
    damaged.write_bytes(damaged.read_bytes()[:5000])
    with pytest.raises(BMInputError, match="cannot be read"):
        load_state_dict_file(damaged)

    with pytest.raises(BMInputError, match=r"not a \.safetensors"):
        load_state_dict_file(tmp_path / "MelBandRoformer.ckpt")

    two_stems = dict(state)
    two_stems.update({key.replace("mask_estimators.0.", "mask_estimators.1."): value
                      for key, value in state.items() if key.startswith("mask_estimators.0.")})
    with pytest.raises(BMInputError, match="2 stems"):
        config_from_shapes({k: tuple(v.shape) for k, v in two_stems.items()})

    bad = dict(state)
    bad["band_split.to_features.0.1.weight"] = torch.zeros(32, 7, dtype=torch.float16)
    config = config_from_shapes({k: tuple(v.shape) for k, v in bad.items()})
    with pytest.raises(BMInputError, match="does not match"):
        model_from_state_dict(bad, config)
