"""The numbers behind diarize mode's speaker-count thresholds (``ONE_VOICE_R``, ``ALIKE_R``).

Run from the repo root: ``.venv/bin/python bench/audio_speaker_count.py``. For every real recording
of ``tests/audio_fixtures.py::speaker_count_recordings`` (LibriVox and cards clips of Debian's
pocketsphinx-testdata, sample.wav, its solo stretches and mixes) it prints the concentration ``R``
of its voiced speaker embeddings, the centroid cosine of the 2-means split, and what diarize mode
does with it (refuse / warn / split). The module doc of beyond_monologue/audio/diarization.py
quotes these numbers; rerun this after changing the embedding, the VAD or the thresholds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "tests"))


def rows() -> list[dict]:
    """One dict per recording: name, speakers, speech_s, concentration, centroid_cosine, outcome."""
    from audio_fixtures import POCKETSPHINX_DATA, SR, read_wav, speaker_count_recordings

    from beyond_monologue.audio.diarization import ALIKE_R, ONE_VOICE_R, speech_windows, voice_concentration
    from beyond_monologue.audio.kmeans import kmeans

    librivox = [read_wav(path)[0] for path in sorted((POCKETSPHINX_DATA / "librivox").glob("*.wav"))]
    mono = read_wav(ROOT / ".cache" / "assets" / "sample.wav")[0]
    found = []
    for name, (speakers, wave) in speaker_count_recordings(librivox, mono).items():
        windows = speech_windows(torch.from_numpy(wave), SR)
        labels = kmeans(torch.from_numpy(windows.voiced), 2)[0].numpy()
        centroids = np.stack([windows.voiced[labels == k].mean(axis=0) for k in range(2)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        concentration = voice_concentration(windows.voiced)
        outcome = "refuse" if concentration >= ONE_VOICE_R else "warn" if concentration >= ALIKE_R else "split"
        found.append({"name": name, "speakers": speakers, "speech_s": round(windows.speech_s, 1),
                      "concentration": round(concentration, 4),
                      "centroid_cosine": round(float(centroids[0] @ centroids[1]), 3), "outcome": outcome})
    return found


def main() -> None:
    table = rows()
    print(f"{'recording':36s} speakers speech_s  R       cos    diarize mode")
    for row in sorted(table, key=lambda r: (r["speakers"], -r["concentration"])):
        print(f"{row['name']:36s} {row['speakers']:8d} {row['speech_s']:8.1f}  {row['concentration']:.4f}  "
              f"{row['centroid_cosine']:.3f}  {row['outcome']}")
    for speakers in (1, 2):
        values = [r["concentration"] for r in table if r["speakers"] == speakers]
        print(f"{speakers} speaker(s): R {min(values):.4f} .. {max(values):.4f} over {len(values)} recordings")


if __name__ == "__main__":
    main()
