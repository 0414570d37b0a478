"""Projection heads that contrastive terms put on the discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import conv, embed_labels, init_xavier, linear, sn


class InfoMaxHeads(nn.Module):
    """InfoMax-GAN (Mimicry): local phi_l = conv1x1 → ReLU → conv1x1 to R, plus a conv1x1 shortcut to R (per
    position); global phi_g = Linear → ReLU → Linear to R, plus a Linear shortcut. All SN, Xavier init.
    At 32 px (C_l = C_g = 128, R = 1024): 561,408 parameters.
    """

    def __init__(self, local_channels: int, global_channels: int, rkhs_dim: int = 1024):
        super().__init__()
        cl, cg, r = local_channels, global_channels, rkhs_dim
        self.local_1, self.local_2, self.local_sc = sn(conv(cl, cl, 1)), sn(conv(cl, r, 1)), sn(conv(cl, r, 1))
        self.global_1, self.global_2, self.global_sc = sn(linear(cg, cg)), sn(linear(cg, r)), sn(linear(cg, r))
        for m in (self.local_1, self.local_2, self.local_sc, self.global_1, self.global_2, self.global_sc):
            init_xavier(m, 1.0)

    def forward(self, local: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """local [B, C_l, H, W], h [B, C_g] → (local_proj [B, R, H·W], global_proj [B, R])."""
        lp = self.local_2(F.relu(self.local_1(local))) + self.local_sc(local)  # [B, R, H, W]
        gp = self.global_2(F.relu(self.global_1(h))) + self.global_sc(h)  # [B, R]
        return lp.flatten(2), gp


class Contrastive2CHeads(nn.Module):
    """ContraGAN: one SN-Linear(C → d) with bias for the embedding, an SN-Embedding(classes, d) for the proxies."""

    def __init__(self, in_channels: int, num_classes: int, embed_dim: int = 512):
        super().__init__()
        self.linear = sn(linear(in_channels, embed_dim))
        self.proxy = sn(nn.Embedding(num_classes, embed_dim))
        nn.init.orthogonal_(self.linear.parametrizations.weight.original)
        nn.init.zeros_(self.linear.bias)
        nn.init.orthogonal_(self.proxy.parametrizations.weight.original)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, C], y [B] → (embed [B, d], proxy [B, d]), not normalised (the loss normalises)."""
        return self.linear(h), embed_labels(self.proxy, y)
