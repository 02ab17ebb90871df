"""Fixtures shared by comfy-tier tests (the tier's in-process ComfyUI comes from tests/comfy_inprocess.py)."""

from __future__ import annotations

import gc

import pytest
from tiny_wan_vae import wan22_vae_state_dict


@pytest.fixture(scope="module")
def wan22_vae(comfy):
    """ComfyUI's ``comfy.sd.VAE`` on a generated full-size Wan2.2 VAE checkpoint (ComfyUI hard-codes its width;
    this is what Load VAE does after reading the file). Unloaded after the module: it holds 2.8 GB."""
    import comfy.model_management
    import comfy.sd

    vae = comfy.sd.VAE(sd=wan22_vae_state_dict())
    yield vae
    del vae
    comfy.model_management.unload_all_models()  # drop ComfyUI's reference to the model
    gc.collect()
