"""Do XMC-GAN's images follow their captions? Train on the built-in shapes data at CPU scale, then read the
colour and shape of images generated from held-in captions with the shapes attribute probe.

    python benchmarks/xmc_alignment.py --out runs/xmc-align --steps 3000          # train, then measure
    python benchmarks/xmc_alignment.py --run runs/xmc-align                        # measure an existing run

For every checkpoint of the run (raw G and EMA G): ``attribute_accuracy`` = the probe's (colour, shape)
equals the caption's; ``color_accuracy`` and ``shape_accuracy`` separately; ``chance_*`` = the same images
scored against the captions of other images (a permutation), which is what an image that ignores its caption
scores; ``real_*`` = the probe on real images (its ceiling). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

RECIPE = ["--preset", "xmcgan", "--data", "shapes:16", "--set", "model.g_channels=16", "--set", "model.d_channels=16",
          "--set", "train.batch_size=32", "--set", "train.sample_every=250", "--set", "train.checkpoint_every=250",
          "--set", "train.keep_last=20", "--set", "train.log_every=50"]


def measure(ckpt_path: Path, n: int, device: str) -> dict:
    from cgantool.checkpoint import load_checkpoint
    from cgantool.data import load_dataset
    from cgantool.data.shapes import SHAPES
    from cgantool.engine.model import load_generator
    from cgantool.eval.evaluate import caption_of
    from cgantool.eval.probe import load_probe, real_ceiling
    from cgantool.sampling import generate, latents
    from cgantool.text.encoders import from_info

    ckpt = load_checkpoint(ckpt_path)
    data = load_dataset(ckpt.config.data)
    encoder = from_info(ckpt.data_info["text"], ckpt.tensors("text_encoder")).to(device)
    probe = load_probe(data.resolution)
    captions = [caption_of(data, i) for i in range(n)]
    target = data.labels[torch.arange(n) % len(data)]  # single-object shapes: every caption names this class
    control = target[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
    cond = encoder.encode(captions).to("cpu")
    out = {"step": ckpt.step}
    for name, ema in (("ema", True), ("raw", False)):
        if ema and not ckpt.has("G_ema"):
            continue
        G = load_generator(ckpt, ema=ema, device=device)
        images = generate(G, latents(0, range(n), G.z_dim), cond, batch_size=128, device=device)
        pred = probe.predict_class(images)
        ns = len(SHAPES)
        for tag, y in (("", target), ("chance_", control)):
            out[f"{name}_{tag}attribute_accuracy"] = round(float((pred == y).float().mean()), 4)
            out[f"{name}_{tag}color_accuracy"] = round(float((pred // ns == y // ns).float().mean()), 4)
            out[f"{name}_{tag}shape_accuracy"] = round(float((pred % ns == y % ns).float().mean()), 4)
    out["real_attribute_accuracy"] = round(real_ceiling(probe, data.resolution), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="measure this run's checkpoints (no training)")
    p.add_argument("--out", type=Path, default=Path("runs/xmc-align"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("-n", type=int, default=1000, help="generated images per checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--last-only", action="store_true")
    args = p.parse_args()
    run = args.run
    if run is None:
        cmd = [sys.executable, "-m", "cgantool", "train", *RECIPE, "--steps", str(args.steps), "--out", str(args.out),
               "--device", args.device, "--no-progress"]
        subprocess.run(cmd, check=True)
        run = args.out
    ckpts = sorted((run / "checkpoints").glob("step_*.safetensors"))
    if args.last_only:
        ckpts = ckpts[-1:]
    rows = []
    for c in ckpts:
        row = measure(c, args.n, args.device)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"run": str(run), "n": args.n, "checkpoints": rows}))


if __name__ == "__main__":
    main()
