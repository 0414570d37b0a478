"""ContraGAN's term: the conditional contrastive (2C) loss on D embeddings and class proxies.

methods.md "ContraGAN": D adds lambda · L_2C(real embeddings, real labels); G adds lambda · L_2C(fake
embeddings, the labels the fakes were generated for). lambda = ``loss.cond_2c.weight`` (1.0), t = 1.0.
"""

from __future__ import annotations

from pydantic import Field

from cgantool.losses import contrastive_2c_loss, data_to_data_cross_entropy
from cgantool.nets import Contrastive2CHeads
from cgantool.terms import TERMS, Term, TermConfig, refuse_text


class Cond2CConfig(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="lambda of ContraGAN's 2C loss; 0 = off.")
    temperature: float = Field(1.0, gt=0.0)
    margin: float = Field(0.0, ge=0.0)
    embed_dim: int = Field(512, ge=1)


class D2DCEConfig(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="ReACGAN's D2D-CE weight (real in D, fake in G); 0 = off.")
    temperature: float = Field(0.5, gt=0.0)
    m_p: float = Field(0.98, description="Positive margin.")
    m_n: float = Field(0.02, description="Negative margin (StudioGAN: 1 - m_p).")
    embed_dim: int = Field(512, ge=1)


@TERMS.register("cond_2c")
class Cond2CTerm(Term):
    name = "cond_2c"
    key = "cond_2c"
    section = Cond2CConfig
    needs_labels = True  # checked (once) by Term.check, also after 'auto' conditioning is resolved
    carries_class = True  # the class information reaches D through this term, not a projection
    what = "ContraGAN's 2C loss"

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        refuse_text(cfg, cls.name)

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.heads_args = (ctx.feature_dims["h"], ctx.num_classes, cfg.embed_dim)

    def build_heads(self):
        return Contrastive2CHeads(*self.heads_args)

    def _loss(self, heads, out, labels):
        embed, proxy = heads(out.h, labels)  # [B, d], [B, d]
        return contrastive_2c_loss(embed, proxy, labels, temperature=self.cfg.temperature, margin=self.cfg.margin)

    def d_loss(self, heads, real, fake, batch):
        return self._loss(heads, real, batch.real_c)

    def g_loss(self, heads, fake, real, batch):
        return self._loss(heads, fake, batch.fake_c)


@TERMS.register("d2d_ce")
class D2DCETerm(Cond2CTerm):
    """ReACGAN's data-to-data cross-entropy on the same heads (embedding + class proxies): real in D, fake in G."""

    name = "d2d_ce"
    key = "d2d_ce"
    section = D2DCEConfig
    what = "ReACGAN's D2D-CE"

    def _loss(self, heads, out, labels):
        embed, proxy = heads(out.h, labels)
        c = self.cfg
        return data_to_data_cross_entropy(embed, proxy, labels, temperature=c.temperature, m_p=c.m_p, m_n=c.m_n)
