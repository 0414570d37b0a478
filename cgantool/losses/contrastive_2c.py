"""ContraGAN's conditional contrastive (2C) loss (Kang & Park, NeurIPS 2020; StudioGAN
``ConditionalContrastiveLoss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgantool.losses._util import fp32


@fp32
def contrastive_2c_loss(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                        margin: float = 0.0) -> torch.Tensor:
    """2C loss. embed [B, D] sample embeddings, proxy [B, D] the proxy of each sample's own label, labels [B].

    With e_i, p_i L2-normalised and s the cosine similarity:

        L = (1/B) sum_i -log( [exp(s(e_i,p_i)/t) + sum_{k!=i, y_k=y_i} exp(s(e_i,e_k)/t)]
                              / [exp(s(e_i,p_i)/t) + sum_{k!=i} exp(s(e_i,e_k)/t)] )

    Self-similarity is removed; other classes' proxies are never negatives (methods.md "ContraGAN";
    StudioGAN ``src/utils/losses.py`` ``ConditionalContrastiveLoss``). ``margin`` is the original
    ContraGAN code's (StudioGAN v0.1 ``Conditional_Contrastive_loss``): subtracted from every cosine, the
    proxy's and the samples', before dividing by t. That multiplies numerator and denominator by the same
    exp(-margin/t), so it cancels exactly; kept for configs that set it (default 0).
    Returns a scalar (computed with logsumexp).
    """
    e = F.normalize(embed, dim=1)
    p = F.normalize(proxy, dim=1)
    B = e.shape[0]
    sim = (e @ e.T - margin) / temperature  # [B, B]
    to_proxy = ((e * p).sum(1, keepdim=True) - margin) / temperature  # [B, 1]
    not_self = ~torch.eye(B, dtype=torch.bool, device=e.device)
    same = (labels[:, None] == labels[None, :]) & not_self
    neg_inf = torch.finfo(sim.dtype).min
    log_num = torch.logsumexp(torch.cat([to_proxy, sim.masked_fill(~same, neg_inf)], dim=1), dim=1)
    log_den = torch.logsumexp(torch.cat([to_proxy, sim.masked_fill(~not_self, neg_inf)], dim=1), dim=1)
    return (log_den - log_num).mean()
