#!/usr/bin/env bash
# run.sh [BUILD_DIR]: the side-by-side benchmarks recorded in docs/BENCHMARKS.md.
# Anchors, measured in the same run: Debian's python3-torch, and PyPI's current torch (with
# FBGEMM and MKL) in build/venv-bench, created on first use (a multi-GB download).
set -euo pipefail
B=${1:-build/release}
OUT=build/bench
mkdir -p "$OUT"
if [ ! -x build/venv-bench/bin/python ]; then
  echo "creating build/venv-bench with PyPI's torch (first run only)" >&2
  python3 -m venv build/venv-bench
  build/venv-bench/bin/pip install -q torch numpy
fi
ROUNDS=${ROUNDS:-5}
for scale in 1 0.25; do
  for py in /usr/bin/python3 build/venv-bench/bin/python; do
    tag=$(basename "$(dirname "$(dirname "$py")")")
    "$py" bench/dlrm_torch.py --spine "$B/spine" --preset rmc2 --rows-scale "$scale" \
      --batch 1,16,256,1024 --threads 2 --rounds "$ROUNDS" --seconds 3 \
      --json-out "$OUT/dlrm-rmc2-x$scale-$tag.json" | tee "$OUT/dlrm-rmc2-x$scale-$tag.txt"
  done
done
