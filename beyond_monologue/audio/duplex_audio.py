"""``BM_DUPLEX_AUDIO``: both speech streams of one avatar, encoded and aligned to video frames.

Produced by the ``BMDualStreamEncode`` node, consumed by the adapter (Audio Q-Formers) and the
sampler. The features are per *video frame*; latent-frame windows are cut on demand with
:meth:`DuplexAudio.latent_windows` so that a long video can be sampled window by window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BMInputError
from ..timebase import DEFAULT_AUDIO_CONTEXT_FRAMES, audio_window_frame_indices, is_valid_frame_count, latent_count

STREAMS = ("talk", "listen")
FEATURE_ORDERS = ("conv_features", "hidden_states")


@dataclass(frozen=True)
class DuplexAudio:
    """Encoded talk and listen streams of one avatar.

    Attributes:
        talk: float32 ``[F, L, D]``: the avatar's own speech, encoder hidden states of all
            ``L`` transformer layers (wav2vec2 ``hidden_states[1:]``: 12 x 768 for a base model),
            one row per video frame. ``F = 4n + 1``.
        listen: float32 ``[F, L, D]``: the interlocutor's speech, same layout.
        talk_activity: float32 ``[F]`` in 0..1: voice activity of the talk stream per frame.
        listen_activity: float32 ``[F]`` in 0..1: voice activity of the listen stream per frame.
        fps: video frame rate the features were aligned to (frames per second).
        feature_order: how 50 Hz encoder output was brought to ``fps``: ``"conv_features"``
            (InfiniteTalk/MultiTalk original: interpolate the CNN features before the
            transformer) or ``"hidden_states"`` (ComfyUI native: interpolate every layer's
            hidden states after it).
        encoder: a short description of the audio encoder (for logs and checks).
        context_frames: frames of audio context on each side of a latent's own frames.
    """

    talk: torch.Tensor
    listen: torch.Tensor
    talk_activity: torch.Tensor
    listen_activity: torch.Tensor
    fps: float
    feature_order: str = "conv_features"
    encoder: str = ""
    context_frames: int = DEFAULT_AUDIO_CONTEXT_FRAMES

    def __post_init__(self):
        if self.talk.shape != self.listen.shape or self.talk.ndim != 3:
            raise BMInputError("audio", f"talk {tuple(self.talk.shape)} and listen {tuple(self.listen.shape)} "
                               "features must both be [frames, layers, dim].", "encode both streams with the same encoder.")
        frames = self.talk.shape[0]
        if not is_valid_frame_count(frames):
            raise BMInputError("audio", f"holds {frames} frames; 4n+1 are needed.", "re-encode with BM Dual Stream Encode.")
        if self.talk_activity.shape != (frames,) or self.listen_activity.shape != (frames,):
            raise BMInputError("audio", "activity masks must be [frames].", "re-encode with BM Dual Stream Encode.")
        if self.feature_order not in FEATURE_ORDERS:
            raise BMInputError("audio", f"feature_order {self.feature_order!r} is unknown.", f"use one of {FEATURE_ORDERS}.")

    @property
    def num_frames(self) -> int:
        """Video frames covered (``4n + 1``)."""
        return self.talk.shape[0]

    @property
    def num_latents(self) -> int:
        """Latent frames covered (``n + 1``)."""
        return latent_count(self.num_frames)

    @property
    def duration_s(self) -> float:
        """Seconds covered: ``num_frames / fps``."""
        return self.num_frames / self.fps

    def __str__(self) -> str:
        """One-line summary (what ComfyUI's Preview Any shows for a ``BM_DUPLEX_AUDIO`` socket)."""
        frames, layers, dim = self.talk.shape
        return (f"DuplexAudio: {frames} frames ({self.num_latents} latent frames, {self.duration_s:.2f} s at "
                f"{self.fps:g} fps), {layers} layers x {dim}, order {self.feature_order}, encoder {self.encoder or '?'}, "
                f"talk active {float(self.talk_activity.mean()):.0%}, listen active {float(self.listen_activity.mean()):.0%}")

    def stream(self, name: str) -> torch.Tensor:
        """``talk`` or ``listen`` features ``[F, L, D]``."""
        if name not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, not {name!r}")
        return self.talk if name == "talk" else self.listen

    def latent_windows(self, name: str, first_latent: int = 0, num_latents: int | None = None,
                       clip_start: bool = False, padding: str = "clamp") -> tuple[torch.Tensor | None, torch.Tensor]:
        """Audio windows of a run of latent frames of one stream.

        Args:
            name: ``"talk"`` or ``"listen"``.
            first_latent: first latent of the run, on the whole stream's clock.
            num_latents: latents in the run (default: to the end of the stream).
            clip_start / padding: see :func:`beyond_monologue.timebase.audio_window_frame_indices`;
                with ``padding="mirror"`` the run may reach past the last latent (a full last
                window over audio mirrored at its end).

        Returns:
            ``(first, rest)``: ``first`` float32 ``[1 + 2c, L, D]`` for latent 0 (or the run's first
            latent with ``clip_start``; None when the run starts later), ``rest`` float32
            ``[n, 4 + 2c, L, D]`` for the other latents; ``c`` = ``context_frames``. Frames beyond
            the stream's ends repeat the edge frame (``"clamp"``) or mirror the stream (``"mirror"``).

        Raises:
            ValueError: latents outside the stream (past its end only with ``padding="mirror"``).
        """
        if num_latents is None:
            num_latents = self.num_latents - first_latent
        past_end = first_latent + num_latents > self.num_latents and padding != "mirror"
        if first_latent < 0 or num_latents < 1 or past_end:
            raise ValueError(f"latents {first_latent}..{first_latent + num_latents - 1} are outside 0..{self.num_latents - 1}")
        features = self.stream(name)
        first_idx, rest_idx = audio_window_frame_indices(num_latents, self.num_frames, self.context_frames, first_latent,
                                                         clip_start, padding)
        first = features[first_idx] if first_idx is not None else None
        return first, features[rest_idx]
