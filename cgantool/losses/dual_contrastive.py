"""DualContrast's dual contrastive loss (Yu et al., ICCV 2021, the paper's equations; no official code)."""

from __future__ import annotations

import torch

from cgantool.losses._util import flat_logits, fp32


def _one_vs_all(positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """mean_i CE([positive_i, negatives_1..N], 0): positive [B], negatives [N]."""
    B = positive.shape[0]
    logits = torch.cat([positive[:, None], negatives[None, :].expand(B, -1)], dim=1)  # [B, 1 + N]
    return (torch.logsumexp(logits, dim=1) - positive).mean()


@fp32
def dual_contrastive_loss_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss, which replaces the adversarial loss: each real is the positive in a softmax over itself and
    all fakes; each negated fake is the positive against all negated reals:

        L_D = mean_i CE([d_r[i], d_f[1..B]], 0) + mean_j CE([-d_f[j], -d_r[1..B]], 0)

    real_logits, fake_logits: [B] or [B, 1] scalar D outputs. At B = 1 this is 2 · softplus(d_f - d_r).
    """
    r, f = flat_logits(real_logits), flat_logits(fake_logits)
    return _one_vs_all(r, f) + _one_vs_all(-f, -r)


@fp32
def dual_contrastive_loss_g(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """G's loss: the D form with the roles of real and fake swapped (fakes are the positives):

        L_G = mean_i CE([d_f[i], d_r[1..B]], 0) + mean_j CE([-d_r[j], -d_f[1..B]], 0)

    Its gradient with respect to every fake logit is <= 0: G pushes fake logits up.
    """
    return dual_contrastive_loss_d(fake_logits, real_logits)
