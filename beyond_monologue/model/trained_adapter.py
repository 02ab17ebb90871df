"""The ``BM_DUPLEX_ADAPTER`` socket value: an adapter held in memory, e.g. straight out of training.

BM Train Duplex Adapter gives one; BM Apply Duplex Adapter attaches it without a file, and BM Save
Duplex Adapter writes it as a layout (a) file (docs/ADAPTER_FORMAT.md) with its training metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import BMInputError
from .adapter_checkpoint import META_TRAINED, adapter_from_state, file_state_dict
from .duplex_adapter import LAYOUT_BM, DuplexAdapter

#: Training metadata keys (safetensors header strings) and what each holds. ``*`` = required.
TRAINING_KEYS = {
    "bm_train_stage": "* 'talking' (stage 1, talking priority) or 'both' (stage 2, listening fusion)",
    "bm_train_steps": "* optimizer steps taken (integer)",
    "bm_train_samples": "training samples (clips) in the set (integer)",
    "bm_train_audio_hours": "hours of audio in the set (number)",
    "bm_train_base_model": "file name of the Wan DiT trained on",
    "bm_train_base_model_sha256": "its sha256, or 'unknown'",
    "bm_train_dropout": "JSON {'talk': p, 'listen': p, 'text': p}: null-condition dropout rates",
    "bm_train_seed": "seed (integer)",
    "bm_train_lr_new": "learning rate of the new (adapter) parameters (number)",
    "bm_train_lr_backbone": "learning rate of trainable backbone parameters (number; 0 = frozen)",
    "bm_train_ema": "EMA decay (number; 0 = off; the saved weights are the EMA weights when on)",
    "bm_train_backbone_file": "file in models/diffusion_models holding the backbone trained together with this adapter "
                              "(absent: the base model stayed frozen); load that file instead of the base model",
}
REQUIRED_KEYS = ("bm_train_stage", "bm_train_steps")
STAGES = ("talking", "both")
_INTEGER_KEYS = ("bm_train_steps", "bm_train_samples", "bm_train_seed")
_NUMBER_KEYS = ("bm_train_audio_hours", "bm_train_lr_new", "bm_train_lr_backbone", "bm_train_ema")


@dataclass
class TrainedAdapter:
    """A :class:`DuplexAdapter` and the facts of how it was made.

    Attributes:
        adapter: the module (its parameters in float32 on the CPU once training has finished; the
            EMA weights when EMA was on). Its ``config.trained`` is True for a trained adapter.
        metadata: string key -> string value, written into the safetensors header by BM Save Duplex
            Adapter (:data:`TRAINING_KEYS`: stage, steps, samples, hours of audio, base model file and
            hash, dropout rates, seed, learning rates, EMA; the RoPE and MHGK settings travel in the
            adapter config itself).
    """

    adapter: DuplexAdapter
    metadata: dict[str, str] = field(default_factory=dict)


def check_training_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Validate the training metadata of a :class:`TrainedAdapter` before it is written.

    Returns:
        The same keys and values (strings).

    Raises:
        BMInputError: (input ``trained_adapter``) a required key is missing, a key is not a
            ``bm_train_*`` key of :data:`TRAINING_KEYS`, a value is not a string, or a value does not
            parse (stage, integers, numbers, dropout JSON with rates in [0, 1]).
    """
    fix = "train it with BM Train Duplex Adapter (it fills these keys), or set them as docs/ADAPTER_FORMAT.md lists."
    for key in REQUIRED_KEYS:
        if key not in metadata:
            raise BMInputError("trained_adapter", f"has no training metadata {key!r}.", fix)
    for key, value in metadata.items():
        if key not in TRAINING_KEYS:
            raise BMInputError("trained_adapter", f"has unknown metadata key {key!r}.", f"use only {', '.join(TRAINING_KEYS)}.")
        if not isinstance(value, str):
            raise BMInputError("trained_adapter", f"metadata {key!r} is {type(value).__name__}, not a string.", fix)
    try:
        if metadata["bm_train_stage"] not in STAGES:
            raise ValueError(f"stage {metadata['bm_train_stage']!r} is not one of {STAGES}")
        for key in _INTEGER_KEYS:
            if key in metadata and int(metadata[key]) < 0:
                raise ValueError(f"{key} is negative")
        for key in _NUMBER_KEYS:
            if key in metadata and not (math.isfinite(float(metadata[key])) and float(metadata[key]) >= 0):
                raise ValueError(f"{key} is not a finite number >= 0")
        if "bm_train_dropout" in metadata:
            rates = json.loads(metadata["bm_train_dropout"])
            if not isinstance(rates, dict) or not all(0 <= float(v) <= 1 for v in rates.values()):
                raise ValueError("bm_train_dropout is not a JSON object of rates in [0, 1]")
    except (ValueError, TypeError) as err:
        raise BMInputError("trained_adapter", f"has unreadable training metadata ({err}).", fix) from None
    return dict(metadata)


def trained_file_contents(trained: TrainedAdapter) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header of the layout (a) file of ``trained`` (``bm_trained=true`` + training metadata).

    Raises:
        BMInputError: not a Beyond Monologue (layout a) adapter, or bad training metadata.
    """
    if trained.adapter.config.layout != LAYOUT_BM:
        raise BMInputError("trained_adapter", f"is a {trained.adapter.config.layout} adapter; only Beyond Monologue "
                           "adapters (layout a) are saved by this node.", "train a Beyond Monologue adapter.")
    extra = check_training_metadata(trained.metadata)
    sd, meta = file_state_dict(trained.adapter)
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}, {**meta, **extra, META_TRAINED: "true"}


def save_trained_adapter(trained: TrainedAdapter, path: str | Path) -> None:
    """Write ``trained`` as a layout (a) safetensors file (see :func:`trained_file_contents`)."""
    sd, meta = trained_file_contents(trained)
    save_file(sd, str(path), metadata=meta)


def attachable_module(trained: TrainedAdapter, operations=None, device: torch.device | str | None = None) -> DuplexAdapter:
    """A fresh module equal to loading the saved file of ``trained`` (the in-memory adapter is never shared).

    Raises:
        BMInputError: as :func:`trained_file_contents`.
    """
    sd, meta = trained_file_contents(trained)
    return adapter_from_state(sd, meta, "trained_adapter", operations=operations, device=device)
