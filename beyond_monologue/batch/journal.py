"""The batch journal: an append-only JSONL file in the output folder that makes re-runs safe.

Every line is one event ``{"t": unix seconds, "event": ..., "job": name, ...}``, written whole,
flushed and fsynced before the batch goes on, so that after a crash the file says what happened
up to the last finished step. Events of a job, in order:

* ``submitted`` -- ``prompt_id`` chosen by the client, written *before* ``POST /prompt``. A crash
  between this line and the POST leaves a prompt id the server never heard of (re-queued on the
  next run); a crash after the POST leaves one the server has (followed, never queued again).
* ``queued``    -- ComfyUI accepted the prompt (``number``, ``node_errors``).
* ``lost``      -- the server no longer knows the prompt (it restarted): the job is queued again.
* ``finished``  -- the prompt ended; ``status`` and, on success, the output files to download.
* ``downloaded``-- the job's files are in the output folder (``files``, relative paths).
* ``failed``    -- ``error`` (and ComfyUI's ``node_errors`` for a rejected prompt).
* ``released``  -- the job's prompt was given up because its ``server`` stayed unreachable past
  ``--server-timeout`` (or is not among this run's ``--server``) while another server was still
  up: the job is queued again on a live server. Whatever that old prompt still produces is never
  downloaded (see ``superseded``).
* ``superseded``-- a result of a prompt that is no longer the job's latest submission (a server
  that was given up came back and finished it); recorded for the record, it changes nothing.
* ``evaluated`` -- ``--evaluate`` measured the job's downloaded videos (``metrics``: one
  ``{"video", "report"}`` or ``{"video", "error"}`` per video); does not change the status.
* ``redo``      -- ``--redo`` asked to run the job again. It does not change the job's status;
  the request is *open* until a ``run_end`` line and *pending* until the job's next ``submitted``
  (or a ``run_end``). A re-run with the same ``--redo`` while the request is open does not
  record (or carry out) a second one.

Batch-level events have no job: ``batch`` (first line: ``batch_id``), ``run`` (each invocation)
and ``run_end`` (a run went through every job; a run stopped by Ctrl-C, a crash or an unreachable
server has none). ``run_end`` closes every open ``redo`` request.

A truncated last line (the process was killed while writing it) is ignored on replay.

Several servers (``--server`` repeated): ``submitted``, ``queued``, ``released`` and the result
events carry ``server`` (the ComfyUI address; one-server runs and journals written before
several servers were supported have none: their jobs belong to the first server). Exactly once: a job is done only by a ``downloaded`` line, and
:meth:`Journal.record_current` writes ``finished``/``downloaded`` only for the job's *latest*
prompt, checked and written under the journal's lock, so a prompt that was released and run again
elsewhere can never make a second ``downloaded`` line (it gets ``superseded``). Replay ignores, the
same way, a result line whose ``prompt_id`` is not the job's latest.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_NAME = "batch_journal.jsonl"
_NO_STATUS_EVENTS = ("redo", "superseded", "evaluated")  # events that leave the job's status as it is
_RESULT_EVENTS = ("queued", "finished", "downloaded")  # only the latest prompt's count


class JournalClosed(RuntimeError):
    """A write after :meth:`Journal.close` (a server worker still busy when the run stopped)."""


@dataclass
class JobState:
    """A job's state, folded from its journal events.

    Attributes:
        status: the last event: ``"new"`` (none yet), ``"submitted"``, ``"queued"``, ``"lost"``,
            ``"finished"``, ``"downloaded"``, ``"released"`` or ``"failed"``.
        prompt_id: the prompt id of the latest submission.
        server: the ComfyUI address of the latest submission (``""`` in journals from before
            several servers were supported).
        outputs: files to download (from ``finished``).
        files: downloaded files, relative to the output folder (from ``downloaded``).
        error: the failure message (from ``failed``).
        fingerprint: the job's values hash at its latest submission.
        submissions: how many times the job was submitted, over all runs.
        redo_open: a ``redo`` was requested and no run has ended since: a re-run with the same
            ``--redo`` resumes that request instead of making another.
        redo_pending: a ``redo`` was requested and the job has not been submitted since (nor
            has a run ended): the next run queues it, with or without ``--redo``.
        metrics: the ``metrics`` of the latest ``evaluated`` line since the job was last
            submitted (None: not evaluated).
    """

    status: str = "new"
    prompt_id: str | None = None
    server: str = ""
    outputs: list = field(default_factory=list)
    files: list = field(default_factory=list)
    error: str = ""
    fingerprint: str = ""
    submissions: int = 0
    redo_open: bool = False
    redo_pending: bool = False
    metrics: list | None = None


@dataclass
class Replay:
    """What a journal says: the batch id and the state of every job it mentions."""

    batch_id: str | None = None
    jobs: dict[str, JobState] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    damaged_lines: int = 0


def is_current(state: JobState, entry: dict) -> bool:
    """False for a result line (``queued``/``finished``/``downloaded``) of a prompt that is not the
    job's latest submission: such a line is superseded and must not change the job."""
    return not (entry["event"] in _RESULT_EVENTS and entry.get("prompt_id") and state.prompt_id
                and entry["prompt_id"] != state.prompt_id)


def apply_event(state: JobState, entry: dict) -> None:
    """Fold one job event into its state (``redo`` sets the redo flags and keeps the status;
    ``superseded`` and ``evaluated`` keep it too; a result of an older prompt is ignored)."""
    event = entry["event"]
    if event == "redo":
        state.redo_open = True
        state.redo_pending = state.status not in ("submitted", "queued")  # in flight: that prompt is the redo
        return
    if event == "evaluated":
        state.metrics = entry.get("metrics", [])
        return
    if event in _NO_STATUS_EVENTS or not is_current(state, entry):
        return
    state.status = event
    if event == "submitted":
        state.prompt_id = entry["prompt_id"]
        state.server = entry.get("server", "")
        state.fingerprint = entry.get("fingerprint", "")
        state.submissions += 1
        state.redo_pending = False
        state.outputs, state.files, state.error, state.metrics = [], [], "", None
    elif event == "finished":
        state.outputs = entry.get("outputs", [])
    elif event == "downloaded":
        state.files = entry.get("files", [])
    elif event == "failed":
        state.error = entry.get("error", "")


def replay(path: str | Path) -> Replay:
    """Read a journal (missing file: empty replay). Lines that are not complete JSON objects are
    counted in ``damaged_lines`` and skipped."""
    result = Replay()
    path = Path(path)
    if not path.exists():
        return result
    with open(path, encoding="utf-8") as src:
        for line in src:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or "event" not in entry:
                result.damaged_lines += 1
                continue
            result.events.append(entry)
            if entry.get("job"):
                apply_event(result.jobs.setdefault(entry["job"], JobState()), entry)
            else:
                apply_batch_event(result, entry)
    return result


def apply_batch_event(result: Replay, entry: dict) -> None:
    """Fold one batch-level event: ``batch`` sets the batch id, ``run_end`` closes redo requests."""
    if entry["event"] == "batch":
        result.batch_id = result.batch_id or entry.get("batch_id")
    elif entry["event"] == "run_end":
        for state in result.jobs.values():
            state.redo_open = state.redo_pending = False


def _ends_with_newline(path: Path) -> bool:
    """True for a missing or empty file, or one whose last byte is a newline."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, "rb") as src:
        src.seek(-1, os.SEEK_END)
        return src.read(1) == b"\n"


class Journal:
    """Appends events to ``out_dir/batch_journal.jsonl``; safe to call from several threads (one
    lock orders the lines and the state updates).

    Args:
        out_dir: the batch's output folder (created).
        listener: called with every entry after it is on disk (progress displays, tests).
    """

    def __init__(self, out_dir: str | Path, listener=None):
        self.path = Path(out_dir) / JOURNAL_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.listener = listener
        self._lock = threading.RLock()
        self._closed = False
        self.state = replay(self.path)
        ends_cleanly = _ends_with_newline(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()
        if not ends_cleanly:
            self._file.write("\n")  # a killed writer left half a line: end it, replay skips it
        if self.state.batch_id is None:
            self.state.batch_id = f"{Path(out_dir).resolve().name[:40]}-{uuid.uuid4().hex[:8]}"
            self.record("batch", batch_id=self.state.batch_id)

    @property
    def batch_id(self) -> str:
        """The batch's id (kept across runs): names its upload and server output subfolders."""
        return self.state.batch_id

    def job(self, name: str) -> JobState:
        """The current state of a job (``"new"`` if the journal never mentioned it)."""
        return self.state.jobs.setdefault(name, JobState())

    def record(self, event: str, job: str | None = None, **fields) -> dict:
        """Append one event, flush and fsync it, update the job's state and tell the listener.

        Raises:
            JournalClosed: the journal was closed (the run stopped); nothing was written.
        """
        with self._lock:
            if self._closed:
                raise JournalClosed(f"the batch journal is closed; {event} of job {job} not recorded")
            entry = {"t": round(time.time(), 3), "event": event, **({"job": job} if job else {}), **fields}
            self._file.write(json.dumps(entry, default=str) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.state.events.append(entry)
            if job:
                apply_event(self.job(job), entry)
            else:
                apply_batch_event(self.state, entry)
            if self.listener is not None:
                self.listener(entry)
            return entry

    def record_current(self, event: str, job: str, prompt_id: str, **fields) -> bool:
        """Record a result event (``finished``, ``downloaded``) of ``prompt_id`` only if that prompt
        is still the job's latest submission; otherwise record ``superseded`` (with ``instead`` =
        ``event``) and return False. The check and the write happen under one lock, so two
        servers can never both make a job done.
        """
        with self._lock:
            if self.job(job).prompt_id != prompt_id:
                self.record("superseded", job, prompt_id=prompt_id, instead=event, latest=self.job(job).prompt_id,
                            **{k: v for k, v in fields.items() if k == "server"})
                return False
            self.record(event, job, prompt_id=prompt_id, **fields)
            return True

    def close(self) -> None:
        """Close the file (the journal stays valid at every point, closed or not); later
        :meth:`record` calls raise :class:`JournalClosed`."""
        with self._lock:
            self._closed = True
            self._file.close()
