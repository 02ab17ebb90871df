"""Smoke checkpoints: small, untrained files in the exact key layouts, dtypes and formats of real ones.

Real weights cannot be fetched on test machines, so tests and the demo run ComfyUI's real
loaders and our real loading code on these. Each component has a builder ``(seed) ->
(state_dict, metadata)``; :data:`BUILDERS` maps the ``smoke`` ids of the manifest to them. Dimensions
are reduced wherever ComfyUI derives them from tensor shapes and kept where it hard-codes them
(Wan2.2 VAE, wav2vec2 base, CLIP ViT-H); each module says which. :func:`.generate.generate_set` writes a set.

To add a component (e.g. from another module's ``smoke_state_dict``), add one line to
:data:`BUILDERS` under the id its manifest entry names in ``"smoke"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...audio import melband_roformer
from ...evaluate import identity, syncnet
from ...model import adapter_checkpoint
from . import clip_vision, umt5, wan_dit, wan_vae, wav2vec2

Builder = Callable[[int], tuple[dict[str, torch.Tensor], dict[str, str]]]


def _adapter(layout: str) -> Builder:
    """Adapter builder in ``layout`` sized for the smoke DiTs, with live (random) output projections
    so that the talk and listen streams really drive the untrained model."""
    def build(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors, metadata = adapter_checkpoint.smoke_state_dict(
            layout, seed, zero_output=False, model_dim=wan_dit.SMOKE_DIM, num_layers=wan_dit.SMOKE_LAYERS)
        return tensors, {**metadata, "bm_smoke_layout": f"{layout} audio adapter (docs/ADAPTER_FORMAT.md)"}
    return build

BUILDERS: dict[str, Builder] = {
    "wan22_ti2v_5b_dit": wan_dit.wan22_ti2v_5b,
    "wan21_i2v_14b_dit": wan_dit.wan21_i2v_14b,
    "wan22_vae": wan_vae.wan22_vae,
    "wan21_vae": wan_vae.wan21_vae,
    "umt5_xxl_fp8_scaled": umt5.umt5_xxl_fp8_scaled,
    "wav2vec2_base": wav2vec2.wav2vec2_base,
    "clip_vision_h": clip_vision.clip_vision_h,
    "beyond_monologue_adapter": _adapter(adapter_checkpoint.LAYOUT_BM),
    "infinitetalk_adapter": _adapter(adapter_checkpoint.LAYOUT_INFINITETALK),
    "melband_roformer": melband_roformer.smoke_state_dict,
    "syncnet_v2": lambda seed: (syncnet.smoke_state_dict(seed), {"bm_smoke_layout": "SyncNet v2 (syncnet_python S)"}),
    "facenet_vggface2": lambda seed: ({k: v for k, v in identity.smoke_state_dict(seed).items()
                                       if not k.startswith("logits.")},
                                      {"bm_smoke_layout": "facenet-pytorch InceptionResnetV1, converted"}),
}
