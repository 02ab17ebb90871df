"""All metrics of one rendered avatar video: the function behind BM Evaluate Avatar, the command and
a training loop's validation hook (one implementation for the three).

``evaluate_avatar`` checks the inputs, tracks the face, then computes what its inputs and weights
allow: LSE-C/LSE-D (:mod:`.lip_sync`, needs the talk audio and SyncNet), CSIM (:mod:`.identity`,
needs the reference portrait and the embedding weights), head motion and mouth activity
(:mod:`.head_motion`), and the listening metrics (:mod:`.listening`, needs the listen audio or
activity). A metric that cannot be computed is reported with ``"unavailable": reason``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BMInputError
from .face_track import FaceNotFoundError, frame_ranges, track_face
from .head_motion import head_motion, mouth_activity
from .identity import face_patches, identity_similarity
from .lip_sync import SYNCNET_FPS, lip_sync
from .listening import listening_metrics
from .metric_weights import MetricWeightsUnavailable, load_face_embedder, load_syncnet, missing

REPORT_VERSION = 1
DURATION_TOLERANCE_S = 0.2  # the pack's choice: 5 frames at 25 fps; more means audio of another take
SOURCES = {
    "lip_sync": "LSE-C/LSE-D: SyncNet v2 evaluation protocol of joonson/syncnet_python (face detector: MTCNN, "
                "not S3FD); LSE-C higher is better (about 6-9 on real talking faces), LSE-D lower is better (about 6-8)",
    "identity": "CSIM: cosine similarity of facenet-pytorch InceptionResnetV1 (VGGFace2) embeddings, reference vs "
                "every Nth frame; -1..1, higher is better; not comparable with ArcFace-based CSIM in papers",
    "head_motion": "the pack's own: face sizes per second (eyes, nose, box centre, scale; 0.2 s smoothing)",
    "listening": "the pack's own listening metrics (beyond_monologue/evaluate/listening.py)",
}


@dataclass
class Stream:
    """One audio stream: ``waveform`` ``[C, S]`` float in -1..1 at ``sample_rate`` Hz, starting with frame 0."""

    waveform: torch.Tensor
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate


@dataclass
class MetricModels:
    """The metric networks, or why each is unavailable (the message of a missing-weights check)."""

    syncnet: torch.nn.Module | None = None
    syncnet_missing: str = "no SyncNet weights were given"
    embedder: torch.nn.Module | None = None
    embedder_missing: str = "no face-embedding weights were given"


def load_metric_models(files: dict[str, tuple[Path | None, str]], searched: str, place=None) -> MetricModels:
    """The metric networks of ``files`` (``"syncnet"`` / ``"embedder"`` -> (safetensors path or None when not
    found, the file name to name if so)); a missing or broken file becomes the reason its metric is
    unavailable (which file, ``searched`` folder, where from). ``place`` moves each loaded network (e.g.
    to ComfyUI's device). Used by BM Evaluate Avatar and ``python -m beyond_monologue.evaluate``."""
    loaders = {"syncnet": load_syncnet, "embedder": load_face_embedder}
    models = MetricModels()
    for attribute, (path, name) in files.items():
        try:
            if path is None:
                raise missing(name, searched)
            network = loaders[attribute](path)
            setattr(models, attribute, place(network) if place is not None else network)
        except MetricWeightsUnavailable as reason:
            setattr(models, f"{attribute}_missing", str(reason))
    return models


PHASE_SHARE = (("track", 0.45), ("sync", 0.35), ("identity", 0.15), ("listen", 0.05))


class _Phases:
    """Maps the stages' own ``(done, total)`` onto one bar of 1000 steps."""

    def __init__(self, on_progress):
        self.on_progress = on_progress
        self.base = 0.0

    def stage(self, name: str):
        start, share = self.base, dict(PHASE_SHARE)[name]
        self.base += share

        def report(done: int, total: int) -> None:
            if self.on_progress is not None:
                self.on_progress(round(1000 * (start + share * done / max(total, 1))), 1000)
        return report


def check_inputs(frames: torch.Tensor, fps: float, streams: dict[str, Stream | None]) -> None:
    """Raise BMInputError for inputs no metric can use (the message names the input and the fix)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        raise BMInputError("frames", "must be an IMAGE batch [frames, height, width, 3].",
                           "connect the decoded video frames (e.g. the output of VAE Decode or Load Video's frames).")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise BMInputError("fps", f"must be a positive number of frames per second, not {fps!r}.",
                           "set fps to the video's frame rate (e.g. 25).")
    if frames.shape[0] < 2:
        raise BMInputError("frames", f"has {frames.shape[0]} frame: motion and lip sync need a video.",
                           "connect the whole rendered video, not a single image.")
    duration = frames.shape[0] / fps
    for name, stream in streams.items():
        if stream is not None and abs(stream.duration_s - duration) > DURATION_TOLERANCE_S:
            raise BMInputError(name, f"lasts {stream.duration_s:.2f} s but the frames last {duration:.2f} s "
                                     f"({frames.shape[0]} frames at {fps:g} fps).",
                               "connect the audio the video was rendered from, trimmed to the video, or correct fps.")


def per_second(values: np.ndarray, times_s: np.ndarray, seconds: int) -> list[float | None]:
    """Mean of ``values`` whose time falls in each whole second ``[s, s + 1)``; None for an empty second."""
    out: list[float | None] = []
    for s in range(seconds):
        inside = (times_s >= s) & (times_s < s + 1)
        out.append(float(np.mean(values[inside])) if inside.any() else None)
    return out


def _activity(stream: Stream | None, frames: int, fps: float) -> np.ndarray | None:
    if stream is None:
        return None
    from ..audio.vad import frame_activity

    return frame_activity(stream.waveform, stream.sample_rate, frames, fps).double().numpy()


def evaluate_avatar(frames: torch.Tensor, fps: float, talk: Stream | None = None, listen: Stream | None = None,
                    reference: torch.Tensor | None = None, models: MetricModels | None = None,
                    activity: tuple[np.ndarray, np.ndarray] | None = None, every_nth: int = 10,
                    device: torch.device | str = "cpu", on_progress=None) -> dict:
    """Every metric of one avatar video, as a JSON-ready dict.

    Args:
        frames: ``[T, H, W, 3]`` float RGB 0..1 (ComfyUI IMAGE), ``T >= 2``.
        fps: frames per second (> 0).
        talk / listen: the avatar's own speech and the other person's, each lasting the video
            (within 0.2 s); None when not available (the metrics needing it are unavailable).
        reference: ``[H, W, 3]`` or ``[1, H, W, 3]`` RGB 0..1 portrait for CSIM, or None.
        models: the metric networks (already on their device) or why they are missing.
        activity: ``([T], [T])`` talk and listen voice activity 0..1 per frame (e.g. from
            BM_DUPLEX_AUDIO); default: Silero VAD (:func:`..audio.vad.frame_activity`) on the streams.
        every_nth: CSIM compares frames ``0, N, 2N, ...`` with the reference.
        device: where MTCNN runs.
        on_progress: optional ``(done, total)`` callback (ComfyUI ProgressBar + Cancel).

    Returns:
        ``{"version", "video", "face", "lip_sync", "identity", "head_motion", "mouth_activity",
        "listening", "sources", "series"}``; see README "Evaluating avatars".

    Raises:
        BMInputError: frames not an IMAGE batch or one frame, fps not positive, an audio stream of
            another duration, no face in the video (the frames are named) or in the reference.
    """
    models = models or MetricModels()
    check_inputs(frames, fps, {"talk_audio": talk, "listen_audio": listen})
    if every_nth < 1:
        raise BMInputError("every_nth", f"must be at least 1, not {every_nth}.", "set every_nth to 1 or more.")
    phases = _Phases(on_progress)
    total = frames.shape[0]
    try:
        track = track_face(frames, device=device, on_progress=phases.stage("track"))
    except FaceNotFoundError as error:
        raise BMInputError("frames", f"{error}.", "render or crop the video so that the avatar's face is visible; "
                                                  "gaps of up to 25 frames are bridged.") from error
    report: dict = {"version": REPORT_VERSION,
                    "video": {"frames": total, "fps": float(fps), "duration_s": total / fps},
                    "face": {"detected_fraction": track.detected_fraction,
                             "interpolated_frames": frame_ranges(np.flatnonzero(~track.detected).tolist())}}

    sync_report, framewise = _lip_sync(models, frames, track, fps, talk, phases.stage("sync"))
    report["lip_sync"] = sync_report
    report["identity"] = _identity(models, frames, track, reference, every_nth, phases.stage("identity"))

    motion = head_motion(track, fps)
    mouth = mouth_activity(frames, track, fps)
    report["head_motion"] = {"mean": float(motion[1:].mean()), "energy": float((motion[1:] ** 2).mean()),
                             "unit": "face sizes per second"}
    report["mouth_activity"] = {"mean": float(mouth[1:].mean()), "unit": "grey levels (0..1) per second"}

    progress = phases.stage("listen")
    if activity is not None:
        talk_act, listen_act = (np.asarray(a, dtype=np.float64) for a in activity)
    else:
        talk_act, listen_act = _activity(talk, total, fps), _activity(listen, total, fps)
    if listen_act is None:
        report["listening"] = {"unavailable": "no listen audio (the other person's speech) was given"}
    else:
        talk_act = np.zeros(total) if talk_act is None else talk_act
        report["listening"] = listening_metrics(motion, mouth, talk_act, listen_act, fps)
    progress(1, 1)
    report["sources"] = SOURCES

    seconds = max(1, math.ceil(total / fps - 1e-9))
    times = (np.arange(total) + 0.5) / fps
    series = {"seconds": list(range(seconds)), "head_motion": per_second(motion, times, seconds)}
    if framewise is not None:
        centres = (np.arange(len(framewise)) + 2.5) / SYNCNET_FPS  # 5-frame windows at 25 fps
        series["sync_confidence"] = per_second(np.asarray(framewise), centres, seconds)
    for name, act in (("talk_activity", talk_act), ("listen_activity", listen_act)):
        if act is not None:
            series[name] = per_second(act, times, seconds)
    report["series"] = series
    return report


def _lip_sync(models: MetricModels, frames, track, fps, talk: Stream | None, progress):
    if talk is None:
        return {"unavailable": "no talk audio (the avatar's own speech) was given"}, None
    if models.syncnet is None:
        return {"unavailable": models.syncnet_missing}, None
    try:
        result = lip_sync(models.syncnet, frames, track.boxes, fps, talk.waveform, talk.sample_rate, progress)
    except ValueError as error:
        return {"unavailable": str(error)}, None
    out = asdict(result)
    framewise = out.pop("framewise_confidence")
    out.pop("mean_distances")
    return out, framewise


def _identity(models: MetricModels, frames, track, reference, every_nth: int, progress) -> dict:
    if reference is None:
        return {"unavailable": "no reference portrait was given"}
    if models.embedder is None:
        return {"unavailable": models.embedder_missing}
    portrait = reference[0] if reference.ndim == 4 else reference
    try:
        reference_track = track_face(portrait[None])
    except FaceNotFoundError as error:
        raise BMInputError("reference", "no face found in the reference image.",
                           "connect the portrait the avatar was rendered from.") from error
    indices = list(range(0, frames.shape[0], every_nth))
    reference_patch = face_patches(portrait[None], reference_track.boxes)[0]
    patches = face_patches(frames[indices], track.boxes[indices])
    progress(1, 2)
    result = identity_similarity(models.embedder, reference_patch, patches, indices)
    progress(2, 2)
    return {"csim_mean": result.csim_mean, "csim_min": result.csim_min, "every_nth": every_nth,
            "frames_compared": len(indices)}
