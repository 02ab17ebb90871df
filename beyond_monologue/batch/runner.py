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

Several servers (one client per ``--server``): one worker thread per server takes jobs from one
shared queue (in file order) and keeps up to ``queue_ahead`` more waiting in its server's queue.
A server that stays unreachable past ``server_timeout_s`` is given up for the run: its in-flight
jobs are journalled ``released`` and go back to the shared queue (each uses one of the
``retries``: a job that crashes every server it meets must end), and the run goes on with the
others; it stops with :class:`BatchAborted` only when every server is given up, leaving the last
server's jobs in flight in the journal (the next run follows them there, as with one server).
Exactly once: a job is done only by its ``downloaded`` line, written only for the job's latest
prompt (:meth:`.journal.Journal.record_current`); a released prompt that a server still finishes
is ``superseded``, never downloaded. A re-run follows each in-flight job on the server that its
``submitted`` line names (the first server for journals without one); a job in flight on a server
that is not among this run's servers is released and queued again. With one server the run
happens in the calling thread and behaves exactly as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..comfyui.comfy_client import ComfyClient, ComfyError, ComfyUnavailable, PromptLost, PromptRejected
from .jobs import BatchSetupError, Job
from .journal import Journal
from .outputs import local_destination, output_files
from .patching import file_digest, job_fingerprint, patch_prompt
from .progress import BatchProgress
from .report import JobOutcome, write_report
from .servers import ServerDown, ServerSlot, make_slots, run_workers

try:
    import fcntl
except ImportError:  # Windows: no advisory lock
    fcntl = None

UPLOAD_ROOT = "bm_batch"
_TRANSIENT_ERRORS = ("OutOfMemoryError", "OutOfMemory")


class BatchAborted(RuntimeError):
    """Every server stayed unreachable; the journal is intact and a re-run resumes the batch."""


@dataclass
class BatchOptions:
    """Settings of one run (the command-line flags of ``python -m beyond_monologue.batch``).

    Attributes:
        queue_ahead: jobs kept waiting in ComfyUI's queue besides the one followed.
        retries: extra tries for a lost prompt (server restart) or an out-of-memory error.
        job_timeout_s: seconds one job may take once queued; then it is interrupted and failed.
        server_timeout_s: seconds a server may stay unreachable before it is given up (the run
            is aborted when that was the last server).
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
        evaluator: measures each job's downloaded videos after its download (``--evaluate``,
            a :class:`.evaluation.JobEvaluator`); None: no metrics.
    """

    queue_ahead: int = 1
    retries: int = 2
    job_timeout_s: float = 3600.0
    server_timeout_s: float = 300.0
    include_temp: bool = False
    skip_failed: bool = False
    redo: tuple = ()
    progress: bool = True
    evaluator: object | None = None


class BatchRunner:
    """One run of a batch over prepared jobs (see :func:`.patching.prepare_jobs`).

    Args:
        client: the ComfyUI client, or a sequence of clients (one per server; the jobs are spread
            over them, see the module docstring).
        workflow: the API-format workflow.
        jobs: prepared jobs, in file order.
        out_dir: the output folder (journal, report and one sub-folder per job).
        options: run settings.
        listener: called with every journal entry once it is on disk (from the worker thread of
            the server concerned when there are several).
    """

    def __init__(self, client: ComfyClient | Sequence[ComfyClient], workflow: dict, jobs: list[Job],
                 out_dir: str | Path, options: BatchOptions | None = None,
                 listener: Callable[[dict], None] | None = None):
        clients = list(client) if isinstance(client, (list, tuple)) else [client]
        if not clients:
            raise ValueError("BatchRunner needs at least one ComfyUI client")
        self.servers: list[ServerSlot] = make_slots(clients)
        self.client = clients[0]
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
        self._cond = threading.Condition(threading.RLock())  # guards todo, tries, outcomes, slots, _busy
        self._busy = 0  # jobs taken from `todo` (or planned in flight) and not yet ended or queued again
        self._stop = False
        self._aborted = ""

    @property
    def inflight(self) -> deque:
        """The first server's in-flight jobs (the one-server view)."""
        return self.servers[0].inflight

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> list[JobOutcome]:
        """Run every job not done yet; returns one outcome per job, in file order.

        When every job has ended (done, skipped or failed) the journal gets a ``run_end`` line,
        which closes this run's ``redo`` requests; an exception (Ctrl-C included) leaves none.

        Raises:
            BatchAborted: every server stayed unreachable (outcomes and report are written first).
            BatchSetupError: another run holds this output folder.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self.journal = Journal(self.out_dir, self.listener)
            self.outcomes = {name: JobOutcome(name, "pending") for name in self.jobs}
            aborted = ""
            try:
                downloads, evaluations = self._plan()
                skipped = sum(o.status == "skipped" for o in self.outcomes.values())
                kept_failed = sum(o.status == "failed" for o in self.outcomes.values())
                self.progress = BatchProgress(len(self.jobs), skipped + kept_failed, self.options.progress)
                self.journal.record("run", jobs=len(self.jobs), already_done=skipped, kept_failed=kept_failed,
                                    **({"servers": [s.url for s in self.servers]} if len(self.servers) > 1 else {}))
                for name in evaluations:
                    self._evaluate(name)
                for slot, name in downloads:
                    self._download_planned(slot, name)
                if len(self.servers) == 1:
                    self._work(self.servers[0])
                else:
                    self._work_in_threads()
                if self._aborted:
                    raise BatchAborted(self._aborted)
                self.journal.record("run_end")
            except BatchAborted as error:
                aborted = str(error)
                raise
            finally:
                with self._cond:
                    self._halt()
                    if self.progress is not None:
                        self.progress.close()
                    for name, outcome in self.outcomes.items():
                        state = self.journal.job(name)
                        outcome.prompt_id, outcome.submissions = state.prompt_id, state.submissions
                        outcome.server = state.server
                        if state.metrics is not None:
                            outcome.metrics = state.metrics
                    write_report(self.out_dir, list(self.outcomes.values()), aborted)
                    if self.options.evaluator is not None:
                        self.options.evaluator.write_tables(self.out_dir, self.journal)
                    self.journal.close()
        return list(self.outcomes.values())

    def _work_in_threads(self) -> None:
        """One worker thread per server (:func:`.servers.run_workers`)."""
        run_workers(self.servers, self._work, self._halt)

    def _halt(self) -> None:
        """Stop every worker at its next step (Ctrl-C, an error in one worker)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def _work(self, slot: ServerSlot) -> None:
        """The loop of one server: queue jobs while fewer than ``queue_ahead`` + 1 wait on it,
        else follow its oldest; return when no job is left anywhere (or the run stops)."""
        while True:
            with self._cond:
                while True:
                    if self._stop or slot.retired:
                        return
                    if self.todo and len(slot.inflight) <= self.options.queue_ahead:
                        step, name = self._submit, self.todo.popleft()
                        self._busy += 1
                        break
                    if slot.inflight:
                        step, name = self._follow, slot.inflight.popleft()
                        break
                    if self._busy == 0 and not self.todo:
                        self._cond.notify_all()
                        return
                    self._cond.wait(0.5)  # another server may still hand jobs back
            try:
                step(slot, name)
            except ServerDown as error:
                self._give_up(slot, name, str(error))

    def _download_planned(self, slot: ServerSlot, name: str) -> None:
        """Download a job an earlier run finished (before the workers start)."""
        if self._stop:
            return  # the last server was given up: the job stays `finished`, the next run downloads it
        if slot.retired:
            self._give_up(slot, name, slot.retired)
            return
        try:
            self._download(slot, name)
        except ServerDown as error:
            self._give_up(slot, name, str(error))

    def _give_up(self, slot: ServerSlot, name: str, reason: str) -> None:
        """``slot``'s server stayed unreachable while working on ``name``: release its jobs to the
        live servers, or stop the run (:class:`BatchAborted`) when it was the last one."""
        with self._cond:
            slot.retired = reason
            names = [name, *slot.inflight]
            slot.inflight.clear()
            if all(s.retired for s in self.servers):
                # the last server: its jobs stay in flight in the journal; the next run follows them
                self._aborted = reason
                self._stop = True
                self._cond.notify_all()
                return
            self.progress.message(f"server {slot.url} given up ({reason}); its {len(names)} job(s) go to the other servers")
            for job in names:
                state = self.journal.job(job)
                if state.status not in ("submitted", "queued", "finished", "downloaded"):
                    self._requeue(job)  # nothing of it reached the server (its upload failed)
                    continue
                self.journal.record("released", job, prompt_id=state.prompt_id, server=slot.url, reason=reason)
                self._retry_or_fail(job, f"server {slot.url} stayed unreachable")
            self._cond.notify_all()

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

    def _slot_of(self, server: str) -> ServerSlot | None:
        """The slot of the server a journal line names (``""``, from an older journal: the first)."""
        if not server:
            return self.servers[0]
        return next((slot for slot in self.servers if slot.url == server), None)

    def _plan(self) -> tuple[list[tuple[ServerSlot, str]], list[str]]:
        """Sort jobs by their journal state into skipped, to download, to follow and to queue.

        Each ``redo`` name gets a ``redo`` journal line unless its request from an earlier run
        is still open (that run stopped early); a job in flight is followed on its server, never
        queued twice (released and queued again when its server is not among this run's).
        Returns the jobs to download again (with the server to download from) and the skipped
        jobs still to evaluate (``--evaluate``).
        """
        downloads, evaluations = [], []
        for name, job in self.jobs.items():
            state = self.journal.job(name)
            outcome = self.outcomes[name]
            in_flight = state.status in ("submitted", "queued")
            if name in self.options.redo and not state.redo_open:
                self.journal.record("redo", name, prompt_id=state.prompt_id)
                if in_flight:
                    outcome.warnings.append("--redo: its prompt from an earlier run is still queued or running; "
                                            "that prompt is followed instead of queueing a copy")
            slot = self._slot_of(state.server)
            if in_flight and slot is None:
                self.journal.record("released", name, prompt_id=state.prompt_id, server=state.server,
                                    reason="not among this run's --server")
                outcome.warnings.append(f"its prompt on {state.server} (not among this run's --server) was given up "
                                        "and the job queued again; that server's result, if any, is ignored")
                self.todo.append(name)
            elif in_flight:
                slot.inflight.append(name)
                self._busy += 1
            elif state.redo_pending:
                self.todo.append(name)
            elif state.status == "downloaded" and all((self.out_dir / f).is_file() for f in state.files):
                outcome.status, outcome.files = "skipped", list(state.files)
                if self.options.evaluator is not None and state.metrics is None:
                    evaluations.append(name)
                if name in self.options.redo:
                    outcome.warnings.append("--redo: an earlier run of this batch, stopped before its end, already ran "
                                            "it again; the request is not repeated (once a run has gone through to its "
                                            "end, --redo runs it again)")
                elif state.fingerprint and state.fingerprint != job_fingerprint(job):
                    outcome.warnings.append("its values or files changed since it was done; "
                                            f"the old result is kept (--redo {name} runs it again)")
            elif state.status in ("finished", "downloaded") and state.outputs and slot is not None:
                downloads.append((slot, name))
                self._busy += 1
            elif state.status == "failed" and self.options.skip_failed:
                outcome.status, outcome.error = "failed", state.error
            else:
                self.todo.append(name)
        return downloads, evaluations

    # -- steps ------------------------------------------------------------------------------
    def _submit(self, slot: ServerSlot, name: str) -> None:
        """Upload the job's files, then journal and POST its prompt (idempotent under retries)."""
        job = self.jobs[name]
        client = slot.client
        prefix_root = f"{UPLOAD_ROOT}/{self.journal.batch_id}"
        try:
            uploaded = {target: self._upload(slot, path, prefix_root) for target, path in job.values.items()
                        if isinstance(path, Path)}
        except (ComfyError, OSError) as error:
            self._fail(name, f"could not upload its input files: {error}")
            return
        prompt = patch_prompt(self.workflow, job, uploaded, prefix_root, self.journal.job(name).submissions + 1)
        prompt_id = str(uuid.uuid4())
        self.journal.record("submitted", name, prompt_id=prompt_id, fingerprint=job_fingerprint(job),
                            **self._server_field(slot))
        tries = 0

        def post() -> dict:
            nonlocal tries
            tries += 1
            # a POST whose answer was lost may still have queued the prompt: never send it twice
            if tries > 1 and client.prompt_state(prompt_id) != "unknown":
                return {"prompt_id": prompt_id, "number": None, "node_errors": {}}
            return client.submit(prompt, prompt_id)

        try:
            answer = self._retrying(slot, post, f"queueing job {name}")
        except PromptRejected as error:
            self._fail(name, str(error), node_errors=error.node_errors)
            return
        node_errors = answer.get("node_errors") or {}
        self.journal.record("queued", name, prompt_id=prompt_id, number=answer.get("number"), node_errors=node_errors,
                            **self._server_field(slot))
        if node_errors:
            self.outcomes[name].warnings.append(f"ComfyUI queued only the valid outputs; node errors: {node_errors}")
        with self._cond:
            slot.inflight.append(name)

    def _server_field(self, slot: ServerSlot) -> dict:
        """``{"server": url}`` for the journal when there are several servers (one: no field, as before)."""
        return {"server": slot.url} if len(self.servers) > 1 else {}

    def _upload(self, slot: ServerSlot, path: Path, subfolder: str) -> str:
        """Upload a local file once per run and server as ``<sha256 prefix>_<name>`` into ``subfolder``."""
        digest = file_digest(path)
        if digest not in slot.uploaded:
            slot.uploaded[digest] = self._retrying(
                slot, lambda: slot.client.upload_file(path, f"{digest[:12]}_{path.name}", subfolder), f"uploading {path}")
        return slot.uploaded[digest]

    def _follow(self, slot: ServerSlot, name: str) -> None:
        """Wait for the job's prompt to end, then download or fail or retry it.

        Raises:
            ServerDown: the server stayed unreachable past ``server_timeout_s``.
        """
        prompt_id = self.journal.job(name).prompt_id
        self.progress.start_job(name, self.workflow)
        try:
            result = slot.client.wait(prompt_id, self.options.job_timeout_s,
                                      lambda kind, data: self.progress.on_event(kind, data, name),
                                      down_timeout_s=self.options.server_timeout_s)
        except PromptLost:
            # only `submitted`: the server never confirmed the prompt (the client stopped before or
            # during the POST), so no try of the job was used up
            was_queued = self.journal.job(name).status != "submitted"
            self.journal.record("lost", name, prompt_id=prompt_id, was_queued=was_queued, **self._server_field(slot))
            if was_queued:
                self._retry_or_fail(name, "the server lost the prompt (it restarted while the job was queued or running)")
            else:
                self.progress.message(f"job {name}: the server never confirmed its prompt (the last run stopped "
                                      "while queueing it); queueing it again, not counted as a retry")
                self._requeue(name)
            return
        except ComfyUnavailable as error:
            raise ServerDown(str(error)) from None
        except ComfyError as error:  # an error answer, not a lost prompt: queueing again could run it twice
            self._fail(name, f"following its prompt failed: {error}")
            return
        except TimeoutError:
            with contextlib.suppress(ComfyError):
                slot.client.interrupt(prompt_id)
                slot.client.delete_queued([prompt_id])
            self._fail(name, f"did not finish within {self.options.job_timeout_s:.0f} s (--job-timeout); interrupted")
            return
        if result.status == "success":
            files = output_files(result.outputs, self.options.include_temp)
            if self.journal.record_current("finished", name, prompt_id, status="success", outputs=files,
                                           **self._server_field(slot)):
                self._download(slot, name)
            return
        if not self.journal.record_current("finished", name, prompt_id, status=result.status, **self._server_field(slot)):
            return
        message = result.error_message() or f"the prompt ended with status {result.status!r}"
        errors = [data for kind, data in result.messages if kind == "execution_error"]
        if any(t in str(e.get("exception_type", "")) for e in errors for t in _TRANSIENT_ERRORS):
            self._retry_or_fail(name, message)
        else:
            self._fail(name, message)

    def _download(self, slot: ServerSlot, name: str) -> None:
        """Download the files of a finished job from ``slot``'s server into ``out_dir/<name>/``.

        The job fails, with nothing of it downloaded, when any output's local path would
        resolve outside that folder (see :func:`.outputs.local_destination`). The ``downloaded``
        line is written only if the prompt is still the job's latest (else ``superseded``).

        Raises:
            ServerDown: the server stayed unreachable past ``server_timeout_s``.
        """
        state = self.journal.job(name)
        prompt_id = state.prompt_id
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
        for item in list(state.outputs):
            relative = f"{name}/{item['local']}"
            try:
                self._retrying(slot, lambda item=item, relative=relative: slot.client.download(
                    item["filename"], item["subfolder"], item["type"], self.out_dir / relative), f"downloading {relative}")
            except ComfyError as error:
                if error.status != 404:
                    self._fail(name, f"downloading {item['filename']} failed: {error}")
                    return
                self.journal.record("lost", name, prompt_id=prompt_id, missing=item["filename"], **self._server_field(slot))
                self._retry_or_fail(name, f"output {item['filename']} is gone from the server")
                return
            except OSError as error:
                self._fail(name, f"cannot write {self.out_dir / relative}: {error}")
                return
            files.append(relative)
        if not self.journal.record_current("downloaded", name, prompt_id, files=files, **self._server_field(slot)):
            return
        with self._cond:
            self.outcomes[name].status, self.outcomes[name].files = "done", files
            slot.done += 1
            self._busy -= 1
            self._cond.notify_all()
        self.progress.job_done()
        if self.options.evaluator is not None:
            self._evaluate(name)

    def _evaluate(self, name: str) -> None:
        """``--evaluate``: measure the job's downloaded videos and journal ``evaluated`` (never fails the job)."""
        metrics = self.options.evaluator.evaluate(self.jobs[name], self.out_dir, self.journal.job(name).files,
                                                  self.progress.message)
        self.journal.record("evaluated", name, prompt_id=self.journal.job(name).prompt_id, metrics=metrics)
        self.outcomes[name].metrics = metrics

    # -- failures and retries ---------------------------------------------------------------
    def _requeue(self, name: str) -> None:
        """Put a job back at the front of the shared queue (it is no longer busy)."""
        with self._cond:
            self.todo.appendleft(name)
            self._busy -= 1
            self._cond.notify_all()

    def _retry_or_fail(self, name: str, reason: str) -> None:
        with self._cond:
            self.tries[name] = self.tries.get(name, 0) + 1
            tries = self.tries[name]
        if tries > self.options.retries:
            self._fail(name, f"{reason}; gave up after {tries} tries (--retries {self.options.retries})")
            return
        self.progress.message(f"job {name}: {reason}; queueing it again")
        self._requeue(name)

    def _fail(self, name: str, error: str, node_errors: dict | None = None) -> None:
        self.journal.record("failed", name, prompt_id=self.journal.job(name).prompt_id, error=error,
                            node_errors=node_errors or {})
        with self._cond:
            outcome = self.outcomes[name]
            outcome.status, outcome.error, outcome.node_errors = "failed", error, node_errors or {}
            self._busy -= 1
            self._cond.notify_all()
        self.progress.message(f"job {name} FAILED: {error}")
        self.progress.job_done()

    def _retrying(self, slot: ServerSlot, call: Callable[[], object], what: str):
        """``call()``, retried with backoff (1 s doubling to 30 s) while ``slot``'s server is
        unreachable or answers 5xx, for at most ``server_timeout_s``.

        Raises:
            ServerDown: still failing after ``server_timeout_s``.
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
                    raise ServerDown(f"{what}: {error}") from None
                where = f" ({slot.url})" if len(self.servers) > 1 else ""
                self.progress.message(f"{what}{where}: {error}; retrying in {delay:.0f} s")
                time.sleep(delay)
                delay = min(30.0, delay * 2)
