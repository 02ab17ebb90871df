"""The pack's torch k-means gives scikit-learn's KMeans labels on real speaker embeddings.

scikit-learn is a test-only reference here (requirements-dev.txt); the pack itself does not need it.
"""

import numpy as np
import pytest
import torch

from beyond_monologue.audio.diarization import window_embeddings
from beyond_monologue.audio.kmeans import kmeans


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b) or np.array_equal(a, 1 - b))


@pytest.fixture(scope="module")
def real_embeddings(conversation, librivox):
    mono = conversation[0]
    two_readers = np.concatenate([librivox[0], mono[round(21.78 * 16000):round(27.8 * 16000)], librivox[2]])
    return {name: window_embeddings(torch.from_numpy(wave))[0] for name, wave in
            {"sample.wav": mono, "LibriVox + sample.wav speaker": two_readers}.items()}


@pytest.mark.parametrize("name", ["sample.wav", "LibriVox + sample.wav speaker"])
def test_labels_equal_scikit_learns_on_real_recordings(real_embeddings, name):
    from sklearn.cluster import KMeans

    embeddings = real_embeddings[name]
    reference = KMeans(n_clusters=2, n_init=10, random_state=0).fit(embeddings)
    labels, centres = kmeans(torch.from_numpy(embeddings), 2)
    assert same_partition(labels.numpy(), reference.labels_), name
    inertia = float(((torch.from_numpy(embeddings).double() - centres[labels]) ** 2).sum())
    assert inertia == pytest.approx(reference.inertia_, rel=1e-5)
    assert min(np.bincount(labels.numpy())) > 10  # two real clusters, not one point split off


def test_three_clusters_and_seeded_reproducibility():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(c, 0.1, (40, 2)) for c in ((0, 0), (3, 0), (0, 3))])
    labels, _ = kmeans(torch.from_numpy(points), 3)
    assert sorted(np.bincount(labels.numpy())) == [40, 40, 40]
    assert torch.equal(labels, kmeans(torch.from_numpy(points), 3)[0])


def test_fewer_points_than_clusters_is_refused():
    with pytest.raises(ValueError, match="N >= k"):
        kmeans(torch.zeros(1, 4), 2)
