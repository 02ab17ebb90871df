"""``python -m beyond_monologue.train prepare``: a folder of conversation videos -> training-set shards and a manifest.

Per video (:func:`.prepare_video.prepare_video`): the on-screen speaker's talk/listen streams
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

import json
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..errors import BMInputError
from .prepare_media import VideoJob, find_videos
from .prepare_state import (
    PrepareOptions,
    check_options,
    is_done,
    load_prompt_context,
    marker_path,
    prompt_context,
    run_folder,
    shard_folder,
    write_atomic,
    write_json,
)
from .prepare_video import load_encoders, process_video, sync_status

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
