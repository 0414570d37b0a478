"""Layers shared by the backbones: spectral-norm factories, conditional BN, self-attention, label embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module) -> nn.Module:
    """Spectral normalisation with one power iteration per training forward (Miyato et al. 2018)."""
    return spectral_norm(module, n_power_iterations=1, eps=1e-6)


def conv(cin: int, cout: int, k: int = 3, use_sn: bool = False, bias: bool = True) -> nn.Module:
    layer = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
    return sn(layer) if use_sn else layer


def linear(cin: int, cout: int, use_sn: bool = False, bias: bool = True) -> nn.Module:
    layer = nn.Linear(cin, cout, bias=bias)
    return sn(layer) if use_sn else layer


def embed_labels(table: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Look up ``y`` in an embedding: int labels [B] → rows; soft labels [B, C] (class mixtures) → y @ table.

    Soft labels are how class interpolation mixes conditioning at fixed z.
    """
    weight = table.weight  # [C, D] (spectral-normalised if the table is SN)
    if y.dtype.is_floating_point:
        return y.to(weight.dtype) @ weight
    return F.embedding(y, weight)


def weight_of(module: nn.Module) -> torch.Tensor:
    """The (possibly parametrised) weight tensor of a layer; used for custom init."""
    if hasattr(module, "parametrizations"):
        return module.parametrizations.weight.original
    return module.weight


def init_xavier(module: nn.Module, gain: float) -> None:
    nn.init.xavier_uniform_(weight_of(module), gain)


def init_orthogonal(root: nn.Module) -> None:
    """BigGAN / StudioGAN init: orthogonal weights for every conv, linear and embedding."""
    for m in root.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(weight_of(m))
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class ClassConditionalBN(nn.Module):
    """BN without affine, then a per-class gain (init 1) and bias (init 0): SNGAN-projection / Mimicry cGAN."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = embed_labels(self.gain, y)[:, :, None, None]
        bias = embed_labels(self.bias, y)[:, :, None, None]
        return self.bn(x) * gain + bias


class LinearConditionalBN(nn.Module):
    """BigGAN's conditional BN: BN(x) · (1 + W_g c) + W_b c, with c a conditioning vector (eps 1e-4)."""

    def __init__(self, channels: int, cond_dim: int, use_sn: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=1e-4)
        self.gain = linear(cond_dim, channels, use_sn=use_sn, bias=False)
        self.bias = linear(cond_dim, channels, use_sn=use_sn, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention (BigGAN form): theta/phi C→C/8, g C→C/2 with 2x2 max-pool on phi and g,
    output conv C/2→C, scaled by a learned gamma that starts at 0."""

    def __init__(self, channels: int, use_sn: bool = True):
        super().__init__()
        self.theta = conv(channels, channels // 8, 1, use_sn, bias=False)
        self.phi = conv(channels, channels // 8, 1, use_sn, bias=False)
        self.g = conv(channels, channels // 2, 1, use_sn, bias=False)
        self.out = conv(channels // 2, channels, 1, use_sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [B, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [B, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [B, C/2, HW/4]
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, HW, HW/4]
        o = (g @ attn.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.gamma * self.out(o)


def num_up_blocks(resolution: int, bottom: int) -> int:
    n = math.log2(resolution / bottom)
    if n != int(n) or n < 1:
        raise ValueError(f"resolution {resolution} is not bottom {bottom} times a power of two")
    return int(n)


from dataclasses import dataclass  # noqa: E402


@dataclass
class DiscOutput:
    """What every discriminator returns; contrastive terms read the features they need."""

    logits: torch.Tensor  # [B] adversarial logit (projection term included for a projection D)
    h: torch.Tensor  # [B, C] sum-pooled ReLU features after the last block
    local: torch.Tensor | None = None  # [B, C_l, H_l, W_l] output of all blocks but the last
