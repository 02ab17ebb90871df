"""Decode Wan video latents window by window with ComfyUI's own VAE, in memory that does not grow with length.

Wan's 3D VAE decodes time causally (ComfyUI ``comfy/ldm/wan/vae.py`` and ``vae2_2.py``,
``WanVAE.decode``): its decoder is called once per latent frame, latent 0 alone (-> 1 video frame)
and every later latent after it (-> 4 video frames each), and each causal 3D convolution carries
the last two frames of its input from call to call in a feature cache. Decoding latent windows
independently would restart that cache at each window and change the frames at the seams (and
turn the first latent of every window into a single frame).

This module drives the same decoder with the same cache, one latent frame (= one window) at a
time, and writes each window straight into the output IMAGE tensor. The rule, and what the tests
check: the frames are those of ComfyUI's one-shot ``VAE.decode`` up to float rounding (no seam),
while the VAE's working memory stays that of one latent frame and nothing but the output grows
with the video's length (to 1e-5 and by peak RSS, in the tests; numbers in
``bench/video_decode_memory.py``). ComfyUI's own ``VAE.decode`` instead keeps every decoded window on
the VAE device, growing one tensor by ``torch.cat`` per latent frame, and makes several more
full-length copies on the way out (to the output device, to float32, ``process_output``, into
the result). ComfyUI's tiled decode cuts time into overlapping windows decoded independently and
blended, which changes the frames near each seam.

Spatial tiling (``tile=``) keeps one causal cache per spatial tile and blends the tiles with
ComfyUI's ``comfy.utils.tiled_scale_multidim``: the frames equal ComfyUI's ``VAE.decode_tiled``
with one temporal tile covering the whole clip, again in the memory of one latent frame.

Other video VAEs with Wan's latent layout (e.g. the light ``taew2_1``/``taew2_2`` decoders)
are decoded by ComfyUI's ``VAE.decode`` / ``decode_tiled`` unchanged, with its memory behaviour.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import comfy.ldm.wan.vae as wan21_vae
import comfy.ldm.wan.vae2_2 as wan22_vae
import comfy.model_management
import comfy.utils
import torch

from ..errors import BMInputError

WAN22_PATCH_SIZE = 2  # vae2_2.WanVAE.decode unpatchifies its 12-channel output by 2x2
WAN_TIME_STRIDE = 4
VAE_FILES_HINT = ("load the matching VAE with Load VAE: wan_2.1_vae.safetensors for 16-channel latents "
                  "(Wan2.1, Wan2.2-14B), wan2.2_vae.safetensors for 48-channel latents (Wan2.2-TI2V-5B).")


@dataclass(frozen=True)
class TileSpec:
    """Spatial tiling of a decode, in latent pixels (multiply by the VAE's spatial stride for image pixels).

    Attributes:
        size: tile width and height in latent pixels (>= 1).
        overlap: overlap of neighbouring tiles in latent pixels (``0 <= overlap < size``).
    """

    size: int
    overlap: int

    @classmethod
    def from_pixels(cls, tile_px: int, overlap_px: int, spatial_stride: int) -> TileSpec:
        """Tile and overlap given in image pixels (as on ComfyUI's VAE Decode (Tiled)) for a VAE of ``spatial_stride``."""
        size = max(1, tile_px // spatial_stride)
        return cls(size, min(size - 1, overlap_px // spatial_stride))


def check_video_latent(latent: object, vae: object) -> torch.Tensor:
    """Validate a Wan video LATENT against the VAE that will decode it.

    Args:
        latent: ComfyUI LATENT dict; ``samples`` is ``[1, C, T_lat, H/s, W/s]`` (C = 16, s = 8 for
            the Wan2.1 VAE; C = 48, s = 16 for the Wan2.2 VAE).
        vae: a ``comfy.sd.VAE``.

    Returns:
        The ``samples`` tensor (not copied).

    Raises:
        BMInputError: not a LATENT, not a 5-D video latent, a batch of more than one video,
            NaN/inf values, an empty or non-video VAE, or a VAE for a different channel count.
    """
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise BMInputError("latent", "is not a LATENT value (a dict with a 'samples' tensor).",
                           "connect the LATENT output of the sampler.")
    samples = latent["samples"]
    if samples.ndim != 5:
        raise BMInputError("latent", f"is a {samples.ndim}-D tensor {tuple(samples.shape)}; a video latent is "
                           "[batch, channels, latent frames, height, width].",
                           "connect a video latent (from the BM sampler or a Wan sampler), not an image latent.")
    if min(samples.shape[2:]) < 1:
        raise BMInputError("latent", f"is empty (shape {tuple(samples.shape)}).", "connect the sampler's LATENT output.")
    if samples.shape[0] != 1:
        raise BMInputError("latent", f"holds a batch of {samples.shape[0]} videos; this node decodes one video "
                           "with its audio.", "pick one with Latent From Batch, or use one decode node per video.")
    if getattr(vae, "first_stage_model", None) is None:
        raise BMInputError("vae", "holds no VAE weights.", VAE_FILES_HINT)
    if getattr(vae, "latent_dim", None) != 3 or vae.temporal_compression_decode() != WAN_TIME_STRIDE:
        raise BMInputError("vae", "is not a Wan video VAE (3-D latents, 4x time compression).", VAE_FILES_HINT)
    channels = samples.shape[1]
    if channels != vae.latent_channels:
        raise BMInputError("vae", f"decodes {vae.latent_channels}-channel latents but the latent has {channels} "
                           "channels.", VAE_FILES_HINT)
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples)).sum())
        raise BMInputError("latent", f"contains {bad} NaN or infinite values (the sampler diverged).",
                           "sample again, e.g. in a higher-precision dtype or with fewer steps of high CFG.")
    return samples


def decoded_frame_count(num_latents: int) -> int:
    """Video frames from ``num_latents`` Wan latent frames: ``4 (T_lat - 1) + 1``."""
    return WAN_TIME_STRIDE * (num_latents - 1) + 1


def supports_streaming(vae: object) -> bool:
    """True when the VAE's model is one of ComfyUI's Wan VAEs, whose causal decoder this module can drive."""
    return type(getattr(vae, "first_stage_model", None)) in (wan21_vae.WanVAE, wan22_vae.WanVAE)


class CausalWanDecoder:
    """ComfyUI's Wan VAE decoder, called one latent frame at a time with its causal feature cache.

    Step for step what ``WanVAE.decode`` does inside its loop (``conv2``, then ``decoder`` with the
    shared ``feat_cache``; the Wan2.2 decoder gets ``first_chunk=True`` on latent 0 and its output
    is unpatchified 2x2), so the frames match a one-shot decode up to float rounding.

    Args:
        model: ``comfy.ldm.wan.vae.WanVAE`` or ``comfy.ldm.wan.vae2_2.WanVAE``.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.is_wan22 = isinstance(model, wan22_vae.WanVAE)
        module = wan22_vae if self.is_wan22 else wan21_vae
        self.cache: list = [None] * module.count_conv3d(model.decoder)
        self.latents_done = 0
        self.shape: tuple[int, ...] | None = None

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """Decode the next latent frame.

        Args:
            z: ``[B, C, 1, h, w]`` in the VAE's dtype on its device; the same ``h, w`` every step.

        Returns:
            Raw decoder output ``[B, 3, t, h*s, w*s]`` (``t`` = 1 for latent 0, else 4), values
            about -1..1 (apply the VAE's ``process_output``).
        """
        if z.shape[2] != 1:
            raise ValueError(f"CausalWanDecoder.step takes one latent frame, got {z.shape[2]}")
        if self.shape is None:
            self.shape = tuple(z.shape)
        elif tuple(z.shape) != self.shape:
            raise RuntimeError(f"causal cache of a {self.shape} stream fed a {tuple(z.shape)} latent frame")
        extra = {"first_chunk": True} if self.is_wan22 and self.latents_done == 0 else {}
        out = self.model.decoder(self.model.conv2(z), feat_cache=self.cache, feat_idx=[0], **extra)
        self.latents_done += 1
        if self.is_wan22:
            out = wan22_vae.unpatchify(out, patch_size=WAN22_PATCH_SIZE)
        return out


def _decode_window_tiled(vae, z: torch.Tensor, decoders: list[CausalWanDecoder], first: bool,
                         tile: TileSpec) -> torch.Tensor:
    """One latent frame, cut into spatial tiles by ``comfy.utils.tiled_scale_multidim``; one causal decoder per tile.

    ``tiled_scale_multidim`` visits the tiles in the same order for every latent frame of a clip,
    so the n-th call of a window continues the n-th tile's stream (each decoder checks its shape).
    """
    stride = vae.spacial_compression_decode()
    frames_out = 1 if first else WAN_TIME_STRIDE
    calls = itertools.count()

    def decode_tile(tile_z: torch.Tensor) -> torch.Tensor:
        index = next(calls)
        if index == len(decoders):
            decoders.append(CausalWanDecoder(vae.first_stage_model))
        return decoders[index].step(tile_z.to(device=vae.device, dtype=vae.vae_dtype)).float()

    return comfy.utils.tiled_scale_multidim(
        z, decode_tile, tile=(1, tile.size, tile.size), overlap=(0, tile.overlap, tile.overlap),
        upscale_amount=(lambda n: n * frames_out, stride, stride), out_channels=vae.output_channels,
        index_formulas=(frames_out, stride, stride), output_device=vae.output_device)


def stream_decode(vae, samples: torch.Tensor, tile: TileSpec | None = None,
                  on_window: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Decode a Wan video latent one latent frame at a time into a preallocated IMAGE.

    Args:
        vae: a ``comfy.sd.VAE`` holding a ComfyUI Wan VAE (see :func:`supports_streaming`).
        samples: ``[1, C, T_lat, h, w]`` latent (checked with :func:`check_video_latent`).
        tile: spatial tiling, or None to decode whole frames.
        on_window: called as ``on_window(done, total)`` after each latent frame (progress bar and
            interrupt point; an exception raised there stops the decode).

    Returns:
        IMAGE ``[4 (T_lat - 1) + 1, h*s, w*s, 3]`` float32 in 0..1 on ComfyUI's intermediate device.
    """
    vae.throw_exception_if_invalid()
    _, channels, num_latents, height, width = samples.shape
    stride = vae.spacial_compression_decode()
    out = torch.empty((decoded_frame_count(num_latents), height * stride, width * stride, vae.output_channels),
                      dtype=torch.float32, device=vae.output_device)
    window = (1, channels, 1) + ((tile.size, tile.size) if tile else (height, width))
    comfy.model_management.load_models_gpu([vae.patcher], memory_required=vae.memory_used_decode(window, vae.vae_dtype),
                                           force_full_load=vae.disable_offload)
    decoders = [] if tile else [CausalWanDecoder(vae.first_stage_model)]
    frame = 0
    for index in range(num_latents):
        z = samples[:, :, index:index + 1]
        if tile:
            raw = _decode_window_tiled(vae, z, decoders, index == 0, tile)
        else:
            raw = decoders[0].step(z.to(device=vae.device, dtype=vae.vae_dtype))
        pixels = vae.process_output(raw.to(device=vae.output_device, dtype=torch.float32))[0].movedim(0, -1)
        out[frame:frame + pixels.shape[0]] = pixels
        frame += pixels.shape[0]
        del raw, pixels
        if on_window is not None:
            on_window(index + 1, num_latents)
    return out


def decode_video(vae, samples: torch.Tensor, tile: TileSpec | None = None,
                 on_window: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Decode a checked Wan video latent to IMAGE frames, streaming when the VAE allows it.

    Without tiling, a ComfyUI out-of-memory error falls back to tiled decoding (256-pixel tiles,
    a quarter overlap), as ComfyUI's own ``VAE.decode`` does.

    Args:
        vae: a ``comfy.sd.VAE`` (Wan2.1 or Wan2.2 VAE, or another video VAE for the same latents).
        samples: ``[1, C, T_lat, h, w]`` from :func:`check_video_latent`.
        tile: spatial tiling in latent pixels, or None.
        on_window: progress/interrupt callback ``(done, total)`` per latent frame (streaming path only).

    Returns:
        IMAGE ``[F, H, W, 3]`` float32 0..1, ``F = 4 (T_lat - 1) + 1``.
    """
    if not supports_streaming(vae):
        logging.info("BM decode: %s is not a ComfyUI Wan VAE; decoding with ComfyUI's VAE.decode in one piece.",
                     type(vae.first_stage_model).__name__)
        if tile is None:
            images = vae.decode(samples)
        else:
            images = vae.decode_tiled(samples, tile_x=tile.size, tile_y=tile.size, overlap=tile.overlap,
                                      tile_t=samples.shape[2])
        return images.reshape(-1, *images.shape[-3:])
    if tile is not None:
        return stream_decode(vae, samples, tile, on_window)
    try:
        return stream_decode(vae, samples, None, on_window)
    except comfy.model_management.OOM_EXCEPTION:
        logging.warning("BM decode: ran out of memory decoding whole frames, retrying with tiled decoding.")
    # outside the except block, so that the failed attempt's tensors are freed first
    comfy.model_management.soft_empty_cache()
    return stream_decode(vae, samples, TileSpec.from_pixels(256, 64, vae.spacial_compression_decode()), on_window)
