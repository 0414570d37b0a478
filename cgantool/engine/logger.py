"""What a run reports: metrics.jsonl lines, the rich progress bar (stderr), optional TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from cgantool.config import RunConfig
from cgantool.data.progress import duration
from cgantool.errors import ConfigError


def tensorboard_writer(cfg: RunConfig):
    """The SummaryWriter class when train.tensorboard is on (fails before the run dir is touched), else None."""
    if not cfg.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard = true but the tensorboard package is not installed",
                          hint="pip install 'cgantool[tensorboard]' (or tensorboard), or set train.tensorboard = false") from None
    return SummaryWriter


def elapsed_before(path: Path) -> float:
    """The training time metrics.jsonl already records (its last row's ``time``): a resumed run's clock goes on."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            last = f.read().decode("utf-8", "replace").strip().splitlines()[-1]
        return float(json.loads(last).get("time", 0.0))
    except (OSError, IndexError, ValueError, AttributeError):
        return 0.0


class Logger:
    """metrics.jsonl lines, the progress shown on stderr, and optionally TensorBoard scalars/images.

    In a terminal the rich bar moves every step; when stderr is a file or a pipe (nohup, SLURM, CI) a plain line
    (step, img/s, ETA, losses) is printed every ``interval`` seconds instead. ``time`` in metrics.jsonl counts
    on across resumes."""

    def __init__(self, path: Path, console=None, progress: bool = True, start: int = 0, total: int = 0,
                 tensorboard=None, interval: float = 30.0, images_per_step: int = 1):
        self.path, self.console, self.show_bar, self.start, self.total = path, console, progress, start, total
        self.tb = tensorboard(log_dir=str(path.parent / "tensorboard"), purge_step=start or None) if tensorboard else None
        self.t0 = time.perf_counter() - (elapsed_before(path) if start else 0.0)
        self.last_time, self.last_step = time.perf_counter(), start
        self.progress = None
        self.task = None
        self.plain = False
        self.interval, self.images_per_step = interval, images_per_step
        self.began, self.line_time, self.line_step = time.perf_counter(), time.perf_counter(), start
        self.losses = ""

    def __enter__(self):
        if self.show_bar and self.console is not None and not self.console.is_terminal:
            self.plain = True
        elif self.show_bar and self.console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, transient=False,
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

    def tick(self, step: int) -> None:
        """After every step: the bar moves (its ETA works from the first steps); plain lines every ``interval`` s."""
        if self.progress is not None:
            self.progress.update(self.task, completed=step)
        elif self.plain and time.perf_counter() - self.line_time >= self.interval:
            now = time.perf_counter()
            img_per_s = (step - self.line_step) * self.images_per_step / max(now - self.line_time, 1e-9)
            rate = (step - self.start) / max(now - self.began, 1e-9)  # steps/s of this process
            eta = duration((self.total - step) / rate) if rate > 0 else "?"
            self.console.print(f"step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%)  {img_per_s:.1f} img/s"
                               f"  ETA {eta}  {self.losses}".rstrip(), markup=False, highlight=False, soft_wrap=True)
            self.line_time, self.line_step = now, step

    def _tb_scalars(self, step: int, row: dict[str, Any]) -> None:
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, step)

    def write(self, step: int, pending: list[dict[str, torch.Tensor]], lr_factor: float, cfg: RunConfig) -> dict[str, Any]:
        now = time.perf_counter()
        keys = list(dict.fromkeys(k for p in pending for k in p))  # a lazy term (loss.r1.every) is in some rows only
        means = {k: float(torch.stack([p[k] for p in pending if k in p]).float().mean()) for k in keys}
        images = (step - self.last_step) * cfg.train.batch_size * cfg.train.d_steps_per_g_step
        img_per_s = images / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        row = {"step": step, "time": round(now - self.t0, 3), "img_per_s": round(img_per_s, 2),
               "lr_g": cfg.optim.lr_g * lr_factor, "lr_d": cfg.optim.lr_d * lr_factor, **means}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._tb_scalars(step, row)
        self.losses = "  ".join(f"{k} {v:.3f}" for k, v in means.items())
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=f"{img_per_s:.0f} img/s  {self.losses}")
        return {k: v for k, v in row.items() if k not in ("time",)}

    def write_eval(self, step: int, scores: dict[str, Any]) -> None:
        row = {"step": step, "time": round(time.perf_counter() - self.t0, 3), **{f"eval/{k}": v for k, v in scores.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._tb_scalars(step, row)
        if self.console is not None:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float))
            self.console.print(f"step {step}: {shown}")


class SampleGrid:
    """The fixed grid a run draws every ``train.sample_every`` steps: 8 rows; a conditional model shows one class
    per column (up to 20), a text-to-image model one caption per column (listed in samples/captions.txt).

    Which generator drew it is said in ``samples/README.txt`` (written with the run) and in each PNG's text
    metadata (``generator``: ``EMA`` or ``raw``, ``step``, a ``Description`` sentence): the EMA generator when the
    run keeps one (``train.ema_decay`` > 0), as ``sample`` and ``eval`` use it by default; the raw G otherwise."""

    def __init__(self, trainer, num_images: int, seed: int):
        from cgantool.sampling import latents

        self.columns, self.c, self.captions = trainer.cond.grid(num_images)
        self.z = latents(seed, range(8 * self.columns), trainer.gan.G.z_dim)
        self.kind = getattr(trainer.cond, "kind", "none")
        self.ema = getattr(trainer, "G_ema", None) is not None
        tc = trainer.cfg.train
        self.generator = "EMA" if self.ema else "raw"
        self.description = (f"the EMA generator (train.ema_decay={tc.ema_decay:g}, following G from step "
                            f"{tc.ema_start_step}; what sample and eval use by default)" if self.ema else
                            "the raw generator G (train.ema_decay=0: the run keeps no EMA)")

    def write_captions(self, folder: Path) -> None:
        """``samples/README.txt`` (what the grids show, which generator) and, for text, ``captions.txt``."""
        from cgantool.files import atomic_write

        what = {"class": "one class per column", "text": "one caption per column (captions.txt)"}.get(
            self.kind, "unconditional samples")
        about = (f"step_NNNNNNN.png: the grid drawn at that step by {self.description}.\n"
                 f"8 rows x {self.columns} columns, {what}; the same latents at every step.\n"
                 f"Each PNG's text metadata holds generator={self.generator} and its step.\n")
        atomic_write(folder / "README.txt", lambda tmp: tmp.write_text(about))
        if self.captions:
            text = "".join(f"column {i + 1}: {c}\n" for i, c in enumerate(self.captions))
            atomic_write(folder / "captions.txt", lambda tmp: tmp.write_text(text))

    def write(self, G, device, path: Path, tb=None, step: int = 0) -> None:
        from cgantool.sampling import generate

        images = generate(G, self.z, self.c, device=device)
        self._save(images, path, step)
        if tb is not None:
            from torchvision.utils import make_grid

            tb.add_image("samples", make_grid(images, nrow=self.columns, padding=2), step)

    def _save(self, images, path: Path, step: int) -> None:
        """:func:`cgantool.sampling.save_grid`'s PNG, with text metadata naming the generator and the step."""
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo
        from torchvision.utils import make_grid

        from cgantool.files import atomic_write
        from cgantool.sampling import enlarge

        grid = make_grid(enlarge(images), nrow=self.columns, padding=2, pad_value=0)
        meta = PngInfo()
        for key, value in (("generator", self.generator), ("step", str(step)),
                           ("Description", f"cgantool training grid at step {step}, drawn by {self.description}")):
            meta.add_text(key, value)
        img = Image.fromarray(grid.permute(1, 2, 0).numpy())
        atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG", pnginfo=meta))
