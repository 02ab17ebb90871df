"""UI payloads of the pack's nodes (what ``io.NodeOutput(..., ui=...)`` sends to the web extension).

Kept apart from the stage modules so that a node adds its payload with one argument. The payload
format is documented in ``beyond_monologue/audio/activity_timeline.py`` and docs/DEVELOPING.md.
"""

from __future__ import annotations

import logging
import os
import random

import av
import folder_paths
import torch
from comfy_api.latest import Types, io, ui

from ..beyond_monologue.audio.activity_timeline import TIMELINE_UI_KEY, conversation_timeline, timeline_payload
from ..beyond_monologue.audio.duplex_audio import DuplexAudio
from ..beyond_monologue.audio.turns import Turns, mask_to_turns


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
    duration_s = conversation["waveform"].shape[-1] / float(conversation["sample_rate"])
    return {TIMELINE_UI_KEY: [conversation_timeline(turns, avatar, duration_s, preview_file(conversation, cls))]}


def preview_file(audio: dict, cls) -> dict:
    """Save ``audio`` as a temp FLAC the way Preview Audio does; returns ``{"filename", "subfolder", "type"}``.

    The prompt goes into the file's metadata when the node runs inside ComfyUI's executor (``cls.hidden``
    is set there; a node class called directly, as in tests, has none).
    """
    preview = ui.PreviewAudio(audio, cls=cls if getattr(cls, "hidden", None) is not None else None)
    return dict(preview.values[0])


def duplex_timeline_ui(cls, duplex: DuplexAudio, talk: dict, listen: dict) -> dict:
    """``{"bm_timeline": [payload]}`` for BMDualStreamEncode: lanes from the per-frame voice activity.

    A frame counts as active when its activity is at least 0.5. The playback file is talk + listen
    mixed (when both have one sample rate; otherwise the timeline has no playback).

    Args:
        cls: the node class.
        duplex: the encoded streams (activity ``[F]`` per stream at ``duplex.fps``).
        talk, listen: the AUDIO dicts that were encoded (``{"waveform": [1, C, T], "sample_rate"}``).
    """
    lanes = [(name, name, mask_to_turns(getattr(duplex, f"{name}_activity") >= 0.5, duplex.fps))
             for name in ("talk", "listen")]
    audio = None
    if talk["sample_rate"] == listen["sample_rate"]:
        a, b = (stream["waveform"].detach().float().cpu().mean(dim=1) for stream in (talk, listen))
        mix = torch.zeros(1, max(a.shape[-1], b.shape[-1]))
        mix[:, : a.shape[-1]] += a[:1]
        mix[:, : b.shape[-1]] += b[:1]
        audio = preview_file({"waveform": mix.clamp(-1, 1).unsqueeze(0), "sample_rate": talk["sample_rate"]}, cls)
    return {TIMELINE_UI_KEY: [timeline_payload(lanes, duplex.duration_s, audio)]}


def video_preview_ui(video, node: str) -> ui.PreviewVideo | None:
    """Save a VIDEO as a temp MP4 (H.264, as Save Video's ``auto``) and return ComfyUI's ``ui.PreviewVideo`` of it.

    The file goes to ComfyUI's temp folder (emptied at every start) with Preview Audio's naming
    (``ComfyUI_temp_<5 letters>_<counter>_.mp4``); the frontend plays it under the node like Save
    Video's result, so a result can be watched without saving it. Costs one extra encode of the
    video. An encoding failure only loses the preview (logged): the node's outputs are unaffected.

    Args:
        video: ComfyUI VIDEO (``VideoInput``), e.g. ``InputImpl.VideoFromComponents``.
        node: node id for the log message.

    Returns:
        ``ui.PreviewVideo`` with one ``SavedResult(type="temp")``, or None when encoding failed.
    """
    width, height = video.get_dimensions()
    prefix = "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))  # noqa: S311 - a file name, not a secret
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_temp_directory(), width, height)
    file = f"{filename}_{counter:05}_.mp4"
    try:
        video.save_to(os.path.join(folder, file), format=Types.VideoContainer.MP4, codec=Types.VideoCodec.H264)
    except (OSError, ValueError, RuntimeError, av.error.FFmpegError) as error:
        logging.warning("%s: the video preview could not be encoded (%s); the outputs are unaffected.", node, error)
        return None
    return ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.temp)])
