"""``GET /beyond_monologue/weights``: the weights status for the web extension, served by ComfyUI.

The pack registers the route when ComfyUI imports it (``register_route()`` in the pack's
``__init__.py``), on ``server.PromptServer.instance.routes``, which ComfyUI also mirrors under
``/api``. The answer is :func:`.presence.weights_status` over ComfyUI's ``folder_paths`` listings
(cached by ComfyUI, no hashing): nothing in the request is read, so no user-supplied name or path
ever reaches the file system.
"""

from __future__ import annotations

import logging
import sys

from .manifest import ManifestError
from .presence import weights_status

ROUTE = "/beyond_monologue/weights"


def comfy_folder_files(folder: str) -> list[str]:
    """``folder_paths.get_filename_list(folder)``, or ``[]`` when ComfyUI has no such folder key."""
    import folder_paths

    if folder_paths.map_legacy(folder) not in folder_paths.folder_names_and_paths:
        return []
    return folder_paths.get_filename_list(folder)


def status_payload() -> dict:
    """The route's answer for this ComfyUI (see :func:`.presence.weights_status`)."""
    return weights_status(comfy_folder_files)


async def get_weights_status(request):
    """aiohttp handler: the status payload as JSON (500 with a message if the manifest cannot be read)."""
    from aiohttp import web

    try:
        return web.json_response(status_payload())
    except (ManifestError, OSError) as error:  # a broken manifest or folder fails this answer, not the page
        logging.exception("BeyondMonologue: %s failed", ROUTE)
        return web.json_response({"error": str(error)}, status=500)


def register_route() -> bool:
    """Add the route to the running ComfyUI server; False (and nothing done) when there is none.

    ``server`` is looked up in ``sys.modules`` instead of imported: ComfyUI's ``main.py`` imports
    it (and creates ``PromptServer.instance``) before loading custom nodes, while importing it
    anywhere else (tests, scripts) would pull in the whole server stack for nothing.
    Registering twice is a no-op.
    """
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(prompt_server, "routes", None)
    if routes is None:
        return False
    if not any(getattr(route, "path", None) == ROUTE for route in routes):
        routes.get(ROUTE)(get_weights_status)
    return True
