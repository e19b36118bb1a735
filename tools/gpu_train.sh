#!/usr/bin/env bash
# Retrain every shipped demo package on a lent GPU machine, in one call, and bring them back.
#
# The machine has PyTorch but not our pure-Python dependencies: they travel as wheels in .whl/
# (monai, nibabel, pydicom, platformdirs; see docs/models.md), fetched beforehand, on a machine
# with the internet or a local index, into the ignored folder .whl/ :
#   for p in $(grep -iE '^(monai|nibabel|pydicom|platformdirs)==' requirements/lock.txt); do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl "$p"; done
# Usage on the GPU machine, from the repository root:   bash tools/gpu_train.sh OUTDIR [BUDGET_SECONDS]
# It runs a tiny CUDA smoke training first (so a broken GPU path fails in seconds, not minutes),
# then `breastmri train --task all` with the recorded arguments, then the GPU inference benchmark
# while time is left, and packs the packages into OUTDIR/weights.tgz whatever happened.
set -uo pipefail
OUT=${1:?usage: gpu_train.sh OUTDIR [BUDGET_SECONDS]}
BUDGET=${2:-540}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BREASTMRI_TRAIN_CACHE=/tmp/breastmri_cache
nvidia-smi -L
WORKERS=$(( $(nproc) - 1 ))
# overridable for a dry run on a CPU machine: DEVICE=cpu CASES=6 VAL=4 TEST=4 EPOCHS=1
DEVICE=${DEVICE:-cuda}; CASES=${CASES:-360}; VAL=${VAL:-160}; TEST=${TEST:-100}
EPOCHS_ARG=${EPOCHS:+--epochs $EPOCHS}
WEIGHTS=${WEIGHTS:-napari_breastmri/models/weights}
PY=${PY:-python3}
BM="$PY -m napari_breastmri.cli"

echo "== smoke ($(left) s left)"
$BM train --task all --cases 4 --val-cases 4 --test-cases 2 --epochs 1 --workers "$WORKERS" \
  --phantom-shape 32 96 96 --phantom-spacing 3 2 2 --held-out-grid same --device "$DEVICE" \
  --out /tmp/smoke --cache /tmp/smoke_cache 2>&1 | tail -5 || exit 1
[ -f /tmp/smoke/demo-screening/card.yaml ] || { echo "smoke training failed"; exit 1; }

echo "== train ($(left) s left)"
# the classifiers train first; segmentation gets what is left, less what --time-limit does not
# cover: the detector's held-out evaluation (~60 s on an H200, its post-processing is on the CPU)
# and packing. 60 s was too little on 2026-11-26: the call ended during that evaluation.
TL=$(( $(left) - ${RESERVE:-130} ))
timeout $(( $(left) - 40 )) $BM train --task all --cases "$CASES" --val-cases "$VAL" --test-cases "$TEST" \
  --seed 7 --device "$DEVICE" --workers "$WORKERS" --threads 4 --time-limit "$TL" $EPOCHS_ARG \
  --out "$WEIGHTS" 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$" | grep -E "^demo|^  |Error|error|Traceback|File " | tail -120
echo "== train ended ($(left) s left)"
tar czf "$OUT/weights.tgz" -C "$(dirname "$WEIGHTS")" "$(basename "$WEIGHTS")"
grep -H -E "^  (steps|planned_steps|seconds|train_seconds|data_seconds|machine):" "$WEIGHTS"/*/card.yaml

if [ "$(left)" -gt "${BENCH_MIN:-100}" ]; then
  echo "== gpu benchmark ($(left) s left)"
  timeout $(( $(left) - 10 )) $PY -m tests.benchmarks.gpu_inference > "$OUT/bench_gpu.md" 2> "$OUT/bench_gpu.err"
  cat "$OUT/bench_gpu.md"; tail -5 "$OUT/bench_gpu.err"
fi
echo "== done ($(left) s left)"
