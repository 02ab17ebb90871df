"""Per-frame head motion and mouth activity from the face track (the pack's own measures).

Neither is a published metric; both feed the listening metrics (:mod:`.listening`) and the plot.

* Head motion (face sizes per second): the eyes, the nose, the box centre and the log face size
  (geometric mean of box width and height) are first smoothed by a centred moving average over
  0.2 s (``scipy.ndimage.uniform_filter1d``; the pack's choice: MTCNN's pixel jitter, differenced
  at 25-30 fps, would otherwise dominate); then, between consecutive frames, the mean displacement
  of those points divided by the face size, plus the change of log face size (moving towards or
  away from the camera), times the frame rate. Mouth corners are left out so that speaking does
  not count as head motion. A still face gives exactly 0.
* Mouth activity (grey levels per second): the mean absolute change between consecutive frames of
  a 32 x 32 grey patch centred between the mouth corners, half a face size wide, cut with
  ``torchvision.ops.roi_align`` so that it follows the head; times the frame rate.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d
from torchvision.ops import roi_align

from .face_track import FaceTrack

HEAD_POINTS = (0, 1, 2)  # MTCNN landmarks: left eye, right eye, nose
MOUTH_PATCH = 32
PATCH_BATCH = 64
SMOOTHING_S = 0.2  # the pack's choice, see the module docstring
MOUTH_PATCH_FRACTION = 0.5  # patch side in face sizes (the pack's choice)


def smoothing_frames(fps: float) -> int:
    """Odd moving-average length covering about ``SMOOTHING_S`` seconds at ``fps`` (at least 1)."""
    n = max(1, round(SMOOTHING_S * fps))
    return n if n % 2 else n + 1


def head_motion(track: FaceTrack, fps: float) -> np.ndarray:
    """``[T]`` float64 head speed in face sizes per second; frame 0 is 0 (no previous frame)."""
    centre = np.stack([(track.boxes[:, 0] + track.boxes[:, 2]) / 2, (track.boxes[:, 1] + track.boxes[:, 3]) / 2], axis=1)
    points = np.concatenate([track.landmarks[:, HEAD_POINTS, :], centre[:, None, :]], axis=1)  # [T, 4, 2]
    window = smoothing_frames(fps)
    points = uniform_filter1d(points, window, axis=0, mode="nearest")
    log_size = uniform_filter1d(np.log(track.face_size), window, mode="nearest")
    size = np.exp(log_size)
    step = np.linalg.norm(np.diff(points, axis=0), axis=2).mean(axis=1) / ((size[1:] + size[:-1]) / 2)
    scale = np.abs(np.diff(log_size))
    return np.concatenate([[0.0], (step + scale) * fps])


def mouth_patches(frames: torch.Tensor, track: FaceTrack) -> torch.Tensor:
    """``[T, H, W, 3]`` RGB 0..1 frames -> ``[T, 32, 32]`` grey mouth patches (0..1) following the face."""
    centre = track.landmarks[:, 3:5, :].mean(axis=1)
    half = MOUTH_PATCH_FRACTION * track.face_size / 2
    corners = np.stack([centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half, centre[:, 1] + half], axis=1)
    weights = torch.tensor([0.299, 0.587, 0.114])
    patches = []
    for start in range(0, frames.shape[0], PATCH_BATCH):  # bounded memory on long videos
        grey = (frames[start:start + PATCH_BATCH].float().cpu() * weights).sum(-1, keepdim=True).permute(0, 3, 1, 2)
        rois = np.concatenate([np.arange(grey.shape[0])[:, None], corners[start:start + grey.shape[0]]], axis=1)
        patches.append(roi_align(grey, torch.from_numpy(rois).float(), output_size=MOUTH_PATCH, aligned=True)[:, 0])
    return torch.cat(patches)


def mouth_activity(frames: torch.Tensor, track: FaceTrack, fps: float) -> np.ndarray:
    """``[T]`` float64 mouth-patch change in grey levels (0..1) per second; frame 0 is 0."""
    patches = mouth_patches(frames, track)
    change = (patches[1:] - patches[:-1]).abs().mean(dim=(1, 2)).double().numpy()
    return np.concatenate([[0.0], change * fps])
