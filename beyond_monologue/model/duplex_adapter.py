"""The dual-stream audio adapter: token encoders and per-block Talking/Listening cross-attention.

Beyond Monologue (arXiv 2604.10367, Sec. 3.2.1-3.2.2, Fig. 2): every DiT block gets a Talking and
a Listening 3D cross-attention from the video tokens to that stream's audio tokens, added to the
block output after the (frozen) text cross-attention, IP-Adapter style. Logits carry the MHGK
bias (:mod:`beyond_monologue.model.mhgk`). The audio tokens come from a causal Audio Q-Former per stream
(:mod:`beyond_monologue.model.audio_qformer`) or, for the public InfiniteTalk layout, from its
``AudioProjModel`` (:mod:`beyond_monologue.model.infinitetalk`), Talking branch only.

:class:`DuplexAdapter` is plain torch; ``operations`` lets ComfyUI pass ``comfy.ops.manual_cast``
so weights stored in bf16/fp16 are cast to the compute dtype. Wan patching is in
:mod:`beyond_monologue.model.wan_patch`, files in :mod:`beyond_monologue.model.adapter_checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..audio.duplex_audio import DuplexAudio
from ..errors import BMInputError
from .audio_qformer import AudioQFormer, QFormerConfig
from .infinitetalk import InfiniteTalkAudioProj, InfiniteTalkConfig
from .mhgk import STREAMS, MHGKKernel
from .mhgk_attention import mhgk_attention
from .time_rope import RopeTables, TimeRoPE

LAYOUT_BM = "beyond_monologue"
LAYOUT_INFINITETALK = "infinitetalk"
LAYOUTS = (LAYOUT_BM, LAYOUT_INFINITETALK)
HEAD_DIM = 128  # every Wan model: num_heads = dim / 128 (comfy/model_detection.py)


@dataclass(frozen=True)
class AdapterConfig:
    """Everything needed to build a :class:`DuplexAdapter` (layout (a) stores it in the file's metadata).

    Attributes:
        layout: ``"beyond_monologue"`` (docs/ADAPTER_FORMAT.md) or ``"infinitetalk"`` (public).
        model_dim / num_layers: the Wan DiT it attaches to (3072 / 30 for Wan2.2-TI2V-5B).
        num_heads: heads of the audio cross-attention (the DiT's: ``model_dim / 128``).
        streams: branches present, subset of ``("talk", "listen")``.
        qk_norm: RMSNorm on q and k (Wan style; False for InfiniteTalk).
        encoder: Q-Former sizes (layout a) or ``AudioProjModel`` sizes (layout b).
        kernels: default MHGK kernel per stream.
        fps: video frame rate the adapter was trained at (times of the kernel).
        base_model: the DiT the adapter was trained on, e.g. ``"wan2.2-ti2v-5b"``.
        trained: False for generated (smoke) weights.
        rope: time-scaled 1D RoPE of the audio cross-attention (:mod:`beyond_monologue.model.time_rope`),
            ``None`` = off (every format-1 file, and the InfiniteTalk layout, which has none).
    """

    layout: str
    model_dim: int
    num_layers: int
    num_heads: int
    streams: tuple[str, ...]
    qk_norm: bool
    encoder: QFormerConfig | InfiniteTalkConfig
    kernels: dict[str, MHGKKernel] = field(default_factory=dict)
    fps: float = 25.0
    base_model: str = ""
    trained: bool = True
    rope: TimeRoPE | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS or not set(self.streams) <= set(STREAMS) or not self.streams:
            raise ValueError(f"bad adapter config: layout {self.layout!r}, streams {self.streams!r}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim {self.model_dim} does not divide into {self.num_heads} heads")
        for stream in self.streams:
            kernel = self.kernels.get(stream)
            if kernel is not None and kernel.num_heads != self.num_heads:
                raise ValueError(f"{stream} kernel has {kernel.num_heads} heads, the adapter {self.num_heads}")
        if self.rope is not None:
            if self.layout != LAYOUT_BM:
                raise ValueError("the InfiniteTalk layout has no RoPE in its audio cross-attention")
            if self.rope.rotary_dims > self.model_dim // self.num_heads:
                raise ValueError(f"RoPE rotary_dims {self.rope.rotary_dims} exceed the head dim {self.model_dim // self.num_heads}")

    def kernel(self, stream: str) -> MHGKKernel:
        """The configured kernel of ``stream`` (the pack default when the config has none)."""
        return self.kernels.get(stream) or MHGKKernel.default(stream, self.num_heads)


class AudioCrossAttention(nn.Module):
    """One block's cross-attention from video tokens to one stream's audio tokens (MHGK bias).

    ``norm_x`` (LayerNorm) -> ``q`` (+ RMSNorm ``norm_q``) ; tokens -> ``k`` (+ ``norm_k``), ``v`` ;
    :func:`mhgk_attention` ; ``o``. ``o`` is zero-initialised so an untrained adapter adds nothing.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, qk_norm: bool = True, eps: float = 1e-6,
                 operations=None, device=None, dtype=None):
        super().__init__()
        ops = operations or nn
        kw = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.norm_x = ops.LayerNorm(dim, eps=eps, elementwise_affine=True, **kw)
        self.q = ops.Linear(dim, dim, **kw)
        self.k = ops.Linear(context_dim, dim, **kw)
        self.v = ops.Linear(context_dim, dim, **kw)
        self.o = ops.Linear(dim, dim, **kw)
        rms = getattr(ops, "RMSNorm", nn.RMSNorm)
        self.norm_q = rms(dim, eps=eps, elementwise_affine=True, **kw) if qk_norm else nn.Identity()
        self.norm_k = rms(dim, eps=eps, elementwise_affine=True, **kw) if qk_norm else nn.Identity()
        if self.o.weight.device.type != "meta":  # a new adapter starts as the identity (weights load over this)
            with torch.no_grad():
                self.o.weight.zero_()
                self.o.bias.zero_()

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, bias_table: torch.Tensor,
                backend: str = "auto", structure: str | None = None, rope: RopeTables | None = None) -> torch.Tensor:
        """Residual for the video tokens.

        Args:
            x: ``[B, Tq * S, dim]`` video tokens (frame-major, no guide or reference tokens).
            tokens: ``[B, Tk * N, context_dim]`` audio tokens (window-major).
            bias_table: ``[H, Tq, Tk]`` MHGK bias.
            backend / structure: see :func:`mhgk_attention`.
            rope: time-RoPE tables of the call (q at the latent frames' times, k at the windows'),
                applied after ``norm_q`` / ``norm_k``; ``None`` = no RoPE.

        Returns:
            ``[B, Tq * S, dim]`` in ``x.dtype``.
        """
        B, L, dim = x.shape
        q = self.norm_q(self.q(self.norm_x(x))).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k = self.norm_k(self.k(tokens)).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        v = self.v(tokens).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        if rope is not None:
            q, k = rope.rotate_queries(q), rope.rotate_keys(k)
        out = mhgk_attention(q, k, v, bias_table, backend=backend, structure=structure)
        return self.o(out.transpose(1, 2).reshape(B, L, dim))


class DuplexAdapter(nn.Module):
    """Token encoders (``encoders.<stream>``) and per-block cross-attention (``blocks.N.<stream>``).

    Built off the meta device it starts from :meth:`reset_parameters` (seed 0, zero output), so a
    new adapter leaves the model unchanged; checkpoints are loaded into a meta-device instance.

    Args:
        config: sizes, streams and default kernels.
        operations: ``torch.nn`` (default) or a ComfyUI ops class (``comfy.ops.manual_cast``).
    """

    def __init__(self, config: AdapterConfig, operations=None, device=None, dtype=None):
        super().__init__()
        self.config = config
        kw = {"operations": operations, "device": device, "dtype": dtype}
        enc = config.encoder
        make = (lambda: AudioQFormer(enc, **kw)) if isinstance(enc, QFormerConfig) else (lambda: InfiniteTalkAudioProj(enc, **kw))
        self.encoders = nn.ModuleDict({stream: make() for stream in config.streams})
        self.blocks = nn.ModuleList(
            nn.ModuleDict({stream: AudioCrossAttention(config.model_dim, enc.context_dim, config.num_heads,
                                                       config.qk_norm, **kw) for stream in config.streams})
            for _ in range(config.num_layers))
        if next(self.parameters()).device.type != "meta":  # a new adapter: defined values, identity output
            self.reset_parameters(seed=0, zero_output=True)

    @property
    def streams(self) -> tuple[str, ...]:
        return self.config.streams

    def _compute(self, device, dtype):
        param = next(self.parameters())
        return (param.device if device is None else device), (param.dtype if dtype is None else dtype)

    @torch.no_grad()
    def encode(self, duplex: DuplexAudio, stream: str, first_latent: int, num_latents: int,
               device: torch.device | None = None, dtype: torch.dtype | None = None,
               padding: str = "clamp", encoder_stream: str | None = None) -> torch.Tensor:
        """Audio tokens for sampling (no autograd graph): :meth:`audio_tokens` under ``torch.no_grad``."""
        return self.audio_tokens(duplex, stream, first_latent, num_latents, device, dtype, padding, encoder_stream)

    def audio_tokens(self, duplex: DuplexAudio, stream: str, first_latent: int, num_latents: int,
                     device: torch.device | None = None, dtype: torch.dtype | None = None,
                     padding: str = "clamp", encoder_stream: str | None = None) -> torch.Tensor:
        """Audio tokens of latents ``first_latent .. first_latent + num_latents - 1`` of one stream.

        Q-Former encoders run from ``receptive_field`` windows earlier so the result equals
        encoding the whole stream and slicing (causal, Sec. 3.2.1). Encoders that restart per clip
        (the InfiniteTalk ``audio_proj``, ``restarts_per_clip``) treat the run as a clip: its first
        latent takes the single-frame window (``proj1``), as the official generator does for every
        clip. Call it once per sampling window, not per step.

        Args:
            padding: ``"clamp"`` or ``"mirror"`` (audio mirrored at its end, for a last window
                that reaches past the audio; :func:`beyond_monologue.timebase.audio_window_frame_indices`).
            encoder_stream: the branch whose encoder runs (default ``stream``); two people in one
                frame encode both streams with the InfiniteTalk ``talk`` encoder.

        Returns:
            ``[num_latents, N, context_dim]`` on ``device`` in ``dtype`` (default: the adapter's).

        Raises:
            BMInputError: the stream is not part of this adapter, or the audio has another
                encoder size / window context than the adapter expects.
        """
        encoder = self._encoder(encoder_stream or stream)
        if duplex.context_frames != self.config.encoder.context_frames:
            raise BMInputError("audio", f"was windowed with {duplex.context_frames} context frames; the adapter "
                               f"expects {self.config.encoder.context_frames}.", "re-encode with BM Dual Stream Encode.")
        device, dtype = self._compute(device, dtype)
        restart = getattr(encoder, "restarts_per_clip", False)
        low = first_latent if restart else max(0, first_latent - encoder.receptive_field)
        first, rest = duplex.latent_windows(stream, low, first_latent + num_latents - low, clip_start=restart,
                                            padding=padding)
        first = None if first is None else first.to(device=device, dtype=dtype)
        tokens = encoder(first, rest.to(device=device, dtype=dtype))
        return tokens[first_latent - low:]

    @torch.no_grad()
    def null_tokens(self, stream: str, first_latent: int, num_latents: int,
                    device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The unconditional tokens for the same windows (learned Q-Former null, or InfiniteTalk's zero audio)."""
        return self.learned_null_tokens(stream, first_latent, num_latents, device, dtype)

    def learned_null_tokens(self, stream: str, first_latent: int, num_latents: int,
                            device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """:meth:`null_tokens` with autograd (training the learned nulls), ``[num_latents, N, context_dim]``.

        InfiniteTalk's unconditional input is zero audio cut like the clip's own (``torch.zeros_like``
        of the clip's windows), so a restarting encoder's first latent is the zero ``proj1`` window.
        """
        device, dtype = self._compute(device, dtype)
        encoder = self._encoder(stream)
        first_included = first_latent == 0 or getattr(encoder, "restarts_per_clip", False)
        return encoder.null(num_latents, first_included, device, dtype)

    def residual(self, block_index: int, stream: str, x: torch.Tensor, tokens: torch.Tensor,
                 bias_table: torch.Tensor, backend: str = "auto", structure: str | None = None,
                 rope: RopeTables | None = None) -> torch.Tensor:
        """Block ``block_index``'s residual from ``stream`` (:meth:`AudioCrossAttention.forward`)."""
        return self.blocks[block_index][stream](x, tokens, bias_table, backend, structure, rope)

    def _encoder(self, stream: str):
        if stream not in self.encoders:
            raise BMInputError("adapter", f"has no {stream} branch (it has {', '.join(self.streams)}).",
                               "use an adapter with both branches or switch that branch off.")
        return self.encoders[stream]

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0, zero_output: bool = True) -> DuplexAdapter:
        """Deterministic weights for untrained (smoke) adapters and tests.

        Linear weights and free parameters N(0, 0.02) (learned queries/null tokens N(0, 1)), biases 0,
        norm weights 1. ``zero_output`` zeroes every ``o`` so the adapter starts as the identity.
        """
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if name == "bias":
                    param.zero_()
                elif "norm" in type(module).__name__.lower():
                    param.fill_(1.0)
                else:
                    std = 1.0 if name in ("queries", "null_tokens") else 0.02
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
        if zero_output:
            for block in self.blocks:
                for attn in block.values():
                    attn.o.weight.zero_()
                    attn.o.bias.zero_()
        return self
