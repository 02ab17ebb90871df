"""Lazy imports of the pack's optional model libraries, with a clear message when one is missing.

silero-vad and BS-RoFormer are needed only by some nodes. Resemblyzer (whose weight file the
diarization reads, never its code) must be installed with ``--no-deps`` (its metadata pins the
``webrtcvad`` sdist and the ``typing`` backport); ``install.py`` at the pack root does that and
ComfyUI-Manager runs it on install. docs/DEVELOPING.md lists every runtime dependency and why.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = ("run `python install.py` in the pack's folder with ComfyUI's Python "
                "(or `pip install -r requirements.txt`), then restart ComfyUI.")


class MissingDependencyError(RuntimeError):
    """A Python package the node needs is not installed (the message says which and how to install it)."""


def import_optional(module: str, package: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the PyPI ``package``.

    Args:
        module: import name, e.g. ``"bs_roformer"``.
        package: PyPI name and pin, e.g. ``"BS-RoFormer==0.3.10"``.
        purpose: what it is needed for, e.g. ``"speaker embeddings for diarization"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"The Python package {package} is needed for {purpose} but cannot be imported ({error}). "
            f"Fix: {INSTALL_HINT}") from error
