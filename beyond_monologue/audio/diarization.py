"""Two-speaker diarization of a mono conversation: Silero VAD + Resemblyzer speaker embeddings + k-means.

Pipeline (all at 16 kHz, frames of 10 ms):

1. Voice activity detection (:mod:`.vad`, Silero) gives the speech regions.
2. Resemblyzer's GE2E speaker encoder (256-d, weights bundled in its wheel) embeds windows of
   ``EMBED_WINDOW_S`` seconds (its training length; 1.0 s and 2.0 s windows did worse on the real
   conversation) every ``EMBED_HOP_S`` seconds of its own 40-band log-mel input.
3. Windows that are at least ``MIN_WINDOW_SPEECH`` speech are clustered into two speakers with
   k-means on the unit vectors (:mod:`.kmeans`, torch).
4. Every 10 ms frame takes the speaker whose centroid is, on average over the windows covering
   the frame, most similar; labels are median-filtered over ``SMOOTH_S`` and kept only inside
   speech regions. Turns shorter than ``MIN_TURN_S`` are dropped, gaps shorter than
   ``MIN_GAP_S`` bridged.

Each speech frame gets exactly one speaker: overlapping speech goes to the dominant voice
(the turns of the two speakers do not overlap). Measured on the real two-speaker
``sample.wav`` (tests/unit/audio/test_diarization_real.py): DER 4.3 % with a 0.25 s collar, 15.5 % without.

One voice only (documented behaviour, tested): the mode always looks for two speakers. A
recording is refused (:class:`BMInputError` naming ``conversation``) when it has no speech, or when
the second cluster gets less than ``MIN_SPEAKER_S`` seconds of speech (e.g. one short utterance).
A longer monologue is NOT reliably detected: Resemblyzer scores the two similar voices of
``sample.wav`` at 0.885 centroid cosine and halves of one LibriVox reader at 0.82-0.91, so no
threshold separates them, and such a monologue comes out split in two "speakers". A warning is
logged when the two centroids are closer than ``ALIKE_COSINE`` (a hint only). Use mode ``turns``
(or connect a monologue straight to BM Dual Stream Encode) when the voices cannot be told apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BMInputError
from ..optional_deps import import_optional
from .audio_checks import mono_at
from .kmeans import kmeans
from .turns import Turns, mask_to_turns, turns_to_mask
from .vad import VAD_SAMPLE_RATE, speech_probabilities, speech_regions
from .voice_encoder import FRAME_RATE_HZ, load_voice_encoder, mel_frames

EMBED_WINDOW_S = 1.6  # Resemblyzer's own partial-utterance length (160 mel frames)
EMBED_HOP_S = 0.1
MIN_WINDOW_SPEECH = 0.6
SMOOTH_S = 0.21
MIN_GAP_S = 0.2
MIN_TURN_S = 0.2
MIN_SPEAKER_S = 1.0
ALIKE_COSINE = 0.9
SPEAKERS = ("speaker_1", "speaker_2")
_BATCH = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Diarization:
    """Result of :func:`diarize`.

    Attributes:
        turns: ``{"speaker_1": [(start_s, end_s), ...], "speaker_2": [...]}``, speakers numbered
            by their first turn in time.
        speaker_cosine: cosine similarity of the two speakers' embedding centroids.
        speech_s: seconds of speech found by the VAD.
    """

    turns: Turns
    speaker_cosine: float
    speech_s: float


def window_embeddings(wav16k: torch.Tensor, on_progress=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Speaker embeddings of overlapping windows (Resemblyzer's encoder, :mod:`.voice_encoder`).

    Args:
        wav16k: float32 ``[T]`` at 16 kHz.
        on_progress: called as ``on_progress(done, total)`` after each batch of windows.

    Returns:
        ``(embeddings [W, 256] float32 unit vectors, starts [W] in 10 ms frames, window length in frames)``.

    Raises:
        MissingDependencyError: Resemblyzer's weight file is missing or refused (see :mod:`.voice_encoder`).
    """
    encoder = load_voice_encoder()
    mel = mel_frames(wav16k)
    window = round(EMBED_WINDOW_S * FRAME_RATE_HZ)
    hop = round(EMBED_HOP_S * FRAME_RATE_HZ)
    if len(mel) < window:
        window = len(mel)
    starts = np.arange(0, len(mel) - window + 1, hop)
    if starts[-1] + window < len(mel):  # a last window flush with the end, so every frame is covered
        starts = np.append(starts, len(mel) - window)
    out = []
    with torch.inference_mode():
        for i in range(0, len(starts), _BATCH):
            batch = torch.stack([mel[s:s + window] for s in starts[i:i + _BATCH]])
            out.append(encoder(batch).numpy())
            if on_progress:
                on_progress(min(i + _BATCH, len(starts)), len(starts))
    return np.concatenate(out), starts, window


def _one_voice(found: str) -> BMInputError:
    return BMInputError("conversation", f"diarize mode found one voice only ({found}).",
                        "for a monologue connect the audio to BM Dual Stream Encode's talk input directly; "
                        "if two people do speak, use mode 'turns' with their turns (or a stereo file).")


def diarize(waveform: torch.Tensor, sample_rate: int, on_progress=None) -> Diarization:
    """Find the turns of the two speakers of a conversation.

    Args:
        waveform: float32 ``[C, T]`` or ``[T]`` (channels are averaged), any sample rate.
        sample_rate: Hz.
        on_progress: ``on_progress(done, total)`` while embedding (the slow part): progress, interruption;
            also called as ``on_progress(0, 1)`` every 30 s of audio during voice activity detection.

    Returns:
        :class:`Diarization` with the turns of ``speaker_1`` and ``speaker_2`` (seconds).

    Raises:
        BMInputError: no speech at all, or a single voice (see the module doc).
        MissingDependencyError: silero-vad or Resemblyzer's weight file is missing.
    """
    ndimage = import_optional("scipy.ndimage", "scipy", "smoothing speaker labels")
    wav16k = mono_at(waveform, sample_rate, VAD_SAMPLE_RATE)
    check = (lambda: on_progress(0, 1)) if on_progress else None
    regions = speech_regions(speech_probabilities(wav16k, check), wav16k.shape[0])
    speech_s = sum(end - start for start, end in regions)
    if not regions:
        raise BMInputError("conversation", "contains no speech (voice activity detection found none).",
                           "check that the file holds the conversation and is not silent or muted.")
    embeddings, starts, window = window_embeddings(wav16k, on_progress)
    num_frames = int(starts[-1]) + window
    speech = turns_to_mask(regions, num_frames, FRAME_RATE_HZ).numpy()
    coverage = np.cumsum(np.concatenate([[0], speech]))
    speech_share = (coverage[starts + window] - coverage[starts]) / window
    voiced = embeddings[speech_share >= MIN_WINDOW_SPEECH]
    if len(voiced) < 2:
        raise _one_voice(f"{speech_s:.1f} s of speech is too little to compare two voices")

    labels, _ = kmeans(torch.from_numpy(voiced), 2)
    labels = labels.numpy()
    centroids = np.stack([voiced[labels == k].mean(axis=0) for k in range(2)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cosine = float(centroids[0] @ centroids[1])

    similarity = embeddings @ centroids.T  # [W, 2]
    total = np.zeros((num_frames + 1, 2))
    np.add.at(total, starts, similarity)
    np.add.at(total, starts + window, -similarity)
    count = np.zeros(num_frames + 1)
    np.add.at(count, starts, 1)
    np.add.at(count, starts + window, -1)
    mean = np.cumsum(total, axis=0)[:num_frames] / np.maximum(np.cumsum(count)[:num_frames], 1)[:, None]
    labels = ndimage.median_filter(mean.argmax(axis=1), size=round(SMOOTH_S * FRAME_RATE_HZ) | 1)

    found = [mask_to_turns(torch.from_numpy((labels == k) & speech), FRAME_RATE_HZ, MIN_GAP_S, MIN_TURN_S)
             for k in range(2)]
    seconds = [sum(end - start for start, end in turns) for turns in found]
    if min(seconds) < MIN_SPEAKER_S:
        raise _one_voice(f"the second voice speaks for {min(seconds):.1f} s of {speech_s:.1f} s of speech")
    if cosine > ALIKE_COSINE:
        log.warning("BMSplitConversation diarize: the two voices sound alike (cosine %.2f); "
                    "check the turns, or use mode 'turns'.", cosine)
    found.sort(key=lambda turns: turns[0][0])
    return Diarization(turns=dict(zip(SPEAKERS, found, strict=True)), speaker_cosine=cosine, speech_s=speech_s)
