"""Voice activity detection (VAD) with Silero VAD, run from the ONNX model bundled in its wheel.

Why ONNX: the ``silero-vad`` wheel ships the same network as TorchScript (``silero_vad.jit``) and
as ONNX (``silero_vad.onnx``). ONNX is a protobuf graph read by ``onnxruntime``: no pickle, no
TorchScript code execution, and no dependency on ``torch.jit`` (in maintenance mode). The package's
own ``OnnxWrapper`` and ``get_speech_timestamps_from_probs`` are used as they are.

Note: ``import silero_vad`` calls ``torch.set_num_threads(1)`` at import time; :func:`load_vad`
restores the caller's thread count so ComfyUI's other CPU work does not slow down.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch

from ..optional_deps import import_optional
from .audio_checks import mono_at

VAD_SAMPLE_RATE = 16000
VAD_HOP = 512  # samples per Silero probability at 16 kHz (32 ms)
VAD_RATE_HZ = VAD_SAMPLE_RATE / VAD_HOP
VAD_BLOCK_HOPS = 938  # about 30 s of audio between Cancel checks
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def load_vad():
    """The Silero VAD ONNX model (``silero_vad.utils_vad.OnnxWrapper``, CPU), loaded once per process.

    Raises:
        MissingDependencyError: silero-vad or onnxruntime is not installed.
    """
    threads = torch.get_num_threads()
    try:
        import_optional("onnxruntime", "onnxruntime", "voice activity detection (Silero VAD)")
        silero = import_optional("silero_vad", "silero-vad==6.2.3", "voice activity detection")
    finally:
        torch.set_num_threads(threads)
    return silero.load_silero_vad(onnx=True)


def speech_probabilities(wav16k: torch.Tensor, between_blocks=None) -> torch.Tensor:
    """Silero speech probability of each 32 ms hop of 16 kHz mono audio.

    The model runs hop by hop with its recurrent state carried (Silero's streaming call, as its
    ``audio_forward`` does), in blocks of :data:`VAD_BLOCK_HOPS` hops; audio shorter than one hop
    or not a whole number of hops is padded with silence at the end.

    Args:
        wav16k: float32 ``[T]`` at 16 kHz.
        between_blocks: called with no arguments after each block of about 30 s of audio, e.g.
            to raise on Cancel.

    Returns:
        float32 ``[ceil(T / 512)]`` in 0..1; entry ``i`` covers samples ``512 i .. 512 (i + 1)``.
    """
    if wav16k.numel() == 0:
        return torch.zeros(0)
    hops = -(-wav16k.shape[0] // VAD_HOP)
    audio = torch.nn.functional.pad(wav16k.detach().float().cpu(), (0, hops * VAD_HOP - wav16k.shape[0]))
    audio = audio.view(1, hops * VAD_HOP)
    model = load_vad()
    probs = []
    with _LOCK:
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
    silero = import_optional("silero_vad", "silero-vad==6.2.3", "voice activity detection")
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
