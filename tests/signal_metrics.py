"""Signal metrics used by tests and benchmarks to report separation quality.

SI-SDR (scale-invariant signal-to-distortion ratio, Le Roux et al., "SDR - half-baked or well
done?", ICASSP 2019, Eq. 1) is written out here: it is five lines and the libraries that ship it
(torchmetrics, asteroid) would be a large dependency for one formula.
"""

from __future__ import annotations

import math

import torch


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> float:
    """SI-SDR in dB of ``estimate`` against ``reference`` (both float ``[T]``, same length).

    Both are made zero-mean; the reference is scaled by the projection of the estimate onto it,
    and the ratio of its energy to the residual's is returned. ``inf`` for an exact match,
    ``-inf`` when the estimate is silent (or constant) or orthogonal to the reference, ``nan``
    when the reference is silent.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    estimate = estimate.double() - estimate.double().mean()
    reference = reference.double() - reference.double().mean()
    ref_energy = float(reference.pow(2).sum())
    if ref_energy < eps:
        return math.nan
    if float(estimate.pow(2).sum()) < eps:
        return -math.inf
    target = reference * (float(estimate @ reference) / ref_energy)
    target_energy = float(target.pow(2).sum())
    noise = float((estimate - target).pow(2).sum())
    if noise == 0.0:
        return math.inf
    if target_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(target_energy / noise)
