"""BigGAN-style ResNet as PyTorch-StudioGAN's ``src/models/big_resnet.py`` builds it for ContraGAN
(methods.md "ContraGAN"; layers from StudioGAN ``src/utils/ops.py``).

G: z split into (blocks + 1) chunks; chunk 0 → SN-Linear → (C, 4, 4); every other chunk, concatenated with a
shared class embedding, drives one block's conditional BN, BN(x) · (1 + SN-Linear(c)) + SN-Linear(c) (bias-free
linears, eps 1e-4); GBlocks upsample nearest with a 1x1 skip conv; self-attention; BN (eps 1e-4) → ReLU →
SN-conv3x3 → tanh. D: optimized block, self-attention, pre-activation DBlocks (first conv cin→cout), ReLU →
sum pool → SN-Linear logit (+ projection term if ``projection``). SN (eps 1e-6) on every conv, linear and
D embedding of both nets; orthogonal init.

Paper numbers (CIFAR-10 config: conv width 96, z 80, shared 128, 10 classes): G 9,416,196 parameters;
D + ``Contrastive2CHeads(192, 10, 512)`` 2,517,186.

Channel schedules and widths follow StudioGAN's configs: 32 px conv width 96 (CIFAR-10), 64 px 80
(Tiny ImageNet; z 100, d_embed 768), 128 px 96 (ImageNet; z 120, d_embed 1536). Self-attention sits at half the
image resolution in all of them (after G block 2 / 3 / 4, after D block 1), which is the default here.
16 and 48 px are ours, not StudioGAN's: the 32 px layout with one G block fewer (16 px), or a 6x6 bottom and a
third downsampling D block (48 px).

StudioGAN's in-place ReLU makes each DBlock's shortcut read ReLU(x); we keep that (``layers.DBlock``).
Unconditional G (``num_classes=0``): the z chunks alone drive the conditional BN (BigGAN's hierarchical z);
StudioGAN's "W/O" mode instead uses plain BN and leaves all chunks but the first unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.errors import ConfigError
from cgantool.nets.layers import (
    SN_EPS_STUDIOGAN,
    DBlock,
    DBlockOptimized,
    DiscOutput,
    GBlock,
    LinearConditionalBN,
    SelfAttention,
    check_upsample,
    conv,
    embed_labels,
    embedding,
    init_orthogonal,
    layout_error,
    linear,
)

_EPS = SN_EPS_STUDIOGAN


# resolution → (G bottom, G block input / output widths, D block output widths, D downsampling, paper width);
# widths are multiples of the conv width (StudioGAN g_conv_dim / d_conv_dim).
_LAYOUT: dict[int, tuple[int, list[int], list[int], list[int], list[bool], int]] = {
    16: (4, [4, 4], [4, 4], [2, 2, 2, 2], [True, True, False, False], 96),
    32: (4, [4, 4, 4], [4, 4, 4], [2, 2, 2, 2], [True, True, False, False], 96),
    48: (6, [4, 4, 4], [4, 4, 4], [2, 2, 2, 2], [True, True, True, False], 96),
    64: (4, [16, 8, 4, 2], [8, 4, 2, 1], [1, 2, 4, 8, 16], [True, True, True, True, False], 80),
    128: (4, [16, 16, 8, 4, 2], [16, 8, 4, 2, 1], [1, 2, 4, 8, 16, 16], [True, True, True, True, True, False], 96),
}
RESOLUTIONS = tuple(sorted(_LAYOUT))


def _attention_index(sizes: list[int], attention_resolution: int | None, resolution: int, net: str) -> int:
    """Index of the first block whose output is ``attention_resolution`` px (None → resolution / 2); -1 = none."""
    target = resolution // 2 if attention_resolution is None else attention_resolution
    if target == 0:
        return -1
    if target not in sizes:
        raise ConfigError(f"the biggan {net} at {resolution} px has no block with {target} px output for attention",
                          hint=f"use an attention resolution in {', '.join(map(str, sorted(set(sizes))))} "
                          "or 0 for none")
    return sizes.index(target)


def split_sizes(z_dim: int, chunks: int) -> list[int]:
    """Sizes of the z chunks: equal when z_dim divides (StudioGAN requires it), else the first ones one larger."""
    if z_dim < chunks:
        raise ConfigError(f"the biggan generator needs z_dim >= {chunks} (one chunk per block plus one), got {z_dim}",
                          hint=f"set model.z_dim to a multiple of {chunks}")
    return [z_dim // chunks + (1 if i < z_dim % chunks else 0) for i in range(chunks)]


class BigGANGenerator(nn.Module):
    """z [B, z_dim], labels [B] (or soft [B, classes]) → images [B, 3, R, R] in [-1, 1].

    ``channels`` = the conv width (StudioGAN g_conv_dim; None = 96 at 16/32/48/128 px, 80 at 64 px).
    ``attention_resolution``: self-attention after the block with that output size; None = resolution / 2
    (16x16 at 32 px), 0 = none. ``upsample``: 'nearest' (StudioGAN) or 'bilinear'.
    """

    resolutions = RESOLUTIONS

    def __init__(self, resolution: int = 32, z_dim: int = 80, channels: int | None = None, num_classes: int = 10,
                 shared_dim: int = 128, attention_resolution: int | None = None, upsample: str = "nearest"):
        super().__init__()
        if resolution not in _LAYOUT:
            raise layout_error("biggan", resolution, RESOLUTIONS)
        check_upsample(upsample)
        self.resolution, self.z_dim, self.num_classes = resolution, z_dim, num_classes
        self.bottom, g_in, g_out, _, _, paper_width = _LAYOUT[resolution]
        width = channels or paper_width
        cin, cout = [m * width for m in g_in], [m * width for m in g_out]
        self.chunks = split_sizes(z_dim, len(cin) + 1)
        shared = shared_dim if num_classes else 0
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        self.linear0 = linear(self.chunks[0], cin[0] * self.bottom**2, use_sn=True, sn_eps=_EPS)

        def block(i: int) -> GBlock:
            cond_dim = self.chunks[i + 1] + shared

            def norm(c: int) -> nn.Module:
                return LinearConditionalBN(c, cond_dim, use_sn=True, sn_eps=_EPS)

            return GBlock(cin[i], cout[i], norm, upsample=upsample, use_sn=True, sn_eps=_EPS)

        self.blocks = nn.ModuleList(block(i) for i in range(len(cin)))
        sizes = [self.bottom * 2 ** (i + 1) for i in range(len(cin))]
        self.attn_after = _attention_index(sizes, attention_resolution, resolution, "generator")
        self.attn = SelfAttention(cout[self.attn_after], sn_eps=_EPS) if self.attn_after >= 0 else None
        self.bn_out = nn.BatchNorm2d(cout[-1], eps=1e-4)
        self.conv_out = conv(cout[-1], 3, 3, use_sn=True, sn_eps=_EPS)
        self._first_channels = cin[0]
        init_orthogonal(self)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """z ~ N(0, I), [n, z_dim]."""
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        zs = torch.split(z, self.chunks, dim=1)  # [B, chunk_i] each
        conds = list(zs[1:])
        if self.shared is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass labels y")
            shared = embed_labels(self.shared, y)  # [B, shared_dim]
            conds = [torch.cat([shared, c], dim=1) for c in conds]  # StudioGAN order: shared first
        h = self.linear0(zs[0]).view(z.shape[0], self._first_channels, self.bottom, self.bottom)
        for i, block in enumerate(self.blocks):
            h = block(h, conds[i])
            if i == self.attn_after:
                h = self.attn(h)
        return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))


class BigGANDiscriminator(nn.Module):
    """x [B, 3, R, R] → DiscOutput. logits = SN-Linear(C → 1)(h) (+ <SN-Embedding(y), h> if ``projection``).

    ContraGAN's class information reaches D through ``Contrastive2CHeads`` on ``h``, not a projection term, so
    ``projection`` defaults to False. ``channels`` = the conv width (StudioGAN d_conv_dim; None = 96 at
    16/32/48/128 px, 80 at 64 px). ``attention_resolution``: after the first block with that output size;
    None = resolution / 2 (after the first block), 0 = none.
    """

    resolutions = RESOLUTIONS

    def __init__(self, resolution: int = 32, channels: int | None = None, num_classes: int = 0,
                 attention_resolution: int | None = None, projection: bool = False):
        super().__init__()
        if resolution not in _LAYOUT:
            raise layout_error("biggan", resolution, RESOLUTIONS)
        if projection and num_classes < 1:
            raise ConfigError("a projection discriminator needs class labels (num_classes >= 1)")
        _, _, _, d_out, downs, paper_width = _LAYOUT[resolution]
        width = channels or paper_width
        chans = [m * width for m in d_out]
        self.resolution, self.num_classes = resolution, num_classes
        blocks: list[nn.Module] = [DBlockOptimized(3, chans[0], sn_eps=_EPS)]
        blocks += [DBlock(chans[i - 1], chans[i], downs[i], hidden=chans[i], sn_eps=_EPS) for i in range(1, len(chans))]
        self.blocks = nn.ModuleList(blocks)
        sizes, size = [], resolution
        for down in downs:
            size = size // 2 if down else size
            sizes.append(size)
        self.attn_after = _attention_index(sizes, attention_resolution, resolution, "discriminator")
        self.attn = SelfAttention(chans[self.attn_after], sn_eps=_EPS) if self.attn_after >= 0 else None
        self.linear_out = linear(chans[-1], 1, use_sn=True, sn_eps=_EPS)
        self.embed = embedding(num_classes, chans[-1], use_sn=True, sn_eps=_EPS) if projection else None
        self.feature_dims = {"h": chans[-1], "local": chans[-2]}
        init_orthogonal(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiscOutput:
        if self.embed is not None and y is None:
            raise ValueError("this discriminator is a projection discriminator: pass labels y")
        h = x
        for i, block in enumerate(self.blocks[:-1]):
            h = block(h)
            if i == self.attn_after:
                h = self.attn(h)
        local = F.relu(h)  # [B, C_l, H_l, W_l]: the last block's in-place ReLU leaves this in its input
        h = F.relu(self.blocks[-1](local)).sum(dim=(2, 3))  # [B, C]
        logits = self.linear_out(h).squeeze(1)  # [B]
        if self.embed is not None:
            logits = logits + (embed_labels(self.embed, y) * h).sum(1)
        return DiscOutput(logits=logits, h=h, local=local)
