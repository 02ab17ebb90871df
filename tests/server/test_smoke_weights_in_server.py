"""Smoke checkpoints load through ComfyUI's own loader nodes in the real server, and the loaded models run.

Each workflow feeds the loaded model into a cheap native node so the load really happens: the VAEs
encode and decode an image, the audio encoder encodes a real speech clip, the diffusion models are
loaded and passed on. (ComfyUI 0.3.75 has no native InfiniteTalk loader, and its CLIPLoader only
builds the full 5.7 B umT5-XXL; those two are checked in tests/comfy.)
"""

import io
import wave

import numpy as np
import pytest
from PIL import Image

from beyond_monologue.comfyui.comfy_client import ComfyClient

LOADED = ("unet missing", "unet unexpected", "Missing VAE keys", "missing audio encoder", "unexpected audio encoder")


@pytest.fixture(scope="module")
def portrait(comfy_server, assets):
    """The real portrait, uploaded into the server's input folder."""
    return ComfyClient(comfy_server.url).upload_file(assets / "grace_hopper.jpg")


def image_sizes(client, result, node_id):
    images = result.outputs[node_id]["images"]
    return [Image.open(io.BytesIO(client.view(i["filename"], i["subfolder"], i["type"]))).size for i in images]


def assert_clean_load(comfy_server):
    log = comfy_server.log_text()
    for warning in LOADED:
        assert warning not in log, f"{warning!r} in ComfyUI log:\n{comfy_server.log_tail()}"


@pytest.mark.usefixtures("served")
@pytest.mark.parametrize("unet_name", ["wan2.2_ti2v_5B_fp16.safetensors",
                                       "Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors"])
def test_diffusion_models_load_with_unet_loader(client, comfy_server, unet_name):
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet_name, "weight_dtype": "default"}},
        "2": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    result = client.run(prompt, timeout_s=180)
    assert result.status == "success", result.error_message()
    assert "ModelPatcher" in result.outputs["3"]["text"][0]
    assert_clean_load(comfy_server)


@pytest.mark.usefixtures("served")
def test_wan21_vae_encodes_and_decodes(client, comfy_server, portrait):
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "Wan2_1_VAE_bf16.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": portrait}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "area", "width": 64,
                                                     "height": 64, "crop": "center"}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 0]}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    result = client.run(prompt, timeout_s=180)
    assert result.status == "success", result.error_message()
    assert image_sizes(client, result, "6") == [(64, 64)]
    assert_clean_load(comfy_server)


@pytest.mark.usefixtures("served")
def test_wan22_vae_encodes_a_start_image_and_decodes(client, comfy_server, portrait):
    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "wan2.2_vae.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": portrait}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "area", "width": 32,
                                                     "height": 32, "crop": "center"}},
        "4": {"class_type": "Wan22ImageToVideoLatent",
              "inputs": {"vae": ["1", 0], "width": 32, "height": 32, "length": 1, "batch_size": 1,
                         "start_image": ["3", 0]}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    result = client.run(prompt, timeout_s=300)
    assert result.status == "success", result.error_message()
    assert image_sizes(client, result, "6") == [(32, 32)]
    assert_clean_load(comfy_server)


@pytest.mark.usefixtures("served")
def test_wav2vec2_encodes_real_speech(client, comfy_server, assets, tmp_path):
    with wave.open(str(assets / "sample.wav"), "rb") as src:  # the real conversation, 16 kHz mono
        rate = src.getframerate()
        src.setpos(7 * rate)  # a second of speech
        frames = src.readframes(rate)
    clip = tmp_path / "speech_1s.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    assert np.abs(np.frombuffer(frames, "<i2")).max() > 1000  # not silence
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": client.upload_file(clip)}},
        "2": {"class_type": "AudioEncoderLoader",
              "inputs": {"audio_encoder_name": "wav2vec2-chinese-base_fp16.safetensors"}},
        "3": {"class_type": "AudioEncoderEncode", "inputs": {"audio_encoder": ["2", 0], "audio": ["1", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }
    result = client.run(prompt, timeout_s=180)
    assert result.status == "success", result.error_message()
    text = result.outputs["4"]["text"][0]
    assert "'encoded_audio'" in text and "'audio_samples': 16000" in text
    assert_clean_load(comfy_server)
