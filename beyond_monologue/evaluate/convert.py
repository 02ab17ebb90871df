"""Public metric checkpoints -> safetensors, once, offline (``python -m beyond_monologue.evaluate convert``).

The public files are PyTorch pickles: ``syncnet_v2.model`` (joonson/syncnet_python
``download_model.sh``; a state dict in the ``SyncNetModel.S`` key layout) and
``20180402-114759-vggface2.pt`` (facenet-pytorch's VGGFace2 InceptionResnetV1 state dict, with an
8631-class ``logits`` layer). They are read here with ``torch.load(weights_only=True)`` (tensors and
plain containers only, no code), checked against the pack's networks key for key, and written as
float32 safetensors; nodes and the command read only the safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .identity import face_embedder_from_state_dict
from .syncnet import syncnet_from_state_dict

KINDS = {
    "syncnet": "syncnet_v2.safetensors",
    "facenet": "facenet_vggface2.safetensors",
}


def _state_dict(loaded: object, source: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{source} does not hold a state dict (a mapping of names to tensors)")
    return dict(loaded)


def convert_checkpoint(source: Path, destination: Path, kind: str) -> Path:
    """Read a public checkpoint once with ``weights_only=True`` and write the pack's safetensors.

    Args:
        source: the public file (``syncnet_v2.model`` or ``20180402-114759-vggface2.pt``).
        destination: the ``.safetensors`` file to write (its folder is created).
        kind: ``"syncnet"`` or ``"facenet"``.

    Returns:
        ``destination``.

    Raises:
        ValueError: unknown kind, not a state dict, or keys/shapes that are not the expected network.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    state = _state_dict(torch.load(Path(source), map_location="cpu", weights_only=True), Path(source))
    if kind == "syncnet":
        model = syncnet_from_state_dict(state)
        keep = [k for k in model.state_dict() if k in state]
    else:
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the VGGFace2 classifier
        model = face_embedder_from_state_dict(state)
        keep = list(model.state_dict())
    tensors = {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in model.state_dict().items() if k in keep}
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(destination), metadata={"bm_format": kind, "bm_source": Path(source).name})
    return destination
