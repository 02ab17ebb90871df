"""Progress and Cancel for long node work, shared by the stage modules."""

from __future__ import annotations

import comfy.model_management
import comfy.utils


def progress_reporter():
    """An ``on_progress(done, total)`` callback for core functions: updates a ComfyUI ProgressBar
    (the node's bar in the UI) and raises ComfyUI's interrupt exception when the user pressed Cancel."""
    bar = comfy.utils.ProgressBar(1)

    def on_progress(done: int, total: int) -> None:
        bar.update_absolute(done, total)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return on_progress
