"""Longer learning runs of every preset on the built-in shapes data, with their losses and eval figures.

    python benchmarks/learning_runs.py --steps 1500 --resolution 16 --out runs/bench

Each preset trains through the real CLI at reduced width, then `cgantool eval` scores its last checkpoint
with the test-built feature extractor (offline) and, for conditional presets, the shapes attribute probe.
Prints one JSON line per preset (the figures recorded in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cli import positive  # noqa: E402


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cgantool", *args], cwd=ROOT, capture_output=True, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=positive, default=1500)
    p.add_argument("--resolution", type=positive, default=16)
    p.add_argument("--channels", type=positive, default=64)
    p.add_argument("--presets", default="sngan,infomax-gan,contragan,dualcontrast")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--eval-samples", type=positive, default=1000)
    args = p.parse_args()
    for preset in args.presets.split(","):
        out = Path(args.out) / preset
        width = args.channels // 2 if preset == "contragan" else args.channels  # BigGAN widths are multiples
        train = run(["train", "--preset", preset, "--data", f"shapes:{args.resolution}", "--steps", str(args.steps),
                     "--out", str(out), "--force", "--no-progress", "--set", f"model.g_channels={width}",
                     "--set", f"model.d_channels={width}", "--set", "train.d_steps_per_g_step=2",
                     "--set", "optim.lr_decay=none", "--set", "train.ema_decay=0",
                     "--set", "loss.infomax.rkhs_dim=256", "--set", "train.log_every=50"])
        if train.returncode != 0:
            print(json.dumps({"preset": preset, "error": train.stderr.strip().splitlines()[-1:]}))
            continue
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        first, last = rows[0], rows[-1]
        losses = {k: [round(first[k], 3), round(last[k], 3)] for k in last if k.startswith(("d/", "g/"))}
        ev = run(["eval", str(out / "checkpoints" / "last.safetensors"), "--fid", "--prdc", "-n", str(args.eval_samples),
                  "--feature-extractor", "tests.fake_extractor:build", "--json", "-", "--device", "cpu"])
        metrics = json.loads(ev.stdout)["metrics"] if ev.returncode == 0 else {"error": ev.stderr.strip()[-200:]}
        print(json.dumps({"preset": preset, "steps": args.steps, "img_per_s": last["img_per_s"],
                          "losses_first_last": losses, "metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()
