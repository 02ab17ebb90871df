"""Wan diffusion transformer checkpoints (Wan2.2-TI2V-5B and Wan2.1-I2V-14B key layouts), tiny.

Key names and shapes follow the original Wan state dict, which is also the layout of the
Comfy-Org / Kijai ComfyUI files (Wan-Video/Wan2.1 ``wan/modules/model.py``; research notes
weights.md §2.1). ComfyUI's UNETLoader derives every dimension it needs from shapes
(comfy/model_detection.py: dim from ``head.modulation``, heads = dim / 128, ffn from
``blocks.0.ffn.0``, layers by counting blocks, in/out channels from ``patch_embedding`` and
``head.head``; ``img_emb`` marks i2v), so the smoke models keep the real head size (128), text
width (umT5 4096), CLIP width (1280) and channel counts, and shrink only width, FFN and depth.
"""

from __future__ import annotations

import json

import torch

from .tensors import Layout, Spec, conv, fill, linear, norm, to_scaled_fp8

HEAD_DIM = 128      # ComfyUI: num_heads = dim // 128
TEXT_DIM = 4096     # umT5-XXL output width
CLIP_DIM = 1280     # open-clip ViT-H/14 penultimate width (img_emb input)
FREQ_DIM = 256      # sinusoidal time embedding width

# The tiny backbone shared by every smoke DiT; adapters built for the smoke models must match it.
SMOKE_DIM = 256
SMOKE_FFN_DIM = 512
SMOKE_LAYERS = 2


def wan_dit_layout(dim: int, ffn_dim: int, num_layers: int, in_dim: int, out_dim: int, i2v: bool) -> Layout:
    """Every key of a Wan DiT checkpoint (no ``model.diffusion_model.`` prefix).

    Args:
        dim: model width (14B: 5120); a multiple of 128.
        ffn_dim: FFN hidden width (14B: 13824).
        num_layers: transformer blocks (14B: 40).
        in_dim: latent input channels (Wan2.2-TI2V-5B: 48; Wan2.1 i2v: 36 = 16 noise + 4 mask + 16 image).
        out_dim: latent output channels (5B: 48; Wan2.1: 16).
        i2v: add the CLIP image path (``img_emb``, ``cross_attn.k_img/v_img/norm_k_img``).
    """
    if dim % HEAD_DIM:
        raise ValueError(f"dim must be a multiple of {HEAD_DIM}, got {dim}")
    layout: Layout = {}
    conv(layout, "patch_embedding", (dim, in_dim, 1, 2, 2))
    linear(layout, "text_embedding.0", dim, TEXT_DIM)
    linear(layout, "text_embedding.2", dim, dim)
    linear(layout, "time_embedding.0", dim, FREQ_DIM)
    linear(layout, "time_embedding.2", dim, dim)
    linear(layout, "time_projection.1", 6 * dim, dim)
    for n in range(num_layers):
        block = f"blocks.{n}"
        layout[f"{block}.modulation"] = Spec((1, 6, dim), "param")
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                linear(layout, f"{block}.{attn}.{proj}", dim, dim)
            norm(layout, f"{block}.{attn}.norm_q", dim, bias=False)
            norm(layout, f"{block}.{attn}.norm_k", dim, bias=False)
        if i2v:
            linear(layout, f"{block}.cross_attn.k_img", dim, dim)
            linear(layout, f"{block}.cross_attn.v_img", dim, dim)
            norm(layout, f"{block}.cross_attn.norm_k_img", dim, bias=False)
        norm(layout, f"{block}.norm3", dim)
        linear(layout, f"{block}.ffn.0", ffn_dim, dim)
        linear(layout, f"{block}.ffn.2", dim, ffn_dim)
    layout["head.modulation"] = Spec((1, 2, dim), "param")
    linear(layout, "head.head", out_dim * 4, dim)  # 4 = patch 1 x 2 x 2
    if i2v:
        norm(layout, "img_emb.proj.0", CLIP_DIM)
        linear(layout, "img_emb.proj.1", CLIP_DIM, CLIP_DIM)
        linear(layout, "img_emb.proj.3", dim, CLIP_DIM)
        norm(layout, "img_emb.proj.4", dim)
    return layout


def _dims_metadata(layout_name: str, **dims) -> dict[str, str]:
    return {"bm_smoke_layout": layout_name, "bm_smoke_dims": json.dumps(dims, sort_keys=True)}


def wan22_ti2v_5b(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tiny Wan2.2-TI2V-5B DiT in fp16 (the ``wan2.2_ti2v_5B_fp16`` layout).

    ComfyUI detects it as ``WAN22_T2V`` (out_dim 48, Wan2.2 latent format). Dims: 256 wide
    (2 heads of 128), FFN 512, 2 blocks, in/out 48 channels.
    """
    dims = {"dim": SMOKE_DIM, "ffn_dim": SMOKE_FFN_DIM, "num_layers": SMOKE_LAYERS, "in_dim": 48, "out_dim": 48}
    layout = wan_dit_layout(**dims, i2v=False)
    return fill(layout, seed, torch.float16), _dims_metadata("Wan2.2-TI2V-5B DiT (Wan key names)", **dims)


def wan21_i2v_14b(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tiny Wan2.1-I2V-14B DiT in ComfyUI's scaled-fp8 storage (the ``..._fp8_e4m3fn_scaled`` files).

    Linear weights are float8_e4m3fn with fp32 ``scale_weight``/``scale_input`` and a ``scaled_fp8``
    marker (see :func:`.tensors.to_scaled_fp8`); other tensors fp16. ComfyUI detects it as
    ``WAN21_I2V`` (in_dim 36 with ``img_emb``). Whether Kijai's ``_KJ`` files store exactly these
    auxiliary keys is not verified. Dims: 256 wide, FFN 512, 2 blocks.
    """
    dims = {"dim": SMOKE_DIM, "ffn_dim": SMOKE_FFN_DIM, "num_layers": SMOKE_LAYERS, "in_dim": 36, "out_dim": 16}
    layout = wan_dit_layout(**dims, i2v=True)
    state_dict = to_scaled_fp8(fill(layout, seed, torch.float16), layout, scale_input=True)
    return state_dict, _dims_metadata("Wan2.1-I2V-14B DiT, ComfyUI scaled fp8 (Wan key names)", **dims)
