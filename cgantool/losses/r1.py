"""The R1 gradient penalty (Mescheder et al., "Which Training Methods for GANs do actually Converge?", ICML 2018;
StyleGAN2's D regulariser, whose ``r1_gamma`` is our term weight)."""

from __future__ import annotations

import torch


def r1_penalty_rows(real_logits: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """Per real image i, 1/2 · ||∇_x D(x_i)||²: [B] float32, differentiable (double backward) so D can minimise it.

    real_logits: D's outputs on ``real_input``, whose ``requires_grad`` was set before D's forward. Rows of the
    logits that are not functions of ``real_input`` (other processes' rows, gathered) add nothing.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_input, create_graph=True)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1)
