"""Multi-head Gaussian kernel (MHGK): the per-head temporal bias of the audio cross-attention.

Beyond Monologue (arXiv 2604.10367, Sec. 3.2.2, the MHGK equation) subtracts from the logits of
head ``h`` of the 3D audio-visual cross-attention the bias

    B_h(i, j) = alpha_h * (1 - exp(-(t_i - tau_j)^2 / (2 sigma_h^2)))

where ``t_i`` is the time of the video query token's latent frame and ``tau_j`` the time of the
audio token's window. Both are in seconds from :func:`beyond_monologue.timebase.latent_times_s`
(the centre of the latent's video frames; a latent frame and its own audio window share a time),
so the bias depends only on (query latent frame, key window) and is stored as a small table
``[H, T_video_latents, T_audio_windows]``; :mod:`beyond_monologue.model.mhgk_attention` applies it
without ever materialising ``[H, L_video, L_audio]``.

Limits (exact, tested): ``sigma_h = 0`` (with any ``alpha_h``, ``inf`` included) penalises every
window but the query's own by ``alpha_h``, so ``alpha_h -> inf`` is frame-local attention (the
public InfiniteTalk/MultiTalk adapter); ``sigma_h = inf`` or ``alpha_h = 0`` gives ``B_h = 0``,
plain global attention.

Default schedule (the paper publishes none; "progressive across heads", Sec. 3.2.2). One latent
frame is 4 video frames = 0.16 s at 25 fps. Per stream, ``sigma_h`` is log-spaced over the heads:

* talk: 0.04 s .. 2.56 s (6 octaves). The narrowest heads (sigma = a quarter latent) give the
  neighbouring latent, 0.16 s away, the full penalty (1 - e^-8); they carry lip sync. The widest
  reach a phrase (most of an 81-frame, 3.24 s window).
* listen: 0.16 s .. 10.24 s (6 octaves). The narrowest heads follow the interlocutor latent by
  latent (one latent = one sigma); the widest see a whole 3.24 s window with at most
  1 - exp(-3.24^2 / (2 * 10.24^2)) = 4.9 % of alpha: close to global context for reactions.
* alpha = 8 for every head of both streams: a fully penalised window keeps e^-8 = 3.4e-4 of the
  weight of an unpenalised one with equal logits, i.e. a near-hard mask for the narrow heads that
  stays finite (bf16-safe, trainable); for wide heads alpha hardly matters.

Checkpoints carry their own schedule (docs/ADAPTER_FORMAT.md); nodes may override it per head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import BMInputError
from ..timebase import latent_times_s

STREAMS = ("talk", "listen")
DEFAULT_ALPHA = 8.0
DEFAULT_SIGMA_RANGE_S = {"talk": (0.04, 2.56), "listen": (0.16, 10.24)}


def progressive_sigmas(num_heads: int, sigma_min_s: float, sigma_max_s: float) -> tuple[float, ...]:
    """Per-head sigma in seconds, log-spaced from ``sigma_min_s`` (head 0) to ``sigma_max_s`` (last head)."""
    if num_heads < 1 or not 0 < sigma_min_s <= sigma_max_s:
        raise ValueError(f"need num_heads >= 1 and 0 < sigma_min_s <= sigma_max_s, got {num_heads}, {sigma_min_s}, {sigma_max_s}")
    if num_heads == 1:
        return (float(math.sqrt(sigma_min_s * sigma_max_s)),)
    ratio = math.log(sigma_max_s / sigma_min_s)
    return tuple(float(sigma_min_s * math.exp(ratio * h / (num_heads - 1))) for h in range(num_heads))


@dataclass(frozen=True)
class MHGKKernel:
    """Per-head MHGK parameters of one audio stream's cross-attention.

    Attributes:
        sigma_s: per-head Gaussian width in seconds; ``0`` = frame-local, ``inf`` = global.
        alpha: per-head bias strength (logit units, >= 0); ``inf`` = hard mask: every pair at a
            non-zero time distance is masked, so the head is frame-local whatever its (finite or
            zero) sigma; with ``sigma = inf`` the bias is 0 and the head stays global.
    """

    sigma_s: tuple[float, ...]
    alpha: tuple[float, ...]

    def __post_init__(self):
        if len(self.sigma_s) != len(self.alpha) or not self.sigma_s:
            raise ValueError(f"sigma ({len(self.sigma_s)}) and alpha ({len(self.alpha)}) need one value per head")
        if any(not (s >= 0) for s in self.sigma_s) or any(not (a >= 0) for a in self.alpha):
            raise ValueError("sigma and alpha must be >= 0 (inf allowed, NaN not)")

    @property
    def num_heads(self) -> int:
        return len(self.sigma_s)

    @classmethod
    def default(cls, stream: str, num_heads: int) -> MHGKKernel:
        """The pack's documented default schedule for ``stream`` (see module docstring)."""
        lo, hi = DEFAULT_SIGMA_RANGE_S[stream]
        return cls(progressive_sigmas(num_heads, lo, hi), (DEFAULT_ALPHA,) * num_heads)

    @classmethod
    def frame_local(cls, num_heads: int) -> MHGKKernel:
        """``sigma = 0, alpha = inf`` on every head: each latent frame sees only its own window (InfiniteTalk)."""
        return cls((0.0,) * num_heads, (math.inf,) * num_heads)

    @classmethod
    def global_(cls, num_heads: int) -> MHGKKernel:
        """``sigma = inf`` on every head: plain global 3D cross-attention."""
        return cls((math.inf,) * num_heads, (0.0,) * num_heads)

    def with_overrides(self, sigma_s: Sequence[float] | None = None, alpha: Sequence[float] | None = None) -> MHGKKernel:
        """A copy with ``sigma_s`` and/or ``alpha`` replaced (one value, or one per head)."""
        return MHGKKernel(_per_head(sigma_s, self.sigma_s), _per_head(alpha, self.alpha))

    def to_dict(self) -> dict:
        """JSON-ready form (``inf`` written as the string ``"inf"``)."""
        return {"sigma_s": [_json_float(s) for s in self.sigma_s], "alpha": [_json_float(a) for a in self.alpha]}

    @classmethod
    def from_dict(cls, data: dict) -> MHGKKernel:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(s) for s in data["sigma_s"]), tuple(float(a) for a in data["alpha"]))

    def bias_table(self, query_times_s: torch.Tensor, key_times_s: torch.Tensor,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """The bias ``B_h(i, j)`` for every (query latent frame, audio window) pair.

        Args:
            query_times_s: ``[Tq]`` times of the video latent frames (seconds).
            key_times_s: ``[Tk]`` times of the audio windows (seconds).

        Returns:
            ``[H, Tq, Tk]`` in ``dtype`` (computed in float64). Values are ``>= 0`` and are
            subtracted from the logits; ``inf`` where ``alpha = inf`` masks a pair.
        """
        d = query_times_s.to(torch.float64).reshape(1, -1, 1) - key_times_s.to(torch.float64).reshape(1, 1, -1)
        sigma = torch.tensor(self.sigma_s, dtype=torch.float64, device=d.device).reshape(-1, 1, 1)
        alpha = torch.tensor(self.alpha, dtype=torch.float64, device=d.device).reshape(-1, 1, 1)
        with torch.no_grad():
            # g = 1 - exp(-d^2 / (2 sigma^2)) in [0, 1]; sigma = 0 -> (d != 0), sigma = inf -> 0.
            ratio = torch.where(d == 0, torch.zeros_like(d), d.square() / (2 * sigma.square()))
            g = -torch.expm1(-ratio)
            bias = torch.where(g == 0, torch.zeros_like(g), alpha * g)
        return bias.to(device=device, dtype=dtype)


def kernel_times(num_query_latents: int, num_key_windows: int, fps: float, query_first_latent: int = 0,
                 key_first_latent: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Times (seconds, float64) of a run of video latents and of a run of audio windows on one clock."""
    return (latent_times_s(num_query_latents, fps, query_first_latent),
            latent_times_s(num_key_windows, fps, key_first_latent))


def parse_per_head(text: str, num_heads: int, input_name: str) -> tuple[float, ...] | None:
    """Parse a node widget value: empty = no override; one number (all heads) or ``num_heads`` numbers.

    Numbers are separated by commas or spaces; ``inf`` is allowed.

    Raises:
        BMInputError: not numbers, a negative value, or a count other than 1 or ``num_heads``.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BMInputError(input_name, f"{text!r} is not a list of numbers.",
                           "write one number for all heads or one per head, e.g. '0.04, 0.16, inf'.") from None
    if any(not (v >= 0) for v in values):
        raise BMInputError(input_name, f"{text!r} has a negative or NaN value.", "use values >= 0 (inf allowed).")
    if len(values) not in (1, num_heads):
        raise BMInputError(input_name, f"has {len(values)} values but the adapter has {num_heads} heads.",
                           f"give one value or exactly {num_heads}.")
    return tuple(values) * num_heads if len(values) == 1 else tuple(values)


def _per_head(values: Sequence[float] | None, current: tuple[float, ...]) -> tuple[float, ...]:
    if values is None:
        return current
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return values * len(current)
    if len(values) != len(current):
        raise ValueError(f"expected 1 or {len(current)} values, got {len(values)}")
    return values


def _json_float(value: float) -> float | str:
    return "inf" if math.isinf(value) else float(value)
