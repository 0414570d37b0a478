"""The data pipeline on a generated folder of JPEGs: cache build speed and peak memory, prefetched reads.

    python benchmarks/data_pipeline.py            # 2,000 and 20,000 JPEGs
    python benchmarks/data_pipeline.py --quick    # 500 and 5,000 (a few minutes on 2 cores)

Writes JPEGs of random sizes (256-500 px a side, smooth random content) into a temporary folder, then builds
the uint8 cache of each set in a fresh subprocess and records its peak RSS (the builder and, separately, its
largest decode worker): ``peak_rss_ratio`` (larger set / smaller set, builder) should stay near 1, as the build
streams into the memory-mapped file. ``decode_img_per_s`` is the larger build's images/s, also per decode
worker. Then times training steps (a small conv net, forward and backward on the CPU) drawing batches from the
memory-mapped cache, its pages dropped from the page cache first, against an in-memory copy (``--threads``
torch threads, 1 by default):
``prefetch_ratio`` = mapped / in-memory step time (≤ 1.1 when the background reads hide the disk).
Also times the cache's per-image decode + resize with PIL against the same with ``torchvision.io.decode_image``
(libjpeg-turbo) on 200 of the JPEGs, and checks that the images are identical. Prints a summary to stderr and one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._cli import positive, run  # noqa: E402

BUILD = """
import json, resource, sys, time
from cgantool.config import DataConfig
from cgantool.data import load_dataset
from cgantool.data.decode import decode_workers
start = time.perf_counter()
ds = load_dataset(DataConfig(source=sys.argv[1], resolution=int(sys.argv[2])))
seconds = time.perf_counter() - start
print(json.dumps({"images": len(ds), "seconds": seconds, "workers": decode_workers(len(ds)),
                  "rss_builder": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def _write_jpegs(args: tuple[Path, int, int]) -> None:
    from PIL import Image

    folder, start, stop = args
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        w, h = (int(v) for v in rng.integers(256, 501, 2))
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        img = small.resize((w, h), Image.Resampling.BICUBIC)
        path = folder / f"class{i % 10}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)


def make_folder(folder: Path, count: int) -> None:
    step = 250
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_jpegs, [(folder, s, min(s + step, count)) for s in range(0, count, step)]))


def build(folder: Path, resolution: int, cache: Path) -> dict:
    env = {**os.environ, "CGANTOOL_CACHE": str(cache), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", BUILD, str(folder), str(resolution)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"error: the cache build of {folder} failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def _drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def step_time(dataset, steps: int, batch_size: int, entry: Path | None) -> float:
    """Seconds per step of a small conv net trained on batches drawn from ``dataset``."""
    from cgantool.data.batches import RealBatches, to_float

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 4, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(32, 64, 4, 2, 1),
        torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(64, 128, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    reals = RealBatches(dataset, batch_size, seed=0, device=torch.device("cpu"))
    if entry is not None:
        _drop_page_cache(entry)
    start = time.perf_counter()
    for _ in range(steps):
        images = reals.next()[0]
        loss = net(to_float(images)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    reals.close()
    return (time.perf_counter() - start) / steps


def compare_decoders(files: list[Path], resolution: int) -> dict:
    """Per image, what the cache does (``_decode_one``: PIL decode, centre crop, resize) against the same with
    ``torchvision.io.decode_image`` (libjpeg-turbo) decoding, and whether the two give identical images."""
    from PIL import Image, ImageOps
    from torchvision.io import ImageReadMode, decode_image, read_file

    from cgantool.data.decode import DECODE_PIXEL_BUDGET, _decode_one, _PixelBudget

    budget = _PixelBudget(DECODE_PIXEL_BUDGET)

    def pil(f: Path) -> np.ndarray:
        return _decode_one(f, resolution, 10**9, budget)

    def tv(f: Path) -> np.ndarray:
        img = Image.fromarray(decode_image(read_file(str(f)), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy())
        return np.asarray(ImageOps.fit(img, (resolution, resolution), Image.Resampling.BICUBIC)).transpose(2, 0, 1)

    timings: dict[str, list[float]] = {"pil": [], "torchvision": []}
    for _ in range(2):
        for name, fn in (("pil", pil), ("torchvision", tv)):
            start = time.perf_counter()
            for f in files:
                fn(f)
            timings[name].append((time.perf_counter() - start) / len(files))
    same = sum(np.array_equal(pil(f), tv(f)) for f in files)
    return {"pil_decode_ms": 1e3 * min(timings["pil"]), "torchvision_decode_ms": 1e3 * min(timings["torchvision"]),
            "decoders_identical": f"{same}/{len(files)}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="500 and 5,000 JPEGs instead of 2,000 and 20,000")
    p.add_argument("--small", type=positive, default=None, help="files in the smaller set")
    p.add_argument("--large", type=positive, default=None, help="files in the larger set")
    p.add_argument("--resolution", type=positive, default=64)
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--steps", type=positive, default=20, help="training steps timed per variant and round")
    p.add_argument("--rounds", type=positive, default=3)
    p.add_argument("--threads", type=positive, default=1,
                   help="torch threads for the timed steps (1: steady timings on a shared CPU, a core left for reads)")
    args = p.parse_args()
    small = args.small or (500 if args.quick else 2000)
    large = args.large or (5000 if args.quick else 20000)
    if small >= large:
        p.error(f"--small ({small}) must be below --large ({large})")
    from cgantool.config import DataConfig
    from cgantool.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="cgantool-data-bench-") as tmp:
        root = Path(tmp)
        builds = {}
        for count in (small, large):
            folder = root / f"jpegs-{count}"
            start = time.perf_counter()
            make_folder(folder, count)
            print(f"wrote {count:,} JPEGs in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            builds[count] = build(folder, args.resolution, root / "cache")
            b = builds[count]
            print(f"cached {count:,} images at {args.resolution} px in {b['seconds']:.1f} s"
                  f" ({b['images'] / b['seconds']:.0f} img/s, {b['workers']} workers), peak RSS builder"
                  f" {b['rss_builder'] / 2**20:.0f} MiB, largest worker {b['rss_worker'] / 2**20:.0f} MiB",
                  file=sys.stderr)
        decoders = compare_decoders(sorted((root / f"jpegs-{small}").rglob("*.jpg"))[:200], args.resolution)
        print(f"decode + resize one JPEG: PIL {decoders['pil_decode_ms']:.2f} ms, torchvision"
              f" {decoders['torchvision_decode_ms']:.2f} ms; identical after the resize:"
              f" {decoders['decoders_identical']}", file=sys.stderr)

        os.environ["CGANTOOL_CACHE"] = str(root / "cache")
        torch.set_num_threads(args.threads)
        mapped = load_dataset(DataConfig(source=str(root / f"jpegs-{large}"), resolution=args.resolution))
        entry = next((root / "cache" / "data").glob(f"folder-{args.resolution}-*")) / "images.npy"
        in_memory = type(mapped)(images=mapped.images.clone(), source="in-memory", labels=mapped.labels)
        unfetched = type(mapped)(images=mapped.images, source="mapped", labels=mapped.labels)  # mapped=False
        step_time(in_memory, 3, args.batch_size, None)  # warm-up
        times: dict[str, list[float]] = {"memory": [], "unfetched": [], "mapped": []}
        for _ in range(args.rounds):  # interleaved, the fastest round of each kept: the CPU may be shared
            times["memory"].append(step_time(in_memory, args.steps, args.batch_size, None))
            times["unfetched"].append(step_time(unfetched, args.steps, args.batch_size, entry))
            times["mapped"].append(step_time(mapped, args.steps, args.batch_size, entry))
        t_memory, t_unfetched, t_mapped = (min(times[k]) for k in ("memory", "unfetched", "mapped"))
        print(f"training step: in memory {1e3 * t_memory:.1f} ms, memory-mapped {1e3 * t_mapped:.1f} ms prefetched"
              f" ({1e3 * t_unfetched:.1f} ms without prefetch), page cache dropped first", file=sys.stderr)

    b_small, b_large = builds[small], builds[large]
    result = {
        "small": small, "large": large, "resolution": args.resolution,
        "peak_rss_ratio": round(b_large["rss_builder"] / b_small["rss_builder"], 3),
        "peak_rss_mib": [round(b_small["rss_builder"] / 2**20), round(b_large["rss_builder"] / 2**20)],
        "peak_rss_worker_mib": [round(b_small["rss_worker"] / 2**20), round(b_large["rss_worker"] / 2**20)],
        "decode_img_per_s": round(b_large["images"] / b_large["seconds"], 1),
        "decode_img_per_s_per_worker": round(b_large["images"] / b_large["seconds"] / max(b_large["workers"], 1), 1),
        "decode_workers": b_large["workers"],
        "prefetch_ratio": round(t_mapped / t_memory, 3),
        "no_prefetch_ratio": round(t_unfetched / t_memory, 3),
        "step_ms_in_memory": round(1e3 * t_memory, 2),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in decoders.items()},
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    run(main)
