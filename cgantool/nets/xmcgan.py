"""XMC-GAN's generator and discriminator (methods.md "XMC-GAN"; official JAX code
google-research/xmcgan_image_generation ``xmcgan/libml/{generator,discriminator}``), in PyTorch.

Generator (gf = 96 at 128 px, z 128): g = concat(Linear_128(sentence), z). Stem Linear(z) → (16 gf, 4, 4);
GenBlocks with BN(x)·(1 + Linear(g)) + Linear(g) up to the attention resolution (16x16; 8x8 at 16 px);
there word–region attention: h = conv1x1_D(x), a_jt = softmax_t(15 · cos(h_j, w_t)) over real words,
c_j = sum_t a_jt · n(w_t), S = concat(c, tiled g); then GenSpatialBlocks whose BN is modulated per pixel
by conv1x1(S) with S nearest-upsampled; output: spatial CBN → ReLU → conv3x3 → tanh. No SN in G.
Block widths (multiples of gf): 16 at the stem, then 16, 8, 4, 2, 1 for the blocks 4→8→...→128; lower
resolutions drop the finest blocks (64 px ends at 2 gf, 32 px at 4 gf, 16 px at 8 gf). 256 px follows the
official code: [16, 8, 8, 4, 2, 1] (two GenBlocks to 16x16 as at 128 px, then four GenSpatialBlocks
8, 4, 2, 1 gf up to 256).

Discriminator (df = 96): optimized block (df) then pre-activation DBlocks [2, 4, 8, 16] · df downsampling
to 4x4 and one more 16 df block without downsampling (128 px: [2, 4, 8, 16, 16] with [T, T, T, T, F];
256 px, as in the official code: [2, 4, 8, 8, 16, 16] with [T, T, T, T, T, F]).
Region features = conv1x1_D of the block output at the attention resolution (16x16 → 256 regions, 4 df
= 384 channels at 128 px, 8 df = 768 at 256 px); global x = ReLU → sum pool; logit = Linear_1(x) +
<x, Linear(sentence)>. Every D layer spectral-normalised; D shortcuts read the raw input (no in-place
ReLU, as in the JAX code).

Every linear and convolution has a bias, as Flax's Dense/Conv and the official SpectralDense/SpectralConv
default to; the BNs have no affine parameters. Counting ``parameters()`` (weights and biases; the
spectral-norm u, v vectors and BN running statistics are buffers, as the official u0 and BN statistics
live outside its ``params`` collection), gf = df = 96, z 128, 768-d BERT word/sentence features give
G 92,865,539 and D 99,415,585 at 256 px, 78,507,779 and 87,911,713 at 128 px (tests pin these).

Deviation: images are in [-1, 1] (tanh) like every other cgantool model; the official G ends with
(tanh + 1) / 2 for [0, 1] images — the same function up to the fixed affine map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import DBlock, DBlockOptimized, DiscOutput, conv, init_xavier, layout_error, linear
from cgantool.text.cond import TextCond

RESOLUTIONS = (16, 32, 64, 128, 256)
_G_MULTS = [16, 8, 4, 2, 1]  # block i output width / gf (the stem is 16 gf); 128 px and, truncated, below
_G_MULTS_256 = [16, 8, 8, 4, 2, 1]  # the official 256 px generator: one more 8 gf block after attention
_D_MULTS = [2, 4, 8, 16, 16]  # DBlocks after the optimized block (df); 128 px and, dropping 16, below
_D_MULTS_256 = [2, 4, 8, 8, 16, 16]  # the official 256 px discriminator
SENTENCE_DIM = 128  # Linear_128(sentence)
WORD_ATTENTION_GAMMA = 15.0


def attention_resolution(resolution: int) -> int:
    return 16 if resolution >= 32 else 8


class GlobalCBN(nn.Module):
    """BN(x) · (1 + Linear(g)) + Linear(g), BN without affine; g [B, G]."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gain(g)[:, :, None, None]) + self.bias(g)[:, :, None, None]


class SpatialCBN(nn.Module):
    """BN(x) · (1 + conv1x1(S)) + conv1x1(S), S [B, C_s, h, w] nearest-upsampled to x's size."""

    def __init__(self, channels: int, cond_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Conv2d(cond_channels, channels, 1)
        self.bias = nn.Conv2d(cond_channels, channels, 1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gain, bias = self.gain(s), self.bias(s)
        if s.shape[-1] != x.shape[-1]:  # a 1x1 conv commutes with nearest upsampling: convolve the small map
            gain = F.interpolate(gain, size=x.shape[-2:], mode="nearest")
            bias = F.interpolate(bias, size=x.shape[-2:], mode="nearest")
        return self.bn(x) * (1 + gain) + bias


class _UpBlock(nn.Module):
    """norm1 → ReLU → nearest up → conv3x3 → norm2 → ReLU → conv3x3, shortcut up → conv1x1."""

    def __init__(self, cin: int, cout: int, norm1: nn.Module, norm2: nn.Module):
        super().__init__()
        self.b1, self.b2 = norm1, norm2
        self.c1, self.c2, self.c_sc = conv(cin, cout, 3), conv(cout, cout, 3), conv(cin, cout, 1)
        init_xavier(self.c1, math.sqrt(2))
        init_xavier(self.c2, math.sqrt(2))
        init_xavier(self.c_sc, 1.0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.interpolate(F.relu(self.b1(x, cond)), scale_factor=2, mode="nearest"))
        h = self.c2(F.relu(self.b2(h, cond)))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


def word_attention(h: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, gamma: float = WORD_ATTENTION_GAMMA) -> torch.Tensor:
    """Region j attends over real words t: a_jt = softmax_t(gamma · cos(h_j, w_t)); returns
    c [B, D, H, W] = sum_t a_jt · n(w_t). h [B, D, H, W], words [B, T, D], mask [B, T] bool."""
    B, D, H, W = h.shape
    hn = F.normalize(h.flatten(2).transpose(1, 2), dim=-1)  # [B, HW, D]
    wn = F.normalize(words, dim=-1)  # [B, T, D]
    logits = gamma * hn @ wn.transpose(1, 2)  # [B, HW, T]
    logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
    attn = torch.softmax(logits, dim=-1)
    return (attn @ wn).transpose(1, 2).reshape(B, D, H, W)


class XMCGenerator(nn.Module):
    resolutions = RESOLUTIONS
    conditioning = "text"

    def __init__(self, resolution: int = 128, z_dim: int = 128, channels: int | None = None, text_dim: int = 768,
                 **_: object):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise layout_error("xmcgan", resolution, RESOLUTIONS)
        gf = channels or 96
        self.resolution, self.z_dim, self.text_dim, self.num_classes = resolution, z_dim, text_dim, 0
        n_blocks = int(math.log2(resolution // 4))
        self.attn_res = attention_resolution(resolution)
        n_global = int(math.log2(self.attn_res // 4))
        widths = [16 * gf] + [m * gf for m in (_G_MULTS_256 if resolution == 256 else _G_MULTS[:n_blocks])]
        g_dim = SENTENCE_DIM + z_dim
        s_dim = text_dim + g_dim
        self.sentence = nn.Linear(text_dim, SENTENCE_DIM)
        self.stem = nn.Linear(z_dim, 16 * widths[0])
        self.global_blocks = nn.ModuleList(
            _UpBlock(widths[i], widths[i + 1], GlobalCBN(widths[i], g_dim), GlobalCBN(widths[i + 1], g_dim))
            for i in range(n_global)
        )
        self.word_proj = nn.Conv2d(widths[n_global], text_dim, 1)
        self.spatial_blocks = nn.ModuleList(
            _UpBlock(widths[i], widths[i + 1], SpatialCBN(widths[i], s_dim), SpatialCBN(widths[i + 1], s_dim))
            for i in range(n_global, n_blocks)
        )
        self.b_out = SpatialCBN(widths[-1], s_dim)
        self.c_out = conv(widths[-1], 3, 3)
        init_xavier(self.stem, 1.0)
        init_xavier(self.c_out, 1.0)

    def sample_latent(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def forward(self, z: torch.Tensor, text: TextCond | None = None, mix: tuple[TextCond, float] | None = None) -> torch.Tensor:
        """z [B, z_dim], text: captions encoded as TextCond → images [B, 3, R, R] in [-1, 1].

        ``mix = (other, t)``: condition on (1 - t) · text + t · other — sentence features mixed linearly and
        the word contexts c_j of the two captions mixed at the same regions (prompt interpolation).
        """
        if text is None:
            raise ValueError("this generator is text-conditional: pass encoded captions (TextCond)")
        sentence = text.sentence if mix is None else torch.lerp(text.sentence, mix[0].sentence, mix[1])
        g = torch.cat([self.sentence(sentence), z], dim=1)  # [B, 128 + z]
        x = self.stem(z).view(z.shape[0], -1, 4, 4)
        for block in self.global_blocks:
            x = block(x, g)
        h = self.word_proj(x)
        c = word_attention(h, text.words, text.mask)
        if mix is not None:
            c = torch.lerp(c, word_attention(h, mix[0].words, mix[0].mask), mix[1])
        s = torch.cat([c, g[:, :, None, None].expand(-1, -1, *c.shape[-2:])], dim=1)  # [B, D + 128 + z, r, r]
        for block in self.spatial_blocks:
            x = block(x, s)
        return torch.tanh(self.c_out(F.relu(self.b_out(x, s))))


class XMCDiscriminator(nn.Module):
    resolutions = RESOLUTIONS

    def __init__(self, resolution: int = 128, channels: int | None = None, text_dim: int = 768, **_: object):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise layout_error("xmcgan", resolution, RESOLUTIONS)
        df = channels or 96
        n_down = int(math.log2(resolution // 4))
        # the optimized block (df, downsamples), then DBlocks all downsampling but the last: n_down halvings
        mults = [1] + (_D_MULTS_256 if resolution == 256 else _D_MULTS[: n_down - 1] + [16])
        downs = [True] * n_down + [False]
        widths = [m * df for m in mults]
        blocks: list[nn.Module] = [DBlockOptimized(3, widths[0], use_sn=True)]
        blocks += [DBlock(widths[i - 1], widths[i], downsample=downs[i], hidden=widths[i], relu_shortcut=False)
                   for i in range(1, len(widths))]
        self.blocks = nn.ModuleList(blocks)
        attn_res = attention_resolution(resolution)
        self.region_block = int(math.log2(resolution // attn_res)) - 1  # the block whose output is attn_res
        self.region = conv(widths[self.region_block], text_dim, 1, use_sn=True)
        self.l_out = linear(widths[-1], 1, use_sn=True)
        self.proj = linear(text_dim, widths[-1], use_sn=True)
        init_xavier(self.l_out, 1.0)
        self.feature_dims = {"h": widths[-1], "local": text_dim}
        self.num_classes = 0

    def forward(self, x: torch.Tensor, text: TextCond | None = None) -> DiscOutput:
        """x [B, 3, R, R], text [B] captions → DiscOutput(logits, h = pooled features, local = region
        features [B, R', D], cond = Linear(sentence) [B, C])."""
        if text is None:
            raise ValueError("this discriminator is text-conditional: pass encoded captions (TextCond)")
        regions = None
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.region_block:
                regions = self.region(h).flatten(2).transpose(1, 2)  # [B, r*r, D]
        pooled = F.relu(h).sum(dim=(2, 3))  # [B, 16 df]
        cond = self.proj(text.sentence)
        logits = self.l_out(pooled).squeeze(1) + (cond * pooled).sum(1)
        return DiscOutput(logits=logits, h=pooled, local=regions, cond=cond)
