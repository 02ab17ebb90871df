"""Time bookkeeping between video frames, VAE latent frames, audio windows and seconds.

Wan's causal 3D VAE compresses time 4x and codes the first frame alone (ComfyUI
``comfy/ldm/wan/vae.py`` and ``vae2_2.py``): a clip of ``F = 4n + 1`` video frames has
``n + 1`` latent frames, latent 0 = frame 0 and latent ``k >= 1`` = frames ``4k-3 .. 4k``.

The audio of latent ``k`` is the audio of its video frames, widened by ``context`` frames on
each side (clamped at the ends of the stream). With ``context = 2`` this is exactly the window of
the public MultiTalk/InfiniteTalk adapter: 5 per-frame feature vectors for latent 0 and 8 for
every later latent (the 3+1+1+3 selection of ``AudioProjModel``, which covers the contiguous
frames ``4k-5 .. 4k+2``).

MHGK (paper Sec. 3.2.2) needs one time per query latent frame and one per audio window. Both are
the centre, in seconds, of the video frames the latent covers: ``0`` for latent 0 and
``(4k - 1.5) / fps`` for latent ``k >= 1``. A latent frame and its own audio window therefore
share a time, and different latents have different times, which is what makes the
``sigma -> 0`` limit of the kernel exactly frame-local attention.
"""

from __future__ import annotations

import torch

from .errors import BMInputError

VAE_TIME_STRIDE = 4
DEFAULT_AUDIO_CONTEXT_FRAMES = 2


def is_valid_frame_count(num_frames: int) -> bool:
    """True for ``4n + 1`` frame counts (1, 5, 9, ..., 81, ...)."""
    return num_frames >= 1 and (num_frames - 1) % VAE_TIME_STRIDE == 0


def latent_count(num_frames: int, input_name: str = "length") -> int:
    """Latent frames of a ``4n + 1``-frame clip: ``n + 1``.

    Raises:
        BMInputError: ``num_frames`` is not of the form ``4n + 1``.
    """
    if not is_valid_frame_count(num_frames):
        lower = max(1, num_frames - (num_frames - 1) % VAE_TIME_STRIDE)
        raise BMInputError(input_name, f"is {num_frames} frames; Wan's VAE needs 4n+1 frames.",
                           f"use {lower} or {lower + VAE_TIME_STRIDE}.")
    return (num_frames - 1) // VAE_TIME_STRIDE + 1


def frame_count(num_latents: int) -> int:
    """Video frames decoded from ``num_latents`` latent frames: ``4 (n - 1) + 1``."""
    return VAE_TIME_STRIDE * (num_latents - 1) + 1


def floor_frame_count(num_frames: int) -> int:
    """The largest ``4n + 1`` frame count not above ``num_frames`` (at least 1)."""
    return max(1, num_frames - (num_frames - 1) % VAE_TIME_STRIDE)


def frames_of_latent(k: int) -> tuple[int, int]:
    """First and last video frame (inclusive) coded by latent frame ``k``."""
    if k == 0:
        return 0, 0
    return VAE_TIME_STRIDE * k - (VAE_TIME_STRIDE - 1), VAE_TIME_STRIDE * k


def latent_times_s(num_latents: int, fps: float, first_latent: int = 0) -> torch.Tensor:
    """Time in seconds of latent frames ``first_latent .. first_latent + num_latents - 1``.

    Returns:
        float64 ``[num_latents]``: the centre of each latent's video frames (see module doc).
        For ``first_latent > 0`` (a window further into a long video) the times continue the
        same clock, so windows of a long video share one time axis.
    """
    k = torch.arange(first_latent, first_latent + num_latents, dtype=torch.float64)
    centre_frame = torch.where(k == 0, torch.zeros_like(k), VAE_TIME_STRIDE * k - (VAE_TIME_STRIDE - 1) / 2)
    return centre_frame / float(fps)


AUDIO_PADDINGS = ("clamp", "mirror")


def audio_window_frame_indices(num_latents: int, total_frames: int, context: int = DEFAULT_AUDIO_CONTEXT_FRAMES,
                               first_latent: int = 0, clip_start: bool = False,
                               padding: str = "clamp") -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per-frame feature indices of the audio windows of a run of latent frames.

    Args:
        num_latents: latent frames in the run.
        total_frames: frames in the whole audio stream.
        context: frames of audio context on each side of a latent's own frames.
        first_latent: latent index (on the whole stream's clock) of the run's first latent.
        clip_start: treat the run as a clip of its own (MeiGen-AI/InfiniteTalk ``wan/multitalk.py``:
            every clip's audio starts at the clip's frame 0 and its latent 0 takes the
            ``1 + 2 context`` window through ``proj1``): the run's first latent then gets the
            single-frame window centred on frame ``4 first_latent``, the last frame it codes on the
            long clock (latent 0 of the clip), also for ``first_latent > 0``. Later latents keep
            their ``4 + 2 context`` windows, which are the same on both clocks.
        padding: frames past the end of the stream: ``"clamp"`` repeats the last frame,
            ``"mirror"`` reflects the stream at its end (frame ``F + j`` reads frame ``F - 1 - j``,
            as InfiniteTalk pads the audio of its last clip with ``torch.flip``). Frames before 0
            are clamped in both modes (as the official code clamps).

    Returns:
        ``(first, rest)``: ``first`` is int64 ``[1 + 2 context]`` for latent 0 when the run
        starts at latent 0 (or always with ``clip_start``), else None; ``rest`` is int64
        ``[n, 4 + 2 context]`` for the other latents of the run (``n = num_latents - 1`` or
        ``num_latents``).

    Raises:
        ValueError: an unknown ``padding``.
    """
    if padding not in AUDIO_PADDINGS:
        raise ValueError(f"padding must be one of {AUDIO_PADDINGS}, not {padding!r}")
    offsets = torch.arange(-context, context + 1)
    first = None
    start = first_latent
    if first_latent == 0 or clip_start:
        first = _pad_indices(VAE_TIME_STRIDE * first_latent + offsets, total_frames, padding)
        start = first_latent + 1
    ks = torch.arange(start, first_latent + num_latents)
    low = VAE_TIME_STRIDE * ks - (VAE_TIME_STRIDE - 1) - context
    rest = low.unsqueeze(1) + torch.arange(VAE_TIME_STRIDE + 2 * context).unsqueeze(0)
    return first, _pad_indices(rest, total_frames, padding)


def _pad_indices(indices: torch.Tensor, total_frames: int, padding: str) -> torch.Tensor:
    if padding == "mirror":
        indices = torch.where(indices >= total_frames, 2 * total_frames - 1 - indices, indices)
    return indices.clamp(0, total_frames - 1)
