"""One clip of a video for ``prepare``: its filter scores (speech, face, sync) and its face-centred frames.

Model: the paper's VoxHear cleaning (speech separated from background, sync filtering; arXiv
2604.10367 via /shared/research/papers.md). What the pack does instead, with **the pack's own
thresholds** (options of the command; the paper publishes none):

* speech activity: Silero VAD (:mod:`beyond_monologue.audio.vad`) probability at every frame's centre;
  a frame speaks when a stream's probability is above :data:`SPEECH_PROBABILITY` (Silero's own default
  threshold, 0.5). A clip is kept when the talk or the listen stream speaks in at least
  :data:`MIN_SPEECH` (0.5) of its frames: a clip of silence teaches neither talking nor listening.
* face presence: the MTCNN face track of :mod:`beyond_monologue.evaluate.face_track` over the clip
  (the pack's only face detector; its short-gap filling and IoU linking); a clip is kept when the
  detector found the face in at least :data:`MIN_FACE` (0.9) of its frames.
* one person: MTCNN (whose smallest face is a quarter of the frame's shorter side) finding a second
  face in more than :data:`MAX_SECOND_FACE` (0.5) of the frames drops the clip (VoxHear drops
  multi-person clips; the pack counts faces, it does not run DWPose).
* sync: SyncNet LSE-C (:mod:`beyond_monologue.evaluate.lip_sync`) of the talk stream against the face,
  only when ``models/bm_evaluation/syncnet_v2.safetensors`` is present (else recorded as
  ``"unavailable: ..."``) and the talk stream speaks in at least :data:`SYNC_MIN_TALK` (0.5) of the
  frames (LSE-C means nothing on a listening clip); kept when LSE-C >= :data:`MIN_SYNC` (3.0, the pack's
  choice between the ~0 of unrelated audio and the 6-9 of real talking faces the public protocol reports).
* not done (VoxHear does them): speech separation from background (VoxHear: MossFormer2; the pack's BM
  Separate Speech is not run here: it needs the Mel-Band RoFormer weights and is slow), DWPose keypoint
  checks, scene-cut detection, image-quality filtering.

Face-centred crop (the pack's choice): one fixed box per clip (a moving crop would add camera motion
that the person did not make), centred on the median face-box centre of the clip, as tall as
:data:`FACE_CROP_SCALE` (3) face heights (head and shoulders, the framing of a portrait at inference)
with the training aspect ratio, shrunk to fit the frame and shifted inside it; then resized to the
training size with ComfyUI's ``comfy.utils.common_upscale`` (area when shrinking, bicubic when enlarging).
"""

from __future__ import annotations

import numpy as np
import torch

from ..audio.vad import probabilities_at

SPEECH_PROBABILITY = 0.5  # Silero's own default threshold
MIN_SPEECH = 0.5  # the pack's choice (module docstring)
MIN_FACE = 0.9  # the pack's choice
MAX_SECOND_FACE = 0.5  # the pack's choice: share of frames with a second face
MIN_SYNC = 3.0  # the pack's choice (LSE-C)
SYNC_MIN_TALK = 0.5  # the pack's choice
FACE_CROP_SCALE = 3.0  # the pack's choice: crop height in face heights


def speech_shares(talk_probs: torch.Tensor, listen_probs: torch.Tensor, first: int, count: int,
                  fps: float) -> dict[str, float]:
    """Shares (0..1) of the clip's frames in which talk, listen, either stream speaks.

    Args:
        talk_probs, listen_probs: Silero probabilities of the whole streams (32 ms hops, ``vad.speech_probabilities``).
        first, count: the clip's first frame and frame count at ``fps``.
    """
    times = (np.arange(first, first + count) + 0.5) / fps
    talk = probabilities_at(talk_probs, times) > SPEECH_PROBABILITY
    listen = probabilities_at(listen_probs, times) > SPEECH_PROBABILITY
    return {"talk": float(talk.float().mean()), "listen": float(listen.float().mean()),
            "speech": float((talk | listen).float().mean())}


def sync_score(syncnet, frames: torch.Tensor, boxes: np.ndarray, fps: float, talk: torch.Tensor, sample_rate: int,
               shares: dict[str, float]) -> dict | str:
    """The clip's sync score: ``{"lse_c", "lse_d", "offset_frames"}`` or why none.

    Args:
        syncnet: :class:`~beyond_monologue.evaluate.syncnet.SyncNet`, or None when its weights are missing.
        frames: ``[T, H, W, 3]`` float 0..1 at ``fps`` (the clip, uncropped); boxes: ``[T, 4]`` its face track.
        talk: ``[S]`` the clip's talk stream at ``sample_rate`` Hz.
        shares: :func:`speech_shares` of the clip.

    Returns:
        ``"unavailable"`` without SyncNet, ``"not measured: ..."`` when the talk stream speaks in fewer
        than :data:`SYNC_MIN_TALK` of the frames, else the LSE numbers (:func:`~beyond_monologue.evaluate.lip_sync.lip_sync`).
    """
    from ..evaluate.lip_sync import lip_sync

    if syncnet is None:
        return "unavailable"  # why: the manifest's "sync" line
    if shares["talk"] < SYNC_MIN_TALK:
        return f"not measured: the talk stream speaks in {shares['talk']:.2f} of the frames (< {SYNC_MIN_TALK})"
    result = lip_sync(syncnet, frames, boxes, fps, talk, sample_rate)
    return {"lse_c": round(float(result.lse_c), 3), "lse_d": round(float(result.lse_d), 3),
            "offset_frames": int(result.offset_frames)}


def face_crop_box(boxes: np.ndarray, frame_width: int, frame_height: int, width: int, height: int,
                  scale: float = FACE_CROP_SCALE) -> tuple[int, int, int, int]:
    """The clip's crop ``(x, y, w, h)`` in pixels (see the module docstring).

    Args:
        boxes: ``[T, 4]`` face boxes (x1, y1, x2, y2) of the clip's frames.
        frame_width, frame_height: the video's frame size.
        width, height: the training size (sets the aspect ratio).
    """
    centre_x = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
    centre_y = float(np.median((boxes[:, 1] + boxes[:, 3]) / 2))
    face_height = float(np.median(boxes[:, 3] - boxes[:, 1]))
    crop_h = min(float(frame_height), scale * face_height)
    crop_w = crop_h * width / height
    if crop_w > frame_width:
        crop_w, crop_h = float(frame_width), frame_width * height / width
    w, h = max(1, round(crop_w)), max(1, round(crop_h))
    x = int(np.clip(round(centre_x - w / 2), 0, frame_width - w))
    y = int(np.clip(round(centre_y - h / 2), 0, frame_height - h))
    return x, y, w, h


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], width: int, height: int) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` frames -> IMAGE ``[T, height, width, 3]`` float32 0..1 of the ``box`` crop."""
    import comfy.utils

    x, y, w, h = box
    crop = torch.from_numpy(np.ascontiguousarray(frames[:, y:y + h, x:x + w])).float().div(255).movedim(-1, 1)
    method = "area" if w >= width and h >= height else "bicubic"
    return comfy.utils.common_upscale(crop, width, height, method, "disabled").clamp(0, 1).movedim(1, -1).contiguous()


def to_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 0..1 (what the face track reads)."""
    return torch.from_numpy(frames).float().div(255)


def best_face_box(detector, frame: np.ndarray) -> np.ndarray | None:
    """The largest MTCNN face of one uint8 frame ``[H, W, 3]`` as ``[1, 4]``, or None."""
    from ..evaluate.face_track import detect_faces

    boxes, _, _ = detect_faces(detector, to_image(frame[None]))[0]
    if len(boxes) == 0:
        return None
    return boxes[[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))]]


def reference_picture(detector, frame: np.ndarray, clip_box: tuple[int, int, int, int], width: int,
                      height: int) -> tuple[torch.Tensor, bool]:
    """The reference IMAGE ``[1, height, width, 3]`` from one frame outside the clip.

    The frame is cropped around its own face (same rule as the clip), or with the clip's box when
    MTCNN finds no face in it. Returns the image and whether a face was found.
    """
    box = best_face_box(detector, frame)
    crop = clip_box if box is None else face_crop_box(box, frame.shape[1], frame.shape[0], width, height)
    return crop_resize(frame[None], crop, width, height), box is not None
