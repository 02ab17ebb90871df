"""Progress display of a batch: a tqdm bar over jobs and one over the running node's steps.

The step bar follows ComfyUI's ``progress`` events (``value``/``max`` of the node that reports,
e.g. sampler steps) and ``executing`` events (which node runs). Messages go through
``tqdm.write`` so they never break the bars. With ``enabled=False`` (``--no-progress``, or
output that is not a terminal) only the messages are printed.
"""

from __future__ import annotations

import sys
import threading

from tqdm import tqdm


class BatchProgress:
    """Bars for one batch run.

    Args:
        total_jobs: number of jobs in the batch.
        done_jobs: jobs already done before this run (the bar starts there).
        enabled: draw bars (messages are printed either way).
    """

    def __init__(self, total_jobs: int, done_jobs: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.jobs = tqdm(total=total_jobs, initial=done_jobs, desc="jobs", unit="job", position=0,
                         disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self.steps = tqdm(total=1, desc="steps", unit="step", position=1, leave=False,
                          disable=not enabled, file=sys.stderr, dynamic_ncols=True)
        self._node_titles: dict[str, str] = {}
        self._job = ""
        self._lock = threading.RLock()  # several server threads feed one display

    def start_job(self, name: str, prompt: dict) -> None:
        """A job's prompt is now followed: show its name; ``prompt`` gives the node titles."""
        with self._lock:
            self._job = name
            self._node_titles = {str(k): (v.get("_meta", {}) or {}).get("title") or v.get("class_type", "?")
                                 for k, v in prompt.items()}
            self.jobs.set_postfix_str(name)
            self.steps.reset(total=1)
            self.steps.set_description(f"{name}: queued")

    def on_event(self, kind: str, data: dict, job: str | None = None) -> None:
        """Feed one ``/ws`` event of a followed prompt (``job``: its job's name; default: the last
        started job). With several servers the step bar shows the job whose event came last."""
        with self._lock:
            if kind == "executing" and data.get("node") is not None:
                self.steps.reset(total=1)
                self.steps.set_description(f"{job or self._job}: {self._node_titles.get(str(data['node']), data['node'])}")
            elif kind == "progress":
                self.steps.total = max(1, int(data.get("max", 1)))
                self.steps.n = int(data.get("value", 0))
                self.steps.refresh()

    def job_done(self) -> None:
        """One more job is finished (done or failed)."""
        with self._lock:
            self.jobs.update(1)

    def message(self, text: str) -> None:
        """Print a line above the bars."""
        with self._lock:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        """Remove the step bar and finish the job bar."""
        with self._lock:
            self.steps.close()
            self.jobs.close()
