"""ReACGAN's data-to-data cross-entropy, D2D-CE (Kang et al., "Rebooting ACGAN", NeurIPS 2021), as
StudioGAN's ``Data2DataCrossEntropyLoss`` (``src/utils/losses.py``) computes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cgantool.losses._util import fp32


@fp32
def data_to_data_cross_entropy(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor,
                               temperature: float = 0.5, m_p: float = 0.98, m_n: float = 0.02,
                               subtract_row_max: bool = True) -> torch.Tensor:
    """D2D-CE. embed [B, D] sample embeddings, proxy [B, D] the proxy of each sample's own label, labels [B].

    With s the cosine similarity, t the temperature and N(i) = {j : y_j != y_i} (false negatives, i.e.
    samples of the same class, are removed; so are proxies of other classes):

        a_i   = max(m_p - s(e_i, p_i), 0) / t                    (positive attraction, margin m_p)
        n_ij  = max(s(e_i, e_j) - m_n, 0) / t - M_i              (negative repulsion, margin m_n)
        L     = (1/B) sum_i  a_i + log( exp(-a_i) + sum_{j in N(i)} exp(n_ij) )

    M_i = max_{j != i} (s(e_i, e_j) - m_n) / t, taken before the ReLU over every other sample (same
    class included) and detached. StudioGAN labels it "for numerical stability", but since it shifts the
    negatives and not the positive it scales the negative sum by exp(-M_i) and so changes the loss;
    ``subtract_row_max=False`` gives the paper's equation (M_i = 0). StudioGAN hard-wires m_n = 1 - m_p;
    its ReACGAN configs use t = 0.5, m_p = 0.98 (the defaults here). A sample with no other-class
    sample in the batch contributes 0. Returns a scalar (computed with logsumexp).
    """
    e = F.normalize(embed, dim=1)
    p = F.normalize(proxy, dim=1)
    B = e.shape[0]
    not_self = ~torch.eye(B, dtype=torch.bool, device=e.device)
    other_class = (labels[:, None] != labels[None, :]) & not_self  # [B, B]
    sim = (e @ e.T - m_n) / temperature  # [B, B]
    neg = F.relu(sim)
    if subtract_row_max:
        lowest = torch.finfo(sim.dtype).min
        neg = neg - sim.detach().masked_fill(~not_self, lowest).amax(dim=1, keepdim=True)
    neg = neg.masked_fill(~other_class, float("-inf"))  # [B, B]
    attract = F.relu((m_p - (e * p).sum(dim=1, keepdim=True)) / temperature)  # [B, 1]
    repel = torch.logsumexp(torch.cat([-attract, neg], dim=1), dim=1)  # [B]
    return (attract.squeeze(1) + repel).mean()
