"""Reading rendered videos and their audio files for the evaluation command (PyAV, which ComfyUI uses).

A folder of results is read as: every ``*.mp4``/``*.mkv``/``*.webm``/``*.mov`` is a video; beside
``NAME.mp4`` the optional ``NAME.talk.wav`` (the avatar's own speech; default: the video's own
soundtrack), ``NAME.listen.wav`` (the other person's speech) and ``NAME.reference.png``/``.jpg``
(the portrait) are used; any audio format PyAV decodes is accepted for the ``.wav`` names' stems too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from .avatar_metrics import Stream

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_RATE = 16000  # everything the metrics read is at 16 kHz (SyncNet, Silero VAD)


@dataclass
class VideoJob:
    """One video of a results folder and the files found beside it (None where absent)."""

    video: Path
    talk: Path | None
    listen: Path | None
    reference: Path | None


def _beside(video: Path, tag: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((p for s in suffixes if (p := video.with_name(f"{video.stem}.{tag}{s}")).is_file()), None)


def find_jobs(folder: Path) -> list[VideoJob]:
    """The videos of ``folder`` (sorted by name) with their talk/listen/reference files."""
    videos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    return [VideoJob(v, _beside(v, "talk", AUDIO_SUFFIXES), _beside(v, "listen", AUDIO_SUFFIXES),
                     _beside(v, "reference", IMAGE_SUFFIXES)) for v in videos]


def read_audio(path: Path, stream_index: int = 0) -> Stream | None:
    """Mono float audio of a file's first audio stream at 16 kHz (PyAV's resampler); None without one."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        chunks = []
        for frame in container.decode(audio=stream_index):
            chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return Stream(torch.from_numpy(samples.astype(np.float32))[None], AUDIO_RATE)


def read_frames(path: Path) -> tuple[torch.Tensor, float]:
    """``([T, H, W, 3] float32 RGB 0..1, fps)`` of a video file's first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        return torch.zeros(0, 1, 1, 3), fps
    return torch.from_numpy(np.stack(frames)).float() / 255, fps


def read_image(path: Path) -> torch.Tensor:
    """``[H, W, 3]`` float32 RGB 0..1."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).float() / 255
