"""Reading a folder of conversation videos for ``prepare``: the videos, the files beside them, their sound and frames.

A folder is searched recursively; every ``*.mp4`` / ``*.mkv`` / ``*.webm`` / ``*.mov`` / ``*.avi`` is a
video (sorted by relative path). Beside ``NAME.mp4`` the optional files are:

* ``NAME.rttm``: the speakers' turns (RTTM, as pyannote writes it; the plain ``start end speaker``
  lines of BM Split Conversation are accepted too) -> turns split;
* ``NAME.conversation.wav`` (or ``.flac`` / ``.mp3`` / ``.m4a`` / ``.ogg``): a two-channel recording of
  the same conversation, one speaker per channel, starting with the video -> stereo split; it replaces
  the video's own soundtrack.

Decoding is PyAV's (the library ComfyUI's own video nodes use). Frames are read as a stream of
``frames_per_clip`` windows at the training frame rate (the nearest source frame to each output
frame time, as ``ffmpeg -r`` does; source frame times are ``index / average rate``, so a
variable-frame-rate video is treated as constant-rate), so a long video never has to fit in memory. The soundtrack is
taken to start with the first frame (container start-time offsets and encoder delay are not applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
AUDIO_RATE = 16000  # what the split, Silero VAD and wav2vec2 read


@dataclass(frozen=True)
class VideoJob:
    """One video of the input folder.

    Attributes:
        video: the video file.
        name: its path relative to the input folder, without the suffix, ``/``-separated (names the
            shard and the done marker).
        rttm: ``NAME.rttm`` beside it, or None.
        conversation: ``NAME.conversation.<audio suffix>`` beside it, or None.
    """

    video: Path
    name: str
    rttm: Path | None
    conversation: Path | None


def find_videos(folder: Path) -> list[VideoJob]:
    """Every video under ``folder`` (recursively, sorted by relative path) with its beside files."""
    folder = Path(folder)
    jobs = []
    for video in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
        rel = video.relative_to(folder).with_suffix("")
        rttm = video.with_suffix(".rttm")
        conversation = next((p for s in AUDIO_SUFFIXES if (p := video.with_name(f"{video.stem}.conversation{s}")).is_file()),
                            None)
        jobs.append(VideoJob(video, rel.as_posix(), rttm if rttm.is_file() else None, conversation))
    return jobs


def read_sound(path: Path) -> tuple[torch.Tensor, int] | None:
    """The first audio stream of ``path`` at 16 kHz, channels kept (mono or stereo; more are mixed to stereo).

    Returns:
        ``(waveform [C, T] float32, 16000)`` with ``C`` 1 or 2, or None when the file has no audio stream.

    Raises:
        av.FFmpegError, OSError: an unreadable or corrupt file.
    """
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=AUDIO_RATE)
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(r.to_ndarray() for r in resampler.resample(frame))
        chunks.extend(r.to_ndarray() for r in resampler.resample(None))
    channels = 1 if layout == "mono" else 2
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return torch.from_numpy(samples.astype(np.float32)), AUDIO_RATE


def source_fps(path: Path) -> float:
    """The frame rate of the first video stream.

    Raises:
        ValueError: the file has no video stream; av.FFmpegError, OSError: unreadable.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("has no video stream")
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate)


@dataclass
class FrameWindows:
    """Consecutive windows of ``size`` frames of a video at ``fps`` (``iter``: ``(first_frame, uint8 [size, H, W, 3])``).

    Frame ``j`` of the output is the source frame nearest to ``j / fps`` seconds. After iteration
    ``frames`` is the number of output frames and ``tail`` the frames left after the last full
    window (not a clip).
    """

    path: Path
    fps: float
    size: int
    frames: int = 0
    tail: int = 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        src = source_fps(self.path)
        window: list[np.ndarray] = []
        self.frames = 0
        with av.open(str(self.path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                picture = None
                while round(self.frames * src / self.fps) <= index:
                    if round(self.frames * src / self.fps) == index:
                        picture = frame.to_ndarray(format="rgb24") if picture is None else picture
                        window.append(picture)
                        if len(window) == self.size:
                            yield self.frames + 1 - self.size, np.stack(window)
                            window = []
                    self.frames += 1
        self.tail = len(window)
