"""Loss functions on plain tensors, usable without the rest of cgantool.

Each is vectorised, numerically stable (log-sum-exp) and computed in float32 even under bf16 autocast.
"""

from cgantool.losses.adversarial import hinge_loss_d, hinge_loss_g, nonsaturating_loss_d, nonsaturating_loss_g
from cgantool.losses.contrastive_2c import contrastive_2c_loss
from cgantool.losses.d2d_ce import data_to_data_cross_entropy
from cgantool.losses.dual_contrastive import dual_contrastive_loss_d, dual_contrastive_loss_g
from cgantool.losses.infonce import infonce_local_global_loss
from cgantool.losses.r1 import r1_penalty_rows
from cgantool.losses.xmc import word_region_scores, xmc_contrastive_loss, xmc_word_region_loss

__all__ = [
    "contrastive_2c_loss",
    "data_to_data_cross_entropy",
    "dual_contrastive_loss_d",
    "dual_contrastive_loss_g",
    "hinge_loss_d",
    "hinge_loss_g",
    "infonce_local_global_loss",
    "nonsaturating_loss_d",
    "nonsaturating_loss_g",
    "r1_penalty_rows",
    "word_region_scores",
    "xmc_contrastive_loss",
    "xmc_word_region_loss",
]
