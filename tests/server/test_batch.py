"""The batch client against a real ComfyUI: a server restart mid-batch, a killed client and, with two
servers, a server process killed mid-job lose and repeat nothing; failures are reported per job.

The workflow is LoadAudio -> BMSplitConversation -> SaveAudio (talk) + SaveAudio (listen); the jobs
are variants of the real two-speaker sample.wav (mono with its RTTM turns, stereo with one speaker
per channel, shifted in time), each checked against the split computed here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import av
import numpy as np
import pytest
import torch
from audio_fixtures import write_wav

from beyond_monologue.audio.conversation import split_by_turns, split_stereo
from beyond_monologue.audio.turns import parse_turns_text
from beyond_monologue.batch.__main__ import main as batch_main
from beyond_monologue.batch.jobs import Job, Target, parse_mapping, read_jobs
from beyond_monologue.batch.journal import JOURNAL_NAME, replay
from beyond_monologue.batch.patching import prepare_jobs
from beyond_monologue.batch.runner import BatchOptions, BatchRunner
from beyond_monologue.comfyui.comfy_client import ComfyClient
from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT, ComfyServer

pytestmark = pytest.mark.timeout(300)  # a hung server fails the test instead of stalling CI

WORKFLOW = {
    "1": {"class_type": "LoadAudio", "inputs": {"audio": "placeholder.wav"}},
    "2": {"class_type": "BMSplitConversation",
          "inputs": {"conversation": ["1", 0], "mode": "turns", "avatar_speaker": "speaker_1", "turns": ""}},
    "3": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "talk"}},
    "4": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 1], "filename_prefix": "listen"}},
}
MAPPING = ["conversation=1.audio", "mode=2.mode", "avatar=2.avatar_speaker", "turns=2.turns"]
SHIFT_S = 1.5


def read_audio(path) -> np.ndarray:
    """Decode a WAV/FLAC file with PyAV (ComfyUI's decoder) -> float32 [C, T]."""
    with av.open(str(path)) as container:
        channels = container.streams.audio[0].channels
        frames = [f.to_ndarray() if f.format.is_planar else f.to_ndarray().reshape(-1, channels).T
                  for f in container.decode(audio=0)]
        data = np.concatenate(frames, axis=1)
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    """A server of this module's own: the restart test restarts it."""
    server = ComfyServer(tmp_path_factory.mktemp("batch_base"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def batch_inputs(assets, tmp_path_factory):
    """Six jobs over variants of sample.wav, the job file, the workflow, and each job's expected talk/listen."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    mono = read_audio(assets / "sample.wav")[0]
    sr = 16000
    rttm = (assets / "sample.rttm").read_text()
    turns = parse_turns_text(rttm)
    shift = int(SHIFT_S * sr)
    shifted = np.concatenate([np.zeros(shift, np.float32), mono[:-shift]])
    shifted_turns = "\n".join(f"{s + SHIFT_S:.3f} {e + SHIFT_S:.3f} {name}" for name, spans in turns.items() for s, e in spans)
    masks = [torch.zeros(len(mono), dtype=torch.bool) for _ in turns]
    for mask, spans in zip(masks, turns.values(), strict=True):
        for s, e in spans:
            mask[round(s * sr):round(e * sr)] = True
    stereo = np.stack([mono * masks[0].numpy(), mono * masks[1].numpy()], axis=1)
    write_wav(folder / "mono.wav", mono[:, None], sr)
    write_wav(folder / "shifted.wav", shifted[:, None], sr)
    write_wav(folder / "stereo.wav", stereo, sr)
    jobs = [("j1", "mono.wav", "turns", "speaker_1", rttm), ("j2", "mono.wav", "turns", "speaker_2", rttm),
            ("j3", "stereo.wav", "stereo", "speaker_1", ""), ("j4", "stereo.wav", "stereo", "speaker_2", ""),
            ("j5", "shifted.wav", "turns", "speaker_1", shifted_turns), ("j6", "shifted.wav", "turns", "speaker_2", shifted_turns)]
    with open(folder / "jobs.jsonl", "w") as out:
        for name, audio, mode, avatar, text in jobs:
            out.write(json.dumps({"name": name, "conversation": audio, "mode": mode, "avatar": avatar, "turns": text}) + "\n")
    (folder / "workflow.json").write_text(json.dumps(WORKFLOW))
    expected = {}
    for name, audio, mode, avatar, text in jobs:
        # what the node computes, from the 16-bit file the server decodes
        waveform = torch.from_numpy(read_audio(folder / audio))
        index = int(avatar[-1]) - 1
        if mode == "stereo":
            talk, listen, _ = split_stereo(waveform, sr, index)
        else:
            talk, listen, _ = split_by_turns(waveform, sr, parse_turns_text(text), index)
        expected[name] = (talk.numpy(), listen.numpy())
    return folder, expected


def check_outputs(out_dir, expected: dict) -> None:
    """Every job has exactly its two files, holding its own talk and listen streams."""
    journal = replay(out_dir / JOURNAL_NAME)
    downloaded = Counter(e["job"] for e in journal.events if e["event"] == "downloaded")
    assert downloaded == dict.fromkeys(expected, 1), "each job downloaded exactly once"
    for name, (talk, listen) in expected.items():
        files = sorted(p.name for p in (out_dir / name).iterdir())
        assert files == ["3_talk.flac", "4_listen.flac"], f"{name}: {files}"
        got_talk, got_listen = read_audio(out_dir / name / "3_talk.flac")[0], read_audio(out_dir / name / "4_listen.flac")[0]
        assert got_talk.shape == talk.shape and np.max(np.abs(got_talk - talk)) < 2e-3, name
        assert np.max(np.abs(got_listen - listen)) < 2e-3, name
    assert not list(out_dir.rglob("*.part")), "no half-downloaded file left"


def prepared_jobs(folder, object_info):
    jobs = read_jobs(folder / "jobs.jsonl", parse_mapping(MAPPING))
    prepare_jobs(WORKFLOW, object_info, jobs, folder)
    return jobs


def test_batch_survives_a_server_restart_mid_batch(batch_server, batch_inputs, tmp_path):
    folder, expected = batch_inputs
    client = ComfyClient(batch_server.url, timeout_s=10)
    jobs = prepared_jobs(folder, client.object_info())
    server_down = threading.Event()
    restarts = []

    def restart_server():
        batch_server.stop()
        server_down.set()
        batch_server.start()

    def listener(entry):
        # j3 was just accepted by the server: take the server down before the client can follow it
        if entry["event"] == "queued" and entry["job"] == "j3" and not restarts:
            restarts.append(threading.Thread(target=restart_server))
            restarts[0].start()
            assert server_down.wait(60)

    runner = BatchRunner(client, WORKFLOW, jobs, tmp_path / "out",
                         BatchOptions(queue_ahead=1, server_timeout_s=120, job_timeout_s=120, progress=False), listener)
    outcomes = runner.run()
    restarts[0].join(60)

    assert [(o.name, o.status) for o in outcomes] == [(name, "done") for name in expected]
    events = replay(tmp_path / "out" / JOURNAL_NAME).events
    lost = [e["job"] for e in events if e["event"] == "lost"]
    assert "j3" in lost, "the restart hit the batch while j3 was queued"
    submissions = Counter(e["job"] for e in events if e["event"] == "submitted")
    assert all(submissions[name] == 1 + lost.count(name) for name in expected), "only lost jobs were queued again"
    check_outputs(tmp_path / "out", expected)


def test_killed_client_resumes_without_repeating_a_job(batch_server, batch_inputs, tmp_path):
    folder, expected = batch_inputs
    out = tmp_path / "out"
    command = [sys.executable, "-m", "beyond_monologue.batch", str(folder / "workflow.json"), str(folder / "jobs.jsonl"),
               "--out", str(out), "--server", batch_server.url, "--no-progress", *[f"--map={m}" for m in MAPPING]]
    first = subprocess.Popen(command, cwd=PACK_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        events = replay(out / JOURNAL_NAME).events if (out / JOURNAL_NAME).exists() else []
        if any(e["event"] == "submitted" and e.get("job") == "j4" for e in events):
            break
        time.sleep(0.02)
    first.kill()  # SIGKILL: no clean-up at all
    first.wait(10)
    killed_at = [e["event"] for e in replay(out / JOURNAL_NAME).events]
    assert "downloaded" in killed_at and killed_at.count("downloaded") < len(expected), "killed mid-batch"

    second = subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 failed" in second.stdout
    check_outputs(out, expected)

    # on the server (never restarted here) every job of this batch ran exactly once
    batch_id = replay(out / JOURNAL_NAME).batch_id
    history = ComfyClient(batch_server.url).get_json("/history")
    runs = Counter(item["prompt"][2]["3"]["inputs"]["filename_prefix"].split("/")[2] for item in history.values()
                   if item["prompt"][2]["3"]["inputs"]["filename_prefix"].startswith(f"bm_batch/{batch_id}/"))
    assert runs == dict.fromkeys(expected, 1)

    third = subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and f"{len(expected)} already done" in third.stdout, third.stdout + third.stderr


def test_execution_error_fails_its_job_only_and_sets_the_exit_code(batch_server, batch_inputs, tmp_path, capsys):
    folder, _ = batch_inputs
    jobs_file = tmp_path / "jobs.csv"
    jobs_file.write_text(f"name,conversation,mode,avatar\nok,{folder / 'stereo.wav'},stereo,speaker_1\n"
                         f"mono_in_stereo_mode,{folder / 'mono.wav'},stereo,speaker_1\n")
    code = batch_main([str(folder / "workflow.json"), str(jobs_file), "--out", str(tmp_path / "out"),
                       "--server", batch_server.url, "--no-progress", *[f"--map={m}" for m in MAPPING[:3]]])
    assert code == 1
    assert "FAILED mono_in_stereo_mode" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "batch_report.json").read_text())
    by_name = {job["name"]: job for job in report["jobs"]}
    assert by_name["ok"]["status"] == "done" and len(by_name["ok"]["files"]) == 2
    failed = by_name["mono_in_stereo_mode"]
    assert failed["status"] == "failed" and "stereo mode needs 2" in failed["error"] and failed["submissions"] == 1


def test_rejected_prompt_is_a_job_failure_with_comfyui_node_errors(batch_server, batch_inputs, tmp_path):
    folder, expected = batch_inputs
    client = ComfyClient(batch_server.url)
    good = prepared_jobs(folder, client.object_info())[2]  # j3
    # a file the server does not have (the command line would refuse it before queueing)
    bad = Job("bad", 1, dict(good.values), dict(good.columns))
    bad.values[Target("1", "audio")] = "no_such_file.wav"
    outcomes = BatchRunner(client, WORKFLOW, [bad, good], tmp_path / "out", BatchOptions(progress=False)).run()
    assert [o.status for o in outcomes] == ["failed", "done"]
    assert "prompt rejected" in outcomes[0].error and outcomes[0].submissions == 1
    assert list(outcomes[0].node_errors) == ["1"] and "no_such_file.wav" in json.dumps(outcomes[0].node_errors)
    check_outputs(tmp_path / "out", {"j3": expected["j3"]})


def test_missing_local_files_are_downloaded_again_or_rerun_when_the_server_lost_them(batch_server, batch_inputs, tmp_path):
    folder, expected = batch_inputs
    client = ComfyClient(batch_server.url)
    jobs = [job for job in prepared_jobs(folder, client.object_info()) if job.name in ("j3", "j4")]
    out = tmp_path / "out"
    BatchRunner(client, WORKFLOW, jobs, out, BatchOptions(progress=False)).run()
    outputs = {name: replay(out / JOURNAL_NAME).jobs[name].outputs for name in ("j3", "j4")}
    for name in ("j3", "j4"):  # the user deleted both local results ...
        for path in (out / name).iterdir():
            path.unlink()
    for item in outputs["j4"]:  # ... and j4's files are also gone from ComfyUI's output folder
        (batch_server.base_dir / "output" / item["subfolder"] / item["filename"]).unlink()

    outcomes = BatchRunner(client, WORKFLOW, jobs, out, BatchOptions(progress=False)).run()
    assert [(o.name, o.status) for o in outcomes] == [("j3", "done"), ("j4", "done")]
    states = replay(out / JOURNAL_NAME).jobs
    assert states["j3"].submissions == 1, "j3 was only downloaded again"
    assert states["j4"].submissions == 2, "j4 ran again because the server had lost its files"
    events = replay(out / JOURNAL_NAME).events
    assert Counter(e["job"] for e in events if e["event"] == "downloaded") == {"j3": 2, "j4": 2}
    for name in ("j3", "j4"):
        talk = read_audio(out / name / "3_talk.flac")[0]
        assert np.max(np.abs(talk - expected[name][0])) < 2e-3


def test_two_servers_a_killed_server_hands_its_jobs_to_the_other_none_lost_none_twice(batch_server, batch_inputs,
                                                                                      tmp_path):
    folder, expected = batch_inputs
    doomed = ComfyServer(tmp_path / "doomed_base")  # a second real ComfyUI; its process is killed mid-batch
    doomed.start()
    killed = []

    def listener(entry):
        # the doomed server just accepted a prompt: kill its process (SIGKILL, no clean-up) while that job is in flight
        if entry["event"] == "queued" and entry.get("server") == doomed.url and not killed:
            killed.append(entry["job"])
            os.killpg(doomed.process.pid, signal.SIGKILL)
            doomed.process.wait(10)

    try:
        clients = [ComfyClient(batch_server.url, timeout_s=10), ComfyClient(doomed.url, timeout_s=10)]
        jobs = prepared_jobs(folder, clients[0].object_info())
        runner = BatchRunner(clients, WORKFLOW, jobs, tmp_path / "out",
                             BatchOptions(queue_ahead=1, server_timeout_s=5, job_timeout_s=120, progress=False), listener)
        outcomes = runner.run()
    finally:
        doomed.stop()

    assert killed, "the doomed server got a job before it was killed"
    assert [(o.name, o.status) for o in outcomes] == [(name, "done") for name in expected]
    events = replay(tmp_path / "out" / JOURNAL_NAME).events
    released = [e for e in events if e["event"] == "released"]
    assert killed[0] in {e["job"] for e in released} and all(e["server"] == doomed.url for e in released)
    by_name = {o.name: o for o in outcomes}
    for entry in released:  # re-run on the live server under a new prompt, downloaded from it
        assert by_name[entry["job"]].server == batch_server.url and by_name[entry["job"]].prompt_id != entry["prompt_id"]
    assert {o.server for o in outcomes} <= {batch_server.url, doomed.url}
    check_outputs(tmp_path / "out", expected)  # every job downloaded exactly once, with its own streams

    # the live server ran each job it was given exactly once (the killed one's history died with it)
    batch_id = replay(tmp_path / "out" / JOURNAL_NAME).batch_id
    history = ComfyClient(batch_server.url).get_json("/history")
    runs = Counter(item["prompt"][2]["3"]["inputs"]["filename_prefix"].split("/")[2] for item in history.values()
                   if item["prompt"][2]["3"]["inputs"]["filename_prefix"].startswith(f"bm_batch/{batch_id}/"))
    assert runs == {o.name: 1 for o in outcomes if o.server == batch_server.url}
