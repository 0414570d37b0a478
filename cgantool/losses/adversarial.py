"""Adversarial losses on D logits. Each returns a scalar; D and G forms are separate functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgantool.losses._util import flat_logits, fp32


@fp32
def hinge_loss_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge D loss (Lim & Ye 2017; SNGAN): mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return F.relu(1 - flat_logits(real_logits)).mean() + F.relu(1 + flat_logits(fake_logits)).mean()


@fp32
def hinge_loss_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge G loss: -mean(D(G(z)))."""
    return -flat_logits(fake_logits).mean()


@fp32
def nonsaturating_loss_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN D loss (Goodfellow et al. 2014): mean(softplus(-D(x))) + mean(softplus(D(G(z))))."""
    return F.softplus(-flat_logits(real_logits)).mean() + F.softplus(flat_logits(fake_logits)).mean()


@fp32
def nonsaturating_loss_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: mean(softplus(-D(G(z))))."""
    return F.softplus(-flat_logits(fake_logits)).mean()
