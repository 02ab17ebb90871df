"""The public InfiniteTalk / MultiTalk audio adapter (Wan2.1-I2V-14B) as this pack's Talking branch.

Layout (MeiGen-AI/MultiTalk ``wan/modules/multitalk_model.py``; InfiniteTalk uses the same
tensors; ComfyUI's ``MultiTalkModelPatch`` loads the same keys from ``models/model_patches``):

* ``audio_proj.{proj1, proj1_vf, proj2, proj3, norm}.*``: ``AudioProjModel``. The 5-frame window of
  a clip's latent 0 goes through ``proj1`` and every later latent's 8-frame window through ``proj1_vf``
  (exactly :meth:`DuplexAudio.latent_windows` with ``context_frames = 2``). The official generator
  (``wan/multitalk.py``) cuts every clip's audio afresh, so the first latent of *every* sampling
  window (clip), not only of the video, takes the 5-frame window through ``proj1``
  (:attr:`InfiniteTalkAudioProj.restarts_per_clip`); both are flattened as
  (window, layer, channel); then ReLU, ``proj2``, ReLU, ``proj3`` -> ``context_tokens`` x
  ``context_dim`` tokens per latent, LayerNorm (run in float32 as InfiniteTalk does).
* ``blocks.N.norm_x.*`` (LayerNorm), ``blocks.N.audio_cross_attn.{q_linear, kv_linear, proj}.*``:
  per-block cross-attention, no q/k norm, ``kv_linear`` fusing k and v (first half k). Each latent
  frame attends only to its own window's tokens: MHGK's ``sigma -> 0, alpha -> inf`` limit
  (:meth:`MHGKKernel.frame_local`). Heads: ``model_dim / 128`` (40 on the 14B model).

The unconditional input of the original code is all-zero audio; :meth:`InfiniteTalkAudioProj.null`
returns the projection of zero windows. Multi-speaker L-RoPE (the ``multi`` checkpoints) uses the
same keys; two people in one frame (speaker binding and region routing) are in
:mod:`beyond_monologue.model.speaker_binding`, driven per call by ``DuplexCall.speakers``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import BMInputError

_BLOCK_MAP = {"norm_x": "norm_x", "audio_cross_attn.q_linear": "q", "audio_cross_attn.proj": "o"}


@dataclass(frozen=True)
class InfiniteTalkConfig:
    """Sizes of ``AudioProjModel`` (public defaults: wav2vec2-base 12 x 768, 512 hidden, 32 x 768 tokens)."""

    audio_dim: int = 768
    audio_layers: int = 12
    context_frames: int = 2
    intermediate_dim: int = 512
    context_dim: int = 768
    context_tokens: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class InfiniteTalkAudioProj(nn.Module):
    """``audio_proj`` of InfiniteTalk: per-latent audio windows -> ``[T, 32, 768]`` tokens (see module doc)."""

    receptive_field = 0  # no attention across windows
    # every sampling window is a clip of its own: its first latent takes the 5-frame window through
    # proj1 (MeiGen-AI/InfiniteTalk wan/multitalk.py cuts each clip's audio from the clip's frame 0)
    restarts_per_clip = True

    def __init__(self, cfg: InfiniteTalkConfig, operations=None, device=None, dtype=None):
        super().__init__()
        ops = operations or nn
        kw = {"device": device, "dtype": dtype}
        if cfg.context_frames != 2:
            raise ValueError("InfiniteTalk's audio_proj uses 5/8-frame windows (context_frames = 2)")
        per_frame = cfg.audio_layers * cfg.audio_dim
        self.cfg = cfg
        self.proj1 = ops.Linear(5 * per_frame, cfg.intermediate_dim, **kw)
        self.proj1_vf = ops.Linear(8 * per_frame, cfg.intermediate_dim, **kw)
        self.proj2 = ops.Linear(cfg.intermediate_dim, cfg.intermediate_dim, **kw)
        self.proj3 = ops.Linear(cfg.intermediate_dim, cfg.context_tokens * cfg.context_dim, **kw)
        self.norm = ops.LayerNorm(cfg.context_dim, **kw)


    def forward(self, first: torch.Tensor | None, rest: torch.Tensor | None) -> torch.Tensor:
        """``first [5, L, D]`` (latent 0) or None, ``rest [n, 8, L, D]`` -> ``[T, tokens, context_dim]``.

        Raises:
            BMInputError: features of another size than ``audio_layers x audio_dim``.
        """
        sample = first if first is not None else rest
        expected = (self.cfg.audio_layers, self.cfg.audio_dim)
        if sample is None or tuple(sample.shape[-2:]) != expected:
            got = None if sample is None else tuple(sample.shape[-2:])
            raise BMInputError("audio", f"features are {got} (layers x dim) but InfiniteTalk expects {expected} "
                               "(all 12 hidden layers of wav2vec2-base).",
                               "encode the audio with chinese-wav2vec2-base (the InfiniteTalk audio encoder).")
        hidden = []
        if first is not None:
            hidden.append(torch.relu(self.proj1(first.reshape(1, -1))))
        if rest is not None and rest.shape[0] > 0:
            hidden.append(torch.relu(self.proj1_vf(rest.flatten(1))))
        h = torch.relu(self.proj2(torch.cat(hidden, dim=0)))
        tokens = self.proj3(h).unflatten(-1, (self.cfg.context_tokens, self.cfg.context_dim))
        return self.norm(tokens.float()).to(tokens.dtype)

    def null(self, num_windows: int, first_included: bool, device=None, dtype=None) -> torch.Tensor:
        """Tokens of all-zero audio (the original code's unconditional input), ``[num_windows, tokens, dim]``."""
        kw = {"device": device, "dtype": dtype}
        shape = (self.cfg.audio_layers, self.cfg.audio_dim)
        first = torch.zeros(5, *shape, **kw) if first_included else None
        rest_count = num_windows - int(first_included)
        rest = torch.zeros(rest_count, 8, *shape, **kw) if rest_count > 0 else None
        return self.forward(first, rest)


def public_shapes(model_dim: int, num_layers: int, cfg: InfiniteTalkConfig) -> dict[str, tuple[int, ...]]:
    """Every key of a public InfiniteTalk file with its shape (scaled when the sizes are)."""
    per_frame = cfg.audio_layers * cfg.audio_dim
    shapes = {
        "audio_proj.proj1.weight": (cfg.intermediate_dim, 5 * per_frame), "audio_proj.proj1.bias": (cfg.intermediate_dim,),
        "audio_proj.proj1_vf.weight": (cfg.intermediate_dim, 8 * per_frame), "audio_proj.proj1_vf.bias": (cfg.intermediate_dim,),
        "audio_proj.proj2.weight": (cfg.intermediate_dim, cfg.intermediate_dim), "audio_proj.proj2.bias": (cfg.intermediate_dim,),
        "audio_proj.proj3.weight": (cfg.context_tokens * cfg.context_dim, cfg.intermediate_dim),
        "audio_proj.proj3.bias": (cfg.context_tokens * cfg.context_dim,),
        "audio_proj.norm.weight": (cfg.context_dim,), "audio_proj.norm.bias": (cfg.context_dim,),
    }
    for i in range(num_layers):
        p = f"blocks.{i}."
        shapes |= {
            p + "norm_x.weight": (model_dim,), p + "norm_x.bias": (model_dim,),
            p + "audio_cross_attn.q_linear.weight": (model_dim, model_dim), p + "audio_cross_attn.q_linear.bias": (model_dim,),
            p + "audio_cross_attn.kv_linear.weight": (2 * model_dim, cfg.context_dim),
            p + "audio_cross_attn.kv_linear.bias": (2 * model_dim,),
            p + "audio_cross_attn.proj.weight": (model_dim, model_dim), p + "audio_cross_attn.proj.bias": (model_dim,),
        }
    return shapes


def infer_sizes(shapes: dict[str, tuple[int, ...]], audio_layers: int = 12) -> tuple[int, int, InfiniteTalkConfig]:
    """``(model_dim, num_layers, config)`` read from a public file's shapes; ``audio_layers`` cannot be
    told apart from the channel count in ``proj1`` and is the architecture's 12 unless given.

    Raises:
        KeyError: a key needed to read the sizes is missing.
    """
    model_dim = shapes["blocks.0.audio_cross_attn.proj.weight"][0]
    num_layers = 1 + max(int(k.split(".")[1]) for k in shapes  # any key of the last block counts
                         if k.startswith("blocks.") and ".audio_cross_attn." in k and k.split(".")[1].isdigit())
    intermediate, proj1_in = shapes["audio_proj.proj1.weight"]
    context_dim = shapes["audio_proj.norm.weight"][0]
    cfg = InfiniteTalkConfig(audio_dim=proj1_in // (5 * audio_layers), audio_layers=audio_layers,
                             intermediate_dim=intermediate, context_dim=context_dim,
                             context_tokens=shapes["audio_proj.proj3.weight"][0] // context_dim)
    return model_dim, num_layers, cfg


def to_internal(sd: dict[str, torch.Tensor], stream: str = "talk") -> dict[str, torch.Tensor]:
    """Public keys -> the :class:`DuplexAdapter` keys (``encoders.talk.*``, ``blocks.N.talk.*``; kv split)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("audio_proj."):
            out[f"encoders.{stream}." + key[len("audio_proj."):]] = value
            continue
        _, index, rest = key.split(".", 2)
        head, param = rest.rsplit(".", 1)
        prefix = f"blocks.{index}.{stream}."
        if head == "audio_cross_attn.kv_linear":
            k, v = value.chunk(2, dim=0)
            out[prefix + "k." + param], out[prefix + "v." + param] = k, v
        else:
            out[prefix + _BLOCK_MAP[head] + "." + param] = value
    return out


def from_internal(sd: dict[str, torch.Tensor], stream: str = "talk") -> dict[str, torch.Tensor]:
    """Inverse of :func:`to_internal` (writes files in the public layout, e.g. for tests and smoke runs)."""
    inverse = {v: k for k, v in _BLOCK_MAP.items()}
    out = {}
    enc = f"encoders.{stream}."
    for key, value in sd.items():
        if key.startswith(enc):
            out["audio_proj." + key[len(enc):]] = value
            continue
        _, index, branch, rest = key.split(".", 3)
        head, param = rest.rsplit(".", 1)
        if branch != stream or head == "v":
            continue
        prefix = f"blocks.{index}."
        if head == "k":
            value = torch.cat([value, sd[f"blocks.{index}.{stream}.v.{param}"]], dim=0)
            out[prefix + "audio_cross_attn.kv_linear." + param] = value
        else:
            out[prefix + inverse[head] + "." + param] = value
    return out
