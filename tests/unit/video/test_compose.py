import pytest
import torch

from beyond_monologue.errors import BMInputError
from beyond_monologue.video.compose import (
    MAX_HOLD_S,
    check_frames,
    compose_dyadic,
    output_length,
    plan_layout,
    resize_frames,
)


def clip(frames, height, width, seed=0):
    return torch.rand((frames, height, width, 3), generator=torch.Generator().manual_seed(seed))


def test_same_size_side_by_side_places_both_unchanged():
    a, b = clip(9, 32, 40), clip(9, 32, 24, seed=1)
    out = compose_dyadic(a, b, "side_by_side", gap=4)
    assert out.shape == (9, 32, 68, 3)
    assert torch.equal(out[:, :, :40], a) and torch.equal(out[:, :, 44:], b)
    assert not out[:, :, 40:44].any()  # black gap


def test_side_by_side_resizes_to_the_taller_height_keeping_aspect():
    a, b = clip(5, 64, 48), clip(5, 32, 40, seed=1)
    plan = plan_layout((64, 48), (32, 40), "side_by_side", 0)
    assert (plan.b.height, plan.b.width) == (64, 80)
    out = compose_dyadic(a, b, "side_by_side")
    assert out.shape == (5, 64, 128, 3)
    assert torch.equal(out[:, :, :48], a)
    assert torch.allclose(out[:, :, 48:], resize_frames(b, 64, 80))
    # the upscaled clip keeps its picture: its mean colour per frame hardly moves
    assert torch.allclose(out[:, :, 48:].mean(dim=(1, 2)), b.mean(dim=(1, 2)), atol=0.02)


def test_stacked_resizes_to_the_wider_width():
    out = compose_dyadic(clip(3, 30, 40), clip(3, 20, 20, seed=1), "stacked", gap=2)
    assert out.shape == (3, 30 + 2 + 40, 40, 3)


def test_canvas_sizes_are_even_for_h264():
    plan = plan_layout((33, 21), (33, 20), "side_by_side", 0)
    assert (plan.height, plan.width) == (34, 42)
    out = compose_dyadic(clip(2, 33, 21), clip(2, 33, 20, seed=1))
    assert out.shape == (2, 34, 42, 3) and not out[:, 33].any() and not out[:, :, 41].any()


def test_downscaling_is_antialiased():
    stripes = torch.zeros(1, 64, 64, 3)
    stripes[:, :, ::2] = 1.0  # one-pixel stripes average to grey when shrunk
    small = resize_frames(stripes, 16, 16)
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.05)


def test_shorter_clip_holds_its_last_frame():
    a, b = clip(30, 16, 16), clip(25, 16, 16, seed=1)
    out = compose_dyadic(a, b, length_rule="hold_last_frame", fps=25)
    assert out.shape[0] == 30
    assert torch.equal(out[:25, :, 16:], b) and all(torch.equal(out[i, :, 16:], b[-1]) for i in range(25, 30))


def test_trim_to_shortest():
    out = compose_dyadic(clip(81, 16, 16), clip(40, 16, 16, seed=1), length_rule="trim_to_shortest", fps=25)
    assert out.shape[0] == 40


def test_long_hold_is_refused_with_a_fix():
    assert output_length(81, 81 - int(MAX_HOLD_S * 25), "hold_last_frame", 25) == 81
    with pytest.raises(BMInputError) as error:
        output_length(81, 41, "hold_last_frame", 25)
    assert "image_b" in str(error.value) and "trim_to_shortest" in str(error.value)


def test_bad_values_name_the_input():
    with pytest.raises(BMInputError, match="layout"):
        plan_layout((8, 8), (8, 8), "diagonal", 0)
    with pytest.raises(BMInputError, match="image_a"):
        check_frames(torch.zeros(4, 8, 8), "image_a")
    with pytest.raises(BMInputError, match="image_b"):
        check_frames(torch.zeros(0, 8, 8, 3), "image_b")
    assert check_frames(torch.zeros(2, 8, 8, 4), "image_a").shape == (2, 8, 8, 3)  # alpha dropped


def test_progress_reaches_the_total():
    seen = []
    compose_dyadic(clip(40, 8, 8), clip(40, 8, 8, seed=1), on_chunk=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (40, 40) and len(seen) == 3
