"""Wan2.1 and Wan2.2 VAE checkpoints in their real key layouts.

Structure from Wan-Video's ``wan/modules/vae.py`` (Wan2.1) and ``vae2_2.py`` (Wan2.2): causal 3D
conv encoder/decoder with RMS-norm residual blocks, one single-head attention block in the middle,
2D/3D resampling. ComfyUI's VAELoader (comfy/sd.py ``VAE.__init__``) tells them apart by
``decoder.upsamples.0.upsamples.0.residual.2.weight`` (Wan2.2 only) and

* Wan2.1: derives the base width from ``decoder.head.0.gamma`` (z_dim fixed at 16), so the smoke
  VAE is narrow (base width 16 instead of 96);
* Wan2.2: hard-codes base width 160, decoder width 256 and z_dim 48, so the smoke VAE has the full
  size (704.7 M values, 1.41 GB in fp16): the smallest file ComfyUI accepts as a Wan2.2 VAE.
"""

from __future__ import annotations

import itertools
import json

import torch

from .tensors import Layout, Spec, conv, fill

DIM_MULT = (1, 2, 4, 4)
NUM_RES_BLOCKS = 2
TEMPORAL_DOWNSAMPLE = (False, True, True)  # ComfyUI's config for both Wan VAEs

SMOKE_WAN21_DIM = 16
WAN22_DIM, WAN22_DEC_DIM, WAN22_Z_DIM = 160, 256, 48


def _rms(layout: Layout, name: str, channels: int, images: bool = False) -> None:
    layout[f"{name}.gamma"] = Spec((channels, 1, 1) if images else (channels, 1, 1, 1), "norm")


def _residual(layout: Layout, name: str, cin: int, cout: int) -> None:
    _rms(layout, f"{name}.residual.0", cin)
    conv(layout, f"{name}.residual.2", (cout, cin, 3, 3, 3))
    _rms(layout, f"{name}.residual.3", cout)
    conv(layout, f"{name}.residual.6", (cout, cout, 3, 3, 3))
    if cin != cout:
        conv(layout, f"{name}.shortcut", (cout, cin, 1, 1, 1))


def _attention(layout: Layout, name: str, channels: int) -> None:
    _rms(layout, f"{name}.norm", channels, images=True)
    conv(layout, f"{name}.to_qkv", (3 * channels, channels, 1, 1))
    conv(layout, f"{name}.proj", (channels, channels, 1, 1))


def _resample(layout: Layout, name: str, channels: int, mode: str, halve_on_upsample: bool) -> None:
    """Resample block; Wan2.1 upsampling halves the channels in its 2D conv, Wan2.2 keeps them."""
    if mode.startswith("down"):
        conv(layout, f"{name}.resample.1", (channels, channels, 3, 3))
        if mode == "downsample3d":
            conv(layout, f"{name}.time_conv", (channels, channels, 3, 1, 1))
    else:
        conv(layout, f"{name}.resample.1", (channels // 2 if halve_on_upsample else channels, channels, 3, 3))
        if mode == "upsample3d":
            conv(layout, f"{name}.time_conv", (2 * channels, channels, 3, 1, 1))


def _middle(layout: Layout, side: str, channels: int) -> None:
    _residual(layout, f"{side}.middle.0", channels, channels)
    _attention(layout, f"{side}.middle.1", channels)
    _residual(layout, f"{side}.middle.2", channels, channels)


def _head(layout: Layout, side: str, channels: int, out_channels: int) -> None:
    _rms(layout, f"{side}.head.0", channels)
    conv(layout, f"{side}.head.2", (out_channels, channels, 3, 3, 3))


def wan21_vae_layout(dim: int, z_dim: int = 16) -> Layout:
    """Every key of a Wan2.1 VAE (original ``Wan2.1_VAE.pth`` names) with base width ``dim`` (real: 96)."""
    layout: Layout = {}
    dims = [dim * u for u in (1, *DIM_MULT)]
    conv(layout, "encoder.conv1", (dims[0], 3, 3, 3, 3))
    index = 0
    for i, (cin, cout) in enumerate(itertools.pairwise(dims)):
        for _ in range(NUM_RES_BLOCKS):
            _residual(layout, f"encoder.downsamples.{index}", cin, cout)
            cin, index = cout, index + 1
        if i != len(DIM_MULT) - 1:
            mode = "downsample3d" if TEMPORAL_DOWNSAMPLE[i] else "downsample2d"
            _resample(layout, f"encoder.downsamples.{index}", cout, mode, halve_on_upsample=True)
            index += 1
    _middle(layout, "encoder", dims[-1])
    _head(layout, "encoder", dims[-1], 2 * z_dim)
    conv(layout, "conv1", (2 * z_dim, 2 * z_dim, 1, 1, 1))
    conv(layout, "conv2", (z_dim, z_dim, 1, 1, 1))

    dec = [dim * u for u in (DIM_MULT[-1], *DIM_MULT[::-1])]
    temporal_up = TEMPORAL_DOWNSAMPLE[::-1]
    conv(layout, "decoder.conv1", (dec[0], z_dim, 3, 3, 3))
    _middle(layout, "decoder", dec[0])
    index = 0
    for i, (cin, cout) in enumerate(itertools.pairwise(dec)):
        if i in (1, 2, 3):
            cin //= 2  # the previous upsample halved the channels
        for _ in range(NUM_RES_BLOCKS + 1):
            _residual(layout, f"decoder.upsamples.{index}", cin, cout)
            cin, index = cout, index + 1
        if i != len(DIM_MULT) - 1:
            mode = "upsample3d" if temporal_up[i] else "upsample2d"
            _resample(layout, f"decoder.upsamples.{index}", cout, mode, halve_on_upsample=True)
            index += 1
    _head(layout, "decoder", dec[-1], 3)
    return layout


def wan22_vae_layout(dim: int = WAN22_DIM, dec_dim: int = WAN22_DEC_DIM, z_dim: int = WAN22_Z_DIM) -> Layout:
    """Every key of a Wan2.2 VAE (``wan2.2_vae`` names): 2x2 pixel patches (12 channels), nested stages."""
    layout: Layout = {}
    dims = [dim * u for u in (1, *DIM_MULT)]
    conv(layout, "encoder.conv1", (dims[0], 12, 3, 3, 3))
    for i, (cin, cout) in enumerate(itertools.pairwise(dims)):
        stage = f"encoder.downsamples.{i}.downsamples"
        for j in range(NUM_RES_BLOCKS):
            _residual(layout, f"{stage}.{j}", cin if j == 0 else cout, cout)
        if i != len(DIM_MULT) - 1:
            mode = "downsample3d" if TEMPORAL_DOWNSAMPLE[i] else "downsample2d"
            _resample(layout, f"{stage}.{NUM_RES_BLOCKS}", cout, mode, halve_on_upsample=False)
    _middle(layout, "encoder", dims[-1])
    _head(layout, "encoder", dims[-1], 2 * z_dim)
    conv(layout, "conv1", (2 * z_dim, 2 * z_dim, 1, 1, 1))
    conv(layout, "conv2", (z_dim, z_dim, 1, 1, 1))

    dec = [dec_dim * u for u in (DIM_MULT[-1], *DIM_MULT[::-1])]
    temporal_up = TEMPORAL_DOWNSAMPLE[::-1]
    conv(layout, "decoder.conv1", (dec[0], z_dim, 3, 3, 3))
    _middle(layout, "decoder", dec[0])
    for i, (cin, cout) in enumerate(itertools.pairwise(dec)):
        stage = f"decoder.upsamples.{i}.upsamples"
        for j in range(NUM_RES_BLOCKS + 1):
            _residual(layout, f"{stage}.{j}", cin if j == 0 else cout, cout)
        if i != len(DIM_MULT) - 1:
            mode = "upsample3d" if temporal_up[i] else "upsample2d"
            _resample(layout, f"{stage}.{NUM_RES_BLOCKS + 1}", cout, mode, halve_on_upsample=False)
    _head(layout, "decoder", dec[-1], 12)
    return layout


def wan21_vae(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Narrow Wan2.1 VAE in bf16 (the ``Wan2_1_VAE_bf16`` layout), base width 16: 4x8x8 compression, 16 latent channels."""
    layout = wan21_vae_layout(SMOKE_WAN21_DIM)
    return fill(layout, seed, torch.bfloat16), {
        "bm_smoke_layout": "Wan2.1 VAE (original key names)",
        "bm_smoke_dims": json.dumps({"dim": SMOKE_WAN21_DIM, "z_dim": 16})}


def wan22_vae(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Full-size Wan2.2 VAE in fp16 (ComfyUI hard-codes its size): 4x16x16 compression, 48 latent channels."""
    layout = wan22_vae_layout()
    return fill(layout, seed, torch.float16), {
        "bm_smoke_layout": "Wan2.2 VAE (original key names), full size",
        "bm_smoke_dims": json.dumps({"dim": WAN22_DIM, "dec_dim": WAN22_DEC_DIM, "z_dim": WAN22_Z_DIM})}
