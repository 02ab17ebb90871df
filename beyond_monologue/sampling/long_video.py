"""Long-form sampling: window after window with ComfyUI's own sampler, in memory that does not grow with length.

For each window of :func:`beyond_monologue.sampling.windows.plan_windows` (all on ComfyUI's machinery):

1. audio tokens of the window's latents on the long video's clock (``wan_patch.prepare_window``,
   Q-Formers run once per window) in a ``DuplexCall`` set on a clone of the MODEL, with the
   guidance branches and, for ``past_end``, the reference as guide latent;
2. a latent of the window's size whose first ``M`` latents are the previous window's last
   latents, held by ComfyUI's denoise-mask (inpaint) path: ``KSamplerX0Inpaint`` gives the model
   the model family's own convention for known latents (Wan2.2-TI2V-5B / ``WAN22``: clean, with
   per-frame timestep 0 from ``process_timestep``, i.e. diffusion forcing; Wan2.1 / ``WAN21``:
   re-noised to the current sigma, as MultiTalk/InfiniteTalk re-inject motion frames) and keeps
   them exactly in the result;
3. seeded noise ``comfy.sample.prepare_noise(latent, window_seed(seed, k))``, sigmas of ComfyUI's
   scheduler (``comfy.samplers.KSampler(...).sigmas``), ``comfy.samplers.sampler_object``, and
   :class:`~beyond_monologue.sampling.duplex_guider.DuplexGuider` (text/talk/listen guidance);
4. the window's new latents go to ComfyUI's intermediate device (the CPU); only the running window
   lives on the compute device.

The result is ComfyUI's own video LATENT layout (``[1, C, N, h, w]``, N = latents of the audio),
decodable by the native VAE Decode and by BM Decode Video as one continuous clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ..audio.duplex_audio import DuplexAudio
from ..model.mhgk import MHGKKernel
from ..model.wan_patch import prepare_window, require_adapter
from .duplex_call import CALL_KEY, GuideLatent
from .duplex_guider import DuplexGuider
from .guidance import GuidanceScales, anchor_branches, guidance_anchors
from .reference import Reference
from .windows import Window, plan_windows, window_seed

StepCallback = Callable[[int, int, torch.Tensor], None]  # (steps done, total steps, denoised latent of the window)


@dataclass(frozen=True)
class SamplingSettings:
    """Everything but the inputs of one long-video run.

    Attributes:
        steps: sampling steps per window.
        sampler_name / scheduler: ComfyUI names (``comfy.samplers.KSampler.SAMPLERS`` / ``.SCHEDULERS``).
        seed: 64-bit seed; window ``k`` uses :func:`beyond_monologue.sampling.windows.window_seed`.
        scales: text / talk / listen guidance.
        window_latents / motion_latents: see :func:`beyond_monologue.sampling.windows.plan_windows`.
        guide_offset: ``past_end`` guide RoPE index = window latents - 1 + offset.
        kernels: stream -> MHGK kernel overriding the adapter node's for this run.
    """

    steps: int
    sampler_name: str
    scheduler: str
    seed: int
    scales: GuidanceScales = field(default_factory=GuidanceScales)
    window_latents: int = 21
    motion_latents: int = 3
    guide_offset: int = 1
    kernels: dict[str, MHGKKernel] = field(default_factory=dict)


def sample_long_video(model, positive: list, negative: list, duplex: DuplexAudio, reference: Reference,
                      settings: SamplingSettings, on_step: StepCallback | None = None) -> torch.Tensor:
    """Sample the whole video of ``duplex`` window by window.

    Args:
        model: adapter-patched Wan MODEL (flow shift already applied).
        positive / negative: CONDITIONING (text; I2V image conditioning is added per window).
        duplex: both audio streams; the video has ``duplex.num_latents`` latents.
        reference: the encoded reference (:func:`beyond_monologue.sampling.reference.encode_reference`).
        settings: steps, sampler, guidance, windows.
        on_step: called after every step of every window with (done, total, denoised window
            latent in the model's space); ComfyUI's interrupt is also checked between windows.

    Returns:
        float32 ``[1, C, duplex.num_latents, h, w]`` on ComfyUI's intermediate device (VAE latent space).

    Raises:
        BMInputError: no adapter attached, or windows that cannot progress.
        comfy.model_management.InterruptProcessingException: Cancel was pressed.
    """
    adapter_patcher, _ = require_adapter(model)
    anchors = guidance_anchors(settings.scales, adapter_patcher.model.streams)
    branches = anchor_branches(anchors)
    windows = plan_windows(duplex.num_latents, settings.window_latents, settings.motion_latents)
    sigmas = comfy.samplers.KSampler(model, settings.steps, model.load_device, settings.sampler_name,
                                     settings.scheduler, denoise=1.0).sigmas
    steps = len(sigmas) - 1
    sampler = comfy.samplers.sampler_object(settings.sampler_name)
    guide_latent = model.model.process_latent_in(reference.latent) if reference.position == "past_end" else None
    # the whole video, written window by window (no per-window copies kept alive, no final concatenation)
    video = torch.empty((1, reference.latent.shape[1], duplex.num_latents, *reference.latent.shape[-2:]),
                        dtype=torch.float32, device=comfy.model_management.intermediate_device())
    previous: torch.Tensor | None = None
    for window in windows:
        comfy.model_management.throw_exception_if_processing_interrupted()
        guide = None if guide_latent is None else GuideLatent(guide_latent, window.num_latents - 1 + settings.guide_offset)
        call = prepare_window(model, duplex, window.first_latent, window.num_latents, branches=branches,
                              kernels=settings.kernels, guide=guide)
        windowed = model.clone()
        windowed.model_options["transformer_options"][CALL_KEY] = call
        guider = DuplexGuider(windowed, anchors)
        guider.set_conds(reference.conditioning(positive, window.num_latents),
                         reference.conditioning(negative, window.num_latents))
        latent, mask = _window_latent(model, window, previous, reference)
        seed = window_seed(settings.seed, window.index)
        noise = comfy.sample.prepare_noise(latent, seed)
        done = window.index * steps

        def callback(step, x0, x, total_steps, done=done):
            if on_step is not None:
                on_step(done + step + 1, steps * len(windows), x0)

        samples = guider.sample(noise, latent, sampler, sigmas,
                                denoise_mask=mask, callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                                seed=seed)
        previous = samples.to(video.device, torch.float32)
        video[:, :, window.first_latent + window.motion_latents:window.first_latent + window.num_latents] = \
            previous[:, :, window.motion_latents:]
        del samples, guider, windowed, call
    return video


def _window_latent(model, window: Window, previous: torch.Tensor | None,
                   reference: Reference) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The window's input LATENT samples (VAE space) and its denoise mask (1 = generate, 0 = keep), or None."""
    shape = (1, reference.latent.shape[1], window.num_latents, *reference.latent.shape[-2:])
    keep = torch.zeros(window.num_latents, dtype=torch.bool)
    known = torch.zeros(shape)
    if window.motion_latents:
        known[:, :, :window.motion_latents] = previous[:, :, -window.motion_latents:]
        keep[:window.motion_latents] = True
    elif reference.position == "first_frame" and reference.concat is None:
        known[:, :, :1] = reference.latent  # Wan2.2-TI2V-5B image-to-video: clean first latent
        keep[0] = True
    if not keep.any():
        return known, None
    mask = (~keep).float().view(1, 1, -1, 1, 1).expand(1, 1, window.num_latents, *shape[-2:]).contiguous()
    # ComfyUI applies process_latent_in to a non-empty latent; the generated part must come out as 0
    # (as Wan22ImageToVideoLatent prepares it), the kept part as the clean latent.
    zero_in = model.model.process_latent_out(torch.zeros(shape))
    return zero_in * mask + known * (1.0 - mask), mask
