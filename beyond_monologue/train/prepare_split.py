"""The talk and listen streams of a video's on-screen speaker, with BM Split Conversation's own engine.

Which split (``--split``, default ``auto``):

* ``turns`` (auto when ``NAME.rttm`` is beside the video): the RTTM's turns mask the soundtrack
  (:func:`~beyond_monologue.audio.conversation.split_by_turns`). The on-screen speaker is the RTTM
  label given by ``--speaker``, else the speaker with the most seconds of turns (the pack's choice:
  in a video of a conversation the person filmed is usually the one who talks most; the pack does not
  detect the active speaker from the picture). Every other speaker's turns make the listen stream.
* ``stereo`` (auto when ``NAME.conversation.wav`` is beside the video): one speaker per channel
  (:func:`~beyond_monologue.audio.conversation.split_stereo`), the on-screen speaker's channel chosen
  by ``--channel`` (1 = left, as the node's ``speaker_1``). Without a beside file the video's own
  soundtrack must have two channels.
* ``diarize`` (auto otherwise): Silero VAD + Resemblyzer
  (:func:`~beyond_monologue.audio.diarization.diarize`) on the soundtrack, then turns as above; the
  on-screen speaker is the one with the most seconds (the same pack's choice). When diarization finds
  one voice only (its own refusal), the video is a monologue: the whole soundtrack is the talk stream
  and the listen stream is silence (the pack's choice: a single voice in a talking-head video is
  taken to be the person filmed).

Both streams are mono ``[T]`` at the soundtrack's rate and as long as it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..audio.conversation import split_by_turns, split_stereo
from ..audio.diarization import diarize
from ..audio.turns import Turns, merge_intervals, parse_turns_text
from ..errors import BMInputError

SPLITS = ("auto", "stereo", "diarize", "turns")
ONE_VOICE = "diarize mode found one voice only"  # the start of diarize's one-voice refusal


@dataclass(frozen=True)
class SpeakerStreams:
    """The on-screen speaker's streams.

    Attributes:
        talk, listen: float32 ``[T]`` at ``sample_rate`` Hz.
        sample_rate: Hz.
        split: the split used: ``"turns"``, ``"stereo"``, ``"diarize"`` or ``"monologue"`` (diarize found one voice).
        speaker: who is on screen, e.g. ``"speaker90"`` (RTTM label), ``"channel 1"``, ``"speaker_1"``.
        note: why that speaker (for the manifest).
    """

    talk: torch.Tensor
    listen: torch.Tensor
    sample_rate: int
    split: str
    speaker: str
    note: str


def turn_seconds(turns: Turns) -> dict[str, float]:
    """Seconds of turns per speaker."""
    return {name: sum(end - start for start, end in intervals) for name, intervals in turns.items()}


def on_screen_speaker(turns: Turns, wanted: str = "", source: str = "turns") -> tuple[str, str]:
    """The on-screen speaker among ``turns``: ``wanted`` if given, else the one with the most seconds.

    Returns:
        ``(label, note)``.

    Raises:
        BMInputError: (``speaker``) ``wanted`` is not a speaker of ``turns``.
    """
    seconds = turn_seconds(turns)
    if wanted:
        if wanted not in turns:
            raise BMInputError("speaker", f"{wanted!r} is not a speaker of {source} ({', '.join(turns)}).",
                               "pass a label of the RTTM with --speaker, or leave it out (the speaker who talks most).")
        return wanted, f"--speaker {wanted}"
    label = max(seconds, key=lambda name: (seconds[name], name))
    return label, f"talks most: {seconds[label]:.1f} s of {sum(seconds.values()):.1f} s of turns"


def split_with_turns(waveform: torch.Tensor, sample_rate: int, turns: Turns, speaker: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Talk = ``speaker``'s turns, listen = every other speaker's turns (merged), of the mono mix."""
    others = merge_intervals([span for name, spans in turns.items() if name != speaker for span in spans])
    talk, listen, _ = split_by_turns(waveform, sample_rate, {speaker: turns[speaker], "others": others}, 0, "rttm")
    return talk, listen


def speaker_streams(sound: tuple[torch.Tensor, int], split: str = "auto", rttm_text: str | None = None,
                    conversation: tuple[torch.Tensor, int] | None = None, channel: int = 1,
                    speaker: str = "") -> SpeakerStreams:
    """Talk/listen of the on-screen speaker (see the module docstring for the rules).

    Args:
        sound: the video's soundtrack ``([C, T] float32, Hz)``.
        split: one of :data:`SPLITS`.
        rttm_text: the beside RTTM file's text, or None.
        conversation: the beside two-channel recording, or None.
        channel: 1 or 2, the on-screen speaker's channel (stereo).
        speaker: the on-screen RTTM label ("" = who talks most).

    Raises:
        BMInputError: a split whose input is missing (``turns`` without an RTTM, ``stereo`` without two
            channels), a bad RTTM or speaker label, no speech at all (diarize), dual-mono stereo.
    """
    if split == "auto":
        split = "turns" if rttm_text is not None else "stereo" if conversation is not None else "diarize"
    waveform, rate = sound
    if split == "turns":
        if rttm_text is None:
            raise BMInputError("split", "is 'turns' but there is no NAME.rttm beside the video.",
                               "put the speakers' turns beside the video as NAME.rttm, or use --split diarize.")
        turns = parse_turns_text(rttm_text, "rttm")
        label, note = on_screen_speaker(turns, speaker, "the RTTM")
        talk, listen = split_with_turns(waveform, rate, turns, label)
        return SpeakerStreams(talk, listen, rate, "turns", label, note)
    if split == "stereo":
        waveform, rate = conversation if conversation is not None else sound
        if channel not in (1, 2):
            raise BMInputError("channel", f"is {channel}.", "use 1 (left) or 2 (right).")
        talk, listen, _ = split_stereo(waveform, rate, channel - 1)
        return SpeakerStreams(talk, listen, rate, "stereo", f"channel {channel}", f"--channel {channel}")
    if split != "diarize":
        raise BMInputError("split", f"is {split!r}.", f"use one of {', '.join(SPLITS)}.")
    try:
        turns = diarize(waveform, rate).turns
    except BMInputError as err:
        if not err.problem.startswith(ONE_VOICE):
            raise
        mono = waveform.mean(dim=0)
        return SpeakerStreams(mono, torch.zeros_like(mono), rate, "monologue", "the only voice", err.problem)
    label, note = on_screen_speaker(turns, "", "the diarization")
    talk, listen = split_with_turns(waveform, rate, turns, label)
    return SpeakerStreams(talk, listen, rate, "diarize", label, note)
