#!/usr/bin/env bash
# The GPU reproduction plan for CIFAR-10 (issue 31 item 3), one command:
#
#     bash benchmarks/cifar10_plan.sh [OUTDIR]          # default OUTDIR: runs/cifar10-plan
#
# Trains every image preset that has a CIFAR-10 number in its paper for 100k G steps with the preset's own
# recipe (sngan, infomax-gan, contragan, dualcontrast; xmcgan is text-to-image, so not on CIFAR), then scores
# the last checkpoint with the FID protocol of the code that produced the paper's number (README "Reproducing
# the papers' FIDs"):
#   sngan, infomax-gan  --protocol legacy-tensorflow --data cifar10       (Mimicry: 50k train reals / 50k fakes, mean of 3)
#   contragan           --protocol studiogan --data cifar10-test          (StudioGAN v0.4: the 10k test split, 10k fakes)
#   dualcontrast        --protocol studiogan --data cifar10-test          (no public code: our unverified guess)
# and, for the class-conditional runs, intra-class FID (--per-class; ContraGAN's StudioGAN figure is 119.6).
# Results: OUTDIR/<preset>/eval.json (and eval-per-class.json), one JSON object each; OUTDIR/summary.jsonl.
#
# Needs: a CUDA GPU; CIFAR-10 in $CIFAR_ROOT (the extracted cifar-10-batches-py's parent; default: cgantool's
# cache dir, downloaded there when online); the Inception weights in $CGANTOOL_INCEPTION_WEIGHTS (or online).
# Environment: PRESETS="sngan contragan" to run a subset, STEPS=100000, DEVICE=cuda, CGANTOOL="python -m cgantool".
# A run whose OUTDIR/<preset>/checkpoints/last.safetensors exists at STEPS is resumed (--resume), not restarted.
# Time (H100, measured figures in benchmarks/RESULTS.md when recorded): roughly 5-10 h per preset at n_dis 5.
set -euo pipefail

OUT="${1:-runs/cifar10-plan}"
STEPS="${STEPS:-100000}"
DEVICE="${DEVICE:-cuda}"
PRESETS="${PRESETS:-sngan infomax-gan contragan dualcontrast}"
CGANTOOL="${CGANTOOL:-python -m cgantool}"
ROOT_SET=()
if [[ -n "${CIFAR_ROOT:-}" ]]; then
    ROOT_SET=(--set "data.root=${CIFAR_ROOT}")
fi

protocol_for() {
    case "$1" in
        sngan|infomax-gan) echo "legacy-tensorflow cifar10" ;;
        contragan|dualcontrast) echo "studiogan cifar10-test" ;;
        *) echo "unknown preset for this plan: $1" >&2; return 2 ;;
    esac
}

mkdir -p "$OUT"
for preset in $PRESETS; do
    read -r protocol reference < <(protocol_for "$preset")
    run="$OUT/$preset"
    ckpt="$run/checkpoints/last.safetensors"
    echo "== $preset: train $STEPS steps -> $run" >&2
    if [[ -f "$ckpt" ]]; then
        resume=(--resume)
    else
        resume=(--force)
    fi
    $CGANTOOL train --preset "$preset" --data cifar10 "${ROOT_SET[@]}" --steps "$STEPS" --out "$run" \
        --device "$DEVICE" --no-progress "${resume[@]}" 2> >(tee "$run.train.log" >&2)
    echo "== $preset: eval --protocol $protocol --data $reference" >&2
    # exit code 0: scored (--max-fid is not used, so 1 is not expected); anything else stops the plan
    $CGANTOOL eval "$ckpt" --protocol "$protocol" --data "$reference" --fid --is --device "$DEVICE" \
        --no-progress --json "$run/eval.json"
    if [[ "$preset" != "infomax-gan" ]]; then  # class-conditional on CIFAR-10 (sngan: projection D via 'auto')
        $CGANTOOL eval "$ckpt" --per-class --data "$reference" --device "$DEVICE" --no-progress \
            --json "$run/eval-per-class.json"
    fi
    python - "$preset" "$run/eval.json" "$OUT/summary.jsonl" <<'PY'
import json, sys
preset, path, summary = sys.argv[1:]
result = json.load(open(path))
with open(summary, "a") as f:
    f.write(json.dumps({"preset": preset, "result": result}) + "\n")
PY
done
echo "results: $OUT/summary.jsonl" >&2
