"""One clip (frames, both speech streams, a reference frame, the prompt) -> a :class:`TrainingSample`.

Everything is encoded with ComfyUI's own models: the video and the reference with the native VAE
(``VAE.encode``, the Wan VAE's causal video encoding), the audio beforehand with ComfyUI's wav2vec2
into a :class:`~beyond_monologue.audio.duplex_audio.DuplexAudio` (BM Dual Stream Encode's code path).
"""

from __future__ import annotations

import torch

from ..audio.audio_checks import check_audio, duration_s
from ..audio.duplex_audio import DuplexAudio
from ..errors import BMInputError
from ..sampling.reference import fit_image
from ..timebase import is_valid_frame_count
from .samples import TrainingSample, check_clip

SILENCE = 1e-4  # peak amplitude below which a stream counts as digital silence
AUDIO_TOLERANCE_S = 0.25  # the pack's choice: containers pad audio (an AAC frame is 64 ms at 16 kHz) or cut it short


def usable_frames(frames: int) -> int:
    """The largest ``4n + 1`` frame count not above ``frames`` (Wan's VAE encodes 4n+1 frames)."""
    return frames - (frames - 1) % 4 if frames >= 1 else 0


def check_clip_audio(talk: object, listen: object, frames: int, fps: float) -> None:
    """The clip's audio must cover its frames and hold some sound.

    Raises:
        BMInputError: a bad AUDIO value, audio whose duration differs from ``frames / fps`` by more
            than :data:`AUDIO_TOLERANCE_S` plus one frame (naming the stream; within that the audio
            is cut or padded to the frames), or both streams digitally silent.
    """
    video_s = frames / fps
    peaks = []
    for name, audio in (("talk", talk), ("listen", listen)):
        wave, rate = check_audio(audio, name)
        seconds = duration_s(wave, rate)
        if abs(seconds - video_s) > AUDIO_TOLERANCE_S + 1.0 / fps:
            raise BMInputError(name, f"lasts {seconds:.3f} s but the frames last {video_s:.3f} s ({frames} at {fps:g} fps).",
                               "take the frames and the audio from the same span (Get Video Components does), "
                               "or set fps to the video's frame rate.")
        peaks.append(float(wave.abs().max()))
    if max(peaks) < SILENCE:
        raise BMInputError("talk", "and listen are both silent: the clip has nothing to learn from.",
                           "use clips in which at least one person speaks.")


def make_sample(vae, images: torch.Tensor, reference: torch.Tensor, duplex: DuplexAudio, text: torch.Tensor,
                source: str = "") -> TrainingSample:
    """Encode one clip into a :class:`TrainingSample`.

    Args:
        vae: ComfyUI VAE of the model to train (Wan2.2 VAE for Wan2.2-TI2V-5B).
        images: IMAGE ``[F, H, W, C]`` frames, ``F = 4n + 1`` (float 0..1).
        reference: IMAGE; its first frame is scaled and centre-cropped to ``W x H``.
        duplex: talk/listen features of the same ``F`` frames.
        text: ``[L, D]`` or ``[1, L, D]`` cross-attention context of the prompt.
        source: a description for logs and manifests.

    Raises:
        BMInputError: not an IMAGE, a frame count that is not 4n+1 or shorter than two latent frames,
            audio of another frame count, or a VAE that does not encode video (an image VAE).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] < 3:
        raise BMInputError("images", f"is {getattr(images, 'shape', type(images).__name__)}, not IMAGE frames [F, H, W, 3].",
                           "connect the frames of Get Video Components (or Load Video).")
    frames, height, width = images.shape[0], images.shape[1], images.shape[2]
    if not is_valid_frame_count(frames):
        raise BMInputError("images", f"has {frames} frames; 4n+1 are needed.", f"use {usable_frames(frames)} frames.")
    check_clip(frames, duplex.num_frames)
    with torch.inference_mode():
        latents = vae.encode(images[:, :, :, :3])
        ref = vae.encode(fit_image(reference, width, height))
    if latents.ndim != 5 or ref.ndim != 5:
        raise BMInputError("vae", f"gave {latents.ndim - 1}-D latents, not video latents [C, T, h, w].",
                           "load the Wan VAE of the model (wan2.2_vae for Wan2.2-TI2V-5B) with Load VAE.")
    text = text[0] if text.ndim == 3 else text
    return TrainingSample(latents[0].float().cpu().clone(), ref[0].float().cpu().clone(), duplex,
                          text.float().cpu().clone(), source)
