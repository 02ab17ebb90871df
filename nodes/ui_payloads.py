"""UI payloads of the pack's nodes (what ``io.NodeOutput(..., ui=...)`` sends to the web extension).

Kept apart from the stage modules so that a node adds its payload with one argument. The payload
format is documented in ``beyond_monologue/activity_timeline.py`` and docs/DEVELOPING.md.
"""

from __future__ import annotations

from comfy_api.latest import ui

from ..beyond_monologue.activity_timeline import TIMELINE_UI_KEY, conversation_timeline
from ..beyond_monologue.turns import Turns


def conversation_timeline_ui(cls, turns: Turns, avatar: int, conversation: dict) -> dict:
    """``{"bm_timeline": [payload]}`` for a node that split ``conversation`` into talk/listen.

    Saves the conversation as a temp FLAC with ComfyUI's ``ui.PreviewAudio`` (what Preview Audio
    does) so the timeline widget can play it under its cursor.

    Args:
        cls: the node class (its hidden prompt goes into the file's metadata, as ComfyUI does).
        turns: turns per speaker (seconds), in the order ``avatar`` indexes.
        avatar: index of the avatar's speaker.
        conversation: the AUDIO dict ``{"waveform": [1, C, T], "sample_rate"}`` that was split.
    """
    preview = ui.PreviewAudio(conversation, cls=cls)
    duration_s = conversation["waveform"].shape[-1] / float(conversation["sample_rate"])
    return {TIMELINE_UI_KEY: [conversation_timeline(turns, avatar, duration_s, dict(preview.values[0]))]}
