"""The ``train.toml`` of a ``torchrun`` training run: read with ``tomllib`` into a :class:`RunConfig`.

Every file named in the config lives in a ComfyUI folder (``folder_paths``): the model in
``models/diffusion_models`` (loaded by ComfyUI's own ``comfy.sd.load_diffusion_model``, as Load
Diffusion Model does, so what trains is what BM Apply Duplex Adapter attaches), training sets in
``models/bm_training_sets`` (BM Save Training Set's files), the adapter to continue from in
``models/beyond_monologue``; checkpoints and logs go to ``<ComfyUI output>/bm_train/<output>`` and the
exported adapter to ``models/beyond_monologue/<output>.safetensors``.

Example::

    model = "wan2.2_ti2v_5B_fp16.safetensors"
    training_sets = ["conversations_000.safetensors", "conversations_001.safetensors"]
    output = "bm_stage1"
    preset = "talking"          # paper stage 1 (see PRESETS)
    global_batch = 32
    checkpoint_every = 1000

    [recipe]                    # any TrainRecipe field except batch_size / grad_accumulation
    steps = 100000
    lr_new = 1e-5

Presets: the paper's two stages (arXiv 2604.10367 §4.1 via /shared/research/papers.md §1.4-1.5):
stage 1 "talking priority" 100k steps, stage 2 "listening fusion" 30k steps; AdamW, lr 1e-5 for
new parameters, EMA 0.999, bf16, global batch 32. The other recipe values are the pack's choices
documented in :mod:`beyond_monologue.train.recipe`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from ..errors import BMInputError
from .recipe import TrainRecipe

#: Paper facts per stage (the ``preset`` key); ``[recipe]`` and ``global_batch`` override them.
PRESETS = {
    "talking": {"recipe": {"stage": "talking", "steps": 100_000, "lr_new": 1e-5, "optimizer": "AdamW", "ema_decay": 0.999},
                "global_batch": 32, "training_dtype": "bfloat16"},
    "both": {"recipe": {"stage": "both", "steps": 30_000, "lr_new": 1e-5, "optimizer": "AdamW", "ema_decay": 0.999},
             "global_batch": 32, "training_dtype": "bfloat16"},
}
TRAINING_DTYPES = ("float32", "bfloat16", "float16")
PARALLELISMS = ("auto", "ddp", "fsdp")
TOP_KEYS = ("model", "training_sets", "output", "preset", "global_batch", "checkpoint_every", "training_dtype",
            "checkpointing", "continue_from", "parallelism", "backbone_parameters", "recipe")
DERIVED_RECIPE_KEYS = ("batch_size", "grad_accumulation")
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(TrainRecipe) if f.name not in DERIVED_RECIPE_KEYS)


@dataclass(frozen=True)
class RunConfig:
    """Everything a ``torchrun`` training run needs besides the launcher's world size.

    Attributes:
        model: file name of the Wan2.2 diffusion model in ``models/diffusion_models``.
        training_sets: file names in ``models/bm_training_sets`` (the shards of this run, joined in order).
        output: run name: checkpoints/logs in ``<output dir>/bm_train/<output>``, the adapter in
            ``models/beyond_monologue/<output>.safetensors``.
        recipe: the :class:`TrainRecipe`; its ``batch_size`` is ``global_batch`` and
            ``grad_accumulation`` 1 (one clip per forward pass on each rank, gradients summed over
            the rank's share and averaged over ranks by DDP).
        global_batch: clips per optimizer step over all ranks (must be a multiple of the world size).
        checkpoint_every: optimizer steps between checkpoints (the last step is always saved).
        training_dtype: autocast dtype of the forward pass: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        checkpointing: gradient (activation) checkpointing of every DiT block.
        continue_from: adapter file in ``models/beyond_monologue`` to start from ("" = a new adapter).
        preset: the stage preset the config started from ("" = none).
        parallelism: ``"ddp"`` (the adapter trains, the frozen backbone is replicated), ``"fsdp"``
            (FSDP2 ``fully_shard``: required when ``recipe.lr_backbone`` > 0) or ``"auto"`` (fsdp
            exactly when backbone parameters train); :attr:`engine` is the resolved one.
        backbone_parameters: ``fnmatch`` patterns over the DiT's parameter names that train at
            ``recipe.lr_backbone`` (default ``("*",)``: all of them, the pack's choice since the paper
            does not say which).
    """

    model: str
    training_sets: tuple[str, ...]
    output: str
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    global_batch: int = 1
    checkpoint_every: int = 1000
    training_dtype: str = "bfloat16"
    checkpointing: bool = True
    continue_from: str = ""
    preset: str = ""
    parallelism: str = "auto"
    backbone_parameters: tuple[str, ...] = ("*",)

    @property
    def engine(self) -> str:
        """``"ddp"`` or ``"fsdp"``: :attr:`parallelism` with ``"auto"`` resolved."""
        if self.parallelism != "auto":
            return self.parallelism
        return "fsdp" if self.recipe.lr_backbone > 0 else "ddp"

    def check_world_size(self, world_size: int) -> int:
        """Clips per rank per optimizer step.

        Raises:
            BMInputError: (``global_batch``) not a multiple of ``world_size``.
        """
        if world_size < 1 or self.global_batch % world_size:
            raise BMInputError("global_batch", f"is {self.global_batch}, which {world_size} processes cannot share equally.",
                               f"use a multiple of the world size ({world_size}), or launch a divisor of "
                               f"{self.global_batch} processes.")
        return self.global_batch // world_size


def _expect(value, kind, key: str, what: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BMInputError(key, f"is {value!r}; it must be {what}.", f"write {key} as {what} in the config.")
    return value


def parse_config(data: dict, label: str = "config") -> RunConfig:
    """A :class:`RunConfig` from the parsed TOML ``data``.

    Raises:
        BMInputError: naming the key: an unknown key (top level or ``[recipe]``), a value of the wrong
            type, an unknown preset or dtype, a missing ``model`` / ``training_sets`` / ``output``, a
            recipe value :class:`TrainRecipe` refuses.
    """
    for key in data:
        if key not in TOP_KEYS:
            raise BMInputError(key, f"is not a key of the {label}.", f"use only {', '.join(TOP_KEYS)}.")
    recipe_data = _expect(data.get("recipe", {}), dict, "recipe", "a [recipe] table")
    for key in recipe_data:
        if key in DERIVED_RECIPE_KEYS:
            raise BMInputError(f"recipe.{key}", "is set by global_batch in a torchrun run.",
                               "remove it and set global_batch (clips per optimizer step over all processes).")
        if key not in RECIPE_KEYS:
            raise BMInputError(f"recipe.{key}", "is not a recipe key.", f"use only {', '.join(RECIPE_KEYS)}.")
    preset = _expect(data.get("preset", ""), str, "preset", "a string")
    if preset and preset not in PRESETS:
        raise BMInputError("preset", f"is {preset!r}.", f"use one of {', '.join(PRESETS)} (or leave it out).")
    base = PRESETS.get(preset, {"recipe": {}})
    for key in ("model", "output"):
        if not _expect(data.get(key, ""), str, key, "a file or folder name"):
            raise BMInputError(key, "is missing.", f"set {key} in the config.")
    sets = _expect(data.get("training_sets", []), list, "training_sets", "a list of file names")
    if not sets or not all(isinstance(s, str) and s for s in sets):
        raise BMInputError("training_sets", f"is {sets!r}.", "list at least one file of models/bm_training_sets.")
    output = data["output"]
    if Path(output).name != output or output in (".", ".."):
        raise BMInputError("output", f"is {output!r}: a run name, not a path.", "use a plain name such as 'bm_stage1'.")
    global_batch = _expect(data.get("global_batch", base.get("global_batch", 1)), int, "global_batch", "an integer")
    every = _expect(data.get("checkpoint_every", 1000), int, "checkpoint_every", "an integer")
    for key, value in (("global_batch", global_batch), ("checkpoint_every", every)):
        if value < 1:
            raise BMInputError(key, f"is {value}.", "use 1 or more.")
    dtype = _expect(data.get("training_dtype", base.get("training_dtype", "bfloat16")), str, "training_dtype", "a string")
    if dtype not in TRAINING_DTYPES:
        raise BMInputError("training_dtype", f"is {dtype!r}.", f"use one of {', '.join(TRAINING_DTYPES)}.")
    values = {**base["recipe"], **recipe_data, "batch_size": global_batch, "grad_accumulation": 1}
    for key, value in recipe_data.items():
        default = getattr(TrainRecipe, key)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
            raise BMInputError(f"recipe.{key}", f"is {value!r}; it must be a {type(default).__name__}.",
                               f"write recipe.{key} as a {type(default).__name__}.")
    try:
        recipe = TrainRecipe(**values)
    except BMInputError as err:
        raise BMInputError(f"recipe.{err.input_name}", err.problem, err.fix) from None
    parallelism = _expect(data.get("parallelism", "auto"), str, "parallelism", "a string")
    if parallelism not in PARALLELISMS:
        raise BMInputError("parallelism", f"is {parallelism!r}.", f"use one of {', '.join(PARALLELISMS)}.")
    if parallelism == "ddp" and recipe.lr_backbone > 0:
        raise BMInputError("parallelism", f"is 'ddp' but recipe.lr_backbone is {recipe.lr_backbone}: DDP replicates the "
                           "trained backbone with its AdamW state on every GPU (16 B a parameter).",
                           "use parallelism = \"fsdp\" (or \"auto\"), or set recipe.lr_backbone = 0.")
    patterns = _expect(data.get("backbone_parameters", ["*"]), list, "backbone_parameters", "a list of name patterns")
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise BMInputError("backbone_parameters", f"is {patterns!r}.", "list fnmatch patterns such as \"blocks.*\".")
    return RunConfig(model=data["model"], training_sets=tuple(sets), output=output, recipe=recipe,
                     global_batch=global_batch, checkpoint_every=every, training_dtype=dtype,
                     checkpointing=_expect(data.get("checkpointing", True), bool, "checkpointing", "true or false"),
                     continue_from=_expect(data.get("continue_from", ""), str, "continue_from", "a file name"),
                     preset=preset, parallelism=parallelism, backbone_parameters=tuple(patterns))


def load_config(path: str | Path) -> RunConfig:
    """Read ``path`` (TOML) into a :class:`RunConfig`.

    Raises:
        BMInputError: (``config``) a missing or unparsable file, and see :func:`parse_config`.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BMInputError("config", f"{str(path)!r} cannot be read ({type(err).__name__}: {err}).",
                           "pass a TOML file (see docs/TRAINING.md, 'Training at scale').") from None
    return parse_config(data, f"config {path.name!r}")
