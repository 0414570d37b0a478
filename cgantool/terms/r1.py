"""The R1 gradient penalty on D at the real images: D adds weight · mean_i 1/2 ||∇_x D(x_i)||², the gradient
taken with respect to the real batch before DiffAugment (through it), as StudioGAN's ``cal_r1_reg`` (times its
``r1_lambda``) and StyleGAN2-ADA do; ``weight`` = StyleGAN2's ``r1_gamma``. ``every = 1`` (the default) computes it
on every D update, as StudioGAN applies it to its non-StyleGAN models; ``every = N`` is StyleGAN2's lazy
regularisation (its default 16): R1 on one D update in N, weighted N x, which saves most of its double backward.

``dualcontrast`` turns it on: the paper trained its loss on StyleGAN2, whose D always carries R1; without it the
dual contrastive loss (a softmax over logits, unchanged by a common shift) let D's features grow and its logits
drift until G ignored its class (RESULTS.md "Class accuracy of samples").
"""

from __future__ import annotations

from pydantic import Field

from cgantool.losses import r1_penalty_rows
from cgantool.terms import TERMS, Term, TermConfig


class R1Config(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="gamma of the R1 penalty on real images (StyleGAN2's r1_gamma); "
                                                   "0 = off.")
    every: int = Field(1, ge=1, description="R1 on one D update in N, weighted N x (StyleGAN2's lazy "
                                            "regularisation: 16); 1 = every D update.")


@TERMS.register("r1")
class R1Term(Term):
    name = "r1"
    key = "r1"
    what = "the R1 gradient penalty"
    section = R1Config

    def wants_real_input_grad(self, d_update):
        return d_update % self.cfg.every == 0

    def d_loss(self, heads, real, fake, batch):
        if batch.real_input is None or not self.wants_real_input_grad(batch.d_update):  # not this one (every > 1)
            return None
        # this process's rows; with train.gather the mean is over every rank's (the logits were gathered, the input
        # gradient is of this rank's reals only)
        return self.cfg.every * batch.gather_rows(r1_penalty_rows(real.logits, batch.real_input)).mean()
