"""Sliding windows of a long video: coverage, overlap, shortened last window, seeds."""

import itertools

import pytest

from beyond_monologue.errors import BMInputError
from beyond_monologue.sampling.windows import SEED_MODULUS, plan_windows, window_seed


@pytest.mark.parametrize(("total", "window", "motion"), [(1, 21, 3), (21, 21, 3), (22, 21, 3), (60, 21, 3),
                                                         (7, 3, 1), (100, 9, 8), (50, 21, 0)])
def test_windows_cover_every_latent_once_after_dropping_motion_latents(total, window, motion):
    windows = plan_windows(total, window, motion)
    generated = []
    for w in windows:
        assert 1 <= w.num_latents <= window and w.new_latents >= 1
        generated += list(range(w.first_latent + w.motion_latents, w.end_latent))
    assert generated == list(range(total))
    assert windows[0].first_latent == 0 and windows[0].motion_latents == 0 and windows[-1].end_latent == total
    for before, after in itertools.pairwise(windows):
        assert after.first_latent == before.end_latent - motion and after.motion_latents == motion
        assert before.num_latents == window  # only the last window is shortened


def test_three_windows_of_81_frames_with_3_motion_latents():
    # 21 + 18 + 18 latents = 57 latents = 225 frames (9 s at 25 fps)
    windows = plan_windows(57, 21, 3)
    assert [(w.first_latent, w.num_latents) for w in windows] == [(0, 21), (18, 21), (36, 21)]
    shortened = plan_windows(50, 21, 3)
    assert [(w.first_latent, w.num_latents) for w in shortened] == [(0, 21), (18, 21), (36, 14)]


def test_windows_that_cannot_progress_are_refused():
    with pytest.raises(BMInputError, match="motion_latents: is 21 but a window holds only 21 latents"):
        plan_windows(40, 21, 21)
    with pytest.raises(BMInputError, match="duplex_audio"):
        plan_windows(0, 21, 3)


def test_window_seeds_start_at_the_seed_and_never_repeat_within_a_run():
    assert window_seed(123, 0) == 123
    seeds = [window_seed(2**64 - 1, k) for k in range(1000)]
    assert len(set(seeds)) == 1000 and all(0 <= s < SEED_MODULUS for s in seeds)
    assert window_seed(5, 1) != window_seed(6, 0)  # neighbouring seeds do not share windows
