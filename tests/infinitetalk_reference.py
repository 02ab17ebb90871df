"""An independent reference of the official InfiniteTalk generator, for the fidelity tests.

Written from reading MeiGen-AI/InfiniteTalk (``wan/multitalk.py``: per-clip audio windows, the padding
of the last clip, the timestep schedule, guidance, known latents; ``wan/modules/multitalk_model.py``:
``AudioProjModel`` and the 3 + 1 + 1 + 3 window selection), never copied. Plain torch; every function
takes the public state dict (``audio_proj.*`` keys) or plain tensors, so the unit and comfy tiers can
both use it.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def clip_audio_windows(full_audio: torch.Tensor, start: int, clip_frames: int) -> torch.Tensor:
    """``[clip_frames, 5, L, D]``: each frame's window ``i-2 .. i+2`` of the clip starting at ``start``, clamped."""
    center = torch.arange(start, start + clip_frames)[:, None] + torch.arange(-2, 3)[None, :]
    return full_audio[center.clamp(0, len(full_audio) - 1)]


def clip_tokens(sd: dict, full_audio: torch.Tensor, start: int, clip_frames: int) -> torch.Tensor:
    """``[latents, tokens, dim]`` audio tokens of one clip: frame 0 through proj1, groups of 4 frames through proj1_vf."""
    per_frame = clip_audio_windows(full_audio, start, clip_frames)
    first = per_frame[:1]
    groups = per_frame[1:].unflatten(0, (-1, 4))  # [n_t, 4, 5, L, D]
    rest = torch.cat([groups[:, 0, :3], groups[:, 1:-1, 2], groups[:, -1, 2:]], dim=1)  # [n_t, 8, L, D]

    def lin(name, x):
        return x @ sd[f"audio_proj.{name}.weight"].T.to(x) + sd[f"audio_proj.{name}.bias"].to(x)

    h = torch.relu(torch.cat([lin("proj1", first.flatten(1)), lin("proj1_vf", rest.flatten(1))]))
    dim = sd["audio_proj.norm.weight"].shape[0]
    tokens = lin("proj3", torch.relu(lin("proj2", h))).unflatten(-1, (-1, dim))
    return torch.nn.functional.layer_norm(tokens, (dim,), sd["audio_proj.norm.weight"].to(h), sd["audio_proj.norm.bias"].to(h))


def last_clip_audio(full_audio: torch.Tensor, clip_end: int) -> torch.Tensor:
    """The audio of the last clip: padded with its own end flipped, ``miss = clip_end - len + 3`` frames."""
    miss = clip_end - len(full_audio) + 3
    return torch.cat([full_audio, torch.flip(full_audio[-miss:], dims=[0])])


def timesteps(steps: int, shift: float) -> list[float]:
    """``linspace(1000, 1, steps)`` (float32) and 0, each through ``timestep_transform(t, shift)``."""
    ts = [float(t) for t in np.linspace(1000, 1, steps, dtype=np.float32)] + [0.0]
    return [shift * (t / 1000) / (1 + (shift - 1) * (t / 1000)) * 1000 for t in ts]


def guided_velocity(cond: torch.Tensor, text_scale: float, audio_scale: float, drop_audio: torch.Tensor | None = None,
                    drop_text: torch.Tensor | None = None, uncond: torch.Tensor | None = None) -> torch.Tensor:
    """Vanilla CFG of the official loop: two passes at text scale 1, three otherwise."""
    if math.isclose(text_scale, 1.0):
        return drop_audio + audio_scale * (cond - drop_audio)
    return uncond + text_scale * (cond - drop_text) + audio_scale * (drop_text - uncond)


def euler_step(latent: torch.Tensor, velocity: torch.Tensor, t_now: float, t_next: float) -> torch.Tensor:
    """``latent + (-velocity) * (t_now - t_next) / 1000`` (the official update)."""
    return latent - velocity * ((t_now - t_next) / 1000)


class APGReference:
    """``adaptive_projected_guidance`` with a ``MomentumBuffer`` (eta 0), per path, over the steps of one clip."""

    def __init__(self, momentum: float = -0.75, norm_threshold: float = 55.0):
        self.momentum, self.norm_threshold, self.average = momentum, norm_threshold, 0.0

    def __call__(self, diff: torch.Tensor, pred_cond: torch.Tensor) -> torch.Tensor:
        self.average = diff + self.momentum * self.average
        dims = [-1, -2, -3, -4]
        clipped = self.average * torch.minimum(torch.ones_like(diff), self.norm_threshold / self.average.norm(p=2, dim=dims, keepdim=True))
        unit = torch.nn.functional.normalize(pred_cond.double(), dim=dims)
        parallel = (clipped.double() * unit).sum(dim=dims, keepdim=True) * unit
        return (clipped.double() - parallel).to(diff.dtype)
