"""Run prepared jobs on a ComfyUI server, journalled so that a re-run resumes without loss or repeats.

Per job: upload its files, patch the workflow, write ``submitted`` (with a client-chosen prompt
id), ``POST /prompt``, write ``queued``, follow it over ``/ws`` (confirmed through ``/history``),
write ``finished``, download its output files, write ``downloaded``. Up to ``queue_ahead`` more
jobs wait in ComfyUI's queue so the server never idles between jobs.

On start the journal decides each job's way in (:meth:`BatchRunner._plan`):

* ``downloaded`` with its files present -- skipped;
* ``finished`` (or ``downloaded`` with files missing) -- downloaded again;
* ``submitted``/``queued`` -- followed, even with ``--redo``: a prompt the server still has
  (pending, running or in its history) is never queued twice; one it does not know is queued
  again (``lost``). A ``queued`` one was lost by a server restart and uses up a try; a
  ``submitted`` one was never confirmed by the server (the client stopped between journalling
  it and the POST) and is queued again without using a try;
* a pending ``redo`` request -- queued (see :class:`BatchOptions` ``redo``);
* ``lost``, ``failed`` or never seen -- queued (failed ones again unless ``skip_failed``).

A run that goes through every job ends with a ``run_end`` line; a run stopped early (Ctrl-C,
crash, :class:`BatchAborted`) has none, so the next run resumes it.

Failures: a rejected prompt (``PromptRejected``: ComfyUI's validation) and an execution error
fail the job at once; a lost prompt or an out-of-memory error is retried ``retries`` times. An
output whose local path would leave the job's folder fails the job. An
unreachable server (connection refused/reset, HTTP 5xx) is retried with backoff for
``server_timeout_s`` seconds, then the run stops with :class:`BatchAborted` (journal intact).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..comfyui.comfy_client import ComfyClient, ComfyError, ComfyUnavailable, PromptLost, PromptRejected
from .jobs import BatchSetupError, Job
from .journal import Journal
from .outputs import local_destination, output_files
from .patching import file_digest, job_fingerprint, patch_prompt
from .progress import BatchProgress
from .report import JobOutcome, write_report

try:
    import fcntl
except ImportError:  # Windows: no advisory lock
    fcntl = None

UPLOAD_ROOT = "bm_batch"
_TRANSIENT_ERRORS = ("OutOfMemoryError", "OutOfMemory")


class BatchAborted(RuntimeError):
    """The server stayed unreachable; the journal is intact and a re-run resumes the batch."""


@dataclass
class BatchOptions:
    """Settings of one run (the command-line flags of ``python -m beyond_monologue.batch``).

    Attributes:
        queue_ahead: jobs kept waiting in ComfyUI's queue besides the one followed.
        retries: extra tries for a lost prompt (server restart) or an out-of-memory error.
        job_timeout_s: seconds one job may take once queued; then it is interrupted and failed.
        server_timeout_s: seconds the server may stay unreachable before the run is aborted.
        include_temp: also download ``temp`` files (previews).
        skip_failed: leave jobs that failed in an earlier run failed instead of trying again.
        redo: names of jobs to run again. Each request is written to the journal (``redo``) and
            carried out once: a re-run with the same ``redo`` after a run that stopped early
            (Ctrl-C, crash, unreachable server) resumes the request instead of running the job
            yet again; after a run that went through to its end, ``redo`` is a new request. A
            job whose prompt is still queued or running is followed, and that prompt counts as
            the redo (no second copy is queued). A redo also runs a failed job under
            ``skip_failed``.
        progress: draw progress bars.
    """

    queue_ahead: int = 1
    retries: int = 2
    job_timeout_s: float = 3600.0
    server_timeout_s: float = 300.0
    include_temp: bool = False
    skip_failed: bool = False
    redo: tuple = ()
    progress: bool = True


class BatchRunner:
    """One run of a batch over prepared jobs (see :func:`.patching.prepare_jobs`).

    Args:
        client: the ComfyUI client.
        workflow: the API-format workflow.
        jobs: prepared jobs, in file order.
        out_dir: the output folder (journal, report and one sub-folder per job).
        options: run settings.
        listener: called with every journal entry once it is on disk.
    """

    def __init__(self, client: ComfyClient, workflow: dict, jobs: list[Job], out_dir: str | Path,
                 options: BatchOptions | None = None, listener: Callable[[dict], None] | None = None):
        self.client = client
        self.workflow = workflow
        self.jobs = {job.name: job for job in jobs}
        self.out_dir = Path(out_dir)
        self.options = options or BatchOptions()
        self.listener = listener
        self.journal: Journal | None = None
        self.progress: BatchProgress | None = None
        self.outcomes: dict[str, JobOutcome] = {}
        self.tries: dict[str, int] = {}
        self.todo: deque[str] = deque()
        self.inflight: deque[str] = deque()
        self._uploaded: dict[str, str] = {}

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> list[JobOutcome]:
        """Run every job not done yet; returns one outcome per job, in file order.

        When every job has ended (done, skipped or failed) the journal gets a ``run_end`` line,
        which closes this run's ``redo`` requests; an exception (Ctrl-C included) leaves none.

        Raises:
            BatchAborted: the server stayed unreachable (outcomes and report are written first).
            BatchSetupError: another run holds this output folder.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self.journal = Journal(self.out_dir, self.listener)
            self.outcomes = {name: JobOutcome(name, "pending") for name in self.jobs}
            aborted = ""
            try:
                downloads = self._plan()
                skipped = sum(o.status == "skipped" for o in self.outcomes.values())
                kept_failed = sum(o.status == "failed" for o in self.outcomes.values())
                self.progress = BatchProgress(len(self.jobs), skipped + kept_failed, self.options.progress)
                self.journal.record("run", jobs=len(self.jobs), already_done=skipped, kept_failed=kept_failed)
                for name in downloads:
                    self._download(name)
                while True:
                    while self.todo and len(self.inflight) <= self.options.queue_ahead:
                        self._submit(self.todo.popleft())
                    if not self.inflight:
                        break
                    self._follow(self.inflight.popleft())
                self.journal.record("run_end")
            except BatchAborted as error:
                aborted = str(error)
                raise
            finally:
                if self.progress is not None:
                    self.progress.close()
                for name, outcome in self.outcomes.items():
                    state = self.journal.job(name)
                    outcome.prompt_id, outcome.submissions = state.prompt_id, state.submissions
                write_report(self.out_dir, list(self.outcomes.values()), aborted)
                self.journal.close()
        return list(self.outcomes.values())

    @contextlib.contextmanager
    def _lock(self):
        """Hold ``out_dir/.batch.lock`` so that two runs never work on one output folder at once."""
        with open(self.out_dir / ".batch.lock", "w") as handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise BatchSetupError([f"another batch run is using {self.out_dir}; wait for it or stop it"]) from None
            yield

    def _plan(self) -> list[str]:
        """Sort jobs by their journal state into skipped, to download, to follow and to queue.

        Each ``redo`` name gets a ``redo`` journal line unless its request from an earlier run
        is still open (that run stopped early); a job in flight is followed, never queued twice.
        Returns the jobs to download again.
        """
        downloads = []
        for name, job in self.jobs.items():
            state = self.journal.job(name)
            outcome = self.outcomes[name]
            in_flight = state.status in ("submitted", "queued")
            if name in self.options.redo and not state.redo_open:
                self.journal.record("redo", name, prompt_id=state.prompt_id)
                if in_flight:
                    outcome.warnings.append("--redo: its prompt from an earlier run is still queued or running; "
                                            "that prompt is followed instead of queueing a copy")
            if in_flight:
                self.inflight.append(name)
            elif state.redo_pending:
                self.todo.append(name)
            elif state.status == "downloaded" and all((self.out_dir / f).is_file() for f in state.files):
                outcome.status, outcome.files = "skipped", list(state.files)
                if name in self.options.redo:
                    outcome.warnings.append("--redo: an earlier run of this batch, stopped before its end, already ran "
                                            "it again; the request is not repeated (once a run has gone through to its "
                                            "end, --redo runs it again)")
                elif state.fingerprint and state.fingerprint != job_fingerprint(job):
                    outcome.warnings.append("its values or files changed since it was done; "
                                            f"the old result is kept (--redo {name} runs it again)")
            elif state.status in ("finished", "downloaded") and state.outputs:
                downloads.append(name)
            elif state.status == "failed" and self.options.skip_failed:
                outcome.status, outcome.error = "failed", state.error
            else:
                self.todo.append(name)
        return downloads

    # -- steps ------------------------------------------------------------------------------
    def _submit(self, name: str) -> None:
        """Upload the job's files, then journal and POST its prompt (idempotent under retries)."""
        job = self.jobs[name]
        prefix_root = f"{UPLOAD_ROOT}/{self.journal.batch_id}"
        try:
            uploaded = {target: self._upload(path, prefix_root) for target, path in job.values.items()
                        if isinstance(path, Path)}
        except (ComfyError, OSError) as error:
            self._fail(name, f"could not upload its input files: {error}")
            return
        prompt = patch_prompt(self.workflow, job, uploaded, prefix_root, self.journal.job(name).submissions + 1)
        prompt_id = str(uuid.uuid4())
        self.journal.record("submitted", name, prompt_id=prompt_id, fingerprint=job_fingerprint(job))
        tries = 0

        def post() -> dict:
            nonlocal tries
            tries += 1
            # a POST whose answer was lost may still have queued the prompt: never send it twice
            if tries > 1 and self.client.prompt_state(prompt_id) != "unknown":
                return {"prompt_id": prompt_id, "number": None, "node_errors": {}}
            return self.client.submit(prompt, prompt_id)

        try:
            answer = self._retrying(post, f"queueing job {name}")
        except PromptRejected as error:
            self._fail(name, str(error), node_errors=error.node_errors)
            return
        node_errors = answer.get("node_errors") or {}
        self.journal.record("queued", name, prompt_id=prompt_id, number=answer.get("number"), node_errors=node_errors)
        if node_errors:
            self.outcomes[name].warnings.append(f"ComfyUI queued only the valid outputs; node errors: {node_errors}")
        self.inflight.append(name)

    def _upload(self, path: Path, subfolder: str) -> str:
        """Upload a local file once per run as ``<sha256 prefix>_<name>`` into ``subfolder``."""
        digest = file_digest(path)
        if digest not in self._uploaded:
            self._uploaded[digest] = self._retrying(
                lambda: self.client.upload_file(path, f"{digest[:12]}_{path.name}", subfolder), f"uploading {path}")
        return self._uploaded[digest]

    def _follow(self, name: str) -> None:
        """Wait for the job's prompt to end, then download or fail or retry it."""
        prompt_id = self.journal.job(name).prompt_id
        self.progress.start_job(name, self.workflow)
        try:
            result = self.client.wait(prompt_id, self.options.job_timeout_s, self.progress.on_event,
                                      down_timeout_s=self.options.server_timeout_s)
        except PromptLost:
            # only `submitted`: the server never confirmed the prompt (the client stopped before or
            # during the POST), so no try of the job was used up
            was_queued = self.journal.job(name).status != "submitted"
            self.journal.record("lost", name, prompt_id=prompt_id, was_queued=was_queued)
            if was_queued:
                self._retry_or_fail(name, "the server lost the prompt (it restarted while the job was queued or running)")
            else:
                self.progress.message(f"job {name}: the server never confirmed its prompt (the last run stopped "
                                      "while queueing it); queueing it again, not counted as a retry")
                self.todo.appendleft(name)
            return
        except ComfyUnavailable as error:
            raise BatchAborted(str(error)) from None
        except ComfyError as error:  # an error answer, not a lost prompt: queueing again could run it twice
            self._fail(name, f"following its prompt failed: {error}")
            return
        except TimeoutError:
            with contextlib.suppress(ComfyError):
                self.client.interrupt(prompt_id)
                self.client.delete_queued([prompt_id])
            self._fail(name, f"did not finish within {self.options.job_timeout_s:.0f} s (--job-timeout); interrupted")
            return
        if result.status == "success":
            files = output_files(result.outputs, self.options.include_temp)
            self.journal.record("finished", name, prompt_id=prompt_id, status="success", outputs=files)
            self._download(name)
            return
        self.journal.record("finished", name, prompt_id=prompt_id, status=result.status)
        message = result.error_message() or f"the prompt ended with status {result.status!r}"
        errors = [data for kind, data in result.messages if kind == "execution_error"]
        if any(t in str(e.get("exception_type", "")) for e in errors for t in _TRANSIENT_ERRORS):
            self._retry_or_fail(name, message)
        else:
            self._fail(name, message)

    def _download(self, name: str) -> None:
        """Download the files of a finished job into ``out_dir/<name>/``.

        The job fails, with nothing of it downloaded, when any output's local path would
        resolve outside that folder (see :func:`.outputs.local_destination`).
        """
        state = self.journal.job(name)
        if not state.outputs:
            self._fail(name, "finished without saving any output file (does the workflow end in a Save node? "
                             "previews are downloaded only with --include-previews)")
            return
        for item in state.outputs:
            try:
                local_destination(self.out_dir / name, item["local"])
            except ValueError as error:
                self._fail(name, f"output {item['filename']!r} of node {item.get('node')!r} not downloaded: {error}")
                return
        files = []
        for item in state.outputs:
            relative = f"{name}/{item['local']}"
            try:
                self._retrying(lambda item=item, relative=relative: self.client.download(
                    item["filename"], item["subfolder"], item["type"], self.out_dir / relative), f"downloading {relative}")
            except ComfyError as error:
                if error.status != 404:
                    self._fail(name, f"downloading {item['filename']} failed: {error}")
                    return
                self.journal.record("lost", name, prompt_id=state.prompt_id, missing=item["filename"])
                self._retry_or_fail(name, f"output {item['filename']} is gone from the server")
                return
            except OSError as error:
                self._fail(name, f"cannot write {self.out_dir / relative}: {error}")
                return
            files.append(relative)
        self.journal.record("downloaded", name, prompt_id=state.prompt_id, files=files)
        self.outcomes[name].status, self.outcomes[name].files = "done", files
        self.progress.job_done()

    # -- failures and retries ---------------------------------------------------------------
    def _retry_or_fail(self, name: str, reason: str) -> None:
        self.tries[name] = self.tries.get(name, 0) + 1
        if self.tries[name] > self.options.retries:
            self._fail(name, f"{reason}; gave up after {self.tries[name]} tries (--retries {self.options.retries})")
            return
        self.progress.message(f"job {name}: {reason}; queueing it again")
        self.todo.appendleft(name)

    def _fail(self, name: str, error: str, node_errors: dict | None = None) -> None:
        self.journal.record("failed", name, prompt_id=self.journal.job(name).prompt_id, error=error,
                            node_errors=node_errors or {})
        outcome = self.outcomes[name]
        outcome.status, outcome.error, outcome.node_errors = "failed", error, node_errors or {}
        self.progress.message(f"job {name} FAILED: {error}")
        self.progress.job_done()

    def _retrying(self, call: Callable[[], object], what: str):
        """``call()``, retried with backoff (1 s doubling to 30 s) while the server is unreachable or
        answers 5xx, for at most ``server_timeout_s``.

        Raises:
            BatchAborted: still failing after ``server_timeout_s``.
        """
        started, delay = time.monotonic(), 1.0
        while True:
            try:
                return call()
            except ComfyError as error:
                transient = isinstance(error, ComfyUnavailable) or (error.status or 0) >= 500
                if not transient:
                    raise
                if time.monotonic() - started > self.options.server_timeout_s:
                    raise BatchAborted(f"{what}: {error}") from None
                self.progress.message(f"{what}: {error}; retrying in {delay:.0f} s")
                time.sleep(delay)
                delay = min(30.0, delay * 2)
