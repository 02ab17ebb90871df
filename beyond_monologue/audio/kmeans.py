"""k-means of a few hundred embeddings in torch (k-means++ seeding, Lloyd iterations, best of several starts).

Replaces scikit-learn's ``KMeans(n_clusters=k, n_init=10, random_state=0)`` for the diarization's
two-speaker clustering: a dependency (with its own numpy/scipy pins) for one call on a ``[W, 256]``
matrix. The algorithm is the textbook one scikit-learn's default ``lloyd`` also runs: k-means++
seeding (Arthur & Vassilvitskii, 2007, with ``2 + ln k`` candidates per step as scikit-learn does),
Lloyd iterations until no label changes (or ``max_iter``), and the start with the lowest inertia
(sum of squared distances) wins. Seeds come from a ``torch.Generator``, so results are
reproducible, but not bit-identical to scikit-learn's (different random streams);
tests/unit/audio/test_kmeans.py checks that the labels agree on real recordings.
"""

from __future__ import annotations

import math

import torch


def _plus_plus_seeds(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    centres = [x[torch.randint(n, (1,), generator=generator)].squeeze(0)]
    closest = torch.cdist(x, centres[0][None]).squeeze(1) ** 2
    for _ in range(1, k):
        weights = closest.clamp_min(0)
        if float(weights.sum()) <= 0:  # every point sits on a centre already
            candidates = torch.randint(n, (trials,), generator=generator)
        else:
            candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        distances = torch.minimum(closest[None], torch.cdist(x[candidates], x) ** 2)  # [trials, N]
        best = int(distances.sum(dim=1).argmin())
        centres.append(x[candidates[best]])
        closest = distances[best]
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, n_init: int = 10, max_iter: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x`` into ``k`` groups.

    Args:
        x: float ``[N, D]`` points, ``N >= k``.
        k: number of clusters.
        n_init: k-means++ starts; the lowest inertia wins.
        max_iter: Lloyd iterations per start at most.
        seed: seed of the ``torch.Generator`` (reproducible results).

    Returns:
        ``(labels [N] int64 in 0..k-1, centres [k, D] float64)``.

    Raises:
        ValueError: fewer points than clusters.
    """
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"k-means needs an [N, D] matrix with N >= k = {k}, got {tuple(x.shape)}")
    x = x.detach().to(torch.float64).cpu()
    generator = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(n_init):
        centres = _plus_plus_seeds(x, k, generator)
        labels = torch.cdist(x, centres).argmin(dim=1)
        for _ in range(max_iter):
            for cluster in range(k):
                members = labels == cluster
                if members.any():  # an emptied cluster keeps its centre
                    centres[cluster] = x[members].mean(dim=0)
            new_labels = torch.cdist(x, centres).argmin(dim=1)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centres.clone())
    return best[1], best[2]
