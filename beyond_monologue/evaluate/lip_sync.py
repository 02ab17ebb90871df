"""LSE-C and LSE-D: lip-sync confidence and distance as the SyncNet evaluation protocol computes them.

Source: joonson/syncnet_python. ``run_pipeline.crop_video``: per-frame face boxes, smoothed by a
13-frame median filter on box size and centre, cropped to a square of side 2.8 x half the box size
(``crop_scale`` 0.4) that starts at the box centre minus half its size and extends below the chin,
padded with grey 110, resized to 224 x 224, BGR 0..255. ``SyncNetInstance.evaluate``: video at
25 fps, audio MFCC at 100 Hz (4 MFCC frames per video frame); for each start frame ``i`` below
``min(frames, samples // 640) - 5`` a 5-frame crop window and the MFCC columns ``4i .. 4i + 20``;
``calc_pdist``: for every shift ``-15..15`` the Euclidean distance (``pairwise_distance``) between
each video embedding and the audio embedding ``shift`` frames away (zero vectors past either end),
averaged over frames; the minimum of that curve is LSE-D, ``median - minimum`` is LSE-C and
``15 - argmin`` the audio-visual offset in frames (the audio that best matches video frame ``i`` is
at ``i - offset``: audio delayed by ``k`` frames gives ``-k``). The per-frame
confidence ``median - distance at the best shift``, median-filtered over 9 frames, is the public
code's "framewise conf".

Differences, the pack's choices: frames at another rate are resampled to 25 fps by picking the
nearest frame (as ``ffmpeg -r 25`` does before the public pipeline); the face boxes come from
:mod:`.face_track` (MTCNN) instead of the public S3FD detector; the crops are not re-encoded to
XVID as the public pipeline's intermediate AVI files are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt

from .mfcc import HOP_LENGTH, SAMPLE_RATE, syncnet_mfcc
from .syncnet import AUDIO_WINDOW, CROP_SIZE, VIDEO_WINDOW, SyncNet

SYNCNET_FPS = 25
MFCC_PER_FRAME = SAMPLE_RATE // HOP_LENGTH // SYNCNET_FPS  # 4
SAMPLES_PER_FRAME = SAMPLE_RATE // SYNCNET_FPS  # 640
MAX_SHIFT = 15  # the public --vshift default: +-15 frames (+-0.6 s)
CROP_SCALE = 0.4  # the public --crop_scale default
SMOOTH_FRAMES = 13  # crop_video's median filter
PAD_VALUE = 110.0  # crop_video's grey padding (0..255)
FRAMEWISE_FILTER = 9  # evaluate()'s median filter of the framewise confidence


@dataclass
class LipSyncResult:
    """LSE of one face track.

    Attributes:
        lse_d: minimum over shifts of the mean embedding distance (lower is better; the public
            metric's typical range on real talking faces is about 6-8).
        lse_c: median minus minimum of the same curve (higher is better; about 6-9 on real videos,
            near 0 when the lips do not follow the audio).
        offset_frames: ``MAX_SHIFT - argmin``: audio-visual offset in 25 fps frames (0 in sync; audio
            delayed by ``k`` frames gives ``-k``).
        mean_distances: ``[2 * MAX_SHIFT + 1]`` mean distance per shift (index ``MAX_SHIFT - offset``).
        framewise_confidence: ``[windows]`` median-filtered per-window confidence (window ``i`` starts
            at 25 fps frame ``i``).
    """

    lse_d: float
    lse_c: float
    offset_frames: int
    mean_distances: list[float] = field(repr=False)
    framewise_confidence: list[float] = field(repr=False)


def resample_indices(num_frames: int, fps: float, target_fps: float = SYNCNET_FPS) -> torch.Tensor:
    """Source frame index for each frame at ``target_fps`` (nearest frame in time; the pack's choice,
    like ``ffmpeg -r``). Returns ``[M]`` int64, ``M = round(num_frames / fps * target_fps)``."""
    count = max(1, round(num_frames / fps * target_fps))
    times = torch.arange(count, dtype=torch.float64) / target_fps
    return torch.clamp(torch.floor(times * fps + 0.5).long(), 0, num_frames - 1)


def smoothed_crop_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[T, 4]`` face boxes (x1, y1, x2, y2 in pixels) -> ``[T, 3]`` (half size, centre x, centre y)
    after crop_video's 13-frame median filter (``scipy.signal.medfilt``, zero-padded ends as there).
    Tracks shorter than 13 frames (the public pipeline drops tracks under 100 frames) use the
    largest odd kernel that fits, the pack's choice so that a short clip keeps its face."""
    boxes = np.asarray(boxes, dtype=np.float64)
    size = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    kernel = min(SMOOTH_FRAMES, len(boxes) if len(boxes) % 2 else len(boxes) - 1)
    return np.stack([medfilt(size, kernel), medfilt(centre_x, kernel), medfilt(centre_y, kernel)], axis=1)


def face_crops(frames: torch.Tensor, boxes: np.ndarray, indices: torch.Tensor | None = None) -> torch.Tensor:
    """SyncNet's face crops.

    Args:
        frames: ``[T, H, W, 3]`` float RGB 0..1 (ComfyUI IMAGE).
        boxes: ``[T, 4]`` face boxes (x1, y1, x2, y2) in pixels, one per frame.
        indices: ``[M]`` frames to crop, in order (the 25 fps sequence, :func:`resample_indices`);
            default all. The boxes are smoothed along this sequence; no copy of the frames is made.

    Returns:
        ``[M, 3, 224, 224]`` float32 BGR 0..255 (bilinear resize, no antialiasing, like cv2.resize).
    """
    order = torch.arange(frames.shape[0]) if indices is None else indices
    smoothed = smoothed_crop_boxes(np.asarray(boxes)[order.numpy()])
    crops = []
    for index, (half, centre_x, centre_y) in zip(order.tolist(), smoothed, strict=True):
        frame = frames[index]
        pad = int(half * (1 + 2 * CROP_SCALE))
        image = frame.permute(2, 0, 1).flip(0).float() * 255.0  # RGB -> BGR, 0..255
        image = F.pad(image, (pad, pad, pad, pad), value=PAD_VALUE)
        my, mx = centre_y + pad, centre_x + pad
        top, bottom = int(my - half), int(my + half * (1 + 2 * CROP_SCALE))
        left, right = int(mx - half * (1 + CROP_SCALE)), int(mx + half * (1 + CROP_SCALE))
        face = image[:, max(top, 0):bottom, max(left, 0):right]
        crops.append(F.interpolate(face[None], size=(CROP_SIZE, CROP_SIZE), mode="bilinear",
                                   align_corners=False, antialias=False)[0])
    return torch.stack(crops)


def window_count(num_frames: int, num_samples: int) -> int:
    """Number of 5-frame windows the public code scores: ``min(frames, samples // 640) - 5`` (16 kHz)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - VIDEO_WINDOW


def _batches(windows: int, batch_size: int):
    for start in range(0, windows, batch_size):
        yield range(start, min(windows, start + batch_size))


@torch.no_grad()
def lip_embeddings(model: SyncNet, crops: torch.Tensor, windows: int, batch_size: int = 20,
                   on_progress=None) -> torch.Tensor:
    """``[T, 3, 224, 224]`` BGR 0..255 crops at 25 fps -> ``[windows, 1024]`` float32 lip embeddings
    (window ``i`` = frames ``i..i+4``), ``batch_size`` windows per pass (the public default, 20);
    ``on_progress(done, total)`` after each batch."""
    device = next(model.parameters()).device
    out = []
    for starts in _batches(windows, batch_size):
        lips = torch.stack([crops[i:i + VIDEO_WINDOW].permute(1, 0, 2, 3) for i in starts])
        out.append(model.forward_lips(lips.to(device, torch.float32)).float().cpu())
        if on_progress is not None:
            on_progress(starts[-1] + 1, windows)
    return torch.cat(out)


@torch.no_grad()
def audio_embeddings(model: SyncNet, mfcc: torch.Tensor, windows: int, batch_size: int = 20) -> torch.Tensor:
    """``[13, F]`` MFCC at 100 Hz -> ``[windows, 1024]`` float32 audio embeddings (window ``i`` = MFCC
    columns ``4i..4i+19``, the 0.2 s under video frames ``i..i+4``)."""
    device = next(model.parameters()).device
    out = []
    for starts in _batches(windows, batch_size):
        mfccs = torch.stack([mfcc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + AUDIO_WINDOW] for i in starts])[:, None]
        out.append(model.forward_audio(mfccs.to(device, torch.float32)).float().cpu())
    return torch.cat(out)


def syncnet_embeddings(model: SyncNet, crops: torch.Tensor, mfcc: torch.Tensor, windows: int,
                       batch_size: int = 20, on_progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lip_embeddings, audio_embeddings)`` of every window: ``([windows, 1024], [windows, 1024])``,
    see :func:`lip_embeddings` and :func:`audio_embeddings`; ``windows`` from :func:`window_count`."""
    return (lip_embeddings(model, crops, windows, batch_size, on_progress),
            audio_embeddings(model, mfcc, windows, batch_size))


def shifted_distances(video: torch.Tensor, audio: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """``[N, D]`` video and audio embeddings -> ``[N, 2 * max_shift + 1]`` distances: entry ``[i, j]``
    is ``pairwise_distance(video[i], audio[i + j - max_shift])``, a zero vector past either end
    (the public ``calc_pdist``)."""
    padded = F.pad(audio, (0, 0, max_shift, max_shift))
    shifts = 2 * max_shift + 1
    windows = padded.unfold(0, shifts, 1).permute(0, 2, 1)  # [N, shifts, D]
    return F.pairwise_distance(video[:, None, :].expand_as(windows), windows)


def lse_from_embeddings(video: torch.Tensor, audio: torch.Tensor, max_shift: int = MAX_SHIFT) -> LipSyncResult:
    """LSE-D, LSE-C, offset and framewise confidence from ``[N, D]`` embeddings (N >= 1)."""
    distances = shifted_distances(video, audio, max_shift)
    mean = distances.mean(0)
    minimum, best = torch.min(mean, 0)
    median = torch.median(mean)
    framewise = (median - distances[:, best]).numpy().astype(np.float64)
    kernel = min(FRAMEWISE_FILTER, len(framewise) if len(framewise) % 2 else len(framewise) - 1)
    smoothed = medfilt(framewise, max(kernel, 1))
    return LipSyncResult(lse_d=float(minimum), lse_c=float(median - minimum), offset_frames=int(max_shift - best),
                         mean_distances=mean.tolist(), framewise_confidence=smoothed.tolist())


def lip_sync(model: SyncNet, frames: torch.Tensor, boxes: np.ndarray, fps: float, talk_waveform: torch.Tensor,
             sample_rate: int, on_progress=None) -> LipSyncResult:
    """LSE of a talking-face video against its speech.

    Args:
        frames: ``[T, H, W, 3]`` float RGB 0..1 at ``fps``.
        boxes: ``[T, 4]`` face boxes per frame (pixels).
        talk_waveform: ``[C, S]`` or ``[S]`` audio at ``sample_rate`` Hz, starting with frame 0.

    Raises:
        ValueError: fewer than 6 frames at 25 fps (no 5-frame window) or less than 0.24 s of audio.
    """
    crops = face_crops(frames, boxes, resample_indices(frames.shape[0], fps))
    mfcc = syncnet_mfcc(talk_waveform, sample_rate)
    samples = round(talk_waveform.shape[-1] * SAMPLE_RATE / sample_rate)
    windows = window_count(crops.shape[0], samples)
    if windows < 1:
        raise ValueError(f"lip sync needs at least {VIDEO_WINDOW + 1} frames at 25 fps with audio under them; "
                         f"got {crops.shape[0]} frames and {samples / SAMPLE_RATE:.2f} s of audio")
    video, audio = syncnet_embeddings(model, crops, mfcc, windows, on_progress=on_progress)
    return lse_from_embeddings(video, audio)
