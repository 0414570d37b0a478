"""Projection heads that contrastive terms put on the discriminator (trained by the D optimizer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgantool.nets.layers import SN_EPS_STUDIOGAN, conv, embed_labels, embedding, init_orthogonal, init_xavier, linear


class InfoMaxHeads(nn.Module):
    """InfoMax-GAN's critic heads (Mimicry ``nets/infomax_gan``), all spectral-normalised, Xavier init (gain 1):

        local  phi_l(l) = conv1x1_{C_l→R}(ReLU(conv1x1_{C_l→C_l}(l))) + conv1x1_{C_l→R}(l)   per position
        global phi_g(m) = Linear_{C_g→R}(ReLU(Linear_{C_g→C_g}(m))) + Linear_{C_g→R}(m)

    No normalisation, no temperature (scores are dot products). At 32 px (C_l = C_g = 128, R = 1024):
    2 · (128·128 + 128 + 2 · (128·1024 + 1024)) = 561,408 parameters.
    """

    def __init__(self, local_channels: int, global_channels: int, rkhs_dim: int = 1024):
        super().__init__()
        cl, cg, r = local_channels, global_channels, rkhs_dim
        self.local_1 = conv(cl, cl, 1, use_sn=True)
        self.local_2 = conv(cl, r, 1, use_sn=True)
        self.local_sc = conv(cl, r, 1, use_sn=True)
        self.global_1 = linear(cg, cg, use_sn=True)
        self.global_2 = linear(cg, r, use_sn=True)
        self.global_sc = linear(cg, r, use_sn=True)
        for m in (self.local_1, self.local_2, self.local_sc, self.global_1, self.global_2, self.global_sc):
            init_xavier(m, 1.0)

    def forward(self, local: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """local [B, C_l, H, W], h [B, C_g] → (local_proj [B, R, H·W], global_proj [B, R]).

        The output layout is what ``cgantool.losses.infonce_local_global_loss(local_feats, global_feats)`` takes.
        """
        local_proj = self.local_2(F.relu(self.local_1(local))) + self.local_sc(local)  # [B, R, H, W]
        global_proj = self.global_2(F.relu(self.global_1(h))) + self.global_sc(h)  # [B, R]
        return local_proj.flatten(2), global_proj


class Contrastive2CHeads(nn.Module):
    """ContraGAN's heads (StudioGAN big_resnet D with d_cond_mtd "2C"): the embedding is ONE SN-Linear(C → d)
    with bias (``linear2``), the class proxies an SN-Embedding(classes, d) (``embedding``). Orthogonal init,
    SN eps 1e-6, as StudioGAN initialises its D. C · d + d + classes · d parameters (192, 10, 512 → 103,936).
    """

    def __init__(self, in_channels: int, num_classes: int, embed_dim: int = 512):
        super().__init__()
        self.linear = linear(in_channels, embed_dim, use_sn=True, sn_eps=SN_EPS_STUDIOGAN)
        self.proxy = embedding(num_classes, embed_dim, use_sn=True, sn_eps=SN_EPS_STUDIOGAN)
        init_orthogonal(self)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, C], y int labels [B] (or soft [B, classes]) → (embed [B, d], proxy [B, d]), both un-normalised
        (the 2C loss normalises)."""
        return self.linear(h), embed_labels(self.proxy, y)
