"""Time feature extraction and a whole `eval` of N generated samples on the current device.

    python benchmarks/eval_throughput.py --num-samples 2000 [--inception-weights PATH | --feature-extractor M:F]
    python benchmarks/eval_throughput.py --stand-in-inception --device cuda   # no Inception file at hand

Trains nothing: a randomly initialised SNGAN generator at the chosen resolution stands in for a checkpoint
(generation cost is part of a real eval). Prints a summary to stderr and one JSON object as the last line.
``--stand-in-inception`` times torchvision's Inception-v3 with random weights (the FID network's layers and
FLOPs, meaningless features: speed only, its "fid" is not a score).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cli import positive, run  # noqa: E402
from benchmarks._gpu import gpu_util_sampler  # noqa: E402
from cgantool.config import DataConfig  # noqa: E402
from cgantool.data import load_dataset  # noqa: E402
from cgantool.device import resolve_device  # noqa: E402
from cgantool.eval.evaluate import EvalOptions, Extractor, evaluate_generator  # noqa: E402
from cgantool.nets import SNGANGenerator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=positive, default=2000)
    p.add_argument("--batch-size", type=positive, default=200)
    p.add_argument("--resolution", type=positive, default=32)
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--feature-extractor", default="", help="module:function (default: Inception)")
    p.add_argument("--mode", default="clean")
    p.add_argument("--device", default="auto")
    p.add_argument("--stand-in-inception", action="store_true",
                   help="random-weight torchvision Inception-v3 (timing only; = --feature-extractor benchmarks._gpu:stand_in_inception)")
    args = p.parse_args()
    if args.stand_in_inception:
        args.feature_extractor = "benchmarks._gpu:stand_in_inception"
    device = resolve_device(args.device)
    opts = EvalOptions(metrics=("fid", "kid"), num_samples=args.num_samples, batch_size=args.batch_size,
                       mode=args.mode, feature_extractor=args.feature_extractor,
                       inception_weights=args.inception_weights, device=device)
    extractor = Extractor(opts)
    data = load_dataset(DataConfig(source="shapes", resolution=args.resolution, num_images=args.num_samples))
    images = data.images[: args.batch_size].clone()
    extractor.features(images)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with gpu_util_sampler(device) as util:
        for i in range(0, args.num_samples, args.batch_size):
            extractor.features(data.images[i : i + args.batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
    extract_s = time.perf_counter() - start
    torch.manual_seed(0)
    G = SNGANGenerator(args.resolution, channels=64, num_classes=20).to(device)
    start = time.perf_counter()
    result = evaluate_generator(G, 20, data, opts, extractor)
    total_s = time.perf_counter() - start
    out = {
        "device": str(device), "extractor": extractor.name, "num_samples": args.num_samples,
        "features_images_per_s": round(args.num_samples / extract_s, 1),
        "eval_seconds": round(total_s, 2), "eval_images_per_s": round(2 * args.num_samples / total_s, 1),
        "fid": result["metrics"]["fid"],
    }
    if device.type == "cuda":
        out["features_gpu_util_pct"] = util.mean
    print(f"features: {out['features_images_per_s']} img/s; whole eval of {args.num_samples} fake + "
          f"{args.num_samples} real: {total_s:.1f} s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    run(main)
