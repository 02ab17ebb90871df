"""``--evaluate``: the evaluate command's metrics on each job's downloaded video, written into the
journal, the report and batch_metrics.csv/.json. Real short talking-head video (the carphone clip),
real speech (LibriVox), SyncNet on smoke weights in the public layout, no face-embedding weights
(so CSIM must be reported unavailable with the reason, never a number)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from fake_comfy import FakeComfy
from PIL import Image
from safetensors.torch import save_file

from beyond_monologue.batch.__main__ import build_parser, make_evaluator
from beyond_monologue.batch.evaluation import JobEvaluator
from beyond_monologue.batch.jobs import BatchSetupError, Job, Target, read_jobs
from beyond_monologue.batch.journal import JOURNAL_NAME, replay
from beyond_monologue.batch.report import REPORT_NAME
from beyond_monologue.batch.runner import BatchOptions, BatchRunner
from beyond_monologue.comfyui.comfy_client import PromptResult
from beyond_monologue.evaluate import syncnet
from beyond_monologue.evaluate.__main__ import models_of_comfyui

FRAMES, FPS = 20, 25
WORKFLOW = {
    "1": {"class_type": "KSampler", "inputs": {"seed": 0}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
    "3": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "talk"}},
}


class RenderingComfy(FakeComfy):
    """Each prompt 'renders' an avatar video plus its talk and listen audio (files prepared by the test)."""

    def __init__(self, sources: dict[str, dict[str, Path]]):
        super().__init__()
        self.sources = sources  # job name -> {"avatar": video, "talk": wav, "listen": wav}

    def wait(self, prompt_id, timeout_s=600.0, on_event=None, ws=None, down_timeout_s=None) -> PromptResult:
        folder = self.prompts[prompt_id]["3"]["inputs"]["filename_prefix"].rpartition("/")[0]
        out = {node: {key: [{"filename": f"{stem}_00001_.{ext}", "subfolder": folder, "type": "output"}]}
               for node, key, stem, ext in (("3", "audio", "talk", "wav"), ("4", "audio", "listen", "wav"),
                                            ("5", "images", "avatar", "mp4"))}
        return PromptResult(prompt_id, "success", out)

    def download(self, filename, subfolder, folder_type, dest) -> Path:
        job = subfolder.split("/")[2]
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.sources[job][filename.split("_")[0]], dest)
        return Path(dest)


def write_video(path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def renders(assets, librivox, tmp_path_factory):
    """A real 20-frame talking-head video with 0.8 s of real talk and listen speech; and a broken video."""
    folder = tmp_path_factory.mktemp("renders")
    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(FRAMES), container.decode(video=0),
                                                                          strict=False)])
    write_video(folder / "avatar.mp4", frames)
    samples = 16000 * FRAMES // FPS
    soundfile.write(folder / "talk.wav", librivox[0][16000:16000 + samples], 16000)
    soundfile.write(folder / "listen.wav", librivox[1][16000:16000 + samples], 16000)
    Image.fromarray(frames[0]).save(folder / "portrait.png")
    (folder / "broken.mp4").write_bytes(b"not a video")
    good = {"avatar": folder / "avatar.mp4", "talk": folder / "talk.wav", "listen": folder / "listen.wav"}
    return {"j1": good, "j2": {**good, "avatar": folder / "broken.mp4"}, "portrait": folder / "portrait.png"}


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    comfyui = tmp_path_factory.mktemp("ComfyUI")
    (comfyui / "models" / "bm_evaluation").mkdir(parents=True)
    save_file(syncnet.smoke_state_dict(0), str(comfyui / "models" / "bm_evaluation" / "syncnet_v2.safetensors"))
    return models_of_comfyui(comfyui, log=lambda _: None)  # no facenet_vggface2.safetensors: CSIM unavailable


def make_jobs(portrait: Path, *names):
    seed, image = Target("1", "seed"), Target("2", "image")
    return [Job(name, line, {seed: line, image: portrait}, {seed: "seed", image: "portrait"})
            for line, name in enumerate(names, start=2)]


def evaluated(out) -> dict[str, int]:
    events = replay(out / JOURNAL_NAME).events
    return {n: sum(e["event"] == "evaluated" and e["job"] == n for e in events) for n in ("j1", "j2")}


def test_each_finished_job_is_measured_once_and_tabled(renders, metric_models, tmp_path):
    server = RenderingComfy(renders)
    out = tmp_path / "out"
    portrait = renders["portrait"]
    # run 1 without --evaluate: j2 (its video is broken) is done, nothing measured
    BatchRunner(server, WORKFLOW, make_jobs(portrait, "j2"), out, BatchOptions(progress=False)).run()
    assert evaluated(out) == {"j1": 0, "j2": 0} and not (out / "batch_metrics.csv").exists()

    # run 2 with --evaluate: j2 is measured without running again, j1 right after its download
    options = BatchOptions(progress=False, evaluator=JobEvaluator(metric_models, reference_column="portrait"))
    outcomes = {o.name: o for o in BatchRunner(server, WORKFLOW, make_jobs(portrait, "j1", "j2"), out, options).run()}
    assert [outcomes[n].status for n in ("j1", "j2")] == ["done", "skipped"]
    assert server.submitted_jobs() == {"j1": 1, "j2": 1}
    assert evaluated(out) == {"j1": 1, "j2": 1}

    (entry,) = outcomes["j1"].metrics
    report = entry["report"]
    assert entry["video"] == "j1/5_avatar.mp4"
    assert entry["sources"]["talk"].endswith("j1/3_talk.wav")  # the downloaded streams were used
    assert entry["sources"]["listen"].endswith("j1/4_listen.wav")
    assert entry["sources"]["reference"] == str(portrait)  # from the job's portrait column
    assert report["video"]["frames"] == FRAMES and report["face"]["detected_fraction"] >= 0.95
    assert report["lip_sync"]["lse_d"] > 0
    # no face-embedding weights: CSIM unavailable with the missing file named, never a number
    assert report["identity"]["unavailable"].startswith("facenet_vggface2.safetensors is not in")
    assert "csim_mean" not in report["identity"]
    assert "spans_s" in report["listening"], "the listen stream was found and measured"
    (broken,) = outcomes["j2"].metrics
    assert broken["video"] == "j2/5_avatar.mp4" and broken["error"] and "report" not in broken

    with open(out / "batch_metrics.csv") as handle:
        rows = {r["job"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"j1", "j2"}
    assert float(rows["j1"]["lse_d"]) == pytest.approx(report["lip_sync"]["lse_d"])
    assert rows["j1"]["csim_mean"] == "" and rows["j2"]["error"] and rows["j2"]["lse_d"] == ""
    tables = json.loads((out / "batch_metrics.json").read_text())
    assert sorted(t["job"] for t in tables) == ["j1", "j2"]
    in_report = {j["name"]: j for j in json.loads((out / REPORT_NAME).read_text())["jobs"]}
    assert in_report["j1"]["metrics"][0]["report"]["lip_sync"]["lse_d"] == report["lip_sync"]["lse_d"]

    # run 3: everything is measured already; nothing is measured again, the tables stay
    BatchRunner(server, WORKFLOW, make_jobs(portrait, "j1", "j2"), out, options).run()
    assert evaluated(out) == {"j1": 1, "j2": 1}
    assert (out / "batch_metrics.csv").is_file()


def test_an_evaluate_column_that_no_job_has_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "jobs.jsonl").write_text('{"name": "j1", "1.seed": 5}\n')
    args = build_parser().parse_args(["w.json", "jobs.jsonl", "--out", "out", "--evaluate", "--evaluate-talk", "speech"])
    with pytest.raises(BatchSetupError, match="--evaluate-talk speech: no job has a column of that name"):
        make_evaluator(args, read_jobs(tmp_path / "jobs.jsonl"))
