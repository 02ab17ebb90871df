"""Fit a soundtrack to a run of video frames before it is muxed into a ComfyUI VIDEO.

ComfyUI's ``VideoFromComponents.save_to`` (``comfy_api/latest/_input_impl/video_types.py``, used
by Save Video) writes the frame rate rounded to 1/1000 and cuts the audio to
``ceil(sample_rate / frame_rate * frames)`` samples, but never pads it: audio shorter than the
frames ends early, audio longer is cut at the last frame. This module makes the audio exactly as
long as the frames before muxing: ``round(frames * sample_rate / frame_rate)`` samples, trimmed at
the end or padded at the end with silence, so the saved audio stream lasts ``frames / fps`` and
stays in sync with the picture from the first frame on (sample 0 = frame 0).
"""

from __future__ import annotations

from fractions import Fraction

import torch

FPS_DENOMINATOR = 1000  # save_to rounds the frame rate to 1/1000 frame per second


def frame_rate(fps: float) -> Fraction:
    """The frame rate as ComfyUI writes it to a file: ``fps`` rounded to 1/1000 (e.g. 29.97 -> 2997/100)."""
    return Fraction(round(float(fps) * FPS_DENOMINATOR), FPS_DENOMINATOR)


def samples_for_frames(num_frames: int, sample_rate: int, rate: Fraction) -> int:
    """Audio samples that last exactly as long as ``num_frames`` video frames at ``rate`` (rounded)."""
    return round(num_frames * sample_rate / rate)


def fit_audio_to_frames(waveform: torch.Tensor, sample_rate: int, num_frames: int, rate: Fraction) -> torch.Tensor:
    """Trim or pad (with silence at the end) a ``[C, T]`` waveform to the duration of ``num_frames`` frames.

    Args:
        waveform: ``[C, T]`` float audio.
        sample_rate: Hz.
        num_frames: video frames the audio must cover.
        rate: frame rate (use :func:`frame_rate`).

    Returns:
        ``[C, N]`` with ``N = round(num_frames * sample_rate / rate)``; the input itself (a view)
        when it is trimmed, a new tensor when it is padded.
    """
    wanted = samples_for_frames(num_frames, sample_rate, rate)
    have = waveform.shape[-1]
    if have >= wanted:
        return waveform[..., :wanted]
    return torch.nn.functional.pad(waveform, (0, wanted - have))


def mismatch_frames(num_samples: int, sample_rate: int, num_frames: int, rate: Fraction) -> float:
    """How many frames longer (+) or shorter (-) the audio is than the video."""
    return float(num_samples * rate / sample_rate - num_frames)
