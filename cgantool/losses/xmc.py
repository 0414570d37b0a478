"""XMC-GAN's contrastive losses (Zhang et al., CVPR 2021; official JAX code xmcgan_image_generation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgantool.losses._util import fp32


@fp32
def xmc_contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE with the two directions summed. a, b [B, D], row i of a matches row i of b:

        L = mean_i CE([n(a_i)·n(b_j)/t]_j, i) + mean_i CE([n(b_i)·n(a_j)/t]_j, i)

    Zero at B = 1; 2 ln B when every similarity is equal. Source: methods.md "XMC-GAN";
    xmcgan_image_generation ``xmcgan/libml/attention_lib.py`` ``contrastive_loss``. Returns a scalar.
    """
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature  # [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


@fp32
def word_region_scores(regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, rho1: float = 5.0,
                       rho2: float = 5.0, temperature: float = 0.02) -> torch.Tensor:
    """S[k, i]: how well caption i's words are found in image k's regions (DAMSM-style matching).

    alpha(j, t) = softmax over regions j of rho1 · cos(r_kj, w_it); c_t = sum_j alpha · n(r_kj);
    S(k, i) = (1 / (rho2 · temperature)) · log sum_{real t} exp(rho2 · cos(w_it, c_t)).
    This is the official ``word_loss`` (xmcgan/libml/attention_lib.py) with gamma1 = rho1, gamma2 = rho2,
    gamma3 = 1 / temperature = 50. Padded words are left out of the log-sum-exp (their own attention is
    computed and discarded); every caption needs at least one real word.
    regions [B, R, D], words [B, T, D], word_mask [B, T] (True = real word) → [B, B]. Batched over all pairs.
    """
    B_img, R, D = regions.shape
    B_cap, T, _ = words.shape
    r = F.normalize(regions, dim=-1)
    w = F.normalize(words, dim=-1)
    # cos[k, i, j, t] = n(r_kj) · n(w_it): one matmul over all pairs
    cos = (r.reshape(B_img * R, D) @ w.reshape(B_cap * T, D).T).view(B_img, R, B_cap, T).permute(0, 2, 1, 3)
    alpha = torch.softmax(rho1 * cos, dim=2)  # [B_img, B_cap, R, T], over regions
    # cos(w_it, c_t) with c_t = sum_j alpha_j n(r_kj), without materialising c [B_img, B_cap, T, D]:
    #   n(w)·c = sum_j alpha_j cos_j;   |c|^2 = alpha^T (r r^T) alpha
    dot = (alpha * cos).sum(2)  # [B_img, B_cap, T]
    gram = r @ r.transpose(1, 2)  # [B_img, R, R]
    a = alpha.permute(0, 1, 3, 2).reshape(B_img, B_cap * T, R)  # [B_img, B_cap*T, R]
    norm_sq = ((a @ gram) * a).sum(-1).view(B_img, B_cap, T)
    match = dot / norm_sq.clamp_min(0).sqrt().clamp_min(1e-8)
    match = (rho2 * match).masked_fill(~word_mask.bool().unsqueeze(0), float("-inf"))
    return torch.logsumexp(match, dim=-1) / (rho2 * temperature)


@fp32
def xmc_word_region_loss(regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, rho1: float = 5.0,
                         rho2: float = 5.0, temperature: float = 0.02) -> torch.Tensor:
    """Word–region contrastive loss: mean_k CE(S[k, :], k) + mean_i CE(S[:, i], i) with S from
    :func:`word_region_scores` (rho1 = 5, rho2 = 5, tau = 0.02 → S = 10 · logsumexp(5 · cos)).

    regions [B, R, D], words [B, T, D], word_mask [B, T] bool. Needs B >= 2 to be informative. Source:
    methods.md "XMC-GAN", word–region; official ``word_loss``. Returns a scalar.
    """
    scores = word_region_scores(regions, words, word_mask, rho1, rho2, temperature)
    target = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)
