"""Attach the dual-stream adapter to a native ComfyUI Wan MODEL. The only module touching Wan DiT internals.

Everything goes through ComfyUI's patching mechanisms on a clone of the ``ModelPatcher``, so the
adapter survives ComfyUI's offloading/reloading (patches are re-applied at every load) and
:func:`detach_duplex_adapter` returns a MODEL without it:

* the adapter's own ``ModelPatcher`` is an *additional model* (key ``bm_duplex_adapter``), loaded
  and offloaded by ComfyUI's memory manager together with the DiT;
* the audio residual is added after the text cross-attention of every ``WanAttentionBlock``:
  through ``transformer_options["patches"]["attn2_patch"]`` where the running ComfyUI calls it
  (upstream, after ComfyUI 0.3.75); otherwise (0.3.75) the block replacement below runs the
  0.3.75 block with that hook in place;
* a block replacement per block (``patches_replace["dit"][("double_block", i)]``, what
  ``ModelPatcher.set_model_patch_replace`` sets) passes the guide frame's RoPE frequencies; it
  calls ComfyUI's original block whenever the call has no ``bm_duplex`` (then nothing changes);
* a ``WrappersMP.DIFFUSION_MODEL`` wrapper reads the per-call :class:`~beyond_monologue.sampling.duplex_call.DuplexCall`
  (``transformer_options["bm_duplex"]``), works out the token grid, which batch rows are which
  guidance branch (``transformer_options["cond_or_uncond"]``), the MHGK tables and the guide's RoPE
  frequencies once per model call, and appends the optional guide latent (paper Sec. 3.3,
  arbitrary-position guide: its RoPE time index is the one the call asks for), and writes the
  call's clean known latents (``DuplexCall.known``) over the window's first latents.

Nothing is set on the torch modules themselves (no object patches), so removing the patches
leaves the DiT exactly as it was.

Guide tokens and reference tokens (``ref_conv`` models, ``time_dim_concat``) get no audio residual:
audio drives only the window's own latent frames, so the MHGK limits hold for them unchanged.
Without ``bm_duplex`` in the options the patched model computes exactly the base model.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field

import comfy.ldm.wan.model as wan
import comfy.model_management
import comfy.patcher_extension
import torch
import torch.utils.checkpoint
from comfy.ldm.flux.math import apply_rope1

from ..audio.duplex_audio import DuplexAudio
from ..errors import BMInputError
from ..sampling.duplex_call import CALL_KEY, DuplexCall, prepare_duplex_call
from .adapter_checkpoint import check_compatible
from .mhgk import MHGKKernel, kernel_times
from .mhgk_attention import set_auto_excluded, table_structure
from .speaker_binding import binding_residual, query_positions, reference_attention_map, token_masks
from .time_rope import RopeTables

ADAPTER_KEY = "bm_duplex_adapter"
STATE_KEY = "bm_duplex_state"
CHECKPOINT_KEY = "bm_gradient_checkpointing"  # transformer_options flag: checkpoint every patched block (training)


@dataclass(frozen=True)
class AdapterSettings:
    """Node-level settings of an attached adapter (a :class:`DuplexCall` may override them per call)."""

    kernels: dict[str, MHGKKernel]
    scales: dict[str, float] = field(default_factory=dict)
    backend: str = "auto"


def supports_attn2_patch() -> bool:
    """True when the running ComfyUI's ``WanAttentionBlock.forward`` calls ``attn2_patch`` patches."""
    return "attn2_patch" in inspect.getsource(wan.WanAttentionBlock.forward)


def _diffusion_model(model):
    dm = model.get_model_object("diffusion_model")
    dm = getattr(dm, "_orig_mod", dm)  # torch.compile'd
    if type(dm) is not wan.WanModel or not all(type(b) is wan.WanAttentionBlock for b in dm.blocks):
        raise BMInputError("model", f"is a {type(dm).__name__}; the duplex adapter patches the plain Wan2.1/2.2 WanModel "
                           "(T2V, I2V, TI2V-5B).", "load Wan2.2-TI2V-5B (or Wan2.1-I2V-14B for InfiniteTalk) with Load Diffusion Model.")
    return dm


@dataclass(frozen=True)
class WanBackbone:
    """What the sampler needs to know about a Wan MODEL's DiT (read, never changed).

    Attributes:
        in_channels: DiT input channels (Wan2.2-TI2V-5B: 48; Wan2.1-I2V: 36 = 16 latent + 4 mask + 16 image).
        latent_channels: channels of the MODEL's latent format (48 / 16).
        patch_size: DiT patch ``(t, h, w)`` (Wan: ``(1, 2, 2)``).
        dim / num_layers / num_heads: DiT width, blocks and attention heads (Wan2.2-TI2V-5B: 3072, 30, 24):
            the sizes a new adapter for this model gets.
        clip_image_embedding: the DiT has the CLIP image projection (``img_emb``: Wan2.1-I2V), i.e. it
            was trained with CLIP vision features of the reference (``clip_fea``) at every call.
    """

    in_channels: int
    latent_channels: int
    patch_size: tuple[int, int, int]
    dim: int = 0
    num_layers: int = 0
    num_heads: int = 0
    clip_image_embedding: bool = False

    @property
    def image_concat_channels(self) -> int:
        """Channels the I2V models concatenate to the latent (mask + image latent; 0 for T2V/TI2V-5B)."""
        return self.in_channels - self.latent_channels


def backbone(model) -> WanBackbone:
    """The :class:`WanBackbone` of a native Wan MODEL.

    Raises:
        BMInputError: not a plain Wan model.
    """
    dm = _diffusion_model(model)
    return WanBackbone(int(dm.patch_embedding.weight.shape[1]), int(model.get_model_object("latent_format").latent_channels),
                       tuple(int(p) for p in dm.patch_size), int(dm.dim), len(dm.blocks), int(dm.num_heads),
                       getattr(dm, "img_emb", None) is not None)


def attach_duplex_adapter(model, adapter_patcher, settings: AdapterSettings | None = None, label: str = "adapter"):
    """A clone of ``model`` (a ComfyUI ``ModelPatcher`` of a Wan model) with the adapter attached.

    An adapter attached earlier is replaced. Other packs' block replacements of the same blocks are
    overwritten (with a warning); attn2 patches, wrappers and weight patches (LoRA) compose.

    Args:
        adapter_patcher: ``ModelPatcher`` of a :class:`~beyond_monologue.model.duplex_adapter.DuplexAdapter`.
        settings: kernels/strengths/backend; default: the adapter config's kernels, strength 1.
        label: how errors name the adapter file.

    Raises:
        BMInputError: not a plain Wan model, or an adapter made for another DiT size.
    """
    dm = _diffusion_model(model)
    adapter = adapter_patcher.model
    check_compatible(adapter.config, dm.dim, len(dm.blocks), dm.num_heads, label)
    if settings is None:
        settings = AdapterSettings({s: adapter.config.kernel(s) for s in adapter.streams})
    follow_comfy_attention()
    patched = detach_duplex_adapter(model)
    hook = _DuplexHook(adapter_patcher, settings, in_block_forward=not supports_attn2_patch())
    patched.set_additional_models(ADAPTER_KEY, [adapter_patcher])
    patched.set_attachments(ADAPTER_KEY, hook)
    if not hook.in_block_forward:
        patched.set_model_attn2_patch(hook)
    existing = patched.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for index, block in enumerate(dm.blocks):
        if ("double_block", index) in existing:
            logging.warning("BeyondMonologue: replacing another block patch of Wan block %d.", index)
        patched.set_model_patch_replace(_BlockPatch(block, index, hook), "dit", "double_block", index)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, ADAPTER_KEY, _DiffusionModelWrapper(hook))
    return patched


_noted_flags: set[str] = set()


def follow_comfy_attention() -> None:
    """Mirror ComfyUI's attention flags in the adapter's MHGK attention (called at every attach).

    * xformers off in ComfyUI (``--disable-xformers``, ``--use-pytorch-cross-attention``, no xformers,
      not CUDA): MHGK's ``auto`` never picks its xformers backend either.
    * ``--use-sage-attention`` / ``--use-flash-attention``: the DiT's own attention runs on them
      (ComfyUI's choice, untouched), but the MHGK cross-attention subtracts a per-(latent frame,
      audio window) bias that neither ``sageattn`` nor ``flash_attn_func`` takes; its exact backends
      stay in use, and one log line per flag and process says so. (On CUDA ``auto`` mostly runs
      ``flex`` or ``augmented``: the bias folded into the dot product, through torch SDPA's own
      flash kernel.)
    * ComfyUI itself refuses to start when a flagged library is not installed (0.3.75:
      ``comfy/ldm/modules/attention.py`` logs the pip command and exits).
    """
    mm = comfy.model_management
    set_auto_excluded(() if mm.xformers_enabled() else ("xformers",))
    for enabled, flag, library in ((mm.sage_attention_enabled(), "--use-sage-attention", "SageAttention's sageattn"),
                                   (mm.flash_attention_enabled(), "--use-flash-attention", "flash-attn's flash_attn_func")):
        if enabled and flag not in _noted_flags:
            _noted_flags.add(flag)
            logging.info("BeyondMonologue: ComfyUI runs the Wan DiT's attention with %s (%s); the duplex adapter's MHGK "
                         "cross-attention needs a per-(latent frame, audio window) bias that %s does not take, so it keeps "
                         "its own exact backends (attention_backend on BM Apply Duplex Adapter).", library, flag, library)


def detach_duplex_adapter(model):
    """A clone of ``model`` without this pack's adapter patches (a no-op clone when none is attached)."""
    patched = model.clone()
    patched.remove_additional_models(ADAPTER_KEY)
    patched.remove_attachments(ADAPTER_KEY)
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, ADAPTER_KEY)
    options = patched.model_options["transformer_options"]
    patches = options.get("patches", {})
    if "attn2_patch" in patches:
        patches["attn2_patch"] = [p for p in patches["attn2_patch"] if not isinstance(p, _DuplexHook)]
    dit = options.get("patches_replace", {}).get("dit", {})
    for key in [k for k, v in dit.items() if isinstance(v, _BlockPatch)]:
        del dit[key]
    return patched


def attached_adapter(model):
    """``(adapter ModelPatcher, AdapterSettings)`` of the adapter attached to ``model``, or None."""
    hook = model.get_attachment(ADAPTER_KEY)
    if hook is None:
        return None
    return model.get_additional_models_with_key(ADAPTER_KEY)[0], hook.settings


def require_adapter(model):
    """:func:`attached_adapter`, or a clear error when the MODEL has none or would skip it.

    Raises:
        BMInputError: no adapter attached, or a node after BM Apply replaced the adapter's block
            patches, attn2 patch or diffusion-model wrapper (the adapter would be skipped silently).
    """
    found = attached_adapter(model)
    if found is None:
        raise BMInputError("model", "has no duplex adapter attached.", "connect it through BM Apply Duplex Adapter first.")
    _check_patches_intact(model)
    return found


def _check_patches_intact(model) -> None:
    """Raise when a node after BM Apply replaced the adapter's block patches (it would be skipped silently)."""
    options = model.model_options["transformer_options"]
    dit = options.get("patches_replace", {}).get("dit", {})
    blocks = len(model.get_model_object("diffusion_model").blocks)
    lost = [f"Wan block {i}" for i in range(blocks) if not isinstance(dit.get(("double_block", i)), _BlockPatch)]
    hook = model.get_attachment(ADAPTER_KEY)
    if not hook.in_block_forward and not any(isinstance(p, _DuplexHook) for p in options.get("patches", {}).get("attn2_patch", [])):
        lost.append("attn2_patch")
    if ADAPTER_KEY not in model.wrappers.get(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, {}):
        lost.append("diffusion-model wrapper")
    if lost:
        raise BMInputError("model", f"has the duplex adapter attached, but a node after BM Apply Duplex Adapter replaced "
                           f"the adapter's patches ({', '.join(lost)}), e.g. another pack's block patch; the adapter "
                           "would be skipped there.", "connect that node before BM Apply Duplex Adapter (BM Apply then keeps "
                           "its own patch and logs which one it replaced), or leave it out.")


def prepare_window(model, duplex: DuplexAudio, first_latent: int, num_latents: int, **options) -> DuplexCall:
    """Load the attached adapter and encode one sampling window's audio (once per window, not per step).

    Returns:
        A :class:`DuplexCall` for ``model_options["transformer_options"]["bm_duplex"]``; ``options``
        are its further fields (``branches``, ``guide``, ...).

    Raises:
        BMInputError: no adapter attached, or audio that does not fit the adapter.
    """
    patcher, _ = require_adapter(model)
    comfy.model_management.load_models_gpu([patcher])
    base = model.model
    dtype = base.manual_cast_dtype or base.get_dtype()
    return prepare_duplex_call(patcher.model, duplex, first_latent, num_latents, patcher.load_device, dtype, **options)


@dataclass
class _Branch:
    stream: str
    rows: torch.Tensor | None  # int64 batch rows that get this stream's residual; None = every row
    tokens: torch.Tensor  # [len(rows), Tk * N, context_dim]
    table: torch.Tensor  # [H, Tq, Tk]
    structure: str  # table_structure(table), computed on the CPU once per model call
    scale: float
    rope: RopeTables | None = None  # time-RoPE of the call (adapter format 2), None = off
    binding: bool = False  # two people in one frame: tokens are [rows, Tk * 2N, C], L-RoPE speaker binding


@dataclass
class _ForwardState:
    token_start: int
    video_tokens: int
    backend: str
    branches: list[_Branch]
    context_img_len: int | None = None
    guide_freqs: torch.Tensor | None = None  # RoPE of the guide frame's tokens, replacing the last frame's
    frames: int = 0  # latent frames of the video tokens
    speaker_masks: torch.Tensor | None = None  # [3, tokens per frame]: speaker 1, speaker 2, background
    speaker_positions: torch.Tensor | None = None  # [B, video tokens] L-RoPE positions of the current block


class _DuplexHook:
    """Adds the adapter's residual to the video tokens after the text cross-attention."""

    def __init__(self, adapter_patcher, settings: AdapterSettings, in_block_forward: bool):
        self.adapter_patcher = adapter_patcher
        self.settings = settings
        self.in_block_forward = in_block_forward  # ComfyUI without attn2_patch: _BlockPatch runs the hook

    def __deepcopy__(self, memo):  # ModelPatcher.clone deep-copies model_options: share, never copy weights
        return self

    def to(self, device_or_dtype):
        return self

    def __call__(self, args: dict) -> torch.Tensor:
        """``attn2_patch`` form: ``{"x", "transformer_options"}`` with ``block_index`` in the options."""
        options = args["transformer_options"]
        return self.apply(args["x"], options.get("block_index"), options)

    def apply(self, x: torch.Tensor, block_index: int | None, options: dict) -> torch.Tensor:
        state: _ForwardState | None = options.get(STATE_KEY)
        if state is None or block_index is None or not state.branches:
            return x
        if x.shape[1] < state.token_start + state.video_tokens:
            raise ValueError(f"duplex adapter: {x.shape[1]} tokens, expected at least {state.token_start + state.video_tokens}")
        adapter = self.adapter_patcher.model
        video = x.narrow(1, state.token_start, state.video_tokens)  # a view: updated in place
        # every branch reads the same tokens (parallel, IP-Adapter style): all residuals first, then the sums
        rows = [slice(None) if branch.rows is None else branch.rows for branch in state.branches]
        residuals = [self._binding_residual(adapter, block_index, branch, video[r], state.speaker_positions[r], state.frames)
                     if branch.binding else
                     adapter.residual(block_index, branch.stream, video[r], branch.tokens, branch.table,
                                      state.backend, branch.structure, branch.rope)
                     for branch, r in zip(state.branches, rows, strict=True)]
        if torch.is_grad_enabled() and any(residual.requires_grad for residual in residuals):
            # training: autograd keeps the block's input for backward, so add out of place
            total = video
            for branch, residual in zip(state.branches, residuals, strict=True):
                if branch.rows is None:
                    total = total + residual * branch.scale
                else:
                    total = total.index_add(0, branch.rows, residual * branch.scale)
            end = state.token_start + state.video_tokens
            return torch.cat([x[:, :state.token_start], total, x[:, end:]], dim=1)
        for branch, r, residual in zip(state.branches, rows, residuals, strict=True):
            if branch.rows is None:
                video.add_(residual, alpha=branch.scale)
            else:
                video[r] += residual * branch.scale
        return x

    @staticmethod
    def _binding_residual(adapter, block_index: int, branch: _Branch, video: torch.Tensor, positions: torch.Tensor,
                          frames: int) -> torch.Tensor:
        tokens = branch.tokens.unflatten(1, (frames, -1))  # [rows, Tq, 2N, C]: one audio window per latent frame
        return binding_residual(adapter.blocks[block_index][branch.stream], video, tokens, positions)

    def forward_state(self, call: DuplexCall, grid: tuple[int, int, int], token_start: int, batch: int,
                      options: dict, device: torch.device, dtype: torch.dtype) -> _ForwardState:
        """Per model call: which rows get which tokens, and the MHGK tables (computed once for all blocks)."""
        frames, tokens_per_frame = grid[0], grid[1] * grid[2]
        chunks = options.get("cond_or_uncond") or [0]
        per_chunk = batch // len(chunks) if batch % len(chunks) == 0 else batch
        row_cond = [chunks[min(r // per_chunk, len(chunks) - 1)] for r in range(batch)]
        branches = []
        rope_config = self.adapter_patcher.model.config.rope
        speakers = call.speakers
        for stream in self.adapter_patcher.model.streams:
            scale = self.settings.scales.get(stream, 1.0) * call.scales.get(stream, 1.0)
            if stream not in call.tokens or scale == 0:
                continue
            rows = [r for r in range(batch) if call.mode(row_cond[r], stream) != "off"]
            bound = []
            if speakers is not None and speakers.stream == stream:
                # two people in one frame: rows that hear the audio take the two-speaker attention;
                # null rows the plain one over one speaker's zero audio (as the official uncond pass)
                bound = [r for r in rows if call.mode(row_cond[r], stream) == "on"]
                rows = [r for r in rows if r not in bound]
            q_times, k_times = kernel_times(frames, call.tokens[stream].shape[0], call.fps, call.video_first_latent,
                                            call.audio_first_latent)
            kernel = call.kernels.get(stream) or self.settings.kernels[stream]
            table = kernel.bias_table(q_times, k_times)
            rope = None if rope_config is None else rope_config.tables(q_times, k_times, device)
            if bound:
                tokens = speakers.tokens.flatten(0, 1).expand(len(bound), -1, -1)
                branches.append(_Branch(stream, None if len(bound) == batch else torch.tensor(bound, device=device),
                                        tokens.to(device=device, dtype=dtype), table.to(device), "dense", scale,
                                        binding=True))
            if not rows:
                continue
            picked = [call.tokens[stream] if call.mode(row_cond[r], stream) == "on" else call.null_tokens[stream] for r in rows]
            branches.append(_Branch(
                stream, None if len(rows) == batch else torch.tensor(rows, device=device),
                torch.stack(picked).flatten(1, 2).to(device=device, dtype=dtype),
                table.to(device), table_structure(table), scale, rope))
        state = _ForwardState(token_start, frames * tokens_per_frame, call.backend or self.settings.backend, branches,
                              frames=frames)
        if speakers is not None and any(branch.binding for branch in branches):
            state.speaker_masks = token_masks(speakers.masks, (grid[1], grid[2])).to(device)
        return state


class _BlockPatch:
    """``patches_replace["dit"][("double_block", i)]``: guide RoPE and, on ComfyUI 0.3.75, the audio hook."""

    def __init__(self, block, index: int, hook: _DuplexHook):
        self.block, self.index, self.hook = block, index, hook

    def __deepcopy__(self, memo):  # holds the DiT block: never copy it with model_options
        return self

    def to(self, device_or_dtype):
        return self

    def __call__(self, args: dict, extra: dict) -> dict:
        options = args["transformer_options"]
        if options.get(CHECKPOINT_KEY) and torch.is_grad_enabled():
            # training: recompute the block in backward instead of keeping its activations
            img = torch.utils.checkpoint.checkpoint(
                lambda x: self._run({**args, "img": x, "transformer_options": {**options, CHECKPOINT_KEY: False}}, extra)["img"],
                args["img"], use_reentrant=False)
            return {"img": img}
        return self._run(args, extra)

    def _run(self, args: dict, extra: dict) -> dict:
        options = args["transformer_options"]
        state: _ForwardState | None = options.get(STATE_KEY)
        if state is None:
            return extra["original_block"](args)
        freqs = args["pe"]
        if state.guide_freqs is not None:
            freqs = torch.cat([freqs[:, :-state.guide_freqs.shape[1]], state.guide_freqs.to(freqs)], dim=1)
        if state.speaker_masks is not None:
            state.speaker_positions = self._speaker_positions(args["img"], args["vec"], freqs, state)
        if not self.hook.in_block_forward:
            return extra["original_block"]({**args, "pe": freqs})
        return {"img": self._forward_0_3_75(args["img"], args["vec"], freqs, args["txt"], state.context_img_len, options)}

    def _speaker_positions(self, x, e, freqs, state: _ForwardState) -> torch.Tensor:
        """L-RoPE positions of the video tokens from this block's own self-attention (``x_ref_attn_map``).

        Recomputes the block's self-attention queries and keys exactly as ComfyUI's
        ``WanSelfAttention`` does (modulated ``norm1``, ``q``/``k``, ``norm_q``/``norm_k``, 3D RoPE);
        the official code takes them from inside its self-attention.
        """
        block, repeat_e = self.block, wan.repeat_e
        modulation = comfy.model_management.cast_to(block.modulation, dtype=x.dtype, device=x.device)
        e = (modulation + e).chunk(6, dim=1) if e.ndim < 4 else (modulation.unsqueeze(0) + e).unbind(2)
        attn_in = torch.addcmul(repeat_e(e[0], x), block.norm1(x), 1 + repeat_e(e[1], x))
        attn = block.self_attn
        b, s = attn_in.shape[:2]
        q = apply_rope1(attn.norm_q(attn.q(attn_in)).view(b, s, attn.num_heads, attn.head_dim), freqs)
        k = apply_rope1(attn.norm_k(attn.k(attn_in)).view(b, s, attn.num_heads, attn.head_dim), freqs)
        video = slice(state.token_start, state.token_start + state.video_tokens)
        frame_tokens = state.video_tokens // state.frames
        with torch.no_grad():
            attn_map = reference_attention_map(q[:, video], k[:, video], frame_tokens, state.speaker_masks)
        return query_positions(attn_map)

    def _forward_0_3_75(self, x, e, freqs, context, context_img_len, transformer_options):
        """ComfyUI 0.3.75's ``WanAttentionBlock.forward`` with the adapter hook after the text cross-attention."""
        block, repeat_e = self.block, wan.repeat_e
        modulation = comfy.model_management.cast_to(block.modulation, dtype=x.dtype, device=x.device)
        e = (modulation + e).chunk(6, dim=1) if e.ndim < 4 else (modulation.unsqueeze(0) + e).unbind(2)
        x = x.contiguous()
        y = block.self_attn(torch.addcmul(repeat_e(e[0], x), block.norm1(x), 1 + repeat_e(e[1], x)),
                            freqs, transformer_options=transformer_options)
        x = torch.addcmul(x, y, repeat_e(e[2], x))
        del y
        x = x + block.cross_attn(block.norm3(x), context, context_img_len=context_img_len,
                                 transformer_options=transformer_options)
        x = self.hook.apply(x, self.index, transformer_options)
        y = block.ffn(torch.addcmul(repeat_e(e[3], x), block.norm2(x), 1 + repeat_e(e[4], x)))
        return torch.addcmul(x, y, repeat_e(e[5], x))


class _DiffusionModelWrapper:
    """``WrappersMP.DIFFUSION_MODEL``: per-call state, guide latent and its timestep."""

    def __init__(self, hook: _DuplexHook):
        self.hook = hook

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={}, **kwargs):  # noqa: B006
        call: DuplexCall | None = transformer_options.get(CALL_KEY)
        if call is None:
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
        dm = executor.class_obj
        batch, _, frames, height, width = x.shape
        grid = tuple(math.ceil(n / p) for n, p in zip((frames, height, width), dm.patch_size, strict=True))
        token_start = grid[1] * grid[2] if dm.ref_conv is not None and kwargs.get("reference_latent") is not None else 0
        options = dict(transformer_options)
        state = self.hook.forward_state(call, grid, token_start, batch, options, x.device, x.dtype)
        state.context_img_len = None if clip_fea is None else clip_fea.shape[-2]
        if call.known is not None:
            x = _hold_known(x, call.known)
        guide = call.guide
        if guide is not None and state.speaker_masks is not None:
            raise BMInputError("guide", "cannot be combined with two speakers in one frame.",
                               "use guide_position first_frame (Wan2.1-I2V) for two people in one frame.")
        if guide is not None:
            x, timestep = _append_guide(x, timestep, guide, time_dim_concat, token_start)
            index = grid[0] if guide.rope_index is None else guide.rope_index
            scale_t = (options.get("rope_options") or {}).get("scale_t", 1.0)
            state.guide_freqs = dm.rope_encode(1, height, width, t_start=index * scale_t, device=x.device,
                                               dtype=x.dtype, transformer_options=options)
        options[STATE_KEY] = state
        out = executor(x, timestep, context, clip_fea, time_dim_concat, options, **kwargs)
        return out[:, :, :frames] if guide is not None else out


def _hold_known(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``x`` with its first ``known.shape[2]`` latents' first ``known.shape[1]`` channels set to ``known`` (clean)."""
    channels, count = known.shape[1], known.shape[2]
    if known.ndim != 5 or channels > x.shape[1] or count > x.shape[2] or known.shape[3:] != x.shape[3:]:
        raise ValueError(f"known latents {tuple(known.shape)} do not fit the model input {tuple(x.shape)}")
    x = x.clone()
    x[:, :channels, :count] = known.to(device=x.device, dtype=x.dtype)
    return x


def _append_guide(x, timestep, guide, time_dim_concat, token_start):
    if time_dim_concat is not None or token_start:
        raise BMInputError("guide", "cannot be combined with a time_dim_concat or reference_latent conditioning.",
                           "use either the BM guide or the native concatenated reference, not both.")
    latent = guide.latent
    if latent.ndim != 5 or latent.shape[1:] != (x.shape[1], 1, *x.shape[3:]):
        raise BMInputError("guide", f"latent {tuple(latent.shape)} does not fit the window's latent {tuple(x.shape)}.",
                           "encode the reference image at the window's resolution (one latent frame).")
    latent = latent.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1, -1)
    frames = x.shape[2]
    if timestep.ndim == 1 and not guide.clean_timestep:
        return torch.cat([x, latent], dim=2), timestep
    per_frame = timestep.view(-1, 1).expand(x.shape[0], frames) if timestep.ndim == 1 else timestep
    extra = torch.zeros_like(per_frame[:, :1]) if guide.clean_timestep else per_frame[:, -1:]
    return torch.cat([x, latent], dim=2), torch.cat([per_frame, extra], dim=1)

