"""Resemblyzer's speaker encoder without ``import resemblyzer``: mel input, network, weight-file safety.

References: librosa's ``melspectrogram`` and Resemblyzer's own ``VoiceEncoder`` (test-only imports,
requirements-dev.txt), the numbers the pack's torchaudio/torch code must reproduce.
"""

import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from beyond_monologue.audio import voice_encoder
from beyond_monologue.audio.voice_encoder import load_voice_encoder, mel_frames, weights_file
from beyond_monologue.optional_deps import MissingDependencyError


def test_mel_frames_match_librosa_on_real_speech(conversation):
    import librosa

    mono = conversation[0]
    reference = librosa.feature.melspectrogram(y=mono, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    ours = mel_frames(torch.from_numpy(mono)).numpy()
    assert ours.shape == reference.shape
    # measured on sample.wav: max |difference| = 3.8e-7 of the largest value; 3.8e-5 relative on
    # every bin above 1e-6 of the largest value (float32 FFT rounding)
    assert np.abs(ours - reference).max() < 1e-5 * reference.max()
    significant = reference > 1e-6 * reference.max()
    assert (np.abs(ours - reference)[significant] / reference[significant]).max() < 1e-3


def test_embeddings_match_resemblyzers_voice_encoder(librivox):
    import resemblyzer

    mel = mel_frames(torch.from_numpy(librivox[0]))
    batch = torch.stack([mel[s:s + 160] for s in range(0, len(mel) - 160, 50)])
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    with torch.inference_mode():
        expected = reference(batch)
        ours = load_voice_encoder()(batch)
    assert ours.shape == (len(batch), 256)
    assert torch.allclose(ours, expected, atol=1e-6)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(batch)))


def test_diarization_imports_neither_resemblyzer_nor_librosa_nor_webrtcvad(tmp_path):
    code = ("import sys, torch\n"
            "from beyond_monologue.audio.diarization import window_embeddings\n"
            "e, _, _ = window_embeddings(torch.randn(32000) * 0.1)\n"
            "assert e.shape[1] == 256\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'resemblyzer', 'librosa', 'webrtcvad', 'sklearn', 'numba'}))\n")
    root = str(voice_encoder.__file__).rsplit("/beyond_monologue/", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_weights_are_the_installed_wheels_file():
    path = weights_file()
    assert path.name == "pretrained.pt" and path.parent.name == "resemblyzer"


@pytest.fixture()
def fresh_cache():
    load_voice_encoder.cache_clear()
    yield
    load_voice_encoder.cache_clear()


class NotATensor:
    """A class the weights-only unpickler does not allow."""


def test_bundled_weights_load_even_when_the_environment_forces_full_unpickling(fresh_cache, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    encoder = load_voice_encoder()
    assert encoder.linear.weight.shape == (256, 256)
    assert float(encoder.linear.weight.abs().sum()) > 0  # trained values, not an empty module


def test_a_weight_file_with_objects_is_refused_not_unpickled(fresh_cache, monkeypatch, tmp_path):
    bad = tmp_path / "pretrained.pt"
    bad.write_bytes(pickle.dumps({"model_state": NotATensor()}))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(MissingDependencyError, match="cannot be loaded as the speaker encoder"):
        load_voice_encoder(bad)


def test_a_modified_weight_file_is_refused_by_the_wheels_record(monkeypatch, tmp_path):
    changed = tmp_path / "pretrained.pt"
    changed.write_bytes(b"not the wheel's bytes")
    real = weights_file()
    entry = type("RecordEntry", (), {"locate": lambda self: changed,
                                     "hash": types.SimpleNamespace(mode="sha256", value="AAAA"),
                                     "__str__": lambda self: "resemblyzer/pretrained.pt"})()
    monkeypatch.setattr(voice_encoder.metadata, "distribution", lambda name: types.SimpleNamespace(files=[entry]))
    with pytest.raises(MissingDependencyError, match="hash mismatch"):
        weights_file()
    assert real.is_file()
