"""``--evaluate``: the pack's avatar metrics on each job's downloaded videos, right after the download.

Reuses ``python -m beyond_monologue.evaluate`` (:func:`..evaluate.__main__.evaluate_video`, its CSV
columns and table writer); nothing is measured twice in two ways. For each video among a job's
downloaded files the streams are found as follows (the pack's choice, documented in docs/BATCH.md):

* talk (the avatar's own speech): the job column named by ``--evaluate-talk`` (a local file);
  else a downloaded audio file whose name has the word ``talk`` (e.g. ``3_talk.flac`` from a
  Save Audio with prefix ``talk``); else the video's own soundtrack;
* listen (the other person's speech): ``--evaluate-listen``, else a downloaded audio file named
  with ``listen``; else none (the listening metrics are reported unavailable, with the reason);
* reference portrait (CSIM): the job column named by ``--evaluate-reference``, else none.

Missing metric weights make their metrics unavailable with the reason (which file, which folder,
where from), as in the evaluate command. A video that cannot be measured gets its error; the job
stays done. The results go into the journal (``evaluated``), the job's entry in
``batch_report.json`` (``metrics``) and the batch tables ``batch_metrics.csv`` /
``batch_metrics.json`` (one row per job and video, every job evaluated so far in any run).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from ..errors import BMInputError
from ..evaluate.__main__ import csv_row, evaluate_video, write_tables
from ..evaluate.avatar_metrics import MetricModels
from ..evaluate.video_files import AUDIO_SUFFIXES, VIDEO_SUFFIXES
from .jobs import Job

TABLE_STEM = "batch_metrics"


def _named(files: list[str], word: str) -> str | None:
    """The first audio file of ``files`` whose name has ``word`` as a whole word (``3_talk.flac``)."""
    pattern = re.compile(rf"(^|[^a-z]){word}([^a-z]|$)", re.IGNORECASE)
    return next((f for f in files if Path(f).suffix.lower() in AUDIO_SUFFIXES and pattern.search(Path(f).stem)), None)


class JobEvaluator:
    """Measures the videos of finished jobs (one at a time: the metric networks are shared and use
    every core already).

    Args:
        models: the metric networks or why each is unavailable (``load_metric_models``).
        talk_column / listen_column / reference_column: job columns holding the talk audio,
            listen audio and portrait files (None: see the module docstring).
        every_nth: CSIM compares every Nth frame with the portrait.
    """

    def __init__(self, models: MetricModels, talk_column: str | None = None, listen_column: str | None = None,
                 reference_column: str | None = None, every_nth: int = 10):
        self.models = models
        self.columns = {"talk": talk_column, "listen": listen_column, "reference": reference_column}
        self.every_nth = every_nth
        self._lock = threading.Lock()

    def _column_file(self, job: Job, role: str) -> Path | None:
        column = self.columns[role]
        if column is None:
            return None
        for target, name in job.columns.items():
            value = job.values.get(target)
            if name == column and isinstance(value, Path):
                return value
        return None

    def sources(self, job: Job, out_dir: Path, files: list[str]) -> dict[str, Path | None]:
        """The talk, listen and reference files used for ``job`` (None where there is none)."""
        found = {role: self._column_file(job, role) for role in self.columns}
        for role in ("talk", "listen"):
            if found[role] is None and (name := _named(files, role)) is not None:
                found[role] = Path(out_dir) / name
        return found

    def evaluate(self, job: Job, out_dir: str | Path, files: list[str], log=print) -> list[dict]:
        """Metrics of every video among ``files`` (relative to ``out_dir``): ``[{"video", "sources",
        "report"} or {"video", "sources", "error"}, ...]``; empty when the job saved no video."""
        out_dir = Path(out_dir)
        videos = [f for f in files if Path(f).suffix.lower() in VIDEO_SUFFIXES]
        sources = self.sources(job, out_dir, files)
        named = {role: (str(path) if path else None) for role, path in sources.items()}
        results = []
        for video in videos:
            log(f"job {job.name}: evaluating {video}")
            try:
                with self._lock:
                    report = evaluate_video(out_dir / video, self.models, sources["talk"], sources["listen"],
                                            sources["reference"], self.every_nth)
                results.append({"video": video, "sources": named, "report": report})
            except (BMInputError, OSError, ValueError) as error:
                log(f"job {job.name}: {video} cannot be measured: {error}")
                results.append({"video": video, "sources": named, "error": str(error)})
            except Exception as error:  # noqa: BLE001 -- the job is done; a metric bug must not stop the batch
                log(f"job {job.name}: measuring {video} failed: {type(error).__name__}: {error}")
                results.append({"video": video, "sources": named, "error": f"{type(error).__name__}: {error}"})
        return results

    def write_tables(self, out_dir: str | Path, journal) -> None:
        """``out_dir/batch_metrics.json`` and ``.csv``: every evaluated job of ``journal`` (any run)."""
        reports, rows = [], []
        for name, state in journal.state.jobs.items():
            for entry in state.metrics or []:
                reports.append({"job": name, **entry})
                rows.append({"job": name, **csv_row(entry["video"], entry.get("report"), entry.get("error", ""))})
        if reports:
            write_tables(Path(out_dir), reports, rows, TABLE_STEM, first_columns=("job",))
