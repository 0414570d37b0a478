"""Loss terms: the adversarial loss and the contrastive terms a preset combines.

A preset picks one adversarial loss (``loss.adversarial``) and any contrastive terms, each switched on by a
positive ``loss.<name>.weight``. A term may own heads that sit on the discriminator (trained with D) and
returns *unweighted* losses (a tensor, or a dict of named parts); the engine weighs, sums, back-propagates and
logs them under ``term.key`` (parts as ``{key}_{part}``).

A term owns its config: ``section`` is its pydantic model (a ``TermConfig``, validated as ``loss.<name>``: the
config's ``LossConfig`` is assembled from the registered terms, see ``loss_config``), and ``check(cfg)`` refuses the
run configs it cannot train with (``needs_labels = True`` already refuses unconditional models).

Adding a method = its loss function (``cgantool.losses``), its term module here (the ``TermConfig`` section, the
``Term`` subclass with ``check`` / ``d_loss`` / ``g_loss``, registered with ``@TERMS.register(name)``), one import
line at the bottom of this file, its preset TOML (``presets/``), and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from torch import nn

from cgantool.errors import ConfigError
from cgantool.registry import Registry, registered_name


class TermConfig(BaseModel):
    """A term's config section, ``loss.<name>``: strict (unknown keys are errors); ``weight`` 0 = off."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    weight: float = Field(0.0, ge=0.0, description="Weight of the term; 0 = off.")


@dataclass
class BuildContext:
    """What a term may need to build its heads and check compatibility."""

    feature_dims: dict[str, int]  # the D backbone's feature sizes: {"h": C, "local": C_l}
    num_classes: int  # 0 = unconditional
    resolution: int
    data_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """One step's conditioning: real labels (or captions, ``TextCond``) and those the fakes were generated for
    (None = unconditional), plus the images (as D saw them, before augmentation)."""

    real_c: Any
    fake_c: Any
    real_img: torch.Tensor | None = None
    fake_img: torch.Tensor | None = None
    real_input: torch.Tensor | None = None  # the real batch before augmentation, requiring grad, when a term wants it
    d_update: int = 0  # D steps: the D update this is, counted over the run (lazy terms: loss.r1.every)
    # per-row values of this process → the global batch's (multi-process runs with train.gather; the local rows keep
    # their gradient), for a term computing per-row values itself (R1's gradient norms of this rank's reals)
    gather_rows: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda rows: rows)


class Term:
    """Base class of a contrastive term (see the module docstring)."""

    name: ClassVar[str]  # config section under loss.
    key: ClassVar[str]  # short name in logs
    what: ClassVar[str] = ""  # what errors call it, e.g. "ContraGAN's 2C loss"
    section: ClassVar[type[TermConfig]] = TermConfig  # its config section, loss.<name>
    needs_labels: ClassVar[bool] = False  # True: refused when the model is unconditional
    needs_real_in_g: ClassVar[bool] = False
    carries_class: ClassVar[bool] = False  # True: D gets no projection term, this term conditions it

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Raise a ConfigError when this term (enabled: weight > 0) cannot train with the RunConfig ``cfg``.

        Run when the config is validated, and again by ``build_gan`` with ``model.conditioning`` resolved
        ('auto' on data without labels = 'none'). Subclasses add their own conditions (and call this one).
        """
        if cls.needs_labels and cfg.model.conditioning == "none":
            raise ConfigError(
                f"loss.{cls.name} ({cls.what or cls.name}) needs class labels, but the model is unconditional "
                "(model.conditioning = 'none', or 'auto' on data without labels)",
                hint="use labelled data (shapes, cifar10, a folder with one sub-folder per class) with "
                f"model.conditioning = 'class' or 'auto', or set loss.{cls.name}.weight = 0",
            )

    def __init__(self, cfg: Any, ctx: BuildContext):
        self.cfg = cfg
        self.weight = float(cfg.weight)

    def build_heads(self) -> nn.Module | None:
        return None

    def wants_real_input_grad(self, d_update: int) -> bool:
        """True: at D update ``d_update`` (counted over the run) the real batch goes into D requiring grad, as
        ``Batch.real_input`` (R1)."""
        return False

    def d_loss(self, heads: nn.Module | None, real, fake, batch: Batch) -> torch.Tensor | None:
        return None

    def g_loss(self, heads: nn.Module | None, fake, real, batch: Batch) -> torch.Tensor | None:
        return None


TERMS: Registry[type[Term]] = Registry("loss term")


def refuse_text(cfg: Any, name: str) -> None:
    """For a term's ``check``: the term has no text-to-image form (InfoMax, 2C, D2D-CE)."""
    if cfg.model.conditioning == "text":
        raise ConfigError(f"loss.{name} is not available for text-to-image (xmcgan) runs",
                          hint=f"set loss.{name}.weight = 0")


def loss_config() -> type[BaseModel]:
    """The config's ``LossConfig``, assembled from the registries: ``loss.adversarial`` (a name in ``ADVERSARIAL``)
    and one section per registered term (``loss.<name>``: its ``Term.section``), in registration order."""
    from cgantool.terms.adversarial import ADVERSARIAL

    sections: dict[str, Any] = {}
    for name, term in TERMS.items():
        section = getattr(term, "section", None)
        if getattr(term, "name", None) != name or not (isinstance(section, type) and issubclass(section, TermConfig)):
            raise TypeError(f"loss term '{name}' needs name = '{name}' and a TermConfig subclass as its section")
        sections[name] = (section, section())
    adversarial = registered_name("adversarial loss", lambda: [name for name, _ in ADVERSARIAL.items()])
    return create_model("LossConfig", __config__=TermConfig.model_config, __module__="cgantool.config",
                        adversarial=(adversarial, "hinge"), **sections)


def follow_terms(model: type[BaseModel]) -> None:
    """Keep ``model.loss`` (the config's RunConfig) the ``loss_config()`` of the registries: rebuilt after every
    later register / unregister, so a plugin's (or a test's) term validates as ``loss.<name>`` as built-in ones do."""

    def rebuild() -> None:
        loss = loss_config()
        model.model_fields["loss"] = FieldInfo.from_annotated_attribute(loss, loss())
        model.model_rebuild(force=True)

    TERMS.watch(rebuild)


def enabled(loss_cfg: Any) -> list[type[Term]]:
    """The registered terms whose config section has weight > 0, sorted by name (the order of D's heads, hence of
    the parameters in existing checkpoints and optimizer states)."""
    return [TERMS.get(name) for name in TERMS.names() if getattr(loss_cfg, name).weight > 0]


def check_terms(cfg: Any) -> None:
    """Every enabled term's ``check`` on the RunConfig ``cfg`` (the first refusal is raised)."""
    for term in enabled(cfg.loss):
        term.check(cfg)


def enabled_terms(loss_cfg: Any, ctx: BuildContext) -> list[Term]:
    """Instantiate every registered term whose config section has weight > 0."""
    return [term(getattr(loss_cfg, term.name), ctx) for term in enabled(loss_cfg)]


# Every term module registers itself on import (after TERMS exists); the order here is the order of the
# sections in LossConfig (and in `cgantool config show`).
from cgantool.terms import infomax  # noqa: E402,F401,I001
from cgantool.terms import cond_2c  # noqa: E402,F401,I001
from cgantool.terms import xmc  # noqa: E402,F401,I001
from cgantool.terms import r1  # noqa: E402,F401,I001
