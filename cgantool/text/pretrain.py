"""Pretraining of the builtin text encoder on the real image–caption pairs (DAMSM-style, AttnGAN).

A small image CNN (regions at 1/4 of the resolution and a pooled global feature) and the GRU text encoder
are trained together with XMC-GAN's own two contrastive losses: sentence–image
(``xmc_contrastive_loss``, t = 0.1) and word–region (``xmc_word_region_loss``; DAMSM's gamma3 = 10, i.e.
temperature 0.1). The image CNN is thrown away; the text encoder is frozen for the GAN. Results are cached
in cgantool's cache dir, keyed by the data, the text settings and the steps run, so a second run starts at once.

A short run pretrains in proportion (:func:`pretrain_steps`): ``min(text.pretrain_steps, max(20, train.steps // 2))``
steps unless ``text.pretrain_steps`` was set explicitly. Progress goes to stderr as cache builds show theirs: a bar
in a terminal, a plain line every 10 s otherwise, and one closing line.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cgantool.data.batches import to_float
from cgantool.data.progress import BuildProgress, duration
from cgantool.files import atomic_write
from cgantool.losses import xmc_contrastive_loss, xmc_word_region_loss
from cgantool.text.encoders import BuiltinText
from cgantool.text.vocab import Vocab

PRETRAIN_VERSION = 1
MIN_STEPS = 20  # a short run's pretraining: at least this many steps...
STEPS_PER_TRAIN_STEP = 0.5  # ...and this many per GAN step, up to text.pretrain_steps (600: full at 1,200 steps)


def pretrain_steps(cfg) -> tuple[int, str]:
    """The builtin encoder's pretraining steps for the run ``cfg``, and why when fewer than ``text.pretrain_steps``
    ('' otherwise). A value the user set (``--set``, ``--config``) is used as it is; the default is scaled down for
    short runs, so a 3-step smoke test does not pretrain for minutes."""
    asked = cfg.text.pretrain_steps
    if "pretrain_steps" in cfg.text.model_fields_set:
        return asked, ""
    steps = min(asked, max(MIN_STEPS, int(cfg.train.steps * STEPS_PER_TRAIN_STEP)))
    why = "" if steps == asked else (f"{steps:,} steps, not text.pretrain_steps = {asked:,}, for a "
                                     f"{cfg.train.steps:,}-step run: set text.pretrain_steps to choose")
    return steps, why


class PretrainProgress(BuildProgress):
    """The pretraining's progress on stderr (rank 0): a rich bar in a terminal, a plain line every ``interval`` s
    otherwise, and a closing line either way."""

    def __enter__(self) -> PretrainProgress:
        self.loss: Any = None
        self.loss_time = 0.0
        if self.enabled and self.terminal():
            self.start_bar("pretraining text encoder")
        return self

    def step(self, loss: torch.Tensor) -> None:
        """After each step; ``loss`` is read (a device sync) only when shown."""
        self.done += 1
        self.loss = loss.detach()
        if not self.enabled:
            return
        if self.bar is not None:
            info = None
            if (now := time.perf_counter()) - self.loss_time >= 1.0:
                self.loss_time = now
                info = f"{self.rate():.1f} steps/s  loss {float(self.loss):.3f}"
            self.bar.update(self.task, completed=self.done, **({"rate": info} if info else {}))
        elif self.line_due():
            self.line(f"pretraining the text encoder: step {self.done:,}/{self.total:,} ({self.rate():.1f} steps/s, "
                      f"ETA {self.eta()}, loss {float(self.loss):.3f})")

    def __exit__(self, *exc: Any) -> bool:
        if self.bar is not None:
            self.bar.stop()
        if self.enabled and exc[0] is None and self.done:
            loss = f", loss {float(self.loss):.3f}" if self.loss is not None else ""
            self.line(f"pretrained the text encoder: {self.done:,} steps in "
                      f"{duration(time.perf_counter() - self.began)}{loss}")
        return False


class _ImageNet(nn.Module):
    def __init__(self, dim: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
        )
        self.region = nn.Conv2d(2 * width, dim, 1)
        self.glob = nn.Linear(2 * width, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)  # [B, C, R/4, R/4]
        return self.region(h).flatten(2).transpose(1, 2), self.glob(h.mean((2, 3)))  # [B, R', D], [B, D]


def data_key(dataset) -> str:
    """Identifies a dataset's images and captions cheaply (source, size, captions, a stride of pixels)."""
    h = hashlib.sha256(f"{dataset.source}|{dataset.resolution}|{len(dataset)}".encode())
    for caps in dataset.captions:
        h.update("\x1f".join(caps).encode())
        h.update(b"\x1e")
    stride = max(1, len(dataset) // 256)
    h.update(dataset.images[::stride].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pretrain_builtin(dataset, text_cfg, seed: int, device: torch.device, log=None, steps: int | None = None,
                     why: str = "") -> BuiltinText:
    """The builtin encoder for ``dataset`` (captions required): from the cache, or trained now for ``steps``
    (default ``text_cfg.pretrain_steps``; ``why``: the reason it is fewer, for the log line)."""
    from cgantool.data import cache_dir

    steps = text_cfg.pretrain_steps if steps is None else steps
    vocab = Vocab.build(c for caps in dataset.captions for c in caps)
    enc = BuiltinText(vocab, dim=text_cfg.dim, max_words=text_cfg.max_words, unknown_words=text_cfg.unknown_words)
    key = hashlib.sha256(  # the steps actually run: a short run's encoder is never reused by a long one
        f"v{PRETRAIN_VERSION}|{data_key(dataset)}|{text_cfg.dim}|{text_cfg.max_words}|{steps}|"
        f"{text_cfg.pretrain_batch_size}|{seed}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / "text" / f"builtin-{key}.safetensors"
    enc.pretrain_steps = steps  # recorded in the checkpoint's text description
    if path.exists():
        enc.net.load_state_dict(load_file(str(path)))
        return enc.to(device)
    if log is not None:
        log(f"pretraining the builtin text encoder ({why or f'{steps:,} steps'}; cached for later runs)")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        image_net = _ImageNet(text_cfg.dim).to(device)
        enc.to(device)
    g = torch.Generator().manual_seed(seed)
    params = list(enc.net.parameters()) + list(image_net.parameters())
    opt = torch.optim.Adam(params, lr=2e-3, betas=(0.5, 0.999))
    enc.net.train()
    n = len(dataset)
    batch = min(text_cfg.pretrain_batch_size, n)
    with PretrainProgress(steps) as progress:
        for _ in range(steps):
            idx = torch.randperm(n, generator=g)[:batch]
            caps = [dataset.captions[i][int(torch.randint(len(dataset.captions[i]), (1,), generator=g))]
                    for i in idx.tolist()]
            ids, lengths = enc.tokens(caps)
            text = enc.net(ids.to(device), lengths)
            regions, glob = image_net(to_float(dataset.images[idx].to(device)))
            loss = xmc_contrastive_loss(glob, text.sentence) + xmc_word_region_loss(regions, text.words, text.mask,
                                                                                    temperature=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 0.25)
            opt.step()
            progress.step(loss)
    enc.net.eval()
    weights = {k: v.detach().cpu().contiguous() for k, v in enc.net.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(weights, str(tmp)))
    return enc
