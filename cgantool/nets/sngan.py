"""SNGAN ResNet generator and spectral-norm ResNet discriminator, as Mimicry builds them (methods.md).

Paper-width parameter counts (unconditional): 32 px G 4,276,739 / D 1,053,825; 48 px G 4,878,083 /
D 10,141,441; 64 px G 12,220,675 / D 10,141,441; 128 px G 32,150,787 / D 29,017,857.

Mimicry quirk, kept on purpose (it produced InfoMax-GAN's numbers): a DBlock starts with an in-place ReLU,
so its shortcut, and the local features read from its input, see ReLU(x) rather than x.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import (
    ClassConditionalBN,
    DiscOutput,
    SelfAttention,
    conv,
    embed_labels,
    init_xavier,
    linear,
    sn,
)

# resolution → (bottom size, G channel multipliers per block input, D channel multipliers, D downsampling)
_G_LAYOUT = {
    16: (4, [1, 1, 1]),
    32: (4, [1, 1, 1, 1]),
    48: (6, [1, 1 / 2, 1 / 4, 1 / 8]),
    64: (4, [1, 1 / 2, 1 / 4, 1 / 8, 1 / 16]),
    128: (4, [1, 1, 1 / 2, 1 / 4, 1 / 8, 1 / 16]),
}
_G_WIDTH = {16: 256, 32: 256, 48: 512, 64: 1024, 128: 1024}
_D_LAYOUT = {  # channels (as fractions of ndf) after each block, and whether each block downsamples
    16: ([1, 1, 1, 1], [True, True, False, False]),
    32: ([1, 1, 1, 1], [True, True, False, False]),
    48: ([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1], [True, True, True, True, False]),
    64: ([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1], [True, True, True, True, False]),
    128: ([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 1], [True, True, True, True, True, False]),
}
_D_WIDTH = {16: 128, 32: 128, 48: 1024, 64: 1024, 128: 1024}
RESOLUTIONS = tuple(sorted(_G_LAYOUT))


def _check_resolution(resolution: int) -> None:
    if resolution not in _G_LAYOUT:
        from cgantool.errors import ConfigError

        raise ConfigError(f"the sngan backbone has no {resolution} px layout",
                          hint=f"use data.resolution in {', '.join(map(str, RESOLUTIONS))}")


class GBlock(nn.Module):
    """BN → ReLU → up x2 → conv3x3 → BN → ReLU → conv3x3, plus shortcut up x2 → conv1x1."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0, upsample: str = "bilinear"):
        super().__init__()
        self.upsample = upsample
        self.b1 = ClassConditionalBN(cin, num_classes) if num_classes else nn.BatchNorm2d(cin)
        self.c1 = conv(cin, cout, 3)
        self.b2 = ClassConditionalBN(cout, num_classes) if num_classes else nn.BatchNorm2d(cout)
        self.c2 = conv(cout, cout, 3)
        self.c_sc = conv(cin, cout, 1)
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        init_xavier(self.c_sc, 1.0)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def _bn(self, bn: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return bn(x, y) if isinstance(bn, ClassConditionalBN) else bn(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(self._up(F.relu(self._bn(self.b1, x, y))))
        h = self.c2(F.relu(self._bn(self.b2, h, y)))
        return h + self.c_sc(self._up(x))


class SNGANGenerator(nn.Module):
    """z ~ N(0, I) → Linear → (ngf, bottom, bottom) → GBlocks → BN → ReLU → conv3x3 → tanh. No SN in G."""

    def __init__(self, resolution: int = 32, z_dim: int = 128, channels: int | None = None, num_classes: int = 0,
                 self_attention: bool = False, upsample: str = "bilinear"):
        super().__init__()
        _check_resolution(resolution)
        self.resolution, self.z_dim, self.num_classes = resolution, z_dim, num_classes
        ngf = channels or _G_WIDTH[resolution]
        self.bottom, mults = _G_LAYOUT[resolution]
        chans = [max(1, int(ngf * m)) for m in mults]  # block i maps chans[i] → chans[i + 1]
        self.l1 = linear(z_dim, self.bottom * self.bottom * chans[0])
        self.blocks = nn.ModuleList(GBlock(chans[i], chans[i + 1], num_classes, upsample) for i in range(len(chans) - 1))
        # optional self-attention at the middle resolution (after the block that reaches resolution / 2)
        self.attn_after = len(self.blocks) - 2 if self_attention else -1
        self.attn = SelfAttention(chans[self.attn_after + 1], use_sn=False) if self_attention else None
        self.b_out = nn.BatchNorm2d(chans[-1])
        self.c_out = conv(chans[-1], 3, 3)
        init_xavier(self.l1, 1.0)
        init_xavier(self.c_out, 1.0)
        self._first_channels = chans[0]

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.l1(z).view(z.shape[0], self._first_channels, self.bottom, self.bottom)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.attn_after:
                h = self.attn(h)
        return torch.tanh(self.c_out(F.relu(self.b_out(h))))


class DBlockOptimized(nn.Module):
    """First D block: conv3x3 → ReLU → conv3x3 → avgpool; shortcut avgpool → conv1x1. All SN."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.c1, self.c2, self.c_sc = sn(conv(cin, cout, 3)), sn(conv(cout, cout, 3)), sn(conv(cin, cout, 1))
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    """Pre-activation D block: ReLU → conv3x3 (cin→cin) → ReLU → conv3x3 (cin→cout) (→ avgpool).

    Shortcut conv1x1 only when channels change or the block downsamples. Input is ReLU'd first for both
    branches (Mimicry's in-place ReLU).
    """

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.c1, self.c2 = sn(conv(cin, cin, 3)), sn(conv(cin, cout, 3))
        self.c_sc = sn(conv(cin, cout, 1)) if (cin != cout or downsample) else None
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        if self.c_sc is not None:
            init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        h = self.c2(F.relu(self.c1(x)))
        sc = self.c_sc(x) if self.c_sc is not None else x
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class SNGANDiscriminator(nn.Module):
    """Optimized block, DBlocks, ReLU → global sum pool → SN-Linear; projection term when num_classes > 0."""

    def __init__(self, resolution: int = 32, channels: int | None = None, num_classes: int = 0,
                 self_attention: bool = False):
        super().__init__()
        _check_resolution(resolution)
        ndf = channels or _D_WIDTH[resolution]
        mults, downs = _D_LAYOUT[resolution]
        chans = [max(1, int(ndf * m)) for m in mults]
        blocks: list[nn.Module] = [DBlockOptimized(3, chans[0])]
        blocks += [DBlock(chans[i - 1], chans[i], downs[i]) for i in range(1, len(chans))]
        self.blocks = nn.ModuleList(blocks)
        self.attn = SelfAttention(chans[0], use_sn=True) if self_attention else None
        self.l_out = sn(linear(chans[-1], 1))
        init_xavier(self.l_out, 1.0)
        self.num_classes = num_classes
        self.embed = sn(nn.Embedding(num_classes, chans[-1])) if num_classes else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.parametrizations.weight.original)
        self.feature_dims = {"h": chans[-1], "local": chans[-2]}

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiscOutput:
        h = x
        for i, block in enumerate(self.blocks[:-1]):
            h = block(h)
            if i == 0 and self.attn is not None:
                h = self.attn(h)
        local = F.relu(h)  # what the last block sees (Mimicry: in-place ReLU)
        h = F.relu(self.blocks[-1](local)).sum(dim=(2, 3))  # [B, C]
        logits = self.l_out(h).squeeze(1)
        if self.embed is not None and y is not None:
            logits = logits + (embed_labels(self.embed, y) * h).sum(1)
        return DiscOutput(logits=logits, h=h, local=local)
