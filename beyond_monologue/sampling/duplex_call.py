"""Per-call inputs of the patched Wan model: ``transformer_options["bm_duplex"]`` (a :class:`DuplexCall`).

Shared contract between the adapter patch (:mod:`beyond_monologue.model.wan_patch`) and the sampler.
Nothing travels through globals: the sampler builds one :class:`DuplexCall` per sampling window
and puts it in ``model_options["transformer_options"]["bm_duplex"]`` of a clone of the patched
MODEL (ComfyUI copies it into the ``transformer_options`` of every model call).

* Audio tokens are computed once per window with :func:`prepare_duplex_call` (the Q-Formers do
  not depend on the diffusion step) for the audio windows of latents
  ``audio_first_latent .. + T_audio - 1`` on the long video's clock; the video window's latents
  are ``video_first_latent ..`` on the same clock. MHGK times come from both (seconds, fps).
* ``branches`` maps the conditioning index that ComfyUI reports per batch chunk
  (``transformer_options["cond_or_uncond"]``: 0 = positive, 1 = negative for a plain CFG guider;
  a multi-cond guider numbers its conds in order) to a mode per stream: ``"on"`` (the stream's
  tokens), ``"null"`` (the learned unconditional tokens, for audio CFG) or ``"off"`` (no residual).
  Indices not listed are ``"on"`` for every stream.
* ``kernels``, ``scales`` and ``backend`` override, for this call only, the kernel, strength and
  attention backend set on the node (BMApplyDuplexAdapter).
* ``known``: clean latents held at the window's start in every model call (see :class:`DuplexCall`).
* ``guide``: the arbitrary-position guide (paper Sec. 3.3): a clean reference latent appended to
  the video along time with a chosen RoPE time index (default one past the window: 21 for a
  21-latent window). Guide tokens get no audio residual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..audio.duplex_audio import DuplexAudio
from ..model.duplex_adapter import DuplexAdapter
from ..model.mhgk import STREAMS, MHGKKernel

CALL_KEY = "bm_duplex"
BRANCH_MODES = ("on", "null", "off")


@dataclass(frozen=True)
class GuideLatent:
    """A reference latent placed after the window at RoPE time index ``rope_index``.

    Attributes:
        latent: ``[1 or B, C_in, 1, H, W]`` in the diffusion model's input space (after
            ``model.process_latent_in``; ``C_in`` = the DiT's input channels, 48 for Wan2.2-5B),
            same ``H, W`` as the window's latent.
        rope_index: RoPE time index relative to the window's first latent; None = the window's
            latent count (one past the end; the paper's best, "22" counted from 1, Table 4).
        clean_timestep: give the guide frame timestep 0 (a clean latent, diffusion forcing) by
            passing per-frame timesteps; False shares the window's timestep.
    """

    latent: torch.Tensor
    rope_index: int | None = None
    clean_timestep: bool = True


@dataclass(frozen=True)
class SpeakerBinding:
    """Two people in one frame (the public InfiniteTalk multi patch): L-RoPE binding and region routing.

    Rows whose ``stream`` mode is ``"on"`` take the two-speaker attention of
    :mod:`beyond_monologue.model.speaker_binding` over ``tokens``; ``"null"`` rows take the plain
    single-speaker attention over the stream's null tokens (the official unconditional pass gives
    zero audio of one speaker).

    Attributes:
        masks: ``[2, H, W]`` regions of speaker 1 and speaker 2 in the frame (any size; > 0 inside).
        tokens: ``[T_audio, 2 N, context_dim]``: per latent, speaker 1's ``N`` tokens then speaker 2's.
        stream: the adapter branch carrying both speakers (``"talk"`` for InfiniteTalk).
    """

    masks: torch.Tensor
    tokens: torch.Tensor
    stream: str = "talk"


@dataclass(frozen=True)
class DuplexCall:
    """Everything the patched model needs for one sampling window (see module docstring).

    Attributes:
        tokens: stream -> ``[T_audio, N, context_dim]`` conditional audio tokens.
        null_tokens: stream -> ``[T_audio, N, context_dim]`` unconditional tokens of the same windows.
        fps: video frame rate (MHGK times in seconds).
        video_first_latent / audio_first_latent: first latent of the video window / of the audio
            windows on the long video's clock.
        branches: cond index -> {stream: "on" | "null" | "off"}.
        kernels: stream -> MHGK kernel override for this call.
        scales: stream -> residual multiplier for this call (on top of the node's strength).
        backend: MHGK attention backend override (:data:`beyond_monologue.model.mhgk_attention.BACKENDS`).
        guide: optional arbitrary-position guide latent.
        known: ``[1 or B, C_lat, k, H, W]`` clean latents (model space, after ``process_latent_in``)
            written over the window's first ``k`` latents (the first ``C_lat`` input channels) before
            every model call: the reference latent of the first window, the motion latents of later
            ones (MeiGen-AI/InfiniteTalk ``wan/multitalk.py`` puts them back, clean, before each step),
            whatever the model family's inpaint convention would feed; None = nothing held.
        speakers: two people in one frame (:class:`SpeakerBinding`), or None.
    """

    tokens: Mapping[str, torch.Tensor]
    null_tokens: Mapping[str, torch.Tensor]
    fps: float
    video_first_latent: int = 0
    audio_first_latent: int = 0
    branches: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    kernels: Mapping[str, MHGKKernel] = field(default_factory=dict)
    scales: Mapping[str, float] = field(default_factory=dict)
    backend: str | None = None
    guide: GuideLatent | None = None
    known: torch.Tensor | None = None
    speakers: SpeakerBinding | None = None

    def __post_init__(self):
        for index, modes in self.branches.items():
            for stream, mode in modes.items():
                if stream not in STREAMS or mode not in BRANCH_MODES:
                    raise ValueError(f"branches[{index}]: {stream!r} -> {mode!r}; streams {STREAMS}, modes {BRANCH_MODES}")
        for stream, tokens in self.tokens.items():
            if tokens.ndim != 3 or self.null_tokens[stream].shape != tokens.shape:
                raise ValueError(f"{stream} tokens {tuple(tokens.shape)} and null tokens must both be [T, N, D]")

    def mode(self, cond_index: int, stream: str) -> str:
        """``"on"``, ``"null"`` or ``"off"`` for one conditioning index and stream."""
        return self.branches.get(cond_index, {}).get(stream, "on")


def prepare_duplex_call(adapter: DuplexAdapter, duplex: DuplexAudio, first_latent: int, num_latents: int,
                        device: torch.device | None = None, dtype: torch.dtype | None = None,
                        with_grad: bool = False, padding: str = "clamp",
                        speaker_masks: torch.Tensor | None = None, **options) -> DuplexCall:
    """Encode one window's audio once (every stream of the adapter) and wrap it in a :class:`DuplexCall`.

    Args:
        adapter: the attached adapter's module (on ``device``).
        duplex: both encoded streams.
        first_latent / num_latents: the window's latents on the long video's clock (audio and
            video windows coincide; set ``audio_first_latent`` in ``options`` only with tokens
            of another span).
        with_grad: keep the autograd graph of the tokens (training: the Q-Formers and learned nulls
            get gradients); sampling leaves it False.
        padding: audio past the stream's end, ``"clamp"`` or ``"mirror"`` (a full last window,
            :meth:`DuplexAdapter.audio_tokens`).
        speaker_masks: ``[2, H, W]`` regions of two people in one frame: speaker 1 speaks the
            ``talk`` stream, speaker 2 the ``listen`` stream, both through the ``talk`` encoder
            (:class:`SpeakerBinding`); None = one avatar.
        options: further :class:`DuplexCall` fields (``branches``, ``kernels``, ``scales``,
            ``backend``, ``guide``, ``known``).

    Raises:
        BMInputError: audio of another encoder size / context than the adapter's.
    """
    tokens, null = {}, {}
    encode = adapter.audio_tokens if with_grad else adapter.encode
    nulls = adapter.learned_null_tokens if with_grad else adapter.null_tokens
    for stream in adapter.streams:
        tokens[stream] = encode(duplex, stream, first_latent, num_latents, device, dtype, padding)
        null[stream] = nulls(stream, first_latent, num_latents, device, dtype)
    if speaker_masks is not None:
        both = [encode(duplex, stream, first_latent, num_latents, device, dtype, padding, "talk") for stream in STREAMS]
        options["speakers"] = SpeakerBinding(speaker_masks, torch.cat(both, dim=1), "talk")
    options.setdefault("audio_first_latent", first_latent)
    return DuplexCall(tokens=tokens, null_tokens=null, fps=duplex.fps, video_first_latent=first_latent, **options)
