"""Time-scaled 1D RoPE for the audio cross-attention: queries at their latent frame's time, keys at their window's.

Beyond Monologue's best audio attention is "3D cross-attention + 1D RoPE + MHGK" (arXiv 2604.10367,
Sec. 3.2.2 ablation; /shared/research/papers.md §1.3). The paper does not publish its RoPE, so
everything below the idea is the pack's choice:

* Positions are times in seconds on the one clock of :mod:`beyond_monologue.timebase` (the same
  times as the MHGK bias, :func:`beyond_monologue.model.mhgk.kernel_times`): every token of video
  latent frame ``i`` sits at ``t_i``, every token of audio window ``j`` at ``tau_j``. A latent
  frame and its own audio window share a time. Seconds, not indices, so the rotation does not
  change with the frame rate or with where a sampling window starts in a long video.
* Rotation (RoFormer, Su et al. 2021, Eq. 34, "rotate-half" pairing as in GPT-NeoX/Wan): the first
  ``rotary_dims`` dims of each head form ``rotary_dims / 2`` pairs ``(x[k], x[k + r/2])``; pair
  ``k`` of a token at time ``t`` is rotated by ``2 pi t / P_k``. The same on every head.
* Periods ``P_k`` are log-spaced from ``min_period_s`` (pair 0) to ``max_period_s`` (last pair).
  Defaults: 0.32 s = two latent frames at 25 fps (the shortest period the 0.16 s latent spacing can
  represent without aliasing) to 64 s (longer than any sampling window or listening context, so the
  slowest pairs stay nearly constant inside one window). ``rotary_dims`` defaults to the whole head
  (128 on every Wan model).

Exact properties (tested): the logit of a (query, key) pair depends on ``t_i - tau_j`` only, and
pairs at equal times keep their un-rotated logit. Angles and their cosines/sines are computed in
float64 (times of a long video reach minutes); the rotation runs in float32 (or the input's dtype
when wider) and is cast back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

DEFAULT_MIN_PERIOD_S = 0.32
DEFAULT_MAX_PERIOD_S = 64.0


@dataclass(frozen=True)
class TimeRoPE:
    """Settings of the time-scaled RoPE of one adapter (stored in adapter format version 2).

    Attributes:
        rotary_dims: rotated dims per head (even, ``<=`` the head dim); the rest pass unchanged.
        min_period_s / max_period_s: period in seconds of the fastest / slowest rotating pair.

    Raises:
        ValueError: odd or non-positive ``rotary_dims``, or periods not ``0 < min <= max`` (finite).
    """

    rotary_dims: int = 128
    min_period_s: float = DEFAULT_MIN_PERIOD_S
    max_period_s: float = DEFAULT_MAX_PERIOD_S

    def __post_init__(self):
        if self.rotary_dims < 2 or self.rotary_dims % 2:
            raise ValueError(f"rotary_dims must be even and >= 2, got {self.rotary_dims}")
        if not (0 < self.min_period_s <= self.max_period_s < math.inf):
            raise ValueError(f"need 0 < min_period_s <= max_period_s < inf, got {self.min_period_s}, {self.max_period_s}")

    def periods_s(self) -> torch.Tensor:
        """``[rotary_dims / 2]`` float64 periods in seconds, log-spaced from min to max."""
        pairs = self.rotary_dims // 2
        if pairs == 1:
            return torch.tensor([math.sqrt(self.min_period_s * self.max_period_s)], dtype=torch.float64)
        return torch.logspace(math.log10(self.min_period_s), math.log10(self.max_period_s), pairs, dtype=torch.float64)

    def angles(self, times_s: torch.Tensor) -> torch.Tensor:
        """Rotation angles (radians, float64) ``[T, rotary_dims / 2]`` of tokens at ``times_s`` ``[T]`` (seconds)."""
        return times_s.to(torch.float64).reshape(-1, 1) * (2 * math.pi / self.periods_s().to(times_s.device))

    def tables(self, query_times_s: torch.Tensor, key_times_s: torch.Tensor, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> RopeTables:
        """Cosines and sines of the query latent frames and key windows (computed in float64), in ``dtype`` on ``device``."""
        q, k = self.angles(query_times_s), self.angles(key_times_s)
        return RopeTables(*(t.to(device=device, dtype=dtype) for t in (q.cos(), q.sin(), k.cos(), k.sin())))

    def to_dict(self) -> dict:
        """JSON-ready form (docs/ADAPTER_FORMAT.md, ``rope``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TimeRoPE:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["rotary_dims"]), float(data["min_period_s"]), float(data["max_period_s"]))


@dataclass(frozen=True)
class RopeTables:
    """Per-call rotation tables: ``q_*`` ``[Tq, r/2]`` per latent frame, ``k_*`` ``[Tk, r/2]`` per audio window."""

    q_cos: torch.Tensor
    q_sin: torch.Tensor
    k_cos: torch.Tensor
    k_sin: torch.Tensor

    def rotate_queries(self, q: torch.Tensor) -> torch.Tensor:
        """``q`` ``[B, H, Tq * S, d]`` (frame-major) rotated at its frames' times."""
        return rotate(q, self.q_cos, self.q_sin)

    def rotate_keys(self, k: torch.Tensor) -> torch.Tensor:
        """``k`` ``[B, H, Tk * N, d]`` (window-major) rotated at its windows' times."""
        return rotate(k, self.k_cos, self.k_sin)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE of ``x`` ``[B, H, T * S, d]`` with per-group ``cos``/``sin`` ``[T, r/2]``.

    Token ``n`` uses row ``n // S`` (every token of a frame or window shares its time). The first
    ``r`` dims are rotated as pairs ``(x[k], x[k + r/2])``, the others pass unchanged.

    Returns:
        A tensor like ``x`` (same dtype).

    Raises:
        ValueError: ``T * S`` tokens do not split into ``T`` groups, or ``r`` exceeds the head dim.
    """
    groups, half = cos.shape
    tokens, dim = x.shape[-2], x.shape[-1]
    if tokens % groups or 2 * half > dim:
        raise ValueError(f"RoPE tables for {groups} groups x {2 * half} dims do not fit x {tuple(x.shape)}")
    work = torch.promote_types(x.dtype, torch.float32)
    cos = cos.to(device=x.device, dtype=work).repeat_interleave(tokens // groups, dim=0)
    sin = sin.to(device=x.device, dtype=work).repeat_interleave(tokens // groups, dim=0)
    x1, x2, rest = x[..., :half].to(work), x[..., half:2 * half].to(work), x[..., 2 * half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)
    return torch.cat([rotated, rest], dim=-1) if rest.shape[-1] else rotated
