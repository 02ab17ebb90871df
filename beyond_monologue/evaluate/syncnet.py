"""The SyncNet audio-visual synchronisation network, written from the public architecture.

Source: joonson/syncnet_python ``SyncNetModel.py`` (class ``S``), the network behind LSE-C/LSE-D
(Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV 2016 workshops; the metrics
named in Prajwal et al., Wav2Lip, ACM MM 2020). The layer list and the sub-module names
(``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip`` with the same ``nn.Sequential`` indices) are
the public ones so that the public ``syncnet_v2.model`` state dict loads key for key after
conversion (:mod:`.convert`). Weights are read from safetensors only.
"""

from __future__ import annotations

import torch
from torch import nn

EMBED_DIM = 1024
# Audio input: 13 MFCC x 20 frames (0.2 s at 100 Hz); video input: 5 frames of 224 x 224 BGR face crops.
MFCC_BINS = 13
AUDIO_WINDOW = 20
VIDEO_WINDOW = 5
CROP_SIZE = 224


def _conv_bn_relu2d(c_in: int, c_out: int, kernel, padding) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=(1, 1), padding=padding),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _conv_bn_relu3d(c_in: int, c_out: int, kernel, stride, padding) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding),
            nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """SyncNet v2: an audio tower and a lip tower embedding 0.2 s of each into a shared space.

    ``forward_audio``: ``[B, 1, 13, 20]`` float32 MFCC (13 coefficients x 20 frames at 100 Hz) ->
    ``[B, 1024]``. ``forward_lips``: ``[B, 3, 5, 224, 224]`` float32 BGR pixel values 0..255 (5 video
    frames at 25 fps) -> ``[B, 1024]``. In sync, the two embeddings of the same 0.2 s are close in
    Euclidean distance. Run in ``eval()`` mode (BatchNorm running statistics), as the public code does.
    """

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu2d(1, 64, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            *_conv_bn_relu2d(64, 192, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            *_conv_bn_relu2d(192, 384, (3, 3), (1, 1)),
            *_conv_bn_relu2d(384, 256, (3, 3), (1, 1)),
            *_conv_bn_relu2d(256, 256, (3, 3), (1, 1)), nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            *_conv_bn_relu2d(256, 512, (5, 4), (0, 0)),
        )
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu3d(3, 96, (5, 7, 7), (1, 2, 2), 0),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_conv_bn_relu3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_conv_bn_relu3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu3d(256, 512, (1, 6, 6), 1, 0),
        )

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 13, 20]`` MFCC windows -> ``[B, 1024]`` audio embeddings."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lips(self, crops: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 5, 224, 224]`` BGR 0..255 face-crop windows -> ``[B, 1024]`` lip embeddings."""
        return self.netfclip(self.netcnnlip(crops).flatten(1))


def is_optional_key(key: str) -> bool:
    """BatchNorm ``num_batches_tracked`` counters: absent from checkpoints saved by old PyTorch, unused in eval."""
    return key.endswith("num_batches_tracked")


def syncnet_from_state_dict(state_dict: dict[str, torch.Tensor]) -> SyncNet:
    """A float32 :class:`SyncNet` in eval mode with these weights (public key layout).

    Raises:
        ValueError: a key is missing or unexpected, or a tensor has the wrong shape (the message lists them).
    """
    model = SyncNet()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not is_optional_key(k)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(f"not a SyncNet v2 state dict: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shape {wrong[:5]}")
    model.load_state_dict({**expected, **{k: v.float() if v.is_floating_point() else v
                                          for k, v in state_dict.items()}})
    return model.eval()


def smoke_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random SyncNet weights in the exact public key layout (float32, no ``num_batches_tracked``
    like the public file), for tests only, never for measuring. Convolutions and linears are
    He-initialised from ``seed``; BatchNorm running statistics are then measured on random inputs
    of the real ranges (pixels 0..255, MFCC of unit-scale noise) so that embeddings have a sane scale."""
    generator = torch.Generator().manual_seed(seed)
    model = SyncNet()
    with torch.no_grad():
        for name, value in model.named_parameters():
            if value.ndim > 1:
                value.copy_(torch.randn(value.shape, generator=generator) * (2.0 / value[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                value.copy_(1.0 + 0.1 * torch.randn(value.shape, generator=generator))
            else:
                value.copy_(0.1 * torch.randn(value.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = None  # cumulative average over the calibration pass
        model.train()
        model.forward_lips(torch.rand(4, 3, VIDEO_WINDOW, CROP_SIZE, CROP_SIZE, generator=generator) * 255)
        model.forward_audio(20 * torch.randn(8, 1, MFCC_BINS, AUDIO_WINDOW, generator=generator))
        for head in (model.netfcaud, model.netfclip):  # embeddings of norm ~10, distances like the real ones
            head[3].weight.mul_(0.1)
            head[3].bias.mul_(0.1)
    return {k: v.clone() for k, v in model.state_dict().items() if not is_optional_key(k)}
