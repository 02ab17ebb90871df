"""Colour correction of decoded frames towards the reference portrait (InfiniteTalk's ``match_and_blend_colors``).

MeiGen-AI/InfiniteTalk ``wan/utils/multitalk_utils.py`` (``match_and_blend_colors``, called per clip in
``wan/multitalk.py`` with ``--color_correction_strength``, default 1.0 in ``generate_infinitetalk.py``):
every frame, clipped to 0..1, is converted to CIE Lab; each of L, a, b gets the reference image's
mean and standard deviation (population std; a flat channel becomes the reference mean); the result
goes back to RGB, is clipped to 0..1 and blended ``(1 - strength) frame + strength corrected``.
Frames are independent, so correcting after decoding equals correcting each clip, except that the
official code then re-encodes the corrected motion frames into the next clip; the pack carries
latents and corrects only the decoded output (the pack's choice, documented on BM Decode Video).
The Lab conversion is kornia's (sRGB, D65), a dependency of ComfyUI itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from kornia.color import lab_to_rgb, rgb_to_lab

OFFICIAL_STRENGTH = 1.0  # generate_infinitetalk.py --color_correction_strength default
CHUNK_FRAMES = 16  # frames converted at once (bounds the Lab copies' memory)


def _lab_stats(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel mean and population std of ``[N, 3, H, W]`` Lab images: ``[N, 3, 1, 1]`` each."""
    var, mean = torch.var_mean(lab, dim=(-2, -1), keepdim=True, correction=0)
    return mean, var.sqrt()


def match_colors(frames: torch.Tensor, reference: torch.Tensor, strength: float = OFFICIAL_STRENGTH,
                 on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Frames with the reference's Lab colour statistics, blended with the originals.

    Args:
        frames: IMAGE ``[F, H, W, 3]`` float in 0..1.
        reference: IMAGE ``[1, h, w, 3]`` (only ``[0]`` is used) in 0..1, already fitted to the video
            (the sampler's scale and centre crop); its size may differ from the frames'.
        strength: 0 = unchanged, 1 = fully matched (official default 1.0).
        on_chunk: progress/interrupt callback ``(done, total)`` in frames.

    Returns:
        float32 ``[F, H, W, 3]`` in 0..1 on the frames' device.

    Raises:
        ValueError: ``strength`` outside 0..1 (the official code refuses it too).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if strength == 0.0:
        return frames
    ref_lab = rgb_to_lab(reference[:1, :, :, :3].float().clamp(0, 1).movedim(-1, 1))
    ref_mean, ref_std = _lab_stats(ref_lab)
    out = torch.empty((*frames.shape[:-1], 3), dtype=torch.float32, device=frames.device)
    for start in range(0, frames.shape[0], CHUNK_FRAMES):
        source = frames[start:start + CHUNK_FRAMES, :, :, :3].float().clamp(0, 1).movedim(-1, 1)
        lab = rgb_to_lab(source)
        mean, std = _lab_stats(lab)
        scaled = (lab - mean) * (ref_std.to(lab) / std.clamp_min(1e-12)) + ref_mean.to(lab)
        matched = torch.where(std == 0, ref_mean.to(lab).expand_as(lab), scaled)
        corrected = lab_to_rgb(matched, clip=True)
        out[start:start + CHUNK_FRAMES] = ((1 - strength) * source + strength * corrected).movedim(1, -1)
        if on_chunk is not None:
            on_chunk(min(start + CHUNK_FRAMES, frames.shape[0]), frames.shape[0])
    return out
