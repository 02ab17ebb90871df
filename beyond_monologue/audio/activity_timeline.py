"""The talk/listen activity timeline that nodes send to the pack's web extension.

A node puts ``{TIMELINE_UI_KEY: [payload]}`` in its ``io.NodeOutput(..., ui=...)``; ComfyUI sends
it to the browser in the ``executed`` event (and keeps it in ``/history`` outputs), where
``web/bm_timeline.js`` draws one lane per stream under a playback cursor. The payload (version 1)::

    {
      "version": 1,
      "duration_s": 30.0,                       # length of the conversation, seconds
      "lanes": [                                # drawn top to bottom
        {"id": "talk",   "label": "talk: speaker_2",   "turns": [[6.69, 10.2], ...]},
        {"id": "listen", "label": "listen: speaker_1", "turns": [[0.5, 6.4], ...]}
      ],
      "audio": {"filename": "...", "subfolder": "", "type": "temp"}   # or null: no playback
    }

Turns are ``[start_s, end_s]`` in seconds, sorted, non-overlapping within a lane, clipped to
``[0, duration_s]`` and rounded to milliseconds. ``audio`` is a file ComfyUI serves at ``/view``
(a ``PreviewAudio``-style temp file of the conversation). The key is not ``audio``: the
frontend's own audio extension expects an ``audioUI`` widget on any node whose output has one.
"""

from __future__ import annotations

from .turns import Turns, merge_intervals

TIMELINE_UI_KEY = "bm_timeline"
TIMELINE_VERSION = 1


def clip_turns(turns: list[tuple[float, float]], duration_s: float) -> list[list[float]]:
    """Sort, merge and clip turns (seconds) to ``[0, duration_s]``; drops empty ones; ms rounding."""
    clipped = [(max(0.0, s), min(duration_s, e)) for s, e in merge_intervals(turns)]
    return [[round(s, 3), round(e, 3)] for s, e in clipped if e > s]


def timeline_payload(lanes: list[tuple[str, str, list[tuple[float, float]]]], duration_s: float,
                     audio: dict | None = None) -> dict:
    """Build one timeline payload.

    Args:
        lanes: ``(id, label, turns)`` per lane, top to bottom; ids ``"talk"`` and ``"listen"``
            get the extension's talk and listen colours.
        duration_s: length of the conversation in seconds (> 0).
        audio: ``{"filename", "subfolder", "type"}`` of a file served by ``/view``, or None.

    Raises:
        ValueError: ``duration_s`` is not positive.
    """
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    return {
        "version": TIMELINE_VERSION,
        "duration_s": round(float(duration_s), 3),
        "lanes": [{"id": lane_id, "label": label, "turns": clip_turns(turns, duration_s)}
                  for lane_id, label, turns in lanes],
        "audio": ({"filename": audio["filename"], "subfolder": audio.get("subfolder", ""), "type": audio["type"]}
                  if audio else None),
    }


def conversation_timeline(turns: Turns, avatar: int, duration_s: float, audio: dict | None = None) -> dict:
    """Timeline of a split conversation: the avatar's turns are "talk", every other speaker's "listen".

    Args:
        turns: turns per speaker, speakers in the order the avatar index refers to
            (``BMSplitConversation``: speaker_1, speaker_2).
        avatar: index of the avatar's speaker in ``turns``.
        duration_s: the conversation's length in seconds.
        audio: the conversation's preview file (see :func:`timeline_payload`).
    """
    speakers = list(turns)
    talker = speakers[avatar] if 0 <= avatar < len(speakers) else None
    others = [s for s in speakers if s != talker]
    listen = [turn for s in others for turn in turns[s]]
    return timeline_payload([("talk", f"talk: {talker or '-'}", turns.get(talker, []) if talker else []),
                             ("listen", f"listen: {', '.join(others) or '-'}", listen)], duration_s, audio)
