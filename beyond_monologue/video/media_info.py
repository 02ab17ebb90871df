"""What a saved video file holds: size, frame rate, frames, duration, audio (read with PyAV, ComfyUI's own).

Used by the demo to report its result and by the tests to check rendered MP4s.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class VideoInfo:
    """A video file's streams.

    Attributes:
        width, height: picture size in pixels.
        fps: average frame rate of the video stream (frames per second).
        frames: decoded video frames.
        duration_s: ``frames / fps`` in seconds.
        audio_s: duration of the decoded audio in seconds (0 without an audio stream).
        sample_rate: audio sample rate in Hz (0 without an audio stream).
        size_bytes: file size.
    """

    width: int
    height: int
    fps: Fraction
    frames: int
    duration_s: float
    audio_s: float
    sample_rate: int
    size_bytes: int

    @property
    def has_audio(self) -> bool:
        """True when the file has a non-empty audio stream."""
        return self.audio_s > 0

    def summary(self) -> str:
        """One line for people: ``30.00 s, 64x32 px, 5 fps (150 frames), audio 30.00 s at 16000 Hz, 0.1 MB``."""
        audio = f"audio {self.audio_s:.2f} s at {self.sample_rate} Hz" if self.has_audio else "no audio"
        return (f"{self.duration_s:.2f} s, {self.width}x{self.height} px, {float(self.fps):g} fps ({self.frames} frames), "
                f"{audio}, {self.size_bytes / 1e6:.1f} MB")


def probe_video(path: str | Path) -> VideoInfo:
    """Decode ``path`` completely and describe it (frames and audio samples are counted, not read from headers).

    Raises:
        av.error.FFmpegError: the file is not a readable video.
        ValueError: the file has no video stream.
    """
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        video = container.streams.video[0]
        fps = Fraction(video.average_rate) if video.average_rate else Fraction(0)
        width, height = video.width, video.height
        frames = sum(1 for _ in container.decode(video=0))
    audio_samples, sample_rate = 0, 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            sample_rate = container.streams.audio[0].rate
            audio_samples = sum(frame.samples for frame in container.decode(audio=0))
    return VideoInfo(width, height, fps, frames, float(frames / fps) if fps else 0.0,
                     audio_samples / sample_rate if sample_rate else 0.0, sample_rate, path.stat().st_size)
