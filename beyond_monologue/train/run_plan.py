"""``--dry-run``: what a ``torchrun`` training run would do and how much memory a rank needs, from file headers only.

Nothing is loaded but safetensors headers (the model's tensor shapes and dtype, the training sets'
sample shapes and metadata) and the adapter is built on the ``meta`` device to count its
parameters, so the plan of a 5B-parameter run prints in a second on any machine.

Memory arithmetic per rank (estimates, not measurements). DDP (only the adapter trains; every
rank holds a full replica):

* frozen backbone: its parameters x bytes per parameter of the file (bf16: 2 B);
* adapter, trained in float32: weights 4 B + gradients 4 B (DDP's buckets are views of them,
  ``gradient_as_bucket_view``) + AdamW's two moments 8 B + the EMA copy 4 B = 20 B a parameter;

FSDP2 (:mod:`beyond_monologue.train.fsdp`; everything below is divided by the world size):

* backbone as float32 master shards: 4 B a parameter (frozen ones too);
* trained backbone parameters: gradients 4 B + AdamW moments 8 B + EMA 4 B = 16 B a parameter;
* adapter: 20 B a parameter as above;
* plus, not divided: the gathered unit weights (one block's worth in the file's dtype, twice for
  FSDP2's prefetch) and that block's float32 unsharded gradients;
* activations of the largest clip crop (tokens = latent frames x h/2 x w/2, Wan2.2's 1x2x2 patches,
  plus the guide latent's frame): with gradient checkpointing the block inputs
  (``layers x tokens x dim``) plus one recomputed block (~20 such tensors and the FFN hidden
  ``tokens x ffn_dim``), without it ~20 tensors and the FFN hidden per block, in the training dtype.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass

import torch
from safetensors import safe_open

from ..errors import BMInputError
from .run_config import RunConfig

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "U8": 1}
ACTIVATION_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 2**30


@dataclass(frozen=True)
class SetFacts:
    """One training-set file from its header: clips, seconds of audio, latent shapes ``(C, T, h, w)``, audio signature."""

    name: str
    clips: int
    seconds: float
    shapes: tuple[tuple[int, ...], ...]
    signature: dict


def read_set_facts(path: str, name: str) -> SetFacts:
    """Facts of a BM Save Training Set file without reading its tensors.

    Raises:
        BMInputError: (``training_sets``) not a readable training-set file.
    """
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            items = json.loads(meta["bm_samples"])
            shapes = tuple(tuple(f.get_slice(f"{i}.latents").get_shape()) for i in range(len(items)))
            talk = [f.get_slice(f"{i}.talk").get_shape() for i in range(len(items))]
    except Exception as err:  # noqa: BLE001 - any unreadable header is the same user error
        raise BMInputError("training_sets", f"{name!r} is not a readable training set ({type(err).__name__}: {err}).",
                           "list files written by BM Save Training Set (models/bm_training_sets).") from None
    seconds = sum(t[0] / float(item["fps"]) for t, item in zip(talk, items, strict=True))
    signature = {"audio_layers": talk[0][1], "audio_dim": talk[0][2], "context_frames": items[0]["context_frames"]} if items else {}
    return SetFacts(name, len(items), seconds, shapes, signature)


@dataclass(frozen=True)
class ModelFacts:
    """The diffusion model file from its header: parameters, bytes per parameter, width, blocks, FFN width."""

    parameters: int
    bytes_per_parameter: int
    dim: int
    layers: int
    ffn_dim: int


def read_model_facts(path: str) -> ModelFacts:
    """Facts of a Wan DiT safetensors file (keys with or without ComfyUI's ``model.diffusion_model.`` prefix).

    Raises:
        BMInputError: (``model``) not a Wan DiT file.
    """
    try:
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
            total, size, shapes = 0, 0, {}
            for key in keys:
                piece = f.get_slice(key)
                shape = piece.get_shape()
                total += math.prod(shape)
                size = size or DTYPE_BYTES.get(piece.get_dtype(), 2)
                short = key.split("diffusion_model.")[-1]
                if short in ("patch_embedding.weight", "blocks.0.ffn.0.weight"):
                    shapes[short] = shape
        layers = len({m.group(1) for key in keys if (m := re.search(r"blocks\.(\d+)\.", key))})
        return ModelFacts(total, size, shapes["patch_embedding.weight"][0], layers, shapes["blocks.0.ffn.0.weight"][0])
    except (KeyError, OSError, Exception) as err:  # noqa: BLE001
        raise BMInputError("model", f"is not a Wan diffusion model file ({type(err).__name__}: {err}).",
                           "pick a Wan2.2-TI2V-5B file of models/diffusion_models.") from None


def adapter_parameters(model: ModelFacts, signature: dict) -> int:
    """Parameters of the new adapter :func:`~beyond_monologue.train.trainer.new_adapter` would build (counted on ``meta``)."""
    from ..model.duplex_adapter import DuplexAdapter
    from .new_adapter import new_adapter_config

    with torch.device("meta"):
        adapter = DuplexAdapter(new_adapter_config(model.dim, model.layers, None, signature))
    return sum(p.numel() for p in adapter.parameters())


def memory_estimate(config: RunConfig, model: ModelFacts, adapter_params: int, max_tokens: int, world: int = 1,
                    trained_backbone: int = 0) -> dict[str, float]:
    """GiB per rank: ``backbone``, (FSDP2: ``backbone_training``, ``gathered``), ``adapter_training``, ``activations``, ``total``.

    ``trained_backbone``: backbone parameters that train (FSDP2 runs; see the module docstring).
    """
    act = ACTIVATION_BYTES[config.training_dtype]
    per_block = 20 * max_tokens * model.dim * act + max_tokens * model.ffn_dim * act
    if config.checkpointing:
        activations = model.layers * max_tokens * model.dim * act + per_block
    else:
        activations = model.layers * per_block
    if config.engine == "fsdp":
        block = model.parameters / max(model.layers, 1)
        out = {"backbone": model.parameters * 4 / world / GIB, "backbone_training": trained_backbone * 16 / world / GIB,
               "adapter_training": adapter_params * 20 / world / GIB,
               "gathered": block * (2 * model.bytes_per_parameter + 4) / GIB, "activations": activations / GIB}
    else:
        out = {"backbone": model.parameters * model.bytes_per_parameter / GIB, "adapter_training": adapter_params * 20 / GIB,
               "activations": activations / GIB}
    out["total"] = sum(out.values())
    return out


def matching_parameters(path: str, patterns: tuple[str, ...]) -> int:
    """Parameters of a DiT file whose names (without ``model.diffusion_model.``) match any ``fnmatch`` pattern."""
    with safe_open(path, framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys()  # noqa: SIM118
                   if any(fnmatch.fnmatchcase(key.removeprefix("model.diffusion_model."), p) for p in patterns))


def file_parameters(path: str) -> int:
    """Parameters in a safetensors file, from its header (the adapter of ``continue_from``)."""
    with safe_open(path, framework="pt") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118 - safe_open has no __iter__


def plan_text(config: RunConfig, world: int, model_path: str, set_paths: list[tuple[str, str]],
              adapter_path: str | None = None) -> str:
    """The printed plan: sets, clips, steps, per-rank batch, memory estimate per rank.

    ``adapter_path``: the ``continue_from`` file (its parameters are counted; None = a new adapter).

    Raises:
        BMInputError: see :meth:`RunConfig.check_world_size`, :func:`read_set_facts`, :func:`read_model_facts`.
    """
    per_rank = config.check_world_size(world)
    sets = [read_set_facts(path, name) for name, path in set_paths]
    model = read_model_facts(model_path)
    clips = sum(s.clips for s in sets)
    recipe = config.recipe
    tokens = max((min(shape[1], recipe.window_latents) + 1) * (shape[2] // 2) * (shape[3] // 2)
                 for s in sets for shape in s.shapes) if clips else 0
    if adapter_path:
        adapter = file_parameters(adapter_path)
    else:
        adapter = adapter_parameters(model, next(s.signature for s in sets if s.signature)) if clips else 0
    trained = matching_parameters(model_path, config.backbone_parameters) if recipe.lr_backbone > 0 else 0
    memory = memory_estimate(config, model, adapter, tokens, world, trained)
    lines = [f"run {config.output!r}: stage {recipe.stage!r} (preset {config.preset or 'none'}), model {config.model}",
             f"training sets ({len(sets)}):"]
    lines += [f"  {s.name}: {s.clips} clips, {s.seconds / 60:.1f} min" for s in sets]
    seen = recipe.steps * config.global_batch
    lines += [f"clips: {clips} ({sum(s.seconds for s in sets) / 3600:.3f} h of audio)",
              f"steps: {recipe.steps} x global batch {config.global_batch} = {seen} clip passes "
              f"({seen / max(clips, 1):.1f} per clip)",
              f"world size {world}: {per_rank} clips per rank per step, checkpoint every {config.checkpoint_every} steps",
              f"model: {model.parameters / 1e9:.3f} B parameters ({model.dim} wide, {model.layers} blocks), "
              + (f"{trained / 1e9:.3f} B of them train at lr {recipe.lr_backbone}" if trained else "frozen"),
              f"parallelism: {config.engine}" + (" (FSDP2 fully_shard: weights, gradients and optimizer state sharded)"
                                                  if config.engine == "fsdp" else " (the adapter's gradients averaged by DDP)"),
              f"adapter ({config.continue_from or 'new'}): {adapter / 1e9:.3f} B parameters, {recipe.optimizer} lr {recipe.lr_new}, EMA {recipe.ema_decay}",
              f"largest crop: {tokens} tokens; {config.training_dtype}, gradient checkpointing {config.checkpointing}",
              "memory per rank (GiB, estimate): " + ", ".join(f"{k} {v:.2f}" for k, v in memory.items())]
    return "\n".join(lines)
