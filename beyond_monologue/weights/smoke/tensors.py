"""Turn a key layout into random tensors, optionally in ComfyUI's scaled-fp8 storage.

A layout maps every key of a checkpoint to a :class:`Spec` (shape and role). Values are drawn
from a generator seeded by ``(seed, key)``, so a tensor never depends on the order of the others,
and are scaled by role so that a forward pass through the untrained model stays finite:
matmul/conv weights ~ N(0, 1/fan_in), norm scales ~ 1, biases and free parameters small.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch

KINDS = ("linear", "conv", "bias", "norm", "embedding", "param", "positive")


@dataclass(frozen=True)
class Spec:
    """Shape and role of one tensor.

    Attributes:
        shape: tensor shape.
        kind: ``linear`` (weight of a Linear layer: the only kind stored as fp8 in scaled-fp8 files),
            ``conv`` (convolution weight), ``bias``, ``norm`` (norm scale, around 1), ``embedding``
            (lookup table, N(0, 1)), ``param`` (free parameter such as adaLN modulation, small) or
            ``positive`` (a strictly positive scale such as a weight-norm magnitude).
    """

    shape: tuple[int, ...]
    kind: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown tensor kind {self.kind!r}")


Layout = dict[str, Spec]


def linear(layout: Layout, name: str, out_features: int, in_features: int, bias: bool = True) -> None:
    """Add ``name.weight`` [out, in] (and ``name.bias`` [out]) of a Linear layer."""
    layout[f"{name}.weight"] = Spec((out_features, in_features), "linear")
    if bias:
        layout[f"{name}.bias"] = Spec((out_features,), "bias")


def conv(layout: Layout, name: str, shape: tuple[int, ...], bias: bool = True) -> None:
    """Add ``name.weight`` of a convolution (shape [out, in/groups, *kernel]) and its bias."""
    layout[f"{name}.weight"] = Spec(tuple(shape), "conv")
    if bias:
        layout[f"{name}.bias"] = Spec((shape[0],), "bias")


def norm(layout: Layout, name: str, channels: int, bias: bool = True) -> None:
    """Add ``name.weight`` (and ``name.bias``) of a LayerNorm / GroupNorm / RMSNorm with ``channels``."""
    layout[f"{name}.weight"] = Spec((channels,), "norm")
    if bias:
        layout[f"{name}.bias"] = Spec((channels,), "bias")


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)


def random_tensor(key: str, spec: Spec, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """The value of one tensor (deterministic in ``seed`` and ``key``)."""
    values = torch.randn(spec.shape, generator=_generator(seed, key), dtype=torch.float32)
    if spec.kind in ("linear", "conv"):
        fan_in = math.prod(spec.shape[1:]) or 1
        values *= fan_in ** -0.5
    elif spec.kind == "norm":
        values = 1.0 + 0.02 * values
    elif spec.kind == "positive":
        values = 1.0 + 0.1 * values.abs()
    elif spec.kind in ("bias", "param"):
        values *= 0.02
    return values.to(dtype)


def fill(layout: Layout, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random tensors for every key of ``layout``, stored as ``dtype``."""
    return {key: random_tensor(key, spec, seed, dtype) for key, spec in layout.items()}


def to_scaled_fp8(state_dict: dict[str, torch.Tensor], layout: Layout, scale_input: bool,
                  fp8: torch.dtype = torch.float8_e4m3fn) -> dict[str, torch.Tensor]:
    """Store every ``linear`` weight in ComfyUI's scaled-fp8 layout.

    Each Linear weight W becomes ``W / s`` in ``fp8`` with ``<name>.scale_weight = s`` (fp32 scalar,
    s = max|W| / fp8 max), plus ``<name>.scale_input = 1`` when ``scale_input``; a top-level
    ``scaled_fp8`` marker (an empty ``fp8`` tensor, as ComfyUI's model_base.state_dict_for_saving
    writes it) tells ComfyUI's loaders to use its scaled-fp8 operations (comfy/ops.py
    ``scaled_fp8_ops``). Other tensors keep their dtype.
    """
    out = {}
    fp8_max = torch.finfo(fp8).max
    for key, value in state_dict.items():
        spec = layout.get(key)
        if spec is None or spec.kind != "linear":
            out[key] = value
            continue
        weight = value.float()
        scale = (weight.abs().max() / fp8_max).clamp(min=1e-12)
        out[key] = (weight / scale).to(fp8)
        prefix = key[: -len(".weight")]
        out[f"{prefix}.scale_weight"] = scale.reshape(())
        if scale_input:
            out[f"{prefix}.scale_input"] = torch.ones((), dtype=torch.float32)
    out["scaled_fp8"] = torch.empty((0,), dtype=fp8)
    return out


def parameter_count(layout: Layout) -> int:
    """Number of values in a layout."""
    return sum(math.prod(spec.shape) for spec in layout.values())
