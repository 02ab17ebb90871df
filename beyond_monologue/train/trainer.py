"""The training loop of the duplex adapter on one device (the ComfyUI node's engine).

Optimizer and EMA are PyTorch's own (``torch.optim``, ``torch.optim.swa_utils``); the model is the
user's ComfyUI MODEL with a trainable adapter attached through ``wan_patch``; every clip goes through
:func:`beyond_monologue.train.step.backward_clip`. One forward/backward per clip (clips of any size
mix, as ComfyUI's ``TrainLoraNode`` does for multi-resolution data), gradients summed over
``batch_size x grad_accumulation`` clips per optimizer step.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import comfy.model_management
import comfy.model_patcher
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import BMInputError
from ..model.adapter_checkpoint import check_compatible, describe_dit
from ..model.audio_qformer import QFormerConfig
from ..model.duplex_adapter import DuplexAdapter
from ..model.trained_adapter import TrainedAdapter
from ..model.wan_patch import attach_duplex_adapter, backbone
from .new_adapter import new_adapter_config
from .recipe import TrainRecipe
from .samples import TrainingSample, TrainingSet
from .step import StepPlan, backward_clip, plan_step

StepCallback = Callable[[int, int, float], None]  # (optimizer steps done, total, mean loss of the step)


@dataclass
class TrainResult:
    """What a run gives.

    Attributes:
        trained: the adapter (EMA copy when EMA is on), float32 on the CPU, ``config.trained`` True, with
            its training metadata.
        losses: mean loss of each optimizer step.
        case_losses: dropout case (:attr:`StepPlan.case`) -> losses of the clips that had it.
        seconds: wall time of the loop.
        peak_memory_mib: peak CUDA memory of the run, or on the CPU the process's peak resident size.
    """

    trained: TrainedAdapter
    losses: list[float] = field(default_factory=list)
    case_losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mib: float = 0.0


def new_adapter(model, training_set: TrainingSet, seed: int = 0, encoder: QFormerConfig | None = None,
                rope: bool = True) -> DuplexAdapter:
    """A new Beyond Monologue adapter sized for ``model`` and the set's audio features (identity at start).

    The Q-Former is the pack's default size (:class:`QFormerConfig`: 768 wide, 32 queries, 2 layers)
    unless ``encoder`` is given; MHGK kernels are the pack's default schedule; time-RoPE on the whole
    head (the paper's best attention has 1D RoPE). Output projections start at zero.
    """
    b = backbone(model)
    cfg = new_adapter_config(b.dim, b.num_layers, b.num_heads, training_set.signature(), encoder, rope)
    return DuplexAdapter(cfg).reset_parameters(seed, zero_output=True)


def trainable_parameters(adapter: DuplexAdapter, stage: str) -> list[torch.nn.Parameter]:
    """The adapter parameters a stage trains; stage ``"talking"`` freezes the Listening branch (and the rest train)."""
    params = []
    for name, param in adapter.named_parameters():
        listen = name.startswith("encoders.listen.") or ".listen." in name
        param.requires_grad_(not (stage == "talking" and listen))
        if param.requires_grad:
            params.append(param)
    return params


def check_set(model, training_set: TrainingSet, adapter: DuplexAdapter) -> None:
    """Refuse a set that cannot train this model/adapter, naming the input and the fix.

    Raises:
        BMInputError: empty set, latents of another channel count, or audio features of another
            encoder size / window context than the adapter's.
    """
    if not len(training_set):
        raise BMInputError("training_set", "is empty.", "append samples with BM Training Sample / BM Append Training Samples.")
    b = backbone(model)
    signature = training_set.signature()
    if signature["latent_channels"] != b.latent_channels:
        raise BMInputError("training_set", f"holds {signature['latent_channels']}-channel latents; the MODEL's VAE space has "
                           f"{b.latent_channels}.", "encode the clips with the VAE of this model (Wan2.2 VAE for Wan2.2-TI2V-5B).")
    enc = adapter.config.encoder
    if (signature["audio_layers"], signature["audio_dim"]) != (enc.audio_layers, enc.audio_dim):
        raise BMInputError("training_set", f"has audio features of {signature['audio_layers']} x {signature['audio_dim']}; the "
                           f"adapter expects {enc.audio_layers} x {enc.audio_dim}.", "encode the clips with the adapter's audio encoder.")
    if signature["context_frames"] != enc.context_frames:
        raise BMInputError("training_set", f"was windowed with {signature['context_frames']} context frames; the adapter "
                           f"expects {enc.context_frames}.", "re-make the samples.")
    check_compatible(adapter.config, b.dim, b.num_layers, b.num_heads, "adapter")


def make_optimizer(recipe: TrainRecipe, params, backbone_params=()) -> torch.optim.Optimizer:
    """The recipe's optimizer: group 0 the adapter parameters at ``lr_new``, group 1 (when given) backbone parameters at ``lr_backbone``."""
    groups = [{"params": list(params), "lr": recipe.lr_new}]
    if backbone_params:
        groups.append({"params": list(backbone_params), "lr": recipe.lr_backbone})
    if recipe.optimizer == "AdamW":
        return torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "Adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=0.9)


def peak_memory_mib(device) -> float:
    """Peak CUDA memory allocated on ``device`` (MiB), or on the CPU the process's peak resident size (Linux)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass
class TrainingRun:
    """A model ready to train: the MODEL with the trainable adapter attached, its optimizer and EMA.

    Attributes:
        patched: ComfyUI ``ModelPatcher`` (a clone of the user's MODEL) with ``module`` attached and loaded.
        module: the adapter being trained (float32, ``requires_grad`` per stage).
        names: names of the trainable parameters, in the optimizer's order.
        optimizer: ``torch.optim`` optimizer over those parameters.
        ema: ``AveragedModel`` of ``module`` (None when ``recipe.ema_decay`` is 0).
    """

    patched: object
    module: DuplexAdapter
    names: list[str]
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None


def start_run(model, training_set: TrainingSet, recipe: TrainRecipe, adapter: DuplexAdapter | None = None,
              backbone_trains: bool = False) -> TrainingRun:
    """Attach a trainable copy of ``adapter`` (or a new one) to ``model`` and build its optimizer and EMA.

    Call with autograd on and outside inference mode (``train_adapter`` and the ``torchrun`` runner do).
    ``backbone_trains``: the caller (the FSDP2 path of the ``torchrun`` run) makes backbone parameters
    trainable itself and replaces optimizer and EMA; elsewhere ``lr_backbone`` > 0 is refused.

    Raises:
        BMInputError: ``lr_backbone`` > 0 outside the FSDP2 path, and see :func:`check_set`.
    """
    if recipe.lr_backbone > 0 and not backbone_trains:
        raise BMInputError("lr_backbone", f"is {recipe.lr_backbone}: backbone parameters train only in a torchrun run "
                           "with FSDP2 (5e9 float32 weights, gradients and AdamW moments do not fit one GPU).",
                           "set lr_backbone to 0 here, or train with `python -m beyond_monologue.train run` and "
                           "parallelism = \"fsdp\" (docs/TRAINING.md).")
    module = _trainable_copy(adapter) if adapter is not None else new_adapter(model, training_set, recipe.seed)
    module.requires_grad_(True).train()
    check_set(model, training_set, module)
    params = trainable_parameters(module, recipe.stage)
    names = [name for name, param in module.named_parameters() if param.requires_grad]
    device = model.load_device
    patcher = comfy.model_patcher.ModelPatcher(module, load_device=device, offload_device=model.offload_device)
    patched = attach_duplex_adapter(model, patcher)
    comfy.model_management.load_models_gpu([patched, patcher], force_full_load=True)
    patched.model.requires_grad_(False)
    _autograd_ready(patched.model)
    optimizer = make_optimizer(recipe, params)
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True) \
        if recipe.ema_decay > 0 else None
    return TrainingRun(patched, module, names, optimizer, ema)


def draw_clips(training_set: TrainingSet, recipe: TrainRecipe, generator: torch.Generator, streams: tuple[str, ...],
               count: int) -> list[tuple[TrainingSample, StepPlan]]:
    """The clips of one optimizer step and their plans, drawn in order from ``generator``.

    For each of the ``count`` clips: a sample index uniform over the set, then :func:`plan_step`.
    Every ``torchrun`` rank draws the whole global batch from the same generator and keeps its own
    share, so the step's clips do not depend on the world size.
    """
    clips = []
    for _ in range(count):
        sample = training_set.samples[int(torch.randint(0, len(training_set), (), generator=generator))]
        clips.append((sample, plan_step(sample, recipe, generator, streams)))
    return clips


def check_loss(value: float, step: int) -> None:
    """Raise when a clip's loss is not finite.

    Raises:
        BMInputError: (``lr_new``) a NaN or infinite loss at ``step`` (1-based).
    """
    if not math.isfinite(value):
        raise BMInputError("lr_new", f"made the loss {value} at step {step}.",
                           "lower the learning rate or train in float32/bfloat16 instead of float16.")


def finish_step(run: TrainingRun) -> None:
    """Apply the summed gradients: optimizer step, zero the gradients, update the EMA."""
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update_parameters(run.module)


def trained_adapter(run: TrainingRun, recipe: TrainRecipe, training_set: TrainingSet, steps: int | None = None) -> TrainedAdapter:
    """The run's output: a float32 CPU copy of the EMA adapter (or the adapter without EMA), ``trained`` True, with metadata."""
    final = copy.deepcopy(run.ema.module if run.ema is not None else run.module).float().cpu().eval().requires_grad_(False)
    final.config = dataclasses.replace(final.config, trained=True)
    if steps is not None:
        recipe = dataclasses.replace(recipe, steps=steps)
    return TrainedAdapter(final, training_metadata(recipe, training_set, final, run.patched))


def train_adapter(model, training_set: TrainingSet, recipe: TrainRecipe, adapter: DuplexAdapter | None = None,
                  negative_text: torch.Tensor | None = None, training_dtype: torch.dtype | None = None,
                  checkpointing: bool = False, on_step: StepCallback | None = None,
                  check_interrupt: Callable[[], None] | None = None) -> TrainResult:
    """Train (or continue) a duplex adapter on ``training_set``.

    Args:
        model: a native Wan2.2 MODEL (``ModelPatcher``); an adapter attached to it is replaced by the
            one being trained. The base weights stay frozen.
        training_set: the clips.
        recipe: every setting (:class:`~beyond_monologue.train.recipe.TrainRecipe`).
        adapter: an adapter to continue from (copied, never changed); None = a new one
            (:func:`new_adapter`).
        negative_text: ``[L, D]`` negative prompt context for text dropout (None = zeros).
        training_dtype: autocast dtype of the forward pass (None/float32 = full precision).
        checkpointing: gradient checkpointing of the DiT blocks (less memory, about a third more time).
        on_step: progress after every optimizer step.
        check_interrupt: called before every clip; raises to stop (ComfyUI's Cancel). Nothing is
            changed outside this function's own copies when it raises.

    Returns:
        :class:`TrainResult`.

    Raises:
        BMInputError: see :func:`check_set` and :class:`TrainRecipe`.
    """
    with torch.inference_mode(False), torch.enable_grad():  # ComfyUI runs nodes in inference mode
        run = start_run(model, training_set, recipe, adapter)
        return _loop(run, training_set, recipe, negative_text, training_dtype, checkpointing, on_step, check_interrupt)


def _loop(run: TrainingRun, training_set, recipe, negative_text, training_dtype, checkpointing, on_step,
          check_interrupt) -> TrainResult:
    """The optimizer steps of :func:`train_adapter` (called with autograd on, outside inference mode)."""
    device = run.patched.load_device
    generator = torch.Generator().manual_seed(recipe.seed)
    result = TrainResult(trained=None)  # type: ignore[arg-type]
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    clips_per_step = recipe.batch_size * recipe.grad_accumulation
    for step in range(recipe.steps):
        total = 0.0
        for sample, plan in draw_clips(training_set, recipe, generator, run.module.streams, clips_per_step):
            if check_interrupt is not None:
                check_interrupt()
            value = backward_clip(run.patched, sample, plan, negative_text, training_dtype, 1.0 / clips_per_step,
                                  checkpointing)
            check_loss(value, step + 1)
            total += value
            result.case_losses.setdefault(plan.case, []).append(value)
        finish_step(run)
        result.losses.append(total / clips_per_step)
        if on_step is not None:
            on_step(step + 1, recipe.steps, result.losses[-1])
    result.seconds = time.perf_counter() - started
    result.peak_memory_mib = peak_memory_mib(device)
    result.trained = trained_adapter(run, recipe, training_set)
    return result


def _trainable_copy(adapter: DuplexAdapter) -> DuplexAdapter:
    """A float32 copy whose tensors are ordinary (not inference-mode) tensors, so autograd can use them."""
    copied = DuplexAdapter(adapter.config)
    copied.load_state_dict({k: v.detach().clone().float() for k, v in adapter.state_dict().items()})
    return copied


def _autograd_ready(module: torch.nn.Module) -> None:
    """Replace inference-mode parameters and buffers (ComfyUI loads models inside ``torch.inference_mode``) by
    ordinary copies: autograd must save the frozen weights that the adapter's gradients flow through."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_inference():
                sub._parameters[name] = torch.nn.Parameter(param.detach().clone(), requires_grad=False)
        for name, buffer in list(sub._buffers.items()):
            if buffer is not None and buffer.is_inference():
                sub._buffers[name] = buffer.clone()


def training_metadata(recipe: TrainRecipe, training_set: TrainingSet, adapter: DuplexAdapter, model) -> dict[str, str]:
    """The ``bm_train_*`` metadata of a run (keys in :data:`beyond_monologue.model.trained_adapter.TRAINING_KEYS`)."""
    b = backbone(model)
    return {"bm_train_stage": recipe.stage, "bm_train_steps": str(recipe.steps), "bm_train_samples": str(len(training_set)),
            "bm_train_audio_hours": f"{training_set.audio_hours:.6f}", "bm_train_base_model": describe_dit(b.dim, b.num_layers),
            "bm_train_base_model_sha256": "unknown", "bm_train_dropout": json.dumps(recipe.dropout()),
            "bm_train_seed": str(recipe.seed), "bm_train_lr_new": repr(recipe.lr_new),
            "bm_train_lr_backbone": repr(recipe.lr_backbone), "bm_train_ema": repr(recipe.ema_decay)}
