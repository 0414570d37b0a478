"""Building blocks shared by the backbones (SNGAN, BigGAN, and later XMC-GAN).

- factories for plain or spectral-normalised conv / linear / embedding layers (``sn``, ``conv``, ``linear``,
  ``embedding``);
- norms with one calling convention, ``norm(x, cond)``: plain BN (``BatchNorm``), per-class BN
  (``ClassConditionalBN``, SNGAN-projection / Mimicry cGAN-PD) and BN modulated by a vector
  (``LinearConditionalBN``, BigGAN / StudioGAN / XMC-GAN);
- SAGAN self-attention in its BigGAN form (``SelfAttention``);
- the residual blocks: ``GBlock`` (up), ``DBlockOptimized`` (first D block), ``DBlock`` (pre-activation D block);
- ``DiscOutput``, what every discriminator returns.

Every D block follows the official code's in-place ReLU: Mimicry's ``nn.ReLU(True)`` and StudioGAN's
``nn.ReLU(inplace=True)`` both overwrite the block input before the shortcut reads it, so the shortcut sees
ReLU(x) (``relu_shortcut=True``, the default). Chainer SNGAN's and XMC-GAN's shortcut sees the raw x
(``relu_shortcut=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from cgantool.errors import ConfigError

SN_EPS_MIMICRY = 1e-12  # torch.nn.utils.spectral_norm's default, which Mimicry uses
SN_EPS_STUDIOGAN = 1e-6  # StudioGAN's snconv2d / snlinear / sn_embedding


# ---------------------------------------------------------------------------------------------- layers


def sn(module: nn.Module, eps: float = SN_EPS_MIMICRY) -> nn.Module:
    """Spectral normalisation W / sigma(W) with one power iteration per training forward (Miyato et al. 2018).

    ``torch.nn.utils.parametrizations.spectral_norm``: the weight to train is
    ``module.parametrizations.weight.original``; u and v are buffers, so they do not count as parameters.
    """
    return spectral_norm(module, n_power_iterations=1, eps=eps)


def conv(cin: int, cout: int, k: int = 3, use_sn: bool = False, bias: bool = True,
         sn_eps: float = SN_EPS_MIMICRY) -> nn.Module:
    """k x k convolution, stride 1, 'same' padding (k // 2); spectral-normalised if ``use_sn``."""
    layer = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
    return sn(layer, sn_eps) if use_sn else layer


def linear(cin: int, cout: int, use_sn: bool = False, bias: bool = True, sn_eps: float = SN_EPS_MIMICRY) -> nn.Module:
    """Fully connected layer; spectral-normalised if ``use_sn``."""
    layer = nn.Linear(cin, cout, bias=bias)
    return sn(layer, sn_eps) if use_sn else layer


def embedding(num: int, dim: int, use_sn: bool = False, sn_eps: float = SN_EPS_MIMICRY) -> nn.Module:
    """Lookup table [num, dim]; spectral-normalised if ``use_sn`` (projection D, ContraGAN proxies)."""
    layer = nn.Embedding(num, dim)
    return sn(layer, sn_eps) if use_sn else layer


def embed_labels(table: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Rows of an embedding for labels: int labels [B] → table[y] [B, D]; soft labels [B, C] → y @ table [B, D].

    Soft labels (class mixtures, rows summing to 1) are how class interpolation mixes conditioning at fixed z;
    a one-hot row gives exactly the integer label's row. The (spectral-normalised) weight is read once.
    """
    weight = table.weight  # [C, D]
    if y.dtype.is_floating_point:
        return y.to(weight.dtype) @ weight
    return F.embedding(y, weight)


def weight_of(module: nn.Module) -> torch.Tensor:
    """The trainable weight of a layer: the original weight under a spectral-norm parametrisation."""
    if hasattr(module, "parametrizations") and hasattr(module.parametrizations, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def sync_spectral_norm(module: nn.Module) -> None:
    """Re-estimate u, v for a spectral-normalised layer whose weight was just re-initialised.

    Registering the parametrisation runs 15 power iterations on the weight of that moment; a later init leaves
    u, v pointing elsewhere, so sigma = u^T W v is a near-zero random number and an eval-mode forward of an
    untrained layer is scaled ~100x. Re-registering (public API) redoes the 15 iterations on the new weight.
    """
    if not parametrize.is_parametrized(module, "weight"):
        return
    sn_param = module.parametrizations.weight[0]
    eps, iters = sn_param.eps, getattr(sn_param, "n_power_iterations", 1)
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    spectral_norm(module, n_power_iterations=iters, eps=eps)


def init_xavier(module: nn.Module, gain: float) -> None:
    """Mimicry's init: Xavier-uniform weight with ``gain`` (bias left at PyTorch's default)."""
    nn.init.xavier_uniform_(weight_of(module), gain)
    sync_spectral_norm(module)


def init_orthogonal(root: nn.Module) -> None:
    """StudioGAN's ``init_weights(..., "ortho")``: orthogonal weights and zero biases for every conv and linear,
    orthogonal tables for every embedding; norms untouched."""
    for m in list(root.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(weight_of(m))
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
            sync_spectral_norm(m)


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """[B, C, H, W] → [B, C, 2H, 2W]; 'bilinear' (align_corners=False, Mimicry) or 'nearest' (Chainer, BigGAN)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


UPSAMPLE_MODES = ("bilinear", "nearest")


def check_upsample(mode: str) -> None:
    if mode not in UPSAMPLE_MODES:
        raise ConfigError(f"unknown upsampling mode '{mode}'", hint=f"use one of {', '.join(UPSAMPLE_MODES)}")


# ----------------------------------------------------------------------------------------------- norms
# Every generator norm is called as norm(x, cond); cond is ignored, a label tensor, or a vector.

NormFactory = Callable[[int], nn.Module]  # channels → norm module


class BatchNorm(nn.BatchNorm2d):
    """Plain (affine) BatchNorm2d that accepts and ignores a conditioning argument."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


class ClassConditionalBN(nn.Module):
    """BN(x) · gain[y] + bias[y], BN without affine (Mimicry ``ConditionalBatchNorm2d``, SNGAN-projection).

    gain starts at N(1, 0.02), bias at 0, as in Mimicry. ``y``: int labels [B] or soft labels [B, classes].
    """

    def __init__(self, channels: int, num_classes: int, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=eps)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = embed_labels(self.gain, y)[:, :, None, None]  # [B, C, 1, 1]
        bias = embed_labels(self.bias, y)[:, :, None, None]
        return self.bn(x) * gain + bias


class LinearConditionalBN(nn.Module):
    """BigGAN's conditional BN: BN(x) · (1 + W_g c) + W_b c, BN without affine, c [B, cond_dim].

    StudioGAN ``BigGANConditionalBatchNorm2d``: both linears spectral-normalised and bias-free, BN eps 1e-4.
    """

    def __init__(self, channels: int, cond_dim: int, use_sn: bool = True, bias: bool = False, eps: float = 1e-4,
                 sn_eps: float = SN_EPS_STUDIOGAN):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=eps)
        self.gain = linear(cond_dim, channels, use_sn=use_sn, bias=bias, sn_eps=sn_eps)
        self.bias = linear(cond_dim, channels, use_sn=use_sn, bias=bias, sn_eps=sn_eps)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(c))[:, :, None, None]  # [B, C, 1, 1]
        return self.bn(x) * gain + self.bias(c)[:, :, None, None]


# ------------------------------------------------------------------------------------------- attention


class SelfAttention(nn.Module):
    """SAGAN self-attention in BigGAN's form (Mimicry and StudioGAN ``SelfAttention``), x [B, C, H, W]:

        theta = conv1x1_{C→C/8}(x)                       [B, C/8, HW]
        phi   = maxpool2(conv1x1_{C→C/8}(x))             [B, C/8, HW/4]
        g     = maxpool2(conv1x1_{C→C/2}(x))             [B, C/2, HW/4]
        a     = softmax_j(theta^T phi)                   [B, HW, HW/4]
        out   = x + gamma · conv1x1_{C/2→C}(g a^T)

    All convs bias-free; gamma starts at 0, so the block starts as the identity. H and W must be even.
    """

    def __init__(self, channels: int, use_sn: bool = True, sn_eps: float = SN_EPS_MIMICRY):
        super().__init__()
        c8, c2 = max(1, channels // 8), max(1, channels // 2)
        self.theta = conv(channels, c8, 1, use_sn, bias=False, sn_eps=sn_eps)
        self.phi = conv(channels, c8, 1, use_sn, bias=False, sn_eps=sn_eps)
        self.g = conv(channels, c2, 1, use_sn, bias=False, sn_eps=sn_eps)
        self.out = conv(c2, channels, 1, use_sn, bias=False, sn_eps=sn_eps)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [B, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [B, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [B, C/2, HW/4]
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, HW, HW/4]
        o = (g @ attn.transpose(1, 2)).view(b, -1, h, w)  # [B, C/2, H, W]
        return x + self.gamma * self.out(o)


# ---------------------------------------------------------------------------------------------- blocks


class GBlock(nn.Module):
    """Generator up-block: norm1(x, c) → ReLU → up x2 → conv3x3 → norm2(·, c) → ReLU → conv3x3,
    plus the shortcut up x2 → conv1x1 (Mimicry ``GBlock`` with upsample=True; StudioGAN ``GenBlock``).

    x [B, cin, H, W] → [B, cout, 2H, 2W]. ``norm`` builds the norm for a channel count. Init (Mimicry): Xavier
    uniform, gain sqrt(2) on the residual convs, 1 on the shortcut; BigGAN re-initialises orthogonally.
    """

    def __init__(self, cin: int, cout: int, norm: NormFactory, upsample: str = "bilinear", use_sn: bool = False,
                 sn_eps: float = SN_EPS_MIMICRY):
        super().__init__()
        check_upsample(upsample)
        self.upsample = upsample
        self.b1 = norm(cin)
        self.c1 = conv(cin, cout, 3, use_sn, sn_eps=sn_eps)
        self.b2 = norm(cout)
        self.c2 = conv(cout, cout, 3, use_sn, sn_eps=sn_eps)
        self.c_sc = conv(cin, cout, 1, use_sn, sn_eps=sn_eps)
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(upsample2x(F.relu(self.b1(x, cond)), self.upsample))  # [B, cout, 2H, 2W]
        h = self.c2(F.relu(self.b2(h, cond)))
        return h + self.c_sc(upsample2x(x, self.upsample))


class DBlockOptimized(nn.Module):
    """First D block: conv3x3 → ReLU → conv3x3 → avgpool2, plus the shortcut avgpool2 → conv1x1.

    x [B, cin, H, W] → [B, cout, H/2, W/2]. Init (Mimicry): Xavier, gain sqrt(2) residual, 1 shortcut.
    """

    def __init__(self, cin: int, cout: int, use_sn: bool = True, sn_eps: float = SN_EPS_MIMICRY):
        super().__init__()
        self.c1 = conv(cin, cout, 3, use_sn, sn_eps=sn_eps)
        self.c2 = conv(cout, cout, 3, use_sn, sn_eps=sn_eps)
        self.c_sc = conv(cin, cout, 1, use_sn, sn_eps=sn_eps)
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    """Pre-activation D block: ReLU → conv3x3 (cin→hidden) → ReLU → conv3x3 (hidden→cout) (→ avgpool2).

    Shortcut: conv1x1 (→ avgpool2) when the channels change or the block downsamples, else the identity.
    ``relu_shortcut`` (default True): the shortcut reads ReLU(x), as in Mimicry and StudioGAN whose in-place
    ReLU overwrites the block input; False: the raw x (Chainer SNGAN, XMC-GAN). ``hidden`` defaults to cin
    (Mimicry); StudioGAN's big_resnet uses cout.
    """

    def __init__(self, cin: int, cout: int, downsample: bool, hidden: int | None = None, use_sn: bool = True,
                 relu_shortcut: bool = True, sn_eps: float = SN_EPS_MIMICRY):
        super().__init__()
        hidden = cin if hidden is None else hidden
        self.downsample, self.relu_shortcut = downsample, relu_shortcut
        self.c1 = conv(cin, hidden, 3, use_sn, sn_eps=sn_eps)
        self.c2 = conv(hidden, cout, 3, use_sn, sn_eps=sn_eps)
        self.c_sc = conv(cin, cout, 1, use_sn, sn_eps=sn_eps) if (cin != cout or downsample) else None
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        if self.c_sc is not None:
            init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_act = F.relu(x)
        h = self.c2(F.relu(self.c1(x_act)))
        sc = x_act if self.relu_shortcut else x
        if self.c_sc is not None:
            sc = self.c_sc(sc)
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


# ---------------------------------------------------------------------------------------------- output


@dataclass
class DiscOutput:
    """What every discriminator returns; contrastive terms read the features they need."""

    logits: torch.Tensor  # [B] adversarial logit (projection term included for a projection D)
    h: torch.Tensor  # [B, C] sum-pooled ReLU features after the last block (input of the final linear)
    local: torch.Tensor | None = None  # [B, C_l, H_l, W_l] output of all blocks but the last; None if absent
    cond: torch.Tensor | None = None  # the projected condition when the D has one (XMC-GAN: Linear(sentence))


def layout_error(arch: str, resolution: int, supported: tuple[int, ...]) -> ConfigError:
    """The ConfigError for a resolution a backbone has no layout for."""
    return ConfigError(f"the {arch} backbone has no {resolution} px layout",
                       hint=f"use data.resolution in {', '.join(map(str, supported))}")
