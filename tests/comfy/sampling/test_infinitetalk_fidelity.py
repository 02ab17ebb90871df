"""BM Sampler's InfiniteTalk path against an independent reference of the official generator (issue 14).

A tiny native Wan2.1-I2V DiT (ComfyUI's own ``WanModel``, float32) with an InfiniteTalk adapter in the
public layout is sampled by ``sample_long_video``. A DIFFUSION_MODEL wrapper inside the adapter's
records, for every model call, the DiT's input, timestep, text context, output velocity per guidance
pass and the per-window ``DuplexCall``. The reference (``tests/infinitetalk_reference.py``, written
from MeiGen-AI/InfiniteTalk ``wan/multitalk.py``) then replays the official loop from the first
noise: the timestep schedule, the known latents put back clean before every call, the two-pass
(text scale 1) or three-pass guidance or APG, the Euler update, and per window the audio tokens of an
official clip (proj1 for every clip's first latent, mirrored audio in the last clip).
"""

from __future__ import annotations

import infinitetalk_reference as official
import pytest
import torch
from sampler_fixtures import duplex_audio, patched_model
from wan_fixtures import conditioning

SHIFT = 5.0
STEPS = 3
LATENT_CHANNELS = 16


pytestmark = pytest.mark.usefixtures("comfy_inference_mode")  # as ComfyUI runs nodes


@pytest.fixture(scope="module")
def wan21(bm):
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    return ModelSamplingSD3().patch(patched_model(bm, "wan21_i2v"), SHIFT)[0]


class CallRecorder:
    """DIFFUSION_MODEL wrapper (added after the adapter's, so it runs inside it and sees the held latents)."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None,
                 **kwargs):
        out = executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
        self.calls.append({"x": x.clone(), "t": timestep.clone(), "context": context.clone(), "out": out.clone(),
                           "conds": list(transformer_options["cond_or_uncond"]), "call": transformer_options["bm_duplex"],
                           "clip": clip_fea})
        return out


def recording(model):
    import comfy.patcher_extension

    recorder, clone = CallRecorder(), model.clone()
    clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_fidelity", recorder)
    return clone, recorder


def i2v_reference(bm, window_latents: int, seed: int = 3):
    import comfy.clip_vision

    g = torch.Generator().manual_seed(seed)
    clip = comfy.clip_vision.Output()
    clip["penultimate_hidden_states"] = torch.randn((1, 257, 1280), generator=g)
    return bm.sampling.reference.Reference("first_frame", torch.randn((1, 16, 1, 4, 4), generator=g),
                                           torch.randn((1, 16, window_latents, 4, 4), generator=g), clip)


def run(bm, model, frames: int, scales, window_latents=3, motion_latents=1, apg=None, full_last=True, seed=11):
    duplex = duplex_audio(bm, frames)
    ref = i2v_reference(bm, window_latents)
    settings = bm.sampling.long_video.SamplingSettings(
        STEPS, "euler", "infinitetalk_linear", seed, scales, window_latents, motion_latents, apg=apg, full_last=full_last)
    recorded, recorder = recording(model)
    positive, negative = conditioning(1), conditioning(2)
    video = bm.sampling.long_video.sample_long_video(recorded, positive, negative, duplex, ref, settings)
    return video, recorder.calls, duplex, ref, (positive[0][0], negative[0][0]), settings


def public_state(bm, model):
    adapter = bm.model.wan_patch.attached_adapter(model)[0].model
    return bm.model.infinitetalk.from_internal(adapter.state_dict())


def replay_window(bm, model, calls, known, noise, scales, text_pos, text_neg, apg=None):
    """The official loop of one clip on the recorded outputs; checks every recorded input; returns the final latent."""
    ts = official.timesteps(STEPS, SHIFT)
    held = known.shape[2]
    latent = noise.clone()
    apg_paths = [official.APGReference(apg.momentum, apg.norm_threshold) for _ in range(2)] if apg else None
    two_pass = abs(scales.text - 1.0) < 1e-9
    expected_texts = [text_pos, text_pos] if two_pass else [text_pos, text_neg, text_neg]
    assert len(calls) == STEPS  # every pass of a step in one batched call
    for i, rec in enumerate(calls):
        latent[:, :, :held] = known  # the official code puts the known latents back before every call
        assert sorted(rec["conds"]) == list(range(len(expected_texts)))  # 2 passes at text scale 1, else 3
        # the last pass drops the audio (zero-audio tokens), the others hear it
        assert rec["call"].branches == {len(expected_texts) - 1: {"talk": "null"}}
        row_of = {cond: row for row, cond in enumerate(rec["conds"])}
        for cond, row in row_of.items():
            torch.testing.assert_close(rec["x"][row:row + 1, :LATENT_CHANNELS], latent, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(rec["t"][row], torch.tensor(ts[i]), rtol=1e-5, atol=1e-3)
            torch.testing.assert_close(rec["context"][row], expected_texts[cond][0])
        assert rec["clip"] is not None  # CLIP vision features in every pass
        out = [rec["out"][row_of[cond]:row_of[cond] + 1] for cond in range(len(expected_texts))]
        cond, second = out[0], out[1]
        if apg is None:
            if two_pass:
                velocity = official.guided_velocity(cond, scales.text, scales.talk, drop_audio=second)
            else:
                velocity = official.guided_velocity(cond, scales.text, scales.talk, drop_text=second, uncond=out[2])
        elif two_pass:
            velocity = cond + (scales.talk - 1) * apg_paths[1](cond - second, cond)
        else:
            uncond = out[2]
            velocity = (cond + (scales.text - 1) * apg_paths[0](cond - second, cond)
                        + (scales.talk - 1) * apg_paths[1](second - uncond, cond))
        latent = official.euler_step(latent, velocity, ts[i], ts[i + 1])
    latent[:, :, :held] = known
    return latent


def check_against_official(bm, model, frames, scales, apg=None, window_latents=3, motion_latents=1):
    import comfy.sample

    video, calls, duplex, ref, (text_pos, text_neg), settings = run(bm, model, frames, scales, window_latents,
                                                                     motion_latents, apg)
    sd = public_state(bm, model)
    windows = bm.sampling.windows.plan_windows(duplex.num_latents, window_latents, motion_latents, full_last=True)
    assert len(calls) == STEPS * len(windows)
    process_in, process_out = model.model.process_latent_in, model.model.process_latent_out
    clip_frames = 4 * (window_latents - 1) + 1
    feats = duplex.talk
    previous_final = None
    for window in windows:
        window_calls = calls[window.index * STEPS:(window.index + 1) * STEPS]
        call = window_calls[0]["call"]
        # the clip's audio: latent 0 through proj1 at every restart; the last clip over mirrored audio
        start = 4 * window.first_latent
        last = start + clip_frames >= len(feats)  # the official last clip: its end reaches the end of the audio
        audio = official.last_clip_audio(feats, start + clip_frames) if last else feats
        torch.testing.assert_close(call.tokens["talk"].float(), official.clip_tokens(sd, audio, start, clip_frames),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(call.null_tokens["talk"].float(),
                                   official.clip_tokens(sd, torch.zeros_like(audio), start, clip_frames), rtol=1e-5, atol=1e-5)
        if window.index == 0:
            known = process_in(ref.latent)  # first clip: the clean image latent
        else:
            known = previous_final[:, :, -motion_latents:]  # later clips: the motion latents, clean
        noise = comfy.sample.prepare_noise(torch.zeros(1, LATENT_CHANNELS, window_latents, 4, 4),
                                           bm.sampling.windows.window_seed(settings.seed, window.index))
        final = replay_window(bm, model, window_calls, known, noise, scales, text_pos, text_neg, apg)
        end = min(window.end_latent, duplex.num_latents)
        got = video[:, :, window.first_latent:end]
        if window.index == 0:
            torch.testing.assert_close(got[:, :, :1], ref.latent)  # latent 0 is the reference itself
        torch.testing.assert_close(got[:, :, window.motion_latents:], process_out(final)[:, :, window.motion_latents:end - window.first_latent],
                                   rtol=1e-4, atol=1e-4)
        previous_final = final
    return video, windows


def test_text_scale_one_two_passes_known_latents_and_schedule_follow_the_official_loop(bm, wan21):
    scales = bm.sampling.guidance.GuidanceScales(text=1.0, talk=2.0, listen=1.0)  # the official LoRA recipe
    video, windows = check_against_official(bm, wan21, 17, scales)  # 5 latents: windows 0..2, 2..4
    assert video.shape == (1, 16, 5, 4, 4) and len(windows) == 2


def test_three_pass_guidance_follows_the_official_loop(bm, wan21):
    scales = bm.sampling.guidance.GuidanceScales(text=5.0, talk=4.0, listen=1.0)
    check_against_official(bm, wan21, 17, scales)


def test_apg_follows_the_official_loop(bm, wan21):
    scales = bm.sampling.guidance.GuidanceScales(text=1.0, talk=3.0, listen=1.0)
    apg = bm.sampling.apg.APGSettings(-0.75, 0.5)  # a low threshold so the clipping acts on the tiny model
    check_against_official(bm, wan21, 17, scales, apg=apg)
    scales = bm.sampling.guidance.GuidanceScales(text=4.0, talk=3.0, listen=1.0)
    check_against_official(bm, wan21, 17, scales, apg=apg)


def test_last_window_is_a_full_clip_over_mirrored_audio(bm, wan21):
    scales = bm.sampling.guidance.GuidanceScales(text=1.0, talk=2.0, listen=1.0)
    video, windows = check_against_official(bm, wan21, 21, scales)  # 6 latents: windows 0..2, 2..4, 4..6
    assert video.shape == (1, 16, 6, 4, 4)
    assert [w.num_latents for w in windows] == [3, 3, 3] and windows[-1].end_latent == 7


def test_known_latents_are_clean_in_every_call_with_comfyui_schedulers_too(bm, wan21):
    """Wan2.1 under ComfyUI's inpaint convention would re-noise them; the official loop never does."""
    duplex, ref = duplex_audio(bm, 17), i2v_reference(bm, 3)
    settings = bm.sampling.long_video.SamplingSettings(2, "euler", "simple", 5, bm.sampling.guidance.GuidanceScales(1.0, 1.0, 1.0),
                                                       3, 1)
    recorded, recorder = recording(wan21)
    video = bm.sampling.long_video.sample_long_video(recorded, conditioning(1), conditioning(2), duplex, ref, settings)
    assert len(recorder.calls) == 2 * 2
    for rec in recorder.calls[:2]:  # first window: the reference image latent as latent 0
        torch.testing.assert_close(rec["x"][:, :LATENT_CHANNELS, :1], wan21.model.process_latent_in(ref.latent))
    for rec in recorder.calls[2:]:  # second window: the first window's last latent, clean
        torch.testing.assert_close(rec["x"][:, :LATENT_CHANNELS, :1], wan21.model.process_latent_in(video[:, :, 2:3]),
                                   rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(video[:, :, :1], ref.latent)
