"""BM Decode Video and BM Dyadic Compose in a real ComfyUI: native loaders in, native Save Video out, MP4 checked."""

from __future__ import annotations

import io
import math
import wave

import numpy as np
import pytest
import torch
from tiny_wan_vae import wan21_vae_state_dict

VAE_NAME = "bm_test_wan21_vae.safetensors"
SAMPLE_RATE = 16000
FPS = 25


def write_latent(path, samples: torch.Tensor) -> None:
    """A .latent file as ComfyUI's Save Latent writes it (read by Load Latent)."""
    import safetensors.torch

    safetensors.torch.save_file({"latent_tensor": samples.contiguous(), "latent_format_version_0": torch.tensor([])},
                                str(path))


@pytest.fixture(scope="module")
def inputs(comfy, comfy_server, tmp_path_factory):
    """The tiny Wan2.1 VAE in the server's models/vae, two latents and a 1.3 s tone uploaded to its input folder."""
    import safetensors.torch

    from beyond_monologue.comfyui.comfy_client import ComfyClient

    client = ComfyClient(comfy_server.url)
    vae_dir = comfy_server.base_dir / "models" / "vae"
    vae_dir.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(wan21_vae_state_dict(), str(vae_dir / VAE_NAME))
    folder = tmp_path_factory.mktemp("video_inputs")
    names = {}
    for key, shape in {"a": (1, 16, 6, 4, 5), "b": (1, 16, 6, 8, 6), "wrong": (1, 48, 2, 2, 2)}.items():
        write_latent(folder / f"bm_{key}.latent", torch.randn(shape, generator=torch.Generator().manual_seed(len(key))))
        names[key] = client.upload_file(folder / f"bm_{key}.latent")
    t = np.arange(int(1.3 * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(folder / "bm_tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    names["audio"] = client.upload_file(folder / "bm_tone.wav")
    return names


def read_mp4(client, entry) -> dict:
    """Frame count, size, frame rate and audio stream duration of a saved MP4, read with PyAV (ComfyUI's own)."""
    import av

    data = client.view(entry["filename"], entry["subfolder"], entry["type"])
    with av.open(io.BytesIO(data)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        info = {"size": (video.width, video.height), "fps": video.average_rate, "sample_rate": audio.rate,
                "audio_s": float(audio.duration * audio.time_base)}
        info["frames"] = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(data)) as container:
        info["decoded_audio_s"] = sum(f.samples for f in container.decode(audio=0)) / info["sample_rate"]
    return info


def test_decode_and_compose_save_mp4s_with_audio_of_the_video_duration(client, inputs):
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_NAME}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": inputs["a"]}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": inputs["audio"]}},
        "4": {"class_type": "BMDecodeVideo", "inputs": {"latent": ["2", 0], "vae": ["1", 0], "fps": FPS, "tiled": False,
                                                        "tile_size": 256, "tile_overlap": 64, "audio": ["3", 0]}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 1], "filename_prefix": "test/bm_decode",
                                                    "format": "auto", "codec": "auto"}},
        "6": {"class_type": "LoadLatent", "inputs": {"latent": inputs["b"]}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 0]}},  # native decode, same format
        "8": {"class_type": "BMDyadicCompose", "inputs": {"image_a": ["4", 0], "image_b": ["7", 0],
                                                          "conversation": ["3", 0], "layout": "side_by_side",
                                                          "length_rule": "hold_last_frame", "fps": FPS, "gap": 0}},
        "9": {"class_type": "SaveVideo", "inputs": {"video": ["8", 1], "filename_prefix": "test/bm_dyadic",
                                                    "format": "auto", "codec": "auto"}},
    }
    events = []
    result = client.run(prompt, timeout_s=300, on_event=lambda kind, data: events.append((kind, data)))
    assert result.status == "success", result.error_message()
    progress = [d["value"] for kind, d in events if kind == "progress" and d.get("node") == "4"]
    assert progress[-1] == 6  # one step per latent frame

    one_frame_s = 1 / FPS
    single = read_mp4(client, result.outputs["5"]["images"][0])
    assert single["frames"] == 21 and single["size"] == (40, 32) and single["fps"] == FPS
    assert single["sample_rate"] == SAMPLE_RATE
    assert math.isclose(single["audio_s"], 21 / FPS, abs_tol=one_frame_s)  # 1.3 s tone trimmed to 0.84 s
    # the decoded AAC samples add at most one 1024-sample AAC frame of encoder padding
    assert 21 / FPS - one_frame_s <= single["decoded_audio_s"] <= 21 / FPS + 1024 / SAMPLE_RATE

    dyadic = read_mp4(client, result.outputs["9"]["images"][0])
    # a: 32x40 upscaled to height 64 -> 80 wide; b (native VAE Decode): 64x48
    assert dyadic["frames"] == 21 and dyadic["size"] == (128, 64) and dyadic["fps"] == FPS
    assert math.isclose(dyadic["audio_s"], 21 / FPS, abs_tol=one_frame_s)

    # both nodes also preview their VIDEO as a temp MP4 (ui.PreviewVideo), the same video as the saved one
    for node, saved in (("4", single), ("8", dyadic)):
        (entry,) = result.outputs[node]["images"]
        assert entry["type"] == "temp" and result.outputs[node]["animated"] == [True]
        preview = read_mp4(client, entry)
        assert (preview["frames"], preview["size"], preview["fps"]) == (saved["frames"], saved["size"], saved["fps"])


def test_wrong_vae_is_a_node_error_and_the_server_stays_up(client, inputs):
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_NAME}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": inputs["wrong"]}},  # 48 channels: a Wan2.2 latent
        "3": {"class_type": "BMDecodeVideo", "inputs": {"latent": ["2", 0], "vae": ["1", 0], "fps": FPS, "tiled": False,
                                                        "tile_size": 256, "tile_overlap": 64}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 1], "filename_prefix": "test/bm_wrong",
                                                    "format": "auto", "codec": "auto"}},
    }
    result = client.run(prompt, timeout_s=120)
    assert result.status == "error"
    message = result.error_message()
    assert "48 channels" in message and "wan2.2_vae" in message and "Fix:" in message
    assert client.system_stats()
