"""Time full training steps (K D updates + 1 G update) of a preset with the engine's real step code.

    python benchmarks/train_throughput.py --preset sngan --resolution 32 --batch-size 64 --steps 10
    torchrun --nproc-per-node 2 benchmarks/train_throughput.py ...   # data-parallel: --batch-size is global
    python benchmarks/train_throughput.py ... --set train.cpu_amp=bf16   # bf16 autocast on CPU (AMX CPUs)

Prints a human summary to stderr and, as its last line on stdout, one JSON object with s_per_step (median),
images_per_s (real images consumed by D per second), peak_mem_mb, amp (the autocast in use) and, on CUDA, mfu
and gpu_util_pct.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cli import non_negative, positive, run  # noqa: E402
from benchmarks._gpu import gpu_util_sampler  # noqa: E402
from cgantool.config import resolve_config  # noqa: E402
from cgantool.data import load_dataset  # noqa: E402
from cgantool.device import resolve_device  # noqa: E402
from cgantool.engine.trainer import build_trainer  # noqa: E402

PEAK_TFLOPS_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense tensor-core peaks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="sngan")
    p.add_argument("--resolution", type=positive, default=32)
    p.add_argument("--g-channels", type=non_negative, default=0, help="0 = paper width")
    p.add_argument("--d-channels", type=non_negative, default=0, help="0 = paper width")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--d-steps", type=positive, default=None, help="default: the preset's")
    p.add_argument("--steps", type=positive, default=10, help="timed steps after warm-up")
    p.add_argument("--warmup", type=non_negative, default=2)
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (the engine's --compile)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (the engine's --channels-last)")
    p.add_argument("--reuse-fake", action="store_true", help="train.reuse_fake = true (changes the recipe)")
    p.add_argument("--set", action="append", default=[], help="any config key=value (repeatable)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=non_negative, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sets = [f"model.g_channels={args.g_channels}", f"model.d_channels={args.d_channels}",
            f"train.batch_size={args.batch_size}", "data.num_images=2048"]
    if args.reuse_fake:
        sets.append("train.reuse_fake=true")
    sets += args.set
    if args.d_steps:
        sets.append(f"train.d_steps_per_g_step={args.d_steps}")
    cfg = resolve_config(args.preset, sets=sets, flags={"data.resolution": args.resolution})
    from cgantool.engine import dist

    info = dist.from_env()
    device = resolve_device(args.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    dist.init(info, device)
    data = load_dataset(cfg.data)
    info_d = data.info()
    bank = None
    if cfg.model.conditioning == "text":  # text-to-image: the encoder and caption features, as train() does
        from cgantool.text.setup import prepare_text

        encoder, bank = prepare_text(cfg, data, device)
        info_d["text"] = encoder.info()
    t = build_trainer(cfg, data, device, None, info_d, dist_info=info, compile=args.compile,
                      channels_last=args.channels_last, text_bank=bank)
    k = cfg.train.d_steps_per_g_step

    def full_step():
        for i in range(k):
            t.d_step(keep_fake=args.reuse_fake and i == k - 1)
        t.g_step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        full_step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with gpu_util_sampler(device) as util:
        for _ in range(args.steps):
            start = time.perf_counter()
            full_step()
            sync()
            times.append(time.perf_counter() - start)
    s_per_step = statistics.median(times)
    result = {
        "preset": args.preset, "resolution": args.resolution, "batch_size": args.batch_size, "d_steps": k,
        "g_params": sum(p.numel() for p in t.gan.G.parameters()),
        "d_params": sum(p.numel() for p in t.gan.D.parameters()),
        "device": str(device), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "world_size": info.world,
        "compile": args.compile, "channels_last": args.channels_last, "reuse_fake": args.reuse_fake,
        "amp": cfg.train.amp_on(device.type),
        "s_per_step": round(s_per_step, 5),
        "images_per_s": round(args.batch_size * k / s_per_step, 2),
    }
    if device.type == "cuda":
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            full_step()
        name = torch.cuda.get_device_name(device)
        peak = next((v for key, v in PEAK_TFLOPS_BF16.items() if key in name), None)
        result["gpu"] = name
        result["tflops"] = round(counter.get_total_flops() / s_per_step / 1e12, 2)
        result["mfu"] = round(result["tflops"] / peak, 4) if peak else None
        result["gpu_util_pct"] = util.mean  # NVML's busy percentage over the timed steps (None: unreadable)
        if util.error:
            result["gpu_util_error"] = util.error
    else:
        result["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if info.enabled:  # the slowest rank sets the pace
        t_max = torch.tensor([s_per_step], device=device)
        torch.distributed.all_reduce(t_max, op=torch.distributed.ReduceOp.MAX)
        result["s_per_step"] = round(float(t_max), 5)
        result["images_per_s"] = round(args.batch_size * k / float(t_max), 2)
        dist.shutdown()
        if not info.is_main:
            return
    print(f"{args.preset} {args.resolution}px batch {args.batch_size}: {result['s_per_step'] * 1000:.1f} ms/step, "
          f"{result['images_per_s']:.1f} img/s, peak {result['peak_mem_mb']} MB", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    run(main)
