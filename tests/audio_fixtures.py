"""Fixtures for the audio stage: real recordings, mixes built from them, and a wav2vec2 checkpoint.

Registered for every tier by ``pytest_plugins`` in tests/conftest.py. Real inputs:

* ``sample.wav`` + ``sample.rttm`` (``assets`` fixture): a real two-speaker conversation.
* LibriVox clips of Debian's ``pocketsphinx-testdata`` (one reader, public-domain recording,
  16 kHz): ``/usr/share/pocketsphinx/test/data/librivox``. CI installs the package (.ci/run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
SR = 16000


def read_wav(path) -> tuple[np.ndarray, int]:
    """float32 samples ``[T]`` (mono) or ``[T, C]`` and the sample rate."""
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32")
    return data, rate


def write_wav(path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV of float samples ``[T]`` or ``[T, C]`` in -1..1."""
    import soundfile

    soundfile.write(str(path), np.clip(samples, -1, 1), rate, subtype="PCM_16")
    return Path(path)


def der(reference, hypothesis, collar_s: float) -> float:
    """Diarization error rate (pyannote.metrics) with a +-``collar_s`` collar around reference boundaries.

    pyannote's ``collar`` is the total width removed around each boundary, so ``collar_s=0.25``
    (pyannote ``collar=0.5``) is the NIST md-eval "0.25 s collar".
    """
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns):
        result = Annotation()
        for speaker, intervals in turns.items():
            for start, end in intervals:
                result[Segment(start, end)] = speaker
        return result

    return DiarizationErrorRate(collar=2 * collar_s)(annotation(reference), annotation(hypothesis))


# sample.wav stretches (seconds) where only one speaker talks (from sample.rttm, overlaps left out)
SOLO_SPANS = {"speaker91": [(21.78, 27.8), (14.75, 17.92), (9.92, 10.57)],
              "speaker90": [(10.57, 14.49), (18.59, 21.49), (27.85, 30.0), (8.32, 9.92)]}


def stretches(mono: np.ndarray, spans, rate: int = SR) -> list[np.ndarray]:
    """The parts of ``mono`` between each ``(start_s, end_s)``."""
    return [mono[round(a * rate):round(b * rate)] for a, b in spans]


def join_turns(parts, rate: int = SR) -> np.ndarray:
    """Parts joined by 0.4 s of silence, each at the same RMS (a recording of separate turns), float32 ``[T]``."""
    gap = np.zeros(round(0.4 * rate), np.float32)
    out = [gap]
    for part in parts:
        out += [part / np.sqrt(np.mean(part ** 2)) * 0.05, gap]
    return np.concatenate(out).astype(np.float32)


def cards_clips() -> list[np.ndarray]:
    """The five ``cards`` clips of pocketsphinx-testdata (one speaker, 16 kHz), float32 ``[T]`` each."""
    return [read_wav(path)[0] for path in sorted((POCKETSPHINX_DATA / "cards").glob("*.wav"))]


def speaker_count_recordings(librivox: list[np.ndarray], mono: np.ndarray) -> dict[str, tuple[int, np.ndarray]]:
    """The real recordings the diarization's speaker-count thresholds were chosen on: name -> (speakers, [T]).

    One speaker: pairs and all of the LibriVox clips, the cards clips, each sample.wav speaker's solo
    stretches. Two speakers: sample.wav and excerpts, the two speakers' solo stretches interleaved,
    LibriVox or cards with a sample.wav speaker, LibriVox with cards.
    """
    import itertools

    cards = cards_clips()
    s90, s91 = (stretches(mono, SOLO_SPANS[name]) for name in ("speaker90", "speaker91"))

    def alternate(a, b):
        return [part for pair in itertools.zip_longest(a, b) for part in pair if part is not None]

    found = {f"LibriVox {i}+{j}": (1, join_turns([librivox[i], librivox[j]]))
             for i, j in itertools.combinations(range(len(librivox)), 2)}
    found.update({
        "LibriVox all": (1, join_turns(librivox)),
        "LibriVox first 2.5 clips": (1, join_turns([*librivox[:2], librivox[2][:len(librivox[2]) // 2]])),
        "cards": (1, join_turns(cards)), "cards 0-2": (1, join_turns(cards[:3])),
        "sample.wav speaker91 solos": (1, join_turns(s91)), "sample.wav speaker91 21.8-27.8 s": (1, join_turns(s91[:1])),
        "sample.wav speaker90 solos": (1, join_turns(s90)),
        "sample.wav": (2, mono), "sample.wav 6.5-18 s": (2, stretches(mono, [(6.5, 18.0)])[0]),
        "sample.wav 9.9-21.5 s": (2, stretches(mono, [(9.9, 21.5)])[0]),
        "sample.wav 14-30 s": (2, stretches(mono, [(14.0, 30.0)])[0]),
        "sample.wav 18-30 s": (2, stretches(mono, [(18.0, 30.0)])[0]),
        "speaker90 + speaker91 solos": (2, join_turns(alternate(s90, s91))),
        "LibriVox + speaker91": (2, join_turns(alternate(librivox[:3], s91[:2]))),
        "LibriVox + speaker90": (2, join_turns(alternate(librivox[:3], s90[:3]))),
        "cards + speaker91": (2, join_turns(alternate(cards, s91[:2]))),
        "LibriVox + cards": (2, join_turns(alternate(librivox[:3], cards[:3]))),
    })
    return found


def audio_dict(samples: np.ndarray | torch.Tensor, rate: int) -> dict:
    """ComfyUI AUDIO from ``[T]`` or ``[C, T]`` samples."""
    wave = torch.as_tensor(samples, dtype=torch.float32)
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    return {"waveform": wave.unsqueeze(0).contiguous(), "sample_rate": rate}


@pytest.fixture(scope="session")
def librivox() -> list[np.ndarray]:
    """The five LibriVox clips (one reader, 24.7 s in all) as float32 ``[T]`` at 16 kHz."""
    folder = POCKETSPHINX_DATA / "librivox"
    clips = sorted(folder.glob("*.wav"))
    if len(clips) != 5:
        pytest.fail(f"LibriVox clips missing in {folder}: install Debian's pocketsphinx-testdata "
                    "(apt-get install pocketsphinx-testdata; .ci/run does it).")
    return [read_wav(path)[0] for path in clips]


@pytest.fixture(scope="session")
def conversation(assets):
    """The real conversation: ``(mono float32 [T], 16000, ground-truth turns per speaker)``."""
    from beyond_monologue.audio.turns import parse_turns_text

    mono, rate = read_wav(assets / "sample.wav")
    return mono, rate, parse_turns_text((assets / "sample.rttm").read_text())


def wav2vec2_base_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp16 weights (untrained) for a full-size wav2vec 2.0 base, ``wav2vec2.``-prefixed ComfyUI names.

    Needs ComfyUI importable (the names come from ``comfy.audio_encoders.wav2vec2.Wav2Vec2Model``
    built on the meta device). Weights ~ N(0, 0.02), norm gains and weight-norm magnitudes 1, biases 0.
    """
    import comfy.ops
    from comfy.audio_encoders.wav2vec2 import Wav2Vec2Model

    model = Wav2Vec2Model(embed_dim=768, num_heads=12, num_layers=12, conv_norm=False, conv_bias=False,
                          do_normalize=False, do_stable_layer_norm=False, device="meta",
                          operations=comfy.ops.manual_cast)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if name.endswith("bias"):
            tensor = torch.zeros(value.shape)
        elif value.ndim == 1 or name.endswith("original0"):  # norm gains, weight-norm magnitudes
            tensor = torch.ones(value.shape)
        else:
            tensor = torch.randn(value.shape, generator=generator) * 0.02
        state["wav2vec2." + name] = tensor.to(torch.float16)
    return state


@pytest.fixture(scope="session")
def wav2vec2_base_file(comfy, tmp_path_factory) -> Path:
    """A full-size wav2vec 2.0 base checkpoint with random fp16 weights (untrained), once per session.

    Keys are ComfyUI's ``Wav2Vec2Model`` parameters with the ``wav2vec2.`` prefix of
    ``wav2vec2-chinese-base_fp16.safetensors``; ComfyUI's loader picks its base config from
    ``encoder.layer_norm.bias`` having 768 entries, so the file must be full size (190 MB).
    """
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("audio_encoders") / "wav2vec2-base-random_fp16.safetensors"
    save_file(wav2vec2_base_state(0), str(path), metadata={"bm_smoke": "untrained", "layout": "wav2vec2 base, ComfyUI names"})
    return path
