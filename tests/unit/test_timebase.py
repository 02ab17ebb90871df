import pytest
import torch

from beyond_monologue.audio.duplex_audio import DuplexAudio
from beyond_monologue.errors import BMInputError
from beyond_monologue.timebase import (
    audio_window_frame_indices,
    floor_frame_count,
    frame_count,
    frames_of_latent,
    latent_count,
    latent_times_s,
)


@pytest.mark.parametrize("frames, latents", [(1, 1), (5, 2), (81, 21), (121, 31)])
def test_latent_counts(frames, latents):
    assert latent_count(frames) == latents and frame_count(latents) == frames


@pytest.mark.parametrize("frames", [0, 2, 80, 82])
def test_bad_frame_counts_name_the_fix(frames):
    with pytest.raises(BMInputError, match="4n\\+1"):
        latent_count(frames, "length")
    assert floor_frame_count(frames) % 4 == 1


def test_frames_of_latent_partition_the_clip():
    covered = [f for k in range(21) for f in range(frames_of_latent(k)[0], frames_of_latent(k)[1] + 1)]
    assert covered == list(range(81))


def test_latent_times_are_frame_centres_and_continue_across_windows():
    t = latent_times_s(4, fps=25.0)
    assert t.dtype == torch.float64
    assert t.tolist() == pytest.approx([0.0, 2.5 / 25, 6.5 / 25, 10.5 / 25])
    assert latent_times_s(2, 25.0, first_latent=2).tolist() == pytest.approx(t[2:].tolist())


def test_audio_windows_match_multitalk_selection():
    first, rest = audio_window_frame_indices(3, total_frames=9, context=2)
    assert first.tolist() == [0, 0, 0, 1, 2]
    # latent 1 = frames 1..4: the 3+1+1+3 selection of MultiTalk = frames -1..6 (clamped)
    assert rest[0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    assert rest[1].tolist() == [3, 4, 5, 6, 7, 8, 8, 8]
    none, later = audio_window_frame_indices(1, total_frames=9, context=2, first_latent=2)
    assert none is None and torch.equal(later[0], rest[1])


def test_duplex_audio_windows_and_validation():
    frames = torch.arange(9, dtype=torch.float32).view(9, 1, 1).expand(9, 2, 3).contiguous()
    audio = DuplexAudio(frames, -frames, torch.ones(9), torch.zeros(9), fps=25.0)
    assert audio.num_latents == 3 and audio.duration_s == pytest.approx(0.36)
    first, rest = audio.latent_windows("listen")
    assert first.shape == (5, 2, 3) and rest.shape == (2, 8, 2, 3)
    assert rest[1, :, 0, 0].tolist() == [-3, -4, -5, -6, -7, -8, -8, -8]
    with pytest.raises(BMInputError, match="4n\\+1"):
        DuplexAudio(frames[:8], frames[:8], torch.ones(8), torch.ones(8), fps=25.0)
    with pytest.raises(ValueError):
        audio.latent_windows("talk", first_latent=2, num_latents=2)
