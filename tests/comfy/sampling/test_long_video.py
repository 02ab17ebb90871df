"""Long-form sampling and the duplex guider on tiny native Wan models, through ComfyUI's own sampler."""

from __future__ import annotations

import itertools

import pytest
import torch
from sampler_fixtures import duplex_audio, patched_model
from wan_fixtures import ChunkRecorder, conditioning

STEPS = 2


pytestmark = pytest.mark.usefixtures("comfy_inference_mode")  # as ComfyUI runs nodes


@pytest.fixture(scope="module")
def wan22(bm):
    return patched_model(bm, "wan22_5b")


def settings(bm, **overrides):
    values = {"steps": STEPS, "sampler_name": "euler", "scheduler": "simple", "seed": 7, "window_latents": 3,
              "motion_latents": 1, "scales": bm.sampling.guidance.GuidanceScales(1.0, 1.0, 1.0), **overrides}
    return bm.sampling.long_video.SamplingSettings(**values)


def reference(bm, position="past_end", seed=3):
    return bm.sampling.reference.Reference(position, torch.randn((1, 48, 1, 4, 4), generator=torch.Generator().manual_seed(seed)))


class DiffusionModelRecorder:
    """A DIFFUSION_MODEL wrapper (inside the adapter's, so it sees the appended guide) keeping x and timestep."""

    def __init__(self):
        self.calls = []

    def __call__(self, executor, x, timestep, *args, **kwargs):
        self.calls.append((x.clone(), timestep.clone()))
        return executor(x, timestep, *args, **kwargs)


def recording(model):
    import comfy.patcher_extension

    recorder = DiffusionModelRecorder()
    clone = model.clone()
    clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_recorder", recorder)
    return clone, recorder


def test_three_windows_give_the_audio_length_and_continue_from_clean_motion_latents(bm, wan22):
    duplex = duplex_audio(bm, 25)  # 25 frames = 7 latents = windows (0..2), (2..4), (4..6)
    ref = reference(bm)
    model, recorder = recording(wan22)
    steps_seen = []
    out = bm.sampling.long_video.sample_long_video(model, conditioning(1), conditioning(2), duplex, ref, settings(bm),
                                          on_step=lambda done, total, x0: steps_seen.append((done, total)))
    assert out.shape == (1, 48, 7, 4, 4) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert steps_seen == [(k, 6) for k in range(1, 7)]  # one progress over all steps of all windows
    assert len(recorder.calls) == 3 * STEPS  # cfg all 1: one model evaluation per step
    guide_in = wan22.model.process_latent_in(ref.latent)
    for index, first_latent in enumerate((0, 2, 4)):
        for x, t in recorder.calls[index * STEPS:(index + 1) * STEPS]:
            assert x.shape[2] == 4 and t.shape == (1, 4)  # 3 window latents + the guide frame
            torch.testing.assert_close(x[:, :, 3:], guide_in)  # guide: the clean reference ...
            assert t[0, 3] == 0  # ... at timestep 0
            if index == 0:
                assert torch.all(t[0, :3] > 0)
                continue
            # motion latent: the finished latent of the previous window, clean (timestep 0), never re-noised
            torch.testing.assert_close(x[:, :, :1], wan22.model.process_latent_in(out[:, :, first_latent:first_latent + 1]),
                                       rtol=1e-5, atol=1e-5)
            assert t[0, 0] == 0 and torch.all(t[0, 1:3] > 0)


def test_same_seed_same_video_other_seed_another(bm, wan22, monkeypatch):
    import comfy.sample

    duplex, ref = duplex_audio(bm, 17), reference(bm)
    noise_seeds = []
    prepare_noise = comfy.sample.prepare_noise

    def recording_prepare_noise(latent, seed, *args, **kwargs):
        noise_seeds.append(seed)
        return prepare_noise(latent, seed, *args, **kwargs)

    monkeypatch.setattr(comfy.sample, "prepare_noise", recording_prepare_noise)

    def run(seed):
        return bm.sampling.long_video.sample_long_video(wan22, conditioning(1), conditioning(2), duplex, ref, settings(bm, seed=seed))

    first = run(11)
    windows = len(noise_seeds)
    assert windows >= 2
    # every window draws its own noise from the node's seed (not only through the previous window's motion latents)
    assert noise_seeds == [bm.sampling.long_video.window_seed(11, k) for k in range(windows)]
    assert len(set(noise_seeds)) == windows
    assert torch.equal(first, run(11))
    other = run(12)
    assert noise_seeds[2 * windows:] == [bm.sampling.long_video.window_seed(12, k) for k in range(windows)]
    assert not torch.allclose(first[:, :, 3:], other[:, :, 3:])
    assert first.is_contiguous() and first.untyped_storage().nbytes() == first.numel() * 4  # owns exactly the video


def test_first_frame_on_wan22_keeps_the_reference_as_clean_latent_0(bm, wan22):
    ref = reference(bm, "first_frame")
    model, recorder = recording(wan22)
    out = bm.sampling.long_video.sample_long_video(model, conditioning(1), conditioning(2), duplex_audio(bm, 9), ref,
                                          settings(bm, window_latents=3))
    torch.testing.assert_close(out[:, :, :1], ref.latent, rtol=1e-5, atol=1e-5)
    x, t = recorder.calls[0]
    assert x.shape[2] == 3 and t[0, 0] == 0 and torch.all(t[0, 1:] > 0)  # no guide frame appended


def test_guided_step_is_the_weighted_sum_of_separately_computed_anchor_outputs(bm, wan22):
    """One euler step from sigma 1 returns the guided denoised latent: compare it with each anchor run alone."""
    import comfy.sample
    import comfy.samplers

    duplex = duplex_audio(bm, 13)
    positive, negative = conditioning(1), conditioning(2)
    anchors = bm.sampling.guidance.guidance_anchors(bm.sampling.guidance.GuidanceScales(text=3.0, talk=2.0, listen=1.5))
    assert len(anchors) == 4
    noise = torch.randn((1, 48, 4, 4, 4), generator=torch.Generator().manual_seed(0))

    def with_call(branches):
        clone = wan22.clone()
        clone.model_options["transformer_options"]["bm_duplex"] = bm.model.wan_patch.prepare_window(
            wan22, duplex, 0, 4, branches=branches)
        return clone

    guided_model = with_call(bm.sampling.guidance.anchor_branches(anchors))
    recorder = ChunkRecorder()
    guided_model.set_model_unet_function_wrapper(recorder)
    guider = bm.sampling.duplex_guider.DuplexGuider(guided_model, anchors)
    guider.set_conds(positive, negative)
    sigmas = comfy.samplers.KSampler(wan22, 1, "cpu", "euler", "simple").sigmas
    guided = guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas, seed=0)
    assert sorted(recorder.outputs) == [0, 1, 2, 3] and all(len(v) == 1 for v in recorder.outputs.values())  # one batch

    expected = torch.zeros_like(guided)
    for anchor in anchors:
        alone = comfy.sample.sample(with_call({0: dict(anchor.modes)}), noise, 1, 1.0, "euler", "simple",
                                    positive if anchor.text == "positive" else negative, negative,
                                    torch.zeros_like(noise), seed=0, disable_pbar=True)
        expected += anchor.weight * alone
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-4)
    nulls_differ = [recorder.outputs[i][0] for i in range(4)]
    assert all(not torch.allclose(a, b) for a, b in itertools.pairwise(nulls_differ))


def test_unit_scales_equal_comfyui_ksampler_without_cfg(bm, wan22):
    """All scales 1: exactly what ComfyUI's KSampler gives with cfg 1 on the same windowed model."""
    import comfy.sample

    duplex, ref = duplex_audio(bm, 9), reference(bm)
    ours = bm.sampling.long_video.sample_long_video(wan22, conditioning(1), conditioning(2), duplex, ref,
                                           settings(bm, window_latents=3, seed=5))
    clone = wan22.clone()
    guide = bm.sampling.duplex_call.GuideLatent(wan22.model.process_latent_in(ref.latent), 3)
    clone.model_options["transformer_options"]["bm_duplex"] = bm.model.wan_patch.prepare_window(wan22, duplex, 0, 3, guide=guide)
    noise = comfy.sample.prepare_noise(torch.zeros((1, 48, 3, 4, 4)), 5)
    native = comfy.sample.sample(clone, noise, STEPS, 1.0, "euler", "simple", conditioning(1), conditioning(2),
                                 torch.zeros_like(noise), seed=5, disable_pbar=True)
    torch.testing.assert_close(ours, native, rtol=0, atol=0)
