"""Splitting one conversation recording into the avatar's (talk) and the interlocutor's (listen) speech.

This module covers the modes that need no model: ``stereo`` (one speaker per channel) and
``turns`` (user-given turns). Both streams keep the input's length and sample rate and are
mono ``[T]``; outside a speaker's turns its stream is silence, overlapping speech stays in both.
"""

from __future__ import annotations

import torch

from ..errors import BMInputError
from .turns import Turns, mask_to_turns, turns_to_mask

SPEAKER_CHOICES = ("speaker_1", "speaker_2")
EDGE_RAMP_S = 0.01
DUAL_MONO_CORRELATION = 0.99


def speaker_index(avatar_speaker: str) -> int:
    """0 for ``"speaker_1"``, 1 for ``"speaker_2"``.

    Raises:
        BMInputError: any other value.
    """
    if avatar_speaker not in SPEAKER_CHOICES:
        raise BMInputError("avatar_speaker", f"is {avatar_speaker!r}.", f"choose one of {', '.join(SPEAKER_CHOICES)}.")
    return SPEAKER_CHOICES.index(avatar_speaker)


def smooth_mask(mask: torch.Tensor, sample_rate: int, ramp_s: float = EDGE_RAMP_S) -> torch.Tensor:
    """Float gain ``[T]`` in 0..1 from a boolean mask ``[T]`` with raised-cosine edges of ``ramp_s`` seconds.

    The ramps lie outside the turns and avoid clicks where a turn cuts speech: the mask is
    widened by half a ramp on each side and then smoothed with a Hann window one ramp long, so
    inside a turn the gain is exactly 1, it falls continuously to 0 over the ramp, and from one
    ramp away from every turn it is exactly 0.
    """
    ramp = max(1, round(ramp_s * sample_rate))
    if ramp < 3:
        return mask.float()
    half = ramp // 2
    widened = torch.nn.functional.max_pool1d(mask.float().view(1, 1, -1), 2 * half + 1, stride=1, padding=half)
    window = torch.hann_window(ramp + 2, periodic=False)[1:-1]
    window = window / window.sum()
    gain = torch.nn.functional.conv1d(widened, window.view(1, 1, -1), padding=half)
    gain = gain.view(-1)[: mask.shape[0]].clamp(0.0, 1.0)
    return torch.where(mask, torch.ones_like(gain), gain)


def energy_activity(signal: torch.Tensor, sample_rate: int, frame_s: float = 0.02,
                    floor_dbfs: float = -50.0, below_peak_db: float = 35.0) -> tuple[torch.Tensor, float]:
    """Energy voice-activity decision for one clean channel.

    Frames of ``frame_s`` seconds are active when their RMS level is above both ``floor_dbfs``
    and ``peak - below_peak_db`` (peak = loudest frame). Meant for stereo recordings where each
    channel holds one speaker; noisy mixes need the diarize mode instead.

    Returns:
        ``(active [N] bool, frame_rate_hz)``.
    """
    hop = max(1, round(frame_s * sample_rate))
    n = signal.shape[-1] // hop
    if n == 0:
        return torch.zeros(0, dtype=torch.bool), sample_rate / hop
    frames = signal[: n * hop].view(n, hop)
    level_db = 10.0 * torch.log10(frames.pow(2).mean(dim=1).clamp_min(1e-12))
    threshold = max(floor_dbfs, float(level_db.max()) - below_peak_db)
    return level_db > threshold, sample_rate / hop


def split_stereo(waveform: torch.Tensor, sample_rate: int, avatar: int) -> tuple[torch.Tensor, torch.Tensor, Turns]:
    """Stereo mode: the avatar's channel is its talk stream, the other channel its listen stream.

    Each channel is gated with its own turns (found with :func:`energy_activity`, edges smoothed
    with :func:`smooth_mask`), so the other speaker's crosstalk and room noise between turns
    become silence, as in the other modes.

    Args:
        waveform: ``[2, T]`` float32, channel 0 (left) = speaker_1, channel 1 (right) = speaker_2.
        sample_rate: Hz.
        avatar: 0 or 1, the avatar's channel.

    Returns:
        ``(talk [T], listen [T], turns)``; turns are found per channel with :func:`energy_activity`
        and keyed ``speaker_1``/``speaker_2``.

    Raises:
        BMInputError: the input is not stereo, or both channels carry the same signal (dual mono).
    """
    if waveform.shape[0] != 2:
        raise BMInputError("conversation", f"has {waveform.shape[0]} channel(s); stereo mode needs 2 (one speaker each).",
                           "use mode 'diarize' for a mono recording or 'turns' with the speakers' turns.")
    if channel_correlation(waveform[0], waveform[1]) > DUAL_MONO_CORRELATION:
        raise BMInputError("conversation", "has the same signal on both channels (dual mono), so stereo mode cannot "
                           "tell the speakers apart.", "use mode 'diarize', or 'turns' with the speakers' turns.")
    turns: Turns = {}
    streams = []
    for index, name in enumerate(SPEAKER_CHOICES):
        active, rate = energy_activity(waveform[index], sample_rate)
        turns[name] = mask_to_turns(active, rate, min_gap_s=0.3, min_turn_s=0.2)
        gain = smooth_mask(turns_to_mask(turns[name], waveform.shape[-1], sample_rate), sample_rate)
        streams.append(waveform[index] * gain)
    return streams[avatar], streams[1 - avatar], turns


def channel_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two channels ``[T]`` (0.0 when either is constant)."""
    a = a.double() - a.double().mean()
    b = b.double() - b.double().mean()
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else 0.0


def split_by_turns(waveform: torch.Tensor, sample_rate: int, turns: Turns, avatar: int,
                   input_name: str = "turns") -> tuple[torch.Tensor, torch.Tensor, Turns]:
    """Turns mode: mask the mono mix with each speaker's turns.

    Args:
        waveform: ``[C, T]`` float32 (channels are averaged).
        sample_rate: Hz.
        turns: exactly two speakers, in order of first turn.
        avatar: 0 or 1, index of the avatar among the two speakers.
        input_name: where the turns came from, for error messages.

    Returns:
        ``(talk [T], listen [T], turns)``.

    Raises:
        BMInputError: not exactly two speakers, or every turn starts after the audio ends.
    """
    if len(turns) != 2:
        raise BMInputError(input_name, f"names {len(turns)} speaker(s): {', '.join(turns) or 'none'}.",
                           "give the turns of exactly two speakers (the avatar and the interlocutor).")
    duration = waveform.shape[-1] / sample_rate
    if all(s >= duration for intervals in turns.values() for s, _ in intervals):
        raise BMInputError(input_name, f"every turn starts after the audio ends ({duration:.2f} s).",
                           "check that the turns belong to this recording and are in seconds.")
    mono = waveform.mean(dim=0)
    names = list(turns)
    gains = [smooth_mask(turns_to_mask(turns[name], mono.shape[0], sample_rate), sample_rate) for name in names]
    return mono * gains[avatar], mono * gains[1 - avatar], turns
