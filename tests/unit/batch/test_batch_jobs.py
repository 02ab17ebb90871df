"""Batch job files, column mapping, value checks and prompt patching (no server: object_info is given)."""

import json
import re
from pathlib import Path

import pytest

from beyond_monologue.batch.jobs import BatchSetupError, Target, load_mapping_file, parse_mapping, read_jobs
from beyond_monologue.batch.patching import load_workflow, patch_prompt, prepare_jobs

WORKFLOW = {
    "1": {"class_type": "LoadAudio", "inputs": {"audio": "placeholder.wav"}},
    "2": {"class_type": "BMSplitConversation",
          "inputs": {"conversation": ["1", 0], "mode": "stereo", "avatar_speaker": "speaker_1", "turns": ""}},
    "3": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "talk"}},
    "4": {"class_type": "KSampler", "inputs": {"seed": 0, "cfg": 1.0, "denoise": 1.0}},
}
# the shapes GET /object_info gives in ComfyUI 0.3.75 (legacy combo list, V3 COMBO, INT/FLOAT with bounds)
OBJECT_INFO = {
    "LoadAudio": {"input": {"required": {"audio": [["on_server.wav"], {"audio_upload": True}]}}},
    "BMSplitConversation": {"input": {"required": {
        "conversation": ["AUDIO", {}],
        "mode": ["COMBO", {"options": ["stereo", "turns"]}],
        "avatar_speaker": ["COMBO", {"options": ["speaker_1", "speaker_2"]}],
        "turns": ["STRING", {"multiline": True}]}}},
    "SaveAudio": {"input": {"required": {"audio": ["AUDIO"], "filename_prefix": ["STRING", {}]}}},
    "KSampler": {"input": {"required": {"seed": ["INT", {"min": 0, "max": 2**64 - 1}], "cfg": ["FLOAT", {"min": 0.0}],
                                        "denoise": ["FLOAT", {"min": 0.0, "max": 1.0}]}}},
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_mapped_and_direct_columns(tmp_path):
    write(tmp_path / "a.wav", "x")
    jobs_file = write(tmp_path / "jobs.csv",
                      'name,conversation,2.avatar_speaker,4.seed,2.turns\n'
                      'alice,a.wav,speaker_2,7,"0 1 a\n1 2 b"\n'
                      'bob,on_server.wav,,8,\n'
                      ',,,,\n')
    jobs = read_jobs(jobs_file, parse_mapping(["conversation=1.audio"]))
    assert [j.name for j in jobs] == ["alice", "bob"]
    assert jobs[0].values == {Target("1", "audio"): "a.wav", Target("2", "avatar_speaker"): "speaker_2",
                              Target("4", "seed"): "7", Target("2", "turns"): "0 1 a\n1 2 b"}
    assert Target("2", "avatar_speaker") not in jobs[1].values  # empty cell keeps the workflow value

    prepare_jobs(WORKFLOW, OBJECT_INFO, jobs, tmp_path)
    assert jobs[0].values[Target("1", "audio")] == tmp_path / "a.wav"  # local file: uploaded later
    assert jobs[0].values[Target("4", "seed")] == 7
    assert jobs[1].values[Target("1", "audio")] == "on_server.wav"  # already in the server's input folder

    prompt = patch_prompt(WORKFLOW, jobs[0], {Target("1", "audio"): "bm_batch/b1/abc_a.wav"}, "bm_batch/b1")
    assert prompt["1"]["inputs"]["audio"] == "bm_batch/b1/abc_a.wav"
    assert prompt["2"]["inputs"]["avatar_speaker"] == "speaker_2"
    assert prompt["2"]["inputs"]["conversation"] == ["1", 0]
    assert prompt["3"]["inputs"]["filename_prefix"] == "bm_batch/b1/alice/talk"
    assert prompt["4"]["inputs"]["seed"] == 7
    assert WORKFLOW["4"]["inputs"]["seed"] == 0, "the workflow itself is not modified"
    again = patch_prompt(WORKFLOW, jobs[0], {Target("1", "audio"): "x.wav"}, "bm_batch/b1", submission=2)
    assert again["3"]["inputs"]["filename_prefix"] == "bm_batch/b1/alice/try2/talk"  # no cached save node


def test_jsonl_keeps_json_types_and_mapping_file(tmp_path):
    mapping = load_mapping_file(write(tmp_path / "map.json", json.dumps({"seed": "4.seed", "strength": "4.denoise"})))
    jobs_file = write(tmp_path / "jobs.jsonl", '{"name": "j1", "seed": 3, "strength": 0.5}\n\n'
                                               '# comment\n{"name": "j2", "seed": null, "4.cfg": "2.5"}\n')
    jobs = read_jobs(jobs_file, mapping)
    prepare_jobs(WORKFLOW, OBJECT_INFO, jobs, tmp_path)
    assert jobs[0].values == {Target("4", "seed"): 3, Target("4", "denoise"): 0.5}
    assert jobs[1].values == {Target("4", "cfg"): 2.5}


def test_dotted_input_names_split_at_the_first_dot():
    assert parse_mapping(["a=7.mode.audio_2"]) == {"a": Target("7", "mode.audio_2")}


@pytest.mark.parametrize(("text", "expected"), [
    ("name,x\nj1,1\n", "column 'x' is neither mapped"),
    ("name,4.seed\nj1,1\nj1,2\n", "already used on line 2"),
    ("name,4.seed\nJob1,1\njob1,2\n", "jobs.csv line 3: name 'job1' is already used on line 2 as 'Job1'"),
    ("name,4.seed\nbad/name,1\n", "must be letters, digits"),
    ("name,4.seed\n,1\n", "'name' column is empty"),
    ("name\n", "contains no job"),
])
def test_job_file_problems_are_listed(tmp_path, text, expected):
    with pytest.raises(BatchSetupError, match=expected):
        read_jobs(write(tmp_path / "jobs.csv", text))


def test_every_bad_value_is_reported_before_anything_runs(tmp_path):
    jobs_file = write(tmp_path / "jobs.csv",
                      "name,4.seed,4.denoise,2.mode,1.audio,9.seed,2.conversation,2.nope\n"
                      "j1,abc,1.5,mono,missing.wav,1,x,y\n")
    with pytest.raises(BatchSetupError) as caught:
        prepare_jobs(WORKFLOW, OBJECT_INFO, read_jobs(jobs_file), tmp_path)
    message = str(caught.value)
    for expected in ("4.seed: expected a whole number, got 'abc'", "1.5 is outside 0.0..1.0",
                     "'mono' is not one of the options (stereo, turns)", "file 'missing.wav' not found",
                     "9.seed: the workflow has no node '9'", "2.conversation: input 'conversation' of "
                     "BMSplitConversation is a connection (AUDIO)", "BMSplitConversation has no input 'nope'"):
        assert expected in message, message


def test_ui_format_workflow_is_refused_with_the_fix(tmp_path):
    path = write(tmp_path / "w.json", json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(BatchSetupError, match="Export \\(API\\)"):
        load_workflow(path)


@pytest.mark.parametrize("node_id", ["../../../x", "a/b", "..", "3\n", "5.1", ""])
def test_node_ids_that_could_leave_the_output_folder_are_refused(tmp_path, node_id):
    workflow = {"1": WORKFLOW["1"], node_id: WORKFLOW["3"]}
    with pytest.raises(BatchSetupError, match=f"node id\\(s\\) {re.escape(repr(node_id))} may only use"):
        load_workflow(write(tmp_path / "w.json", json.dumps(workflow)))


def test_subgraph_node_ids_are_accepted(tmp_path):
    workflow = {"12:5": WORKFLOW["1"], "my-node_2": WORKFLOW["3"]}
    assert load_workflow(write(tmp_path / "w.json", json.dumps(workflow))) == workflow


def test_unknown_node_class_is_named(tmp_path):
    workflow = {"1": {"class_type": "NotInstalled", "inputs": {"x": 1}}}
    jobs = read_jobs(write(tmp_path / "jobs.csv", "name,1.x\nj,2\n"))
    with pytest.raises(BatchSetupError, match="NotInstalled, which this ComfyUI does not have"):
        prepare_jobs(workflow, OBJECT_INFO, jobs, tmp_path)
