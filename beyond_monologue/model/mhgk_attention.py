"""MHGK cross-attention: ``softmax(Q K^T / sqrt(d) - B) V`` with the bias of :mod:`beyond_monologue.model.mhgk`.

One function, :func:`mhgk_attention`, with interchangeable backends (paper Sec. 3.2.2; the bias
depends only on (query latent frame, key audio window), a ``[H, Tq, Tk]`` table):

* ``reference``: materialises the ``[B, H, L_video, L_audio]`` logits; float64-capable; for tests.
* ``grouped``: queries grouped by latent frame; each group is one batch entry of torch SDPA with a
  ``[H, 1, L_audio]`` bias row broadcast over the frame's tokens. Memory ``O(H * Tq * L_audio)``.
* ``augmented``: the bias folded into the dot product. Queries get a one-hot of their latent frame
  and keys the column ``-B[:, window] / scale`` as ``Tq`` extra head dims (zero-padded to a
  multiple of 8), so plain SDPA (flash included) computes the biased logits exactly; no mask.
  ``alpha = inf`` is stored as ``INF_BIAS`` (exp(-1000) == 0 in every float type).
* ``flex``: FlexAttention with a ``score_mod`` that subtracts the table entry (compiled on CUDA;
  eager, which materialises the scores, elsewhere).
* ``xformers``: ``memory_efficient_attention`` per frame group with a broadcast ``attn_bias``.
* ``local`` / ``global``: exact fast paths that ``auto`` takes when the table is frame-local
  (``sigma = 0, alpha = inf``: each frame attends only to its own window, as InfiniteTalk) or zero
  (``sigma = inf``: plain SDPA).

Precision: float32 backends agree with the reference to a relative error < 1e-5 (tested on CPU).
In bf16 the inputs, the bias and the output are rounded to 8 mantissa bits; the documented bound
against the float64 reference is a relative error (Frobenius) < 1e-2; measured 2.7e-3 .. 3.6e-3 for
grouped/augmented/flex on CPU with the default schedules (tests/unit/model/test_mhgk_attention.py).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention.flex_attention import flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None

BACKENDS = ("auto", "reference", "grouped", "augmented", "flex", "xformers", "local", "global")
INF_BIAS = 1000.0
FLASH_MAX_HEAD_DIM = 256
_CHUNK_ELEMENTS = 1 << 25  # bound on the keys copied per frame group (grouped / xformers)
LIMIT_TABLES = {"global": "all-zero (sigma = inf)", "local": "frame-local (sigma = 0, alpha = inf, one window per frame)"}
_failed: set[str] = set()
_excluded: frozenset[str] = frozenset()  # kept out of ``auto`` by the host's settings (set_auto_excluded)
_unavailable_warned: set[str] = set()
_compiled_flex = None


def mhgk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_table: torch.Tensor,
                   backend: str = "auto", scale: float | None = None, structure: str | None = None) -> torch.Tensor:
    """Cross-attention of video queries to audio keys with a per-head (frame, window) bias.

    Args:
        q: ``[B, H, Tq * S, d]``: queries, frame-major (``S`` tokens per latent frame).
        k, v: ``[B, H, Tk * N, d]``: keys/values, window-major (``N`` tokens per audio window).
        bias_table: ``[H, Tq, Tk]``, ``>= 0``: subtracted from the scaled logits
            (:meth:`MHGKKernel.bias_table`); ``inf`` masks a pair.
        backend: one of :data:`BACKENDS`; ``auto`` picks by table structure, device and shape. A
            backend that cannot run here (xformers not installed or not on CUDA, flex on CUDA
            without Triton) falls back to ``auto`` with one warning per backend and process.
        scale: logit scale, default ``1 / sqrt(d)``.
        structure: :func:`table_structure` of ``bias_table`` when already known (saves a device
            sync per call; the Wan patch computes it once per model call).

    Returns:
        ``[B, H, Tq * S, d]`` in ``q.dtype``.

    Raises:
        ValueError: shapes that do not divide into frames/windows, an unknown backend, or
            ``local``/``global`` asked for a table without that structure (checked once here,
            from ``structure`` when given).
        torch.cuda.OutOfMemoryError: passed on; a backend is only dropped for the rest of the
            process (falling back to ``grouped``) when it fails for another reason.
    """
    H, Tq, Tk = bias_table.shape
    if q.shape[1] != H or k.shape[1] != H or q.shape[2] % Tq or k.shape[2] % Tk:
        raise ValueError(f"q {tuple(q.shape)} / k {tuple(k.shape)} do not split into the table's {H} heads, "
                         f"{Tq} frames and {Tk} windows")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    name = choose_backend(q, k, bias_table, structure) if backend == "auto" else backend
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown MHGK attention backend {backend!r}; use one of {BACKENDS}")
    if name in ("local", "global") and (structure or table_structure(bias_table)) != name:
        raise ValueError(f"backend {name!r} needs a {LIMIT_TABLES[name]} bias table")
    table = bias_table.to(device=q.device)
    if backend != "auto" and not backend_available(name, q.device):
        if name not in _unavailable_warned:
            _unavailable_warned.add(name)
            logging.warning("BeyondMonologue: MHGK attention backend %r is not available here (%s); using 'auto' "
                            "instead.", name, _missing_reason(name, q.device))
        name = choose_backend(q, k, bias_table, structure)
    if name == backend:  # chosen explicitly and available: errors are the caller's
        return _IMPLEMENTATIONS[name](q, k, v, table, scale)
    try:
        return _IMPLEMENTATIONS[name](q, k, v, table, scale)
    except Exception as err:
        if name not in ("flex", "xformers", "augmented") or isinstance(err, torch.cuda.OutOfMemoryError):
            raise  # out of memory is this call's problem, not the backend's: keep the backend
        logging.warning("BeyondMonologue: MHGK backend %s failed (%s); using 'grouped' from now on.", name, err)
        _failed.add(name)
        return _grouped(q, k, v, table, scale)


def table_structure(bias_table: torch.Tensor) -> str:
    """``"global"`` (all zero), ``"local"`` (square, 0 on the diagonal, inf elsewhere) or ``"general"``."""
    if not bool(torch.any(bias_table != 0)):
        return "global"
    H, Tq, Tk = bias_table.shape
    if Tq == Tk:
        eye = torch.eye(Tq, dtype=torch.bool, device=bias_table.device).expand(H, Tq, Tk)
        if bool(torch.all(bias_table[eye] == 0)) and bool(torch.all(torch.isinf(bias_table[~eye]))):
            return "local"
    return "general"


def choose_backend(q: torch.Tensor, k: torch.Tensor, bias_table: torch.Tensor, structure: str | None = None) -> str:
    """The backend ``auto`` uses: an exact fast path when the table allows, else by device and shape.

    CUDA: ``flex`` (compiled FlexAttention) when Triton is present, else ``augmented`` while the
    widened head fits flash attention (``d + Tq <= 256``), else ``xformers`` when installed, else
    ``grouped``. CPU and others: ``grouped``. A backend that raised once is skipped afterwards.
    """
    structure = structure or table_structure(bias_table)
    if structure != "general":
        return structure
    if q.is_cuda:
        skip = _failed | _excluded
        if "flex" not in skip and flex_attention is not None and _has_triton():
            return "flex"
        if "augmented" not in skip and _augmented_dim(q.shape[-1], bias_table.shape[1]) <= FLASH_MAX_HEAD_DIM:
            return "augmented"
        if "xformers" not in skip and _has_xformers():
            return "xformers"
    return "grouped"


def set_auto_excluded(names) -> None:
    """Keep ``names`` (e.g. ``{"xformers"}`` when ComfyUI runs with xformers disabled) out of ``auto``.

    Process-wide, like the host's attention flags it mirrors; replaces the previous set. An
    explicitly chosen backend is still used.
    """
    global _excluded
    _excluded = frozenset(names)


def auto_excluded() -> frozenset[str]:
    """The backends :func:`set_auto_excluded` keeps out of ``auto``."""
    return _excluded


def _missing_reason(name: str, device: torch.device) -> str:
    if name == "xformers":
        return "xformers is not installed" if not _has_xformers() else f"xformers needs a CUDA device, not {device.type}"
    if name == "flex":
        return "this torch has no FlexAttention" if flex_attention is None else "Triton is not installed"
    return "unknown backend"


def _reference(q, k, v, table, scale):
    Tq, Tk = table.shape[1:]
    S, N = q.shape[2] // Tq, k.shape[2] // Tk
    bias = table.to(q.dtype).repeat_interleave(S, dim=1).repeat_interleave(N, dim=2)
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale - bias
    return torch.matmul(torch.softmax(logits, dim=-1), v)


def _global(q, k, v, table, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def _local(q, k, v, table, scale):
    B, H, Lq, d = q.shape
    T = table.shape[1]
    qf = q.unflatten(2, (T, -1)).transpose(1, 2).reshape(B * T, H, -1, d)
    kf = k.unflatten(2, (T, -1)).transpose(1, 2).reshape(B * T, H, -1, d)
    vf = v.unflatten(2, (T, -1)).transpose(1, 2).reshape(B * T, H, -1, d)
    out = F.scaled_dot_product_attention(qf, kf, vf, scale=scale)
    return out.reshape(B, T, H, -1, d).transpose(1, 2).reshape(B, H, Lq, d)


def _frame_groups(q, k, table):
    """Yield ``(b, first_frame, end_frame)`` groups whose copied keys stay under ``_CHUNK_ELEMENTS``."""
    H, Tq, _ = table.shape
    group = max(1, min(Tq, _CHUNK_ELEMENTS // max(1, H * k.shape[2] * k.shape[3])))
    for b in range(q.shape[0]):
        for first in range(0, Tq, group):
            yield b, first, min(first + group, Tq)


def _grouped(q, k, v, table, scale):
    B, H, Lq, d = q.shape
    Tq, Tk = table.shape[1:]
    N = k.shape[2] // Tk
    mask = (-table).to(q.dtype).repeat_interleave(N, dim=2).transpose(0, 1).unsqueeze(2)  # [Tq, H, 1, Lk]
    qf = q.unflatten(2, (Tq, -1)).transpose(1, 2)  # [B, Tq, H, S, d]
    out = torch.empty_like(qf)
    for b, first, end in _frame_groups(q, k, table):
        count = end - first
        out[b, first:end] = F.scaled_dot_product_attention(
            qf[b, first:end], k[b].expand(count, -1, -1, -1), v[b].expand(count, -1, -1, -1),
            attn_mask=mask[first:end], scale=scale)
    return out.transpose(1, 2).reshape(B, H, Lq, d)


def _augmented_dim(d: int, frames: int) -> int:
    return d + frames + (-(d + frames)) % 8


def _augmented(q, k, v, table, scale):
    B, H, Lq, d = q.shape
    Tq, Tk = table.shape[1:]
    S, N = Lq // Tq, k.shape[2] // Tk
    width = _augmented_dim(d, Tq)
    frames = torch.arange(Tq, device=q.device)
    qa = q.new_zeros(B, H, Tq, S, width)
    qa[..., :d] = q.unflatten(2, (Tq, S))
    qa[:, :, frames, :, d + frames] = 1.0
    ka = k.new_zeros(B, H, k.shape[2], width)
    ka[..., :d] = k
    columns = (-table.clamp(max=INF_BIAS) / scale).transpose(1, 2).repeat_interleave(N, dim=1)  # [H, Lk, Tq]
    ka[..., d:d + Tq] = columns.to(k.dtype)
    va = F.pad(v, (0, width - d)) if q.is_cuda else v  # flash needs equal head dims
    out = F.scaled_dot_product_attention(qa.reshape(B, H, Lq, width), ka, va, scale=scale)
    return out[..., :d]


def _flex_eager(q, k, v, table, frame_tokens: int, window_tokens: int, scale: float):
    def score_mod(score, b, h, q_idx, kv_idx):
        return score - table[h, q_idx // frame_tokens, kv_idx // window_tokens]

    return flex_attention(q, k, v, score_mod=score_mod, scale=scale)


def _flex(q, k, v, table, scale):
    Tq, Tk = table.shape[1:]
    args = (q, k, v, table.to(torch.float32), q.shape[2] // Tq, k.shape[2] // Tk, scale)
    if q.is_cuda:
        # the whole function is compiled (score_mod built inside), so a new table is a new input, not a recompile
        global _compiled_flex
        if _compiled_flex is None:
            _compiled_flex = torch.compile(_flex_eager, dynamic=False)
        return _compiled_flex(*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return _flex_eager(*args)


def _xformers(q, k, v, table, scale):
    import xformers.ops as xops

    B, H, Lq, d = q.shape
    Tq, Tk = table.shape[1:]
    Lk = k.shape[2]
    N = Lk // Tk
    padded = Lk + (-Lk) % 8  # xformers wants the bias rows 8-aligned
    bias = torch.zeros(Tq, H, 1, padded, dtype=q.dtype, device=q.device)
    bias[..., :Lk] = (-table).to(q.dtype).repeat_interleave(N, dim=2).transpose(0, 1).unsqueeze(2)
    qf = q.unflatten(2, (Tq, -1)).permute(0, 2, 3, 1, 4)  # [B, Tq, S, H, d]
    out = torch.empty_like(qf)
    S = qf.shape[2]
    for b, first, end in _frame_groups(q, k, table):
        count = end - first
        kb, vb = k[b].transpose(0, 1).expand(count, -1, -1, -1), v[b].transpose(0, 1).expand(count, -1, -1, -1)
        out[b, first:end] = xops.memory_efficient_attention(
            qf[b, first:end], kb, vb, attn_bias=bias[first:end, :, :, :Lk].expand(-1, -1, S, -1), scale=scale)
    return out.permute(0, 3, 1, 2, 4).reshape(B, H, Lq, d)


def _has_triton() -> bool:
    with contextlib.suppress(ImportError):
        import triton  # noqa: F401

        return True
    return False


def _has_xformers() -> bool:
    with contextlib.suppress(ImportError):
        import xformers.ops  # noqa: F401

        return True
    return False


def backend_available(name: str, device: torch.device | str = "cpu") -> bool:
    """Whether ``name`` can run on ``device`` in this environment (for benchmarks and tests)."""
    device = torch.device(device)
    if name == "xformers":
        return _has_xformers() and device.type == "cuda"
    if name == "flex":
        return flex_attention is not None and (device.type != "cuda" or _has_triton())
    return name == "auto" or name in _IMPLEMENTATIONS


_IMPLEMENTATIONS = {
    "reference": _reference, "grouped": _grouped, "augmented": _augmented, "flex": _flex,
    "xformers": _xformers, "local": _local, "global": _global,
}
