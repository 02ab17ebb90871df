"""The ``torchrun`` training run: the node's training step on every rank, gradients averaged by DDP.

Launched by PyTorch's own launcher (``torchrun``, one node or several through its rendezvous);
this module only reads the ranks torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and calls
``torch.distributed.init_process_group`` (NCCL on GPUs, gloo on the CPU). Everything else is the
one training path of the ComfyUI node (:mod:`beyond_monologue.train.trainer`):

* the model comes from ComfyUI's ``comfy.sd.load_diffusion_model`` (what Load Diffusion Model
  gives), the adapter is attached with ``wan_patch`` exactly as BM Apply Duplex Adapter does, and
  :func:`~beyond_monologue.train.trainer.start_run` builds the optimizer and EMA;
* every step, each rank draws the WHOLE global batch (sample indices and :class:`StepPlan` from one
  generator seeded by the recipe seed, :func:`~beyond_monologue.train.trainer.draw_clips`) and
  keeps clips ``rank, rank + world, ...`` (``DistributedSampler``'s strided split), so the clips
  of a step are the same whatever the world size;
* each of its clips goes through :func:`~beyond_monologue.train.step.clip_loss` inside
  ``DistributedDataParallel``'s forward; the backward of ``loss / clips_per_rank`` is summed
  locally (``no_sync``) and DDP averages over ranks on the last clip, which gives exactly the
  one-process gradient ``sum(loss) / global_batch``;
* :func:`~beyond_monologue.train.trainer.finish_step` (AdamW step, EMA update) then runs on every
  rank on identical gradients, so every rank holds the same adapter.

Two engines (the config's ``parallelism``; ``auto`` = FSDP2 exactly when backbone parameters train):

* :class:`DdpEngine`: only the adapter trains, so the frozen backbone needs no gradients or
  optimizer state and is simply replicated (10 GB in bf16 for Wan2.2-TI2V-5B); the adapter's
  1.47 B parameters with float32 weights, gradients, two AdamW moments and the EMA copy are
  1.47e9 x 20 B = 29 GB per GPU, which fits an 80 GB GPU next to the backbone and ~10 GB of
  checkpointed activations.
* :class:`FsdpEngine`: backbone parameters train too (``recipe.lr_backbone`` > 0, the paper's 2e-6
  group): 5e9 x 16 B (float32 weights, gradients, AdamW moments) = 80 GB on top of the rest fits only
  sharded, so DiT and adapter go through FSDP2's ``fully_shard`` (:mod:`beyond_monologue.train.fsdp`).
  The step loop, the clip draw and the logs are the same; checkpoints hold the sharded state.

Checkpoints: ``torch.distributed.checkpoint`` (DCP) folders ``step_NNNNNNNN`` in the run folder
holding the adapter, the EMA, the optimizer state (per parameter name), the step, the clip
generator's state and the CPU (and CUDA) RNG state, all as tensors; a ``run.json`` written after
DCP has finished on every rank marks a checkpoint complete, so a run killed while saving resumes
from the previous one. DCP's own ``.metadata`` file is PyTorch's format (pickle), read only from
the run's own folder. Logs: ``log.jsonl`` (one line per optimizer step, rank 0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.nn.parallel import DistributedDataParallel

from ..errors import BMInputError
from ..model.duplex_adapter import DuplexAdapter
from ..model.trained_adapter import TrainedAdapter, save_trained_adapter
from . import fsdp
from .run_config import RunConfig
from .run_log import RunLog
from .samples import TrainingSet, load_set
from .step import clip_loss
from .trainer import (
    TrainingRun,
    check_loss,
    draw_clips,
    finish_step,
    start_run,
    trained_adapter,
    training_metadata,
)

SET_FOLDER = "bm_training_sets"
ADAPTER_FOLDER = "beyond_monologue"
RUNS_FOLDER = "bm_train"  # inside ComfyUI's output directory
KILL_ENV = "BM_TRAIN_KILL_AFTER_STEP"  # tests: SIGKILL every rank right after this optimizer step
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Ranks:
    """Where this process sits: global ``rank``, ``world`` size, ``local`` rank on its node (torchrun's env)."""

    rank: int
    world: int
    local: int


def torchrun_ranks() -> Ranks:
    """The ranks torchrun set in the environment.

    Raises:
        BMInputError: (``launcher``) not started by torchrun.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise BMInputError("launcher", "did not set RANK / WORLD_SIZE: the run was not started by torchrun.",
                           "launch it as `torchrun --nproc-per-node N -m beyond_monologue.train run --config train.toml` "
                           "(N = 1 on one GPU), or add --dry-run to see the plan.")
    return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def model_file(folder: str, name: str, key: str) -> str:
    """Full path of ``name`` in ComfyUI's ``models/<folder>`` (registered with ``folder_paths`` if the pack's nodes are not loaded).

    Raises:
        BMInputError: (``key``) no such file there.
    """
    import folder_paths

    if folder not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[folder] = ([os.path.join(folder_paths.models_dir, folder)], {".safetensors"})
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise BMInputError(key, f"{name!r} is not in models/{folder} ({folder_paths.get_folder_paths(folder)}).",
                           f"put the file in models/{folder} or fix the name.")
    return path


def run_folder(config: RunConfig) -> Path:
    """``<ComfyUI output directory>/bm_train/<output>``: checkpoints, ``log.jsonl``."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / RUNS_FOLDER / config.output


def backbone_export_path(config: RunConfig) -> Path:
    """``models/diffusion_models/<output>.safetensors``: the trained backbone (only when ``lr_backbone`` > 0)."""
    import folder_paths

    return Path(folder_paths.models_dir) / "diffusion_models" / f"{config.output}.safetensors"


def export_path(config: RunConfig) -> Path:
    """``models/beyond_monologue/<output>.safetensors``: the exported (EMA) adapter, layout (a)."""
    import folder_paths

    return Path(folder_paths.models_dir) / ADAPTER_FOLDER / f"{config.output}.safetensors"


def load_training_sets(config: RunConfig) -> TrainingSet:
    """The run's clips: every file of ``training_sets`` joined in order.

    Raises:
        BMInputError: a missing, foreign or unreadable file, or sets of different model families.
    """
    joined = TrainingSet()
    for name in config.training_sets:
        joined = joined.extended(load_set(model_file(SET_FOLDER, name, "training_sets"), f"training set {name!r}").samples)
    return joined


class ClipLoss(torch.nn.Module):
    """What DDP wraps: the adapter (its only parameters) and a forward that is :func:`clip_loss` on the patched MODEL."""

    def __init__(self, run: TrainingRun, training_dtype: torch.dtype | None, checkpointing: bool):
        super().__init__()
        self.adapter = run.module
        self._patched, self._dtype, self._checkpointing = run.patched, training_dtype, checkpointing

    def forward(self, sample, plan) -> torch.Tensor:
        return clip_loss(self._patched, sample, plan, None, self._dtype, self._checkpointing)


def train(config: RunConfig) -> Path | None:
    """Run (or resume) the training of ``config`` on this rank; returns the exported adapter's path (rank 0).

    Raises:
        BMInputError: not under torchrun, a world size that does not divide ``global_batch``, a
            missing file, an exported adapter that already exists, a checkpoint of another stage or
            global batch, a non-finite loss.
    """
    ranks = torchrun_ranks()
    per_rank = config.check_world_size(ranks.world)
    cuda = torch.cuda.is_available() and not _comfy_cpu()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        return _train(config, ranks, per_rank)
    finally:
        dist.destroy_process_group()


def _comfy_cpu() -> bool:
    import comfy.model_management

    return comfy.model_management.get_torch_device().type == "cpu"


def _train(config: RunConfig, ranks: Ranks, per_rank: int) -> Path | None:
    import comfy.sd

    from ..model.adapter_checkpoint import load_adapter

    recipe = config.recipe
    folder = run_folder(config)
    resume = latest_checkpoint(folder)
    if resume is not None:
        check_resume(config, resume)
    targets = [export_path(config)] + ([backbone_export_path(config)] if recipe.lr_backbone > 0 else [])
    for target in targets:
        if target.exists():
            raise BMInputError("output", f"{config.output!r} already has an exported file ({target}).",
                               "choose a new output name (exported files are never overwritten).")
    training_set = load_training_sets(config)
    model_path = model_file("diffusion_models", config.model, "model")
    model = comfy.sd.load_diffusion_model(model_path)
    start = load_adapter(model_file(ADAPTER_FOLDER, config.continue_from, "continue_from")) if config.continue_from else None
    torch.manual_seed(recipe.seed)
    with torch.inference_mode(False), torch.enable_grad():
        run = start_run(model, training_set, recipe, start, backbone_trains=config.engine == "fsdp")
        device = run.patched.load_device
        engine = (FsdpEngine if config.engine == "fsdp" else DdpEngine)(config, run, ranks, device)
        generator = torch.Generator().manual_seed(recipe.seed)
        step = engine.load(resume, generator) if resume is not None else 0
        log = None
        if ranks.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            log = RunLog(folder, ranks.world)
        kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
        while step < recipe.steps:
            started = time.perf_counter()
            clips = draw_clips(training_set, recipe, generator, run.module.streams, config.global_batch)
            mine = clips[ranks.rank::ranks.world]
            values = torch.zeros(per_rank, dtype=torch.float64)
            for i, (sample, plan) in enumerate(mine):
                with engine.accumulating(last=i == per_rank - 1):
                    loss = engine.loss(sample, plan)
                    (loss / per_rank).backward()
                values[i] = float(loss.detach())
            engine.finish_step()
            step += 1
            losses = _gather_losses(values, ranks, device)
            for value in losses:
                check_loss(value, step)
            if log is not None:
                log.step(step, clips, losses, engine.optimizer, time.perf_counter() - started, device)
            if step % config.checkpoint_every == 0 or step == recipe.steps:
                save_checkpoint(folder, config, engine.state(generator, step), ranks)
            if kill_after and step == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if log is not None:
            log.close()
        return engine.export(training_set, step, model_path, targets)


class DdpEngine:
    """Only the adapter trains: DDP over :class:`ClipLoss`, the node's optimizer and ``AveragedModel`` EMA."""

    def __init__(self, config: RunConfig, run: TrainingRun, ranks: Ranks, device):
        self.config, self.run, self.ranks = config, run, ranks
        self.ddp = DistributedDataParallel(ClipLoss(run, DTYPES[config.training_dtype], config.checkpointing),
                                           device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=True, broadcast_buffers=False, gradient_as_bucket_view=True)
        self.optimizer = run.optimizer

    def accumulating(self, last: bool):
        """Sum gradients locally (``no_sync``) except on the rank's last clip, where DDP averages over ranks."""
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def loss(self, sample, plan) -> torch.Tensor:
        return self.ddp(sample, plan)

    def finish_step(self) -> None:
        finish_step(self.run)

    def state(self, generator: torch.Generator, step: int) -> dict:
        return checkpoint_state(self.run, generator, step)

    def load(self, path: Path, generator: torch.Generator) -> int:
        return load_checkpoint(path, self.run, generator)

    def export(self, training_set: TrainingSet, steps: int, model_path: str, targets: list[Path]) -> Path | None:
        """Rank 0 writes the EMA adapter (layout (a)) with the run's metadata; returns its path (None elsewhere)."""
        if self.ranks.rank != 0:
            return None
        trained = trained_adapter(self.run, self.config.recipe, training_set, steps=steps)
        return _save_adapter(trained, self.config, model_path, targets[0])


class FsdpEngine:
    """Backbone parameters train too: FSDP2 over DiT and adapter (:mod:`beyond_monologue.train.fsdp`)."""

    def __init__(self, config: RunConfig, run: TrainingRun, ranks: Ranks, device):
        self.config, self.run, self.ranks = config, run, ranks
        base = run.patched.model
        names = fsdp.select_backbone_parameters(base.diffusion_model, config.backbone_parameters) \
            if config.recipe.lr_backbone > 0 else []
        compute = base.manual_cast_dtype or base.get_dtype()
        self.sharded = fsdp.shard_run(run, config.recipe, names, compute, torch.device(device), ranks.world,
                                      DTYPES[config.training_dtype], config.checkpointing)
        self.optimizer = self.sharded.optimizer
        self.backbone_names = names

    def accumulating(self, last: bool):
        """Keep unsharded gradients locally except on the rank's last clip, where FSDP2 reduce-scatters the mean."""
        self.sharded.root.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def loss(self, sample, plan) -> torch.Tensor:
        return self.sharded.root(sample, plan)

    def finish_step(self) -> None:
        fsdp.finish_sharded_step(self.sharded)

    def state(self, generator: torch.Generator, step: int) -> dict:
        return fsdp.checkpoint_state(self.sharded, generator, step)

    def load(self, path: Path, generator: torch.Generator) -> int:
        return fsdp.load_sharded_checkpoint(path, self.sharded, generator)

    def export(self, training_set: TrainingSet, steps: int, model_path: str, targets: list[Path]) -> Path | None:
        """Gather the EMA weights (every rank), then rank 0 writes the adapter and, when it trained, the backbone."""
        full = fsdp.gathered_weights(self.sharded, self.ranks.rank)
        if self.ranks.rank != 0:
            return None
        adapter = DuplexAdapter(self.run.module.config)
        adapter.load_state_dict({k.removeprefix("adapter."): v for k, v in full.items() if k.startswith("adapter.")})
        adapter.config = dataclasses.replace(adapter.config, trained=True)
        recipe = dataclasses.replace(self.config.recipe, steps=steps)
        trained = TrainedAdapter(adapter.eval().requires_grad_(False),
                                 training_metadata(recipe, training_set, adapter, self.run.patched))
        if self.backbone_names:
            trained.metadata["bm_train_backbone_file"] = targets[1].name
            meta = {"bm_train_base_model": self.config.model, "bm_train_steps": str(steps),
                    "bm_train_lr_backbone": repr(recipe.lr_backbone), "bm_train_adapter_file": targets[0].name,
                    "bm_train_backbone_parameters": json.dumps(list(self.config.backbone_parameters))}
            targets[1].parent.mkdir(parents=True, exist_ok=True)
            fsdp.save_backbone(full, model_path, targets[1], meta)
        return _save_adapter(trained, self.config, model_path, targets[0])


def _save_adapter(trained: TrainedAdapter, config: RunConfig, model_path: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    trained.metadata.update({"bm_train_base_model": config.model, "bm_train_base_model_sha256": file_sha256(model_path)})
    save_trained_adapter(trained, target)
    return target


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 16 MiB pieces (the base model's hash in the adapter's metadata)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(16 * 2**20):
            digest.update(piece)
    return digest.hexdigest()


def _gather_losses(values: torch.Tensor, ranks: Ranks, device) -> list[float]:
    """Every clip's loss of the step in global clip order (clip ``j`` ran on rank ``j % world``)."""
    local = values.to(device)
    gathered = [torch.zeros_like(local) for _ in range(ranks.world)]
    dist.all_gather(gathered, local)
    per_rank = values.numel()
    return [float(gathered[j % ranks.world][j // ranks.world]) for j in range(per_rank * ranks.world)]


def checkpoint_state(run: TrainingRun, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
    """The run's state as a flat dict of tensors (the DCP state dict; identical on every rank)."""
    state = {f"adapter.{k}": v for k, v in run.module.state_dict().items()}
    if run.ema is not None:
        state.update({f"ema.{k}": v for k, v in run.ema.state_dict().items()})
    by_index = run.optimizer.state_dict()["state"]
    for index, name in enumerate(run.names):
        for key, value in by_index.get(index, {}).items():
            state[f"optimizer.{name}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    state["step"] = torch.tensor(step, dtype=torch.int64)
    state["generator"] = generator.get_state()
    state["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(folder: Path, config: RunConfig, state: dict, ranks: Ranks) -> Path:
    """Write ``state`` as ``folder/step_NNNNNNNN`` with DCP, then (rank 0, after every rank finished) its ``run.json``."""
    step = int(state["step"])
    path = folder / f"step_{step:08d}"
    dcp.save(state, checkpoint_id=str(path))
    dist.barrier()
    if ranks.rank == 0:
        facts = {"step": step, "stage": config.recipe.stage, "global_batch": config.global_batch, "world_size": ranks.world,
                 "parallelism": config.engine, "backbone_parameters": list(config.backbone_parameters) if config.recipe.lr_backbone > 0 else [],
                 "model": config.model, "training_sets": list(config.training_sets), "recipe": config.recipe.to_dict()}
        (path / "run.json").write_text(json.dumps(facts, indent=1))
    dist.barrier()
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (one with ``run.json``) in the run folder, or None."""
    done = sorted(p for p in folder.glob("step_*") if (p / "run.json").is_file() and (p / ".metadata").is_file())
    return done[-1] if done else None


def check_resume(config: RunConfig, path: Path) -> None:
    """Refuse to resume a checkpoint of another stage, global batch, model or sets.

    Raises:
        BMInputError: naming the config key that differs.
    """
    facts = json.loads((path / "run.json").read_text())
    backbone = list(config.backbone_parameters) if config.recipe.lr_backbone > 0 else []
    for key, now in (("recipe.stage", config.recipe.stage), ("global_batch", config.global_batch),
                     ("model", config.model), ("training_sets", list(config.training_sets)),
                     ("parallelism", config.engine), ("backbone_parameters", backbone)):
        before = facts["stage"] if key == "recipe.stage" else facts.get(key, {"parallelism": "ddp", "backbone_parameters": []}.get(key))
        if before != now:
            raise BMInputError(key, f"is {now!r} but the checkpoint {path.name} of run {config.output!r} was made with "
                               f"{before!r}.", f"set {key} back to {before!r}, or use a new output name for a new run.")


def load_checkpoint(path: Path, run: TrainingRun, generator: torch.Generator) -> int:
    """Restore ``run`` and ``generator`` from a DCP checkpoint; returns its step."""
    stored = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    state = {key: torch.empty(meta.size, dtype=meta.properties.dtype) for key, meta in stored.items()
             if hasattr(meta, "size")}
    dcp.load(state, checkpoint_id=str(path))
    run.module.load_state_dict({k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")})
    if run.ema is not None:
        run.ema.load_state_dict({k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")})
    optimizer_state = run.optimizer.state_dict()
    optimizer_state["state"] = {}
    for index, name in enumerate(run.names):
        prefix = f"optimizer.{name}."
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            optimizer_state["state"][index] = found
    run.optimizer.load_state_dict(optimizer_state)
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return int(state["step"])
