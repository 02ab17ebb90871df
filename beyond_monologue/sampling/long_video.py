"""Long-form sampling: window after window with ComfyUI's own sampler, in memory that does not grow with length.

For each window of :func:`beyond_monologue.sampling.windows.plan_windows` (all on ComfyUI's machinery):

1. audio tokens of the window's latents on the long video's clock (``wan_patch.prepare_window``,
   Q-Formers run once per window; the InfiniteTalk ``audio_proj`` restarts per window as per clip
   in the official generator) in a ``DuplexCall`` set on a clone of the MODEL, with the guidance
   branches and, for ``past_end``, the reference as guide latent;
2. a latent of the window's size whose first latents are known: the previous window's last ``M``
   latents (motion latents), or in the first window the reference as latent 0 (``first_frame``).
   ComfyUI's denoise-mask (inpaint) path keeps them exactly in the result, and the ``DuplexCall``
   puts them back *clean* before every model call (``DuplexCall.known``), as MeiGen-AI/InfiniteTalk
   ``wan/multitalk.py`` does (``latent[:, :T_m] = latent_motion_frames`` before each step); ComfyUI's
   own Wan2.1 (``WAN21``) convention would re-noise them to the current sigma. Wan2.2-TI2V-5B
   (``WAN22``) also gives them timestep 0 (``process_timestep``, diffusion forcing); on Wan2.1 they
   share the window's timestep, as in the official code;
3. seeded noise ``comfy.sample.prepare_noise(latent, window_seed(seed, k))``, sigmas of ComfyUI's
   scheduler (``comfy.samplers.KSampler(...).sigmas``) or the official InfiniteTalk schedule
   (:mod:`beyond_monologue.sampling.schedule`), ``comfy.samplers.sampler_object``, and
   :class:`~beyond_monologue.sampling.duplex_guider.DuplexGuider` (text/talk/listen guidance, CFG or APG);
4. the window's new latents go to ComfyUI's intermediate device (the CPU); only the running window
   lives on the compute device. With ``full_last`` the last window keeps its full length over audio
   mirrored at its end and its latents past the audio are dropped (the official last clip).

The pack deliberately keeps one difference to the official generator: motion latents are carried
as latents (4 frames each on the long clock) instead of decoding the last 9 frames and encoding
them again (no VAE round trip, no colour drift through it, less memory). With ``W = 21`` latents and
``M = 3`` the audio of window ``k`` starts at frame ``72 k`` (the last frame of its first latent), the
official clip start, so its audio windows are the official ones.

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
from .apg import APGSettings
from .duplex_call import CALL_KEY, GuideLatent
from .duplex_guider import DuplexGuider
from .guidance import GuidanceScales, anchor_branches, guidance_anchors, guidance_paths
from .reference import Reference
from .schedule import SCHEDULER_NAME, infinitetalk_sigmas
from .windows import Window, plan_windows, window_seed

StepCallback = Callable[[int, int, torch.Tensor], None]  # (steps done, total steps, denoised latent of the window)


@dataclass(frozen=True)
class SamplingSettings:
    """Everything but the inputs of one long-video run.

    Attributes:
        steps: sampling steps per window.
        sampler_name / scheduler: ComfyUI names (``comfy.samplers.KSampler.SAMPLERS`` / ``.SCHEDULERS``),
            or scheduler ``"infinitetalk_linear"``: the official schedule with the MODEL's flow shift.
        seed: 64-bit seed; window ``k`` uses :func:`beyond_monologue.sampling.windows.window_seed`.
        scales: text / talk / listen guidance.
        window_latents / motion_latents: see :func:`beyond_monologue.sampling.windows.plan_windows`.
        guide_offset: ``past_end`` guide RoPE index = window latents - 1 + offset.
        kernels: stream -> MHGK kernel overriding the adapter node's for this run.
        apg: adaptive projected guidance instead of linear CFG (None = CFG).
        full_last: the last window keeps ``window_latents`` over mirrored audio (official) instead
            of being shortened to the audio.
        speaker_masks: ``[2, H, W]`` regions of two people in one frame (InfiniteTalk multi patch;
            speaker 1 = talk stream, speaker 2 = listen stream), or None for one avatar.
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
    apg: APGSettings | None = None
    full_last: bool = False
    speaker_masks: torch.Tensor | None = None


def window_sigmas(model, settings: SamplingSettings) -> torch.Tensor:
    """The sigmas of one window: ComfyUI's scheduler, or the official schedule at the MODEL's shift."""
    if settings.scheduler == SCHEDULER_NAME:
        shift = float(getattr(model.get_model_object("model_sampling"), "shift", 1.0))
        return infinitetalk_sigmas(settings.steps, shift)
    return comfy.samplers.KSampler(model, settings.steps, model.load_device, settings.sampler_name,
                                   settings.scheduler, denoise=1.0).sigmas


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
    streams = adapter_patcher.model.streams
    if settings.apg is not None:
        anchors, paths = guidance_paths(settings.scales, streams)
    else:
        anchors, paths = guidance_anchors(settings.scales, streams), ()
    branches = anchor_branches(anchors)
    windows = plan_windows(duplex.num_latents, settings.window_latents, settings.motion_latents, settings.full_last)
    padding = "mirror" if settings.full_last else "clamp"
    sigmas = window_sigmas(model, settings)
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
        latent, mask, known = _window_latent(model, window, previous, reference)
        call = prepare_window(model, duplex, window.first_latent, window.num_latents, branches=branches,
                              kernels=settings.kernels, guide=guide, known=known, padding=padding,
                              speaker_masks=settings.speaker_masks)
        windowed = model.clone()
        windowed.model_options["transformer_options"][CALL_KEY] = call
        guider = DuplexGuider(windowed, anchors, paths, settings.apg)
        guider.set_conds(reference.conditioning(positive, window.num_latents),
                         reference.conditioning(negative, window.num_latents))
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
        start, end = window.first_latent + window.motion_latents, min(window.end_latent, duplex.num_latents)
        video[:, :, start:end] = previous[:, :, window.motion_latents:window.motion_latents + end - start]
        del samples, guider, windowed, call
    return video


def _window_latent(model, window: Window, previous: torch.Tensor | None,
                   reference: Reference) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The window's input LATENT samples (VAE space), its denoise mask (1 = generate, 0 = keep) or None,
    and the kept latents in the model's space (``DuplexCall.known``) or None."""
    shape = (1, reference.latent.shape[1], window.num_latents, *reference.latent.shape[-2:])
    keep = torch.zeros(window.num_latents, dtype=torch.bool)
    known = torch.zeros(shape)
    if window.motion_latents:
        known[:, :, :window.motion_latents] = previous[:, :, -window.motion_latents:]
        keep[:window.motion_latents] = True
    elif reference.position == "first_frame":
        # image-to-video: the reference is the clean latent 0 (Wan22ImageToVideoLatent; the official
        # InfiniteTalk first clip holds vae.encode(cond_image) there; Wan2.1-I2V also gets it through the concat)
        known[:, :, :1] = reference.latent
        keep[0] = True
    if not keep.any():
        return known, None, None
    mask = (~keep).float().view(1, 1, -1, 1, 1).expand(1, 1, window.num_latents, *shape[-2:]).contiguous()
    # ComfyUI applies process_latent_in to a non-empty latent; the generated part must come out as 0
    # (as Wan22ImageToVideoLatent prepares it), the kept part as the clean latent.
    zero_in = model.model.process_latent_out(torch.zeros(shape))
    held = model.model.process_latent_in(known[:, :, :int(keep.sum())])
    return zero_in * mask + known * (1.0 - mask), mask, held
