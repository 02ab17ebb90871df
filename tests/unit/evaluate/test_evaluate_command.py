"""python -m beyond_monologue.evaluate: a folder of rendered videos -> metrics.csv and metrics.json."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import soundfile
import torch
from PIL import Image
from safetensors.torch import save_file

from beyond_monologue.evaluate import identity, syncnet
from beyond_monologue.evaluate.__main__ import main

FRAMES, FPS = 20, 25


def write_video(path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def test_a_results_folder_becomes_tables(assets, librivox, tmp_path, capsys):
    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(FRAMES), container.decode(video=0),
                                                                          strict=False)])
    results = tmp_path / "results"
    results.mkdir()
    write_video(results / "take1.mp4", frames)
    samples = 16000 * FRAMES // FPS
    soundfile.write(results / "take1.talk.wav", librivox[0][16000:16000 + samples], 16000)
    soundfile.write(results / "take1.listen.wav", librivox[1][16000:16000 + samples], 16000)
    Image.fromarray(frames[0]).save(results / "take1.reference.png")
    (results / "broken.mp4").write_text("not a video")
    models = tmp_path / "ComfyUI" / "models" / "bm_evaluation"
    models.mkdir(parents=True)
    save_file(syncnet.smoke_state_dict(0), str(models / "syncnet_v2.safetensors"))  # no face weights: CSIM unavailable

    code = main(["videos", str(results), "--comfyui", str(tmp_path / "ComfyUI"), "--out", str(tmp_path / "out")])
    assert code == 0
    assert "facenet_vggface2.safetensors is not in" in capsys.readouterr().out
    with open(tmp_path / "out" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["video"] for r in rows] == ["broken.mp4", "take1.mp4"]
    assert rows[0]["error"] and rows[0]["lse_c"] == ""
    take = rows[1]
    assert take["error"] == "" and int(take["frames"]) == FRAMES and float(take["fps"]) == FPS
    assert float(take["lse_d"]) > 0 and take["csim_mean"] == "" and float(take["face_detected_fraction"]) >= 0.95
    reports = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert reports[1]["report"]["identity"]["unavailable"].startswith("facenet_vggface2.safetensors is not in")


def test_convert_writes_safetensors(tmp_path, capsys):
    torch.save(identity.smoke_state_dict(0), tmp_path / "vgg.pt")
    assert main(["convert", "facenet", str(tmp_path / "vgg.pt"), str(tmp_path / "out" / "f.safetensors")]) == 0
    assert (tmp_path / "out" / "f.safetensors").is_file() and "wrote" in capsys.readouterr().out
