"""BM Sampler on both backbones (tiny native Wan models, ComfyUI's VAEs): frame counts, seeds, Cancel, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from sampler_fixtures import duplex_audio, patched_model
from tiny_wan_vae import wan21_vae_state_dict
from wan_fixtures import conditioning

pytestmark = pytest.mark.usefixtures("comfy_inference_mode")  # as ComfyUI runs nodes


@pytest.fixture(scope="module")
def node(pack_nodes):
    return pack_nodes["BMSampler"]


@pytest.fixture(scope="module")
def portrait(assets):
    """The real portrait as a ComfyUI IMAGE [1, H, W, 3]."""
    pixels = np.asarray(Image.open(assets / "grace_hopper.jpg").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels)[None]


@pytest.fixture(scope="module")
def wan21_vae(comfy):
    import comfy.sd

    return comfy.sd.VAE(sd=wan21_vae_state_dict())


@pytest.fixture(scope="module")
def wan21(bm):
    return patched_model(bm, "wan21_i2v")


def clip_vision_output(seed=0):
    """What CLIP Vision Encode returns for Wan (``penultimate_hidden_states`` [1, 257, 1280])."""
    import comfy.clip_vision

    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = torch.randn((1, 257, 1280), generator=torch.Generator().manual_seed(seed))
    return out


def run(node, model, vae, image, duplex, **overrides):
    inputs = {"positive": conditioning(1), "negative": conditioning(2), "width": 32, "height": 32, "seed": 1,
              "steps": 2, "sampler_name": "euler", "scheduler": "simple", "shift": 5.0, "cfg_text": 2.0,
              "cfg_talk": 1.5, "cfg_listen": 1.0, "window_frames": 9, "motion_latents": 1, "guide_position": "auto",
              "guide_offset": 1, "clip_vision_output": clip_vision_output(), **overrides}
    return node.execute(model=model, duplex_audio=duplex, vae=vae, reference=image, **inputs).result[0]


class ConcatRecorder:
    """``model_function_wrapper`` keeping the I2V concat (mask + image latent) and CLIP features of every call."""

    def __init__(self):
        self.concat, self.clip = [], []

    def __deepcopy__(self, memo):  # MODEL clones deep-copy model_options: keep recording into this one
        return self

    def __call__(self, apply_model, args):
        self.concat.append(args["c"]["c_concat"].clone())
        self.clip.append(args["c"].get("clip_fea"))
        return apply_model(args["input"], args["timestep"], **args["c"])


def test_wan21_i2v_three_windows_decode_to_the_audio_length(bm, node, pack_nodes, wan21, wan21_vae, portrait):
    import nodes as comfy_nodes

    model = wan21.clone()
    recorder = ConcatRecorder()
    model.set_model_unet_function_wrapper(recorder)
    latent = run(node, model, wan21_vae, portrait, duplex_audio(bm, 25))
    samples = latent["samples"]
    assert samples.shape == (1, 16, 7, 4, 4)  # 25 frames = 7 latents: windows of 3 latents overlapping by 1
    assert len(recorder.concat) == 3 * 2  # 3 windows x 2 steps, the guidance evaluations batched in one call
    for concat in recorder.concat:  # the reference as frame 0 of every window through the I2V image input
        assert concat.shape == (3, 20, 3, 4, 4)  # c, t and u (talk-only adapter: l = u)
        assert torch.all(concat[:, :4, 0] == 1) and torch.all(concat[:, :4, 1:] == 0)
    assert all(clip is not None and clip.shape[-2:] == (257, 1280) for clip in recorder.clip)
    native = comfy_nodes.VAEDecode().decode(wan21_vae, latent)[0]
    frames = pack_nodes["BMDecodeVideo"].execute(latent=latent, vae=wan21_vae, fps=25.0, tiled=False, tile_size=256,
                                                 tile_overlap=64).args[0]
    assert native.shape == frames.shape == (25, 32, 32, 3)


def test_same_seed_same_latent_and_cancel_leaves_the_next_run_intact(bm, node, wan21, wan21_vae, portrait):
    import comfy.model_management as mm

    duplex = duplex_audio(bm, 17)
    first = run(node, wan21, wan21_vae, portrait, duplex, seed=3)["samples"]
    assert torch.equal(first, run(node, wan21, wan21_vae, portrait, duplex, seed=3)["samples"])
    assert not torch.allclose(first, run(node, wan21, wan21_vae, portrait, duplex, seed=4)["samples"])

    calls = []

    def cancel_in_window_two(apply_model, args):
        calls.append(1)
        if len(calls) == 3:  # first step of the second window
            mm.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])

    cancelling = wan21.clone()
    cancelling.set_model_unet_function_wrapper(cancel_in_window_two)
    with pytest.raises(mm.InterruptProcessingException):
        run(node, cancelling, wan21_vae, portrait, duplex, seed=3)
    assert len(calls) == 3 and not mm.processing_interrupted()  # stopped at once; the flag is consumed
    assert torch.equal(first, run(node, wan21, wan21_vae, portrait, duplex, seed=3)["samples"])


def test_wrong_inputs_get_clear_errors(bm, node, wan21, wan21_vae, portrait):
    from wan_fixtures import tiny_wan

    duplex = duplex_audio(bm, 9)
    with pytest.raises(ValueError, match="guide_position: past_end needs a model whose input is the latent alone"):
        run(node, wan21, wan21_vae, portrait, duplex, guide_position="past_end")
    with pytest.raises(ValueError, match="listen_sigma: is set but the adapter has no listen branch"):
        run(node, wan21, wan21_vae, portrait, duplex, listen_sigma="0.5")
    with pytest.raises(ValueError, match="model: has no duplex adapter attached"):
        run(node, tiny_wan("wan21_i2v"), wan21_vae, portrait, duplex)
    with pytest.raises(ValueError, match="vae: makes 16-channel latents but the model works on 48"):
        run(node, patched_model(bm, "wan22_5b"), wan21_vae, portrait, duplex)
    with pytest.raises(ValueError, match="reference: is"):
        run(node, wan21, wan21_vae, portrait[0], duplex)
    with pytest.raises(ValueError, match=r"width: is 0\. Fix: use a multiple of 16 from 32"):  # e.g. from a linked primitive
        run(node, wan21, wan21_vae, portrait, duplex, width=0)
    with pytest.raises(ValueError, match="motion_latents: is 0"):
        run(node, wan21, wan21_vae, portrait, duplex, motion_latents=0)
    assert node.validate_inputs(width=832, height=480, window_frames=81, motion_latents=3, talk_sigma="0.04, inf") is True
    for values, message in [({"width": 840}, "width: is 840. Fix: use a multiple of 16"),
                            ({"height": 20000}, "height: is 20000. Fix: use a multiple of 16 from 32 to 16384"),
                            ({"window_frames": 80}, "window_frames: is 80. Fix: use 4n+1"),
                            ({"window_frames": 4001}, "window_frames: is 4001. Fix: use 4n+1 frames from 5 to 1001"),
                            ({"window_frames": 9, "motion_latents": 3}, "motion_latents: is 3 but a window of 9 frames has 3"),
                            ({"window_frames": None, "motion_latents": 0}, "motion_latents: is 0. Fix: use 1 to 16"),
                            ({"talk_alpha": "strong"}, "talk_alpha: 'strong' is not a list of numbers")]:
        assert message in node.validate_inputs(**values)




def test_i2v_without_clip_vision_is_refused_unless_given_in_the_conditioning_or_allowed(bm, node, wan21, wan21_vae, portrait):
    duplex = duplex_audio(bm, 9)
    with pytest.raises(ValueError, match=r"clip_vision_output: is not connected.*Fix: add Load CLIP Vision \(clip_vision_h"):
        run(node, wan21, wan21_vae, portrait, duplex, clip_vision_output=None)
    model, recorder = wan21.clone(), ConcatRecorder()
    model.set_model_unet_function_wrapper(recorder)
    carried = conditioning(1, {"clip_vision_output": clip_vision_output(5)})  # e.g. through WanImageToVideo
    run(node, model, wan21_vae, portrait, duplex, clip_vision_output=None, positive=carried)
    expected = clip_vision_output(5)["penultimate_hidden_states"]
    assert recorder.clip and all(torch.equal(clip[0], expected[0]) and torch.equal(clip[-1], expected[0])
                                 for clip in recorder.clip)  # every anchor (negative prompt too) gets it
    model, recorder = wan21.clone(), ConcatRecorder()
    model.set_model_unet_function_wrapper(recorder)
    run(node, model, wan21_vae, portrait, duplex, clip_vision_output=None, allow_missing_clip_vision=True)
    assert recorder.clip and all(clip is None for clip in recorder.clip)


class CallRecorder:
    """``model_function_wrapper`` keeping the ``bm_duplex`` call of every model call."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, apply_model, args):
        self.calls.append(args["c"]["transformer_options"]["bm_duplex"])
        return apply_model(args["input"], args["timestep"], **args["c"])


def test_two_speakers_in_one_frame_get_their_regions_and_bad_masks_are_refused(bm, node, wan21, wan21_vae, wan22_vae,
                                                                                portrait):
    duplex = duplex_audio(bm, 9)
    model, recorder = wan21.clone(), CallRecorder()
    model.set_model_unet_function_wrapper(recorder)
    run(node, model, wan21_vae, portrait, duplex, speaker_regions="left_right")
    masks = recorder.calls[0].speakers.masks
    # the official default boxes: rows 5%..95% of the height, 5%..95% of each half's width
    expected = torch.zeros(2, 32, 32)
    expected[0, 1:30, 0:15], expected[1, 1:30, 16:31] = 1, 1
    assert torch.equal(masks, expected)
    assert recorder.calls[0].speakers.tokens.shape[1] == 2 * recorder.calls[0].tokens["talk"].shape[1]  # both speakers

    left = torch.zeros(1, *portrait.shape[1:3])
    left[:, :, : portrait.shape[2] // 2] = 1
    right = 1 - left
    model, recorder = wan21.clone(), CallRecorder()
    model.set_model_unet_function_wrapper(recorder)
    run(node, model, wan21_vae, portrait, duplex, speaker_regions="masks", speaker_1_mask=left, speaker_2_mask=right)
    masks = recorder.calls[0].speakers.masks
    assert masks.shape == (2, 32, 32) and torch.equal(masks[0] + masks[1], torch.ones(32, 32))
    for overrides, message in [
            ({"speaker_1_mask": left}, "speaker_2_mask: is not connected but speaker_regions is masks"),
            ({"speaker_1_mask": left[:, :10], "speaker_2_mask": right}, "speaker_1_mask: is (10, "),
            ({"speaker_1_mask": left, "speaker_2_mask": left}, "speaker_2_mask: overlaps speaker_1_mask"),
            ({"speaker_1_mask": left * 0, "speaker_2_mask": right}, "speaker_1_mask: covers nothing")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            run(node, wan21, wan21_vae, portrait, duplex, speaker_regions="masks", **overrides)
    with pytest.raises(ValueError, match="speaker_regions: is left_right, but two people in one frame need the InfiniteTalk"):
        run(node, patched_model(bm, "wan22_5b"), wan22_vae, portrait, duplex, speaker_regions="left_right")


def test_two_people_without_two_voices_or_with_a_picture_of_another_aspect_are_refused(bm, node, wan21, wan21_vae,
                                                                                       portrait):
    duplex = duplex_audio(bm, 9)
    one_voice = bm.audio.duplex_audio.DuplexAudio(duplex.talk, duplex.listen, duplex.talk_activity,
                                                  torch.full((9,), 0.1), fps=duplex.fps)  # Silero-like silence
    with pytest.raises(ValueError, match=re.escape("duplex_audio: has no speech in its listen stream (speaker 2)")):
        run(node, wan21, wan21_vae, portrait, one_voice, speaker_regions="left_right")
    run(node, wan21, wan21_vae, portrait, one_voice)  # one avatar: a silent listen stream is fine
    # grace_hopper is 512x600: at 64x32 the centre crop keeps 43 % of its height
    with pytest.raises(ValueError, match=re.escape("reference: is 512x600 but the video is 64x32: the centre crop "
                                                   "would cut 57% of the picture's height")):
        run(node, wan21, wan21_vae, portrait, duplex, speaker_regions="left_right", width=64, height=32)
    run(node, wan21, wan21_vae, portrait, duplex, speaker_regions="left_right", width=32, height=32)  # 85 % kept


def test_wan22_5b_with_the_past_end_guide_decodes_with_vae_decode(bm, node, wan22_vae, portrait):
    import nodes as comfy_nodes

    model = patched_model(bm, "wan22_5b")
    latent = run(node, model, wan22_vae, portrait, duplex_audio(bm, 9), window_frames=5)  # 2 windows of 2 latents
    assert latent["samples"].shape == (1, 48, 3, 2, 2)
    assert comfy_nodes.VAEDecode().decode(wan22_vae, latent)[0].shape == (9, 32, 32, 3)
    with pytest.raises(ValueError, match=r"width: is 48 pixels; this VAE and model need a multiple of 32\. Fix: use 32 or 64"):
        run(node, model, wan22_vae, portrait, duplex_audio(bm, 9), width=48)
