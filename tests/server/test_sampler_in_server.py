"""BM Sampler in a real ComfyUI: native loaders on smoke files, Cancel mid-run, the server stays healthy.

The diffusion model, VAE and adapter are the smoke checkpoints in the server's models folders,
loaded by UNETLoader, VAELoader and BM Apply Duplex Adapter; the portrait is uploaded and read
by LoadImage. Text conditioning and duplex audio come from the test-only nodes of
``tests/server/bm_test_nodes`` (see there why).
"""

from __future__ import annotations

import pytest

UNET = "Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors"
ADAPTER = "wan2.1_infiniteTalk_single_fp16.safetensors"
VAE = "Wan2_1_VAE_bf16.safetensors"
SAMPLER_NODE = "8"


@pytest.fixture(scope="module")
def portrait(comfy_server, assets):
    from beyond_monologue.comfyui.comfy_client import ComfyClient

    return ComfyClient(comfy_server.url).upload_file(assets / "grace_hopper.jpg")


def workflow(portrait: str, frames: int, steps: int, seed: int = 0) -> dict:
    """Native loaders -> adapter -> BM Sampler -> native VAE Decode -> Preview Image."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "2": {"class_type": "BMApplyDuplexAdapter",
              "inputs": {"model": ["1", 0], "adapter": ADAPTER, "talk_strength": 1.0, "listen_strength": 1.0}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "4": {"class_type": "LoadImage", "inputs": {"image": portrait}},
        "5": {"class_type": "BMTestConditioning", "inputs": {"tokens": 8, "seed": 1}},
        "6": {"class_type": "BMTestConditioning", "inputs": {"tokens": 8, "seed": 2}},
        "7": {"class_type": "BMTestDuplexAudio", "inputs": {"frames": frames, "seed": 3}},
        SAMPLER_NODE: {"class_type": "BMSampler", "inputs": {
            "model": ["2", 0], "positive": ["5", 0], "negative": ["6", 0], "duplex_audio": ["7", 0], "vae": ["3", 0],
            "reference": ["4", 0], "width": 32, "height": 32, "seed": seed, "steps": steps, "sampler_name": "euler",
            "scheduler": "simple", "shift": 5.0, "cfg_text": 2.0, "cfg_talk": 1.5, "cfg_listen": 1.0,
            "window_frames": 9, "motion_latents": 1, "guide_position": "auto", "guide_offset": 1,
            "allow_missing_clip_vision": True}},  # the smoke set has no CLIP vision model
        "9": {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLER_NODE, 0], "vae": ["3", 0]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}},
    }


@pytest.mark.usefixtures("served")
def test_cancel_mid_run_then_the_next_prompt_renders(client, portrait):
    progress = []

    def on_event(kind, data):
        if kind == "progress" and data.get("node") == SAMPLER_NODE:
            progress.append((data["value"], data["max"]))
            if len(progress) == 1:
                client.interrupt()

    # 20 windows x 20 steps: far longer than it takes the interrupt to arrive
    cancelled = client.run(workflow(portrait, frames=4 * (3 + 19 * 2 - 1) + 1, steps=20), timeout_s=300, on_event=on_event)
    assert cancelled.status == "interrupted", cancelled.messages
    assert progress and progress[0][1] == 400 and progress[-1][0] < 400  # one bar over all windows' steps; stopped early
    assert SAMPLER_NODE not in cancelled.outputs and "10" not in cancelled.outputs

    # 4 latents: windows 0-2, 2-4 (InfiniteTalk: a full last window over mirrored audio, latent 4 dropped)
    done = client.run(workflow(portrait, frames=13, steps=2, seed=1), timeout_s=300)
    assert done.status == "success", done.error_message()
    assert len(done.outputs["10"]["images"]) == 13  # 4n+1 frames of the audio, the overlap removed
