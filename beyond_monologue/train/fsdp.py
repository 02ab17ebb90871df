"""FSDP2 (``fully_shard``) for ``torchrun`` runs that train backbone parameters next to the adapter.

The paper trains "backbone parameters" at 2e-6 next to the new parameters at 1e-5 (which ones it
does not say; /shared/research/papers.md §1.5). A replicated Wan2.2-TI2V-5B with float32 master
weights, gradients and two AdamW moments is 5e9 x 16 B = 80 GB per GPU before activations, so these
runs shard parameters, gradients and optimizer state over the ranks with PyTorch's FSDP2:

* units: every DiT block's ``self_attn``, ``cross_attn`` and ``ffn`` and every adapter
  cross-attention (:class:`~beyond_monologue.model.duplex_adapter.AudioCrossAttention`) is its own
  ``fully_shard`` unit; the rest (patch and time embeddings, head, block modulations and norms, the
  adapter's Q-Former encoders and learned nulls) belongs to the root unit, the :class:`ShardedClipLoss`.
  The units are sub-modules rather than whole blocks because the pack's block patch
  (:mod:`beyond_monologue.model.wan_patch`) calls a block's parts, not the block, and FSDP2 gathers a
  unit's weights in its ``forward`` hook.
* precision: sharded master weights are float32 (the backbone is converted once before sharding);
  each unit computes in the model's own dtype (``MixedPrecisionPolicy(param_dtype=...)``: bf16 for the
  public files) and gradients are reduce-scattered in float32.
* gradients: a rank runs its clips one by one with ``set_requires_gradient_sync`` off until its last
  clip; FSDP2 then reduce-scatters the mean over ranks, which equals the one-process gradient
  ``sum(loss) / global_batch`` (the same arithmetic as the DDP path). Each clip's loss also adds zero
  times every trainable root-unit parameter, so every rank has a gradient for every parameter even
  when its dropout case skipped an encoder or a learned null (FSDP2 reduces the parameters that have
  gradients, and the ranks must agree on which).
* EMA: one float32 copy per trainable parameter, sharded like it, updated with
  ``torch.optim.swa_utils.get_ema_multi_avg_fn`` (the function behind the single-device
  ``AveragedModel``: the first update copies, later ones lerp).
* checkpoints: ``torch.distributed.checkpoint.state_dict.get_state_dict`` (trainable parameters and
  optimizer state, sharded) plus the EMA shards, written with DCP, so a run resumes on any world size.
* export: the full EMA tensors are gathered (``DTensor.full_tensor``) and rank 0 writes the adapter
  (layout (a)) and, when backbone parameters trained, the backbone as a diffusion model file in the
  base file's own key layout and dtypes.

Which backbone parameters train is the run config's ``backbone_parameters`` (``fnmatch`` patterns
over the DiT's parameter names; the pack's default ``"*"`` = all of them, the plainest reading of
"backbone parameters trainable").
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..errors import BMInputError
from .step import clip_loss

STATE_OPTIONS = StateDictOptions(ignore_frozen_params=True)
LOAD_OPTIONS = StateDictOptions(ignore_frozen_params=True, strict=False)  # frozen parameters are not in the checkpoint


class ShardedClipLoss(torch.nn.Module):
    """The FSDP2 root: the DiT and the adapter as sub-modules, a forward that is one clip's loss.

    ``forward(sample, plan)`` returns :func:`~beyond_monologue.train.step.clip_loss` on the patched
    MODEL (a ``[]`` float32 tensor) plus zero times every trainable root-unit parameter.
    """

    def __init__(self, run, training_dtype: torch.dtype | None, checkpointing: bool):
        super().__init__()
        self.dit = run.patched.model.diffusion_model
        self.adapter = run.module
        self._patched, self._dtype, self._checkpointing = run.patched, training_dtype, checkpointing
        self._root_params: list[tuple[torch.nn.Module, str]] = []

    def forward(self, sample, plan) -> torch.Tensor:
        loss = clip_loss(self._patched, sample, plan, None, self._dtype, self._checkpointing)
        # looked up now: inside the forward FSDP2 has put the unsharded parameters on the modules
        params = [getattr(module, name) for module, name in self._root_params]
        touch = [p.reshape(-1)[:1].float().sum() for p in params if p.requires_grad]
        return loss + 0.0 * torch.stack(touch).sum() if touch else loss


def select_backbone_parameters(dit: torch.nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the DiT parameters matching any ``fnmatch`` pattern (e.g. ``"blocks.*.cross_attn.*"``).

    Raises:
        BMInputError: (``backbone_parameters``) a pattern that matches nothing.
    """
    names = [name for name, _ in dit.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise BMInputError("backbone_parameters", f"pattern {pattern!r} matches no parameter of the DiT "
                               f"(names look like {names[min(5, len(names) - 1)]!r}).",
                               "fix the pattern, or use '*' for every backbone parameter.")
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def units(root: ShardedClipLoss) -> list[torch.nn.Module]:
    """The ``fully_shard`` units below the root, in forward order (see the module docstring)."""
    found = []
    for block in root.dit.blocks:
        found += [block.self_attn, block.cross_attn, block.ffn]
    for per_stream in root.adapter.blocks:
        found += list(per_stream.values())
    return found


@dataclass
class ShardedRun:
    """The FSDP2 state of a run.

    Attributes:
        root: the sharded :class:`ShardedClipLoss`.
        optimizer: AdamW (or the recipe's optimizer) over the sharded trainable parameters: group 0 the
            adapter (``lr_new``), group 1 the backbone (``lr_backbone``, absent when frozen).
        names: trainable parameter names (root FQNs, ``dit.*`` / ``adapter.*``).
        ema: name -> sharded float32 EMA tensor (empty when EMA is off).
        ema_updates: EMA updates done (the first one copies).
    """

    root: ShardedClipLoss
    optimizer: torch.optim.Optimizer
    names: list[str]
    ema: dict[str, torch.Tensor]
    ema_updates: int = 0
    ema_decay: float = 0.0

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """``(name, sharded parameter)`` of every trainable parameter."""
        params = dict(self.root.named_parameters())
        return [(name, params[name]) for name in self.names]


def shard_run(run, recipe, backbone_names: list[str], compute_dtype: torch.dtype, device: torch.device,
              world: int, training_dtype: torch.dtype | None, checkpointing: bool) -> ShardedRun:
    """Make the DiT's ``backbone_names`` trainable, shard DiT and adapter with FSDP2, build optimizer and EMA.

    Args:
        run: :class:`~beyond_monologue.train.trainer.TrainingRun` (its optimizer and EMA are replaced).
        compute_dtype: dtype the units compute in (the model file's).
        device: this rank's device (``cpu`` with gloo, ``cuda:LOCAL_RANK`` with NCCL).
    """
    from .trainer import make_optimizer

    root = ShardedClipLoss(run, training_dtype, checkpointing)
    root.dit.float()
    wanted = set(backbone_names)
    for name, param in root.dit.named_parameters():
        param.requires_grad_(name in wanted)
    mesh = init_device_mesh(device.type, (world,))
    policy = MixedPrecisionPolicy(param_dtype=None if compute_dtype == torch.float32 else compute_dtype,
                                  reduce_dtype=torch.float32)
    in_units = set()
    for unit in units(root):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
        in_units.update(id(p) for p in unit.parameters())
    root._root_params = [(module, name) for module in root.modules() for name, p in module.named_parameters(recurse=False)
                         if id(p) not in in_units]
    fully_shard(root, mesh=mesh, mp_policy=policy)
    named = dict(root.named_parameters())
    adapter_names = [f"adapter.{n}" for n in run.names]
    dit_names = [f"dit.{n}" for n in backbone_names]
    optimizer = make_optimizer(recipe, [named[n] for n in adapter_names], [named[n] for n in dit_names])
    names = adapter_names + dit_names
    ema = {n: named[n].detach().clone() for n in names} if recipe.ema_decay > 0 else {}
    return ShardedRun(root, optimizer, names, ema, 0, recipe.ema_decay)


def finish_sharded_step(sharded: ShardedRun) -> None:
    """Optimizer step, zero the gradients, EMA update (the first update copies, as ``AveragedModel``'s does)."""
    sharded.optimizer.step()
    sharded.optimizer.zero_grad(set_to_none=True)
    if not sharded.ema:
        return
    current = [p.detach() for _, p in sharded.trainable()]
    averages = [sharded.ema[name] for name in sharded.names]
    with torch.no_grad():
        if sharded.ema_updates == 0:
            for average, value in zip(averages, current, strict=True):
                average.copy_(value)
        else:
            get_ema_multi_avg_fn(sharded.ema_decay)(averages, current, None)
    sharded.ema_updates += 1


def checkpoint_state(sharded: ShardedRun, generator: torch.Generator, step: int) -> dict:
    """The DCP state dict: sharded trainable parameters and optimizer state, EMA shards, step, RNG states."""
    model_state, optim_state = get_state_dict(sharded.root, sharded.optimizer, options=STATE_OPTIONS)
    state = {"model": model_state, "optimizer": optim_state, "ema": dict(sharded.ema),
             "ema_updates": torch.tensor(sharded.ema_updates, dtype=torch.int64),
             "step": torch.tensor(step, dtype=torch.int64), "generator": generator.get_state(),
             "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def load_sharded_checkpoint(path, sharded: ShardedRun, generator: torch.Generator) -> int:
    """Restore ``sharded`` and ``generator`` from a DCP checkpoint of this path (any world size); returns its step."""
    state = checkpoint_state(sharded, generator, 0)
    if not dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata.keys() >= {"ema_updates"}:
        raise BMInputError("parallelism", f"checkpoint {path.name} was written by a DDP run.",
                           "resume it with parallelism = \"ddp\", or start a new output.")
    dcp.load(state, checkpoint_id=str(path))
    result = set_state_dict(sharded.root, sharded.optimizer, model_state_dict=state["model"],
                            optim_state_dict=state["optimizer"], options=LOAD_OPTIONS)
    missing = set(result.missing_keys) & set(sharded.names)
    if missing:
        raise BMInputError("backbone_parameters", f"checkpoint {path.name} lacks trained parameters ({sorted(missing)[:3]}).",
                           "resume with the settings the run started with, or start a new output.")
    sharded.ema_updates = int(state["ema_updates"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return int(state["step"])


def gathered_weights(sharded: ShardedRun, rank: int) -> dict[str, torch.Tensor]:
    """Every parameter of the root as a full float32 CPU tensor on rank 0 (the EMA value where there is one).

    Collective: every rank must call it; ranks other than 0 get ``{}``.
    """
    full = {}
    for name, param in sharded.root.named_parameters():
        value = sharded.ema.get(name, param).detach()
        value = value.full_tensor() if isinstance(value, DTensor) else value
        if rank == 0:
            full[name] = value.float().cpu()
    return full


def save_backbone(full: dict[str, torch.Tensor], base_path: str, target, metadata: dict[str, str]) -> None:
    """Write the trained DiT as ``target`` in the base file's key layout, key order and dtypes.

    Every tensor of the base file is written: trained parameters from ``full`` (``dit.<name>``, keys
    matched with or without ComfyUI's ``model.diffusion_model.`` prefix), anything else as it was.
    """
    out = {}
    with safe_open(base_path, framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            stored = f.get_tensor(key)
            name = "dit." + key.removeprefix("model.diffusion_model.")
            out[key] = full[name].to(stored.dtype) if name in full else stored
    save_file(out, str(target), metadata=metadata)
