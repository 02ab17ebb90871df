"""Mel-Band RoFormer vocal model: checkpoint loading, speech/background separation, smoke checkpoint.

Network: ``MelBandRoformer`` of lucidrains' ``BS-RoFormer`` package, **pinned to 0.3.10**. That is
the version kijai's ComfyUI-MelBandRoFormer model file (via KimberleyJensen's
Mel-Band-Roformer-Vocal-Model) derives from: with the config below its state dict has exactly the
keys and shapes of ``MelBandRoformer_fp16.safetensors`` (Kijai/MelBandRoFormer_comfy), 684
tensors, 228.2 M parameters. From 0.4.0 on, every layer gains a leading (linear-attention)
transformer slot, so ``layers.i.0`` / ``layers.i.1`` shift to ``.1`` / ``.2``; 0.6+ adds
hyper-connections. Kijai's copy differs from 0.3.10 only in calling ``F.scaled_dot_product_attention``
directly instead of 0.3.10's ``Attend`` (no parameters, same maths).

Files live in ComfyUI's ``diffusion_models`` folder (kijai's convention, so existing downloads work
unchanged). Only safetensors are read. The hyper-parameters that shape tensors (width, depth,
heads, bands, stems, stereo) are read from the checkpoint and the STFT settings are the vocal
model's, so the reduced smoke checkpoint of :func:`smoke_state_dict` loads through the same path.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import BMInputError
from ..optional_deps import import_optional
from .audio_checks import fit_length, resample
from .separation import overlap_add

SAMPLE_RATE = 44100
STFT_HOP = 441
DOWNLOAD_HINT = ("download MelBandRoformer_fp16.safetensors from the Hugging Face repository "
                 "Kijai/MelBandRoFormer_comfy into ComfyUI/models/diffusion_models, then press R to refresh.")
REAL_CONFIG = {
    "dim": 384, "depth": 6, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
    "freq_transformer_depth": 1, "num_bands": 60, "dim_head": 64, "heads": 8, "mask_estimator_depth": 2,
}
FIXED_CONFIG = {
    "attn_dropout": 0.0, "ff_dropout": 0.0, "flash_attn": True, "dim_freqs_in": 1025, "sample_rate": SAMPLE_RATE,
    "stft_n_fft": 2048, "stft_hop_length": STFT_HOP, "stft_win_length": 2048, "stft_normalized": False,
    "multi_stft_resolution_loss_weight": 1.0, "multi_stft_resolutions_window_sizes": (4096, 2048, 1024, 512, 256),
    "multi_stft_hop_size": 147, "multi_stft_normalized": False,
}
SMOKE_CONFIG = dict(REAL_CONFIG, dim=32, depth=2, heads=2, dim_head=16)
FAMILY_KEYS = ("band_split.to_features.0.1.weight", "mask_estimators.0.to_freqs.0.0.0.weight",
               "layers.0.0.layers.0.0.to_qkv.weight", "layers.0.1.layers.0.0.to_gates.weight")


def _melband_class():
    module = import_optional("bs_roformer", "BS-RoFormer==0.3.10", "the Mel-Band RoFormer speech separator")
    return module.MelBandRoformer


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for key in keys if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def config_from_shapes(shapes: dict[str, tuple[int, ...]], input_name: str = "model_name") -> dict:
    """The shape-defining hyper-parameters of a Mel-Band RoFormer checkpoint from its tensor shapes.

    Args:
        shapes: tensor name -> shape (from the safetensors header; no data needed).

    Returns:
        keyword arguments for ``MelBandRoformer`` (``REAL_CONFIG`` keys).

    Raises:
        BMInputError: the keys are not those of a Mel-Band RoFormer (wrong model family), or the
            model has more than one stem (a multi-instrument model, not the vocal model).
    """
    missing = [key for key in FAMILY_KEYS if key not in shapes]
    if missing:
        sample = ", ".join(sorted(shapes)[:3])
        raise BMInputError(input_name, f"is not a Mel-Band RoFormer checkpoint (no '{missing[0]}'; it holds "
                           f"{len(shapes)} tensors such as {sample}).", "choose the Mel-Band RoFormer file: " + DOWNLOAD_HINT)
    keys = list(shapes)
    stems = _count(keys, r"mask_estimators\.(\d+)\.")
    if stems != 1:
        raise BMInputError(input_name, f"is a Mel-Band RoFormer with {stems} stems; speech separation needs the "
                           "one-stem vocal model.", "choose the vocal model: " + DOWNLOAD_HINT)
    heads, dim = shapes["layers.0.0.layers.0.0.to_gates.weight"]
    return {
        "dim": dim,
        "depth": _count(keys, r"layers\.(\d+)\."),
        "num_bands": _count(keys, r"band_split\.to_features\.(\d+)\."),
        "num_stems": stems,
        "time_transformer_depth": _count(keys, r"layers\.0\.0\.layers\.(\d+)\."),
        "freq_transformer_depth": _count(keys, r"layers\.0\.1\.layers\.(\d+)\."),
        "heads": heads,
        "dim_head": shapes["layers.0.0.layers.0.0.to_qkv.weight"][0] // (3 * heads),
        "mask_estimator_depth": _count(keys, r"mask_estimators\.0\.to_freqs\.0\.0\.(\d+)\.weight") // 2,
        # stereo doubles every band's input: the model decides it from the first band's width below
        "stereo": True,
    }


def build_model(config: dict) -> torch.nn.Module:
    """A ``MelBandRoformer`` (BS-RoFormer 0.3.10) with ``config`` + the vocal model's STFT settings, in eval mode."""
    return _melband_class()(**config, **FIXED_CONFIG).eval()


def load_state_dict_file(path: str | Path, input_name: str = "model_name") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a Mel-Band RoFormer safetensors file and infer its config (family checked on the header first).

    Raises:
        BMInputError: not a ``.safetensors`` file, unreadable/corrupt, or another model family.
    """
    from safetensors import safe_open

    path = Path(path)
    if path.suffix != ".safetensors":
        raise BMInputError(input_name, f"{path.name} is not a .safetensors file (pickled checkpoints are not loaded).",
                           DOWNLOAD_HINT)
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
            config = config_from_shapes(shapes, input_name)
            state = {key: handle.get_tensor(key) for key in shapes}
    except BMInputError:
        raise
    except Exception as error:  # safetensors raises several types for damaged files
        raise BMInputError(input_name, f"{path.name} cannot be read as safetensors ({error}).",
                           "the file is damaged or incomplete: " + DOWNLOAD_HINT) from error
    return state, config


def model_from_state_dict(state: dict[str, torch.Tensor], config: dict, name: str = "checkpoint",
                          input_name: str = "model_name") -> torch.nn.Module:
    """Build the network for ``config`` and load ``state`` strictly (fp32 parameters).

    Raises:
        BMInputError: the tensors do not fit the Mel-Band RoFormer layout (e.g. a BS-RoFormer file).
    """
    first = state["band_split.to_features.0.1.weight"].shape[1]
    for stereo in (True, False):
        with torch.device("meta"):
            probe = build_model(dict(config, stereo=stereo))
        if probe.state_dict()["band_split.to_features.0.1.weight"].shape[1] == first:
            config = dict(config, stereo=stereo)
            break
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        reason = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise BMInputError(input_name, f"{name} does not match the Mel-Band RoFormer vocal model's layout ({reason}).",
                           "BS-RoFormer and other separators are not supported: " + DOWNLOAD_HINT) from None
    return model.float()


def smoke_state_dict(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A small, untrained Mel-Band RoFormer checkpoint in the exact key layout of the real file.

    Same tensor names and patterns as ``MelBandRoformer_fp16.safetensors`` (60 bands, stereo, one
    stem, one time and one frequency transformer per layer, 2-layer mask MLPs), with reduced
    width 32, depth 2, 2 heads of 16; fp16 like the real file; PyTorch's default initialisation
    from ``seed`` (rotary frequencies are the standard constants). :func:`load_state_dict_file`
    and the BM Separate Speech node accept it; its output is not speech separation.

    Returns:
        ``(state_dict, metadata)``; metadata says the weights are untrained.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(SMOKE_CONFIG)
    finally:
        torch.random.set_rng_state(generator_state)
    state = {key: value.detach().to(torch.float16).contiguous() for key, value in model.state_dict().items()}
    metadata = {
        "bm_smoke": "untrained",
        "bm_smoke_layout": "Mel-Band RoFormer vocal model (Kijai/MelBandRoFormer_comfy key layout), reduced: "
                           + ", ".join(f"{k}={v}" for k, v in SMOKE_CONFIG.items()),
        "bm_smoke_seed": str(seed),
    }
    return state, metadata


def separate_speech(model: torch.nn.Module, waveform: torch.Tensor, sample_rate: int, chunk_s: float = 8.0,
                    overlaps: int = 2, device: torch.device | str = "cpu",
                    on_chunk=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a recording into speech (the vocal stem) and background (everything else).

    Args:
        model: from :func:`model_from_state_dict`, already on ``device``.
        waveform: float32 ``[C, T]``, C = 1 or 2, any sample rate (resampled to 44.1 kHz for the
            network; a mono input is duplicated to stereo for a stereo model).
        chunk_s: seconds per chunk (rounded to whole STFT hops; 8 s in the reference inference).
        overlaps: chunks covering each sample (2 in the reference inference).
        on_chunk: ``on_chunk(done, total)`` after each chunk.

    Returns:
        ``(speech, background)``, each float32 ``[C, T]`` at ``sample_rate``; ``speech + background``
        equals the input exactly (background is the residual, as in the reference inference).
    """
    channels, length = waveform.shape
    stereo = model.audio_channels == 2
    net_input = waveform.repeat(2, 1) if stereo and channels == 1 else waveform
    if not stereo and channels == 2:
        net_input = waveform.mean(dim=0, keepdim=True)
    net_input = resample(net_input, sample_rate, SAMPLE_RATE)
    chunk = max(1, round(chunk_s * SAMPLE_RATE / STFT_HOP)) * STFT_HOP

    def process(part: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            stem = model(part.unsqueeze(0).to(device))[0]
        return fit_length(stem.float().cpu(), chunk)

    speech = overlap_add(process, net_input, chunk, overlaps, on_chunk)
    speech = fit_length(resample(speech, SAMPLE_RATE, sample_rate), length)
    if speech.shape[0] != channels:
        speech = speech.mean(dim=0, keepdim=True).expand(channels, -1).contiguous()
    return speech, waveform - speech
