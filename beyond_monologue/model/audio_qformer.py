"""Causal Audio Q-Former: per-latent-frame audio windows -> ``N`` audio tokens per window.

Beyond Monologue (arXiv 2604.10367, Sec. 3.2.1 and Fig. 2) compresses each stream (talk, listen)
with its own causal Q-Former: the wav2vec 2.0 hidden states of all layers are concatenated and
projected, and within each time window aligned to a video latent frame ``N`` learned queries
cross-attend to that window's audio. The paper gives neither ``N``, the depth nor the window; this
module is the pack's concrete design (documented in docs/ADAPTER_FORMAT.md):

* Windows are :meth:`DuplexAudio.latent_windows` with ``context`` frames each side: ``1 + 2c``
  frames for latent 0 and ``4 + 2c`` for later latents (5 and 8 for ``c = 2``, the
  InfiniteTalk/MultiTalk windows). Frames get a learned position per window slot
  (``pos_first`` / ``pos_rest``).
* Each layer: window-local cross-attention (queries of window ``t`` read only window ``t``'s
  frames), then block-causal self-attention over the queries of windows ``t - history .. t``
  with 1D RoPE on the window index, then an FFN (pre-LayerNorm residual blocks).
  The output of window ``t`` therefore depends on windows ``t - history * layers .. t`` only
  (:attr:`AudioQFormer.receptive_field`): causal, and a window's tokens are the same whether
  the stream is encoded whole or from ``receptive_field`` windows before it.
* ``null_tokens`` is the learned unconditional output used for classifier-free guidance
  (Sec. 3.2.1: zeros audio is out of distribution and causes colour shift at high audio CFG).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BMInputError


@dataclass(frozen=True)
class QFormerConfig:
    """Sizes of one Audio Q-Former (see module docstring). ``dim`` must divide by ``num_heads``."""

    audio_dim: int = 768
    audio_layers: int = 12
    context_frames: int = 2
    dim: int = 768
    context_dim: int = 768
    num_queries: int = 32
    num_layers: int = 2
    num_heads: int = 12
    history_windows: int = 16
    ffn_mult: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class _QFormerLayer(nn.Module):
    def __init__(self, cfg: QFormerConfig, ops, device=None, dtype=None):
        super().__init__()
        dim, kw = cfg.dim, {"device": device, "dtype": dtype}
        self.num_heads, self.history = cfg.num_heads, cfg.history_windows
        self.norm_cross = ops.LayerNorm(dim, eps=1e-6, **kw)
        self.cross_q = ops.Linear(dim, dim, **kw)
        self.cross_kv = ops.Linear(dim, 2 * dim, **kw)
        self.cross_o = ops.Linear(dim, dim, **kw)
        self.norm_self = ops.LayerNorm(dim, eps=1e-6, **kw)
        self.self_qkv = ops.Linear(dim, 3 * dim, **kw)
        self.self_o = ops.Linear(dim, dim, **kw)
        self.norm_ffn = ops.LayerNorm(dim, eps=1e-6, **kw)
        self.ffn = nn.Sequential(ops.Linear(dim, cfg.ffn_mult * dim, **kw), nn.GELU(approximate="tanh"),
                                 ops.Linear(cfg.ffn_mult * dim, dim, **kw))

    def _heads(self, x):
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-2, -3)  # [..., heads, tokens, head_dim]

    def _cross(self, queries, frames):
        """queries [T, N, dim] attend to their own window's frames [T, W, dim]."""
        q = self._heads(self.cross_q(queries))
        k, v = (self._heads(t) for t in self.cross_kv(frames).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.cross_o(out.transpose(-2, -3).flatten(-2))

    def _causal_self(self, x):
        """Block-causal attention over windows: window t sees windows t - history .. t (RoPE on window index)."""
        T, N, _ = x.shape
        q, k, v = (self._heads(t) for t in self.self_qkv(x).chunk(3, dim=-1))  # [T, heads, N, hd]
        pos = torch.arange(T, device=x.device, dtype=torch.float32)
        q, k = _rope(q, pos), _rope(k, pos)
        out = torch.empty_like(q)
        step = max(1, self.history)
        for first in range(0, T, step):
            end, low = min(first + step, T), max(0, first - self.history)
            qw = torch.arange(first, end, device=x.device).repeat_interleave(N)
            kw = torch.arange(low, end, device=x.device).repeat_interleave(N)
            mask = (kw[None, :] <= qw[:, None]) & (kw[None, :] >= qw[:, None] - self.history)
            qc = q[first:end].transpose(0, 1).flatten(1, 2)  # [heads, (end-first) N, hd]
            kc, vc = (t[low:end].transpose(0, 1).flatten(1, 2) for t in (k, v))
            oc = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask)
            out[first:end] = oc.unflatten(1, (end - first, N)).transpose(0, 1)
        return self.self_o(out.transpose(-2, -3).flatten(-2))

    def forward(self, queries, first_frames, rest_frames):
        normed = self.norm_cross(queries)
        cross = []
        if first_frames is not None:
            cross.append(self._cross(normed[:1], first_frames))
        if rest_frames is not None:
            cross.append(self._cross(normed[len(cross):], rest_frames))
        queries = queries + torch.cat(cross, dim=0)
        queries = queries + self._causal_self(self.norm_self(queries))
        return queries + self.ffn(self.norm_ffn(queries))


def _rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """1D rotary embedding (rotate-half, base 10000) of ``x [T, heads, N, hd]`` at positions ``pos [T]``."""
    half = x.shape[-1] // 2
    freqs = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = (pos[:, None] * freqs[None, :])[:, None, None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:2 * half]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., 2 * half:]], dim=-1)


class AudioQFormer(nn.Module):
    """One stream's causal Audio Q-Former (see module docstring for the design and the source).

    Args:
        cfg: sizes.
        operations: namespace with ``Linear`` and ``LayerNorm`` (``torch.nn`` or ``comfy.ops.*``).
    """

    def __init__(self, cfg: QFormerConfig, operations=None, device=None, dtype=None):
        super().__init__()
        ops = operations or nn
        kw = {"device": device, "dtype": dtype}
        self.cfg = cfg
        c = cfg.context_frames
        self.in_proj = ops.Linear(cfg.audio_layers * cfg.audio_dim, cfg.dim, **kw)
        self.in_norm = ops.LayerNorm(cfg.dim, eps=1e-6, **kw)
        self.pos_first = nn.Parameter(torch.empty(1 + 2 * c, cfg.dim, **kw))
        self.pos_rest = nn.Parameter(torch.empty(4 + 2 * c, cfg.dim, **kw))
        self.queries = nn.Parameter(torch.empty(cfg.num_queries, cfg.dim, **kw))
        self.layers = nn.ModuleList(_QFormerLayer(cfg, ops, **kw) for _ in range(cfg.num_layers))
        self.out_proj = ops.Linear(cfg.dim, cfg.context_dim, **kw)
        self.out_norm = ops.LayerNorm(cfg.context_dim, eps=1e-6, **kw)
        self.null_tokens = nn.Parameter(torch.empty(cfg.num_queries, cfg.context_dim, **kw))

    @property
    def receptive_field(self) -> int:
        """Earlier windows a window's output depends on (``history_windows * num_layers``)."""
        return self.cfg.history_windows * self.cfg.num_layers


    def _frames(self, windows: torch.Tensor, pos: nn.Parameter) -> torch.Tensor:
        x = self.in_proj(windows.flatten(-2))
        return self.in_norm(x) + pos.to(x)

    def forward(self, first: torch.Tensor | None, rest: torch.Tensor | None) -> torch.Tensor:
        """Encode consecutive windows.

        Args:
            first: ``[1 + 2c, L, D]`` window of latent 0, or None when the run starts later.
            rest: ``[n, 4 + 2c, L, D]`` windows of the following latents (``n`` may be 0 / None).

        Returns:
            ``[T, N, context_dim]`` with ``T = (first is not None) + n``, in the input's dtype.

        Raises:
            BMInputError: features of another encoder size (``L x D``) than the Q-Former's.
        """
        sample = first if first is not None else rest
        expected = (self.cfg.audio_layers, self.cfg.audio_dim)
        if sample is None or tuple(sample.shape[-2:]) != expected:
            got = None if sample is None else tuple(sample.shape[-2:])
            raise BMInputError("audio", f"features are {got} (layers x dim) but the adapter's Q-Former expects {expected}.",
                               "encode the audio with the wav2vec2 model the adapter was trained with.")
        first_frames = None if first is None else self._frames(first, self.pos_first).unsqueeze(0)
        rest_frames = None if rest is None or rest.shape[0] == 0 else self._frames(rest, self.pos_rest)
        count = (first_frames is not None) + (0 if rest_frames is None else rest_frames.shape[0])
        x = self.queries.to(sample).unsqueeze(0).expand(count, -1, -1)
        for layer in self.layers:
            x = layer(x, first_frames, rest_frames)
        return self.out_norm(self.out_proj(x))

    def null(self, num_windows: int, first_included: bool, device=None, dtype=None) -> torch.Tensor:
        """The learned unconditional output, ``[num_windows, N, context_dim]`` (the same for every window)."""
        del first_included
        return self.null_tokens.to(device=device, dtype=dtype).unsqueeze(0).expand(num_windows, -1, -1)
