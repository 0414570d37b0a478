"""Can the sngan generator draw sharp shapes at all? Fits G, supervised (L1), to reproduce 64 real ``shapes``
images from 64 fixed (z, label) pairs, and writes the real images above G's reproductions.

    python benchmarks/g_capacity.py --width 32 --steps 600 --out g_capacity.png

If G reproduces the shapes with sharp edges, a GAN run that draws blobs is limited by the signal its D
gives, not by what G can represent (figures in RESULTS.md). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cli import positive  # noqa: E402
from cgantool.data.batches import to_uint8  # noqa: E402
from cgantool.data.shapes import generate_shapes  # noqa: E402
from cgantool.nets.sngan import SNGANGenerator  # noqa: E402
from cgantool.sampling import save_grid  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=positive, default=32)
    p.add_argument("--resolution", type=positive, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=positive, default=600)
    p.add_argument("--out", type=Path, default=Path("g_capacity.png"))
    args = p.parse_args()
    torch.manual_seed(0)
    data = generate_shapes(64, args.resolution, 0)
    x, y = data.images.float() / 127.5 - 1, data.labels
    G = SNGANGenerator(resolution=args.resolution, channels=args.width, num_classes=int(y.max()) + 1)
    z = torch.randn(64, G.z_dim)
    opt = torch.optim.Adam(G.parameters(), args.lr, betas=(0.0, 0.9))
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        loss = (G(z, y) - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step}: L1 {loss.item():.4f}", file=sys.stderr, flush=True)
    G.eval()
    with torch.no_grad():
        out = G(z, y)
    l1_eval = (out - x).abs().mean().item()
    save_grid(torch.cat([to_uint8(x[:20]), to_uint8(out[:20])]), args.out, nrow=20)
    print(json.dumps({"width": args.width, "resolution": args.resolution, "steps": args.steps,
                      "l1_eval": round(l1_eval, 4), "seconds": round(time.perf_counter() - start, 1),
                      "grid": str(args.out)}))


if __name__ == "__main__":
    main()
