"""The metric networks' files: names, the ComfyUI folder, loading from safetensors, and what to say
when a file is missing.

Both files live in ComfyUI's ``models/bm_evaluation`` folder (``folder_paths`` key ``bm_evaluation``,
registered by ``nodes/evaluate.py``; the command takes the ComfyUI models folder). They are made
once from the public checkpoints by ``python -m beyond_monologue.evaluate convert`` (see
:mod:`.convert`); the manifest (``weights_manifest/manifest.json``, ids ``syncnet_v2`` and
``facenet_vggface2``) names their public sources.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .identity import face_embedder_from_state_dict
from .syncnet import SyncNet, syncnet_from_state_dict

FOLDER = "bm_evaluation"
SYNCNET_FILE = "syncnet_v2.safetensors"
FACENET_FILE = "facenet_vggface2.safetensors"
PUBLIC_SOURCES = {
    SYNCNET_FILE: ("syncnet", "syncnet_v2.model",
                   "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model "
                   "(joonson/syncnet_python download_model.sh)"),
    FACENET_FILE: ("facenet", "20180402-114759-vggface2.pt",
                   "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"),
}


class MetricWeightsUnavailable(Exception):
    """A metric's weights file is missing or unusable; ``str()`` says which file, which folder, where from."""


def how_to_get(filename: str) -> str:
    """One sentence: where the public file comes from and the command that converts it into the folder."""
    kind, public_name, url = PUBLIC_SOURCES[filename]
    return (f"download {public_name} from {url}, then run `python -m beyond_monologue.evaluate convert {kind} "
            f"{public_name} ComfyUI/models/{FOLDER}/{filename}` in the pack's folder (read once, offline, "
            "with weights_only=True).")


def missing(filename: str, searched: str) -> MetricWeightsUnavailable:
    """The unavailability reason for a file not found in ``searched`` (a folder description)."""
    return MetricWeightsUnavailable(f"{filename} is not in {searched}: {how_to_get(filename)}")


def _load(path: Path, build, filename: str):
    try:
        return build(load_file(str(path), device="cpu"))
    except (ValueError, OSError, RuntimeError, SafetensorError) as error:
        raise MetricWeightsUnavailable(f"{path} cannot be used ({error}); replace it: {how_to_get(filename)}") from error


def load_syncnet(path: Path) -> SyncNet:
    """SyncNet (eval, float32, CPU) from a converted safetensors file.

    Raises:
        MetricWeightsUnavailable: unreadable file or not the SyncNet v2 layout.
    """
    return _load(Path(path), syncnet_from_state_dict, SYNCNET_FILE)


def load_face_embedder(path: Path) -> torch.nn.Module:
    """facenet-pytorch InceptionResnetV1 (eval, float32, CPU) from a converted safetensors file.

    Raises:
        MetricWeightsUnavailable: unreadable file or not the InceptionResnetV1 layout.
    """
    return _load(Path(path), face_embedder_from_state_dict, FACENET_FILE)
