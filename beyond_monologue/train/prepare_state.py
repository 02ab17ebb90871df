"""The state of a ``prepare`` run: its options, folders, atomic writes, the encoded prompt.

Everything lives in ComfyUI's folders: shards in ``models/bm_training_sets/<name>/``, the run folder
``<ComfyUI output>/bm_prepare/<name>/`` (``options.json``, ``prompt.safetensors``, ``videos/*.json`` done
markers, ``manifest.json``, ``training_sets.toml``). Files are written under a temporary name and moved
into place with ``os.replace`` (:func:`write_atomic`), so no reader ever sees a partial file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import BMInputError
from ..timebase import frame_count, is_valid_frame_count
from .prepare_clips import (
    MAX_SECOND_FACE,
    MIN_FACE,
    MIN_SPEECH,
    MIN_SYNC,
)
from .prepare_media import VideoJob
from .prepare_split import SPLITS
from .recipe import TrainRecipe

RUNS_FOLDER = "bm_prepare"  # inside ComfyUI's output directory
SET_FOLDER = "bm_training_sets"
KILL_ENV = "BM_PREPARE_KILL_AFTER_SHARDS"  # tests: SIGKILL right after this many shards, before their markers
DEFAULT_PROMPT = "a person in a conversation, talking and listening"  # the pack's choice: one prompt for every clip
DEFAULT_FRAMES = frame_count(TrainRecipe.window_latents)  # 81: the training recipe's crop

@dataclass(frozen=True)
class PrepareOptions:
    """What decides the shards' content (saved in ``options.json``; a resume must match).

    Attributes:
        name: the prepare run's name (shard sub-folder and run folder).
        vae / audio_encoder / text_encoder: file names in ``models/vae`` / ``models/audio_encoders`` /
            ``models/text_encoders``.
        prompt: the text every clip is trained with.
        frames: frames per clip (4n+1, at least 5).
        fps: training frame rate (frames are picked from the video at this rate).
        width / height: training size in pixels (multiples of 16).
        split / channel / speaker: see :mod:`.prepare_split`.
        min_speech / min_face / max_second_face / min_sync: filter thresholds (:mod:`.prepare_clips`).
        feature_order: wav2vec2 feature order (``"conv_features"``, what the adapter expects).
    """

    name: str
    vae: str
    audio_encoder: str
    text_encoder: str
    prompt: str = DEFAULT_PROMPT
    frames: int = DEFAULT_FRAMES
    fps: float = 25.0
    width: int = 1280
    height: int = 704
    split: str = "auto"
    channel: int = 1
    speaker: str = ""
    min_speech: float = MIN_SPEECH
    min_face: float = MIN_FACE
    max_second_face: float = MAX_SECOND_FACE
    min_sync: float = MIN_SYNC
    feature_order: str = "conv_features"

    def __post_init__(self):
        if not self.name or Path(self.name).name != self.name or self.name in (".", ".."):
            raise BMInputError("name", f"is {self.name!r}: a plain name, not a path.", "use e.g. --name conversations.")
        if not is_valid_frame_count(self.frames) or self.frames < 5:
            raise BMInputError("frames", f"is {self.frames}.", "use 4n+1 frames, at least 5 (81 = the training crop).")
        if not 1.0 <= self.fps <= 60.0:
            raise BMInputError("fps", f"is {self.fps}.", "use 1..60 (25 = the training frame rate).")
        for key in ("width", "height"):
            if getattr(self, key) < 16 or getattr(self, key) % 16:
                raise BMInputError(key, f"is {getattr(self, key)}.", "use a multiple of 16 (of 32 for Wan2.2-TI2V-5B).")
        if self.split not in SPLITS:
            raise BMInputError("split", f"is {self.split!r}.", f"use one of {', '.join(SPLITS)}.")
        if self.channel not in (1, 2):
            raise BMInputError("channel", f"is {self.channel}.", "use 1 (left) or 2 (right).")
        for key in ("min_speech", "min_face", "max_second_face"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise BMInputError(key.replace("_", "-"), f"is {getattr(self, key)}.", "use a share of frames in 0..1.")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def run_folder(name: str) -> Path:
    """``<ComfyUI output>/bm_prepare/<name>``."""
    import folder_paths

    return Path(folder_paths.get_output_directory()) / RUNS_FOLDER / name


def shard_folder(name: str) -> Path:
    """``models/bm_training_sets/<name>`` (the first folder ComfyUI lists for ``bm_training_sets``)."""
    import folder_paths

    if SET_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[SET_FOLDER] = ([os.path.join(folder_paths.models_dir, SET_FOLDER)], {".safetensors"})
    return Path(folder_paths.get_folder_paths(SET_FOLDER)[0]) / name


def model_path(folder: str, name: str, key: str) -> str:
    """Full path of ``name`` in ComfyUI's ``folder``.

    Raises:
        BMInputError: (``key``) no such file.
    """
    import folder_paths

    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None:
        raise BMInputError(key, f"{name!r} is not in models/{folder} ({', '.join(folder_paths.get_folder_paths(folder))}).",
                           f"put the file in models/{folder} or fix the name.")
    return path


def write_atomic(path: Path, write) -> None:
    """``write(temporary path)``, then ``os.replace`` onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    """JSON written atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1), encoding="utf-8"))


def check_options(folder: Path, options: PrepareOptions) -> bool:
    """Write ``options.json`` (returns False), or check that a resumed run has the same options (returns True).

    Raises:
        BMInputError: naming the first option that differs from the run's ``options.json``.
    """
    saved = folder / "options.json"
    now = options.to_dict()
    if saved.is_file():
        before = json.loads(saved.read_text(encoding="utf-8"))
        for key, value in now.items():
            if before.get(key) != value:
                raise BMInputError(key.replace("_", "-"), f"is {value!r} but run {options.name!r} was prepared with "
                                   f"{before.get(key)!r} ({saved}).",
                                   f"pass {before.get(key)!r} to continue that run, or use a new --name.")
        return True
    write_json(saved, now)
    return False


def save_prompt_context(path: Path, context: torch.Tensor, prompt: str, text_encoder: str) -> None:
    """Store the prompt's text context ``[L, D]`` (with the prompt and encoder file name) atomically."""
    meta = {"prompt": prompt, "text_encoder": text_encoder}
    write_atomic(path, lambda p: save_file({"context": context.float().contiguous()}, str(p), metadata=meta))


def load_prompt_context(path: Path, prompt: str, text_encoder: str) -> torch.Tensor | None:
    """The stored context when it was made from ``prompt`` with ``text_encoder``, else None."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("prompt") != prompt or meta.get("text_encoder") != text_encoder:
            return None
        return f.get_tensor("context")


def encode_prompt(text_encoder: str, prompt: str) -> torch.Tensor:
    """``[L, 4096]`` float32 context of ``prompt`` with ComfyUI's CLIPLoader path (type ``wan``) and CLIP Text Encode."""
    import comfy.model_management
    import comfy.sd
    import folder_paths

    clip = comfy.sd.load_clip(ckpt_paths=[model_path("text_encoders", text_encoder, "text-encoder")],
                              embedding_directory=folder_paths.get_folder_paths("embeddings"), clip_type=comfy.sd.CLIPType.WAN)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    context = cond[0][0][0].float().cpu().clone()
    del clip, cond
    comfy.model_management.unload_all_models()  # the text encoder is not needed again in this run
    return context


def prompt_context(folder: Path, options: PrepareOptions) -> torch.Tensor:
    """The run's text context: ``prompt.safetensors`` of the run folder, or encoded now and stored there."""
    path = folder / "prompt.safetensors"
    context = load_prompt_context(path, options.prompt, options.text_encoder)
    if context is None:
        context = encode_prompt(options.text_encoder, options.prompt)
        save_prompt_context(path, context, options.prompt, options.text_encoder)
    return context


def marker_path(folder: Path, job: VideoJob) -> Path:
    """The done marker of ``job`` in the run folder."""
    return folder / "videos" / f"{job.name}.json"


def is_done(folder: Path, job: VideoJob, shards: Path) -> bool:
    """A marker exists, and the shard it names too."""
    marker = marker_path(folder, job)
    if not marker.is_file():
        return False
    entry = json.loads(marker.read_text(encoding="utf-8"))
    return entry.get("shard") is None or (shards.parent / entry["shard"]).is_file()
