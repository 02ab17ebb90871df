"""Put two avatars' frames side by side (or stacked) into one dyadic conversation video.

Rules (what a creator gets, and what the tests check):

* **Size**: side by side, both clips are resized to the taller clip's height; stacked, to the
  wider clip's width; each keeps its aspect ratio. Resizing is bicubic with antialiasing
  (``torch.nn.functional.interpolate(..., antialias=True)``), clamped to 0..1; a clip already
  at the target size is copied unchanged. An optional black ``gap`` separates the two, and the
  canvas is padded with black by one pixel at the right/bottom where needed to make both sides
  even (H.264 in yuv420p, which Save Video writes, needs even sizes).
* **Length**: two avatars rendered from the same conversation at the same fps have (nearly) the
  same length; differences come from rounding to 4n+1 frames or from window settings.
  ``hold_last_frame`` (default) lasts as long as the longer clip, the shorter holding its last
  frame, but at most :data:`MAX_HOLD_S` seconds: a longer difference means the clips were not
  rendered from the same conversation or fps, which is reported as an error. ``trim_to_shortest``
  cuts both to the shorter clip, whatever the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import BMInputError

LAYOUTS = ("side_by_side", "stacked")
LENGTH_RULES = ("hold_last_frame", "trim_to_shortest")
MAX_HOLD_S = 1.0
CHUNK_FRAMES = 16


def check_frames(images: object, input_name: str) -> torch.Tensor:
    """Validate a ComfyUI IMAGE batch used as video frames.

    Returns:
        ``[F, H, W, 3]`` (an alpha channel is dropped; no copy is made).

    Raises:
        BMInputError: not a float ``[F, H, W, 3 or 4]`` tensor, or no frames.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise BMInputError(input_name, f"is not an IMAGE batch [frames, height, width, 3] (got {shape}).",
                           "connect the IMAGE output of BM Decode Video or VAE Decode.")
    if not images.is_floating_point():
        raise BMInputError(input_name, f"has dtype {images.dtype}; IMAGE values are floats in 0..1.",
                           "connect an IMAGE output of a ComfyUI node.")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise BMInputError(input_name, f"is empty (shape {tuple(images.shape)}).", "connect a video with frames.")
    return images[..., :3]


def output_length(len_a: int, len_b: int, length_rule: str, fps: float) -> int:
    """Frames of the composed video for clips of ``len_a`` and ``len_b`` frames (see module rules).

    Raises:
        BMInputError: ``hold_last_frame`` would hold a still frame for more than :data:`MAX_HOLD_S`
            seconds, or an unknown rule.
    """
    if length_rule == "trim_to_shortest":
        return min(len_a, len_b)
    if length_rule != "hold_last_frame":
        raise BMInputError("length_rule", f"is {length_rule!r}.", f"use one of {', '.join(LENGTH_RULES)}.")
    difference = abs(len_a - len_b)
    if difference > MAX_HOLD_S * fps:
        shorter = "image_a" if len_a < len_b else "image_b"
        raise BMInputError(shorter, f"has {min(len_a, len_b)} frames and the other clip {max(len_a, len_b)}: "
                           f"{difference} frames ({difference / fps:.2f} s at {fps:g} fps) would hold one still frame "
                           f"(at most {MAX_HOLD_S:g} s is held).",
                           "render both avatars from the same conversation at the same fps, "
                           "or set length_rule to trim_to_shortest.")
    return max(len_a, len_b)


@dataclass(frozen=True)
class Placement:
    """Where one clip goes on the canvas, in pixels: top-left corner and (resized) size."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class DyadicLayout:
    """Canvas size and the two clips' placements."""

    height: int
    width: int
    a: Placement
    b: Placement


def plan_layout(size_a: tuple[int, int], size_b: tuple[int, int], layout: str, gap: int) -> DyadicLayout:
    """Place two clips of ``(height, width)`` sizes side by side or stacked (see module rules).

    Raises:
        BMInputError: unknown layout or negative gap.
    """
    if layout not in LAYOUTS:
        raise BMInputError("layout", f"is {layout!r}.", f"use one of {', '.join(LAYOUTS)}.")
    if gap < 0:
        raise BMInputError("gap", f"is {gap} pixels.", "use 0 or more.")
    (ha, wa), (hb, wb) = size_a, size_b
    if layout == "side_by_side":
        height = max(ha, hb)
        wa, wb = (max(1, round(w * height / h)) for h, w in ((ha, wa), (hb, wb)))
        a, b = Placement(0, 0, height, wa), Placement(0, wa + gap, height, wb)
        canvas = (height, wa + gap + wb)
    else:
        width = max(wa, wb)
        ha, hb = (max(1, round(h * width / w)) for h, w in ((ha, wa), (hb, wb)))
        a, b = Placement(0, 0, ha, width), Placement(ha + gap, 0, hb, width)
        canvas = (ha + gap + hb, width)
    return DyadicLayout(canvas[0] + canvas[0] % 2, canvas[1] + canvas[1] % 2, a, b)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[n, H, W, 3]`` frames to ``[n, height, width, 3]`` (bicubic, antialiased, clamped to 0..1)."""
    if frames.shape[1:3] == (height, width):
        return frames
    resized = torch.nn.functional.interpolate(frames.movedim(-1, 1).float(), size=(height, width), mode="bicubic",
                                              antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0).movedim(1, -1)


def compose_dyadic(image_a: torch.Tensor, image_b: torch.Tensor, layout: str = "side_by_side",
                   length_rule: str = "hold_last_frame", fps: float = 25.0, gap: int = 0,
                   on_chunk: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Compose two avatars' frames into one video.

    Args:
        image_a: ``[Fa, Ha, Wa, 3]`` float 0..1, left (or top).
        image_b: ``[Fb, Hb, Wb, 3]`` float 0..1, right (or bottom).
        layout: ``"side_by_side"`` or ``"stacked"``.
        length_rule: ``"hold_last_frame"`` or ``"trim_to_shortest"``.
        fps: frame rate, used to express the hold limit in frames.
        gap: black pixels between the two clips.
        on_chunk: called as ``on_chunk(done_frames, total_frames)`` after each chunk of frames.

    Returns:
        IMAGE ``[F, H, W, 3]`` float32 on ``image_a``'s device (sizes and ``F`` per the module rules).

    Raises:
        BMInputError: see :func:`output_length` and :func:`plan_layout`.
    """
    total = output_length(image_a.shape[0], image_b.shape[0], length_rule, fps)
    plan = plan_layout(tuple(image_a.shape[1:3]), tuple(image_b.shape[1:3]), layout, gap)
    canvas = torch.zeros((total, plan.height, plan.width, 3), dtype=torch.float32, device=image_a.device)
    for start in range(0, total, CHUNK_FRAMES):
        end = min(total, start + CHUNK_FRAMES)
        for clip, place in ((image_a, plan.a), (image_b, plan.b)):
            index = torch.arange(start, end, device=clip.device).clamp_(max=clip.shape[0] - 1)
            frames = resize_frames(clip.index_select(0, index), place.height, place.width)
            canvas[start:end, place.top:place.top + place.height, place.left:place.left + place.width] = frames
        if on_chunk is not None:
            on_chunk(end, total)
    return canvas
