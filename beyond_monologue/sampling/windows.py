"""Sliding sampling windows of a long video, on one latent clock, and their seeds.

A long video of ``N`` latent frames is sampled as windows of ``W`` latents (``window_frames =
4 (W - 1) + 1`` video frames; 81 frames = 21 latents, the Wan/InfiniteTalk clip). Every window
after the first starts with the last ``M`` latents of the previous window (*motion latents*, kept
as latents: no decode/encode round trip), so windows advance by ``W - M`` latents and the
overlap is dropped from the output: every latent of the long video is generated exactly once.
The last window is shortened to what the audio still needs (at least one new latent), or, with
``full_last``, kept at ``W`` latents past the end of the audio (MeiGen-AI/InfiniteTalk
``wan/multitalk.py`` renders its last clip in full over audio mirrored at its end and trims the
video); the latents past the end are dropped.

Motion latents are the diffusion-forcing context of Beyond Monologue (arXiv 2604.10367, Sec. 3.3:
clean previous-chunk latents as context) and InfiniteTalk's ``motion_frame`` (MeiGen-AI/InfiniteTalk:
9 motion frames = 3 latents), here taken straight from the previous window's latents.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BMInputError

SEED_MODULUS = 2**64  # ComfyUI seeds are 64-bit (KSampler's seed widget)
SEED_STRIDE = 0x9E3779B97F4A7C15  # odd (2^64 / golden ratio): window seeds of one run never repeat


@dataclass(frozen=True)
class Window:
    """One sampling window.

    Attributes:
        index: 0-based window number.
        first_latent: the window's first latent on the long video's clock.
        num_latents: latents in the window (motion latents included).
        motion_latents: leading latents copied from the previous window (0 for the first window).
    """

    index: int
    first_latent: int
    num_latents: int
    motion_latents: int

    @property
    def new_latents(self) -> int:
        """Latents this window adds to the video (``num_latents - motion_latents``)."""
        return self.num_latents - self.motion_latents

    @property
    def end_latent(self) -> int:
        """One past the window's last latent on the long video's clock."""
        return self.first_latent + self.num_latents


def plan_windows(total_latents: int, window_latents: int, motion_latents: int, full_last: bool = False) -> list[Window]:
    """The windows covering latents ``0 .. total_latents - 1``.

    Args:
        total_latents: latent frames of the whole video (``n + 1`` for ``4n + 1`` frames).
        window_latents: latents per window (``W``); the first window is shortened when the video is shorter.
        motion_latents: latents each later window takes over from the previous one (``0 <= M < W``).
        full_last: every window has ``W`` latents; the last may end past ``total_latents``.

    Returns:
        Windows in order; the first starts at latent 0, window ``k + 1`` starts ``M`` latents before
        window ``k`` ends, the last ends at ``total_latents`` (or past it with ``full_last``).

    Raises:
        BMInputError: sizes that cannot make progress (``M >= W``, no latents).
    """
    if total_latents < 1:
        raise BMInputError("duplex_audio", "holds no video frames.", "encode at least one frame of audio.")
    if window_latents < 1:
        raise BMInputError("window_frames", "gives no latent frames.", "use 5 or more frames (4n+1).")
    if not 0 <= motion_latents < window_latents:
        raise BMInputError("motion_latents", f"is {motion_latents} but a window holds only {window_latents} latents.",
                           f"use 0 to {window_latents - 1} motion latents, or longer windows.")
    def size(start: int) -> int:
        return window_latents if full_last else min(window_latents, total_latents - start)

    windows = [Window(0, 0, size(0), 0)]
    while windows[-1].end_latent < total_latents:
        start = windows[-1].end_latent - motion_latents
        windows.append(Window(len(windows), start, size(start), motion_latents))
    return windows


def window_seed(seed: int, index: int) -> int:
    """The noise seed of window ``index`` of a run with ``seed`` (window 0 uses ``seed`` itself).

    Window 0's noise is therefore ComfyUI's own ``prepare_noise(latent, seed)``, as in KSampler; later
    windows use seeds spread over the 64-bit range, so a run's windows never share noise.
    """
    return (seed + index * SEED_STRIDE) % SEED_MODULUS
