"""Pretraining of the builtin text encoder on the real image–caption pairs (DAMSM-style, AttnGAN).

A small image CNN (regions at 1/4 of the resolution and a pooled global feature) and the GRU text encoder
are trained together with XMC-GAN's own two contrastive losses: sentence–image
(``xmc_contrastive_loss``, t = 0.1) and word–region (``xmc_word_region_loss``; DAMSM's gamma3 = 10, i.e.
temperature 0.1). The image CNN is thrown away; the text encoder is frozen for the GAN. Results are cached
in cgantool's cache dir, keyed by the data and the text settings, so a second run starts at once.
"""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cgantool.data.batches import to_float
from cgantool.files import atomic_write
from cgantool.losses import xmc_contrastive_loss, xmc_word_region_loss
from cgantool.text.encoders import BuiltinText
from cgantool.text.vocab import Vocab

PRETRAIN_VERSION = 1


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


def pretrain_builtin(dataset, text_cfg, seed: int, device: torch.device, log=None) -> BuiltinText:
    """The builtin encoder for ``dataset`` (captions required): from the cache, or trained now."""
    from cgantool.data import cache_dir

    vocab = Vocab.build(c for caps in dataset.captions for c in caps)
    enc = BuiltinText(vocab, dim=text_cfg.dim, max_words=text_cfg.max_words, unknown_words=text_cfg.unknown_words)
    key = hashlib.sha256(
        f"v{PRETRAIN_VERSION}|{data_key(dataset)}|{text_cfg.dim}|{text_cfg.max_words}|{text_cfg.pretrain_steps}|"
        f"{text_cfg.pretrain_batch_size}|{seed}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / "text" / f"builtin-{key}.safetensors"
    if path.exists():
        enc.net.load_state_dict(load_file(str(path)))
        return enc.to(device)
    if log is not None:
        log(f"pretraining the builtin text encoder ({text_cfg.pretrain_steps} steps, cached for later runs)")
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
    for _ in range(text_cfg.pretrain_steps):
        idx = torch.randperm(n, generator=g)[:batch]
        caps = [dataset.captions[i][int(torch.randint(len(dataset.captions[i]), (1,), generator=g))] for i in idx.tolist()]
        ids, lengths = enc.tokens(caps)
        text = enc.net(ids.to(device), lengths)
        regions, glob = image_net(to_float(dataset.images[idx].to(device)))
        loss = xmc_contrastive_loss(glob, text.sentence) + xmc_word_region_loss(regions, text.words, text.mask,
                                                                                temperature=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.25)
        opt.step()
    enc.net.eval()
    weights = {k: v.detach().cpu().contiguous() for k, v in enc.net.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(weights, str(tmp)))
    return enc
