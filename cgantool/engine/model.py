"""Build G, D (backbone + term heads) and the loss terms from a RunConfig and the data description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cgantool.config import RunConfig
from cgantool.errors import ConfigError
from cgantool.nets import build_discriminator, build_generator
from cgantool.terms import BuildContext, Term, check_terms, enabled, enabled_terms
from cgantool.terms.adversarial import ADVERSARIAL, Adversarial


class Discriminator(nn.Module):
    """The D backbone plus the heads of the contrastive terms (all trained by the D optimizer)."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.backbone(x, y)


@dataclass
class GAN:
    G: nn.Module
    D: Discriminator
    adversarial: Adversarial
    terms: list[Term]
    num_classes: int  # 0 = unconditional

    def head(self, term: Term) -> nn.Module | None:
        return self.D.heads[term.name] if term.name in self.D.heads else None


def resolve_conditioning(cfg: RunConfig, data_info: dict[str, Any]) -> str:
    """'auto' → 'class' when the data has two or more classes, else 'none'. Errors on impossible choices."""
    has_classes = data_info.get("num_classes", 0) >= 2
    mode = cfg.model.conditioning
    if mode == "auto":
        return "class" if has_classes else "none"
    if mode == "class" and not has_classes:
        raise ConfigError(
            f"preset '{cfg.preset}' is class-conditional but the data '{data_info.get('source')}' has no class labels",
            hint="use labelled data (shapes, cifar10, a folder with one sub-folder per class) "
            "or set model.conditioning = 'none'",
        )
    return mode


def build_gan(cfg: RunConfig, data_info: dict[str, Any]) -> GAN:
    """Everything a run trains, built from the config alone (plus the data's resolution and classes)."""
    conditioning = resolve_conditioning(cfg, data_info)  # 'auto' → class / none
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"conditioning": conditioning})})
    check_terms(cfg)  # the terms' own checks (labels) on what is built, e.g. 'auto' on data without labels
    num_classes = data_info["num_classes"] if conditioning == "class" else 0
    resolution = int(data_info["resolution"])
    m = cfg.model
    d_kw: dict[str, Any] = dict(resolution=resolution, channels=m.d_channels or None, num_classes=num_classes)
    # conditional D = projection discriminator, unless a term (2C, D2D-CE) carries the class information
    class_term = any(term.carries_class for term in enabled(cfg.loss))
    if m.arch == "sngan":
        if class_term:
            d_kw["num_classes"] = 0
    elif m.arch == "xmcgan":
        d_kw["text_dim"] = _text_dim(data_info)
    else:
        d_kw["projection"] = num_classes > 0 and not class_term
        if m.arch == "biggan":
            d_kw["attention_resolution"] = m.attention_resolution or None  # 0 = half the image size
    G = make_generator(cfg, data_info)
    backbone = build_discriminator(m.arch, **d_kw)
    ctx = BuildContext(
        feature_dims=dict(backbone.feature_dims), num_classes=num_classes, resolution=resolution, data_info=data_info
    )
    terms = enabled_terms(cfg.loss, ctx)
    heads = {t.name: h for t in terms if (h := t.build_heads()) is not None}
    return GAN(G=G, D=Discriminator(backbone, heads), adversarial=ADVERSARIAL.get(cfg.loss.adversarial),
               terms=terms, num_classes=num_classes)


def _num_classes(cfg: RunConfig, data_info: dict[str, Any]) -> int:
    return data_info["num_classes"] if resolve_conditioning(cfg, data_info) == "class" else 0


def make_generator(cfg: RunConfig, data_info: dict[str, Any]) -> nn.Module:
    """G alone, as ``build_gan`` builds it (sample / eval / interpolate need nothing else)."""
    m = cfg.model
    kw: dict[str, Any] = dict(resolution=int(data_info["resolution"]), z_dim=m.z_dim, channels=m.g_channels or None,
                              num_classes=_num_classes(cfg, data_info))
    if m.arch == "sngan":
        kw.update(self_attention=m.g_self_attention, upsample=m.upsample)
    elif m.arch == "xmcgan":
        kw["text_dim"] = _text_dim(data_info)
    elif m.arch == "biggan":
        kw.update(shared_dim=m.shared_dim, attention_resolution=m.attention_resolution or None)
    return build_generator(m.arch, **kw)


def _text_dim(data_info: dict[str, Any]) -> int:
    if "text" not in data_info:
        raise ConfigError("a text-to-image model needs its text encoder's description (data_info['text'])",
                          hint="this checkpoint or run was not made by a text-conditional training run")
    return int(data_info["text"]["dim"])


def load_generator(ckpt, ema: bool = True, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild G from a checkpoint's stored config and load its weights (the EMA copy when there is one).

    The stored config is first built on the ``meta`` device (shapes only, nothing allocated) and compared with the
    tensors the file holds, so edited metadata (num_classes, z_dim, widths) can never ask for gigabytes, and a
    renamed, missing or reshaped tensor is one CheckpointError. Non-finite weights are refused too: such a G only
    draws black or garbage images.
    """
    from cgantool.checkpoint import check_module_tensors, nonfinite_tensors
    from cgantool.errors import CgantoolError, CheckpointError

    prefix = "G_ema" if ema and ckpt.has("G_ema") else "G"
    try:
        with torch.device("meta"):
            shell = make_generator(ckpt.config, ckpt.data_info)
    except CgantoolError as e:
        raise CheckpointError(f"{ckpt.path}: its stored config does not build a generator ({e.message})",
                              hint=e.hint or "the file was damaged or edited") from None
    except (RuntimeError, ValueError, TypeError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{ckpt.path}: its stored config does not build a generator ({e})",
                              hint="the file was damaged or edited") from None
    check_module_tensors(ckpt, prefix, shell)
    G = make_generator(ckpt.config, ckpt.data_info)
    G.load_state_dict(ckpt.tensors(prefix))
    if prefix == "G_ema":  # spectral norm's u, v for the averaged weights (older checkpoints averaged them)
        from cgantool.ema import refresh_spectral_norm

        refresh_spectral_norm(G, iterations=50)
    bad = nonfinite_tensors(G)
    if bad:
        other = prefix == "G_ema" and ckpt.has("G") and not any(
            not torch.isfinite(v).all() for v in ckpt.tensors("G").values() if v.is_floating_point())
        raise CheckpointError(
            f"{ckpt.path}: the {prefix} weights hold NaN or inf ({len(bad)} tensors, e.g. {prefix}.{bad[0]}): "
            "every image would be black or noise",
            hint="pass --no-ema (the raw G is finite)" if other else
            "training diverged before this checkpoint; use an earlier RUN/checkpoints/step_*.safetensors",
        )
    return G.to(device).eval()


def resolve_for_data(cfg: RunConfig, data_info: dict[str, Any]) -> RunConfig:
    """The run's config with every choice that depends on the data or the machine made, once, before the engine
    is built: ``model.conditioning = 'auto'`` → class / none, and XMC-GAN's ``loss.xmc.image_encoder = 'auto'`` →
    the pretrained network whose weights are present (or none). The result is what the checkpoint records."""
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(
        update={"conditioning": resolve_conditioning(cfg, data_info)})})
    xmc = getattr(cfg.loss, "xmc", None)
    if cfg.model.conditioning == "text" and xmc is not None:
        from cgantool.nets.image_encoders import resolve_image_encoder

        resolved = resolve_image_encoder(xmc.image_encoder if xmc.image_pretrained > 0 else "none")
        if resolved != xmc.image_encoder:
            loss = cfg.loss.model_copy(update={"xmc": xmc.model_copy(update={"image_encoder": resolved})})
            cfg = cfg.model_copy(update={"loss": loss})
    return cfg
