"""comfyui-beyond-monologue: full-duplex talking AND listening avatars for ComfyUI.

ComfyUI imports this file as the custom-node module (V3 API: ``comfy_entrypoint``). Do not add
``NODE_CLASS_MAPPINGS`` here: ComfyUI checks it first and would then ignore ``comfy_entrypoint``.
"""

from .beyond_monologue.weights.route import register_route
from .nodes import BeyondMonologueExtension

WEB_DIRECTORY = "./web"
register_route()  # GET /beyond_monologue/weights for web/bm_weights.js; no-op without a running server


async def comfy_entrypoint() -> BeyondMonologueExtension:
    """Return the pack's ``ComfyExtension`` (called once by ComfyUI while loading custom nodes)."""
    return BeyondMonologueExtension()
