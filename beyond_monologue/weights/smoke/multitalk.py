"""InfiniteTalk / MultiTalk audio-adapter checkpoint (the public ``model_patches`` layout), tiny.

Layout from MeiGen-AI/MultiTalk ``wan/modules/multitalk_model.py`` (research notes weights.md §3.1):
``audio_proj`` (AudioProjModel: proj1 over a 5-frame window and proj1_vf over the 8-entry window of
later latent frames, both of 12 wav2vec2 layers x 768 channels; proj2; proj3 to 32 context tokens;
LayerNorm) and per DiT block ``norm_x`` plus ``audio_cross_attn.{q_linear, kv_linear, proj}``.
Nothing else is in the file (newer ComfyUI loads it with a strict ``load_state_dict``).

The smoke adapter matches the smoke Wan DiT (width 256, 2 blocks) and the real wav2vec2-base
features (12 x 768, window 5 / 8), with a narrow projection (32 instead of 512). Attention heads
are not stored; a loader must take them as width / 128 (2 here, 40 for the real 14B), as the
original does, rather than hard-coding 40.
"""

from __future__ import annotations

import json

import torch

from .tensors import Layout, fill, linear, norm
from .wan_dit import SMOKE_DIM, SMOKE_LAYERS

AUDIO_WINDOW, VAE_SCALE, CONTEXT_TOKENS = 5, 4, 32
AUDIO_LAYERS, AUDIO_CHANNELS = 12, 768  # wav2vec2-base hidden states (all but the pre-transformer one)
SMOKE_INTERMEDIATE = 32


def multitalk_layout(dim: int, num_layers: int, intermediate_dim: int = 512, token_dim: int = 768) -> Layout:
    """Every key of an InfiniteTalk/MultiTalk adapter for a Wan DiT of width ``dim`` with ``num_layers`` blocks.

    Args:
        dim: DiT width (real: 5120).
        num_layers: DiT blocks (real: 40).
        intermediate_dim: audio projection width (real: 512).
        token_dim: width of the 32 audio context tokens per latent frame (real: 768).
    """
    layout: Layout = {}
    window_vf = AUDIO_WINDOW + VAE_SCALE - 1
    linear(layout, "audio_proj.proj1", intermediate_dim, AUDIO_WINDOW * AUDIO_LAYERS * AUDIO_CHANNELS)
    linear(layout, "audio_proj.proj1_vf", intermediate_dim, window_vf * AUDIO_LAYERS * AUDIO_CHANNELS)
    linear(layout, "audio_proj.proj2", intermediate_dim, intermediate_dim)
    linear(layout, "audio_proj.proj3", CONTEXT_TOKENS * token_dim, intermediate_dim)
    norm(layout, "audio_proj.norm", token_dim)
    for n in range(num_layers):
        block = f"blocks.{n}"
        norm(layout, f"{block}.norm_x", dim)
        linear(layout, f"{block}.audio_cross_attn.q_linear", dim, dim)
        linear(layout, f"{block}.audio_cross_attn.kv_linear", 2 * dim, token_dim)
        linear(layout, f"{block}.audio_cross_attn.proj", dim, dim)
    return layout


def infinitetalk_adapter(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tiny InfiniteTalk adapter in fp16 for the smoke Wan2.1-I2V DiT (single and multi share this layout)."""
    dims = {"dim": SMOKE_DIM, "num_layers": SMOKE_LAYERS, "intermediate_dim": SMOKE_INTERMEDIATE, "token_dim": 768}
    return fill(multitalk_layout(**dims), seed, torch.float16), {
        "bm_smoke_layout": "InfiniteTalk/MultiTalk audio adapter (model_patches key names)",
        "bm_smoke_dims": json.dumps(dims, sort_keys=True)}
