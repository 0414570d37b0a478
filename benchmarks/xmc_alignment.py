"""Do XMC-GAN's images follow their captions? Train on the built-in shapes data at CPU scale, then read the
colour and shape of images generated from held-in captions with the shapes attribute probe, and where the
object is drawn from its colour mask.

    python benchmarks/xmc_alignment.py --out runs/xmc-align --steps 8000          # train, then measure
    python benchmarks/xmc_alignment.py --run runs/xmc-align                        # measure an existing run

For every checkpoint of the run (raw G and EMA G): ``attribute_accuracy`` = the probe's (colour, shape)
equals the caption's; ``color_accuracy`` and ``shape_accuracy`` separately; ``chance_*`` = the same images
scored against the captions of other images (a permutation), which is what an image that ignores its caption
scores; ``real_*`` = the probe on real images (its ceiling). ``position_accuracy``: over the captions that
name a position, how often the 3x3 cell of the centroid of the pixels near one of the shapes palette colours
is the named cell (real images: 0.98 at 16 px). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cli import positive, run  # noqa: E402
from cgantool.errors import DataError  # noqa: E402

# The CPU recipe (RESULTS.md, run X1): the preset's model and losses at width 8 (G) / 16 (D) on 16 px shapes,
# with the optimisation that made the sngan demo draw shapes: 1 D step per G step, Adam (0, 0.9) at lr 1e-3 (G)
# / 2e-3 (D), batch 32, EMA 0.999 from step 250. The official recipe (lr 1e-4 / 4e-4, (0.5, 0.999), 2 D steps)
# drew colour but not shape within 1500 steps at width 16.
RECIPE = ["--preset", "xmcgan", "--data", "shapes:16", "--set", "model.g_channels=8", "--set", "model.d_channels=16",
          "--set", "train.batch_size=32", "--set", "train.d_steps_per_g_step=1", "--set", "optim.lr_g=1e-3",
          "--set", "optim.lr_d=2e-3", "--set", "optim.beta1=0.0", "--set", "optim.beta2=0.9",
          "--set", "train.ema_decay=0.999", "--set", "train.ema_start_step=250",
          "--set", "train.sample_every=500", "--set", "train.checkpoint_every=500",
          "--set", "train.keep_last=40", "--set", "train.log_every=50"]


def object_cell(images_u8: torch.Tensor, max_dist: float = 0.22) -> torch.Tensor:
    """The 3x3 grid cell (row-major, as shapes.POSITIONS) of the centroid of each image's object pixels: those
    within ``max_dist`` (RGB in [0, 1]) of a fill colour of the shapes palette."""
    from cgantool.data.shapes import _RGB

    x = images_u8.float() / 255
    near = ((x[:, None] - _RGB[None, :, :, None, None]) ** 2).sum(2).sqrt().amin(1) < max_dist  # [N, R, R]
    m = near.float()
    R = x.shape[-1]
    centres = (torch.arange(R) + 0.5) / R
    mass = m.sum((1, 2)).clamp_min(1)
    cy = (m.sum(2) * centres).sum(1) / mass
    cx = (m.sum(1) * centres).sum(1) / mass
    return (cy * 3).clamp(0, 2.999).long() * 3 + (cx * 3).clamp(0, 2.999).long()


def named_cells(captions: list[str]) -> torch.Tensor:
    """The position each caption names (index into shapes.POSITIONS), -1 where it names none."""
    from cgantool.data.shapes import POSITIONS, parse_caption_attributes

    objs = [parse_caption_attributes(c) for c in captions]
    return torch.tensor([POSITIONS.index(o[0]["position"]) if o and "position" in o[0] else -1 for o in objs])


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
    cells = named_cells(captions)
    has_pos = cells >= 0
    pos_target = cells[has_pos]
    pos_control = pos_target[torch.randperm(len(pos_target), generator=torch.Generator().manual_seed(2))]
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
        drawn = object_cell(images)[has_pos]
        for tag, y in (("", pos_target), ("chance_", pos_control)):
            out[f"{name}_{tag}position_accuracy"] = round(float((drawn == y).float().mean()), 4)
    out["real_attribute_accuracy"] = round(real_ceiling(probe, data.resolution), 4)
    real = torch.as_tensor(data.images[torch.arange(n) % len(data)])
    out["real_position_accuracy"] = round(float((object_cell(real)[has_pos] == pos_target).float().mean()), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="measure this run's checkpoints (no training)")
    p.add_argument("--out", type=Path, default=Path("runs/xmc-align"))
    p.add_argument("--steps", type=positive, default=8000)
    p.add_argument("-n", type=positive, default=1000, help="generated images per checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--last-only", action="store_true")
    args = p.parse_args()
    run = args.run
    if run is None:
        cmd = [sys.executable, "-m", "cgantool", "train", *RECIPE, "--steps", str(args.steps), "--out", str(args.out),
               "--device", args.device, "--no-progress"]
        rc = subprocess.run(cmd, check=False).returncode
        if rc:
            sys.exit(rc)  # cgantool train has said why
        run = args.out
    ckpts = sorted((run / "checkpoints").glob("step_*.safetensors"))
    if not ckpts:
        raise DataError(f"no step_*.safetensors checkpoints in {run / 'checkpoints'}",
                        hint="--run takes a run directory written by cgantool train (runs/NAME)")
    if args.last_only:
        ckpts = ckpts[-1:]
    rows = []
    for c in ckpts:
        row = measure(c, args.n, args.device)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps({"run": str(run), "n": args.n, "checkpoints": rows}))


if __name__ == "__main__":
    run(main)
