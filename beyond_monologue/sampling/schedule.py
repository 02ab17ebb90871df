"""The official InfiniteTalk timestep schedule, offered next to ComfyUI's schedulers.

MeiGen-AI/InfiniteTalk ``wan/multitalk.py`` (``generate``): ``N`` timesteps ``linspace(1000, 1, N)``
(float32) and a final 0, each shifted with ``t' = shift t / (1 + (shift - 1) t)`` on ``t / 1000``
(``timestep_transform``); the flow model is stepped with Euler on those times. On ComfyUI's flow
models (``ModelSamplingSD3``: timestep = 1000 sigma) the same schedule is the sigmas ``t' / 1000``;
the ``euler`` sampler then takes exactly the official steps. ComfyUI's ``simple`` scheduler picks
from the 1000 shifted training sigmas instead (its last step is not at ``t = 1``), hence a choice
of its own. The shift is the node's ``shift`` (official defaults: 7 at 480p, 11 at 720p, 40 steps;
``generate_infinitetalk.py``).
"""

from __future__ import annotations

import numpy as np
import torch

SCHEDULER_NAME = "infinitetalk_linear"  # the pack's name for this choice in BM Sampler's scheduler list
NUM_TIMESTEPS = 1000


def infinitetalk_sigmas(steps: int, shift: float) -> torch.Tensor:
    """float32 ``[steps + 1]`` sigmas of the official schedule, ending at 0.

    Args:
        steps: sampling steps (``sampling_steps``), at least 1.
        shift: flow shift (``shift``), > 0.

    Raises:
        ValueError: ``steps < 1`` or ``shift <= 0``.
    """
    if steps < 1 or shift <= 0:
        raise ValueError(f"steps {steps} and shift {shift} must be >= 1 and > 0")
    t = np.append(np.linspace(NUM_TIMESTEPS, 1, steps, dtype=np.float32), np.float32(0.0))
    u = torch.from_numpy(t) / NUM_TIMESTEPS
    return (shift * u / (1 + (shift - 1) * u)).to(torch.float32)
