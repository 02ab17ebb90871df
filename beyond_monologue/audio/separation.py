"""Chunked overlap-add for source separation networks on long recordings.

A separation network sees a fixed-length chunk at a time. Chunks of ``chunk`` samples start every
``chunk / overlaps`` samples; each output chunk is weighted by a window with linear fades of
``chunk / 10`` samples (at most the overlap; none at the very start and end) and the weighted sum is
divided by the summed weights. The recording is reflect-padded by ``chunk - step`` at both ends
when it is long enough, so every real sample is covered by ``overlaps`` chunks. This is the
scheme of the Mel-Band RoFormer vocal model's inference (KimberleyJensen's ``demix``, used by
kijai/ComfyUI-MelBandRoFormer). Memory holds one chunk plus the output, so long files fit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def chunk_starts(total: int, chunk: int, step: int) -> list[int]:
    """Start samples of the chunks covering ``total`` samples (the last one reaches the end)."""
    starts = [0]
    while starts[-1] + chunk < total:
        starts.append(starts[-1] + step)
    return starts


def fade_window(chunk: int, fade: int, fade_in: bool, fade_out: bool) -> torch.Tensor:
    """float32 ``[chunk]`` of ones with linear 0->1 / 1->0 ramps of ``fade`` samples at the chosen ends."""
    window = torch.ones(chunk)
    if fade > 0 and fade_in:
        window[:fade] = torch.linspace(0.0, 1.0, fade)
    if fade > 0 and fade_out:
        window[-fade:] = torch.linspace(1.0, 0.0, fade)
    return window


def _pad_chunk(part: torch.Tensor, chunk: int) -> torch.Tensor:
    missing = chunk - part.shape[-1]
    if missing <= 0:
        return part
    mode = "reflect" if part.shape[-1] > missing else "constant"
    return F.pad(part.unsqueeze(0), (0, missing), mode=mode).squeeze(0)


def overlap_add(process: Callable[[torch.Tensor], torch.Tensor], audio: torch.Tensor, chunk: int,
                overlaps: int = 2, on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run ``process`` chunk by chunk over ``audio`` and blend the chunks.

    Args:
        process: maps float32 ``[C, chunk]`` to float32 ``[C', chunk]`` (e.g. one separated stem).
        audio: float32 ``[C, T]`` on the CPU.
        chunk: chunk length in samples.
        overlaps: chunks covering each sample (step = ``chunk // overlaps``).
        on_chunk: called as ``on_chunk(done, total)`` after each chunk (progress, interruption).

    Returns:
        float32 ``[C', T]`` on the CPU. For ``process`` = identity the result equals ``audio``.
    """
    if chunk < 2 or overlaps < 1:
        raise ValueError(f"chunk {chunk} and overlaps {overlaps} must be >= 2 and >= 1")
    step = max(1, chunk // overlaps)
    fade = min(chunk // 10, chunk - step)  # fades only where chunks overlap
    border = chunk - step
    length = audio.shape[-1]
    padded = length > 2 * border and border > 0
    if padded:
        audio = F.pad(audio.unsqueeze(0), (border, border), mode="reflect").squeeze(0)
    total = audio.shape[-1]
    starts = chunk_starts(total, chunk, step)
    output = None
    weight = torch.zeros(total)
    for index, start in enumerate(starts):
        part = audio[:, start:start + chunk]
        size = part.shape[-1]
        result = process(_pad_chunk(part, chunk)).float().cpu()[:, :size]
        window = fade_window(chunk, fade, fade_in=index > 0, fade_out=index < len(starts) - 1)[:size]
        if output is None:
            output = torch.zeros(result.shape[0], total)
        output[:, start:start + size] += result * window
        weight[start:start + size] += window
        if on_chunk:
            on_chunk(index + 1, len(starts))
    output = output / weight.clamp_min(1e-8)
    return output[:, border:border + length] if padded else output
