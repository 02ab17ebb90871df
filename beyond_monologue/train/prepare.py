"""``python -m beyond_monologue.train prepare``: a folder of conversation videos -> training-set shards and a manifest.

Per video (:func:`prepare_video`): the on-screen speaker's talk/listen streams
(:mod:`.prepare_split`, BM Split Conversation's engine), clips of ``frames`` frames at ``fps`` cut one
after the other from the first frame (the tail shorter than a clip is left out), each scored and
filtered (:mod:`.prepare_clips`: speech activity, face presence, sync when SyncNet's weights are
present), cropped around the face and resized to the training size, then encoded exactly as BM
Training Sample encodes a clip: frames and reference with ComfyUI's VAE (``comfy.sd.VAE`` of a file in
``models/vae``, as Load VAE does; :func:`~beyond_monologue.train.clips.make_sample`), both streams with
ComfyUI's wav2vec2 (``models/audio_encoders``, as Load Audio Encoder does;
:func:`~beyond_monologue.audio.speech_features.encode_with_audio_encoder`), the prompt once per run with
ComfyUI's text encoder (``models/text_encoders``, CLIPLoader's ``wan`` type). A video's kept clips are
one shard: a BM Save Training Set file (:func:`~beyond_monologue.train.samples.save_set`), which
``python -m beyond_monologue.train run`` and BM Load Training Set read.

Where things go (ComfyUI's folders; ``--base-directory`` is ComfyUI's own option):

* shards: ``models/bm_training_sets/<name>/<video path without suffix>.safetensors`` (list them in the
  run config's ``training_sets`` as ``"<name>/<video>.safetensors"``; the run folder's
  ``training_sets.toml`` holds that list);
* the run folder ``<ComfyUI output>/bm_prepare/<name>/``: ``options.json`` (the options the shards were
  made with), ``prompt.safetensors`` (the encoded prompt, reused on resume), ``videos/<video>.json``
  (one done marker per video: its manifest entry), ``manifest.json`` and ``training_sets.toml``.

Resumable: a shard is written under a temporary name and moved into place with ``os.replace``, then
the video's done marker likewise; a video counts as done only when its marker exists (and its shard,
if it kept clips). A killed run started again with the same command skips the done videos and redoes
the one it was working on; a resume with other options is refused naming the option. A video that
cannot be used (no audio, corrupt file, no speech, an error) gets a marker with its error and never
stops the run; delete its marker to try it again.

Parallel: ``workers`` > 1 runs videos in that many processes (``concurrent.futures.ProcessPoolExecutor``,
``spawn``); each process loads its own VAE and wav2vec2 (on one GPU they share it). ``workers`` = 1
runs them one after the other in this process. Results do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import BMInputError
from ..timebase import frame_count, is_valid_frame_count
from .prepare_clips import (
    MIN_FACE,
    MIN_SPEECH,
    MIN_SYNC,
    SYNC_MIN_TALK,
    crop_resize,
    face_crop_box,
    reference_picture,
    speech_shares,
    to_image,
)
from .prepare_media import AUDIO_RATE, FrameWindows, VideoJob, find_videos, read_sound
from .prepare_split import SPLITS, speaker_streams
from .recipe import TrainRecipe
from .samples import TrainingSet, save_set

RUNS_FOLDER = "bm_prepare"  # inside ComfyUI's output directory
SET_FOLDER = "bm_training_sets"
KILL_ENV = "BM_PREPARE_KILL_AFTER_SHARDS"  # tests: SIGKILL right after this many shards, before their markers
DEFAULT_PROMPT = "a person in a conversation, talking and listening"  # the pack's choice: one prompt for every clip
DEFAULT_FRAMES = frame_count(TrainRecipe.window_latents)  # 81: the training recipe's crop


@dataclass(frozen=True)
class PrepareOptions:
    """What decides the shards' content (saved in ``options.json``; a resume must match).

    Attributes:
        name: the prepare run's name (shard sub-folder and run folder).
        vae / audio_encoder / text_encoder: file names in ``models/vae`` / ``models/audio_encoders`` /
            ``models/text_encoders``.
        prompt: the text every clip is trained with.
        frames: frames per clip (4n+1, at least 5).
        fps: training frame rate (frames are picked from the video at this rate).
        width / height: training size in pixels (multiples of 16).
        split / channel / speaker: see :mod:`.prepare_split`.
        min_speech / min_face / min_sync: filter thresholds (:mod:`.prepare_clips`).
        feature_order: wav2vec2 feature order (``"conv_features"``, what the adapter expects).
    """

    name: str
    vae: str
    audio_encoder: str
    text_encoder: str
    prompt: str = DEFAULT_PROMPT
    frames: int = DEFAULT_FRAMES
    fps: float = 25.0
    width: int = 1280
    height: int = 704
    split: str = "auto"
    channel: int = 1
    speaker: str = ""
    min_speech: float = MIN_SPEECH
    min_face: float = MIN_FACE
    min_sync: float = MIN_SYNC
    feature_order: str = "conv_features"

    def __post_init__(self):
        if not self.name or Path(self.name).name != self.name or self.name in (".", ".."):
            raise BMInputError("name", f"is {self.name!r}: a plain name, not a path.", "use e.g. --name conversations.")
        if not is_valid_frame_count(self.frames) or self.frames < 5:
            raise BMInputError("frames", f"is {self.frames}.", "use 4n+1 frames, at least 5 (81 = the training crop).")
        if not 1.0 <= self.fps <= 60.0:
            raise BMInputError("fps", f"is {self.fps}.", "use 1..60 (25 = the training frame rate).")
        for key in ("width", "height"):
            if getattr(self, key) < 16 or getattr(self, key) % 16:
                raise BMInputError(key, f"is {getattr(self, key)}.", "use a multiple of 16 (of 32 for Wan2.2-TI2V-5B).")
        if self.split not in SPLITS:
            raise BMInputError("split", f"is {self.split!r}.", f"use one of {', '.join(SPLITS)}.")
        if self.channel not in (1, 2):
            raise BMInputError("channel", f"is {self.channel}.", "use 1 (left) or 2 (right).")
        for key in ("min_speech", "min_face"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise BMInputError(key.replace("_", "-"), f"is {getattr(self, key)}.", "use a share of frames in 0..1.")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def run_folder(name: str) -> Path:
    """``<ComfyUI output>/bm_prepare/<name>``."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / RUNS_FOLDER / name


def shard_folder(name: str) -> Path:
    """``models/bm_training_sets/<name>`` (the first folder ComfyUI lists for ``bm_training_sets``)."""
    import folder_paths

    if SET_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[SET_FOLDER] = ([os.path.join(folder_paths.models_dir, SET_FOLDER)], {".safetensors"})
    return Path(folder_paths.get_folder_paths(SET_FOLDER)[0]) / name


def model_path(folder: str, name: str, key: str) -> str:
    """Full path of ``name`` in ComfyUI's ``folder``.

    Raises:
        BMInputError: (``key``) no such file.
    """
    import folder_paths

    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None:
        raise BMInputError(key, f"{name!r} is not in models/{folder} ({', '.join(folder_paths.get_folder_paths(folder))}).",
                           f"put the file in models/{folder} or fix the name.")
    return path


def write_atomic(path: Path, write) -> None:
    """``write(temporary path)``, then ``os.replace`` onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    """JSON written atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1), encoding="utf-8"))


def check_options(folder: Path, options: PrepareOptions) -> bool:
    """Write ``options.json`` (returns False), or check that a resumed run has the same options (returns True).

    Raises:
        BMInputError: naming the first option that differs from the run's ``options.json``.
    """
    saved = folder / "options.json"
    now = options.to_dict()
    if saved.is_file():
        before = json.loads(saved.read_text(encoding="utf-8"))
        for key, value in now.items():
            if before.get(key) != value:
                raise BMInputError(key.replace("_", "-"), f"is {value!r} but run {options.name!r} was prepared with "
                                   f"{before.get(key)!r} ({saved}).",
                                   f"pass {before.get(key)!r} to continue that run, or use a new --name.")
        return True
    write_json(saved, now)
    return False


# --- the prompt, encoded once per run ---------------------------------------------------------------

def save_prompt_context(path: Path, context: torch.Tensor, prompt: str, text_encoder: str) -> None:
    """Store the prompt's text context ``[L, D]`` (with the prompt and encoder file name) atomically."""
    meta = {"prompt": prompt, "text_encoder": text_encoder}
    write_atomic(path, lambda p: save_file({"context": context.float().contiguous()}, str(p), metadata=meta))


def load_prompt_context(path: Path, prompt: str, text_encoder: str) -> torch.Tensor | None:
    """The stored context when it was made from ``prompt`` with ``text_encoder``, else None."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("prompt") != prompt or meta.get("text_encoder") != text_encoder:
            return None
        return f.get_tensor("context")


def encode_prompt(text_encoder: str, prompt: str) -> torch.Tensor:
    """``[L, 4096]`` float32 context of ``prompt`` with ComfyUI's CLIPLoader path (type ``wan``) and CLIP Text Encode."""
    import comfy.sd
    import folder_paths

    clip = comfy.sd.load_clip(ckpt_paths=[model_path("text_encoders", text_encoder, "text-encoder")],
                              embedding_directory=folder_paths.get_folder_paths("embeddings"), clip_type=comfy.sd.CLIPType.WAN)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    return cond[0][0][0].float().cpu()


def prompt_context(folder: Path, options: PrepareOptions) -> torch.Tensor:
    """The run's text context: ``prompt.safetensors`` of the run folder, or encoded now and stored there."""
    path = folder / "prompt.safetensors"
    context = load_prompt_context(path, options.prompt, options.text_encoder)
    if context is None:
        context = encode_prompt(options.text_encoder, options.prompt)
        save_prompt_context(path, context, options.prompt, options.text_encoder)
    return context


# --- the models of one process -------------------------------------------------------------------------

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


# --- one video -------------------------------------------------------------------------------------------

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


def _sync_score(encoders: Encoders, frames: torch.Tensor, boxes, fps: float, talk: torch.Tensor, shares: dict) -> dict | str:
    from ..evaluate.lip_sync import lip_sync

    if encoders.syncnet is None:
        return "unavailable"  # why: the manifest's "sync" entry
    if shares["talk"] < SYNC_MIN_TALK:
        return f"not measured: the talk stream speaks in {shares['talk']:.2f} of the frames (< {SYNC_MIN_TALK})"
    result = lip_sync(encoders.syncnet, frames, boxes, fps, talk, AUDIO_RATE)
    return {"lse_c": round(result.lse_c, 3), "lse_d": round(result.lse_d, 3), "offset_frames": int(result.offset_frames)}


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
        state["detector"] = make_detector(frames.shape[1], frames.shape[2])
    images = to_image(frames)
    try:
        track = link_track(detect_faces(state["detector"], images))
    except FaceNotFoundError as err:
        record["scores"]["face"] = round(1.0 - len(err.frames) / err.total, 3)
        record["reason"] = f"face: {err}"
        return record, None
    record["scores"]["face"] = round(track.detected_fraction, 3)
    if track.detected_fraction < options.min_face:
        record["reason"] = f"face: found in {track.detected_fraction:.2f} of the frames (< {options.min_face})"
        return record, None
    talk, listen = streams.talk[a:b], streams.listen[a:b]
    sync = _sync_score(encoders, images, track.boxes, fps, talk, shares)
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


def marker_path(folder: Path, job: VideoJob) -> Path:
    """The done marker of ``job`` in the run folder."""
    return folder / "videos" / f"{job.name}.json"


def is_done(folder: Path, job: VideoJob, shards: Path) -> bool:
    """A marker exists, and the shard it names too."""
    marker = marker_path(folder, job)
    if not marker.is_file():
        return False
    entry = json.loads(marker.read_text(encoding="utf-8"))
    return entry.get("shard") is None or (shards.parent / entry["shard"]).is_file()


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


# --- worker processes ------------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(base_directory: str | None, cpu: bool, options: dict, folder: str, shards: str) -> None:
    from .__main__ import setup_comfy

    setup_comfy(base_directory, cpu)
    opts = PrepareOptions(**options)
    text = load_prompt_context(Path(folder) / "prompt.safetensors", opts.prompt, opts.text_encoder)
    _WORKER.update(options=opts, encoders=load_encoders(opts, text), folder=Path(folder), shards=Path(shards))


def _work(job: VideoJob) -> dict:
    w = _WORKER
    return process_video(job, w["options"], w["encoders"], w["folder"], w["shards"])


# --- the run ---------------------------------------------------------------------------------------------

def summary(entries: list[dict]) -> dict:
    """Counts for the manifest and the log: videos done/skipped, clips kept/dropped by reason, kept seconds."""
    clips = [c for e in entries for c in e["clips"]]
    dropped: dict[str, int] = {}
    for clip in clips:
        if not clip["kept"]:
            kind = clip["reason"].split(":", 1)[0]
            dropped[kind] = dropped.get(kind, 0) + 1
    return {"videos": len(entries), "videos_done": sum(e["status"] == "done" for e in entries),
            "videos_skipped": sum(e["status"] == "skipped" for e in entries),
            "clips_kept": sum(c["kept"] for c in clips), "clips_dropped": len(clips) - sum(c["kept"] for c in clips),
            "dropped_by_reason": dict(sorted(dropped.items())),
            "kept_seconds": round(sum(c["end_s"] - c["start_s"] for c in clips if c["kept"]), 3),
            "shards": [e["shard"] for e in entries if e["shard"]]}


def summary_text(facts: dict, entries: list[dict]) -> str:
    """The lines printed at the end of a run."""
    lines = [f"videos: {facts['videos_done']} done, {facts['videos_skipped']} skipped; clips: {facts['clips_kept']} kept "
             f"({facts['kept_seconds']:.1f} s), {facts['clips_dropped']} dropped"]
    lines += [f"  dropped for {kind}: {count}" for kind, count in facts["dropped_by_reason"].items()]
    lines += [f"  skipped {e['error']}" for e in entries if e["status"] == "skipped"]
    return "\n".join(lines)


def prepare_folder(videos: Path, options: PrepareOptions, workers: int = 1, base_directory: str | None = None,
                   cpu: bool = False, log=print) -> dict:
    """Prepare every video of ``videos`` (resuming a run of the same name); returns the manifest.

    Raises:
        BMInputError: (``videos``) not a folder or no video in it; (``workers``) below 1; options that
            differ from the run's ``options.json``; missing model files.
    """
    from tqdm import tqdm

    videos = Path(videos)
    if not videos.is_dir():
        raise BMInputError("videos", f"{str(videos)!r} is not a folder.", "pass the folder that holds the videos.")
    jobs = find_videos(videos)
    if not jobs:
        raise BMInputError("videos", f"{str(videos)!r} holds no video ({', '.join(s for s in ('.mp4', '.mkv', '.webm', '.mov', '.avi'))}).",
                           "pass the folder that holds the videos.")
    if workers < 1:
        raise BMInputError("workers", f"is {workers}.", "use 1 or more.")
    folder, shards = run_folder(options.name), shard_folder(options.name)
    resumed = check_options(folder, options)
    text = prompt_context(folder, options)
    pending = [job for job in jobs if not is_done(folder, job, shards)]
    if resumed:
        log(f"resuming {options.name!r}: {len(jobs) - len(pending)} of {len(jobs)} videos already done")
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), unit="video", desc=f"prepare {options.name}",
               file=sys.stderr)
    if pending and workers == 1:
        encoders = load_encoders(options, text)
        for job in pending:
            entry = process_video(job, options, encoders, folder, shards)
            bar.update(1)
            bar.set_postfix_str(f"{job.name}: {sum(c['kept'] for c in entry['clips'])} kept")
    elif pending:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(base_directory, cpu, options.to_dict(), str(folder), str(shards))) as pool:
            for future in as_completed([pool.submit(_work, job) for job in pending]):
                entry = future.result()
                bar.update(1)
                bar.set_postfix_str(f"{entry['video']}: {sum(c['kept'] for c in entry['clips'])} kept")
    bar.close()
    entries = [json.loads(marker_path(folder, job).read_text(encoding="utf-8")) for job in jobs]
    facts = summary(entries)
    manifest = {"format": "beyond_monologue.train.prepare", "version": "1", "videos_folder": str(videos),
                "options": options.to_dict(), "sync": sync_status(), "summary": facts, "videos": entries}
    write_json(folder / "manifest.json", manifest)
    toml = "training_sets = [\n" + "".join(f'    "{s}",\n' for s in facts["shards"]) + "]\n"
    write_atomic(folder / "training_sets.toml", lambda p: p.write_text(toml, encoding="utf-8"))
    log(summary_text(facts, entries))
    log(f"manifest: {folder / 'manifest.json'}\nshards: {shards} (training_sets list: {folder / 'training_sets.toml'})")
    return manifest
