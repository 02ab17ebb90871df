import math

import pytest
import torch
from signal_metrics import si_sdr


def test_si_sdr_is_scale_invariant_and_matches_a_known_ratio():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(16000, generator=generator, dtype=torch.float64)
    noise = torch.randn(16000, generator=generator, dtype=torch.float64)
    noise = noise - (noise @ reference) / (reference @ reference) * reference  # orthogonal to the reference
    noise = noise * (reference.norm() / noise.norm()) * 0.1  # 20 dB below the reference
    assert si_sdr(reference + noise, reference) == pytest.approx(20.0, abs=0.05)
    assert si_sdr(3.0 * (reference + noise), reference) == pytest.approx(20.0, abs=0.05)
    assert si_sdr(reference, reference) > 200  # exact up to float64 rounding


def test_si_sdr_gives_silent_or_unrelated_output_the_worst_score():
    reference = torch.randn(8000, generator=torch.Generator().manual_seed(1))
    assert si_sdr(torch.zeros(8000), reference) == -math.inf
    assert si_sdr(torch.full((8000,), 0.3), reference) == -math.inf
    t = torch.arange(8000, dtype=torch.float64) * (2 * math.pi / 80)  # 100 whole periods
    assert si_sdr(torch.sin(t), torch.cos(t)) < -100  # orthogonal: nothing of the reference in the estimate
    assert math.isnan(si_sdr(reference, torch.zeros(8000)))
