"""Weak scaling of data-parallel training: one process vs N processes with the same work per process.

    python benchmarks/ddp_scaling.py --nproc 2 --per-rank-batch 32 --preset sngan --resolution 32

Runs benchmarks/train_throughput.py once as a single process (batch b, T threads) and once under torchrun
with N processes (global batch N·b, T threads each), and prints, as its last line, one JSON object with both
step times and ``scaling = t_N / t_1`` (1.0 = ideal: N times the images in the same time; the target is
<= 1.2 on CPU with gloo). On a CPU give each process its own cores: N·T must not exceed the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._cli import positive  # noqa: E402


def _run(cmd: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode == 2:  # bad input: the benchmark's own error and hint lines, and its exit code
        sys.stderr.write("\n".join(line for line in out.stderr.splitlines() if line.startswith(("error:", "hint:")))
                         or out.stderr[-2000:])
        sys.stderr.write("\n")
        sys.exit(2)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc", type=positive, default=2)
    p.add_argument("--per-rank-batch", type=positive, default=32)
    p.add_argument("--threads", type=positive, default=1, help="CPU threads per process")
    p.add_argument("--device", default="cpu")
    args, rest = p.parse_known_args()
    bench = [str(HERE / "train_throughput.py"), "--device", args.device, "--threads", str(args.threads), *rest]
    one = _run([sys.executable, *bench, "--batch-size", str(args.per_rank_batch)], args.threads)
    many = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
                 *bench, "--batch-size", str(args.per_rank_batch * args.nproc)], args.threads)
    result = {"nproc": args.nproc, "per_rank_batch": args.per_rank_batch, "threads_per_proc": args.threads,
              "s_per_step_1": one["s_per_step"], f"s_per_step_{args.nproc}": many["s_per_step"],
              "images_per_s_1": one["images_per_s"], f"images_per_s_{args.nproc}": many["images_per_s"],
              "scaling": round(many["s_per_step"] / one["s_per_step"], 3), "preset": one["preset"],
              "resolution": one["resolution"]}
    print(f"1 process: {one['s_per_step'] * 1000:.1f} ms/step; {args.nproc} processes: "
          f"{many['s_per_step'] * 1000:.1f} ms/step (x{result['scaling']} of ideal)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
