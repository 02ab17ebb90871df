"""Tools that drive a ComfyUI server from outside: the pipeline's stages wired into workflows and run.

Takes the pack and a ComfyUI install, gives running servers, example workflow files and rendered
videos. Used by the demo command, the batch client (``beyond_monologue.batch``) and the test tiers.

Modules: ``comfy_client`` (``ComfyClient``: HTTP/WebSocket API), ``comfy_launcher`` (``ComfyServer``,
``find_comfyui``), ``workflow_builder`` (``UIGraph``), ``workflow_format`` (``ui_to_api``),
``example_workflows`` (``workflows/*.json`` from code), ``listing_pictures`` (template thumbnails and
the registry icon), ``demo`` (the README's main command).
"""
