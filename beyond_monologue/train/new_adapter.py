"""The configuration of a new Beyond Monologue adapter for a Wan DiT and a training set's audio features.

Kept free of ComfyUI imports so that ``--dry-run`` can count a new adapter's parameters (on the
``meta`` device) from file headers alone.
"""

from __future__ import annotations

import dataclasses

from ..model.adapter_checkpoint import describe_dit
from ..model.audio_qformer import QFormerConfig
from ..model.duplex_adapter import HEAD_DIM, LAYOUT_BM, AdapterConfig
from ..model.mhgk import MHGKKernel
from ..model.time_rope import TimeRoPE


def new_adapter_config(dim: int, num_layers: int, num_heads: int | None, signature: dict, encoder: QFormerConfig | None = None,
                       rope: bool = True) -> AdapterConfig:
    """The :class:`AdapterConfig` of :func:`new_adapter` for a DiT of ``dim`` x ``num_layers`` and a set's
    :meth:`TrainingSet.signature` (``audio_layers``, ``audio_dim``, ``context_frames``)."""
    enc = dataclasses.replace(encoder or QFormerConfig(), audio_layers=int(signature["audio_layers"]),
                              audio_dim=int(signature["audio_dim"]), context_frames=int(signature["context_frames"]))
    heads = num_heads or max(1, dim // HEAD_DIM)
    return AdapterConfig(LAYOUT_BM, dim, num_layers, heads, ("talk", "listen"), True, enc,
                         {s: MHGKKernel.default(s, heads) for s in ("talk", "listen")},
                         base_model=describe_dit(dim, num_layers), trained=False,
                         rope=TimeRoPE(rotary_dims=dim // heads) if rope else None)
