"""Training samples and sets: one clip's video latents, dual-stream features, reference and text, as data.

A :class:`TrainingSample` is what the training step reads: everything expensive (VAE encoding, wav2vec2,
text encoding) is done once when the sample is made. A :class:`TrainingSet` is a list of samples of
one model family (same latent channels, text width and audio encoder size); clips of different
lengths and sizes mix freely (the trainer takes one clip per forward pass, like ComfyUI's
``TrainLoraNode`` does for multi-resolution data), so buckets need no padding.

A set is saved as one safetensors file (``save_set`` / ``load_set``): tensors ``{i}.latents``,
``{i}.reference``, ``{i}.talk``, ``{i}.listen``, ``{i}.talk_activity``, ``{i}.listen_activity``,
``{i}.text`` per sample, and JSON metadata (format, per-sample fps, feature order, encoder, source).
Features are stored in float16 (wav2vec2 hidden states; halves the file), latents in float32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..audio.duplex_audio import DuplexAudio
from ..errors import BMInputError
from ..timebase import frame_count, latent_count

SET_FORMAT = "beyond_monologue.train.set"
SET_VERSION = "1"
FEATURE_DTYPE = torch.float16


@dataclass(frozen=True)
class TrainingSample:
    """One clip, ready for the training step.

    Attributes:
        latents: float32 ``[C, T, h, w]``: the clip's video in the VAE's latent space (as ComfyUI's
            VAE Encode gives it, before ``process_latent_in``); ``T`` latent frames = ``4(T-1)+1``
            video frames.
        reference: float32 ``[C, 1, h, w]``: the reference frame in the same space (the portrait
            BM Sampler gets at inference; the guide of the ``past_end`` position).
        audio: the talk/listen features of the clip's ``4(T-1)+1`` frames.
        text: float32 ``[L, D]``: the prompt's cross-attention context (CONDITIONING tensor).
        source: where the clip came from (file name, times), for logs and manifests.
    """

    latents: torch.Tensor
    reference: torch.Tensor
    audio: DuplexAudio
    text: torch.Tensor
    source: str = ""

    def __post_init__(self):
        if self.latents.ndim != 4 or self.reference.ndim != 4 or self.reference.shape[1] != 1:
            raise BMInputError("sample", f"latents {tuple(self.latents.shape)} / reference {tuple(self.reference.shape)} "
                               "must be [C, T, h, w] / [C, 1, h, w].", "make the sample with BM Training Sample.")
        if self.reference.shape[0] != self.latents.shape[0] or self.reference.shape[2:] != self.latents.shape[2:]:
            raise BMInputError("reference", f"latent {tuple(self.reference.shape)} does not match the clip's "
                               f"{tuple(self.latents.shape)} (channels and size).",
                               "resize the reference frame to the clip's size before encoding it.")
        if self.audio.num_latents != self.latents.shape[1]:
            raise BMInputError("audio", f"covers {self.audio.num_latents} latent frames ({self.audio.num_frames} frames); "
                               f"the video has {self.latents.shape[1]} ({frame_count(self.latents.shape[1])} frames).",
                               "encode the audio with the clip's frame count (BM Training Sample does).")
        if self.text.ndim != 2:
            raise BMInputError("positive", f"text context {tuple(self.text.shape)} is not [tokens, width].",
                               "connect a CONDITIONING from CLIP Text Encode.")

    @property
    def num_latents(self) -> int:
        """Latent frames of the clip."""
        return self.latents.shape[1]

    @property
    def duration_s(self) -> float:
        """Seconds of audio (and video) in the clip."""
        return self.audio.duration_s


@dataclass(frozen=True)
class TrainingSet:
    """Samples of one model family (checked on append)."""

    samples: tuple[TrainingSample, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.samples)

    def __str__(self) -> str:
        """One line for Preview Any: clips, hours of audio, latent shapes."""
        shapes = sorted({tuple(s.latents.shape) for s in self.samples})
        return f"TrainingSet: {len(self)} clips, {self.audio_hours * 60:.1f} min of audio, latent shapes {shapes}"

    @property
    def audio_hours(self) -> float:
        """Hours of audio over all samples."""
        return sum(s.duration_s for s in self.samples) / 3600.0

    def signature(self) -> dict[str, object]:
        """What every sample must share: latent channels, text width, audio layers/width, fps, windows."""
        if not self.samples:
            return {}
        first = self.samples[0]
        return family_signature(first)

    def extended(self, samples) -> TrainingSet:
        """A new set with ``samples`` appended.

        Raises:
            BMInputError: a sample of another model family (latent channels, text width, audio
                encoder size, feature order or context) than the set's.
        """
        out = list(self.samples)
        wanted = self.signature()
        for sample in samples:
            found = family_signature(sample)
            if wanted and found != wanted:
                diff = ", ".join(f"{k} {found[k]} vs {wanted[k]}" for k in wanted if found[k] != wanted[k])
                raise BMInputError("sample", f"does not fit the set ({diff}).",
                                   "make every sample with the same VAE, text encoder, audio encoder and settings.")
            wanted = wanted or found
            out.append(sample)
        return TrainingSet(tuple(out))


def family_signature(sample: TrainingSample) -> dict[str, object]:
    """The model-family facts of one sample (see :meth:`TrainingSet.signature`)."""
    audio = sample.audio
    return {"latent_channels": sample.latents.shape[0], "text_dim": sample.text.shape[1],
            "audio_layers": audio.talk.shape[1], "audio_dim": audio.talk.shape[2],
            "feature_order": audio.feature_order, "context_frames": audio.context_frames}


def check_clip(frames: int, audio_frames: int | None = None, min_latents: int = 2) -> int:
    """Latent frames of a clip of ``frames`` video frames; ``audio_frames`` (if known) must match.

    Raises:
        BMInputError: fewer than ``min_latents`` latent frames, or audio of another length.
    """
    latents = latent_count(frames) if frames >= 1 else 0
    if latents < min_latents:
        raise BMInputError("images", f"has {frames} frames: fewer than {min_latents} latent frames "
                           f"({frame_count(min_latents)} frames).", f"use clips of at least {frame_count(min_latents)} frames.")
    if audio_frames is not None and audio_frames != frames:
        raise BMInputError("talk", f"lasts {audio_frames} frames but the video has {frames}.",
                           "cut the audio and the frames from the same span (Get Video Components does).")
    return latents


def save_set(training_set: TrainingSet, path: str | Path) -> None:
    """Write ``training_set`` as one safetensors file (see the module docstring).

    Raises:
        BMInputError: an empty set.
    """
    if not len(training_set):
        raise BMInputError("training_set", "is empty.", "append at least one sample (BM Training Sample).")
    tensors, items = {}, []
    for i, s in enumerate(training_set.samples):
        a = s.audio
        tensors.update({f"{i}.latents": s.latents.float(), f"{i}.reference": s.reference.float(),
                        f"{i}.talk": a.talk.to(FEATURE_DTYPE), f"{i}.listen": a.listen.to(FEATURE_DTYPE),
                        f"{i}.talk_activity": a.talk_activity.float(), f"{i}.listen_activity": a.listen_activity.float(),
                        f"{i}.text": s.text.float()})
        items.append({"fps": a.fps, "feature_order": a.feature_order, "encoder": a.encoder,
                      "context_frames": a.context_frames, "source": s.source})
    meta = {"bm_format": SET_FORMAT, "bm_format_version": SET_VERSION, "bm_samples": json.dumps(items)}
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(path), metadata=meta)  # a sample may repeat


def load_set(path: str | Path, label: str | None = None) -> TrainingSet:
    """Read a set written by :func:`save_set` (features come back as float32).

    Raises:
        BMInputError: missing, unreadable or foreign file, or another format version.
    """
    path = Path(path)
    label = label or f"training set {path.name!r}"
    fix = "pick a file written by BM Save Training Set (models/bm_training_sets)."
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("bm_format") != SET_FORMAT:
                raise BMInputError(label, "is not a Beyond Monologue training set.", fix)
            if meta.get("bm_format_version") != SET_VERSION:
                raise BMInputError(label, f"has set format {meta.get('bm_format_version')!r}; this pack reads {SET_VERSION}.",
                                   "re-save the set with this pack.")
            items = json.loads(meta["bm_samples"])
            samples = []
            for i, item in enumerate(items):
                get = lambda name, i=i: f.get_tensor(f"{i}.{name}")  # noqa: E731
                audio = DuplexAudio(get("talk").float(), get("listen").float(), get("talk_activity"),
                                    get("listen_activity"), fps=float(item["fps"]), feature_order=item["feature_order"],
                                    encoder=item["encoder"], context_frames=int(item["context_frames"]))
                samples.append(TrainingSample(get("latents"), get("reference"), audio, get("text"), item["source"]))
    except (SafetensorError, OSError, KeyError, ValueError) as err:
        raise BMInputError(label, f"cannot be read ({type(err).__name__}: {err}).", fix) from None
    return TrainingSet().extended(samples)
