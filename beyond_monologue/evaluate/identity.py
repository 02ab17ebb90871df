"""Identity similarity (CSIM): cosine similarity of face-recognition embeddings, reference vs frames.

Embedding network: facenet-pytorch's ``InceptionResnetV1`` (the library's own class, weights loaded
here from safetensors only) with the VGGFace2 weights facenet-pytorch publishes
(``20180402-114759-vggface2.pt``, converted by :mod:`.convert`): 160 x 160 face crops standardised as
``(x - 127.5) / 128``, a 512-d L2-normalised embedding, trained with a softmax classifier on VGGFace2.
Papers usually compute CSIM with ArcFace (InsightFace: a ResNet-100 trained with the additive angular
margin loss on MS1MV2, 112 x 112 crops aligned on 5 landmarks), so the numbers are on another scale
and not comparable to published CSIM values; compare renders with each other under the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..optional_deps import import_optional

FACENET_PACKAGE = "facenet-pytorch==2.6.0"
EMBED_SIZE = 160


def import_facenet():
    return import_optional("facenet_pytorch", FACENET_PACKAGE, "face detection and face embeddings (evaluation)")


def face_embedder_from_state_dict(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """facenet-pytorch's ``InceptionResnetV1`` (embedding mode, eval, float32) with these weights.

    Raises:
        ValueError: missing, unexpected or wrongly shaped keys (the classifier ``logits.*`` must be dropped).
    """
    model = import_facenet().InceptionResnetV1(pretrained=None, classify=False)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"not an InceptionResnetV1 state dict: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shape {wrong[:5]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    return model.eval()


def smoke_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random InceptionResnetV1 weights in the exact public layout, with the 8631-class ``logits`` layer
    of the VGGFace2 file (so the converter's dropping of it is exercised): for tests only. BatchNorm
    running statistics are measured on smooth random images so that embeddings depend on the face."""
    torch.manual_seed(seed)
    model = import_facenet().InceptionResnetV1(pretrained=None, classify=False)
    generator = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.interpolate(torch.randn(4, 3, 10, 10, generator=generator), size=96,
                                             mode="bilinear", align_corners=False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = None
        model.train()
        model(images)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["logits.weight"] = 0.01 * torch.randn(8631, 512, generator=generator)
    state["logits.bias"] = torch.zeros(8631)
    return state


def face_patches(frames: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """``[T, H, W, 3]`` RGB 0..1 frames and ``[T, 4]`` boxes -> ``[T, 3, 160, 160]`` standardised face
    crops, cut and resized by facenet-pytorch's ``extract_face`` (margin 0, its default) and scaled
    by its ``fixed_image_standardization``, as its MTCNN hands faces to InceptionResnetV1."""
    facenet = import_facenet()
    from facenet_pytorch.models.utils.detect_face import extract_face
    from PIL import Image

    patches = []
    for frame, box in zip(frames, boxes, strict=True):
        image = Image.fromarray((frame.clamp(0, 1) * 255).round().byte().cpu().numpy())
        patches.append(facenet.fixed_image_standardization(extract_face(image, box, EMBED_SIZE, 0)))
    return torch.stack(patches)


@dataclass
class IdentityResult:
    """CSIM of sampled frames against the reference portrait.

    Attributes:
        csim_mean / csim_min: mean and minimum cosine similarity (-1..1; 1 = same embedding).
        frames: the frame indices compared; ``per_frame``: their similarities.
    """

    csim_mean: float
    csim_min: float
    frames: list[int]
    per_frame: list[float]


@torch.no_grad()
def identity_similarity(embedder: torch.nn.Module, reference_patch: torch.Tensor, frame_patches: torch.Tensor,
                        frame_indices: list[int]) -> IdentityResult:
    """CSIM between one reference face ``[3, 160, 160]`` and frame faces ``[N, 3, 160, 160]`` (N >= 1)."""
    device = next(embedder.parameters()).device
    reference = embedder(reference_patch[None].to(device)).float().cpu()
    frames = embedder(frame_patches.to(device)).float().cpu()
    similarity = torch.nn.functional.cosine_similarity(frames, reference, dim=1)
    return IdentityResult(csim_mean=float(similarity.mean()), csim_min=float(similarity.min()),
                          frames=list(frame_indices), per_frame=similarity.tolist())
