"""comfyui-beyond-monologue: full-duplex talking AND listening avatars for ComfyUI.

ComfyUI imports this file as the custom-node module (V3 API: ``comfy_entrypoint``). Do not add
``NODE_CLASS_MAPPINGS`` here: ComfyUI checks it first and would then ignore ``comfy_entrypoint``.
"""

from .nodes import BeyondMonologueExtension

WEB_DIRECTORY = "./web"


async def comfy_entrypoint() -> BeyondMonologueExtension:
    """Return the pack's ``ComfyExtension`` (called once by ComfyUI while loading custom nodes)."""
    return BeyondMonologueExtension()
