"""THE training loop. Methods compute losses (terms/); the trainer owns the D and G steps (trainer.py); the run
directory owns files, locks and signals (run_dir.py); the logger reports (logger.py). Read it top to bottom.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cgantool.checkpoint import Checkpoint
from cgantool.files import atomic_write
from cgantool.config import RunConfig, config_to_dict, to_toml
from cgantool.data import load_dataset
from cgantool.device import resolve_device
from cgantool.ema import update_ema
from cgantool.engine import dist
from cgantool.engine import run_dir
from cgantool.engine.dist import DistInfo
from cgantool.engine.logger import Logger, SampleGrid, tensorboard_writer
from cgantool.engine.model import resolve_for_data
from cgantool.engine.trainer import Trainer, build_trainer, setup_text
from cgantool.errors import ConfigError, Interrupted, TrainingError, warn

__all__ = ["RunOptions", "Trainer", "build_trainer", "resolve_device", "train"]  # (Trainer, build_trainer,
# resolve_device: re-exported for code written against the one-module engine)


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
    progress_every: float = 30.0  # seconds between plain progress lines when stderr is not a terminal
    inception_weights: str | None = None  # the in-training eval's Inception weights (None: the usual search)


def train(cfg: RunConfig, opts: RunOptions) -> Path:
    """Train (or resume) a run in ``opts.out``; returns the path of the last checkpoint.

    Under torchrun (WORLD_SIZE > 1) every process runs this function as one rank (see engine/dist.py).
    """
    info = dist.from_env()
    device = resolve_device(opts.device)
    if info.enabled and device.type == "cuda" and opts.device in ("auto", "cuda"):
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.enabled and cfg.train.batch_size % info.world:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is not divisible by the {info.world} processes",
                          hint="train.batch_size is the global batch; choose a multiple of the number of processes")
    dist.init(info, device)
    try:
        return _train(cfg, opts, device, info)
    finally:
        dist.shutdown()


@dataclass
class _Run:
    """What the loop needs besides the trainer: built (and every config or data error raised) before the run
    directory is touched."""

    cfg: RunConfig  # resolved once (resolve_for_data); read-only from here on
    trainer: Trainer
    data_info: dict[str, Any]
    text_net: torch.nn.Module | None  # the builtin text encoder's weights, stored in checkpoints
    evaluator: Any
    tensorboard: Any
    start: int
    best_fid: float
    num_images: int


def _train(cfg: RunConfig, opts: RunOptions, device: torch.device, info: DistInfo) -> Path:
    if not info.is_main:
        opts = dataclasses.replace(opts, progress=False, console=None)
    ckpt = run_dir.resume_point(opts.out) if opts.resume else None
    plan = run_dir.check(cfg, opts.out, resume=opts.resume, force=opts.force, ckpt=ckpt, probe_lock=info.is_main)
    run = _prepare(cfg, opts, device, info, ckpt)
    if opts.console is not None:
        opts.console.print(_decided(run, device, opts.out, ckpt), markup=False, highlight=False, soft_wrap=True)
    if info.is_main and _lost_pretrained_term(cfg, run.cfg):
        from cgantool.nets.image_encoders import missing_weights_warning

        warn(missing_weights_warning())
    lock = run_dir.open_run(plan, run.cfg) if info.is_main else None
    try:
        return _loop(run, opts, device, info)
    finally:
        if lock is not None:
            lock.release()


def _prepare(cfg: RunConfig, opts: RunOptions, device: torch.device, info: DistInfo, ckpt: Checkpoint | None) -> _Run:
    evaluator = None
    if cfg.eval.every and info.is_main:  # missing Inception weights / extractor: fail before the data is read
        from cgantool.eval.evaluate import TrainEvaluator

        evaluator = TrainEvaluator(cfg, None, device, inception_weights=opts.inception_weights)
    data = load_dataset(cfg.data)
    data_info = data.info()
    if info.is_main and cfg.model.conditioning == "auto" and data_info.get("num_classes") == 1:
        warn(f"the data {cfg.data.source} has a single class: training an unconditional model "
             "(a class-conditional one needs two or more class folders)")
    cfg = resolve_for_data(cfg, data_info)
    encoder = bank = None
    if cfg.model.conditioning == "text":
        if not info.is_main:
            dist.barrier(info)  # rank 0 pretrains the builtin encoder into the cache first
        log = (lambda msg: opts.console.print(msg)) if opts.console is not None else None
        encoder, bank = setup_text(cfg, data, device, ckpt, log, allow_download=opts.allow_download)
        if info.is_main:
            dist.barrier(info)
        data_info["text"] = encoder.info()
    channels_last = opts.channels_last if opts.channels_last is not None else device.type == "cpu"
    t = build_trainer(cfg, data, device, ckpt, data_info, info, compile=opts.compile, channels_last=channels_last,
                      text_bank=bank)
    if evaluator is not None:
        evaluator.dataset, evaluator.text_encoder = data, encoder
    return _Run(
        cfg=cfg, trainer=t, data_info=data_info, evaluator=evaluator,
        text_net=encoder.net if encoder is not None else None,
        tensorboard=tensorboard_writer(cfg) if info.is_main else None,  # a missing package fails here too
        start=ckpt.step if ckpt is not None else 0, num_images=len(data),
        best_fid=float(ckpt.state.get("best_fid", math.inf)) if ckpt is not None else math.inf,
    )


def _lost_pretrained_term(asked: RunConfig, resolved: RunConfig) -> bool:
    """XMC-GAN's pretrained image–image term was on with ``image_encoder = 'auto'`` and found no weights."""
    xmc = getattr(asked.loss, "xmc", None)
    return (xmc is not None and xmc.weight > 0 and xmc.image_pretrained > 0 and xmc.image_encoder == "auto"
            and resolved.model.conditioning == "text" and resolved.loss.xmc.image_encoder == "none")


def _decided(r: _Run, device: torch.device, out: Path, ckpt: Checkpoint | None) -> str:
    """One line of what was decided: device, resolution, data, conditioning resolved, model sizes, where it goes."""
    from cgantool.errors import printable

    g, d = (sum(p.numel() for p in m.parameters()) for m in (r.trainer.gan.G, r.trainer.gan.D))
    cond = {"class": f"class-conditional ({r.data_info.get('num_classes')} classes)", "text": "text-to-image",
            "none": "unconditional"}[r.cfg.model.conditioning]
    where = f"resuming at step {ckpt.step} in {out}" if ckpt is not None else f"run directory {out}"
    return printable(f"{device} · {r.cfg.data.resolution} px · {r.num_images:,} images · {cond} · {r.cfg.model.arch} "
                     f"G {g / 1e6:.2f}M / D {d / 1e6:.2f}M parameters · {r.cfg.train.steps:,} steps · {where}")


def _loop(r: _Run, opts: RunOptions, device: torch.device, info: DistInfo) -> Path:
    main, run, cfg, t, tc = info.is_main, opts.out, r.cfg, r.trainer, r.cfg.train
    grid = SampleGrid(t, r.num_images, tc.seed)
    if main:
        atomic_write(run / "config.toml", lambda tmp: tmp.write_text(to_toml(config_to_dict(cfg))))
        grid.write_captions(run / "samples")
    step, best_fid = r.start, r.best_fid
    log = Logger(run / "metrics.jsonl", opts.console, opts.progress, start=step, total=tc.steps,
                 tensorboard=r.tensorboard, interval=opts.progress_every,
                 images_per_step=tc.batch_size * tc.d_steps_per_g_step)
    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss since the last check
    pending: list[dict[str, torch.Tensor]] = []
    last_metrics: dict[str, Any] = {}
    last_path = run / "checkpoints" / "last.safetensors"
    saved = [step]  # the step the newest checkpoint holds (metrics.jsonl never runs ahead of it on failure)
    with run_dir.StopSignals(hold=opts.hold_signals) as signals, log, _write_failures(run, lambda: saved[0]):
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
            log.tick(step)
            pending.append({**{f"d/{k}": v.detach() for k, v in d_losses.items()},
                            **{f"g/{k}": v.detach() for k, v in g_losses.items()}})
            hit = signals.signum is not None
            if info.enabled:  # ranks agree on a stop at log boundaries only: no collective (host sync) per step
                boundary = step % tc.log_every == 0 or step % tc.checkpoint_every == 0 or step == tc.steps
                hit = boundary and dist.any_true(info, hit, device)
            stop = hit or step == tc.steps
            if step % tc.log_every == 0 or stop or step % tc.checkpoint_every == 0:
                if dist.any_true(info, bad, device):  # the one host sync, once per log interval
                    raise TrainingError(
                        f"a loss became NaN or inf before step {step}; the run stopped",
                        hint=f"the last good checkpoint is {last_path if last_path.exists() else 'none (none saved yet)'}; "
                        "lower the learning rates, or resume from it",
                    )
                last_metrics = log.write(step, pending, lr_factor, cfg) if main else {}
                pending = []
            if main and (step % tc.sample_every == 0 or step == tc.steps):
                grid.write(t.G_sampling, device, run / "samples" / f"step_{step:07d}.png", log.tb, step)
            evaluate_now = r.evaluator is not None and (step % cfg.eval.every == 0 or step == tc.steps)
            improved = False
            if evaluate_now:
                scores = r.evaluator(t.G_sampling, t.gan.num_classes)
                log.write_eval(step, scores)
                last_metrics.update({f"eval/{k}": v for k, v in scores.items()})
                improved = scores.get("fid", math.inf) < best_fid
                best_fid = min(best_fid, scores.get("fid", math.inf))
            if step % tc.checkpoint_every == 0 or stop or evaluate_now:
                if main:
                    last_path = run / "checkpoints" / f"step_{step:07d}.safetensors"
                    t.save(last_path, step=step, data_info=r.data_info, metrics=last_metrics, best_fid=best_fid,
                           text_net=r.text_net)
                    run_dir.link_last(last_path)
                    run_dir.prune(run / "checkpoints", tc.keep_last)
                    saved[0] = step
                    if improved:
                        run_dir.link_last(last_path, name="best.safetensors")
                dist.barrier(info)  # the checkpoint exists before any rank goes on (or exits)
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
