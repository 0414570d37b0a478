#!/usr/bin/env bash
# The GPU figures of the performance issue in one short run, for a session that is lent a GPU:
#   reference SNGAN-32 step vs cgantool (fp32 eager, bf16, bf16 + channels_last, bf16 + compile),
#   GPU utilisation and MFU, and FID feature-extraction speed (a random-weight Inception stand-in when no
#   Inception file is at hand; pass INCEPTION=PATH for the real one).
# One JSON object per line goes to ${OUT:-benchmarks/out}/gpu_check.jsonl; each step has its own time limit
# so one slow compile cannot eat the device budget. About 5 minutes on an H100/H200 (the device tool's
# `run` gives $OUT; copy the figures into RESULTS.md with the machine).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh   # a smoke run of the same commands on a CPU
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
OUTDIR=${OUT:-benchmarks/out}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.jsonl"
: > "$LOG"
if [ "${QUICK:-0}" = 1 ]; then
  STEPS="--steps 1 --warmup 1"; REF_EXTRA="--d-steps 1"; TT_EXTRA="--d-steps 1 --g-channels 16 --d-channels 16 --resolution 16"
  EVAL_N="--num-samples 40 --batch-size 20"; LIMIT=300
else
  STEPS="--steps 30 --warmup 5"; REF_EXTRA=""; TT_EXTRA="--resolution 32"
  EVAL_N="--num-samples 10000 --batch-size 500"; LIMIT=240
fi
COMMON="--preset sngan --batch-size 64 --device $DEVICE --set model.conditioning=none $TT_EXTRA"

step() {  # step NAME COMMAND...: run with a time limit, append its last stdout line (JSON) tagged with NAME
  local name=$1; shift
  echo "== $name: $*" >&2
  local line
  line=$(timeout "$LIMIT" "$@" | tail -n 1)
  local rc=${PIPESTATUS[0]}
  if [ -n "$line" ] && [ "${line:0:1}" = "{" ]; then
    echo "{\"check\": \"$name\", \"rc\": $rc, \"result\": $line}" | tee -a "$LOG"
  else
    echo "{\"check\": \"$name\", \"rc\": $rc, \"result\": null}" | tee -a "$LOG"
  fi
}

{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } >&2
step reference        $PY benchmarks/reference_step.py --batch-size 64 --device "$DEVICE" $STEPS $REF_EXTRA
step fp32_eager       $PY benchmarks/train_throughput.py $COMMON $STEPS --set train.amp=none
step bf16_eager       $PY benchmarks/train_throughput.py $COMMON $STEPS
step bf16_nhwc        $PY benchmarks/train_throughput.py $COMMON $STEPS --channels-last
step bf16_compile     $PY benchmarks/train_throughput.py $COMMON $STEPS --compile
step bf16_nhwc_compile $PY benchmarks/train_throughput.py $COMMON $STEPS --compile --channels-last
if [ -n "${INCEPTION:-}" ]; then
  step eval_inception $PY benchmarks/eval_throughput.py --device "$DEVICE" $EVAL_N --inception-weights "$INCEPTION"
else
  step eval_stand_in  $PY benchmarks/eval_throughput.py --device "$DEVICE" $EVAL_N --stand-in-inception
fi
# ratio of each cgantool variant's images/s to the reference's, for the RESULTS.md table
[ "${QUICK:-0}" = 1 ] && echo "QUICK smoke run: cgantool ran a smaller model than the reference; the ratios below are not figures"
$PY - "$LOG" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
ref = next((r["result"] for r in rows if r["check"] == "reference" and r["result"]), None)
for r in rows:
    res = r["result"] or {}
    if "images_per_s" in res and ref:
        print(f"{r['check']:>18}: {res['images_per_s']:>9.1f} img/s  x{res['images_per_s'] / ref['images_per_s']:.2f} "
              f"of reference  mfu {res.get('mfu')}  gpu util {res.get('gpu_util_pct')}%  peak {res.get('peak_mem_mb')} MB")
    elif res:
        print(f"{r['check']:>18}: {json.dumps(res)}")
    else:
        print(f"{r['check']:>18}: no result (rc {r['rc']})")
PYEOF
