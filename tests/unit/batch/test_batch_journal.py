"""The batch journal (replay after a crash) and the local names of downloaded outputs."""

import json

from beyond_monologue.batch.journal import JOURNAL_NAME, Journal, replay
from beyond_monologue.batch.outputs import output_files


def test_journal_replays_job_states_and_keeps_the_batch_id(tmp_path):
    seen = []
    journal = Journal(tmp_path, listener=seen.append)
    batch_id = journal.batch_id
    journal.record("submitted", "a", prompt_id="p1", fingerprint="f")
    journal.record("queued", "a", prompt_id="p1", number=1)
    journal.record("finished", "a", prompt_id="p1", status="success", outputs=[{"local": "3_talk.flac"}])
    journal.record("downloaded", "a", prompt_id="p1", files=["a/3_talk.flac"])
    journal.record("submitted", "b", prompt_id="p2")
    journal.record("lost", "b", prompt_id="p2")
    journal.record("submitted", "b", prompt_id="p3")
    journal.close()
    assert [e["event"] for e in seen] == ["batch", "submitted", "queued", "finished", "downloaded", "submitted", "lost", "submitted"]

    again = Journal(tmp_path)
    assert again.batch_id == batch_id
    a, b = again.job("a"), again.job("b")
    assert (a.status, a.files, a.outputs, a.submissions) == ("downloaded", ["a/3_talk.flac"], [{"local": "3_talk.flac"}], 1)
    assert (b.status, b.prompt_id, b.submissions) == ("submitted", "p3", 2)
    assert again.job("never").status == "new"
    again.close()


def test_a_line_cut_by_a_kill_is_skipped_and_the_journal_stays_appendable(tmp_path):
    journal = Journal(tmp_path)
    journal.record("submitted", "a", prompt_id="p1")
    journal.close()
    with open(tmp_path / JOURNAL_NAME, "a", encoding="utf-8") as out:
        out.write('{"t": 1, "event": "queued", "job": "a", "prom')  # killed mid-write
    journal = Journal(tmp_path)
    assert journal.state.damaged_lines == 1 and journal.job("a").status == "submitted"
    journal.record("queued", "a", prompt_id="p1")
    journal.close()
    state = replay(tmp_path / JOURNAL_NAME)
    assert state.damaged_lines == 1 and state.jobs["a"].status == "queued"
    lines = (tmp_path / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "queued"


def test_output_files_are_named_by_node_without_the_counter():
    outputs = {
        "7": {"audio": [{"filename": "talk_00012_.flac", "subfolder": "bm_batch/x/j", "type": "output"}]},
        "3": {"images": [{"filename": "frame_00003_.png", "subfolder": "", "type": "output"},
                         {"filename": "frame_00004_.png", "subfolder": "", "type": "output"},
                         {"filename": "ComfyUI_temp_ab_00001_.png", "subfolder": "", "type": "temp"}],
              "text": ["not a file"]},
        "9": {"bm_timeline": [{"version": 1, "audio": {"filename": "x.flac", "type": "temp"}}]},
    }
    files = output_files(outputs)
    assert [(f["node"], f["filename"], f["local"]) for f in files] == [
        ("3", "frame_00003_.png", "3_frame.png"), ("3", "frame_00004_.png", "3_frame_2.png"),
        ("7", "talk_00012_.flac", "7_talk.flac")]
    assert files[2]["subfolder"] == "bm_batch/x/j"
    with_previews = output_files(outputs, include_temp=True)
    assert [f["local"] for f in with_previews] == ["3_frame.png", "3_frame_2.png", "3_ComfyUI_temp_ab.png", "7_talk.flac"]


def test_a_redo_request_keeps_the_status_and_stays_open_until_a_run_ends(tmp_path):
    journal = Journal(tmp_path)
    journal.record("downloaded", "a", files=["a/x"])
    journal.record("redo", "a")
    journal.record("submitted", "b", prompt_id="p1")
    journal.record("redo", "b")  # in flight: that prompt is the redo
    journal.close()
    a, b = replay(tmp_path / JOURNAL_NAME).jobs["a"], replay(tmp_path / JOURNAL_NAME).jobs["b"]
    assert (a.status, a.redo_open, a.redo_pending) == ("downloaded", True, True)
    assert (b.status, b.redo_open, b.redo_pending) == ("submitted", True, False)
    journal = Journal(tmp_path)
    journal.record("submitted", "a", prompt_id="p2")
    assert (journal.job("a").redo_open, journal.job("a").redo_pending) == (True, False)
    journal.record("run_end")
    journal.close()
    a = replay(tmp_path / JOURNAL_NAME).jobs["a"]
    assert (a.redo_open, a.redo_pending) == (False, False)
