"""BigGAN-style ResNet as PyTorch-StudioGAN's ``big_resnet`` builds it for ContraGAN (methods.md "ContraGAN").

G: z split into (blocks + 1) chunks; chunk 0 → SN-Linear → (C, 4, 4); every other chunk, concatenated with a
shared class embedding, drives one block's conditional BN; nearest upsampling; self-attention at half the
output resolution; SN everywhere; orthogonal init. D: optimized block, self-attention after it, DBlocks,
ReLU → sum pool → SN-Linear logit (projection term optional). 32 px, 10 classes: G 9,416,196 parameters;
D + 2C heads (d_embed 512) 2,517,186.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import (
    DiscOutput,
    LinearConditionalBN,
    SelfAttention,
    conv,
    embed_labels,
    init_orthogonal,
    linear,
    sn,
)

# StudioGAN big_resnet channel schedules, as multiples of conv_dim (96 at 32 px).
_G_IN = {16: [4, 4], 32: [4, 4, 4], 64: [16, 8, 4, 2], 128: [16, 16, 8, 4, 2]}
_G_OUT = {16: [4, 4], 32: [4, 4, 4], 64: [8, 4, 2, 1], 128: [16, 8, 4, 2, 1]}
_D_OUT = {16: [2, 2, 2, 2], 32: [2, 2, 2, 2], 64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16]}
_D_DOWN = {16: [True, True, False, False], 32: [True, True, False, False], 64: [True, True, True, True, False],
           128: [True, True, True, True, True, False]}
_WIDTH = {16: 96, 32: 96, 64: 64, 128: 64}


def _check(resolution: int) -> None:
    if resolution not in _G_IN:
        from cgantool.errors import ConfigError

        raise ConfigError(f"the biggan backbone has no {resolution} px layout",
                          hint=f"use data.resolution in {', '.join(map(str, sorted(_G_IN)))}")


class BigGANGenBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.bn1 = LinearConditionalBN(cin, cond_dim)
        self.conv1 = sn(conv(cin, cout, 3))
        self.bn2 = LinearConditionalBN(cout, cond_dim)
        self.conv2 = sn(conv(cout, cout, 3))
        self.conv_sc = sn(conv(cin, cout, 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class BigGANGenerator(nn.Module):
    def __init__(self, resolution: int = 32, z_dim: int = 80, channels: int | None = None, num_classes: int = 10,
                 shared_dim: int = 128):
        super().__init__()
        _check(resolution)
        self.resolution, self.z_dim, self.num_classes = resolution, z_dim, num_classes
        width = channels or _WIDTH[resolution]
        cin = [m * width for m in _G_IN[resolution]]
        cout = [m * width for m in _G_OUT[resolution]]
        n = len(cin) + 1
        self.chunks = [z_dim // n + (1 if i < z_dim % n else 0) for i in range(n)]
        cond = shared_dim if num_classes else 0
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        self.linear0 = sn(linear(self.chunks[0], cin[0] * 16))
        self.blocks = nn.ModuleList(BigGANGenBlock(cin[i], cout[i], self.chunks[i + 1] + cond) for i in range(len(cin)))
        self.attn_after = len(cin) - 2  # the block reaching resolution / 2
        self.attn = SelfAttention(cout[self.attn_after])
        self.bn_out = nn.BatchNorm2d(cout[-1])
        self.conv_out = sn(conv(cout[-1], 3, 3))
        self._c0 = cin[0]
        init_orthogonal(self)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        zs = torch.split(z, self.chunks, dim=1)
        conds = list(zs[1:])
        if self.shared is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass labels")
            shared = embed_labels(self.shared, y)
            conds = [torch.cat([shared, c], dim=1) for c in conds]
        h = self.linear0(zs[0]).view(z.shape[0], self._c0, 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h, conds[i])
            if i == self.attn_after:
                h = self.attn(h)
        return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))


class BigGANDiscOptBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2, self.conv_sc = sn(conv(cin, cout, 3)), sn(conv(cout, cout, 3)), sn(conv(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.conv_sc(F.avg_pool2d(x, 2))


class BigGANDiscBlock(nn.Module):
    """ReLU → conv → ReLU → conv (→ avgpool); shortcut (conv1x1 → avgpool) sees the raw input (StudioGAN)."""

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1, self.conv2 = sn(conv(cin, cout, 3)), sn(conv(cout, cout, 3))
        self.conv_sc = sn(conv(cin, cout, 1)) if (downsample or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        sc = self.conv_sc(x) if self.conv_sc is not None else x
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class BigGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int | None = None, num_classes: int = 0,
                 projection: bool = False):
        super().__init__()
        _check(resolution)
        width = channels or _WIDTH[resolution]
        chans = [m * width for m in _D_OUT[resolution]]
        downs = _D_DOWN[resolution]
        blocks: list[nn.Module] = [BigGANDiscOptBlock(3, chans[0])]
        blocks += [BigGANDiscBlock(chans[i - 1], chans[i], downs[i]) for i in range(1, len(chans))]
        self.blocks = nn.ModuleList(blocks)
        self.attn = SelfAttention(chans[0])  # after the first block, at resolution / 2
        self.linear_out = sn(linear(chans[-1], 1))
        self.embed = sn(nn.Embedding(num_classes, chans[-1])) if projection and num_classes else None
        self.feature_dims = {"h": chans[-1], "local": chans[-2]}
        init_orthogonal(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiscOutput:
        h = self.attn(self.blocks[0](x))
        for block in self.blocks[1:-1]:
            h = block(h)
        local = h
        h = F.relu(self.blocks[-1](h)).sum(dim=(2, 3))  # [B, C]
        logits = self.linear_out(h).squeeze(1)
        if self.embed is not None and y is not None:
            logits = logits + (embed_labels(self.embed, y) * h).sum(1)
        return DiscOutput(logits=logits, h=h, local=F.relu(local))
