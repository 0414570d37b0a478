"""XMC-GAN's contrastive terms (methods.md "XMC-GAN", objectives; all weights 1 in the paper):

    D: hinge + word(real) + sentence(real)
    G: -mean D(fake) + word(fake) + sentence(fake) + image_D(fake, real) + image_pretrained(real, fake)

sentence(x) = contrastive(x_pool, Linear(sentence)) with the projection of the D logit (``DiscOutput.cond``);
word(x) = word–region loss between D's region features and the caption's words; image_D = contrastive on
D's pooled features of fakes and of the reals whose captions generated them; image_pretrained on an
ImageNet encoder's logits (``loss.xmc.image_encoder``). Negatives are the rest of the batch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cgantool.errors import ConfigError
from cgantool.losses import xmc_contrastive_loss, xmc_word_region_loss
from cgantool.terms import TERMS, Term, TermConfig


class XMCConfig(TermConfig):
    weight: float = Field(0.0, ge=0.0, description="XMC-GAN's contrastive losses, all scaled by this; 0 = off.")
    sentence: float = Field(1.0, ge=0.0, description="Sentence–image term (real in D, fake in G).")
    word: float = Field(1.0, ge=0.0, description="Word–region term (real in D, fake in G).")
    image: float = Field(1.0, ge=0.0, description="Image–image term on D features (G only).")
    image_pretrained: float = Field(1.0, ge=0.0, description="Image–image term on a pretrained encoder (G only).")
    image_encoder: Literal["auto", "resnet50", "vgg16", "none"] = Field(
        "auto", description="Pretrained encoder of the image–image term; 'auto' = whichever torchvision weights "
        "are present locally (resnet50, then vgg16), else none. Stored resolved."
    )
    temperature: float = Field(0.1, gt=0.0, description="Sentence–image and image–image temperature.")
    word_temperature: float = Field(0.02, gt=0.0, description="Word–region temperature (1 / gamma3).")
    rho1: float = Field(5.0, gt=0.0, description="Word–region attention sharpness (gamma1).")
    rho2: float = Field(5.0, gt=0.0, description="Word–region aggregation sharpness (gamma2).")


@TERMS.register("xmc")
class XMCTerm(Term):
    name = "xmc"
    key = "xmc"
    what = "XMC-GAN's contrastive losses"
    section = XMCConfig
    needs_real_in_g = True

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.model.conditioning != "text":
            raise ConfigError(f"loss.xmc ({cls.what}) needs model.conditioning = 'text'",
                              hint="use --preset xmcgan, or set loss.xmc.weight = 0")

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.encoder = None
        if cfg.image_pretrained > 0 and cfg.image_encoder not in ("none", "auto"):
            from cgantool.nets.image_encoders import PretrainedImageEncoder

            self.encoder = PretrainedImageEncoder(cfg.image_encoder)

    def _word(self, out, text):
        c = self.cfg
        return xmc_word_region_loss(out.local, text.words, text.mask, rho1=c.rho1, rho2=c.rho2,
                                    temperature=c.word_temperature)

    def _parts(self, out, text) -> dict:
        c, parts = self.cfg, {}
        if c.sentence > 0:
            parts["sent"] = c.sentence * xmc_contrastive_loss(out.h, out.cond, c.temperature)
        if c.word > 0:
            parts["word"] = c.word * self._word(out, text)
        return parts

    def d_loss(self, heads, real, fake, batch):
        return self._parts(real, batch.real_c)

    def g_loss(self, heads, fake, real, batch):
        c = self.cfg
        parts = self._parts(fake, batch.fake_c)
        if c.image > 0:
            parts["img"] = c.image * xmc_contrastive_loss(fake.h, real.h, c.temperature)
        if self.encoder is not None:
            self.encoder.to(batch.fake_img.device)
            parts["img_pre"] = c.image_pretrained * xmc_contrastive_loss(
                self.encoder(batch.real_img), self.encoder(batch.fake_img), c.temperature)
        return parts
