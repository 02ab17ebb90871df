"""Fit a soundtrack to a run of video frames before it is muxed into a ComfyUI VIDEO.

ComfyUI's ``VideoFromComponents.save_to`` (``comfy_api/latest/_input_impl/video_types.py``, used
by Save Video) writes the frame rate rounded to 1/1000 and cuts the audio to
``ceil(sample_rate / frame_rate * frames)`` samples, but never pads it: audio shorter than the
frames ends early, audio longer is cut at the last frame. This module makes the audio exactly as
long as the frames before muxing: ``round(frames * sample_rate / frame_rate)`` samples, trimmed at
the end or padded at the end with silence, so the saved audio stream lasts ``frames / fps`` and
stays in sync with the picture from the first frame on (sample 0 = frame 0).

Wan renders 4n+1 frames, so a render of the whole audio ends with up to 3 frames past the audio's
end (``speech_features.frames_for_duration``). :func:`frames_covering_audio` says how many frames
to keep so that a video ends with its audio: that tail is dropped, anything longer is kept.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

FPS_DENOMINATOR = 1000  # save_to rounds the frame rate to 1/1000 frame per second
PADDING_TAIL_FRAMES = 3  # at most this many frames past the audio come from rounding up to 4n+1 frames


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


def frames_covering_audio(num_frames: int, num_samples: int, sample_rate: int, rate: Fraction) -> int:
    """How many of ``num_frames`` frames to keep so that the video ends with its audio.

    Frames past the audio's end are dropped when there are at most :data:`PADDING_TAIL_FRAMES`
    of them (the 4n+1 rounding of a render of the whole audio); the kept ``ceil(duration * rate)``
    frames then last as long as the audio, to within one frame. More frames past the end are kept
    (a different audio was connected on purpose, or by mistake: the caller pads the audio).

    Args:
        num_frames: frames of the video.
        num_samples, sample_rate: length of the audio in samples, and its rate in Hz.
        rate: frame rate (use :func:`frame_rate`).
    """
    covering = math.ceil(Fraction(num_samples) * rate / sample_rate)
    if covering < num_frames <= covering + PADDING_TAIL_FRAMES:
        return max(covering, 1)
    return num_frames
