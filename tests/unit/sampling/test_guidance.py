"""Text/talk/listen guidance anchors: weights of the documented formula, merging, skipping zero weights."""

import pytest
import torch

from beyond_monologue.sampling.guidance import GuidanceScales, anchor_branches, guidance_anchors


def _mix(anchors, outputs):
    return sum(a.weight * outputs[(a.text, dict(a.modes).get("talk", "-"), dict(a.modes).get("listen", "-"))]
               for a in anchors)


@pytest.mark.parametrize(("text", "talk", "listen"), [(5.0, 4.0, 3.0), (1.0, 2.5, 0.0), (7.5, 1.0, 1.0), (0.0, 0.0, 0.0)])
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
