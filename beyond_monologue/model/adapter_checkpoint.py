"""Adapter files: the pack's layout (a) and the public InfiniteTalk layout (b), with strict checks.

(a) ``beyond_monologue``: Beyond Monologue checkpoints for Wan2.2-TI2V-5B. Keys are exactly the
    :class:`~beyond_monologue.model.duplex_adapter.DuplexAdapter` state dict; the sizes, streams and MHGK
    schedule travel as JSON in the safetensors metadata (docs/ADAPTER_FORMAT.md).
(b) ``infinitetalk``: the public InfiniteTalk/MultiTalk audio adapter for Wan2.1-I2V-14B
    (``audio_proj.*``, ``blocks.N.{norm_x, audio_cross_attn.*}``; :mod:`beyond_monologue.model.infinitetalk`),
    loaded as the Talking branch with frame-local attention (MHGK's ``sigma -> 0`` limit).

Every key of a file must be consumed and every expected key present with its exact shape; any
other file fails with :class:`BMInputError` naming the file and the key. Only safetensors is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import BMInputError
from . import infinitetalk
from .audio_qformer import QFormerConfig
from .duplex_adapter import HEAD_DIM, LAYOUT_BM, LAYOUT_INFINITETALK, AdapterConfig, DuplexAdapter
from .mhgk import MHGKKernel
from .time_rope import TimeRoPE

FORMAT_NAME = "beyond_monologue.model.duplex_adapter"
FORMAT_VERSION = 2  # 2 adds "rope" (time-scaled RoPE) to the config; version 1 files load with RoPE off
READABLE_VERSIONS = ("1", "2")
META_FORMAT, META_VERSION, META_CONFIG, META_TRAINED = "bm_format", "bm_format_version", "bm_adapter_config", "bm_trained"
FIX_FILE = "put a Beyond Monologue adapter (docs/ADAPTER_FORMAT.md) or an InfiniteTalk model patch " \
           "(wan2.1_infiniteTalk_single_fp16.safetensors) in ComfyUI/models/model_patches and pick it again."
KNOWN_DITS = {(3072, 30): "Wan2.2-TI2V-5B", (5120, 40): "Wan2.1/2.2-14B", (1536, 30): "Wan2.1-1.3B"}


def describe_dit(dim: int, num_layers: int) -> str:
    """A readable name for a Wan DiT of this width/depth (for error messages)."""
    return KNOWN_DITS.get((dim, num_layers), f"a Wan DiT with dim {dim} and {num_layers} blocks")


def config_to_metadata(cfg: AdapterConfig) -> dict[str, str]:
    """safetensors metadata of a layout (a) file (all values are strings)."""
    body = {
        "layout": cfg.layout, "base_model": cfg.base_model, "model_dim": cfg.model_dim, "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads, "streams": list(cfg.streams), "qk_norm": cfg.qk_norm, "fps": cfg.fps,
        "qformer": cfg.encoder.to_dict(), "mhgk": {s: cfg.kernel(s).to_dict() for s in cfg.streams},
        "rope": None if cfg.rope is None else cfg.rope.to_dict(),
    }
    return {META_FORMAT: FORMAT_NAME, META_VERSION: str(FORMAT_VERSION), META_CONFIG: json.dumps(body),
            META_TRAINED: "true" if cfg.trained else "false"}


def config_from_metadata(meta: dict[str, str], label: str) -> AdapterConfig:
    """Inverse of :func:`config_to_metadata`; reads format versions 1 (no RoPE) and 2.

    Raises:
        BMInputError: unknown format version, a config that is not valid JSON / misses a field, or
            a version-1 file that claims a RoPE.
    """
    version = meta.get(META_VERSION)
    if version not in READABLE_VERSIONS:
        raise BMInputError(label, f"has adapter format version {version!r}; this pack reads {', '.join(READABLE_VERSIONS)}.",
                           "update the pack or use a file made for these versions.")
    try:
        body = json.loads(meta[META_CONFIG])
        return AdapterConfig(
            layout=LAYOUT_BM, model_dim=int(body["model_dim"]), num_layers=int(body["num_layers"]),
            num_heads=int(body["num_heads"]), streams=tuple(body["streams"]), qk_norm=bool(body["qk_norm"]),
            encoder=QFormerConfig(**body["qformer"]), fps=float(body.get("fps", 25.0)),
            kernels={s: MHGKKernel.from_dict(k) for s, k in body.get("mhgk", {}).items()},
            base_model=str(body.get("base_model", "")), trained=meta.get(META_TRAINED, "true") != "false",
            rope=_rope_from_body(body, version))
    except (KeyError, TypeError, ValueError) as err:
        raise BMInputError(label, f"has an unreadable '{META_CONFIG}' metadata entry ({type(err).__name__}: {err}).",
                           FIX_FILE) from None


def _rope_from_body(body: dict, version: str) -> TimeRoPE | None:
    rope = body.get("rope")
    if rope is None:
        return None
    if version == "1":
        raise ValueError("a format-1 config has no 'rope' (RoPE came with format 2)")
    return TimeRoPE.from_dict(rope)


def expected_shapes(cfg: AdapterConfig) -> dict[str, tuple[int, ...]]:
    """Every key of a layout (a) file for ``cfg`` with its shape (built on the meta device)."""
    with torch.device("meta"):
        module = DuplexAdapter(cfg)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def read_safetensors(path: str | Path, label: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file.

    Raises:
        BMInputError: the file is missing, not safetensors, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise BMInputError(label, f"file {path.name!r} was not found.", FIX_FILE)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as err:
        raise BMInputError(label, f"{path.name!r} is not a readable safetensors file ({err}).", FIX_FILE) from None
    return sd, meta


def detect_layout(keys, meta: dict[str, str], label: str) -> str:
    """``"beyond_monologue"`` or ``"infinitetalk"``.

    Raises:
        BMInputError: neither layout (a whole Wan model, another patch, ...).
    """
    keys = set(keys)
    if meta.get(META_FORMAT) == FORMAT_NAME:
        return LAYOUT_BM
    if "audio_proj.proj1.weight" in keys and any(k.startswith("blocks.0.audio_cross_attn.") for k in keys):
        return LAYOUT_INFINITETALK
    sample = ", ".join(sorted(keys)[:3]) or "no tensors"
    hint = " It is a whole Wan model: load it with Load Diffusion Model (diffusion_models)." \
        if "patch_embedding.weight" in keys or any(k.endswith("patch_embedding.weight") for k in keys) else ""
    raise BMInputError(label, f"is neither a Beyond Monologue adapter nor an InfiniteTalk model patch (keys: {sample}).{hint}",
                       FIX_FILE)


def check_keys(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], label: str, what: str) -> None:
    """Strict check: no missing key, no unused key, every shape exact.

    Raises:
        BMInputError: naming the file and the first offending key (and how many more).
    """
    missing = sorted(set(expected) - set(sd))
    unused = sorted(set(sd) - set(expected))
    for keys, problem in ((missing, "is missing key"), (unused, "has unexpected key")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise BMInputError(label, f"{problem} '{keys[0]}'{more} for {what}.", FIX_FILE)
    for key, shape in expected.items():
        if tuple(sd[key].shape) != shape:
            raise BMInputError(label, f"key '{key}' has shape {tuple(sd[key].shape)}, expected {shape} for {what}.", FIX_FILE)


def config_and_internal_state(sd: dict[str, torch.Tensor], meta: dict[str, str], label: str,
                              audio_layers: int = 12) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """Read a file's config and bring its tensors to :class:`DuplexAdapter` keys (strictly checked)."""
    layout = detect_layout(sd.keys(), meta, label)
    if layout == LAYOUT_BM:
        cfg = config_from_metadata(meta, label)
        check_keys(sd, expected_shapes(cfg), label, f"the Beyond Monologue adapter its metadata describes ({describe_dit(cfg.model_dim, cfg.num_layers)})")
        return cfg, sd
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    try:
        model_dim, num_layers, it_cfg = infinitetalk.infer_sizes(shapes, audio_layers)
    except (KeyError, ValueError) as err:
        raise BMInputError(label, f"is missing key {err} of the InfiniteTalk layout.", FIX_FILE) from None
    check_keys(sd, infinitetalk.public_shapes(model_dim, num_layers, it_cfg), label,
               f"an InfiniteTalk adapter for {describe_dit(model_dim, num_layers)}")
    heads = max(1, model_dim // HEAD_DIM)
    cfg = AdapterConfig(layout=LAYOUT_INFINITETALK, model_dim=model_dim, num_layers=num_layers, num_heads=heads,
                        streams=("talk",), qk_norm=False, encoder=it_cfg, kernels={"talk": MHGKKernel.frame_local(heads)},
                        base_model="wan2.1-i2v-14b", trained=meta.get(META_TRAINED, "true") != "false")
    return cfg, infinitetalk.to_internal(sd)


def load_adapter(path: str | Path, label: str | None = None, audio_layers: int = 12, operations=None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DuplexAdapter:
    """Load either layout into a :class:`DuplexAdapter` (weights kept in the file's dtype unless ``dtype``).

    Args:
        path: the .safetensors file.
        label: how errors name the file (default: its name).
        audio_layers: wav2vec2 layers for InfiniteTalk files (12; only scaled test files differ).
        operations: ``torch.nn`` (default) or ``comfy.ops.manual_cast``.

    Raises:
        BMInputError: unreadable file, unknown layout, missing/unused key or wrong shape.
    """
    label = label or f"adapter file {Path(path).name!r}"
    sd, meta = read_safetensors(path, label)
    return adapter_from_state(sd, meta, label, audio_layers, operations, device, dtype)


def adapter_from_state(sd: dict[str, torch.Tensor], meta: dict[str, str], label: str, audio_layers: int = 12,
                       operations=None, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> DuplexAdapter:
    """Build a :class:`DuplexAdapter` from a file's tensors and metadata (what :func:`load_adapter` does after reading).

    An adapter in memory goes through here too (:func:`file_state_dict` first), so attaching it
    gives exactly the module that loading its saved file would give.

    Raises:
        BMInputError: unknown layout, missing/unused key or wrong shape (naming ``label``).
    """
    cfg, internal = config_and_internal_state(sd, meta, label, audio_layers)
    with torch.device("meta"):
        adapter = DuplexAdapter(cfg, operations=operations)
    internal = {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in internal.items()}
    adapter.load_state_dict(internal, strict=True, assign=True)
    return adapter.eval().requires_grad_(False)


def file_state_dict(adapter: DuplexAdapter) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of ``adapter`` in its own layout's file format."""
    sd = {k: v.detach().contiguous() for k, v in adapter.state_dict().items()}
    cfg = adapter.config
    if cfg.layout == LAYOUT_BM:
        return sd, config_to_metadata(cfg)
    return infinitetalk.from_internal(sd), {META_TRAINED: "true" if cfg.trained else "false"}


def save_adapter(adapter: DuplexAdapter, path: str | Path) -> None:
    """Write ``adapter`` as safetensors in its layout (see :func:`file_state_dict`)."""
    sd, meta = file_state_dict(adapter)
    save_file(sd, str(path), metadata=meta)


def smoke_config(layout: str, model_dim: int = 256, num_layers: int = 2, audio_layers: int = 12,
                 audio_dim: int = 768) -> AdapterConfig:
    """A small config in either layout (for generated smoke weights and tests).

    Layout (a) has the time-RoPE on the whole head (the pack's default for new adapters: the paper's
    best attention is 3D cross-attention + 1D RoPE + MHGK); layout (b) has none (InfiniteTalk).
    """
    heads = max(1, model_dim // HEAD_DIM)
    if layout == LAYOUT_BM:
        enc = QFormerConfig(audio_dim=audio_dim, audio_layers=audio_layers, dim=64, context_dim=64, num_queries=4,
                            num_layers=1, num_heads=2, history_windows=4, ffn_mult=2)
        kernels = {s: MHGKKernel.default(s, heads) for s in ("talk", "listen")}
        return AdapterConfig(LAYOUT_BM, model_dim, num_layers, heads, ("talk", "listen"), True, enc, kernels,
                             base_model="wan2.2-ti2v-5b", trained=False, rope=TimeRoPE(rotary_dims=model_dim // heads))
    if layout == LAYOUT_INFINITETALK:
        enc = infinitetalk.InfiniteTalkConfig(audio_dim=audio_dim, audio_layers=audio_layers, intermediate_dim=32,
                                              context_dim=64, context_tokens=4)
        return AdapterConfig(LAYOUT_INFINITETALK, model_dim, num_layers, heads, ("talk",), False, enc,
                             {"talk": MHGKKernel.frame_local(heads)}, base_model="wan2.1-i2v-14b", trained=False)
    raise ValueError(f"layout must be {LAYOUT_BM!r} or {LAYOUT_INFINITETALK!r}, not {layout!r}")


def smoke_state_dict(layout: str, seed: int, zero_output: bool = True,
                     **sizes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Generated, untrained weights in the exact key layout and dtype of ``layout``.

    Layout (a) is bfloat16 (a bf16 training run's file), layout (b) float16 (as the public
    ``wan2.1_infiniteTalk_*_fp16`` files). With ``zero_output`` the output projections are zero, so
    the adapter leaves the model unchanged; without it they are random like every other weight, so
    the audio streams really drive the (untrained) model. The metadata says ``bm_trained = false``.
    ``sizes`` go to :func:`smoke_config` (``model_dim``, ``num_layers`` must match the smoke DiT it
    is used with).

    Returns:
        ``(tensors, metadata)`` that :func:`load_adapter` accepts once saved with safetensors.
    """
    adapter = DuplexAdapter(smoke_config(layout, **sizes)).reset_parameters(seed, zero_output=zero_output)
    sd, meta = file_state_dict(adapter)
    dtype = torch.bfloat16 if layout == LAYOUT_BM else torch.float16
    meta[META_TRAINED] = "false"
    return {k: v.to(dtype) for k, v in sd.items()}, meta


def check_compatible(cfg: AdapterConfig, model_dim: int, num_layers: int, num_heads: int, label: str) -> None:
    """Raise a clear error when the adapter was made for another DiT than the MODEL's.

    Raises:
        BMInputError: width, depth or heads differ (e.g. an InfiniteTalk 14B patch on Wan2.2-5B).
    """
    if (cfg.model_dim, cfg.num_layers) != (model_dim, num_layers) or cfg.num_heads != num_heads:
        raise BMInputError(label, f"is an adapter for {describe_dit(cfg.model_dim, cfg.num_layers)} "
                           f"(dim {cfg.model_dim}, {cfg.num_layers} blocks, {cfg.num_heads} heads) but the MODEL is "
                           f"{describe_dit(model_dim, num_layers)} (dim {model_dim}, {num_layers} blocks, {num_heads} heads).",
                           "use the adapter made for this model (InfiniteTalk: Wan2.1-I2V-14B; Beyond Monologue: Wan2.2-TI2V-5B).")

