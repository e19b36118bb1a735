#!/usr/bin/env bash
# Train detector candidates on a lent GPU machine, in one call, and bring them back (stop 15).
#
#   bash tools/gpu_detector.sh OUTDIR [BUDGET_SECONDS]             (from the repository root)
#   bash tools/gpu_detector.sh OUTDIR BUDGET_SECONDS PACKAGE...    (one more round for each)
#
# Like tools/gpu_train.sh it needs our pure-Python dependencies as wheels in .whl/ (see there).
# The phantom cases are generated once, in parallel, for every run; then, sharing the GPU:
#   A  the shipped detector fine-tuned longer on the lesions it misses (500 training cases);
#   C  a detector trained from scratch with small lesions weighed up in the loss
#      (--lesion-sampling sized, 500 cases), cut to the time left, then fine-tuned like A (C-ft).
# With packages after the budget, it fine-tunes each of them once more like A, in parallel
# (stop 15 ran two such rounds on A and C-ft: 170 s a round on an H200, the cases cached).
# Each package is copied to OUTDIR as soon as it is written, so a call cut short keeps what it
# made (OUTDIR/NAME/, NAME being the package's folder name with "+" added per round; the device
# tool brings back only a few files, so everything is also packed into OUTDIR/packages.tgz).
# Which one ships is decided afterwards on the validation cases (seeds 75000-75059), not on
# the held-out set each card reports.
set -uo pipefail
OUT=${1:?usage: gpu_detector.sh OUTDIR [BUDGET_SECONDS]}
BUDGET=${2:-540}
AGAIN=("${@:3}")
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }

if [ "${DEVICE:-cuda}" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi -L
fi
export PYTHONUNBUFFERED=1
# overridable for a dry run on a CPU machine:
#   DEVICE=cpu CASES=6 TEST=2 EPOCHS_C=1 EPOCHS_A=1 EPOCHS_FT=1 PHANTOM="--phantom-shape 32 96 96 --phantom-spacing 3 2 2 --held-out-grid same"
DEVICE=${DEVICE:-cuda}; CASES=${CASES:-500}; TEST=${TEST:-100}
EPOCHS_C=${EPOCHS_C:-90}; EPOCHS_A=${EPOCHS_A:-22}; EPOCHS_FT=${EPOCHS_FT:-15}
PHANTOM=${PHANTOM:-}
PY=${PY:-python3}
CACHE=/tmp/breastmri_cache
WORKERS=$(( $(nproc) - 1 ))
SHIPPED=napari_breastmri/models/weights/demo-lesion-seg
COMMON="--task seg --cases $CASES --test-cases $TEST --seed 7 --device $DEVICE --threads 4 --cache $CACHE $PHANTOM"
train() {  # name, then train's own arguments; the package lands in OUTDIR/name
  local name=$1; shift
  $PY -m napari_breastmri.cli train $COMMON "$@" --out "/tmp/$name" 2>&1 | tr '\r' '\n' \
    | grep -v "it/s\]$" | grep -E "^demo|^  |Error|error|Traceback|File |missed" | tail -40 > "$OUT/$name.log"
  cp -r "/tmp/$name/demo-lesion-seg" "$OUT/$name" 2>/dev/null
  echo "== $name ended ($(left) s left)"; cat "$OUT/$name.log"
}
report() {
  grep -H -E "^  (steps|planned_steps|seconds|train_seconds|eval_seconds|machine):" "$OUT"/*/card.yaml
  grep -H -A3 "^metrics:" "$OUT"/*/card.yaml
  tar czf /tmp/packages.tgz -C "$OUT" --exclude packages.tgz . && mv /tmp/packages.tgz "$OUT/"
  echo "== done ($(left) s left)"
}

echo "== phantom cases ($(left) s left)"  # a no-op when a warm machine has them cached
cat > /tmp/fill_cache.py <<'EOF'
import shlex, sys
from pathlib import Path
from napari_breastmri.training.data import fill_phantom_cache
from napari_breastmri.training.tasks import get_task
if __name__ == "__main__":
    cases, test, workers, phantom = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), shlex.split(sys.argv[4])
    kw = {}
    if "--phantom-shape" in phantom:
        i = phantom.index("--phantom-shape"); kw["shape"] = tuple(int(v) for v in phantom[i + 1 : i + 4])
    if "--phantom-spacing" in phantom:
        i = phantom.index("--phantom-spacing"); kw["spacing"] = tuple(float(v) for v in phantom[i + 1 : i + 4])
    cards = {"seg": get_task("seg").parsed_card()}
    train = [70000 + i for i in range(cases)]
    test = [900000000 + i for i in range(test)]
    for seeds, pk in ((train, kw), (test, kw if "same" in phantom else {})):
        for _ in fill_phantom_cache(seeds, cards, cache_dir=Path(sys.argv[5]), phantom_kwargs=pk, workers=workers):
            pass
    print("cached", len(train) + len(test), "cases")
EOF
$PY /tmp/fill_cache.py "$CASES" "$TEST" "$WORKERS" "$PHANTOM" "$CACHE" || exit 1

if [ ${#AGAIN[@]} -gt 0 ]; then
  echo "== one more round ($(left) s left)"
  for pkg in "${AGAIN[@]}"; do
    train "$(basename "$pkg")+" --init "$pkg" --lesion-sampling missed --epochs "$EPOCHS_A" &
  done
  wait
  report
  exit 0
fi

echo "== training ($(left) s left)"
# C gets the time left less its evaluation and the fine-tune after it (about 200 s on an H200)
train C --lesion-sampling sized --epochs "$EPOCHS_C" --time-limit $(( $(left) - ${RESERVE:-200} )) &
C_PID=$!
train A --init "$SHIPPED" --lesion-sampling missed --epochs "$EPOCHS_A"
wait $C_PID
[ -f "$OUT/C/card.yaml" ] && train C-ft --init "$OUT/C" --lesion-sampling missed --epochs "$EPOCHS_FT"
report
