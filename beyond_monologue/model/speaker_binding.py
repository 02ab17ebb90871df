"""Two speakers in one frame: InfiniteTalk/MultiTalk's L-RoPE speaker binding and per-speaker region routing.

Written from MeiGen-AI/InfiniteTalk ``wan/modules/attention.py`` (``SingleStreamMutiAttention``),
``wan/utils/multitalk_utils.py`` (``get_attn_map_with_target``, ``calculate_x_ref_attn_map``,
``normalize_and_scale``, ``RotaryPositionalEmbedding1D``) and ``wan/modules/multitalk_model.py``
(token masks), for the public multi-speaker patch (``wan2.1_infiniteTalk_multi``: the same keys as
the single one). Per DiT block:

1. **Region routing** (``x_ref_attn_map``): the block's self-attention queries of every video token
   (after Wan's 3D RoPE) attend, with a softmax over the tokens of latent frame 0 (the reference
   frame), to that frame's keys; the attention mass falling in speaker 1's region, speaker 2's
   region and the background (each averaged over the region's tokens, then over heads) gives a
   ``[3, L]`` map. Each token belongs to the class with the largest value.
2. **L-RoPE binding**: a token of class 1 gets the 1D position of its class-1 value min-max scaled to
   ``[0, 4]``, class 2 to ``[20, 24]``, background 12 (``class_range`` 24, ``class_interval`` 4). The
   audio tokens of speaker 1 sit at 2, speaker 2's at 22. Queries and keys are rotated with an
   interleaved 1D RoPE (base 10000 over the head dim), so a token near its speaker's position
   favours that speaker's audio. The binding is *soft*: every frame token still attends to both
   speakers' tokens of its own latent frame; the trained weights make the positional match decide.
3. The audio cross-attention itself is the single-speaker one (per latent frame, ``norm_x`` ->
   ``q_linear``; ``kv_linear`` on the frame's ``2 N`` tokens, speaker 1's first; ``proj``).

The official unconditional pass gives zero audio of *one* speaker (``zeros_like(audio)[-1:]``),
which takes the plain single-speaker path (no RoPE); :func:`binding_residual` is the two-speaker
path only. Masks are brought to the token grid with one nearest-neighbour resize (the official code
resizes to the latent grid, then to the token grid; the pack's choice: one step, the same on
grids that divide evenly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLASS_RANGE = 24  # WanAttentionBlock default class_range
CLASS_INTERVAL = 4  # WanAttentionBlock default class_interval
ROPE_BASE = 10000.0  # RotaryPositionalEmbedding1D
SPLIT_NUM = 2  # get_attn_map_with_target: heads averaged in 2 chunks (equal to averaging over all heads)
QUERY_CHUNK = 4096  # video tokens per chunk of the reference-attention softmax (memory bound)


@dataclass(frozen=True)
class SpeakerLayout:
    """The 1D positions of L-RoPE: speaker 1 in ``[0, interval]``, speaker 2 in ``[range - interval, range]``."""

    class_range: int = CLASS_RANGE
    class_interval: int = CLASS_INTERVAL

    @property
    def speaker_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (0.0, float(self.class_interval)), (float(self.class_range - self.class_interval), float(self.class_range))

    @property
    def background(self) -> float:
        return float(self.class_range // 2)

    def key_positions(self, tokens_per_speaker: int, device=None) -> torch.Tensor:
        """float32 ``[2 N]``: speaker 1's ``N`` tokens at the centre of its range, then speaker 2's."""
        (a0, a1), (b0, b1) = self.speaker_ranges
        return torch.cat([torch.full((tokens_per_speaker,), (a0 + a1) / 2), torch.full((tokens_per_speaker,), (b0 + b1) / 2)]).to(device)


def token_masks(region_masks: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Speaker 1, speaker 2 and background masks on the token grid.

    Args:
        region_masks: ``[2, H, W]`` (any size, values > 0 = inside) for speaker 1 and speaker 2.
        grid_hw: ``(N_h, N_w)`` tokens per latent frame.

    Returns:
        float32 ``[3, N_h * N_w]`` of 0/1: speaker 1, speaker 2, background (= neither speaker).

    Raises:
        ValueError: not two masks.
    """
    if region_masks.ndim != 3 or region_masks.shape[0] != 2:
        raise ValueError(f"need [2, H, W] speaker masks, got {tuple(region_masks.shape)}")
    small = F.interpolate(region_masks[None].float(), size=grid_hw, mode="nearest")[0] > 0
    background = ~(small[0] | small[1])
    return torch.stack([small[0], small[1], background]).flatten(1).float()


def reference_attention_map(q: torch.Tensor, k: torch.Tensor, frame_tokens: int, masks: torch.Tensor) -> torch.Tensor:
    """``x_ref_attn_map``: how much each video token attends to each class's region of latent frame 0.

    Args:
        q, k: ``[B, L, H, D]`` self-attention queries and keys of the block (after Wan's RoPE).
        frame_tokens: tokens per latent frame (``N_h * N_w``); frame 0's keys are the reference.
        masks: ``[C, frame_tokens]`` class masks (:func:`token_masks`).

    Returns:
        float32 ``[B, C, L]``: per class, the softmax mass over frame 0 inside the class's region
        divided by the region's size, averaged over heads (a class with an empty region gets 0).
    """
    ref = k[:, :frame_tokens].float().transpose(1, 2)  # [B, H, S, D]
    masks = masks.to(device=q.device, dtype=torch.float32)
    sizes = masks.sum(-1).clamp_min(1.0)
    scale = q.shape[-1] ** -0.5
    out = []
    for start in range(0, q.shape[1], QUERY_CHUNK):
        chunk = q[:, start:start + QUERY_CHUNK].float().transpose(1, 2) * scale  # [B, H, l, D]
        weights = torch.softmax(chunk @ ref.transpose(-2, -1), dim=-1)  # [B, H, l, S]
        per_class = torch.einsum("bhls,cs->bchl", weights, masks) / sizes[None, :, None, None]
        out.append(per_class.mean(2))  # mean over heads: [B, C, l]
    return torch.cat(out, dim=-1)


def query_positions(attn_map: torch.Tensor, layout: SpeakerLayout = SpeakerLayout()) -> torch.Tensor:
    """L-RoPE positions of the video tokens from their ``[B, 3, L]`` reference map (see module doc).

    Returns:
        float32 ``[B, L]``: class-1 tokens in speaker 1's range (their class-1 value min-max scaled over
        all tokens), class-2 tokens in speaker 2's range, background tokens at ``class_range // 2``.
    """
    positions = []
    for speaker, (low, high) in enumerate(layout.speaker_ranges):
        values = attn_map[:, speaker]
        vmin, vmax = values.amin(-1, keepdim=True), values.amax(-1, keepdim=True)
        positions.append((values - vmin) / (vmax - vmin + 1e-8) * (high - low) + low)
    positions.append(torch.full_like(attn_map[:, 0], layout.background))
    choice = attn_map.argmax(dim=1, keepdim=True)  # [B, 1, L]
    return torch.stack(positions, dim=1).gather(1, choice)[:, 0]


def rope_1d(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Interleaved 1D RoPE (pairs ``(x[2i], x[2i+1])`` at frequency ``base^(-2i/D)``) of ``x`` ``[B, H, L, D]``.

    Args:
        positions: ``[L]`` or ``[B, L]`` token positions.

    Returns:
        Like ``x`` (computed in float32, cast back).
    """
    dim = x.shape[-1]
    freqs = ROPE_BASE ** (-torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)
    angles = (positions.to(device=x.device, dtype=torch.float32)[..., None] * freqs).repeat_interleave(2, dim=-1)
    if angles.ndim == 3:  # [B, L, D] -> [B, 1, L, D]
        angles = angles[:, None]
    work = x.float()
    pairs = work.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return (work * angles.cos() + rotated * angles.sin()).to(x.dtype)


def binding_residual(attn, x: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                     layout: SpeakerLayout = SpeakerLayout()) -> torch.Tensor:
    """The two-speaker audio cross-attention residual of one block.

    Args:
        attn: the block's :class:`~beyond_monologue.model.duplex_adapter.AudioCrossAttention` of the
            InfiniteTalk layout (``norm_x``, ``q``, ``k``, ``v``, ``o``; no q/k norm).
        x: ``[B, Tq * S, dim]`` video tokens (frame-major).
        tokens: ``[B, Tq, 2 N, context_dim]`` audio tokens per latent frame, speaker 1's ``N`` first.
        positions: ``[B, Tq * S]`` or ``[Tq * S]`` query positions (:func:`query_positions`).

    Returns:
        ``[B, Tq * S, dim]`` in ``x.dtype``.
    """
    batch, length, dim = x.shape
    frames, keys = tokens.shape[1], tokens.shape[2]
    heads = attn.num_heads
    q = attn.q(attn.norm_x(x)).unflatten(-1, (heads, -1)).transpose(1, 2)  # [B, H, L, d]
    q = rope_1d(q, positions)
    k = attn.k(tokens).unflatten(-1, (heads, -1))  # [B, Tq, 2N, H, d]
    v = attn.v(tokens).unflatten(-1, (heads, -1))
    k = rope_1d(k.permute(0, 1, 3, 2, 4).flatten(0, 1), layout.key_positions(keys // 2, x.device))  # [(B Tq), H, 2N, d]
    v = v.permute(0, 1, 3, 2, 4).flatten(0, 1)
    q = q.unflatten(2, (frames, -1)).permute(0, 2, 1, 3, 4).flatten(0, 1)  # [(B Tq), H, S, d]
    out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype))  # each frame reads its own window only
    out = out.unflatten(0, (batch, frames)).permute(0, 1, 3, 2, 4).reshape(batch, length, dim)
    return attn.o(out)
