"""SNGAN ResNet generator and spectral-norm ResNet discriminator as Mimicry builds them (methods.md "Shared
backbone: SNGAN ResNet"; Mimicry ``nets/sngan/sngan_{32,48,64,128}.py``, ``nets/cgan_pd/``, ``modules/``).

Paper-width parameter counts (unconditional, no attention): 32 px G 4,276,739 / D 1,053,825; 48 px
G 4,878,083 / D 10,141,441; 64 px G 12,220,675 / D 10,141,441; 128 px G 32,150,787 / D 29,017,857.

Kept on purpose from Mimicry (it produced the InfoMax-GAN numbers):
- G upsamples bilinearly (``upsample="nearest"`` gives Chainer SNGAN's choice);
- every DBlock starts with an in-place ReLU, so its shortcut, and the local features read from its input,
  see ReLU(x), not x (see ``layers.DBlock``).

16 px, not in Mimicry: the 32 px layout with one G block fewer (4 → 8 → 16); D keeps the 32 px blocks
(16 → 8 → 4, then two blocks at 4x4), so its local features are 4x4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import (
    BatchNorm,
    ClassConditionalBN,
    DBlock,
    DBlockOptimized,
    DiscOutput,
    GBlock,
    SelfAttention,
    check_upsample,
    conv,
    embed_labels,
    embedding,
    init_xavier,
    layout_error,
    linear,
)

# resolution → (bottom size, paper ngf, channel divisors c_0..c_n; block i maps ngf/c_i → ngf/c_{i+1})
_G_LAYOUT: dict[int, tuple[int, int, list[int]]] = {
    16: (4, 256, [1, 1, 1]),
    32: (4, 256, [1, 1, 1, 1]),
    48: (6, 512, [1, 2, 4, 8]),
    64: (4, 1024, [1, 2, 4, 8, 16]),
    128: (4, 1024, [1, 1, 2, 4, 8, 16]),
}
# resolution → (paper ndf, channel divisor of each block's output, whether each block downsamples)
_D_LAYOUT: dict[int, tuple[int, list[int], list[bool]]] = {
    16: (128, [1, 1, 1, 1], [True, True, False, False]),
    32: (128, [1, 1, 1, 1], [True, True, False, False]),
    48: (1024, [16, 8, 4, 2, 1], [True, True, True, True, False]),
    64: (1024, [16, 8, 4, 2, 1], [True, True, True, True, False]),
    128: (1024, [16, 8, 4, 2, 1, 1], [True, True, True, True, True, False]),
}
RESOLUTIONS = tuple(sorted(_G_LAYOUT))


def _widths(width: int, divisors: list[int]) -> list[int]:
    return [max(1, width // d) for d in divisors]


class SNGANGenerator(nn.Module):
    """z [B, z_dim] ~ N(0, I) → Linear → (ngf, b, b) → GBlocks → BN → ReLU → conv3x3 → tanh → [B, 3, R, R].

    No SN in G. ``channels`` (ngf) scales the whole channel schedule; None = the paper width (256 at 16/32 px,
    512 at 48, 1024 at 64/128). ``num_classes`` > 0: class-conditional BN in every GBlock (Mimicry cGAN-PD; the
    final BN stays unconditional). ``self_attention``: one SN-free self-attention block after the GBlock that
    reaches resolution / 2 (16x16 at 32 px).
    Init (Mimicry): Xavier-uniform, gain 1 on the first linear and last conv, sqrt(2)/1 inside the blocks.
    """

    resolutions = RESOLUTIONS

    def __init__(self, resolution: int = 32, z_dim: int = 128, channels: int | None = None, num_classes: int = 0,
                 self_attention: bool = False, upsample: str = "bilinear"):
        super().__init__()
        if resolution not in _G_LAYOUT:
            raise layout_error("sngan", resolution, RESOLUTIONS)
        check_upsample(upsample)
        self.resolution, self.z_dim, self.num_classes = resolution, z_dim, num_classes
        self.bottom, paper_width, divisors = _G_LAYOUT[resolution]
        chans = _widths(channels or paper_width, divisors)
        self._first_channels = chans[0]

        def norm(c: int) -> nn.Module:
            return ClassConditionalBN(c, num_classes) if num_classes else BatchNorm(c)

        self.l1 = linear(z_dim, self.bottom * self.bottom * chans[0])
        self.blocks = nn.ModuleList(
            GBlock(chans[i], chans[i + 1], norm, upsample=upsample) for i in range(len(chans) - 1)
        )
        self.attn_after = len(self.blocks) - 2 if self_attention else -1  # the block that reaches resolution / 2
        self.attn = SelfAttention(chans[self.attn_after + 1], use_sn=False) if self_attention else None
        self.b_out = nn.BatchNorm2d(chans[-1])
        self.c_out = conv(chans[-1], 3, 3)
        init_xavier(self.l1, 1.0)
        init_xavier(self.c_out, 1.0)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """z ~ N(0, I), [n, z_dim]."""
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, z_dim], y int labels [B] or soft labels [B, classes] (conditional G only) → images [B, 3, R, R]."""
        if self.num_classes and y is None:
            raise ValueError("this generator is class-conditional: pass labels y")
        h = self.l1(z).view(z.shape[0], self._first_channels, self.bottom, self.bottom)  # [B, ngf, b, b]
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.attn_after:
                h = self.attn(h)
        return torch.tanh(self.c_out(F.relu(self.b_out(h))))


class SNGANDiscriminator(nn.Module):
    """x [B, 3, R, R] → optimized block → DBlocks → ReLU → global sum pool → SN-Linear → logits [B].

    Every conv/linear is spectral-normalised (one power iteration) unless ``use_sn=False`` (for experiments such
    as ``benchmarks/d_shape_speed.py --no-sn``; the presets keep SN). ``channels`` (ndf) scales the schedule;
    None = the paper width (ndf 128 at 16/32 px, all blocks ndf wide; 1024 at 48/64/128 px, blocks ndf/16 ...
    ndf). ``num_classes`` > 0: projection discriminator, logit += <SN-Embedding(y), h> (Mimicry cGAN-PD).
    ``self_attention``: one SN self-attention block after the first block (resolution / 2).

    ``DiscOutput.local`` is the output of all blocks but the last, post-ReLU (Mimicry's in-place ReLU):
    [B, 128, 8, 8] at 32 px paper width. ``feature_dims`` = {"h": C, "local": C_l}.
    """

    resolutions = RESOLUTIONS

    def __init__(self, resolution: int = 32, channels: int | None = None, num_classes: int = 0,
                 self_attention: bool = False, use_sn: bool = True):
        super().__init__()
        if resolution not in _D_LAYOUT:
            raise layout_error("sngan", resolution, RESOLUTIONS)
        paper_width, divisors, downs = _D_LAYOUT[resolution]
        chans = _widths(channels or paper_width, divisors)
        self.resolution, self.num_classes = resolution, num_classes
        blocks: list[nn.Module] = [DBlockOptimized(3, chans[0], use_sn=use_sn)]
        blocks += [DBlock(chans[i - 1], chans[i], downsample=downs[i], use_sn=use_sn) for i in range(1, len(chans))]
        self.blocks = nn.ModuleList(blocks)
        self.attn = SelfAttention(chans[0], use_sn=use_sn) if self_attention else None
        self.l_out = linear(chans[-1], 1, use_sn=use_sn)
        init_xavier(self.l_out, 1.0)
        self.embed = embedding(num_classes, chans[-1], use_sn=use_sn) if num_classes else None
        if self.embed is not None:
            init_xavier(self.embed, 1.0)
        self.feature_dims = {"h": chans[-1], "local": chans[-2]}

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DiscOutput:
        """x [B, 3, R, R], y int labels [B] or soft labels [B, classes] (projection D only) → DiscOutput."""
        if self.embed is not None and y is None:
            raise ValueError("this discriminator is a projection discriminator: pass labels y")
        h = x
        for i, block in enumerate(self.blocks[:-1]):
            h = block(h)
            if i == 0 and self.attn is not None:
                h = self.attn(h)
        local = F.relu(h)  # [B, C_l, H_l, W_l]: what the last block's in-place ReLU leaves in its input
        h = F.relu(self.blocks[-1](local)).sum(dim=(2, 3))  # [B, C]
        logits = self.l_out(h).squeeze(1)  # [B]
        if self.embed is not None:
            logits = logits + (embed_labels(self.embed, y) * h).sum(1)
        return DiscOutput(logits=logits, h=h, local=local)
