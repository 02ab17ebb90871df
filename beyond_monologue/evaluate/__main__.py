"""``python -m beyond_monologue.evaluate``: metric weights conversion and metrics over a folder of videos.

    python -m beyond_monologue.evaluate convert syncnet syncnet_v2.model ComfyUI/models/bm_evaluation/syncnet_v2.safetensors
    python -m beyond_monologue.evaluate convert facenet 20180402-114759-vggface2.pt ComfyUI/models/bm_evaluation/facenet_vggface2.safetensors
    python -m beyond_monologue.evaluate videos RESULTS_FOLDER [--comfyui PATH] [--out DIR] [--reference IMAGE]

``videos`` reads every video of the folder with the files beside it (see :mod:`.video_files`),
computes :func:`.avatar_metrics.evaluate_avatar` for each and writes ``metrics.json`` (every report)
and ``metrics.csv`` (one row per video, the headline numbers; empty where unavailable) into
``--out`` (default: the folder). A video that cannot be measured gets its error in the ``error``
column and the others go on. The metric weights are read from ``<ComfyUI>/models/bm_evaluation``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import BMInputError
from .avatar_metrics import MetricModels, evaluate_avatar, load_metric_models
from .convert import KINDS, convert_checkpoint
from .metric_weights import (
    FACENET_FILE,
    FOLDER,
    SYNCNET_FILE,
)
from .video_files import find_jobs, read_audio, read_frames, read_image

CSV_COLUMNS = (
    ("video", None), ("frames", ("video", "frames")), ("fps", ("video", "fps")),
    ("lse_c", ("lip_sync", "lse_c")), ("lse_d", ("lip_sync", "lse_d")), ("offset_frames", ("lip_sync", "offset_frames")),
    ("csim_mean", ("identity", "csim_mean")), ("csim_min", ("identity", "csim_min")),
    ("face_detected_fraction", ("face", "detected_fraction")), ("head_motion_mean", ("head_motion", "mean")),
    ("listen_to_silent_motion_ratio", ("listening", "listen_to_silent_motion_ratio")),
    ("listen_motion_correlation", ("listening", "listen_motion_correlation")),
    ("listen_to_talk_mouth_ratio", ("listening", "listen_to_talk_mouth_ratio")), ("error", None),
)


def load_models(models_dir: Path) -> MetricModels:
    """The metric networks found in ``models_dir/bm_evaluation`` (CPU), or why each is unavailable."""
    folder = Path(models_dir) / FOLDER
    files = {attribute: ((folder / name) if (folder / name).is_file() else None, name)
             for attribute, name in (("syncnet", SYNCNET_FILE), ("embedder", FACENET_FILE))}
    return load_metric_models(files, str(folder))


def models_of_comfyui(comfyui: Path | None, log=print) -> MetricModels:
    """The metric networks of ``<comfyui>/models/bm_evaluation`` (default: the ComfyUI this pack is
    installed in); each missing one is logged as a note and reported unavailable with the reason.
    Used by ``videos`` and by the batch client's ``--evaluate``."""
    from ..weights.cli import default_comfyui
    from ..weights.verify import models_dir_of

    comfyui = comfyui or default_comfyui()
    models = load_models(models_dir_of(comfyui)) if comfyui else MetricModels(
        syncnet_missing="no ComfyUI folder: pass --comfyui", embedder_missing="no ComfyUI folder: pass --comfyui")
    for reason in (models.syncnet_missing if models.syncnet is None else None,
                   models.embedder_missing if models.embedder is None else None):
        if reason:
            log(f"note: {reason}")
    return models


def csv_row(name: str, report: dict | None, error: str = "") -> dict:
    """One CSV row: the headline numbers of ``report`` (empty where unavailable) and the error, if any."""
    row = {"video": name, "error": error}
    for column, path in CSV_COLUMNS:
        if path is None:
            continue
        value = report
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        row[column] = "" if value is None else value
    return row


def evaluate_video(video: Path, models: MetricModels, talk: Path | None = None, listen: Path | None = None,
                   reference: Path | None = None, every_nth: int = 10) -> dict:
    """:func:`.avatar_metrics.evaluate_avatar` of one video file with its audio files.

    Args:
        video: the rendered video (any container PyAV reads).
        talk: the avatar's own speech (default: the video's own soundtrack).
        listen: the other person's speech, or None (the listening metrics are then unavailable).
        reference: the portrait image for CSIM, or None.

    Raises:
        BMInputError, OSError, ValueError: the video cannot be read or measured (see ``evaluate_avatar``).
    """
    frames, fps = read_frames(video)
    talk_stream = read_audio(talk) if talk else read_audio(video)
    listen_stream = read_audio(listen) if listen else None
    return evaluate_avatar(frames, fps, talk_stream, listen_stream, read_image(reference) if reference else None,
                           models, every_nth=every_nth)


def write_tables(out: Path, reports: list[dict], rows: list[dict], stem: str = "metrics",
                 first_columns: tuple[str, ...] = ()) -> None:
    """Write ``out/<stem>.json`` (``reports``) and ``out/<stem>.csv`` (``rows``: ``first_columns``
    then the :data:`CSV_COLUMNS`)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(reports, indent=2))
    with open(out / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*first_columns, *(c for c, _ in CSV_COLUMNS)])
        writer.writeheader()
        writer.writerows(rows)


def evaluate_folder(folder: Path, models: MetricModels, out: Path, reference: Path | None = None,
                    every_nth: int = 10, log=print) -> list[dict]:
    """Measure every video of ``folder``; writes ``out/metrics.json`` and ``out/metrics.csv``; returns the rows."""
    jobs = find_jobs(folder)
    reports, rows = [], []
    for index, job in enumerate(jobs, start=1):
        log(f"[{index}/{len(jobs)}] {job.video.name}")
        try:
            report = evaluate_video(job.video, models, job.talk, job.listen, job.reference or reference, every_nth)
            reports.append({"video": job.video.name, "report": report})
            rows.append(csv_row(job.video.name, report))
        except (BMInputError, OSError, ValueError) as error:
            reports.append({"video": job.video.name, "error": str(error)})
            rows.append(csv_row(job.video.name, None, str(error)))
            log(f"    {error}")
    write_tables(out, reports, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beyond_monologue.evaluate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="public checkpoint -> safetensors (read once, weights_only=True)")
    convert.add_argument("kind", choices=sorted(KINDS))
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    videos = commands.add_parser("videos", help="metrics of every video in a folder -> metrics.csv and metrics.json")
    videos.add_argument("folder", type=Path)
    videos.add_argument("--comfyui", type=Path, default=None,
                        help="ComfyUI folder (or its models folder) holding models/bm_evaluation")
    videos.add_argument("--out", type=Path, default=None, help="where the tables go (default: the folder)")
    videos.add_argument("--reference", type=Path, default=None, help="portrait for videos without NAME.reference.png")
    videos.add_argument("--every-nth", type=int, default=10, help="CSIM compares every Nth frame (default 10)")
    args = parser.parse_args(argv)
    if args.command == "convert":
        print(f"wrote {convert_checkpoint(args.source, args.destination, args.kind)}")
        return 0
    models = models_of_comfyui(args.comfyui)
    rows = evaluate_folder(args.folder, models, args.out or args.folder, args.reference, args.every_nth)
    print(f"{len(rows)} videos -> {(args.out or args.folder) / 'metrics.csv'}")
    return 1 if rows and all(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
