"""How fast can the sngan discriminator learn to *see* shape? Trains D's backbone, supervised, as a shape
classifier on real ``shapes`` images and prints held-out shape accuracy every 100 steps.

    python benchmarks/d_shape_speed.py --width 32 --lr 2e-4 --pool sum

A GAN's G gets no shape signal before its D can tell shapes apart, so this bounds how soon a recipe can
draw recognisable shapes (figures in RESULTS.md). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks._cli import positive  # noqa: E402
from cgantool.data.shapes import SHAPES, generate_shapes  # noqa: E402
from cgantool.nets.sngan import SNGANDiscriminator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=positive, default=32)
    p.add_argument("--resolution", type=positive, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--pool", choices=["sum", "max"], default="sum", help="sum = the GAN's D; max = the probe's")
    p.add_argument("--no-sn", action="store_true", help="D without spectral norm (the GAN's D keeps it)")
    p.add_argument("--steps", type=positive, default=1000)
    p.add_argument("--batch-size", type=positive, default=64)
    args = p.parse_args()
    torch.manual_seed(0)
    train = generate_shapes(10000, args.resolution, 0)
    test = generate_shapes(1000, args.resolution, 5)
    x, y = train.images.float() / 127.5 - 1, train.attributes[:, 0, 0]
    xt, yt = test.images.float() / 127.5 - 1, test.attributes[:, 0, 0]
    D = SNGANDiscriminator(args.resolution, args.width, 0, use_sn=not args.no_sn)
    head = torch.nn.Linear(args.width, len(SHAPES))
    opt = torch.optim.Adam([*D.parameters(), *head.parameters()], lr=args.lr, betas=(0.0, 0.9))

    def features(images: torch.Tensor) -> torch.Tensor:
        out = D(images)
        return out.h if args.pool == "sum" else F.relu(D.blocks[-1](out.local)).amax(dim=(2, 3))

    g, t0, acc = torch.Generator().manual_seed(0), time.time(), 0.0
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x), (args.batch_size,), generator=g)
        loss = F.cross_entropy(head(features(x[idx])), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            D.eval()  # a train-mode forward would also run a power iteration of spectral norm
            with torch.no_grad():
                acc = float((head(features(xt)).argmax(1) == yt).float().mean())
            D.train()
            print(f"step {step}: loss {loss.item():.3f}, held-out shape accuracy {acc:.3f} ({time.time() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
    print(json.dumps({"width": args.width, "lr": args.lr, "pool": args.pool, "spectral_norm": not args.no_sn,
                      "steps": args.steps, "shape_accuracy": round(acc, 4), "chance": 1 / len(SHAPES)}))


if __name__ == "__main__":
    main()
