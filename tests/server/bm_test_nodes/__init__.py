"""Test-only custom nodes for the server tier: inputs that would otherwise need full-size models.

* ``BMTestConditioning``: a CONDITIONING of random umT5-XXL-width embeddings. ComfyUI 0.3.75's
  CLIPLoader only builds the full 5.7 B umT5-XXL (minutes per prompt on a CPU), so server tests
  give BM Sampler a conditioning of the exact layout CLIP Text Encode produces (``[[tensor
  [1, tokens, 4096], {}]]``) instead.
* ``BMTestDuplexAudio``: a BM_DUPLEX_AUDIO of random wav2vec2-base-shaped features
  (``[frames, 12, 768]`` per stream), what BM Dual Stream Encode produces, without a wav2vec2 run.

Installed next to the pack only in the test server (tests/server/conftest.py); never shipped.
"""

from __future__ import annotations

import sys

import torch
from comfy_api.latest import ComfyExtension, io


def _duplex_audio_class():
    """The pack's own ``DuplexAudio`` (the module copy ComfyUI loaded, so the sampler accepts it)."""
    for name, module in sys.modules.items():
        if name.endswith(".beyond_monologue.audio.duplex_audio"):
            return module.DuplexAudio
    raise RuntimeError("the beyond-monologue pack is not loaded")


class BMTestConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="BMTestConditioning", display_name="BM Test Conditioning", category="testing",
                         description="Random umT5-width text conditioning (tests only).",
                         inputs=[io.Int.Input("tokens", default=8, min=1, max=512, tooltip="text tokens"),
                                 io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="random seed")],
                         outputs=[io.Conditioning.Output(tooltip="CONDITIONING [[1, tokens, 4096], {}]")])

    @classmethod
    def execute(cls, tokens, seed):
        embedding = torch.randn((1, tokens, 4096), generator=torch.Generator().manual_seed(seed))
        return io.NodeOutput([[embedding, {}]])


class BMTestDuplexAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="BMTestDuplexAudio", display_name="BM Test Duplex Audio", category="testing",
                         description="Random wav2vec2-base-shaped talk/listen features (tests only).",
                         inputs=[io.Int.Input("frames", default=9, min=1, max=100001, step=4, tooltip="4n+1 video frames"),
                                 io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="random seed")],
                         outputs=[io.Custom("BM_DUPLEX_AUDIO").Output(tooltip="both streams")])

    @classmethod
    def execute(cls, frames, seed):
        g = torch.Generator().manual_seed(seed)
        talk, listen = (torch.randn((frames, 12, 768), generator=g) for _ in range(2))
        return io.NodeOutput(_duplex_audio_class()(talk, listen, torch.ones(frames), torch.ones(frames), fps=25.0))


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [BMTestConditioning, BMTestDuplexAudio]


async def comfy_entrypoint():
    return _Extension()
