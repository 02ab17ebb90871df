"""Core of comfyui-beyond-monologue: model and signal code for full-duplex talking/listening avatars.

Everything here is plain torch (and, where a module says so, ComfyUI's own classes); the ComfyUI
node classes live in the pack's ``nodes/`` folder and only validate inputs, call into this package
and wrap outputs. Modules use relative imports only, so the package works both as the top-level
``beyond_monologue`` (unit tests, CLI tools) and as a sub-package of the custom-node module that
ComfyUI imports.
"""

__version__ = "0.1.0"
