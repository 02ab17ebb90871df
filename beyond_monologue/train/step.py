"""One training step of the duplex adapter: a clip in, the flow-matching loss (with its autograd graph) out.

The same function serves the ComfyUI node and ``torchrun`` (no node code here). Randomness is drawn
first into a :class:`StepPlan` (crop, per-latent noise levels, guide, dropout, noise seed) so that a
step can be replayed exactly; :func:`backward_clip` then runs the patched MODEL the way BM Sampler
runs it at inference:

* the model is a ComfyUI ``ModelPatcher`` with the adapter attached (``wan_patch``); it is called
  through ComfyUI's ``BaseModel.apply_model`` with its own ``transformer_options`` (wrappers, block
  patches) and a :class:`~beyond_monologue.sampling.duplex_call.DuplexCall` built by the sampler's
  ``prepare_duplex_call`` (tokens with autograd), so the audio windows, MHGK/RoPE times, branches
  and the guide latent are placed exactly as in sampling;
* noise and timesteps come from the model's own ``model_sampling`` (``percent_to_sigma``,
  ``noise_scaling``: flow matching ``x_t = sigma * eps + (1 - sigma) * x_0`` for Wan); per-latent
  noise levels (diffusion forcing, clean leading latents) reach the DiT as per-frame timesteps
  through Wan2.2's ``process_timestep`` (``denoise_mask`` = sigma / sigma_max per latent, the path
  ComfyUI's own inpainting of known latents uses);
* the loss is the mean squared error of the predicted velocity ``v = (x_t - x_0_pred) / sigma``
  against ``eps - x_0`` over the noised latents (flow matching, Lipman et al. 2023 / Wan).
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_base
import comfy.samplers
import torch

from ..errors import BMInputError
from ..model.wan_patch import CHECKPOINT_KEY, require_adapter
from ..sampling.duplex_call import CALL_KEY, GuideLatent, prepare_duplex_call
from .recipe import TrainRecipe
from .samples import TrainingSample


@dataclass(frozen=True)
class StepPlan:
    """The random choices of one clip's step (replayable).

    Attributes:
        first_latent / num_latents: the crop, in latent frames of the clip.
        percents: ``[num_latents]`` noise level of each latent as ComfyUI's "percent"
            (``model_sampling.percent_to_sigma``: 0 = pure noise, 1 = clean).
        guide_index: RoPE index of the guide latent relative to the crop (``num_latents`` = one past
            the end, the reference frame), or None for no guide.
        modes: stream -> ``"on"``, ``"null"`` (dropped to the learned null) or ``"off"`` (stage 1 listen).
        drop_text: the text context is the negative prompt's.
        noise_seed: seed of the Gaussian noise.
    """

    first_latent: int
    num_latents: int
    percents: tuple[float, ...]
    guide_index: int | None
    modes: dict[str, str]
    drop_text: bool
    noise_seed: int

    @property
    def case(self) -> str:
        """Which dropout case this is, e.g. ``"talk+listen+text"`` or ``"null talk, text dropped"`` (loss logs)."""
        parts = [f"{'' if mode == 'on' else mode + ' '}{stream}" for stream, mode in sorted(self.modes.items())]
        return ", ".join(parts) + (", no text" if self.drop_text else "")


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def plan_step(sample: TrainingSample, recipe: TrainRecipe, generator: torch.Generator, streams: tuple[str, ...]) -> StepPlan:
    """Draw the random choices of one step for ``sample`` (see :class:`StepPlan` and the recipe's docstring)."""
    total = sample.num_latents
    n = min(total, recipe.window_latents)
    first = int(torch.randint(0, total - n + 1, (), generator=generator))
    if _uniform(generator) < recipe.df_probability:
        chunk = recipe.df_chunk_latents
        levels = [_uniform(generator) for _ in range((n + chunk - 1) // chunk)]
        percents = [levels[i // chunk] for i in range(n)]
    else:
        percents = [_uniform(generator)] * n
    if _uniform(generator) < recipe.clean_prefix_probability and n > 1:
        clean = int(torch.randint(1, min(recipe.max_clean_prefix, n - 1) + 1, (), generator=generator))
        percents[:clean] = [1.0] * clean
    guide = int(torch.randint(0, n + 1, (), generator=generator)) if _uniform(generator) < recipe.guide_probability else None
    modes = {}
    for stream in streams:
        if stream == "listen" and recipe.stage == "talking":
            modes[stream] = "off"
        else:
            rate = recipe.dropout_talk if stream == "talk" else recipe.dropout_listen
            modes[stream] = "null" if _uniform(generator) < rate else "on"
    drop_text = _uniform(generator) < recipe.dropout_text
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return StepPlan(first, n, tuple(percents), guide, modes, drop_text, seed)


def backward_clip(model, sample: TrainingSample, plan: StepPlan, negative_text: torch.Tensor | None = None,
                  training_dtype: torch.dtype | None = None, loss_scale: float = 1.0, checkpointing: bool = False) -> float:
    """Flow-matching loss of one clip under ``plan``; back-propagates ``loss * loss_scale`` and returns the loss.

    The loss is :func:`clip_loss`'s (the same forward pass); see it for the arguments and errors.
    """
    loss = clip_loss(model, sample, plan, negative_text, training_dtype, checkpointing)
    (loss * loss_scale).backward()
    return float(loss.detach())


def clip_loss(model, sample: TrainingSample, plan: StepPlan, negative_text: torch.Tensor | None = None,
              training_dtype: torch.dtype | None = None, checkpointing: bool = False) -> torch.Tensor:
    """Flow-matching loss of one clip under ``plan``: a float32 scalar tensor with its autograd graph (not back-propagated).

    ``torchrun`` runs call it inside ``DistributedDataParallel``'s forward so that DDP sees the loss
    (and which adapter parameters it used) before the backward pass averages the gradients.

    Runs inside ComfyUI's own sampling machinery, as ``TrainLoraNode`` does: a ``Guider_Basic`` on a
    clone of ``model`` carrying the clip's :class:`DuplexCall`, and a :class:`FlowMatchingLoss`
    sampler that makes one model evaluation. So conds, wrappers, patches and model loading are
    ComfyUI's, and the per-latent noise levels reach Wan2.2 through the ``denoise_mask`` cond.

    Args:
        model: ComfyUI ``ModelPatcher`` of a Wan2.2-family model with the adapter attached; gradients
            reach every adapter parameter with ``requires_grad``.
        sample: the clip.
        plan: from :func:`plan_step`.
        negative_text: ``[L, D]`` context for text dropout (the negative prompt); None = zeros
            of the prompt's shape.
        training_dtype: autocast dtype (None or float32 = no autocast).
        checkpointing: gradient checkpointing of every DiT block (recomputed in backward; less memory).

    Returns:
        The clip's loss: ``[]`` float32 tensor, differentiable w.r.t. the adapter parameters.

    Raises:
        BMInputError: a model whose timesteps cannot differ per latent frame (not Wan2.2) while the
            plan needs it, latents of another channel count, or a negative prompt of another width.
    """
    from comfy_extras.nodes_custom_sampler import Guider_Basic

    adapter = require_adapter(model)[0].model
    base = model.model
    device = model.load_device
    dtype = base.manual_cast_dtype or base.get_dtype()
    first, n = plan.first_latent, plan.num_latents
    latents = sample.latents[:, first:first + n][None].float()
    if latents.shape[1] != base.latent_format.latent_channels:
        raise BMInputError("training_set", f"has {latents.shape[1]}-channel latents; the MODEL uses "
                           f"{base.latent_format.latent_channels}.", "make the samples with this model's VAE.")
    sampling = model.get_model_object("model_sampling")
    sigmas = torch.tensor([float(sampling.percent_to_sigma(p)) for p in plan.percents], dtype=torch.float32)
    sigma_max = float(sigmas.max())
    if sigma_max <= 0:
        raise ValueError("a step plan needs at least one noised latent")
    per_frame = bool(torch.any(sigmas != sigma_max))
    if per_frame and type(base).process_timestep is comfy.model_base.BaseModel.process_timestep:
        raise BMInputError("model", "cannot take a timestep per latent frame (diffusion forcing, clean motion latents).",
                           "train on Wan2.2-TI2V-5B (the adapter's base model).")
    text = sample.text if not plan.drop_text else (negative_text if negative_text is not None else torch.zeros_like(sample.text))
    if text.shape[-1] != sample.text.shape[-1]:
        raise BMInputError("negative", f"text width {text.shape[-1]} differs from the samples' {sample.text.shape[-1]}.",
                           "encode the negative prompt with the same text encoder.")
    call = prepare_duplex_call(adapter, sample.audio, first, n, device, dtype, with_grad=True,
                               branches={0: dict(plan.modes)}, guide=_guide(base, sample, plan, device))
    windowed = model.clone()
    windowed.model_options["transformer_options"][CALL_KEY] = call
    windowed.model_options["transformer_options"][CHECKPOINT_KEY] = checkpointing
    guider = Guider_Basic(windowed)
    guider.set_conds([[text[None].float(), {}]])
    loss = FlowMatchingLoss(sigmas, training_dtype)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(plan.noise_seed))
    mask = (sigmas / sigma_max).view(1, 1, n, 1, 1).expand(1, 1, n, *latents.shape[-2:]) if per_frame else None
    guider.sample(noise, latents, loss, torch.tensor([sigma_max, 0.0]), denoise_mask=mask, disable_pbar=True,
                  seed=plan.noise_seed)
    return loss.loss


class FlowMatchingLoss(comfy.samplers.Sampler):
    """A ComfyUI ``Sampler`` that, instead of sampling, evaluates the flow-matching loss once (kept in ``self.loss``).

    ``x_t = model_sampling.noise_scaling(sigma_i, eps, x_0)`` per latent frame ``i`` (Wan: flow
    matching, ``sigma * eps + (1 - sigma) * x_0``), one model evaluation at ``sigma_max`` (per-frame
    timesteps come from the ``denoise_mask`` cond), ``v = (x_t - x0_pred) / sigma_max`` (the exact
    inverse of ComfyUI's ``calculate_denoised``), loss = mean of ``(v - (eps - x_0))^2`` over the
    noised latents. The same structure as ComfyUI's ``TrainSampler`` (comfy_extras/nodes_train.py),
    which compares x0 predictions instead.
    """

    def __init__(self, sigmas: torch.Tensor, training_dtype: torch.dtype | None):
        self.sigmas, self.training_dtype = sigmas, training_dtype
        self.loss: torch.Tensor | None = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        level = self.sigmas.to(noise.device)
        x0 = latent_image.float()
        x_t = torch.cat([sampling.noise_scaling(level[i].view(1), noise[:, :, i:i + 1], x0[:, :, i:i + 1])
                         for i in range(x0.shape[2])], dim=2)
        sigma_max = level.max().view(1)
        autocast = self.training_dtype is not None and self.training_dtype != torch.float32
        with torch.autocast(noise.device.type, dtype=self.training_dtype or torch.float32, enabled=autocast):
            denoised = model_wrap(x_t, sigma_max, **extra_args)
        velocity = (x_t - denoised.float()) / sigma_max
        noised = (level > 0).view(1, 1, -1, 1, 1).to(x0.dtype)
        error = (velocity - (noise - x0)).square() * noised
        self.loss = error.sum() / (noised.sum() * x0.shape[1] * x0.shape[3] * x0.shape[4])
        return latent_image


def _guide(base, sample: TrainingSample, plan: StepPlan, device) -> GuideLatent | None:
    """The guide latent of ``plan``: the clip's clean latent at the index, or the reference one past the end."""
    if plan.guide_index is None:
        return None
    if plan.guide_index >= plan.num_latents:
        latent = sample.reference
    else:
        index = plan.first_latent + plan.guide_index
        latent = sample.latents[:, index:index + 1]
    return GuideLatent(base.process_latent_in(latent[None].to(device, torch.float32)), plan.guide_index)
