"""Voice activity detection (VAD) with Silero VAD, run from a model file bundled in its wheel.

The ``silero-vad`` wheel ships the same network as ONNX (``silero_vad/data/silero_vad.onnx``) and
as TorchScript (``silero_vad/data/silero_vad.jit``); ``silero_vad.load_silero_vad`` finds either
through ``importlib.resources`` of the installed package (never a user path). Backend (the pack's
choice, :func:`vad_backend`):

* ``onnx`` when the module ``onnxruntime`` imports -- from the ``onnxruntime`` *or* the
  ``onnxruntime-gpu`` distribution (both install that module name, so the pack requires neither:
  a hard requirement on one breaks installs that have the other). ONNX is a protobuf graph: no
  pickle, no TorchScript code.
* ``torchscript`` otherwise: ``torch.jit.load`` of the wheel's own ``silero_vad.jit``.

Both give the same probabilities on real speech (max difference 2e-6 measured on the LibriVox clips
and sample.wav, tests/unit/audio/test_vad.py). The package's own wrappers and
``get_speech_timestamps_from_probs`` are used as they are.

Note: ``import silero_vad`` calls ``torch.set_num_threads(1)`` at import time; :func:`load_vad`
restores the caller's thread count so ComfyUI's other CPU work does not slow down.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import threading

import numpy as np
import torch

from ..optional_deps import import_optional
from .audio_checks import mono_at

VAD_SAMPLE_RATE = 16000
VAD_HOP = 512  # samples per Silero probability at 16 kHz (32 ms)
VAD_RATE_HZ = VAD_SAMPLE_RATE / VAD_HOP
VAD_BLOCK_HOPS = 938  # about 30 s of audio between Cancel checks
BACKENDS = ("onnx", "torchscript")
_LOCK = threading.Lock()
log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def vad_backend() -> str:
    """``"onnx"`` when the ``onnxruntime`` module (CPU or GPU distribution) imports, else ``"torchscript"``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "torchscript"
    try:
        importlib.import_module("onnxruntime")
    except (ImportError, OSError, AttributeError) as error:  # a broken install (missing CUDA libs, ...)
        log.warning("onnxruntime is installed but does not import (%s); Silero VAD runs its TorchScript model.", error)
        return "torchscript"
    return "onnx"


def load_vad(backend: str | None = None):
    """The Silero VAD model of the ``silero-vad`` wheel on the CPU, loaded once per process and backend.

    Args:
        backend: ``"onnx"`` (``silero_vad.utils_vad.OnnxWrapper``) or ``"torchscript"`` (the wheel's
            ``silero_vad.jit``); None = :func:`vad_backend`. Both are called the same way
            (``model(chunk [1, 512], 16000)``, ``reset_states()``, ``audio_forward``).

    Raises:
        MissingDependencyError: silero-vad is not installed, or ``onnx`` is asked for without onnxruntime.
        ValueError: unknown backend.
    """
    backend = backend or vad_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown Silero VAD backend {backend!r}; use one of {BACKENDS}")
    return _load_model(backend)


@functools.lru_cache(maxsize=len(BACKENDS))
def _load_model(backend: str):
    threads = torch.get_num_threads()
    try:
        if backend == "onnx":
            import_optional("onnxruntime", "onnxruntime or onnxruntime-gpu", "Silero VAD's ONNX backend")
        silero = import_optional("silero_vad", "silero-vad>=6.2,<7", "voice activity detection")
        return silero.load_silero_vad(onnx=backend == "onnx")
    finally:  # silero_vad sets torch.set_num_threads(1) when imported
        torch.set_num_threads(threads)


def speech_probabilities(wav16k: torch.Tensor, between_blocks=None, backend: str | None = None) -> torch.Tensor:
    """Silero speech probability of each 32 ms hop of 16 kHz mono audio.

    The model runs hop by hop with its recurrent state carried (Silero's streaming call, as its
    ``audio_forward`` does), in blocks of :data:`VAD_BLOCK_HOPS` hops; audio shorter than one hop
    or not a whole number of hops is padded with silence at the end.

    Args:
        wav16k: float32 ``[T]`` at 16 kHz.
        between_blocks: called with no arguments after each block of about 30 s of audio, e.g.
            to raise on Cancel.
        backend: see :func:`load_vad` (None = :func:`vad_backend`).

    Returns:
        float32 ``[ceil(T / 512)]`` in 0..1; entry ``i`` covers samples ``512 i .. 512 (i + 1)``.
    """
    if wav16k.numel() == 0:
        return torch.zeros(0)
    hops = -(-wav16k.shape[0] // VAD_HOP)
    audio = torch.nn.functional.pad(wav16k.detach().float().cpu(), (0, hops * VAD_HOP - wav16k.shape[0]))
    audio = audio.view(1, hops * VAD_HOP)
    model = load_vad(backend)
    probs = []
    with _LOCK, torch.no_grad():
        model.reset_states()
        for block in range(0, hops, VAD_BLOCK_HOPS):
            for hop in range(block, min(block + VAD_BLOCK_HOPS, hops)):
                probs.append(model(audio[:, hop * VAD_HOP:(hop + 1) * VAD_HOP], VAD_SAMPLE_RATE))
            if between_blocks:
                between_blocks()
    return torch.cat(probs, dim=1)[0].float()


def speech_regions(probs: torch.Tensor, num_samples: int, threshold: float = 0.5,
                   min_speech_s: float = 0.25, min_silence_s: float = 0.1,
                   pad_s: float = 0.03) -> list[tuple[float, float]]:
    """Speech regions in seconds from Silero probabilities (Silero's own hysteresis and minimum durations).

    Args:
        probs: output of :func:`speech_probabilities`.
        num_samples: length of the 16 kHz audio the probabilities came from.
        threshold: speech starts above this probability and ends below ``threshold - 0.15``.
        min_speech_s: shorter speech is dropped.
        min_silence_s: shorter pauses do not end a region.
        pad_s: padding added around each region.
    """
    silero = import_optional("silero_vad", "silero-vad>=6.2,<7", "voice activity detection")
    stamps = silero.get_speech_timestamps_from_probs(
        probs.tolist(), VAD_SAMPLE_RATE, threshold=threshold, min_speech_duration_ms=int(min_speech_s * 1000),
        min_silence_duration_ms=int(min_silence_s * 1000), speech_pad_ms=int(pad_s * 1000),
        return_seconds=False, audio_length_samples=num_samples)
    return [(s["start"] / VAD_SAMPLE_RATE, s["end"] / VAD_SAMPLE_RATE) for s in stamps]


def probabilities_at(probs: torch.Tensor, times_s: np.ndarray) -> torch.Tensor:
    """Speech probability at the given times (seconds), linearly interpolated between hop centres."""
    if probs.numel() == 0:
        return torch.zeros(len(times_s))
    centres = (np.arange(len(probs)) + 0.5) / VAD_RATE_HZ
    return torch.from_numpy(np.interp(times_s, centres, probs.numpy()).astype(np.float32))


def frame_activity(waveform: torch.Tensor, sample_rate: int, num_frames: int, fps: float,
                   between_blocks=None) -> torch.Tensor:
    """Per-video-frame voice activity of one stream.

    Args:
        waveform: float ``[C, T]`` or ``[T]`` at ``sample_rate`` Hz.
        num_frames: video frames ``F``; frame ``i`` spans ``i / fps .. (i + 1) / fps`` seconds.
        fps: video frame rate.
        between_blocks: see :func:`speech_probabilities` (Cancel checks).

    Returns:
        float32 ``[F]`` in 0..1: the Silero speech probability at each frame's centre
        (0 past the end of the audio).
    """
    wav16k = mono_at(waveform, sample_rate, VAD_SAMPLE_RATE)
    probs = speech_probabilities(wav16k, between_blocks)
    times = (np.arange(num_frames) + 0.5) / float(fps)
    activity = probabilities_at(probs, times)
    activity[torch.from_numpy(times >= wav16k.shape[0] / VAD_SAMPLE_RATE)] = 0.0
    return activity
