"""The state of one run and its two steps: D and G updates with the methods' terms, mixed precision, EMA
hooks, the run's checkpoint. ``build_trainer`` makes one from a resolved config (and a checkpoint on resume).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from cgantool.augment import diff_augment, parse_policy, random_hflip
from cgantool.checkpoint import Checkpoint, save_checkpoint
from cgantool.config import RunConfig
from cgantool.data import ImageDataset
from cgantool.data.batches import RealBatches, to_float
from cgantool.ema import make_ema
from cgantool.engine import dist
from cgantool.engine.conditions import Conditions, conditions_for
from cgantool.engine.dist import DistInfo
from cgantool.engine.model import GAN, build_gan
from cgantool.terms import Batch


@dataclass
class Trainer:
    """The state of one run: model, optimizers, data, generators."""

    cfg: RunConfig
    gan: GAN
    G_ema: torch.nn.Module | None
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    reals: RealBatches
    noise: torch.Generator
    device: torch.device
    augment: list[str]
    hflip: bool
    cond: Conditions = field(default_factory=Conditions)  # class labels, captions or nothing (engine/conditions.py)
    dist: DistInfo = field(default_factory=DistInfo)
    channels_last: bool = False  # NHWC images (G and D were converted by build_trainer)
    _kept: Any = field(default=None, repr=False)  # train.reuse_fake: fakes of the last D step for the G step
    d_updates: int = 0  # D updates so far in the run (restored on resume): the clock of lazy terms (loss.r1.every)

    def autocast(self):
        """bf16 autocast of G and D forwards where configured (train.amp on CUDA, train.cpu_amp on CPU)."""
        if self.cfg.train.amp_on(self.device.type) == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # Every draw is made for the global batch and sliced (engine/dist.py): N ranks = one process.

    @property
    def rows(self) -> slice | None:
        return self.dist.local_slice(self.cfg.train.batch_size) if self.dist.enabled else None

    @property
    def total_rows(self) -> int | None:
        return self.cfg.train.batch_size if self.dist.enabled else None

    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.gan.G.z_dim, device=self.device, generator=self.noise)

    def local(self, value):
        return dist.slice_rows(value, self.dist)

    def real_batch(self) -> tuple[torch.Tensor, Any]:
        """Real images in [-1, 1] (this rank's rows) and the global batch's condition (``self.cond``)."""
        images, labels, idx = self.reals.next(self.rows)
        x = to_float(images)  # [b, 3, R, R] in [-1, 1]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.hflip:
            x = random_hflip(x, self.noise, self.rows, self.total_rows)
        return x, self.cond.real(labels, idx, self.reals, self.noise, self.dist.enabled)

    @staticmethod
    def _add(losses: dict[str, torch.Tensor], term, value) -> None:
        if isinstance(value, dict):
            for part, v in value.items():
                losses[f"{term.key}_{part}"] = term.weight * v
        elif value is not None:
            losses[term.key] = term.weight * value

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        if not self.augment:
            return x
        return diff_augment(x, self.augment, self.noise, self.rows, self.total_rows)

    def gathered(self, *values):
        """The global batch for the losses (``train.gather``); local values otherwise."""
        if self.dist.enabled and self.cfg.train.gather:
            return dist.gather_many(values, self.dist)
        return values

    def conds(self, real_c, fake_c):
        """The conditions the losses see: global with gather, else this rank's rows."""
        if self.dist.enabled and not self.cfg.train.gather:
            return self.local(real_c), self.local(fake_c)
        return real_c, fake_c

    def step_optimizer(self, opt: torch.optim.Optimizer, total: torch.Tensor, params) -> None:
        opt.zero_grad(set_to_none=True)
        total.backward()
        # gather: every rank computed the same global loss through its own slice → sum; else average
        dist.all_reduce_grads(params, self.dist, average=not self.cfg.train.gather)
        opt.step()

    def d_step(self, keep_fake: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One D update. ``keep_fake`` (train.reuse_fake, last D step of a full step): G runs with gradients
        and the G step reuses these fakes instead of a new G forward."""
        gan, B = self.gan, self.cfg.train.batch_size
        real_img, real_c = self.real_batch()
        fake_c = self.cond.fake(B, real_c, self.noise, self.device)  # (XMC-GAN: the real batch's captions)
        z = self.sample_z(B)
        with self.autocast():
            with torch.set_grad_enabled(keep_fake):
                fake_img = gan.G(self.local(z), self.local(fake_c))
            if keep_fake:
                self._kept = (fake_img, fake_c, real_img, real_c)
                fake_img = fake_img.detach()
            real_in = None  # R1: D's gradient at the reals, taken before augmentation (StudioGAN, StyleGAN2-ADA)
            if any(term.wants_real_input_grad(self.d_updates) for term in gan.terms):
                real_img = real_in = real_img.detach().requires_grad_(True)
            real = gan.D(self.aug(real_img), self.local(real_c))
            fake = gan.D(self.aug(fake_img), self.local(fake_c))
            real, fake, real_img_l, fake_img_l = self.gathered(real, fake, real_img, fake_img)
            real_c, fake_c = self.conds(real_c, fake_c)
            losses = {"adv": gan.adversarial.d(real.logits, fake.logits)}
            batch = Batch(real_c=real_c, fake_c=fake_c, real_img=real_img_l, fake_img=fake_img_l, real_input=real_in,
                          gather_rows=lambda rows: self.gathered(rows)[0], d_update=self.d_updates)
            for term in gan.terms:
                self._add(losses, term, term.d_loss(gan.head(term), real, fake, batch))
        total = sum(losses.values())
        self.step_optimizer(self.opt_D, total, self.d_params)
        self.d_updates += 1
        return losses, total

    def g_step(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        gan, B = self.gan, self.cfg.train.batch_size
        needs_real = gan.adversarial.needs_real_in_g or any(t.needs_real_in_g for t in gan.terms)
        kept, self._kept = self._kept, None
        if kept is not None:  # train.reuse_fake: the last D step's fakes (and their reals), graph attached
            fake_img, fake_c, real_img, real_c = kept
        else:
            real_img, real_c = self.real_batch() if self.cond.fakes_from_reals else (None, None)
            fake_c = self.cond.fake(B, real_c, self.noise, self.device)
            z = self.sample_z(B)
            if needs_real and real_img is None:
                real_img, real_c = self.real_batch()
        gan.D.requires_grad_(False)  # gradients flow through D to G, D's own are not needed
        try:
            with self.autocast():
                real = None
                if needs_real:
                    with torch.no_grad():
                        real = gan.D(self.aug(real_img), self.local(real_c))
                if kept is None:
                    fake_img = gan.G(self.local(z), self.local(fake_c))
                fake = gan.D(self.aug(fake_img), self.local(fake_c))
                real, fake, real_img_l, fake_img_l = self.gathered(real, fake, real_img, fake_img)
                real_c, fake_c = self.conds(real_c, fake_c)
                losses = {"adv": gan.adversarial.g(real.logits if real is not None else None, fake.logits)}
                batch = Batch(real_c=real_c, fake_c=fake_c, real_img=real_img_l, fake_img=fake_img_l)
                for term in gan.terms:
                    self._add(losses, term, term.g_loss(gan.head(term), fake, real, batch))
            total = sum(losses.values())
            self.step_optimizer(self.opt_G, total, self.g_params)
        finally:
            gan.D.requires_grad_(True)
        return losses, total

    @property
    def d_params(self) -> list[torch.nn.Parameter]:
        return list(self.gan.D.parameters())

    @property
    def g_params(self) -> list[torch.nn.Parameter]:
        return list(self.gan.G.parameters())

    @property
    def G_sampling(self) -> torch.nn.Module:
        """The generator samples and evaluations use: the EMA copy when there is one."""
        return self.G_ema if self.G_ema is not None else self.gan.G

    def save(self, path: Path, *, step: int, data_info: dict[str, Any], metrics: dict[str, Any], best_fid: float,
             text_net: torch.nn.Module | None = None) -> None:
        """Everything a bit-exact resume needs, in one safetensors file (written atomically)."""
        modules = {"G": self.gan.G, "D": self.gan.D}
        if self.G_ema is not None:
            modules["G_ema"] = self.G_ema
        if text_net is not None:
            modules["text_encoder"] = text_net
        save_checkpoint(
            path, config=self.cfg, step=step, data_info=data_info, modules=modules,
            optimizers={"opt_G": self.opt_G, "opt_D": self.opt_D}, rng={"noise": self.noise.get_state()},
            metrics=metrics, state={"data_position": self.reals.position, "best_fid": best_fid},
        )

    def set_lr(self, step: int) -> float:
        """Linear decay to 0 at train.steps (Mimicry), or constant. Returns the factor applied."""
        factor = 1.0 - step / self.cfg.train.steps if self.cfg.optim.lr_decay == "linear" else 1.0
        for opt, base in ((self.opt_G, self.cfg.optim.lr_g), (self.opt_D, self.cfg.optim.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        return factor


def _make_optimizer(params, lr: float, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    betas = (float(cfg.optim.beta1), float(cfg.optim.beta2))
    kw: dict[str, Any] = {"foreach": True} if device.type == "cpu" else {"fused": True}
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=cfg.optim.eps, **kw)


def setup_text(cfg: RunConfig, data: ImageDataset, device: torch.device, ckpt: Checkpoint | None,
               log: Callable[[str], None] | None = None, allow_download: bool = False):
    """The text encoder (pretrained now, or the checkpoint's on --resume; an hf: model named by the checkpoint is
    fetched only with ``allow_download``) and the dataset's caption feature bank."""
    from cgantool.text.bank import TextBank
    from cgantool.text.encoders import load_text_encoder
    from cgantool.text.setup import prepare_text

    if ckpt is not None:
        encoder = load_text_encoder(ckpt, device, allow_download=allow_download)
        return encoder, TextBank(data.captions or [], encoder, device)
    return prepare_text(cfg, data, device, log)


def build_trainer(cfg: RunConfig, data: ImageDataset, device: torch.device, ckpt: Checkpoint | None,
                  data_info: dict[str, Any] | None = None, dist_info: DistInfo | None = None,
                  compile: bool = False, channels_last: bool = False, text_bank=None) -> Trainer:
    """A trainer for ``cfg`` (resolved: ``engine.model.resolve_for_data``), restored from ``ckpt`` on resume;
    ``text_bank``: the caption features of a text-to-image run."""
    dist_info = dist_info or DistInfo()
    torch.manual_seed(cfg.train.seed)  # weight init
    gan = build_gan(cfg, data_info or data.info())
    gan.G.to(device)
    gan.D.to(device)
    if dist_info.enabled:
        dist.broadcast_module(gan.G, dist_info)
        dist.broadcast_module(gan.D, dist_info)
        if cfg.train.sync_bn:
            dist.sync_batchnorm(gan.G)
            dist.sync_batchnorm(gan.D)
    G_ema = make_ema(gan.G) if cfg.train.ema_decay > 0 else None
    opt_G = _make_optimizer(gan.G.parameters(), cfg.optim.lr_g, cfg, device)
    opt_D = _make_optimizer(gan.D.parameters(), cfg.optim.lr_d, cfg, device)
    noise = torch.Generator(device=device).manual_seed(cfg.train.seed)
    position, d_updates = 0, 0
    if ckpt is not None:  # every part checked first: a damaged file is one CheckpointError naming the part
        from cgantool.checkpoint import restore_training_state

        d_updates = ckpt.step * cfg.train.d_steps_per_g_step
        position = restore_training_state(ckpt, gan, G_ema, opt_G, opt_D, noise)
    reals = RealBatches(data, cfg.train.batch_size, seed=cfg.train.seed, device=device, position=position)
    cond = conditions_for(gan.num_classes, text_bank)
    if channels_last:
        for m in (gan.G, gan.D) + ((G_ema,) if G_ema is not None else ()):
            m.to(memory_format=torch.channels_last)
    if compile:
        # nn.Module.compile: in place, state_dict keys unchanged. Only G: D's spectral norm updates u and v in
        # place at each of its forwards (real, fake) before one backward, which compiled graphs reject.
        gan.G.compile()
    return Trainer(
        cfg=cfg, gan=gan, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, reals=reals, noise=noise, device=device,
        augment=parse_policy(cfg.train.diffaug), hflip=cfg.train.hflip and (data.hflip_safe or not cond.flips_need_check),
        dist=dist_info, channels_last=channels_last, cond=cond, d_updates=d_updates,
    )
