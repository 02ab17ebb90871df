"""Text/talk/listen guidance anchors: weights of the documented formula, merging, skipping zero weights."""

import infinitetalk_reference
import pytest
import torch

from beyond_monologue.sampling.guidance import GuidanceScales, anchor_branches, guidance_anchors, guidance_paths


def _mix(anchors, outputs):
    return sum(a.weight * outputs[(a.text, dict(a.modes).get("talk", "-"), dict(a.modes).get("listen", "-"))]
               for a in anchors)


@pytest.mark.parametrize(("text", "talk", "listen"), [(5.0, 4.0, 3.0), (2.0, 2.5, 0.0), (7.5, 1.0, 1.0), (0.0, 0.0, 0.0)])
def test_anchor_mix_equals_the_nested_guidance_formula(text, talk, listen):
    g = torch.Generator().manual_seed(0)
    u, lis, t, c = (torch.randn(3, generator=g) for _ in range(4))
    outputs = {("negative", "null", "null"): u, ("negative", "null", "on"): lis, ("negative", "on", "on"): t,
               ("positive", "on", "on"): c}
    anchors = guidance_anchors(GuidanceScales(text, talk, listen))
    expected = u + listen * (lis - u) + talk * (t - lis) + text * (c - t)
    torch.testing.assert_close(_mix(anchors, outputs), expected)
    assert abs(sum(a.weight for a in anchors) - 1.0) < 1e-9


def test_unit_scales_need_only_the_conditional_evaluation():
    anchors = guidance_anchors(GuidanceScales(1.0, 1.0, 1.0))
    assert len(anchors) == 1 and anchors[0].text == "positive" and anchors[0].weight == 1.0
    assert anchor_branches(anchors) == {}


def test_defaults_need_four_evaluations_with_the_positive_prompt_first():
    anchors = guidance_anchors(GuidanceScales())
    assert [a.text for a in anchors] == ["positive", "negative", "negative", "negative"]
    assert anchor_branches(anchors) == {2: {"talk": "null", "listen": "on"}, 3: {"talk": "null", "listen": "null"}}
    assert [a.weight for a in anchors] == pytest.approx([5.0, -1.0, -1.0, -2.0])


def test_talk_only_adapter_reduces_to_infinitetalk_guidance():
    # InfiniteTalk: uncond + text_cfg (cond - drop_text) + audio_cfg (drop_text - uncond)
    anchors = guidance_anchors(GuidanceScales(text=5.0, talk=4.0, listen=2.0), streams=("talk",))
    assert [(a.text, a.modes, a.weight) for a in anchors] == [
        ("positive", (("talk", "on"),), 5.0), ("negative", (("talk", "on"),), -1.0),
        ("negative", (("talk", "null"),), pytest.approx(-3.0))]
    assert anchor_branches(anchors) == {2: {"talk": "null"}}


def test_equal_talk_and_listen_scales_skip_the_listen_anchor():
    anchors = guidance_anchors(GuidanceScales(text=3.0, talk=2.0, listen=2.0))
    assert [dict(a.modes) for a in anchors] == [{"talk": "on", "listen": "on"}, {"talk": "on", "listen": "on"},
                                                {"talk": "null", "listen": "null"}]


def test_text_scale_one_is_the_official_two_pass_drop_audio_guidance():
    """wan/multitalk.py, text_guide_scale 1: noise_pred_drop_audio + s_a (noise_pred_cond - noise_pred_drop_audio)."""
    g = torch.Generator().manual_seed(1)
    cond, drop_audio = torch.randn(3, generator=g), torch.randn(3, generator=g)
    anchors = guidance_anchors(GuidanceScales(text=1.0, talk=2.0, listen=3.0), streams=("talk",))
    assert [(a.text, dict(a.modes)) for a in anchors] == [("positive", {"talk": "on"}), ("positive", {"talk": "null"})]
    outputs = {("positive", "on", "-"): cond, ("positive", "null", "-"): drop_audio}
    torch.testing.assert_close(_mix(anchors, outputs), drop_audio + 2.0 * (cond - drop_audio), rtol=0, atol=1e-7)


def test_text_scale_one_with_both_streams_keeps_the_positive_prompt_everywhere():
    g = torch.Generator().manual_seed(2)
    u, lis, c = (torch.randn(3, generator=g) for _ in range(3))
    anchors = guidance_anchors(GuidanceScales(text=1.0, talk=4.0, listen=3.0))
    assert {a.text for a in anchors} == {"positive"} and len(anchors) == 3
    outputs = {("positive", "null", "null"): u, ("positive", "null", "on"): lis, ("positive", "on", "on"): c}
    torch.testing.assert_close(_mix(anchors, outputs), u + 3.0 * (lis - u) + 4.0 * (c - lis))


def test_three_pass_official_guidance_for_text_scale_not_one():
    """wan/multitalk.py: uncond + s_t (cond - drop_text) + s_a (drop_text - uncond)."""
    g = torch.Generator().manual_seed(3)
    cond, drop_text, uncond = (torch.randn(3, generator=g) for _ in range(3))
    anchors = guidance_anchors(GuidanceScales(text=5.0, talk=4.0, listen=1.0), streams=("talk",))
    outputs = {("positive", "on", "-"): cond, ("negative", "on", "-"): drop_text, ("negative", "null", "-"): uncond}
    expected = uncond + 5.0 * (cond - drop_text) + 4.0 * (drop_text - uncond)
    torch.testing.assert_close(_mix(anchors, outputs), expected)


@pytest.mark.parametrize(("text", "talk"), [(1.0, 2.0), (5.0, 4.0)])
def test_apg_paths_are_the_official_differences(text, talk):
    anchors, paths = guidance_paths(GuidanceScales(text=text, talk=talk, listen=1.0), streams=("talk",))
    keys = [(a.text, dict(a.modes)["talk"]) for a in anchors]
    got = [(p.name, p.scale, keys[p.upper], keys[p.lower]) for p in paths]
    if text == 1.0:  # diff = cond - drop_audio
        assert got == [("talk", 2.0, ("positive", "on"), ("positive", "null"))]
    else:  # cond - drop_text, drop_text - uncond
        assert got == [("text", 5.0, ("positive", "on"), ("negative", "on")),
                       ("talk", 4.0, ("negative", "on"), ("negative", "null"))]
    assert keys[0] == ("positive", "on")


def test_apg_update_equals_the_official_projection_with_momentum_over_steps():
    from beyond_monologue.sampling.apg import APGSettings, MomentumBuffer, projected_update

    g = torch.Generator().manual_seed(4)
    settings = APGSettings()  # official defaults: momentum -0.75, threshold 55
    buffer, official = MomentumBuffer(settings.momentum), infinitetalk_reference.APGReference(-0.75, 55.0)
    for step in range(3):
        diff = torch.randn(1, 4, 3, 5, 5, generator=g) * (10.0 if step == 1 else 1.0)  # step 1 exceeds the threshold
        cond = torch.randn(1, 4, 3, 5, 5, generator=g)
        expected = official(diff, cond)
        torch.testing.assert_close(projected_update(diff, cond, settings, buffer), expected, rtol=1e-6, atol=1e-6)


def test_official_schedule_is_shifted_linspace_from_1000_to_1():
    from beyond_monologue.sampling.schedule import infinitetalk_sigmas

    steps, shift = 40, 7.0
    expected = torch.tensor(infinitetalk_reference.timesteps(steps, shift)) / 1000
    got = infinitetalk_sigmas(steps, shift)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[0] == 1.0 and got[-1] == 0.0 and got[-2] > 0
