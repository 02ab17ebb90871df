"""One face track through a rendered avatar video: MTCNN detections per frame, short gaps filled.

Detector: facenet-pytorch's MTCNN (Zhang et al. 2016), whose three small networks ship inside the
facenet-pytorch wheel (``facenet_pytorch/data/*.pt``, state dicts that the library itself reads with
``torch.load``, which defaults to ``weights_only=True`` in this torch): nothing is downloaded.
The public SyncNet pipeline uses the S3FD detector instead (its weights are a separate download).

Tracking follows syncnet_python ``run_pipeline.track_shot`` in spirit, for the one avatar of a
rendered video: per frame, the detection that overlaps the previous box most (IoU above 0.5, the
public ``iouThres``) continues the track; the first box is the largest face. Frames without a
detection are filled by linear interpolation (the public ``interp1d``) when the gap is at most 25
frames (the public ``num_failed_det``); a longer gap, or no face at all, is an error naming the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .identity import import_facenet

IOU_THRESHOLD = 0.5  # syncnet_python track_shot iouThres
MAX_GAP_FRAMES = 25  # syncnet_python --num_failed_det
MIN_FACE_FRACTION = 0.25  # the pack's choice: an avatar's face is at least 1/4 of the shorter side
MIN_FACE_PIXELS = 20  # MTCNN's own default minimum
BATCH_FRAMES = 16


class FaceNotFoundError(ValueError):
    """No usable face track: ``frames`` lists the frame indices without a face (``str()`` says which)."""

    def __init__(self, frames: list[int], total: int):
        self.frames = frames
        self.total = total
        super().__init__(f"no face found in {len(frames)} of {total} frames: {frame_ranges(frames)}")


def frame_ranges(frames: list[int]) -> str:
    """``[0, 1, 2, 7, 9, 10]`` -> ``"0-2, 7, 9-10"`` (at most 8 ranges, then a count)."""
    ranges: list[list[int]] = []
    for f in frames:
        if ranges and f == ranges[-1][1] + 1:
            ranges[-1][1] = f
        else:
            ranges.append([f, f])
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in ranges[:8]]
    if len(ranges) > 8:
        text.append(f"... ({len(ranges) - 8} more ranges)")
    return ", ".join(text)


@dataclass
class FaceTrack:
    """The avatar's face in every frame.

    Attributes:
        boxes: ``[T, 4]`` float64 (x1, y1, x2, y2) in pixels.
        landmarks: ``[T, 5, 2]`` float64 (x, y) in pixels: left eye, right eye, nose, mouth left,
            mouth right (MTCNN's five points).
        detected: ``[T]`` bool: True where MTCNN found the face, False where it was interpolated.
        probability: ``[T]`` float64 detection probability (0 where interpolated).
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    probability: np.ndarray

    @property
    def detected_fraction(self) -> float:
        """Share of frames where the detector found the face (0..1)."""
        return float(self.detected.mean())

    @property
    def face_size(self) -> np.ndarray:
        """``[T]`` face size in pixels: the geometric mean of box width and height."""
        return np.sqrt(np.clip(self.boxes[:, 2] - self.boxes[:, 0], 1e-6, None)
                       * np.clip(self.boxes[:, 3] - self.boxes[:, 1], 1e-6, None))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box ``a`` [4] with boxes ``b`` [N, 4] (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def make_detector(frame_height: int, frame_width: int, device: torch.device | str = "cpu"):
    """facenet-pytorch MTCNN returning every face, minimum face size ``max(20, shorter side / 4)`` px."""
    min_face = max(MIN_FACE_PIXELS, int(MIN_FACE_FRACTION * min(frame_height, frame_width)))
    return import_facenet().MTCNN(keep_all=True, min_face_size=min_face, device=device)


def detect_faces(detector, frames: torch.Tensor, on_progress=None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every face of every frame.

    Args:
        frames: ``[T, H, W, 3]`` float RGB 0..1 (ComfyUI IMAGE).
        on_progress: optional ``(done, total)`` callback after each batch of 16 frames.

    Returns:
        per frame ``(boxes [N, 4], probabilities [N], landmarks [N, 5, 2])`` float64, N may be 0.
    """
    found = []
    total = frames.shape[0]
    for start in range(0, total, BATCH_FRAMES):
        batch = (frames[start:start + BATCH_FRAMES].clamp(0, 1) * 255).round().byte().cpu().numpy()
        boxes, probs, points = detector.detect(batch, landmarks=True)
        for b, p, pt in zip(boxes, probs, points, strict=True):
            if b is None:
                found.append((np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))))
            else:
                found.append((np.asarray(list(b), dtype=np.float64).reshape(-1, 4),
                              np.asarray(list(p), dtype=np.float64).reshape(-1),
                              np.asarray(list(pt), dtype=np.float64).reshape(-1, 5, 2)))
        if on_progress is not None:
            on_progress(min(total, start + BATCH_FRAMES), total)
    return found


def link_track(detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> FaceTrack:
    """Follow one face through per-frame detections and fill short gaps (see the module docstring).

    Raises:
        FaceNotFoundError: no face at all, or a run of more than 25 frames without the face
            (including at the start or end of the video).
    """
    total = len(detections)
    boxes = np.full((total, 4), np.nan)
    points = np.full((total, 5, 2), np.nan)
    probability = np.zeros(total)
    previous = None
    for t, (b, p, pt) in enumerate(detections):
        if len(b) == 0:
            continue
        if previous is None:
            pick = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
        else:
            overlaps = iou(previous, b)
            pick = int(np.argmax(overlaps))
            if overlaps[pick] <= IOU_THRESHOLD:
                continue
        boxes[t], points[t], probability[t] = b[pick], pt[pick], p[pick]
        previous = b[pick]
    detected = ~np.isnan(boxes[:, 0])
    missing = np.flatnonzero(~detected)
    if not detected.any() or _longest_run(~detected) > MAX_GAP_FRAMES:
        raise FaceNotFoundError(missing.tolist(), total)
    known = np.flatnonzero(detected)
    frames = np.arange(total)
    for k in range(4):
        boxes[:, k] = np.interp(frames, known, boxes[known, k])  # holds the end values outside
    for j in range(5):
        for k in range(2):
            points[:, j, k] = np.interp(frames, known, points[known, j, k])
    return FaceTrack(boxes=boxes, landmarks=points, detected=detected, probability=probability)


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def track_face(frames: torch.Tensor, device: torch.device | str = "cpu", on_progress=None) -> FaceTrack:
    """MTCNN face track of ``[T, H, W, 3]`` RGB 0..1 frames (see :func:`detect_faces`, :func:`link_track`).

    Raises:
        FaceNotFoundError: as :func:`link_track`.
    """
    detector = make_detector(frames.shape[1], frames.shape[2], device)
    return link_track(detect_faces(detector, frames, on_progress))
