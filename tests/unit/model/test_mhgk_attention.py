"""MHGK attention: exact limits and agreement of every backend with the materialised reference."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from beyond_monologue.model.mhgk import MHGKKernel, kernel_times
from beyond_monologue.model.mhgk_attention import backend_available, choose_backend, mhgk_attention, table_structure

B, H, TQ, S, TK, N, D = 2, 4, 5, 6, 5, 3, 16
BF16_BOUND = 1e-2  # documented in beyond_monologue/model/mhgk_attention.py


def _inputs(dtype=torch.float64, seed=0, tk=TK):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, TQ * S, D, generator=g, dtype=dtype)
    k = torch.randn(B, H, tk * N, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, tk * N, D, generator=g, dtype=dtype)
    return q, k, v


def _table(kernel, tq=TQ, tk=TK, dtype=torch.float64):
    q_times, k_times = kernel_times(tq, tk, 25.0)
    return kernel.bias_table(q_times, k_times, dtype=dtype)


def _frame_local_by_hand(q, k, v):
    """Each latent frame attends only to its own window: TQ independent softmaxes."""
    out = torch.empty_like(q)
    for t in range(TQ):
        rows, cols = slice(t * S, (t + 1) * S), slice(t * N, (t + 1) * N)
        weights = torch.softmax(q[:, :, rows] @ k[:, :, cols].transpose(-1, -2) / math.sqrt(D), dim=-1)
        out[:, :, rows] = weights @ v[:, :, cols]
    return out


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_sigma_to_zero_with_large_alpha_is_frame_local_attention():
    q, k, v = _inputs()
    expected = _frame_local_by_hand(q, k, v)
    errors = []
    for sigma, alpha in ((0.1, 4.0), (0.08, 8.0), (0.04, 20.0), (1e-6, 1e4)):
        table = _table(MHGKKernel((sigma,) * H, (alpha,) * H))
        errors.append(_rel(mhgk_attention(q, k, v, table, "reference"), expected))
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-12
    exact = mhgk_attention(q, k, v, _table(MHGKKernel.frame_local(H)), "reference")
    assert _rel(exact, expected) < 1e-14


def test_sigma_to_infinity_is_plain_global_attention():
    q, k, v = _inputs()
    expected = F.scaled_dot_product_attention(q, k, v)
    errors = [_rel(mhgk_attention(q, k, v, _table(MHGKKernel((s,) * H, (8.0,) * H)), "reference"), expected)
              for s in (0.5, 5.0, 50.0, 1e9)]
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-14
    assert _rel(mhgk_attention(q, k, v, _table(MHGKKernel.global_(H)), "reference"), expected) < 1e-14


GENERAL = ["grouped", "augmented", "flex", "xformers"]


@pytest.mark.parametrize("backend", GENERAL)
@pytest.mark.parametrize("tk", [TK, 7])
def test_backends_agree_with_the_reference_in_float32(backend, tk):
    if not backend_available(backend, "cpu"):
        pytest.skip(f"{backend} cannot run on this machine (CPU only)")
    q, k, v = _inputs(torch.float32, tk=tk)
    mixed = MHGKKernel((0.0, 0.04, 0.5, math.inf), (math.inf, 8.0, 3.0, 8.0))
    table = _table(mixed, tk=tk)
    expected = mhgk_attention(q.double(), k.double(), v.double(), table, "reference")
    out = mhgk_attention(q, k, v, table.float(), backend)
    assert out.dtype == torch.float32 and out.shape == q.shape
    assert _rel(out, expected) < 1e-5


@pytest.mark.parametrize("backend", ["reference", "grouped", "augmented", "flex", "local"])
def test_frame_local_table_gives_the_same_result_on_every_backend(backend):
    q, k, v = _inputs(torch.float32)
    out = mhgk_attention(q, k, v, _table(MHGKKernel.frame_local(H), dtype=torch.float32), backend)
    assert _rel(out, _frame_local_by_hand(q.double(), k.double(), v.double())) < 1e-5


@pytest.mark.parametrize("backend", ["grouped", "augmented", "flex"])
def test_bfloat16_stays_within_the_documented_bound(backend):
    q, k, v = _inputs(torch.float32, seed=3)
    table = _table(MHGKKernel.default("talk", H))
    expected = mhgk_attention(q.double(), k.double(), v.double(), table, "reference")
    out = mhgk_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), table.float(), backend)
    assert out.dtype == torch.bfloat16
    assert _rel(out, expected) < BF16_BOUND


def test_auto_takes_exact_fast_paths_and_grouped_on_cpu():
    q, k, v = _inputs(torch.float32)
    local, zero = _table(MHGKKernel.frame_local(H)), _table(MHGKKernel.global_(H))
    general = _table(MHGKKernel.default("listen", H))
    assert [table_structure(t) for t in (local, zero, general)] == ["local", "global", "general"]
    assert [choose_backend(q, k, t) for t in (local, zero, general)] == ["local", "global", "grouped"]
    assert _rel(mhgk_attention(q, k, v, zero.float()), F.scaled_dot_product_attention(q, k, v)) < 1e-6


def test_bad_shapes_and_backends_are_rejected():
    q, k, v = _inputs(torch.float32)
    with pytest.raises(ValueError, match="do not split"):
        mhgk_attention(q[:, :, :-1], k, v, _table(MHGKKernel.default("talk", H)))
    with pytest.raises(ValueError, match="unknown MHGK attention backend"):
        mhgk_attention(q, k, v, _table(MHGKKernel.default("talk", H)), "magic")
    with pytest.raises(ValueError, match="frame-local"):
        mhgk_attention(q, k, v, _table(MHGKKernel.default("talk", H)), "local")
    with pytest.raises(ValueError, match="all-zero"):
        mhgk_attention(q, k, v, _table(MHGKKernel.default("talk", H)), "global")


def test_a_failing_fast_backend_is_dropped_but_out_of_memory_is_not(monkeypatch):
    from beyond_monologue.model import mhgk_attention as module

    q, k, v = _inputs(torch.float32)
    table = _table(MHGKKernel.default("listen", H))
    monkeypatch.setattr(module, "_failed", set())
    monkeypatch.setattr(module, "choose_backend", lambda *args: "augmented")

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("no memory for this call")

    monkeypatch.setitem(module._IMPLEMENTATIONS, "augmented", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        mhgk_attention(q, k, v, table)
    assert module._failed == set()

    def unsupported(*args):
        raise RuntimeError("no kernel for this shape")

    monkeypatch.setitem(module._IMPLEMENTATIONS, "augmented", unsupported)
    out = mhgk_attention(q, k, v, table)
    assert module._failed == {"augmented"}
    assert _rel(out, mhgk_attention(q, k, v, table, "reference")) < 1e-5


def test_a_backend_that_cannot_run_here_falls_back_to_auto_with_one_warning(monkeypatch, caplog):
    from beyond_monologue.model import mhgk_attention as module

    q, k, v = _inputs(torch.float32)
    table = _table(MHGKKernel.default("listen", H)).float()
    monkeypatch.setattr(module, "_unavailable_warned", set())
    monkeypatch.setattr(module, "_has_xformers", lambda: False)  # as on a machine without xformers
    with caplog.at_level("WARNING"):
        out = mhgk_attention(q, k, v, table, "xformers")
        again = mhgk_attention(q, k, v, table, "xformers")
    assert caplog.text.count("MHGK attention backend 'xformers' is not available here (xformers is not installed); "
                             "using 'auto' instead.") == 1
    assert torch.equal(out, mhgk_attention(q, k, v, table, "grouped")) and torch.equal(again, out)


def test_auto_leaves_out_the_backends_the_host_excludes(monkeypatch):
    from beyond_monologue.model import mhgk_attention as module

    q, k, _ = _inputs(torch.float32)
    table = _table(MHGKKernel.default("listen", H))
    monkeypatch.setattr(module, "_excluded", frozenset())
    monkeypatch.setattr(type(q), "is_cuda", property(lambda self: True))  # the CUDA branch of auto, on the CPU
    monkeypatch.setattr(module, "_has_triton", lambda: False)
    monkeypatch.setattr(module, "_has_xformers", lambda: True)
    assert choose_backend(q, k, table) == "augmented"
    module.set_auto_excluded({"augmented"})
    assert module.auto_excluded() == {"augmented"} and choose_backend(q, k, table) == "xformers"
    module.set_auto_excluded({"augmented", "xformers"})
    assert choose_backend(q, k, table) == "grouped"
