"""BM Evaluate Avatar in a real ComfyUI: the carphone video through the native Load Video and Get
Video Components, LibriVox speech as the talk audio, SyncNet smoke weights in models/bm_evaluation;
the metrics run and the plot is previewed."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
from PIL import Image


def test_the_node_evaluates_a_loaded_video_and_previews_its_plot(comfy, comfy_server, client, assets, librivox, tmp_path):
    from safetensors.torch import save_file

    from beyond_monologue.evaluate import syncnet

    folder = comfy_server.base_dir / "models" / "bm_evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(syncnet.smoke_state_dict(0), str(folder / "syncnet_v2.safetensors"))
    video = client.upload_file(assets / "carphone_pristine.mp4", name="bm_eval_carphone.mp4")
    seconds = 30 / (30000 / 1001)  # the first 30 frames
    pcm = (librivox[0][16000:16000 + round(16000 * seconds)] * 32767).astype("<i2")
    with wave.open(str(tmp_path / "bm_eval_talk.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm.tobytes())
    talk = client.upload_file(tmp_path / "bm_eval_talk.wav")
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": video}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": 0, "length": 30}},
        "4": {"class_type": "LoadAudio", "inputs": {"audio": talk}},
        "5": {"class_type": "BMEvaluateAvatar", "inputs": {"frames": ["3", 0], "fps": ["2", 2], "talk_audio": ["4", 0],
                                                           "every_nth": 10, "syncnet_weights": "syncnet_v2.safetensors",
                                                           "face_weights": "none"}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
    }
    result = client.run(prompt, timeout_s=300)
    assert result.status == "success", result.error_message()
    plot = result.outputs["5"]["images"][0]
    image = Image.open(io.BytesIO(client.view(plot["filename"], plot["subfolder"], plot["type"])))
    assert image.size == (960, 600)
    report = json.loads(result.outputs["6"]["text"][0])
    assert report["video"]["frames"] == 30 and report["face"]["detected_fraction"] >= 0.95
    assert report["lip_sync"]["lse_d"] > 0 and report["identity"] == {"unavailable": "no reference portrait was given"}
    assert np.isfinite(report["head_motion"]["mean"])
