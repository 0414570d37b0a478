"""Pretrained ImageNet encoders for XMC-GAN's image–image term: torchvision ResNet-50 / VGG-16 logits.

The official code uses the 1000 ImageNet logits of a ResNet-50 (the paper says VGG). Nothing is downloaded at
run time: the weights must already be in torch hub's cache (``$TORCH_HOME/hub/checkpoints``, where
``torchvision.models.resnet50(weights=...)`` puts them when online). The file is read with
``torch.load(weights_only=True)``: tensors only, no code from the file runs.

Input preprocessing, against the official ``get_pretrained_embs``: the same resize — bilinear to 224 x 224, the
whole image (no crop, the aspect ratio as it is), antialiased when shrinking (``jax.image.resize``'s default;
256 px images shrink, 128 px ones grow and the antialiasing changes nothing) — and the same [0, 1] range
(cgantool's [-1, 1] images mapped by (x + 1) / 2). One difference: the official net is the authors' own
ResNet-50 (``resnet_pretrained.npy``) fed [0, 1] pixels with no normalisation, while torchvision's ImageNet
weights were trained on ImageNet mean/std-normalised inputs, so those are applied here after the resize
(feeding them raw [0, 1] pixels would shift every BN statistic they rely on).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.errors import OfflineError

WEIGHT_FILES = {  # torchvision's IMAGENET1K_V1 files
    "resnet50": ("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
    "vgg16": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_path(name: str) -> Path:
    return hub_dir() / WEIGHT_FILES[name][0]


def missing_weights_warning() -> str:
    """The one line training prints when ``loss.xmc.image_encoder = 'auto'`` finds no weights."""
    name, url = WEIGHT_FILES["resnet50"]
    return (f"no ResNet-50/VGG16 ImageNet weights found in {hub_dir()}: XMC-GAN's pretrained image-image term is off; "
            f"put torchvision's {name} ({url}) there (or set TORCH_HOME), or set loss.xmc.image_encoder = 'none' "
            "to silence this")


def resolve_image_encoder(setting: str) -> str:
    """'auto' → the first of resnet50, vgg16 whose weights are present, else 'none'; a named encoder
    whose weights are missing → OfflineError naming the file and where to put it."""
    if setting == "none":
        return setting
    if setting == "auto":
        return next((name for name in WEIGHT_FILES if weights_path(name).is_file()), "none")
    path = weights_path(setting)
    if not path.is_file():
        raise OfflineError(
            f"loss.xmc.image_encoder = '{setting}' but its ImageNet weights are not at {path}",
            hint=f"download {WEIGHT_FILES[setting][1]} to that path (or set TORCH_HOME), "
            "or set loss.xmc.image_encoder = 'none'",
        )
    return setting


class PretrainedImageEncoder(nn.Module):
    """Frozen torchvision classifier: images in [-1, 1] → [0, 1] → bilinear (antialiased) 224 px → ImageNet
    mean/std normalisation → logits (see the module docstring for how this compares with the official code)."""

    def __init__(self, name: str):
        super().__init__()
        import torchvision

        self.name = name
        self.net = getattr(torchvision.models, name)(weights=None)
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> PretrainedImageEncoder:  # always eval: frozen BN statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate((x + 1) / 2, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        return self.net((x - self.mean) / self.std)
