"""THE training loop. Methods compute losses; the engine owns backward, optimizer steps, mixed precision,
EMA, the NaN stop, Ctrl-C and checkpoints. Read it top to bottom.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cgantool.augment import diff_augment, parse_policy, random_hflip
from cgantool.checkpoint import Checkpoint, atomic_write, save_checkpoint, unflatten_optimizer
from cgantool.config import RunConfig, config_to_dict, to_toml
from cgantool.data import ImageDataset, load_dataset
from cgantool.data.batches import RealBatches, to_float
from cgantool.ema import make_ema, update_ema
from cgantool.engine import dist as D_
from cgantool.engine.dist import DistInfo
from cgantool.engine.model import GAN, build_gan, resolve_conditioning
from cgantool.engine import run_dir
from cgantool.errors import ConfigError, Interrupted, TrainingError, warn
from cgantool.sampling import default_labels, generate, latents, save_grid
from cgantool.terms import Batch


@dataclass
class RunOptions:
    """Runtime options: they never change what is computed, so they are not part of RunConfig."""

    out: Path
    device: str = "auto"
    resume: bool = False
    force: bool = False
    progress: bool = True
    console: Any = None  # rich Console on stderr
    compile: bool = False  # torch.compile G and D (in place: checkpoints keep their keys)
    channels_last: bool | None = None  # NHWC memory format for G, D and images; None = on for CPUs (measured 1.6-2.2x)
    hold_signals: bool = False  # the process ends with the run (CLI): after a stop signal, later ones are ignored
    allow_download: bool = False  # on resume, the run's hf: text encoder may be fetched (else local files only)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device '{spec}'", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{spec}' requested but CUDA is not available", hint="use --device cpu or auto")
    return device


# ----------------------------------------------------------------------------------------------
# Steps


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
    text: Any = None  # TextBank of a text-to-image run: one caption per real image per step
    dist: DistInfo = field(default_factory=DistInfo)
    channels_last: bool = False  # NHWC images (G and D were converted by build_trainer)
    _kept: Any = field(default=None, repr=False)  # train.reuse_fake: fakes of the last D step for the G step

    @property
    def text_conditioned(self) -> bool:
        return self.text is not None

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

    def sample_fake_c(self, n: int) -> torch.Tensor | None:
        """Labels for the fakes of the global batch (all ranks draw the same; see ``local``)."""
        if self.gan.num_classes == 0:
            return None
        return torch.randint(self.gan.num_classes, (n,), device=self.device, generator=self.noise)

    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.gan.G.z_dim, device=self.device, generator=self.noise)

    def local(self, value):
        return D_.slice_rows(value, self.dist)

    def real_batch(self) -> tuple[torch.Tensor, Any]:
        """Real images in [-1, 1] (this rank's rows) and the global batch's condition: labels, one sampled
        caption each (TextCond), or None."""
        images, labels, idx = self.reals.next(self.rows)
        x = to_float(images)  # [b, 3, R, R] in [-1, 1]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.hflip:
            x = random_hflip(x, self.noise, self.rows, self.total_rows)
        if self.text is not None:
            return x, self.text.sample(idx, self.noise)
        if self.gan.num_classes and self.dist.enabled:
            return x, self.reals.labels_of(idx)
        return x, (labels if self.gan.num_classes else None)

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
            return D_.gather_many(values, self.dist)
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
        D_.all_reduce_grads(params, self.dist, average=not self.cfg.train.gather)
        opt.step()

    def d_step(self, keep_fake: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One D update. ``keep_fake`` (train.reuse_fake, last D step of a full step): G runs with gradients
        and the G step reuses these fakes instead of a new G forward."""
        gan, B = self.gan, self.cfg.train.batch_size
        real_img, real_c = self.real_batch()
        fake_c = real_c if self.text_conditioned else self.sample_fake_c(B)  # XMC-GAN: fakes from the real captions
        z = self.sample_z(B)
        with self.autocast():
            with torch.set_grad_enabled(keep_fake):
                fake_img = gan.G(self.local(z), self.local(fake_c))
            if keep_fake:
                self._kept = (fake_img, fake_c, real_img, real_c)
                fake_img = fake_img.detach()
            real = gan.D(self.aug(real_img), self.local(real_c))
            fake = gan.D(self.aug(fake_img), self.local(fake_c))
            real, fake, real_img_l, fake_img_l = self.gathered(real, fake, real_img, fake_img)
            real_c, fake_c = self.conds(real_c, fake_c)
            losses = {"adv": gan.adversarial.d(real.logits, fake.logits)}
            batch = Batch(real_c=real_c, fake_c=fake_c, real_img=real_img_l, fake_img=fake_img_l)
            for term in gan.terms:
                self._add(losses, term, term.d_loss(gan.head(term), real, fake, batch))
        total = sum(losses.values())
        self.step_optimizer(self.opt_D, total, self.d_params)
        return losses, total

    def g_step(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        gan, B = self.gan, self.cfg.train.batch_size
        needs_real = gan.adversarial.needs_real_in_g or any(t.needs_real_in_g for t in gan.terms)
        kept, self._kept = self._kept, None
        if kept is not None:  # train.reuse_fake: the last D step's fakes (and their reals), graph attached
            fake_img, fake_c, real_img, real_c = kept
        else:
            real_img, real_c = self.real_batch() if self.text_conditioned else (None, None)
            fake_c = real_c if self.text_conditioned else self.sample_fake_c(B)
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


def _setup_text(cfg: RunConfig, data: ImageDataset, device: torch.device, ckpt: Checkpoint | None, opts: RunOptions):
    """The text encoder (pretrained now, or the checkpoint's on --resume), the dataset's feature bank, and the
    config with the image encoder of the image–image term resolved ('auto' → what is present)."""
    from cgantool.nets.image_encoders import resolve_image_encoder
    from cgantool.text.bank import TextBank
    from cgantool.text.encoders import from_info
    from cgantool.text.setup import prepare_text

    if ckpt is not None:
        stored = ckpt.data_info["text"]
        encoder = from_info(stored, ckpt.tensors("text_encoder") if ckpt.has("text_encoder") else None,
                            allow_download=opts.allow_download).to(device)
        bank = TextBank(data.captions or [], encoder, device)
    else:
        log = (lambda msg: opts.console.print(msg)) if opts.console is not None else None
        encoder, bank = prepare_text(cfg, data, device, log)
    xmc = cfg.loss.xmc
    resolved = resolve_image_encoder(xmc.image_encoder if xmc.image_pretrained > 0 else "none")
    if resolved != xmc.image_encoder:
        loss = cfg.loss.model_copy(update={"xmc": xmc.model_copy(update={"image_encoder": resolved})})
        cfg = cfg.model_copy(update={"loss": loss})
    return encoder, bank, cfg


def build_trainer(cfg: RunConfig, data: ImageDataset, device: torch.device, ckpt: Checkpoint | None,
                  data_info: dict[str, Any] | None = None, dist_info: DistInfo | None = None,
                  compile: bool = False, channels_last: bool = False) -> Trainer:
    dist_info = dist_info or DistInfo()
    torch.manual_seed(cfg.train.seed)  # weight init
    gan = build_gan(cfg, data_info or data.info())
    gan.G.to(device)
    gan.D.to(device)
    if dist_info.enabled:
        D_.broadcast_module(gan.G, dist_info)
        D_.broadcast_module(gan.D, dist_info)
        if cfg.train.sync_bn:
            D_.sync_batchnorm(gan.G)
            D_.sync_batchnorm(gan.D)
    G_ema = make_ema(gan.G) if cfg.train.ema_decay > 0 else None
    opt_G = _make_optimizer(gan.G.parameters(), cfg.optim.lr_g, cfg, device)
    opt_D = _make_optimizer(gan.D.parameters(), cfg.optim.lr_d, cfg, device)
    noise = torch.Generator(device=device).manual_seed(cfg.train.seed)
    position = 0
    if ckpt is not None:  # every part checked first: a damaged file is one CheckpointError naming the part
        from cgantool.checkpoint import restore_training_state

        position = restore_training_state(ckpt, gan, G_ema, opt_G, opt_D, noise)
    reals = RealBatches(data, cfg.train.batch_size, seed=cfg.train.seed, device=device, position=position)
    # A flip would contradict captions naming left/right: only text-conditioned models read captions.
    text_conditioned = cfg.model.conditioning == "text"
    if channels_last:
        for m in (gan.G, gan.D) + ((G_ema,) if G_ema is not None else ()):
            m.to(memory_format=torch.channels_last)
    if compile:
        # nn.Module.compile: in place, state_dict keys unchanged. Only G: D's spectral norm updates u and v in
        # place at each of its forwards (real, fake) before one backward, which compiled graphs reject.
        gan.G.compile()
    return Trainer(
        cfg=cfg, gan=gan, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, reals=reals, noise=noise, device=device,
        augment=parse_policy(cfg.train.diffaug), hflip=cfg.train.hflip and (data.hflip_safe or not text_conditioned),
        dist=dist_info, channels_last=channels_last,
    )


# ----------------------------------------------------------------------------------------------
# The loop


def train(cfg: RunConfig, opts: RunOptions) -> Path:
    """Train (or resume) a run in ``opts.out``; returns the path of the last checkpoint.

    Under torchrun (WORLD_SIZE > 1) every process runs this function as one rank (see engine/dist.py).
    """
    info = D_.from_env()
    device = resolve_device(opts.device)
    if info.enabled and device.type == "cuda" and opts.device in ("auto", "cuda"):
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.enabled and cfg.train.batch_size % info.world:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is not divisible by the {info.world} processes",
                          hint="train.batch_size is the global batch; choose a multiple of the number of processes")
    D_.init(info, device)
    try:
        return _train(cfg, opts, device, info)
    finally:
        D_.shutdown()


def _train(cfg: RunConfig, opts: RunOptions, device: torch.device, info: DistInfo) -> Path:
    main = info.is_main
    if not main:
        opts = dataclasses.replace(opts, progress=False, console=None)
    ckpt = run_dir.resume_point(opts.out) if opts.resume else None
    plan = run_dir.check(cfg, opts.out, resume=opts.resume, force=opts.force, ckpt=ckpt, probe_lock=main)  # reads only
    data = load_dataset(cfg.data)
    data_info = data.info()
    if main and cfg.model.conditioning == "auto" and data_info.get("num_classes") == 1:
        warn(f"the data {cfg.data.source} has a single class: training an unconditional model "
             "(a class-conditional one needs two or more class folders)")
    # Store 'auto' conditioning resolved, so the checkpoint says what was trained.
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"conditioning": resolve_conditioning(cfg, data_info)})})
    text_encoder = None
    if cfg.model.conditioning == "text":
        if not main:
            D_.barrier(info)  # rank 0 pretrains the builtin encoder into the cache first
        text_encoder, bank, cfg = _setup_text(cfg, data, device, ckpt, opts)
        if main:
            D_.barrier(info)
        data_info["text"] = text_encoder.info()
    channels_last = opts.channels_last if opts.channels_last is not None else device.type == "cpu"
    t = build_trainer(cfg, data, device, ckpt, data_info, info, compile=opts.compile, channels_last=channels_last)
    # (every config/data error is raised above, before the run dir is touched)
    if text_encoder is not None:
        t.text = bank
    tb = _tensorboard_writer(cfg) if main else None  # fails before the run dir is touched when tensorboard is missing
    evaluator = None
    if cfg.eval.every and main:
        from cgantool.eval.evaluate import TrainEvaluator

        evaluator = TrainEvaluator(cfg, data, device)  # a missing feature extractor fails now, not at step N
        evaluator.text_encoder = text_encoder
    lock = run_dir.open_run(plan, cfg) if main else None
    try:
        return _loop(cfg, opts, device, info, t, ckpt, data, data_info, text_encoder, evaluator, tb)
    finally:
        if lock is not None:
            lock.release()


def _loop(cfg, opts, device, info, t, ckpt, data, data_info, text_encoder, evaluator, tb) -> Path:
    main, run = info.is_main, opts.out
    if main:
        atomic_write(run / "config.toml", lambda tmp: tmp.write_text(to_toml(config_to_dict(cfg))))
    step = ckpt.step if ckpt is not None else 0
    tc = cfg.train
    log = Logger(run / "metrics.jsonl", opts, start=step, total=tc.steps, tensorboard=tb)

    # Fixed grid: 8 rows; a conditional model shows one class per column (up to 20 classes).
    columns = min(t.gan.num_classes, 20) if t.gan.num_classes else 8
    grid_z = latents(tc.seed, range(8 * columns), t.gan.G.z_dim)
    grid_c = default_labels(8 * columns, columns) if t.gan.num_classes else None
    if t.text is not None:  # one caption per column (the first caption of 8 different images)
        rows = t.text.caption_rows(torch.arange(min(columns, len(data))))
        columns = len(rows)
        grid_z = latents(tc.seed, range(8 * columns), t.gan.G.z_dim)
        grid_c = t.text.rows(rows.repeat(8))
        if main:
            text = "".join(f"column {i + 1}: {t.text.texts[r]}\n" for i, r in enumerate(rows.tolist()))
            atomic_write(run / "samples" / "captions.txt", lambda tmp: tmp.write_text(text))

    def sample_grid(at: int) -> None:
        G = t.G_ema if t.G_ema is not None else t.gan.G
        images = generate(G, grid_z, grid_c, device=device)
        save_grid(images, run / "samples" / f"step_{at:07d}.png", nrow=columns)
        if log.tb is not None:
            from torchvision.utils import make_grid

            log.tb.add_image("samples", make_grid(images, nrow=columns, padding=2), at)

    best_fid = float(ckpt.state.get("best_fid", math.inf)) if ckpt is not None else math.inf

    def save(at: int, metrics: dict[str, Any]) -> Path:
        modules = {"G": t.gan.G, "D": t.gan.D}
        if t.G_ema is not None:
            modules["G_ema"] = t.G_ema
        if text_encoder is not None and text_encoder.net is not None:
            modules["text_encoder"] = text_encoder.net
        path = run / "checkpoints" / f"step_{at:07d}.safetensors"
        save_checkpoint(
            path, config=cfg, step=at, data_info=data_info, modules=modules,
            optimizers={"opt_G": t.opt_G, "opt_D": t.opt_D}, rng={"noise": t.noise.get_state()},
            metrics=metrics, state={"data_position": t.reals.position, "best_fid": best_fid},
        )
        run_dir.link_last(path)
        run_dir.prune(run / "checkpoints", tc.keep_last)
        return path

    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss since the last check
    pending: list[dict[str, torch.Tensor]] = []
    last_metrics: dict[str, Any] = {}
    last_path = run / "checkpoints" / "last.safetensors"
    saved_step = step  # the step the newest checkpoint holds (metrics.jsonl never runs ahead of it on failure)
    with run_dir.StopSignals(hold=opts.hold_signals) as signals, log, _write_failures(run, lambda: saved_step):
        while step < tc.steps:
            lr_factor = t.set_lr(step)
            for i in range(tc.d_steps_per_g_step):
                d_losses, d_total = t.d_step(keep_fake=tc.reuse_fake and i == tc.d_steps_per_g_step - 1)
                bad |= ~torch.isfinite(d_total)
            g_losses, g_total = t.g_step()
            bad |= ~torch.isfinite(g_total)
            if t.G_ema is not None:
                update_ema(t.G_ema, t.gan.G, tc.ema_decay if step >= tc.ema_start_step else 0.0)
            step += 1
            pending.append({**{f"d/{k}": v.detach() for k, v in d_losses.items()},
                            **{f"g/{k}": v.detach() for k, v in g_losses.items()}})
            hit = signals.signum is not None
            if info.enabled:  # ranks agree on a stop at log boundaries only: no collective (host sync) per step
                boundary = step % tc.log_every == 0 or step % tc.checkpoint_every == 0 or step == tc.steps
                hit = boundary and D_.any_true(info, hit, device)
            stop = hit or step == tc.steps
            if step % tc.log_every == 0 or stop or step % tc.checkpoint_every == 0:
                if D_.any_true(info, bad, device):  # the one host sync, once per log interval
                    raise TrainingError(
                        f"a loss became NaN or inf before step {step}; the run stopped",
                        hint=f"the last good checkpoint is {last_path if last_path.exists() else 'none (none saved yet)'}; "
                        "lower the learning rates, or resume from it",
                    )
                last_metrics = log.write(step, pending, lr_factor, cfg) if main else {}
                pending = []
            if main and (step % tc.sample_every == 0 or step == tc.steps):
                sample_grid(step)
            evaluate_now = evaluator is not None and (step % cfg.eval.every == 0 or step == tc.steps)
            if evaluate_now:
                scores = evaluator(t.G_ema if t.G_ema is not None else t.gan.G, t.gan.num_classes)
                log.write_eval(step, scores)
                last_metrics.update({f"eval/{k}": v for k, v in scores.items()})
                improved = scores.get("fid", math.inf) < best_fid
                best_fid = min(best_fid, scores.get("fid", math.inf))
            if step % tc.checkpoint_every == 0 or stop or evaluate_now:
                if main:
                    last_path = save(step, last_metrics)
                    saved_step = step
                    if evaluate_now and improved:
                        run_dir.link_last(last_path, name="best.safetensors")
                D_.barrier(info)  # the checkpoint exists before any rank goes on (or exits)
            if hit and step < tc.steps:
                signum = signals.signum or 2  # a rank that got no signal stops with its peers, as Ctrl-C
                raise Interrupted(
                    f"interrupted at step {step} by {signals.name or 'another process'}; checkpoint saved to {last_path}",
                    hint=f"resume with: cgantool train --out {run} --resume", exit_code=128 + signum,
                )
    return run / "checkpoints" / "last.safetensors"


@contextmanager
def _write_failures(run: Path, saved_step):
    """A checkpoint, grid or log line that cannot be written (disk full, read-only folder) stops the run with one
    error naming the last good checkpoint; metrics.jsonl is cut back to that checkpoint's step."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as e:
        step = saved_step()
        run_dir.trim_metrics(run / "metrics.jsonl", step)
        good = run / "checkpoints" / "last.safetensors"
        where = f"the last good checkpoint is {good} (step {step})" if step else "no checkpoint was saved yet"
        raise TrainingError(f"cannot write to {run}: {getattr(e, 'strerror', None) or e}; the run stopped",
                            hint=f"{where}; free space or fix permissions, then resume with: "
                            f"cgantool train --out {run} --resume") from None


def _tensorboard_writer(cfg: RunConfig):
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard = true but the tensorboard package is not installed",
                          hint="pip install 'cgantool[tensorboard]' (or tensorboard), or set train.tensorboard = false") from None
    return SummaryWriter


class Logger:
    """metrics.jsonl lines, the rich progress bar (stderr), and optionally TensorBoard scalars/images."""

    def __init__(self, path: Path, opts: RunOptions, start: int, total: int, tensorboard=None):
        self.path, self.opts, self.start, self.total = path, opts, start, total
        self.tb = tensorboard(log_dir=str(path.parent / "tensorboard"), purge_step=start or None) if tensorboard else None
        self.t0 = time.perf_counter()
        self.last_time, self.last_step = self.t0, start
        self.progress = None
        self.task = None

    def __enter__(self):
        if self.opts.progress and self.opts.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=self.opts.console, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        if self.tb is not None:
            self.tb.close()
        return False

    def _tb_scalars(self, step: int, row: dict[str, Any]) -> None:
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def write(self, step: int, pending: list[dict[str, torch.Tensor]], lr_factor: float, cfg: RunConfig) -> dict[str, Any]:
        now = time.perf_counter()
        keys = pending[-1].keys() if pending else []
        means = {k: float(torch.stack([p[k] for p in pending]).float().mean()) for k in keys}
        images = (step - self.last_step) * cfg.train.batch_size * cfg.train.d_steps_per_g_step
        img_per_s = images / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        row = {"step": step, "time": round(now - self.t0, 3), "img_per_s": round(img_per_s, 2),
               "lr_g": cfg.optim.lr_g * lr_factor, "lr_d": cfg.optim.lr_d * lr_factor, **means}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._tb_scalars(step, row)
        if self.progress is not None:
            losses = "  ".join(f"{k} {v:.3f}" for k, v in means.items())
            self.progress.update(self.task, completed=step, info=f"{img_per_s:.0f} img/s  {losses}")
        return {k: v for k, v in row.items() if k not in ("time",)}

    def write_eval(self, step: int, scores: dict[str, Any]) -> None:
        row = {"step": step, "time": round(time.perf_counter() - self.t0, 3), **{f"eval/{k}": v for k, v in scores.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._tb_scalars(step, row)
        if self.opts.console is not None:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float))
            self.opts.console.print(f"step {step}: {shown}")
