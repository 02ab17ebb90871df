"""Colour correction towards the reference: the Lab statistics transfer of InfiniteTalk's match_and_blend_colors."""

import pytest
import torch

from beyond_monologue.video.color_match import match_colors


def _cie_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Independent sRGB (D65) -> CIE Lab from the standard formulas, float64; ``[..., 3]`` in 0..1."""
    rgb = rgb.double()
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
                     dtype=torch.float64)
    xyz = linear @ m.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def _stats(image):
    lab = _cie_lab(image).flatten(0, -2)
    return lab.mean(0), lab.std(0, unbiased=False)


def test_full_strength_gives_every_frame_the_reference_lab_mean_and_std():
    g = torch.Generator().manual_seed(0)
    reference = 0.3 + 0.4 * torch.rand(1, 24, 20, 3, generator=g)
    frames = 0.35 + 0.3 * torch.rand(5, 16, 16, 3, generator=g)
    frames[..., 0] *= 0.8  # a colour cast the correction removes
    out = match_colors(frames, reference, 1.0)
    ref_mean, ref_std = _stats(reference[0])
    assert out.shape == frames.shape and out.dtype == torch.float32
    for frame in out:
        mean, std = _stats(frame)
        torch.testing.assert_close(mean, ref_mean, rtol=0, atol=0.05)  # Lab units (L 0..100)
        torch.testing.assert_close(std, ref_std, rtol=0.02, atol=0.05)
    before, _ = _stats(frames[0])
    assert (before - ref_mean).abs().max() > 1.0  # the frames did differ


def test_strength_blends_linearly_and_zero_changes_nothing():
    g = torch.Generator().manual_seed(1)
    reference, frames = torch.rand(1, 8, 8, 3, generator=g), torch.rand(3, 8, 8, 3, generator=g)
    assert match_colors(frames, reference, 0.0) is frames
    full = match_colors(frames, reference, 1.0)
    torch.testing.assert_close(match_colors(frames, reference, 0.25), 0.75 * frames + 0.25 * full)
    with pytest.raises(ValueError, match="between 0 and 1"):
        match_colors(frames, reference, 1.5)


def test_a_flat_frame_channel_takes_the_reference_mean():
    reference = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(2))
    grey = torch.full((1, 8, 8, 3), 0.5)
    out = match_colors(grey, reference, 1.0)
    mean, _ = _stats(out[0])
    torch.testing.assert_close(mean, _stats(reference[0])[0], rtol=0, atol=0.5)
