"""Helpers for the sampler tests: tiny native Wan models with an attached adapter, random duplex audio.

Imported by the comfy-tier tests and by ``bench/sampling_memory.py`` (with ComfyUI and the pack
already importable). ``bm`` is the pack's ``beyond_monologue`` package (``pack.beyond_monologue``).
"""

from __future__ import annotations

import importlib

import torch
from wan_fixtures import tiny_wan

FPS = 25.0
LAYOUT_OF = {"wan22_5b": "beyond_monologue", "wan21_i2v": "infinitetalk"}


def core(pack):
    """``pack.beyond_monologue`` with the sampler's modules imported (not every one is imported by a node)."""
    for name in ("guidance", "duplex_guider", "long_video", "reference", "windows"):
        importlib.import_module(f"{pack.__name__}.beyond_monologue.sampling.{name}")
    return pack.beyond_monologue


def duplex_audio(bm, frames: int, seed: int = 0):
    """``DuplexAudio`` of random wav2vec2-base-like features ``[frames, 12, 768]`` for both streams."""
    g = torch.Generator().manual_seed(seed)
    talk, listen = (torch.randn(frames, 12, 768, generator=g) for _ in range(2))
    ones = torch.ones(frames)
    return bm.audio.duplex_audio.DuplexAudio(talk, listen, ones, ones, fps=FPS)


def patched_model(bm, kind: str = "wan22_5b", seed: int = 0, adapter_seed: int = 1):
    """A tiny native Wan model (``wan_fixtures.tiny_wan``) with an adapter of the matching layout attached.

    The adapter's output projections are random (not zero), so the audio really changes the result.
    """
    return attach_adapter(bm, tiny_wan(kind, seed=seed), kind, adapter_seed)


def attach_adapter(bm, model, kind: str = "wan22_5b", adapter_seed: int = 1, strength: float = 1.0, backend: str = "auto"):
    """``model`` (a tiny Wan MODEL, e.g. from a native loader) with a random adapter attached at ``strength``.

    The adapter's modules are ``comfy.ops.manual_cast`` ones, as BM Apply Duplex Adapter builds them.
    """
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.ops

    cfg = bm.model.adapter_checkpoint.smoke_config(LAYOUT_OF[kind], model_dim=256, num_layers=2)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg, operations=comfy.ops.manual_cast)
    adapter.reset_parameters(adapter_seed, zero_output=False)
    patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    settings = bm.model.wan_patch.AdapterSettings({s: cfg.kernel(s) for s in adapter.streams},
                                                  {s: strength for s in adapter.streams}, backend)
    return bm.model.wan_patch.attach_duplex_adapter(model, patcher, settings)
