"""Tiny native Wan models built the way ComfyUI's loaders build them, plus helpers to sample them.

The state dicts are generated from ComfyUI's own ``WanModel`` class (random weights, real key
layout) and loaded with ``comfy.sd.load_diffusion_model_state_dict``, so model detection picks
``WAN22`` (Wan2.2-TI2V-5B: 48 in/out channels) or ``WAN21`` image-to-video (Wan2.1-I2V-14B: 36 in,
16 out, CLIP image embedding) and the result is a real ``ModelPatcher`` that ComfyUI patches,
loads and offloads. ``dim = 256`` gives 2 heads of 128, as ComfyUI's detection derives them.
"""

from __future__ import annotations

import torch

DIM = 256
TEXT_TOKENS = 8


def tiny_wan(kind: str, seed: int = 0, num_layers: int = 2):
    """ModelPatcher of a tiny ``"wan22_5b"`` or ``"wan21_i2v"`` model with generated weights."""
    import comfy.sd

    return comfy.sd.load_diffusion_model_state_dict(tiny_wan_state_dict(kind, seed, num_layers))


def tiny_wan_state_dict(kind: str, seed: int = 0, num_layers: int = 2) -> dict:
    """The generated weights of :func:`tiny_wan` (ComfyUI's ``WanModel`` key layout, as a diffusion model file holds)."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    shape = {"wan22_5b": ("t2v", 48, 48), "wan21_i2v": ("i2v", 36, 16)}[kind]
    model = WanModel(model_type=shape[0], in_dim=shape[1], out_dim=shape[2], dim=DIM, ffn_dim=2 * DIM,
                     num_heads=DIM // 128, num_layers=num_layers, operations=comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, value in model.state_dict().items():
        norm_weight = "norm" in key and key.endswith("weight") and value.ndim == 1
        sd[key] = torch.ones(value.shape) if norm_weight else torch.randn(value.shape, generator=g) * 0.05
    return sd


def conditioning(seed: int, extra: dict | None = None):
    """A CONDITIONING list with one random text embedding (umT5 width 4096)."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, TEXT_TOKENS, 4096, generator=g), dict(extra or {})]]


def sample(model, latent_channels: int, frames: int = 4, steps: int = 2, cfg: float = 3.0, seed: int = 0,
           positive=None, negative=None, size: int = 8):
    """Run ComfyUI's own sampler (``comfy.sample.sample``, euler) on a ``[1, C, frames, size, size]`` latent."""
    import comfy.sample

    noise = torch.randn(1, latent_channels, frames, size, size, generator=torch.Generator().manual_seed(seed))
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", positive or conditioning(1),
                               negative or conditioning(2), torch.zeros_like(noise), seed=seed, disable_pbar=True)


class ChunkRecorder:
    """``model_function_wrapper`` that keeps each conditioning index's model output of every step."""

    def __init__(self):
        self.outputs: dict[int, list[torch.Tensor]] = {}

    def __call__(self, apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        for index, chunk in zip(args["cond_or_uncond"], out.chunk(len(args["cond_or_uncond"])), strict=True):
            self.outputs.setdefault(index, []).append(chunk.clone())
        return out
