"""InfoMax-GAN's local–global InfoNCE (Lee et al., WACV 2021), as Mimicry's ``infonce_loss`` computes it."""

from __future__ import annotations

import torch

from cgantool.losses._util import fp32


@fp32
def infonce_local_global_loss(local_feats: torch.Tensor, global_feats: torch.Tensor) -> torch.Tensor:
    """InfoNCE between each image's global feature and its own local features, other images' as negatives.

    local_feats [B, R, L]: projected local features at L positions; global_feats [B, R]: projected global.
    S[i, j, k] = global_i · local_j[:, k]. For anchor (i, k) the positive is S[i, i, k]; the negatives are
    S[i, j, k'] for every j != i and every k'; the anchor's own L positions stay in the softmax pinned at the
    constant logit -10 (Mimicry's masking, methods.md "InfoMax-GAN"):

        loss = -1/(B L) sum_{i,k} log( e^{S_iik} / (e^{S_iik} + sum_{j!=i, k'} e^{S_ijk'} + L e^{-10}) )

    Mimicry masks the whole diagonal block S[i, i, :] (the positive's own position included), hence L
    pinned entries. Source: Mimicry ``torch_mimicry/nets/infomax_gan/infomax_gan_base.py``, ``infonce_loss``.
    The negatives' log-sum-exp is shared by the L anchors of image i, so it is one logsumexp over the
    (B, B·L) score matrix; (B, L, 1 + B·L) is never built. Returns a scalar.
    """
    B, _, L = local_feats.shape
    scores = torch.einsum("ir,jrl->ijl", global_feats, local_feats)  # [B, B, L]
    positive = scores.diagonal(dim1=0, dim2=1).transpose(0, 1)  # [B, L]: S[i, i, k]
    own = torch.eye(B, dtype=torch.bool, device=scores.device)[:, :, None].expand(B, B, L)
    negatives = scores.masked_fill(own, -10.0).reshape(B, B * L)  # own positions → constant -10
    log_neg = torch.logsumexp(negatives, dim=1, keepdim=True)  # [B, 1], the same for every k of anchor i
    return (torch.logaddexp(positive, log_neg) - positive).mean()
