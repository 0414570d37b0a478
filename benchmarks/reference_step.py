"""A deliberately straightforward SNGAN-32 training step, for the cgantool / reference speed ratio.

Plain modules, ``torch.nn.utils.spectral_norm`` (the old hook-based SN), the hinge loss, Adam (0.0, 0.9),
5 D steps per G step, random data: what one would write from the SNGAN paper without any tricks. Same
architecture and parameter counts as cgantool's ``sngan`` at 32 px (G 4,276,739 / D 1,053,825).

    python benchmarks/reference_step.py --batch-size 64 --steps 5

Prints a summary to stderr and, as its last line, one JSON object like train_throughput.py's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as SN


class GBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.b1, self.b2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        self.c1, self.c2, self.sc = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        h = self.c1(up(F.relu(self.b1(x))))
        h = self.c2(F.relu(self.b2(h)))
        return h + self.sc(up(x))


class Generator(nn.Module):
    def __init__(self, z=128, c=256):
        super().__init__()
        self.c = c
        self.l1 = nn.Linear(z, 4 * 4 * c)
        self.blocks = nn.Sequential(GBlock(c), GBlock(c), GBlock(c))
        self.b, self.out = nn.BatchNorm2d(c), nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, z):
        h = self.blocks(self.l1(z).view(-1, self.c, 4, 4))
        return torch.tanh(self.out(F.relu(self.b(h))))


class DBlock(nn.Module):
    def __init__(self, cin, cout, down, first=False):
        super().__init__()
        self.down, self.first = down, first
        self.c1, self.c2 = SN(nn.Conv2d(cin, cout if first else cin, 3, 1, 1)), SN(nn.Conv2d(cout if first else cin, cout, 3, 1, 1))
        self.sc = SN(nn.Conv2d(cin, cout, 1)) if (down or cin != cout) else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.first:
            return h + self.sc(F.avg_pool2d(x, 2))
        s = self.sc(F.relu(x)) if self.sc is not None else F.relu(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class Discriminator(nn.Module):
    def __init__(self, c=128):
        super().__init__()
        self.blocks = nn.Sequential(DBlock(3, c, True, first=True), DBlock(c, c, True), DBlock(c, c, False),
                                    DBlock(c, c, False))
        self.l = SN(nn.Linear(c, 1))

    def forward(self, x):
        return self.l(F.relu(self.blocks(x)).sum(dim=(2, 3))).squeeze(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--d-steps", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if min(args.batch_size, args.d_steps, args.steps) < 1 or args.warmup < 0:
        p.error("--batch-size, --d-steps and --steps must be at least 1, --warmup 0 or more")
    dev = torch.device(args.device)
    torch.manual_seed(0)
    G, D = Generator().to(dev), Discriminator().to(dev)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9))
    data = torch.rand(2048, 3, 32, 32, device=dev) * 2 - 1
    B = args.batch_size

    def step():
        for _ in range(args.d_steps):
            real = data[torch.randint(0, len(data), (B,), device=dev)]
            with torch.no_grad():
                fake = G(torch.randn(B, 128, device=dev))
            loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake)).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        loss_g = -D(G(torch.randn(B, 128, device=dev))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    s = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out = {"impl": "reference", "g_params": sum(p.numel() for p in G.parameters()),
           "d_params": sum(p.numel() for p in D.parameters()), "device": str(dev), "batch_size": B,
           "d_steps": args.d_steps, "threads": torch.get_num_threads(), "s_per_step": round(s, 5),
           "images_per_s": round(B * args.d_steps / s, 2), "peak_mem_mb": round(peak, 1)}
    print(f"reference SNGAN-32: {s * 1000:.1f} ms/step, {out['images_per_s']} img/s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
