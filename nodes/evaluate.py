"""Evaluation nodes: BM Evaluate Avatar (lip sync, identity and listening metrics of a rendered video)."""

from __future__ import annotations

import json
import math
import os

import comfy.model_management
import comfy.model_patcher
import folder_paths
import numpy as np
from comfy_api.latest import io, ui

from ..beyond_monologue.audio.audio_checks import check_audio
from ..beyond_monologue.evaluate import avatar_metrics
from ..beyond_monologue.evaluate.avatar_metrics import MetricModels, Stream, evaluate_avatar
from ..beyond_monologue.evaluate.metric_weights import (
    FACENET_FILE,
    FOLDER,
    SYNCNET_FILE,
)
from ..beyond_monologue.evaluate.plot import metrics_plot
from .progress import progress_reporter
from .types import DuplexAudioType


def register_evaluation_folder() -> None:
    """Register ``models/bm_evaluation`` (safetensors only) with ``folder_paths`` once."""
    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".safetensors"})


register_evaluation_folder()


def _on_device(module):
    """Wrap a metric network in a ModelPatcher and load it where ComfyUI runs models; returns the module."""
    patcher = comfy.model_patcher.ModelPatcher(module, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=comfy.model_management.unet_offload_device())
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    return module


NONE = "none"


def weight_options() -> list[str]:
    """The choices of the weights inputs: ``none`` (metric unavailable) and the files of ``models/bm_evaluation``."""
    return [NONE, *sorted(n for n in folder_paths.get_filename_list(FOLDER) if n.lower().endswith(".safetensors"))]


def default_choice(options: list[str], filename: str) -> str:
    """The manifest's file name when it is in the folder (any sub-folder), else ``none``."""
    return next((o for o in options if o.replace("\\", "/").rsplit("/", 1)[-1].lower() == filename.lower()), NONE)


def load_metric_models(syncnet_choice: str | None, face_choice: str | None) -> MetricModels:
    """The chosen metric networks of ``models/bm_evaluation`` (None: not needed); ``none``, a missing
    or a broken file becomes the reason its metric is unavailable (which file, which folder, where from)."""
    folders = " or ".join(folder_paths.get_folder_paths(FOLDER)) or f"ComfyUI/models/{FOLDER}"
    files = {}
    for choice, filename, attribute in ((syncnet_choice, SYNCNET_FILE, "syncnet"), (face_choice, FACENET_FILE, "embedder")):
        if choice is not None:
            path = None if choice == NONE else folder_paths.get_full_path(FOLDER, choice)
            files[attribute] = (path, filename if choice == NONE else choice)
    return avatar_metrics.load_metric_models(files, folders, place=_on_device)


def _stream(audio, name: str) -> Stream | None:
    if audio is None:
        return None
    waveform, rate = check_audio(audio, name)
    return Stream(waveform, rate)


def _duplex_activity(duplex, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """BM_DUPLEX_AUDIO's talk/listen activity, read at each video frame's time (nearest feature frame)."""
    index = np.clip(np.floor((np.arange(frames) + 0.5) / fps * duplex.fps).astype(int), 0, duplex.num_frames - 1)
    return (duplex.talk_activity.float().numpy()[index].astype(np.float64),
            duplex.listen_activity.float().numpy()[index].astype(np.float64))


class BMEvaluateAvatar(io.ComfyNode):
    """IMAGE frames + audio + reference portrait -> metrics (JSON STRING) and a plot over time (IMAGE)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        options = weight_options()
        return io.Schema(
            node_id="BMEvaluateAvatar",
            display_name="BM Evaluate Avatar",
            category="BeyondMonologue/evaluate",
            description=("Measures a rendered avatar video: lip sync (LSE-C/LSE-D, the SyncNet evaluation protocol), "
                         "identity (CSIM against the reference portrait) and the pack's own listening metrics (head "
                         "motion while listening vs in silence, its correlation with the other person's speech, mouth "
                         "activity while listening vs talking). Metric weights go in ComfyUI/models/bm_evaluation "
                         "(see README); a metric whose weights or audio are missing is reported as unavailable."),
            inputs=[
                io.Image.Input("frames", tooltip="The rendered video's frames (VAE Decode or Get Video Components' images)."),
                io.Float.Input("fps", default=25.0, min=0.0, max=240.0, step=0.001,
                               tooltip="Frame rate of the frames (frames per second)."),
                io.Audio.Input("talk_audio", optional=True,
                               tooltip="The avatar's own speech over the video (for lip sync and the talk spans)."),
                io.Audio.Input("listen_audio", optional=True,
                               tooltip="The other person's speech over the video (for the listening metrics)."),
                DuplexAudioType.Input("duplex_audio", optional=True,
                                      tooltip="BM Dual Stream Encode's output: its talk/listen activity is used instead "
                                              "of running voice activity detection on the audio."),
                io.Image.Input("reference", optional=True, tooltip="The portrait the avatar was rendered from (for CSIM)."),
                io.Int.Input("every_nth", default=10, min=1, max=1000, optional=True,
                             tooltip="CSIM compares every Nth frame with the reference (mean and minimum)."),
                io.Combo.Input("syncnet_weights", options=options, default=default_choice(options, SYNCNET_FILE),
                               optional=True, tooltip=f"SyncNet v2 weights in models/{FOLDER} ({SYNCNET_FILE}, converted "
                                                      "from the public syncnet_v2.model; README). none: no lip sync."),
                io.Combo.Input("face_weights", options=options, default=default_choice(options, FACENET_FILE),
                               optional=True, tooltip=f"Face-embedding weights in models/{FOLDER} ({FACENET_FILE}, "
                                                      "converted from facenet-pytorch's VGGFace2 file; README). none: no CSIM."),
            ],
            outputs=[
                io.String.Output(display_name="metrics", tooltip="All metrics as JSON (README: 'Evaluating avatars')."),
                io.Image.Output(display_name="plot", tooltip="Per-second sync confidence, head motion and talk/listen "
                                                             "activity, with LSE-C/LSE-D and CSIM in the title."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, fps=25.0, every_nth=10, **_) -> bool | str:
        # a linked input arrives as None here (its value exists only at run time; execute checks it)
        if fps is not None and (not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0):
            return f"fps: must be a positive frame rate, not {fps}. Fix: set fps to the video's frame rate (e.g. 25)."
        if every_nth is not None and every_nth < 1:
            return f"every_nth: must be at least 1, not {every_nth}. Fix: set every_nth to 1 or more."
        return True

    @classmethod
    def execute(cls, frames, fps, talk_audio=None, listen_audio=None, duplex_audio=None, reference=None,
                every_nth=10, syncnet_weights=None, face_weights=None) -> io.NodeOutput:
        talk, listen = _stream(talk_audio, "talk_audio"), _stream(listen_audio, "listen_audio")
        options = weight_options()
        syncnet_choice = syncnet_weights or default_choice(options, SYNCNET_FILE)
        face_choice = face_weights or default_choice(options, FACENET_FILE)
        models = load_metric_models(syncnet_choice if talk is not None else None,
                                    face_choice if reference is not None else None)
        comfy.model_management.throw_exception_if_processing_interrupted()
        activity = None
        if duplex_audio is not None and frames.ndim == 4 and fps > 0:
            activity = _duplex_activity(duplex_audio, int(frames.shape[0]), float(fps))
        report = evaluate_avatar(frames, float(fps), talk, listen, reference, models, activity=activity,
                                 every_nth=int(every_nth), device=comfy.model_management.get_torch_device(),
                                 on_progress=progress_reporter())
        plot = metrics_plot(report)
        return io.NodeOutput(json.dumps(report, indent=2), plot, ui=ui.PreviewImage(plot, cls=cls))


NODES = [BMEvaluateAvatar]
