"""Validation and small helpers for ComfyUI ``AUDIO`` values.

ComfyUI passes audio as ``{"waveform": Tensor[B, C, T] float32, "sample_rate": int}``
(``comfy_extras/nodes_audio.py``, ``LoadAudio``). Nodes of this pack accept batch size 1
only: a conversation is one recording.
"""

from __future__ import annotations

import torch

from ..errors import BMInputError

MAX_CHANNELS = 2


def check_audio(audio: object, input_name: str, *, max_channels: int = MAX_CHANNELS) -> tuple[torch.Tensor, int]:
    """Validate a ComfyUI AUDIO value and return its single clip.

    Args:
        audio: the AUDIO dict as ComfyUI passes it.
        input_name: node input name, used in error messages.
        max_channels: largest channel count accepted (2: mono or stereo).

    Returns:
        ``(waveform, sample_rate)``: waveform ``[C, T]`` float32 on the CPU (a copy is never
        made when the input already is float32 on the CPU), sample rate in Hz.

    Raises:
        BMInputError: not an AUDIO dict, batch size other than 1, no samples, more than
            ``max_channels`` channels, NaN or infinite samples, or a non-positive sample rate.
    """
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise BMInputError(input_name, "is not an AUDIO value (a dict with 'waveform' and 'sample_rate').",
                           "connect the output of Load Audio or another node that outputs AUDIO.")
    waveform = audio["waveform"]
    sample_rate = int(audio["sample_rate"])
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3:
        raise BMInputError(input_name, "waveform must be a tensor of shape [batch, channels, samples].",
                           "connect the output of Load Audio or another node that outputs AUDIO.")
    if sample_rate <= 0:
        raise BMInputError(input_name, f"has sample rate {sample_rate} Hz.", "load the file again with Load Audio.")
    batch, channels, samples = waveform.shape
    if batch != 1:
        raise BMInputError(input_name, f"holds a batch of {batch} clips; one conversation is expected.",
                           "split the batch and run one conversation per prompt.")
    if channels < 1 or channels > max_channels:
        raise BMInputError(input_name, f"has {channels} channels; at most {max_channels} are supported.",
                           "down-mix it to mono or stereo (e.g. with Split Audio Channels) first.")
    if samples == 0:
        raise BMInputError(input_name, "has no samples.", "load a file that contains audio.")
    clip = waveform[0].to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(clip).all():
        bad = int((~torch.isfinite(clip)).sum())
        raise BMInputError(input_name, f"contains {bad} NaN or infinite samples.",
                           "re-export the file, or run it through a node that cleans it, before this node.")
    return clip, sample_rate


def make_audio(waveform: torch.Tensor, sample_rate: int) -> dict:
    """Wrap a ``[C, T]`` or ``[T]`` float tensor as a ComfyUI AUDIO dict ``{"waveform": [1, C, T], "sample_rate"}``."""
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    return {"waveform": waveform.unsqueeze(0).contiguous(), "sample_rate": int(sample_rate)}


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels of a ``[C, T]`` waveform to ``[T]``."""
    return waveform.mean(dim=0)


def duration_s(waveform: torch.Tensor, sample_rate: int) -> float:
    """Length in seconds of a ``[..., T]`` waveform."""
    return waveform.shape[-1] / float(sample_rate)


def resample(waveform: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Resample ``[..., T]`` float audio from ``sample_rate`` to ``target_rate`` Hz.

    Uses ``torchaudio.functional.resample`` (windowed-sinc, the resampler ComfyUI's audio encoders
    use); returns the input itself when the rates are equal.
    """
    if sample_rate == target_rate:
        return waveform
    import torchaudio

    return torchaudio.functional.resample(waveform, int(sample_rate), int(target_rate))


def mono_at(waveform: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Average the channels of ``[C, T]`` (or take ``[T]``) and resample to ``target_rate``: float32 ``[T']``."""
    mono = waveform if waveform.ndim == 1 else to_mono(waveform)
    return resample(mono.float(), sample_rate, target_rate)


def fit_length(wav: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad (silence at the end) or trim ``[T]`` audio to ``num_samples``."""
    if wav.shape[-1] >= num_samples:
        return wav[..., :num_samples]
    return torch.nn.functional.pad(wav, (0, num_samples - wav.shape[-1]))
