"""ComfyUI V3 node classes of the pack, one module per pipeline stage.

Nodes are thin: they validate inputs, call into ``beyond_monologue`` and wrap the outputs in
ComfyUI's own types. Each stage module exports ``NODES``.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import audio, audio_encode, audio_separate, evaluate, model, sampling, train, video

STAGE_MODULES = (audio, audio_separate, audio_encode, model, sampling, video, train, evaluate)


class BeyondMonologueExtension(ComfyExtension):
    """The pack's V3 extension: every node of every stage module."""

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node for module in STAGE_MODULES for node in module.NODES]
