"""Two-speaker diarization of a mono conversation: Silero VAD + Resemblyzer speaker embeddings + k-means.

Pipeline (all at 16 kHz, frames of 10 ms):

1. Voice activity detection (:mod:`.vad`, Silero) gives the speech regions.
2. Resemblyzer's GE2E speaker encoder (256-d, weights bundled in its wheel) embeds windows of
   ``EMBED_WINDOW_S`` seconds (its training length; 1.0 s and 2.0 s windows did worse on the real
   conversation) every ``EMBED_HOP_S`` seconds of its own 40-band (power, not log) mel input (:mod:`.voice_encoder`).
3. Windows that are at least ``MIN_WINDOW_SPEECH`` speech are clustered into two speakers with
   k-means on the unit vectors (:mod:`.kmeans`, torch).
4. Every 10 ms frame takes the speaker whose centroid is, on average over the windows covering
   the frame, most similar; labels are median-filtered over ``SMOOTH_S`` and kept only inside
   speech regions. Turns shorter than ``MIN_TURN_S`` are dropped, gaps shorter than
   ``MIN_GAP_S`` bridged.

Each speech frame gets exactly one speaker: overlapping speech goes to the dominant voice
(the turns of the two speakers do not overlap). Measured on the real two-speaker
``sample.wav`` (tests/unit/audio/test_diarization_real.py): DER 4.3 % with a 0.25 s collar, 15.5 % without.

One voice only (speaker-count estimation, tested on real recordings): the mode looks for two
speakers, but first estimates whether there are two from the embeddings. The statistic is the
**mean resultant length** ``R = |mean of the voiced windows' unit embeddings|`` (0..1; directional
statistics): the windows of one voice cluster tightly (high ``R``), two voices pull the mean apart.
Measured with this pack's pipeline (``bench/audio_speaker_count.py`` prints the table; the
recordings are ``tests/audio_fixtures.py::speaker_count_recordings``):

* one speaker (17 real recordings: pairs and all of the five LibriVox clips of pocketsphinx-testdata,
  its ``cards`` clips, the solo stretches of each sample.wav speaker): ``R`` = 0.857 to 0.924;
* two speakers (10): sample.wav 0.854 (0.855 at 8, 22.05 and 48 kHz), its 11-15 s excerpts
  0.859-0.869, the two speakers' solo stretches interleaved 0.839, mixes of two different people
  (LibriVox, cards, a sample.wav speaker) 0.760-0.848.

sample.wav's two (similar) voices overlap the one-voice range: no threshold separates all cases.
Resemblyzer is also sensitive to the recording channel (two LibriVox clips of one reader reach a
centroid cosine of 0.75, lower than two different people), so the centroid cosine is no better.
The pack's choice, from these numbers:

* ``R >= ONE_VOICE_R`` (0.88, 0.011 above the highest two-speaker value): refused as one voice
  (:class:`BMInputError` naming ``conversation``, with the fix: talk-only, or stereo / turns mode).
  Refuses 8 of the 17 one-speaker recordings, among them the 10.5 s LibriVox recording that was
  split 6.8 s / 2.0 s before (``R`` = 0.900);
* ``ALIKE_R <= R < ONE_VOICE_R`` (0.85): the split is made but a warning says that the voices are as
  alike as one voice's and gives the same fix (every one-speaker recording measured gets at least
  this warning; so does sample.wav);
* below: two voices, no message.

A recording is also refused when it has no speech, or when the second cluster gets less than
``MIN_SPEAKER_S`` seconds of speech (e.g. one short utterance). Use mode ``stereo`` or ``turns`` (or
connect a monologue straight to BM Dual Stream Encode's talk input) when the voices cannot be told apart.
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
ONE_VOICE_R = 0.88  # the pack's choice (module doc): refuse as one voice at or above
ALIKE_R = 0.85  # the pack's choice (module doc): warn at or above
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
        concentration: mean resultant length ``R`` of the voiced windows' unit embeddings (module doc).
    """

    turns: Turns
    speaker_cosine: float
    speech_s: float
    concentration: float


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


ONE_VOICE_FIX = ("for a monologue connect the audio to BM Dual Stream Encode's talk input directly (talk only); "
                 "if two people do speak, use mode 'stereo' with one speaker per channel, or mode 'turns' with "
                 "their turns.")


def _one_voice(found: str) -> BMInputError:
    return BMInputError("conversation", f"diarize mode found one voice only ({found}).", ONE_VOICE_FIX)


def voice_concentration(embeddings: np.ndarray) -> float:
    """Mean resultant length of unit embeddings: ``|mean_i e_i|`` in 0..1 (1 = all identical).

    Args:
        embeddings: float ``[W, D]`` unit vectors (Resemblyzer window embeddings).
    """
    return float(np.linalg.norm(embeddings.mean(axis=0)))


@dataclass(frozen=True)
class SpeechWindows:
    """The embedded speech of a recording (:func:`speech_windows`).

    Attributes:
        embeddings: float32 ``[W, 256]`` unit embeddings of every window.
        starts: ``[W]`` window starts in 10 ms frames; every window is ``window`` frames long.
        speech: bool ``[F]`` voice activity per 10 ms frame.
        voiced: the rows of ``embeddings`` whose window is at least ``MIN_WINDOW_SPEECH`` speech.
        speech_s: seconds of speech found by the VAD.
    """

    embeddings: np.ndarray
    starts: np.ndarray
    window: int
    speech: np.ndarray
    voiced: np.ndarray
    speech_s: float


def speech_windows(waveform: torch.Tensor, sample_rate: int, on_progress=None) -> SpeechWindows:
    """Steps 1-2 of the module doc: voice activity, window embeddings, the windows that hold speech.

    Args: as :func:`diarize`.

    Raises:
        BMInputError: no speech, or less than two voiced windows (too little to compare voices).
    """
    wav16k = mono_at(waveform, sample_rate, VAD_SAMPLE_RATE)
    check = (lambda: on_progress(0, 1)) if on_progress else None
    regions = speech_regions(speech_probabilities(wav16k, check), wav16k.shape[0])
    speech_s = sum(end - start for start, end in regions)
    if not regions:
        raise BMInputError("conversation", "contains no speech (voice activity detection found none).",
                           "check that the file holds the conversation and is not silent or muted.")
    embeddings, starts, window = window_embeddings(wav16k, on_progress)
    speech = turns_to_mask(regions, int(starts[-1]) + window, FRAME_RATE_HZ).numpy()
    coverage = np.cumsum(np.concatenate([[0], speech]))
    speech_share = (coverage[starts + window] - coverage[starts]) / window
    voiced = embeddings[speech_share >= MIN_WINDOW_SPEECH]
    if len(voiced) < 2:
        raise _one_voice(f"{speech_s:.1f} s of speech is too little to compare two voices")
    return SpeechWindows(embeddings, starts, window, speech, voiced, speech_s)


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
        BMInputError: no speech at all, or a single voice (concentration >= ``ONE_VOICE_R``, or too
            little speech for a second voice; see the module doc).
        MissingDependencyError: silero-vad or Resemblyzer's weight file is missing.
    """
    ndimage = import_optional("scipy.ndimage", "scipy", "smoothing speaker labels")
    found_speech = speech_windows(waveform, sample_rate, on_progress)
    embeddings, starts, window, speech = found_speech.embeddings, found_speech.starts, found_speech.window, found_speech.speech
    voiced, speech_s, num_frames = found_speech.voiced, found_speech.speech_s, speech.shape[0]
    concentration = voice_concentration(voiced)
    if concentration >= ONE_VOICE_R:
        raise _one_voice(f"the speaker embeddings of its {speech_s:.1f} s of speech are as close together as one "
                         f"speaker's: concentration {concentration:.3f} >= {ONE_VOICE_R}")

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
    if concentration >= ALIKE_R:
        log.warning("BMSplitConversation diarize: the voices are as alike as one speaker's recordings (concentration "
                    "%.3f >= %s); the split may be of one voice. Check the turns in the timeline. Fix: %s",
                    concentration, ALIKE_R, ONE_VOICE_FIX)
    found.sort(key=lambda turns: turns[0][0])
    return Diarization(turns=dict(zip(SPEAKERS, found, strict=True)), speaker_cosine=cosine, speech_s=speech_s,
                       concentration=concentration)
