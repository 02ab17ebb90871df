"""wav2vec 2.0 base checkpoint in the layout of ``wav2vec2-chinese-base_fp16.safetensors`` (full size).

Key names are Hugging Face ``Wav2Vec2Model`` parameters with the ``wav2vec2.`` prefix, the
positional convolution's weight norm stored as ``weight_g``/``weight_v`` (Kijai's
WanVideoWrapper loader reads exactly these keys; torch's weight-norm parametrization maps them to
``parametrizations.weight.original0/1`` on load). Base config: 7 conv layers of 512 channels
(kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2; GroupNorm on the first, no conv bias), 12
post-norm transformer layers of 768 (12 heads, FFN 3072), positional conv kernel 128 in 16 groups.

ComfyUI's AudioEncoderLoader (comfy/audio_encoders/audio_encoders.py) only knows the base (768)
and large (1024) configurations, so the smoke file has the full base size: 94.4 M values, 189 MB fp16.
"""

from __future__ import annotations

import json

import torch

from .tensors import Layout, Spec, conv, fill, linear, norm

CONV_DIM = 512
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
EMBED_DIM, NUM_LAYERS, FFN_DIM = 768, 12, 3072
POS_CONV_KERNEL, POS_CONV_GROUPS = 128, 16
PREFIX = "wav2vec2."


def wav2vec2_base_layout(embed_dim: int = EMBED_DIM, num_layers: int = NUM_LAYERS, ffn_dim: int = FFN_DIM) -> Layout:
    """Every key of a wav2vec 2.0 base checkpoint (``wav2vec2.`` prefix)."""
    layout: Layout = {f"{PREFIX}masked_spec_embed": Spec((embed_dim,), "param")}
    fe = f"{PREFIX}feature_extractor.conv_layers"
    for i, kernel in enumerate(CONV_KERNELS):
        conv(layout, f"{fe}.{i}.conv", (CONV_DIM, 1 if i == 0 else CONV_DIM, kernel), bias=False)
    norm(layout, f"{fe}.0.layer_norm", CONV_DIM)  # GroupNorm(512 groups) on the first conv only
    norm(layout, f"{PREFIX}feature_projection.layer_norm", CONV_DIM)
    linear(layout, f"{PREFIX}feature_projection.projection", embed_dim, CONV_DIM)
    pos = f"{PREFIX}encoder.pos_conv_embed.conv"
    layout[f"{pos}.weight_g"] = Spec((1, 1, POS_CONV_KERNEL), "positive")
    layout[f"{pos}.weight_v"] = Spec((embed_dim, embed_dim // POS_CONV_GROUPS, POS_CONV_KERNEL), "conv")
    layout[f"{pos}.bias"] = Spec((embed_dim,), "bias")
    norm(layout, f"{PREFIX}encoder.layer_norm", embed_dim)
    for n in range(num_layers):
        layer = f"{PREFIX}encoder.layers.{n}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(layout, f"{layer}.attention.{proj}", embed_dim, embed_dim)
        norm(layout, f"{layer}.layer_norm", embed_dim)
        linear(layout, f"{layer}.feed_forward.intermediate_dense", ffn_dim, embed_dim)
        linear(layout, f"{layer}.feed_forward.output_dense", embed_dim, ffn_dim)
        norm(layout, f"{layer}.final_layer_norm", embed_dim)
    return layout


def wav2vec2_base(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Full-size wav2vec 2.0 base in fp16 (output: 768-d features at 50 Hz for 16 kHz input, 13 hidden states)."""
    return fill(wav2vec2_base_layout(), seed, torch.float16), {
        "bm_smoke_layout": "wav2vec 2.0 base (Hugging Face names, wav2vec2. prefix), full size",
        "bm_smoke_dims": json.dumps({"embed_dim": EMBED_DIM, "num_layers": NUM_LAYERS, "ffn_dim": FFN_DIM})}
