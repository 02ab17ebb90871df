"""Resemblyzer's GE2E speaker encoder, run without importing ``resemblyzer`` (no librosa, no webrtcvad).

Why: ``import resemblyzer`` runs ``resemblyzer/__init__.py``, which imports ``resemblyzer.audio``,
which imports ``librosa`` (with numba, which often fights ComfyUI's numpy) and ``webrtcvad`` (a C
extension) at import time -- neither is needed to embed a mel spectrogram. The pack therefore uses
only the *weights file* that the Resemblyzer wheel ships (``resemblyzer/pretrained.pt``) and
rebuilds the small network and its mel input here:

* network (read from ``resemblyzer/voice_encoder.py`` 0.1.4, ``VoiceEncoder``): a 3-layer LSTM
  (40 -> 256, batch first), ``Linear(256, 256)``, ReLU, L2 normalisation of the last layer's final
  hidden state; GE2E (Wan et al., 2018) trained by Resemblyzer's author;
* input (``resemblyzer/audio.py`` + ``hparams.py``): ``librosa.feature.melspectrogram`` at 16 kHz,
  25 ms Hann window (400 samples), 10 ms hop (160), 40 Slaney mel bands, power 2 (not log), centred
  frames with zero padding (librosa >= 0.10) -- computed with ``torchaudio.transforms.MelSpectrogram``
  with the same settings (matches librosa to 4e-5 relative, tests/unit/audio/test_voice_encoder.py).

Weight-file safety: the file is found through ``importlib.metadata`` as a file of the installed
Resemblyzer distribution (never a user path), its sha256 is checked against the wheel's own
``RECORD`` (so a modified file is refused), and it is read with ``torch.load(weights_only=True)``
(tensors and numbers only; no code runs, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import pickle
from importlib import metadata
from pathlib import Path

import torch

from ..optional_deps import MissingDependencyError

SAMPLE_RATE = 16000
MEL_BANDS = 40
MEL_WINDOW = 400  # 25 ms at 16 kHz
MEL_HOP = 160  # 10 ms at 16 kHz
FRAME_RATE_HZ = SAMPLE_RATE // MEL_HOP  # 100 mel frames per second
PARTIAL_FRAMES = 160  # Resemblyzer's partial-utterance length (1.6 s)
EMBEDDING_SIZE = 256
WEIGHTS_IN_WHEEL = "resemblyzer/pretrained.pt"
INSTALL = "pip install --no-deps resemblyzer==0.1.4 (what the pack's install.py runs)"


class GE2EEncoder(torch.nn.Module):
    """Resemblyzer's speaker encoder network (the layer names of its ``model_state``).

    ``forward(mels)``: float32 ``[B, F, 40]`` mel frames (:func:`mel_frames`) -> float32 ``[B, 256]``
    unit-length, non-negative speaker embeddings.
    """

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(MEL_BANDS, EMBEDDING_SIZE, 3, batch_first=True)
        self.linear = torch.nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True)


def weights_file() -> Path:
    """``resemblyzer/pretrained.pt`` of the installed Resemblyzer wheel, checked against its RECORD hash.

    Raises:
        MissingDependencyError: Resemblyzer is not installed, the file is missing, or its sha256
            differs from the one the wheel recorded (reinstall Resemblyzer).
    """
    try:
        dist = metadata.distribution("resemblyzer")
    except metadata.PackageNotFoundError:
        raise MissingDependencyError(f"Resemblyzer's speaker-encoder weights are needed for diarization "
                                     f"but Resemblyzer is not installed. Fix: {INSTALL}, then restart ComfyUI.") from None
    entry = next((f for f in dist.files or () if str(f).replace("\\", "/") == WEIGHTS_IN_WHEEL), None)
    path = Path(entry.locate()) if entry is not None else None
    if entry is None or entry.hash is None or not path.is_file():
        raise MissingDependencyError(f"the installed Resemblyzer has no recorded {WEIGHTS_IN_WHEEL}. "
                                     f"Fix: {INSTALL} --force-reinstall, then restart ComfyUI.")
    digest = hashlib.new(entry.hash.mode)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != entry.hash.value:
        raise MissingDependencyError(f"{path} differs from the file the Resemblyzer wheel installed (hash "
                                     f"mismatch); it is refused. Fix: {INSTALL} --force-reinstall.")
    return path


@functools.lru_cache(maxsize=1)
def load_voice_encoder(path: Path | None = None) -> GE2EEncoder:
    """The trained :class:`GE2EEncoder` on the CPU in eval mode, loaded once per process.

    Args:
        path: the weight file; None = :func:`weights_file` (tests pass a broken copy).

    Raises:
        MissingDependencyError: see :func:`weights_file`; or the file holds more than tensors and
            numbers, or not the encoder's tensors (refused rather than unpickled).
    """
    path = path or weights_file()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
        encoder = GE2EEncoder()
        encoder.load_state_dict(state, strict=True)
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, OSError) as error:
        raise MissingDependencyError(f"Resemblyzer's weight file {path} cannot be loaded as the speaker encoder's "
                                     f"plain tensors ({error}). Fix: {INSTALL} --force-reinstall.") from error
    return encoder.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def _mel_transform():
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=MEL_WINDOW, win_length=MEL_WINDOW, hop_length=MEL_HOP, n_mels=MEL_BANDS,
        power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")


def mel_frames(wav16k: torch.Tensor) -> torch.Tensor:
    """Resemblyzer's encoder input: power mel spectrogram frames of 16 kHz mono audio.

    Args:
        wav16k: float32 ``[T]`` at 16 kHz.

    Returns:
        float32 ``[1 + T // 160, 40]``: frame ``i`` is centred on sample ``160 i`` (10 ms frames).
    """
    with torch.no_grad():
        return _mel_transform()(wav16k.detach().float().cpu()).T.contiguous()
