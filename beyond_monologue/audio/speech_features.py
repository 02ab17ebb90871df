"""Dual-stream speech features: wav2vec 2.0 hidden states of the talk and listen streams per video frame.

Each stream is brought to 16 kHz mono, loudness-normalised to -23 LUFS (ITU-R BS.1770-4 with
``torchaudio.functional.loudness``; silent streams are left as they are, like MeiGen's
``loudness_norm`` with pyloudnorm), padded with silence or trimmed to exactly ``F / fps`` seconds
for ``F = 4n + 1`` video frames, and encoded with all hidden layers of a wav2vec 2.0 model.

Two orders bring the 50 Hz encoder to the video frame rate (both linear, ``align_corners=True``):

* ``"conv_features"`` -- the original MultiTalk/InfiniteTalk order
  (``src/audio_analysis/wav2vec2.py``: ``feature_extractor`` -> interpolate to the frame count ->
  ``feature_projection`` -> transformer). **The adapter expects this order**: the public
  InfiniteTalk/MultiTalk audio adapters were trained on it, and ``DuplexAudio.feature_order``
  defaults to it.
* ``"hidden_states"`` -- ComfyUI's native order (``WanInfiniteTalkToVideo``: run the whole
  model at 50 Hz, then interpolate every layer's hidden states to the frame rate).

The model is ComfyUI's own ``comfy.audio_encoders.wav2vec2.Wav2Vec2Model`` (or anything with a
``feature_extractor`` submodule and a ``forward(x [B, C, T]) -> (last, all_layers)``). The
conv-features order runs ComfyUI's own forward with a hook that resamples the CNN features,
so no part of wav2vec 2.0 is re-implemented here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import BMInputError
from ..timebase import VAE_TIME_STRIDE, is_valid_frame_count
from .audio_checks import fit_length, mono_at
from .duplex_audio import FEATURE_ORDERS, DuplexAudio
from .vad import frame_activity

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0
SILENT_LUFS = -70.0  # BS.1770 absolute gate: quieter audio has no measurable loudness
MIN_FRAMES = 5  # latent frame 0 + one group of 4: the shortest clip with a latent-frame window


def frames_for_duration(duration_s: float, fps: float) -> int:
    """The smallest ``4n + 1`` frame count whose duration ``F / fps`` covers ``duration_s`` (at least 5).

    The last frames may then hold up to 3 frames of padded silence (marked inactive).
    """
    frames = max(MIN_FRAMES, math.ceil(duration_s * fps - 1e-6))
    return frames + (-(frames - 1)) % VAE_TIME_STRIDE


def samples_for_frames(num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Audio samples spanned by ``num_frames`` video frames: ``round(F / fps * sample_rate)``."""
    return round(num_frames / fps * sample_rate)


def loudness_lufs(wav16k: torch.Tensor) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4) of 16 kHz mono ``[T]``; ``-inf`` for silence or < 0.4 s."""
    if wav16k.shape[-1] < int(0.4 * SAMPLE_RATE) or float(wav16k.abs().max()) == 0.0:
        return -math.inf
    import torchaudio

    return float(torchaudio.functional.loudness(wav16k.view(1, -1).double(), SAMPLE_RATE))


def loudness_normalise(wav16k: torch.Tensor, target_lufs: float = TARGET_LUFS) -> torch.Tensor:
    """Gain ``[T]`` 16 kHz mono audio to ``target_lufs``; audio without measurable loudness is returned unchanged."""
    lufs = loudness_lufs(wav16k)
    if not math.isfinite(lufs) or lufs < SILENT_LUFS:
        return wav16k
    return wav16k * (10.0 ** ((target_lufs - lufs) / 20.0))


def _to_frames(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Linear interpolation (``align_corners=True``) of ``[B, T, ...]`` along T to ``num_frames``."""
    batch, length = features.shape[:2]
    rest = features.shape[2:]
    flat = features.reshape(batch, length, -1).transpose(1, 2)
    out = F.interpolate(flat.float(), size=num_frames, mode="linear", align_corners=True)
    return out.transpose(1, 2).reshape(batch, num_frames, *rest)


def wav2vec2_frame_features(model: torch.nn.Module, wav16k: torch.Tensor, num_frames: int,
                            order: str = "conv_features", device: torch.device | str = "cpu") -> torch.Tensor:
    """All-layer wav2vec 2.0 hidden states of one stream, one row per video frame.

    Args:
        model: ComfyUI's ``Wav2Vec2Model`` (``forward(x [B, C, T]) -> (last, all_layers)``, where
            ``all_layers[0]`` is the pre-transformer embedding and ``all_layers[1:]`` the L layers).
        wav16k: float32 ``[T]`` at 16 kHz spanning exactly the clip (see :func:`fit_length`).
        num_frames: video frames ``F``.
        order: ``"conv_features"`` or ``"hidden_states"`` (module doc).
        device: where the model runs.

    Returns:
        float32 ``[F, L, D]`` on the CPU (12 x 768 for a base model).
    """
    if order not in FEATURE_ORDERS:
        raise BMInputError("feature_order", f"is {order!r}.", f"choose one of {', '.join(FEATURE_ORDERS)}.")
    x = wav16k.view(1, 1, -1).to(device=device, dtype=torch.float32)
    hook = None
    if order == "conv_features":
        hook = model.feature_extractor.register_forward_hook(
            lambda _module, _inputs, output: _to_frames(output, num_frames).to(output.dtype))
    try:
        with torch.inference_mode():
            _, layers = model(x)
    finally:
        if hook is not None:
            hook.remove()
    hidden = torch.stack(list(layers[1:]), dim=2)  # [1, T', L, D]
    if order == "hidden_states":
        hidden = _to_frames(hidden, num_frames)
    return hidden[0].float().cpu()


def prepare_streams(talk16k: torch.Tensor, listen16k: torch.Tensor, fps: float,
                    num_frames: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Bring both 16 kHz mono streams to one clip length and loudness-normalise each.

    Args:
        talk16k, listen16k: float32 ``[T1]``, ``[T2]`` at 16 kHz. Streams of different lengths
            are allowed: the clip is as long as the longer one, the shorter is padded with silence.
        fps: video frame rate.
        num_frames: ``F`` (``4n + 1``), or 0 for :func:`frames_for_duration` of the longer stream.
            A given ``F`` pads both streams with silence or trims them to ``F / fps`` seconds.

    Returns:
        ``(talk [S], listen [S], F)`` with ``S = samples_for_frames(F, fps)``.

    Raises:
        BMInputError: ``num_frames`` not 4n+1; automatic length on audio shorter than
            5 frames; both streams silent.
    """
    duration = max(talk16k.shape[-1], listen16k.shape[-1]) / SAMPLE_RATE
    if num_frames == 0:
        if duration < MIN_FRAMES / fps:
            raise BMInputError("talk", f"the streams are {duration:.2f} s long; at least {MIN_FRAMES / fps:.2f} s "
                               f"({MIN_FRAMES} video frames at {fps:g} fps: two latent frames) are needed.",
                               "use a longer clip, or set 'length' to 5 or more frames to pad it with silence.")
        num_frames = frames_for_duration(duration, fps)
    elif not is_valid_frame_count(num_frames):
        raise BMInputError("length", f"is {num_frames} frames; Wan's VAE needs 4n+1 frames.",
                           "use 0 (match the audio) or a value like 81, 121, 161.")
    samples = samples_for_frames(num_frames, fps)
    streams = [loudness_normalise(fit_length(wav, samples)) for wav in (talk16k, listen16k)]
    if all(float(wav.abs().max()) < 1e-4 for wav in streams):
        raise BMInputError("talk, listen", "both streams are silent over the clip.",
                           "connect the avatar's speech to 'talk' and the other person's to 'listen' "
                           "(e.g. the outputs of BM Split Conversation).")
    return streams[0], streams[1], num_frames


def encode_duplex(model: torch.nn.Module, talk: torch.Tensor, talk_rate: int, listen: torch.Tensor, listen_rate: int,
                  fps: float = 25.0, num_frames: int = 0, order: str = "conv_features",
                  device: torch.device | str = "cpu", encoder_name: str = "wav2vec2",
                  on_progress=None) -> DuplexAudio:
    """Encode the talk and listen streams of one avatar into a :class:`DuplexAudio`.

    Args:
        model: wav2vec 2.0 (see :func:`wav2vec2_frame_features`), already on ``device``.
        talk, listen: float ``[C, T]`` or ``[T]`` at ``talk_rate`` / ``listen_rate`` Hz (any rates;
            channels are averaged).
        fps: video frame rate.
        num_frames: ``4n + 1`` frames, or 0 to cover the longer stream (see :func:`prepare_streams`).
        order: ``"conv_features"`` (what the adapter expects) or ``"hidden_states"``.
        encoder_name: stored in ``DuplexAudio.encoder``.
        on_progress: called as ``on_progress(done, 4)`` after each of the 4 steps (VAD and encoder,
            per stream) and every 30 s of audio inside VAD: progress and interruption.

    Returns:
        ``DuplexAudio`` with talk/listen ``[F, L, D]`` float32, activities ``[F]`` (Silero VAD
        probability at each frame centre), ``fps``, ``feature_order=order``.
    """
    talk16k, listen16k, frames = prepare_streams(mono_at(talk, talk_rate, SAMPLE_RATE),
                                                 mono_at(listen, listen_rate, SAMPLE_RATE), fps, num_frames)
    check = (lambda: on_progress(len(results), 4)) if on_progress else None
    steps = [lambda wav: frame_activity(wav, SAMPLE_RATE, frames, fps, check),
             lambda wav: wav2vec2_frame_features(model, wav, frames, order, device)]
    results = []
    for wav in (talk16k, listen16k):
        for step in steps:
            results.append(step(wav))
            if on_progress:
                on_progress(len(results), 4)
    talk_activity, talk_features, listen_activity, listen_features = results
    return DuplexAudio(talk=talk_features, listen=listen_features, talk_activity=talk_activity,
                       listen_activity=listen_activity, fps=float(fps), feature_order=order, encoder=encoder_name)


def encode_with_audio_encoder(audio_encoder, talk: torch.Tensor, talk_rate: int, listen: torch.Tensor, listen_rate: int,
                              fps: float, num_frames: int, order: str = "conv_features",
                              on_progress=None) -> DuplexAudio:
    """:func:`encode_duplex` with a ComfyUI AUDIO_ENCODER (Load Audio Encoder's value), loaded by ComfyUI's model management.

    BM Dual Stream Encode, BM Training Sample and ``python -m beyond_monologue.train prepare`` all encode
    through here. ``encoder`` of the result is ``"wav2vec2 {layers}x{width}"``.

    Raises:
        BMInputError: (``audio_encoder``) the encoder is not ComfyUI's wav2vec2; and see :func:`encode_duplex`.
    """
    import comfy.model_management
    from comfy.audio_encoders.wav2vec2 import Wav2Vec2Model

    model = getattr(audio_encoder, "model", None)
    if not isinstance(model, Wav2Vec2Model):
        raise BMInputError("audio_encoder", f"is {type(model).__name__}, not wav2vec2.",
                           "load wav2vec2-chinese-base_fp16.safetensors (or wav2vec2-base-960h) with Load Audio Encoder.")
    comfy.model_management.load_model_gpu(audio_encoder.patcher)
    layers, dim = len(model.encoder.layers), model.encoder.layer_norm.weight.shape[0]
    return encode_duplex(model, talk, talk_rate, listen, listen_rate, fps=fps, num_frames=num_frames, order=order,
                         device=audio_encoder.load_device, encoder_name=f"wav2vec2 {layers}x{dim}", on_progress=on_progress)
