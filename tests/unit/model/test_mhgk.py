"""MHGK kernel: the bias formula, its limits, the default schedule and per-head overrides."""

import math

import pytest
import torch

from beyond_monologue.errors import BMInputError
from beyond_monologue.model.mhgk import DEFAULT_ALPHA, MHGKKernel, kernel_times, parse_per_head, progressive_sigmas
from beyond_monologue.timebase import latent_times_s


def test_bias_matches_the_paper_formula():
    kernel = MHGKKernel((0.1, 0.5), (2.0, 7.0))
    t = torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64)
    tau = torch.tensor([0.0, 0.5], dtype=torch.float64)
    table = kernel.bias_table(t, tau, dtype=torch.float64)
    for h, (sigma, alpha) in enumerate(zip(kernel.sigma_s, kernel.alpha, strict=True)):
        for i in range(3):
            for j in range(2):
                expected = alpha * (1 - math.exp(-((t[i] - tau[j]).item() ** 2) / (2 * sigma**2)))
                assert table[h, i, j].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_sigma_zero_is_a_step_and_sigma_inf_is_zero():
    t = latent_times_s(4, 25.0)
    local = MHGKKernel((0.0,), (5.0,)).bias_table(t, t, dtype=torch.float64)[0]
    assert torch.equal(local, 5.0 * (1 - torch.eye(4, dtype=torch.float64)))
    hard = MHGKKernel.frame_local(2).bias_table(t, t)
    assert torch.all(hard.diagonal(dim1=1, dim2=2) == 0) and torch.all(torch.isinf(hard[:, 0, 1:]))
    assert torch.count_nonzero(MHGKKernel.global_(3).bias_table(t, t)) == 0
    assert torch.count_nonzero(MHGKKernel((math.inf,), (math.inf,)).bias_table(t, t)) == 0


def test_latent_frame_and_its_own_window_share_a_time_so_the_diagonal_is_unbiased():
    q_times, k_times = kernel_times(21, 21, 25.0, query_first_latent=40, key_first_latent=40)
    table = MHGKKernel.default("talk", 24).bias_table(q_times, k_times, dtype=torch.float64)
    assert torch.all(table.diagonal(dim1=1, dim2=2) == 0)
    assert torch.all(table >= 0) and torch.all(table <= DEFAULT_ALPHA)
    # the narrowest talk head gives the neighbouring latent (0.16 s away) almost the full penalty
    assert table[0, 5, 6].item() == pytest.approx(DEFAULT_ALPHA * (1 - math.exp(-8)), rel=1e-9)


def test_default_schedule_is_progressive_and_documented():
    talk, listen = MHGKKernel.default("talk", 24), MHGKKernel.default("listen", 24)
    assert talk.sigma_s[0] == pytest.approx(0.04) and talk.sigma_s[-1] == pytest.approx(2.56)
    assert listen.sigma_s[0] == pytest.approx(0.16) and listen.sigma_s[-1] == pytest.approx(10.24)
    for kernel in (talk, listen):
        assert all(a < b for a, b in zip(kernel.sigma_s, kernel.sigma_s[1:], strict=False))
        assert set(kernel.alpha) == {DEFAULT_ALPHA}
    assert progressive_sigmas(1, 0.04, 0.16) == pytest.approx((0.08,))


def test_overrides_and_json_round_trip():
    kernel = MHGKKernel.default("listen", 4).with_overrides(sigma_s=[math.inf], alpha=[1, 2, 3, 4])
    assert kernel.sigma_s == (math.inf,) * 4 and kernel.alpha == (1.0, 2.0, 3.0, 4.0)
    assert MHGKKernel.from_dict(kernel.to_dict()) == kernel
    assert kernel.to_dict()["sigma_s"] == ["inf"] * 4
    with pytest.raises(ValueError, match="expected 1 or 4"):
        kernel.with_overrides(alpha=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        MHGKKernel((-1.0,), (1.0,))


def test_parse_per_head_for_node_widgets():
    assert parse_per_head("", 3, "talk_sigma") is None
    assert parse_per_head("0.5", 3, "talk_sigma") == (0.5, 0.5, 0.5)
    assert parse_per_head("0, 0.16 inf", 3, "talk_sigma") == (0.0, 0.16, math.inf)
    with pytest.raises(BMInputError, match="talk_sigma: has 2 values but the adapter has 3 heads"):
        parse_per_head("1, 2", 3, "talk_sigma")
    with pytest.raises(BMInputError, match=r"listen_alpha.*not a list of numbers"):
        parse_per_head("wide", 3, "listen_alpha")
    with pytest.raises(BMInputError, match="negative"):
        parse_per_head("-1", 3, "listen_alpha")
