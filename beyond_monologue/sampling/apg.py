"""Adaptive projected guidance (APG), the guidance option of the official InfiniteTalk generator.

Sadat et al., "Eliminating Oversaturation and Artifacts of High Guidance Scales in Diffusion Models"
(arXiv 2410.02416), as MeiGen-AI/InfiniteTalk runs it (``wan/utils/multitalk_utils.py``,
``--use_apg``, defaults ``--apg_momentum -0.75``, ``--apg_norm_threshold 55``, ``eta`` 0): each
guidance difference ``d`` is averaged with momentum over the steps of a clip, its L2 norm (per
sample, over channels, frames, height and width) is clipped to the threshold, and its component
parallel to the conditional prediction is removed (kept with weight ``eta``). The official code
applies it to the flow model's velocity output, so :class:`beyond_monologue.sampling.duplex_guider.DuplexGuider`
converts ComfyUI's denoised predictions to velocities first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OFFICIAL_MOMENTUM = -0.75  # generate_infinitetalk.py --apg_momentum default
OFFICIAL_NORM_THRESHOLD = 55.0  # generate_infinitetalk.py --apg_norm_threshold default


@dataclass(frozen=True)
class APGSettings:
    """APG constants: ``momentum`` (0 = none), ``norm_threshold`` (0 = no clipping), ``eta`` (parallel part kept)."""

    momentum: float = OFFICIAL_MOMENTUM
    norm_threshold: float = OFFICIAL_NORM_THRESHOLD
    eta: float = 0.0


class MomentumBuffer:
    """Running sum ``avg <- d + momentum * avg`` over the steps of one window (starts at 0)."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.average: torch.Tensor | float = 0.0

    def update(self, diff: torch.Tensor) -> torch.Tensor:
        self.average = diff + self.momentum * self.average
        return self.average


def projected_update(diff: torch.Tensor, pred_cond: torch.Tensor, settings: APGSettings,
                     buffer: MomentumBuffer | None = None) -> torch.Tensor:
    """The APG replacement of a guidance difference.

    Args:
        diff: ``[B, C, T, H, W]`` (any ``[B, ...]``) guidance difference, e.g. ``cond - uncond`` velocities.
        pred_cond: conditional prediction of the same shape (the direction removed from ``diff``).
        settings: momentum / norm threshold / eta.
        buffer: the path's momentum buffer (None = no momentum).

    Returns:
        Same shape and dtype as ``diff``: orthogonal part plus ``eta`` times the parallel part of
        the (momentum-averaged, norm-clipped) difference; the projection runs in float64.
    """
    if buffer is not None and settings.momentum != 0:
        diff = buffer.update(diff)
    dims = tuple(range(1, diff.ndim))
    if settings.norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.clamp(settings.norm_threshold / norm, max=1.0)
    d, unit = diff.double(), torch.nn.functional.normalize(pred_cond.double().flatten(1), dim=1).view(pred_cond.shape)
    parallel = (d * unit).sum(dim=dims, keepdim=True) * unit
    return ((d - parallel) + settings.eta * parallel).to(diff.dtype)
