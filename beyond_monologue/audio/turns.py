"""Speaker turns: parsing user-given turns, JSON output, and sample masks.

A *turn* is a ``(start_s, end_s)`` pair in seconds. Turns of one speaker are kept sorted and
merged where they touch or overlap. Turns of different speakers may overlap (overlapping
speech belongs to both speakers).

Accepted text formats (one turn per line, blank lines and ``#`` comments ignored):

* RTTM (NIST Rich Transcription Time Marked, as written by pyannote):
  ``SPEAKER <file> <channel> <start_s> <duration_s> <NA> <NA> <speaker> <NA> <NA>``
* plain: ``<start_s> <end_s> <speaker>``
"""

from __future__ import annotations

import json

import torch

from ..errors import BMInputError

Turns = dict[str, list[tuple[float, float]]]


def merge_intervals(intervals: list[tuple[float, float]], gap_s: float = 0.0) -> list[tuple[float, float]]:
    """Sort intervals and merge those that overlap or are at most ``gap_s`` seconds apart."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def parse_turns_text(text: str, input_name: str = "turns") -> Turns:
    """Parse RTTM or ``start end speaker`` lines into turns per speaker.

    Speakers keep the order of their first turn in time.

    Raises:
        BMInputError: a line in neither format, a negative start, an end before its start,
            or no turn at all.
    """
    raw: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            if fields[0].upper() == "SPEAKER" and len(fields) >= 8:
                start = float(fields[3])
                end = start + float(fields[4])
                speaker = fields[7]
            elif len(fields) == 3:
                start, end, speaker = float(fields[0]), float(fields[1]), fields[2]
            else:
                raise ValueError
        except ValueError:
            raise BMInputError(input_name, f"line {number} ({line!r}) is neither RTTM nor 'start end speaker'.",
                               "write one turn per line, e.g. '6.7 10.2 alice', or paste an RTTM file.") from None
        if start < 0 or end < start:
            raise BMInputError(input_name, f"line {number} has start {start} s and end {end} s.",
                               "give a start >= 0 and an end after the start, both in seconds.")
        raw.setdefault(speaker, []).append((start, end))
    if not raw:
        raise BMInputError(input_name, "contains no turns.",
                           "write one turn per line ('start end speaker' in seconds) or paste an RTTM file.")
    turns = {speaker: merge_intervals(intervals) for speaker, intervals in raw.items()}
    return dict(sorted(turns.items(), key=lambda item: item[1][0][0]))


def turns_to_json(turns: Turns) -> str:
    """Serialise turns as the pack's JSON turns string: ``{"speaker": [[start_s, end_s], ...], ...}``.

    Times are rounded to milliseconds.
    """
    return json.dumps({speaker: [[round(s, 3), round(e, 3)] for s, e in intervals]
                       for speaker, intervals in turns.items()})


def turns_from_json(text: str, input_name: str = "turns") -> Turns:
    """Inverse of :func:`turns_to_json`.

    Raises:
        BMInputError: not valid turns JSON.
    """
    try:
        data = json.loads(text)
        return {str(speaker): [(float(s), float(e)) for s, e in intervals] for speaker, intervals in data.items()}
    except (ValueError, TypeError, AttributeError):
        raise BMInputError(input_name, "is not turns JSON ({'speaker': [[start_s, end_s], ...]}).",
                           "connect the 'turns' output of BM Split Conversation.") from None


def turns_to_mask(intervals: list[tuple[float, float]], num_samples: int, sample_rate: int) -> torch.Tensor:
    """Boolean mask ``[num_samples]`` that is True inside the given turns (seconds -> samples, end exclusive)."""
    mask = torch.zeros(num_samples, dtype=torch.bool)
    for start, end in intervals:
        a = max(0, min(num_samples, round(start * sample_rate)))
        b = max(0, min(num_samples, round(end * sample_rate)))
        mask[a:b] = True
    return mask


def mask_to_turns(mask: torch.Tensor, rate_hz: float, min_gap_s: float = 0.0,
                  min_turn_s: float = 0.0) -> list[tuple[float, float]]:
    """Turns (seconds) where a boolean ``[N]`` mask sampled at ``rate_hz`` is True.

    Gaps shorter than ``min_gap_s`` are bridged, then turns shorter than ``min_turn_s`` dropped.
    """
    padded = torch.cat([torch.zeros(1, dtype=torch.int8), mask.to(torch.int8), torch.zeros(1, dtype=torch.int8)])
    edges = torch.diff(padded)
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = torch.nonzero(edges == -1).flatten().tolist()
    intervals = [(s / rate_hz, e / rate_hz) for s, e in zip(starts, ends, strict=True)]
    intervals = merge_intervals(intervals, gap_s=min_gap_s)
    return [(s, e) for s, e in intervals if e - s >= min_turn_s]
