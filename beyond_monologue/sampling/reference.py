"""The reference portrait as conditioning: encoded once with the native VAE, placed by guide position.

Guide positions (``guide_position`` of BM Sampler):

* ``past_end``: Beyond Monologue's arbitrary-position guide (arXiv 2604.10367, Sec. 3.3, Table 4):
  the clean reference latent is appended to every window with RoPE time index
  ``window latents - 1 + guide_offset`` (offset 1 = one latent past the window's end, the paper's
  best "22" for a 21-latent window; offset 0 shares the last latent's index, "21", which the
  paper found limits motion; larger offsets weaken the guide). It holds identity and colour in
  every window without becoming a frame of the video. Needs a DiT whose input is the latent
  alone (Wan2.2-TI2V-5B, Wan T2V).
* ``first_frame``: the reference is frame 0 of the first window, the way each backbone does
  image-to-video natively: Wan2.2-TI2V-5B as a clean first latent (ComfyUI
  ``Wan22ImageToVideoLatent``: denoise mask 0, per-frame timestep 0), Wan2.1-I2V through its
  image-concat input (ComfyUI ``WanImageToVideo``: ``concat_latent_image`` = the reference then
  grey frames, ``concat_mask`` 0 on latent 0) in *every* window, with the CLIP vision output.
  That is how InfiniteTalk was trained (reference as frame 0 through the I2V concat, as
  ComfyUI's own InfiniteTalk support feeds it to every chunk); the paper found first-frame
  guidance weakest on its own model.
* ``auto``: ``first_frame`` on image-concat (I2V) models, else ``past_end``.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.utils
import node_helpers
import torch

from ..errors import BMInputError
from ..model.wan_patch import WanBackbone
from ..timebase import frame_count

GUIDE_POSITIONS = ("auto", "past_end", "first_frame")
GREY = 0.5  # the fill of frames after the reference in the I2V concat video (ComfyUI WanImageToVideo)


@dataclass(frozen=True)
class Reference:
    """The encoded reference and how it conditions each window.

    Attributes:
        position: ``"past_end"`` or ``"first_frame"`` (resolved).
        latent: ``[1, C, 1, h, w]`` float32, the reference in the VAE's latent space.
        concat: I2V models only: ``[1, C, W, h, w]`` latent of the reference followed by grey
            frames for a full window of ``W`` latents (sliced for shorter windows; the VAE is
            causal, so a prefix encodes to a prefix); else None.
        clip_vision_output: ComfyUI CLIP_VISION_OUTPUT for I2V models, or None.
    """

    position: str
    latent: torch.Tensor
    concat: torch.Tensor | None = None
    clip_vision_output: object | None = None

    def conditioning(self, conditioning: list, num_latents: int) -> list:
        """``conditioning`` with the I2V image conditioning of a window of ``num_latents`` (unchanged otherwise)."""
        values = {}
        if self.concat is not None:
            concat = self.concat[:, :, :num_latents]
            mask = torch.ones((1, 1, num_latents, *concat.shape[-2:]), dtype=concat.dtype)
            mask[:, :, 0] = 0.0  # latent 0 is given (ComfyUI's concat_mask: 0 = keep)
            values.update(concat_latent_image=concat, concat_mask=mask)
        if self.clip_vision_output is not None:
            values["clip_vision_output"] = self.clip_vision_output
        return node_helpers.conditioning_set_values(conditioning, values) if values else conditioning


def resolve_guide_position(position: str, model_backbone: WanBackbone) -> str:
    """``past_end`` or ``first_frame`` for this backbone.

    Raises:
        BMInputError: an unknown position, or ``past_end`` on an image-concat (I2V) model.
    """
    if position not in GUIDE_POSITIONS:
        raise BMInputError("guide_position", f"is {position!r}.", f"use one of {', '.join(GUIDE_POSITIONS)}.")
    i2v = model_backbone.image_concat_channels > 0
    if position == "auto":
        return "first_frame" if i2v else "past_end"
    if position == "past_end" and i2v:
        raise BMInputError("guide_position", "past_end needs a model whose input is the latent alone; this is an "
                           "image-to-video model (Wan2.1-I2V) trained with the reference as frame 0 through its image input.",
                           "use auto or first_frame with Wan2.1-I2V / InfiniteTalk; past_end is for Wan2.2-TI2V-5B.")
    return position


def conditioning_clip_vision(conditioning: list):
    """The ``clip_vision_output`` a CONDITIONING carries (set by WanImageToVideo and the like), or None."""
    for entry in conditioning or []:
        if isinstance(entry, (list, tuple)) and len(entry) > 1 and isinstance(entry[1], dict):
            found = entry[1].get("clip_vision_output")
            if found is not None:
                return found
    return None


def require_clip_vision(model_backbone: WanBackbone, clip_vision_output, positive: list, allow_missing: bool):
    """The CLIP vision output an I2V run uses: the input, else the one ``positive`` carries.

    MeiGen-AI/InfiniteTalk ``wan/multitalk.py`` feeds the CLIP ViT-H features of the reference
    (``clip_fea``) to Wan2.1-I2V in every pass of every step; the model was trained with them.

    Returns:
        The CLIP_VISION_OUTPUT to add to every window's conditioning, or None (no CLIP image
        embedding in this model, or the user opted out).

    Raises:
        BMInputError: a model with a CLIP image embedding, no CLIP vision output anywhere, and
            ``allow_missing`` False.
    """
    if not model_backbone.clip_image_embedding:
        return None
    found = clip_vision_output if clip_vision_output is not None else conditioning_clip_vision(positive)
    if found is None and not allow_missing:
        raise BMInputError("clip_vision_output", "is not connected, but this image-to-video model (Wan2.1-I2V, as "
                           "InfiniteTalk uses it) was trained with CLIP vision features of the reference at every "
                           "step; without them identity and detail suffer.",
                           "add Load CLIP Vision (clip_vision_h.safetensors) -> CLIP Vision Encode (crop: none) of "
                           "the reference image and connect it to clip_vision_output, or switch "
                           "allow_missing_clip_vision on to run without.")
    return found


def fit_image(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The first IMAGE of a batch scaled and centre-cropped to ``width x height`` (ComfyUI's ``common_upscale``).

    Args:
        image: IMAGE ``[B, H, W, C]`` float in 0..1 (only ``[0]`` and its RGB channels are used).

    Returns:
        ``[1, height, width, 3]``.

    Raises:
        BMInputError: not an IMAGE tensor.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] < 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise BMInputError("reference", f"is {shape}, not an IMAGE [batch, height, width, 3].", "connect Load Image.")
    pixels = image[:1, :, :, :3].movedim(-1, 1)
    return comfy.utils.common_upscale(pixels, width, height, "bilinear", "center").movedim(1, -1)


def encode_reference(vae, image: torch.Tensor, width: int, height: int, position: str, model_backbone: WanBackbone,
                     window_latents: int, clip_vision_output=None) -> Reference:
    """Encode the reference once with the native VAE for the chosen (resolved) guide position.

    Args:
        vae: ComfyUI VAE matching the MODEL's latent format.
        image: the reference IMAGE.
        width, height: video size in pixels.
        position: ``"past_end"`` or ``"first_frame"`` (see :func:`resolve_guide_position`).
        model_backbone: the MODEL's backbone (I2V models get the concat latent and CLIP vision).
        window_latents: latents of a full window (length of the I2V concat latent).
        clip_vision_output: optional CLIP_VISION_OUTPUT (used by I2V models only).

    Raises:
        BMInputError: ``image`` is not an IMAGE.
    """
    pixels = fit_image(image, width, height)
    latent = vae.encode(pixels).float().cpu()
    concat = None
    if model_backbone.image_concat_channels > 0:
        video = torch.full((frame_count(window_latents), height, width, 3), GREY, dtype=pixels.dtype)
        video[:1] = pixels
        concat = vae.encode(video).float().cpu()
    else:
        clip_vision_output = None  # only the I2V DiT has the CLIP image cross-attention
    return Reference(position, latent, concat, clip_vision_output)
