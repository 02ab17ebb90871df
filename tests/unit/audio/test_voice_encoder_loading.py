"""Resemblyzer's weights are read with weights_only=True before Resemblyzer's own plain torch.load."""

import pickle
import types

import pytest
import resemblyzer

from beyond_monologue.audio import diarization
from beyond_monologue.optional_deps import MissingDependencyError


class NotATensor:
    """A class the weights-only unpickler does not allow."""


@pytest.fixture()
def fresh_cache():
    diarization.load_voice_encoder.cache_clear()
    yield
    diarization.load_voice_encoder.cache_clear()


def test_bundled_weights_load_even_when_the_environment_forces_full_unpickling(fresh_cache, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    encoder = diarization.load_voice_encoder()
    assert encoder.linear.weight.shape == (256, 256)
    assert float(encoder.linear.weight.detach().abs().sum()) > 0  # trained values, not an empty module


def test_a_weight_file_with_objects_is_refused_not_unpickled(fresh_cache, monkeypatch, tmp_path):
    (tmp_path / "pretrained.pt").write_bytes(pickle.dumps({"model_state": NotATensor()}))
    fake = types.SimpleNamespace(__file__=str(tmp_path / "__init__.py"), VoiceEncoder=resemblyzer.VoiceEncoder)
    monkeypatch.setattr(diarization, "import_optional", lambda *args: fake)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(MissingDependencyError, match="cannot be loaded as plain tensors"):
        diarization.load_voice_encoder()
