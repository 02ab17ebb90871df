"""One video of a ``prepare`` run: split, clips, filters, encoding, its shard and its done marker.

See :mod:`.prepare` for the whole command, :mod:`.prepare_clips` for the filters and the crop.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BMInputError
from .prepare_clips import (
    crop_resize,
    face_crop_box,
    reference_picture,
    speech_shares,
    sync_score,
    to_image,
)
from .prepare_media import AUDIO_RATE, FrameWindows, VideoJob, read_sound
from .prepare_split import speaker_streams
from .prepare_state import KILL_ENV, PrepareOptions, marker_path, model_path, write_atomic, write_json
from .samples import TrainingSet, save_set


@dataclass
class Encoders:
    """What one process encodes with: ComfyUI's VAE and AUDIO_ENCODER, the text context, SyncNet or why not."""

    vae: object
    audio_encoder: object
    text: torch.Tensor
    syncnet: torch.nn.Module | None
    sync_missing: str


def load_encoders(options: PrepareOptions, text: torch.Tensor) -> Encoders:
    """Load the VAE (as Load VAE does) and wav2vec2 (as Load Audio Encoder does); SyncNet when its file is present.

    Raises:
        BMInputError: (``vae`` / ``audio-encoder``) a missing file or one that is not such a model.
    """
    import comfy.audio_encoders.audio_encoders
    import comfy.sd
    import comfy.utils
    import folder_paths

    from ..evaluate.metric_weights import FOLDER, SYNCNET_FILE, MetricWeightsUnavailable, load_syncnet, missing

    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(model_path("vae", options.vae, "vae")))
    try:
        vae.throw_exception_if_invalid()
    except RuntimeError as err:
        raise BMInputError("vae", f"{options.vae!r} is not a VAE ComfyUI can load ({err}).", "pick the model's VAE file.") from None
    sd = comfy.utils.load_torch_file(model_path("audio_encoders", options.audio_encoder, "audio-encoder"), safe_load=True)
    audio_encoder = comfy.audio_encoders.audio_encoders.load_audio_encoder_from_sd(sd)
    if audio_encoder is None:
        raise BMInputError("audio-encoder", f"{options.audio_encoder!r} holds no audio encoder ComfyUI knows.",
                           "pick wav2vec2-chinese-base_fp16.safetensors (models/audio_encoders).")
    syncnet_path = Path(folder_paths.models_dir) / FOLDER / SYNCNET_FILE
    syncnet, reason = None, ""
    try:
        if not syncnet_path.is_file():
            raise missing(SYNCNET_FILE, str(syncnet_path.parent))
        syncnet = load_syncnet(syncnet_path)
    except MetricWeightsUnavailable as err:
        reason = str(err)
        if syncnet_path.is_file():
            print(f"note: sync is not measured: {reason}", file=sys.stderr)
    return Encoders(vae, audio_encoder, text, syncnet, reason)


class VideoSkipped(Exception):
    """A video that gives no clips at all (no audio, unreadable); ``str()`` says why."""


def sync_status() -> str:
    """The manifest's ``sync`` line: what measures sync, or why nothing does (SyncNet's file is missing)."""
    import folder_paths

    from ..evaluate.metric_weights import FOLDER, SYNCNET_FILE, missing

    path = Path(folder_paths.models_dir) / FOLDER / SYNCNET_FILE
    if path.is_file():
        return f"SyncNet LSE-C of the talk stream ({path}); a file that cannot be loaded makes every clip 'unavailable'"
    return f"unavailable: {missing(SYNCNET_FILE, str(path.parent))}"


def _clip(job: VideoJob, options: PrepareOptions, encoders: Encoders, streams, probs, state: dict, index: int,
          first: int, frames, neighbour) -> tuple[dict, object | None]:
    """Score, filter and encode one clip: ``(manifest record, TrainingSample or None)``."""
    from ..audio.speech_features import encode_with_audio_encoder, samples_for_frames
    from ..evaluate.face_track import FaceNotFoundError, detect_faces, link_track, make_detector
    from .clips import AUDIO_TOLERANCE_S, make_sample

    fps, count = options.fps, options.frames
    start_s, end_s = first / fps, (first + count) / fps
    shares = speech_shares(probs[0], probs[1], first, count, fps)
    record = {"clip": f"{job.name}#{index}", "video": job.name, "start_s": round(start_s, 3), "end_s": round(end_s, 3),
              "speaker": streams.speaker, "scores": {k: round(v, 3) for k, v in shares.items()}, "kept": False, "reason": ""}
    a = round(start_s * AUDIO_RATE)
    b = a + samples_for_frames(count, fps, AUDIO_RATE)
    sound_s = streams.talk.shape[-1] / AUDIO_RATE
    if end_s > sound_s + AUDIO_TOLERANCE_S:
        record["reason"] = f"audio: the soundtrack ends at {sound_s:.2f} s, before the clip's end"
        return record, None
    if shares["speech"] < options.min_speech:
        record["reason"] = f"speech: {shares['speech']:.2f} of the frames speak (< {options.min_speech})"
        return record, None
    if state.get("detector") is None:
        import comfy.model_management

        state["detector"] = make_detector(frames.shape[1], frames.shape[2], comfy.model_management.get_torch_device())
    images = to_image(frames)
    detections = detect_faces(state["detector"], images)
    record["scores"]["second_face"] = round(sum(len(boxes) > 1 for boxes, _, _ in detections) / len(detections), 3)
    try:
        track = link_track(detections)
    except FaceNotFoundError as err:
        record["scores"]["face"] = round(1.0 - len(err.frames) / err.total, 3)
        record["reason"] = f"face: {err}"
        return record, None
    record["scores"]["face"] = round(track.detected_fraction, 3)
    if track.detected_fraction < options.min_face:
        record["reason"] = f"face: found in {track.detected_fraction:.2f} of the frames (< {options.min_face})"
        return record, None
    if record["scores"]["second_face"] > options.max_second_face:
        record["reason"] = (f"second face: another face in {record['scores']['second_face']:.2f} of the frames "
                            f"(> {options.max_second_face})")
        return record, None
    talk, listen = streams.talk[a:b], streams.listen[a:b]
    sync = sync_score(encoders.syncnet, images, track.boxes, fps, talk, AUDIO_RATE, shares)
    record["scores"]["sync"] = sync
    if isinstance(sync, dict) and sync["lse_c"] < options.min_sync:
        record["reason"] = f"sync: LSE-C {sync['lse_c']:.2f} (< {options.min_sync})"
        return record, None
    box = face_crop_box(track.boxes, frames.shape[2], frames.shape[1], options.width, options.height)
    clip_images = crop_resize(frames, box, options.width, options.height)
    reference, found = reference_picture(state["detector"], neighbour, box, options.width, options.height)
    record["crop"] = list(box)
    record["reference_face"] = found
    try:
        duplex = encode_with_audio_encoder(encoders.audio_encoder, talk, AUDIO_RATE, listen, AUDIO_RATE, fps, count,
                                           options.feature_order)
    except BMInputError as err:
        record["reason"] = f"audio: {err}"
        return record, None
    sample = make_sample(encoders.vae, clip_images, reference, duplex, encoders.text,
                         source=f"{job.name} {start_s:.3f}-{end_s:.3f} s")
    record["kept"] = True
    return record, sample


def _windows_with_neighbours(windows):
    """``(first, frames, neighbour frame)``: the neighbour is the middle frame of the previous window (the next for
    the first window; the window's own first frame when it is the only one): the reference, outside the clip."""
    previous = current = None
    for item in windows:
        if current is not None:
            yield (*current, (previous or item)[1][len((previous or item)[1]) // 2])
        previous, current = current, item
    if current is not None:
        yield (*current, previous[1][len(previous[1]) // 2] if previous else current[1][0])


def prepare_video(job: VideoJob, options: PrepareOptions, encoders: Encoders, shards: Path) -> dict:
    """The manifest entry of one video; writes its shard (when a clip is kept).

    Raises:
        VideoSkipped, BMInputError, OSError, ValueError, av.FFmpegError: the video gives no clips
            (:func:`process_video` records them as the video's error).
    """
    from ..audio.vad import speech_probabilities

    sound = read_sound(job.video)
    conversation = read_sound(job.conversation) if job.conversation else None
    if sound is None and conversation is None:
        raise VideoSkipped("has no audio stream (and no NAME.conversation.wav beside it)")
    rttm = job.rttm.read_text(encoding="utf-8") if job.rttm else None
    streams = speaker_streams(sound or conversation, options.split, rttm, conversation, options.channel, options.speaker)
    probs = (speech_probabilities(streams.talk), speech_probabilities(streams.listen))
    entry = {"video": job.name, "file": str(job.video), "status": "done", "split": streams.split,
             "speaker": streams.speaker, "speaker_note": streams.note, "shard": None, "clips": []}
    windows = FrameWindows(job.video, options.fps, options.frames)
    samples, state = [], {}
    for index, (first, frames, neighbour) in enumerate(_windows_with_neighbours(windows)):
        record, sample = _clip(job, options, encoders, streams, probs, state, index, first, frames, neighbour)
        entry["clips"].append(record)
        if sample is not None:
            samples.append(sample)
    entry["frames"], entry["tail_frames"] = windows.frames, windows.tail
    if windows.frames == 0:
        raise VideoSkipped("has no video frames")
    if samples:
        shard = shards / f"{job.name}.safetensors"
        write_atomic(shard, lambda p: save_set(TrainingSet().extended(samples), p))
        entry["shard"] = f"{options.name}/{job.name}.safetensors"
    return entry


def process_video(job: VideoJob, options: PrepareOptions, encoders: Encoders, folder: Path, shards: Path) -> dict:
    """:func:`prepare_video`, any failure recorded as a skipped video; writes the done marker; returns the entry."""
    try:
        entry = prepare_video(job, options, encoders, shards)
    except Exception as err:  # noqa: BLE001 - a bad video is reported and the run goes on (issue 13)
        reason = str(err) if isinstance(err, (VideoSkipped, BMInputError)) else f"{type(err).__name__}: {err}"
        entry = {"video": job.name, "file": str(job.video), "status": "skipped", "error": f"{job.video}: {reason}",
                 "shard": None, "clips": []}
    if entry["shard"] is not None:
        _maybe_kill()
    write_json(marker_path(folder, job), entry)
    return entry


_SHARDS_WRITTEN = 0


def _maybe_kill() -> None:
    global _SHARDS_WRITTEN
    _SHARDS_WRITTEN += 1
    if int(os.environ.get(KILL_ENV, "0") or 0) == _SHARDS_WRITTEN:
        os.kill(os.getpid(), signal.SIGKILL)
