"""Several servers (``--server`` repeated) against in-memory fake ComfyUIs: the jobs are spread,
a server that dies mid-job hands its jobs to the others, and the journal keeps every job done
exactly once, across Ctrl-C and re-runs."""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time
from collections import Counter

import pytest
from fake_comfy import FakeComfy

from beyond_monologue.batch.jobs import Job, Target
from beyond_monologue.batch.journal import JOURNAL_NAME, Journal, replay
from beyond_monologue.batch.runner import BatchAborted, BatchOptions, BatchRunner
from beyond_monologue.comfyui.comfy_client import ComfyUnavailable

WORKFLOW = {
    "1": {"class_type": "KSampler", "inputs": {"seed": 0}},
    "3": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "talk"}},
}
NAMES = tuple(f"j{i}" for i in range(1, 9))


class Server(FakeComfy):
    """A fake server with an address that can go down (every call then fails as unreachable)."""

    def __init__(self, url: str):
        super().__init__()
        self.base_url = url
        self.down = False
        self.followed: list[str] = []
        self.slow = 0.0  # seconds each wait takes
        self._gate = threading.Lock()

    def _check(self):
        if self.down:
            raise ComfyUnavailable(f"{self.base_url} is not reachable")

    def upload_file(self, *args, **kwargs):
        self._check()
        return super().upload_file(*args, **kwargs)

    def submit(self, prompt, prompt_id=None, extra_data=None):
        self._check()
        with self._gate:
            return super().submit(prompt, prompt_id, extra_data)

    def prompt_state(self, prompt_id):
        self._check()
        return super().prompt_state(prompt_id)

    def wait(self, prompt_id, timeout_s=600.0, on_event=None, ws=None, down_timeout_s=None):
        self._check()  # the real client raises this after down_timeout_s
        time.sleep(self.slow)
        self.followed.append(prompt_id)
        return super().wait(prompt_id, timeout_s, on_event, ws, down_timeout_s)

    def download(self, filename, subfolder, folder_type, dest):
        self._check()
        return super().download(filename, subfolder, folder_type, dest)


def make_jobs(names=NAMES) -> list[Job]:
    return [Job(name, line, {Target("1", "seed"): line}, {Target("1", "seed"): "seed"})
            for line, name in enumerate(names, start=2)]


def run(servers, out, names=NAMES, listener=None, **options):
    options = {"progress": False, "server_timeout_s": 0.0, **options}
    runner = BatchRunner(servers, WORKFLOW, make_jobs(names), out, BatchOptions(**options), listener)
    return {o.name: o for o in runner.run()}


def downloads(out) -> Counter:
    return Counter(e["job"] for e in replay(out / JOURNAL_NAME).events if e["event"] == "downloaded")


def test_jobs_are_spread_over_both_servers_and_each_is_done_once(tmp_path):
    a, b = Server("http://a:8188"), Server("http://b:8188")
    outcomes = run([a, b], tmp_path)
    assert all(o.status == "done" for o in outcomes.values())
    assert downloads(tmp_path) == dict.fromkeys(NAMES, 1)
    assert a.submitted_jobs() + b.submitted_jobs() == dict.fromkeys(NAMES, 1), "no job queued twice"
    assert a.prompts and b.prompts, "both servers worked"
    events = replay(tmp_path / JOURNAL_NAME).events
    assert {e["server"] for e in events if e["event"] == "submitted"} == {a.base_url, b.base_url}
    for name, outcome in outcomes.items():  # each job was downloaded from the server that ran it
        server = a if outcome.server == a.base_url else b
        assert outcome.prompt_id in server.prompts
        assert (tmp_path / name / "3_talk.flac").read_text().endswith(f"/{name}")


def test_a_server_that_dies_mid_job_hands_its_jobs_to_the_other_none_twice(tmp_path):
    a, b = Server("http://a:8188"), Server("http://b:8188")
    killed = []

    def kill_b_once_j3_is_queued_there(entry):
        if entry["event"] == "queued" and entry.get("server") == b.base_url and not killed:
            killed.append(entry["job"])
            b.down = True  # the process died: j3's prompt (and any queued behind it) never ends there

    outcomes = run([a, b], tmp_path, listener=kill_b_once_j3_is_queued_there)
    assert all(o.status == "done" for o in outcomes.values()), {n: o.error for n, o in outcomes.items()}
    assert downloads(tmp_path) == dict.fromkeys(NAMES, 1), "every job done exactly once"
    events = replay(tmp_path / JOURNAL_NAME).events
    released = [e for e in events if e["event"] == "released"]
    assert killed[0] in {e["job"] for e in released}
    accepted_by_b = [e for e in released if e["prompt_id"] in b.prompts]  # not one whose POST failed
    assert killed[0] in {e["job"] for e in accepted_by_b}
    assert all(e["server"] == b.base_url for e in released)
    for entry in released:  # each released job ran again on a, under a new prompt, and came from a
        name = entry["job"]
        assert outcomes[name].server == a.base_url and outcomes[name].prompt_id in a.prompts
        assert outcomes[name].prompt_id != entry["prompt_id"]
        assert (tmp_path / name / "3_talk.flac").read_text().endswith(f"/{name}/try2")
    # the dead server comes back: its old prompts are never followed or downloaded by this batch
    b.down = False
    assert not any(e["event"] == "downloaded" and e["prompt_id"] == r["prompt_id"] for e in events for r in released)
    assert sum(o.server == b.base_url for o in outcomes.values()) == b.submitted_jobs().total() - len(accepted_by_b)


def test_when_every_server_is_gone_the_run_stops_and_a_rerun_on_the_live_one_finishes(tmp_path):
    a, b = Server("http://a:8188"), Server("http://b:8188")

    def kill_both_after_two_downloads(entry):
        if entry["event"] == "downloaded" and downloads(tmp_path).total() >= 2:
            a.down = b.down = True

    with pytest.raises(BatchAborted):
        run([a, b], tmp_path, listener=kill_both_after_two_downloads)
    state = replay(tmp_path / JOURNAL_NAME)
    in_flight = [n for n, s in state.jobs.items() if s.status in ("submitted", "queued")]
    assert in_flight, "the last server's jobs stay in flight in the journal (the next run follows them)"
    assert not any(e["event"] == "run_end" for e in state.events)

    # b stays dead and is left out; a comes back: b's in-flight jobs are released, a's are followed
    a.down = False
    before = a.submitted_jobs()
    outcomes = run([a], tmp_path)
    assert all(o.status in ("done", "skipped") for o in outcomes.values())
    assert downloads(tmp_path) == dict.fromkeys(NAMES, 1)
    on_b = {n for n in in_flight if state.jobs[n].server == b.base_url}
    on_a = {n for n in set(in_flight) - on_b if state.jobs[n].prompt_id in a.prompts}  # accepted by a
    released_now = {e["job"] for e in replay(tmp_path / JOURNAL_NAME).events[len(state.events):]
                    if e["event"] == "released"}
    assert released_now == on_b, "b's in-flight jobs were released, not followed"
    resubmitted = a.submitted_jobs() - before
    assert on_b <= set(resubmitted) and not on_a & set(resubmitted), "a's in-flight jobs were followed, not queued again"
    assert all(any("not among this run's --server" in w for w in outcomes[n].warnings) for n in on_b)


def test_ctrl_c_with_two_servers_then_resume_loses_and_repeats_nothing(tmp_path):
    a, b = Server("http://a:8188"), Server("http://b:8188")

    raised = threading.Event()

    def ctrl_c_after_three(entry):  # ">=": two workers' download lines may land before either listener reads the journal
        if entry["event"] == "downloaded" and downloads(tmp_path).total() >= 3 and not raised.is_set():
            raised.set()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([a, b], tmp_path, listener=ctrl_c_after_three)
    assert 3 <= downloads(tmp_path).total() < len(NAMES)
    outcomes = run([a, b], tmp_path)
    assert downloads(tmp_path) == dict.fromkeys(NAMES, 1)
    assert a.submitted_jobs() + b.submitted_jobs() == dict.fromkeys(NAMES, 1), "in-flight prompts were followed"
    assert sum(o.status == "skipped" for o in outcomes.values()) >= 3


def test_a_real_ctrl_c_reaches_the_waiting_main_thread_and_the_rerun_resumes(tmp_path):
    a, b = Server("http://a:8188"), Server("http://b:8188")
    pressed = threading.Event()

    def press_ctrl_c_after_two(entry):
        if entry["event"] == "downloaded" and downloads(tmp_path).total() >= 2 and not pressed.is_set():
            pressed.set()
            a.slow = b.slow = 0.5  # the servers are busy when the signal lands on the main thread
            _thread.interrupt_main()  # what SIGINT does: KeyboardInterrupt in the main thread

    # Python's own SIGINT handler, as in the command (a test run earlier in the session may have replaced it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run([a, b], tmp_path, listener=press_ctrl_c_after_two)
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(1.2)  # a worker still in a call ends at its next journal line (the journal is closed)
    done_before = downloads(tmp_path)
    assert 2 <= done_before.total() < len(NAMES) and max(done_before.values()) == 1
    report = json.loads((tmp_path / "batch_report.json").read_text())
    assert any(j["status"] == "pending" for j in report["jobs"])
    a.slow = b.slow = 0.0
    run([a, b], tmp_path)
    assert downloads(tmp_path) == dict.fromkeys(NAMES, 1)
    assert a.submitted_jobs() + b.submitted_jobs() == dict.fromkeys(NAMES, 1)


def test_a_result_of_a_superseded_prompt_never_makes_a_second_done_line(tmp_path):
    journal = Journal(tmp_path)
    journal.record("submitted", "j1", prompt_id="old", server="http://b:8188")
    journal.record("queued", "j1", prompt_id="old", server="http://b:8188")
    journal.record("released", "j1", prompt_id="old", server="http://b:8188", reason="down")
    journal.record("submitted", "j1", prompt_id="new", server="http://a:8188")
    assert journal.record_current("finished", "j1", "new", outputs=[{"local": "x"}])
    assert journal.record_current("downloaded", "j1", "new", files=["j1/x"])
    # b came back and finished the old prompt
    assert not journal.record_current("finished", "j1", "old", outputs=[], server="http://b:8188")
    assert not journal.record_current("downloaded", "j1", "old", files=[])
    journal.close()
    state = replay(tmp_path / JOURNAL_NAME)
    assert state.jobs["j1"].status == "downloaded" and state.jobs["j1"].files == ["j1/x"]
    superseded = [e for e in state.events if e["event"] == "superseded"]
    assert [e["instead"] for e in superseded] == ["finished", "downloaded"] and superseded[0]["latest"] == "new"
    assert sum(e["event"] == "downloaded" for e in state.events) == 1


def test_replay_ignores_a_stale_result_line_written_by_hand_or_by_an_older_client(tmp_path):
    journal = Journal(tmp_path)
    journal.record("submitted", "j1", prompt_id="old")
    journal.record("submitted", "j1", prompt_id="new")
    journal.record("downloaded", "j1", prompt_id="old", files=["j1/stale"])
    journal.close()
    state = replay(tmp_path / JOURNAL_NAME).jobs["j1"]
    assert state.status == "submitted" and state.prompt_id == "new" and state.files == []
