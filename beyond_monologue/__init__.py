"""Core of comfyui-beyond-monologue: model and signal code for full-duplex talking/listening avatars.

One sub-package per pipeline stage, in the order a conversation flows through them:
``audio`` (conversation -> talk/listen streams -> features) -> ``model`` (the dual-stream MHGK
adapter on a native Wan MODEL) -> ``sampling`` (long-form guided sampling) -> ``video`` (streaming
decode, soundtrack, dyadic compose). Around them: ``weights`` (manifest, verify, download, smoke
checkpoints), ``batch`` (jobs over ComfyUI's HTTP API) and ``comfyui`` (client, launcher, example
workflows, demo). Shared by all: ``errors``, ``optional_deps`` and ``timebase`` (the one clock of
frames, latent frames and audio windows).

Everything here is plain torch (and, where a module says so, ComfyUI's own classes); the ComfyUI
node classes live in the pack's ``nodes/`` folder and only validate inputs, call into this package
and wrap outputs. Modules use relative imports only, so the package works both as the top-level
``beyond_monologue`` (unit tests, CLI tools) and as a sub-package of the custom-node module that
ComfyUI imports.
"""

__version__ = "0.1.0"
