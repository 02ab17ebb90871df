"""The two speaker regions of a two-people frame, in the video's pixels (for ``DuplexCall.speakers``).

Two ways, as in MeiGen-AI/InfiniteTalk ``wan/multitalk.py``:

* ``masks``: one MASK per speaker drawn on the reference image (the official ``bbox`` input, as
  rectangles); they are scaled and centre-cropped exactly like the reference
  (:func:`beyond_monologue.sampling.reference.fit_image`).
* ``left_right``: the official default without boxes: speaker 1 in the left half, speaker 2 in the
  right half, each the box ``[face_scale, 1 - face_scale]`` of its half's width and of the height
  (``face_scale`` 0.05).

Speaker 1 speaks the ``talk`` stream of the BM_DUPLEX_AUDIO, speaker 2 the ``listen`` stream.
"""

from __future__ import annotations

import comfy.utils
import torch

from ..errors import BMInputError

SPEAKER_REGIONS = ("off", "masks", "left_right")
FACE_SCALE = 0.05  # wan/multitalk.py face_scale default


def left_right_masks(height: int, width: int, face_scale: float = FACE_SCALE) -> torch.Tensor:
    """float32 ``[2, height, width]``: the official default boxes of two people side by side."""
    masks = torch.zeros(2, height, width)
    top, bottom = int(height * face_scale), int(height * (1 - face_scale))
    half = width // 2
    low, high = int(half * face_scale), int(half * (1 - face_scale))
    masks[0, top:bottom, low:high] = 1
    masks[1, top:bottom, half + low:half + high] = 1
    return masks


def speaker_masks(mode: str, width: int, height: int, reference: torch.Tensor,
                  mask_1: torch.Tensor | None = None, mask_2: torch.Tensor | None = None) -> torch.Tensor | None:
    """The two speaker regions at the video's size, or None for one avatar.

    Args:
        mode: ``"off"``, ``"masks"`` or ``"left_right"``.
        width, height: video size in pixels.
        reference: the reference IMAGE ``[B, H, W, C]`` the masks were drawn on.
        mask_1, mask_2: MASK ``[H, W]`` or ``[1, H, W]`` (``masks`` mode), 0..1.

    Returns:
        float32 ``[2, height, width]`` (1 inside), or None.

    Raises:
        BMInputError: an unknown mode; ``masks`` mode with a mask missing, of another size than the
            reference, empty, or overlapping the other speaker's.
    """
    if mode not in SPEAKER_REGIONS:
        raise BMInputError("speaker_regions", f"is {mode!r}.", f"use one of {', '.join(SPEAKER_REGIONS)}.")
    if mode == "off":
        return None
    if mode == "left_right":
        return left_right_masks(height, width)
    fitted = []
    for name, mask in (("speaker_1_mask", mask_1), ("speaker_2_mask", mask_2)):
        if mask is None:
            raise BMInputError(name, "is not connected but speaker_regions is masks.",
                               "connect one MASK per speaker (drawn on the reference image), or use left_right.")
        if mask.ndim == 3:
            mask = mask[0]
        if mask.ndim != 2 or tuple(mask.shape) != tuple(reference.shape[1:3]):
            raise BMInputError(name, f"is {tuple(mask.shape)} but the reference image is {tuple(reference.shape[1:3])} "
                               "(height, width).", "draw the mask on the reference image itself (same size).")
        resized = comfy.utils.common_upscale(mask[None, None].float(), width, height, "nearest-exact", "center")[0, 0]
        if not (resized > 0.5).any():
            raise BMInputError(name, "covers nothing of the video frame.", "paint the speaker's face and body.")
        fitted.append((resized > 0.5).float())
    if (fitted[0] * fitted[1]).any():
        raise BMInputError("speaker_2_mask", "overlaps speaker_1_mask.",
                           "draw two separate regions, one per speaker.")
    return torch.stack(fitted)
