"""CLIP ViT-H/14 image encoder in the layout of ``clip_vision_h.safetensors`` (full size).

Key names are Hugging Face ``CLIPVisionModelWithProjection`` parameters, the layout ComfyUI's
``CLIPVisionLoader`` reads without conversion (comfy/clip_vision.py ``load_clipvision_from_sd``):
``vision_model.embeddings.{class_embedding, patch_embedding.weight, position_embedding.weight}``,
``vision_model.pre_layrnorm``, 32 layers ``vision_model.encoder.layers.N.{layer_norm1, self_attn.
{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}``, ``vision_model.post_layernorm`` and
``visual_projection.weight`` (no bias).

ComfyUI recognises ViT-H only by a 31st layer (``vision_model.encoder.layers.30.layer_norm1.weight``)
and then builds the fixed comfy/clip_vision_config_h.json model (hidden 1280, 32 layers, 16 heads,
MLP 5120, patch 14 at 224 px, projection 1024) whatever the file holds, loading it non-strictly:
a reduced file would leave most weights uninitialised. So the smoke file is full size: 632.1 M
values, 1.26 GB fp16 (the real file's size). Wan2.1-I2V reads its ``penultimate_hidden_states``
(257 tokens x 1280).
"""

from __future__ import annotations

import json

import torch

from .tensors import Layout, Spec, conv, fill, linear, norm

HIDDEN, NUM_LAYERS, MLP_DIM, PATCH, IMAGE_SIZE, PROJECTION = 1280, 32, 5120, 14, 224, 1024


def clip_vision_layout(hidden: int = HIDDEN, num_layers: int = NUM_LAYERS, mlp_dim: int = MLP_DIM) -> Layout:
    """Every key of a CLIP vision checkpoint with projection (Hugging Face names)."""
    positions = (IMAGE_SIZE // PATCH) ** 2 + 1  # patches + class token
    layout: Layout = {"vision_model.embeddings.class_embedding": Spec((hidden,), "param"),
                      "vision_model.embeddings.position_embedding.weight": Spec((positions, hidden), "param")}
    conv(layout, "vision_model.embeddings.patch_embedding", (hidden, 3, PATCH, PATCH), bias=False)
    norm(layout, "vision_model.pre_layrnorm", hidden)  # sic: Hugging Face's spelling
    for n in range(num_layers):
        layer = f"vision_model.encoder.layers.{n}"
        norm(layout, f"{layer}.layer_norm1", hidden)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(layout, f"{layer}.self_attn.{proj}", hidden, hidden)
        norm(layout, f"{layer}.layer_norm2", hidden)
        linear(layout, f"{layer}.mlp.fc1", mlp_dim, hidden)
        linear(layout, f"{layer}.mlp.fc2", hidden, mlp_dim)
    norm(layout, "vision_model.post_layernorm", hidden)
    linear(layout, "visual_projection", PROJECTION, hidden, bias=False)
    return layout


def clip_vision_h(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Full-size CLIP ViT-H/14 vision tower with projection in fp16 (ComfyUI's clip_vision_h layout)."""
    return fill(clip_vision_layout(), seed, torch.float16), {
        "bm_smoke_layout": "CLIP ViT-H/14 vision (Hugging Face CLIPVisionModelWithProjection names), full size",
        "bm_smoke_dims": json.dumps({"hidden": HIDDEN, "num_layers": NUM_LAYERS, "mlp_dim": MLP_DIM,
                                     "projection": PROJECTION})}
