"""InfoMax-GAN's term: local–global InfoNCE on D features, real in the D step and fake in the G step.

methods.md "InfoMax-GAN": D adds beta · NCE(real), G adds alpha · NCE(fake) back-propagated through D's
heads; alpha = beta = ``loss.infomax.weight`` (0.2 in the paper).
"""

from __future__ import annotations

from pydantic import Field

from cgantool.errors import ConfigError
from cgantool.losses import infonce_local_global_loss
from cgantool.nets import InfoMaxHeads
from cgantool.terms import TERMS, Term, TermConfig, refuse_text


class InfoMaxConfig(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="alpha = beta of InfoMax-GAN; 0 = off.")
    rkhs_dim: int = Field(1024, ge=1)


@TERMS.register("infomax")
class InfoMaxTerm(Term):
    name = "infomax"
    key = "infonce"
    what = "InfoMax-GAN's InfoNCE"
    section = InfoMaxConfig

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        refuse_text(cfg, cls.name)

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        if ctx.feature_dims.get("local") is None:
            raise ConfigError("loss.infomax needs a discriminator with local features", hint="use model.arch = 'sngan'")
        self.local_channels = ctx.feature_dims["local"]
        self.global_channels = ctx.feature_dims["h"]

    def build_heads(self):
        return InfoMaxHeads(self.local_channels, self.global_channels, rkhs_dim=self.cfg.rkhs_dim)

    def _nce(self, heads, out):
        local_proj, global_proj = heads(out.local, out.h)  # [B, R, L], [B, R]
        return infonce_local_global_loss(local_proj, global_proj)

    def d_loss(self, heads, real, fake, batch):
        return self._nce(heads, real)

    def g_loss(self, heads, fake, real, batch):
        return self._nce(heads, fake)
