"""The batch runner's state machine against an in-memory fake ComfyUI (no server, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_comfy import FakeComfy

from beyond_monologue.batch.jobs import Job, Target
from beyond_monologue.batch.journal import JOURNAL_NAME, Journal, replay
from beyond_monologue.batch.runner import BatchOptions, BatchRunner

WORKFLOW = {
    "1": {"class_type": "KSampler", "inputs": {"seed": 0}},
    "3": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "talk"}},
}


def make_jobs(*names: str) -> list[Job]:
    return [Job(name, line, {Target("1", "seed"): line}, {Target("1", "seed"): "seed"})
            for line, name in enumerate(names, start=2)]


def run(server: FakeComfy, out: Path, names=("j1", "j2"), listener=None, **options):
    runner = BatchRunner(server, WORKFLOW, make_jobs(*names), out, BatchOptions(progress=False, **options), listener)
    return {o.name: o for o in runner.run()}


def test_a_prompt_journalled_but_never_posted_is_queued_again_without_using_a_retry(tmp_path):
    # the client died between writing `submitted` and POST /prompt: the server never saw the prompt
    journal = Journal(tmp_path)
    journal.record("submitted", "j1", prompt_id="never-posted", fingerprint="")
    journal.close()
    server = FakeComfy()
    outcomes = run(server, tmp_path, names=("j1",), retries=0)
    assert outcomes["j1"].status == "done", outcomes["j1"].error
    assert outcomes["j1"].submissions == 2 and server.submitted_jobs() == {"j1": 1}
    lost = [e for e in replay(tmp_path / JOURNAL_NAME).events if e["event"] == "lost"]
    assert len(lost) == 1 and lost[0]["was_queued"] is False


def test_a_lost_prompt_the_server_had_accepted_still_uses_a_retry(tmp_path):
    journal = Journal(tmp_path)
    journal.record("submitted", "j1", prompt_id="gone", fingerprint="")
    journal.record("queued", "j1", prompt_id="gone", number=1)
    journal.close()
    outcomes = run(FakeComfy(), tmp_path, names=("j1",), retries=0)
    assert outcomes["j1"].status == "failed" and "gave up after 1 tries" in outcomes["j1"].error


def test_redo_follows_a_prompt_still_in_flight_instead_of_queueing_a_copy(tmp_path):
    server = FakeComfy()
    run(server, tmp_path)
    # an earlier run queued j1 again and stopped while its prompt was still queued on the server
    journal = Journal(tmp_path)
    journal.record("submitted", "j1", prompt_id="in-flight", fingerprint="")
    journal.record("queued", "j1", prompt_id="in-flight", number=3)
    journal.close()
    server.prompts["in-flight"] = dict(next(iter(server.prompts.values())))
    before = len(server.prompts)
    outcomes = run(server, tmp_path, redo=("j1",))
    assert len(server.prompts) == before, "no second copy was queued"
    assert outcomes["j1"].status == "done" and outcomes["j1"].prompt_id == "in-flight"
    assert any("still queued or running" in w for w in outcomes["j1"].warnings)
    assert outcomes["j2"].status == "skipped"


def test_a_resumed_run_with_the_same_redo_does_not_redo_the_job_again(tmp_path):
    server = FakeComfy()
    run(server, tmp_path)
    assert server.submitted_jobs() == {"j1": 1, "j2": 1}

    def ctrl_c_after_j1(entry):
        if entry["event"] == "downloaded" and entry.get("job") == "j1":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(server, tmp_path, listener=ctrl_c_after_j1, redo=("j1", "j2"), queue_ahead=0)
    assert server.submitted_jobs() == {"j1": 2, "j2": 1}

    # "Re-run the same command to resume": j1 was already redone, j2's redo is carried on
    outcomes = run(server, tmp_path, redo=("j1", "j2"))
    assert server.submitted_jobs() == {"j1": 2, "j2": 2}
    assert outcomes["j1"].status == "skipped" and any("not repeated" in w for w in outcomes["j1"].warnings)
    assert outcomes["j2"].status == "done"

    # that run went through to the end: a new --redo is a new request
    outcomes = run(server, tmp_path, redo=("j1",))
    assert server.submitted_jobs() == {"j1": 3, "j2": 2}
    assert outcomes["j1"].status == "done" and outcomes["j2"].status == "skipped"


def test_a_redo_request_cut_off_before_its_prompt_was_queued_is_carried_out_by_the_next_run(tmp_path):
    server = FakeComfy()
    run(server, tmp_path, names=("j1",))

    def crash_after_the_request(entry):
        if entry["event"] == "redo":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(server, tmp_path, names=("j1",), listener=crash_after_the_request, redo=("j1",))
    outcomes = run(server, tmp_path, names=("j1",))  # even without --redo: the journal holds the request
    assert outcomes["j1"].status == "done" and server.submitted_jobs() == {"j1": 2}


def test_an_output_that_would_land_outside_the_job_folder_fails_the_job(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    outcomes = run(FakeComfy(output_node="../../../escaped"), out, names=("j1",))
    assert outcomes["j1"].status == "failed" and "outside" in outcomes["j1"].error
    assert not [p for p in tmp_path.rglob("*talk*")], "nothing was written anywhere"
