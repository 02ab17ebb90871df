"""Wan VAE checkpoints generated for tests, in the exact key layout ComfyUI's loader reads.

Shapes come from ComfyUI's own classes (``comfy.ldm.wan.vae.WanVAE`` / ``vae2_2.WanVAE``)
built with the configuration ``comfy.sd.VAE`` uses for these checkpoints; the values are random
(uniform with variance 1/fan_in, RMS-norm gains 1, biases 0). Load them with ComfyUI's loaders
(``comfy.sd.VAE(sd=...)`` or the Load VAE node on a saved file); nothing here re-implements a VAE.

* Wan2.1 VAE (16 latent channels, 8x spatial): ``comfy.sd.VAE`` reads the width from
  ``decoder.head.0.gamma``, so the test VAE is honest at ``dim=8`` (the real one has 96).
* Wan2.2 VAE (48 latent channels, 16x spatial): ``comfy.sd.VAE`` hard-codes ``dim=160`` (and
  the class default ``dec_dim=256``), so the smallest checkpoint it loads is full size:
  705 M parameters (1.4 GB in bf16, 2.8 GB once loaded as float32 on the CPU).

ComfyUI must be importable (the ``comfy`` fixture) before these functions are called.
"""

from __future__ import annotations

import math

import torch

WAN_DDCONFIG = {"dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                "temperal_downsample": [False, True, True], "dropout": 0.0}  # as in comfy/sd.py
WAN21_TEST_DIM = 8
WAN22_DIM = 160


def random_state_dict(module: torch.nn.Module, seed: int = 0, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> dict:
    """Random values for every entry of ``module.state_dict()`` (the module may live on the meta device),
    generated on ``device`` (the GPU suite draws the 705 M-parameter Wan2.2 VAE on the GPU)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    kw = {"dtype": dtype, "device": device}
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("gamma"):
            state[key] = torch.ones(value.shape, **kw)
        elif value.ndim > 1:
            bound = math.sqrt(3.0 / value[0].numel())
            state[key] = torch.empty(value.shape, **kw).uniform_(-bound, bound, generator=generator)
        else:
            state[key] = torch.zeros(value.shape, **kw)
    return state


def wan21_vae_state_dict(dim: int = WAN21_TEST_DIM, seed: int = 0) -> dict:
    """A Wan2.1 VAE checkpoint (16 latent channels) of width ``dim``, float32."""
    import comfy.ldm.wan.vae

    with torch.device("meta"):
        model = comfy.ldm.wan.vae.WanVAE(dim=dim, z_dim=16, **WAN_DDCONFIG)
    return random_state_dict(model, seed)


def wan22_vae_state_dict(seed: int = 0, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu") -> dict:
    """A full-size Wan2.2 VAE checkpoint (48 latent channels), ``dtype`` (bf16 like the released file), on ``device``."""
    import comfy.ldm.wan.vae2_2

    with torch.device("meta"):
        model = comfy.ldm.wan.vae2_2.WanVAE(dim=WAN22_DIM, z_dim=48, **WAN_DDCONFIG)
    return random_state_dict(model, seed, dtype, device)


def small_wan22_model(seed: int = 0, dim: int = 8) -> torch.nn.Module:
    """A narrow ``comfy.ldm.wan.vae2_2.WanVAE`` (not loadable by ``comfy.sd.VAE``; for driving its decoder directly)."""
    import comfy.ldm.wan.vae2_2

    model = comfy.ldm.wan.vae2_2.WanVAE(dim=dim, dec_dim=dim, z_dim=48, **WAN_DDCONFIG)
    model.load_state_dict(random_state_dict(model, seed))
    return model.eval()
