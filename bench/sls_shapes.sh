#!/usr/bin/env bash
# sls_shapes.sh [BUILD_DIR]: pooled fp32 lookups on the RMC1, RMC2 and RMC3 table shapes at
# full row count (4.1, 4.1 and 2.6 GB of tables), uniform and Zipf(0.8, 1.0, 1.2) indices:
# `spine bench sls` (with this machine's random-read limit measured alongside) and PyTorch's
# nn.EmbeddingBag (Debian's torch; PyPI's when build/venv-bench exists) on the same indices,
# 256 bags per table per run, 2 threads, medians of 3 measurements each; ROUNDS (default 3)
# rounds alternate the engines, and the table reports medians over rounds.
#   RMC1: 8 tables x 4M rows x dim 32, 80 lookups per bag
#   RMC2: 32 tables x 500K rows x dim 64, 120 lookups
#   RMC3: 10 tables x 2M rows x dim 32, 20 lookups
# Index files go under build/bench-sls (about 20 MB each).
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-sls
mkdir -p "$OUT"
rm -f "$OUT"/shape-*.jsonl
PYS="/usr/bin/python3"
[ -x build/venv-bench/bin/python ] && PYS="$PYS build/venv-bench/bin/python"
ZIPF="0 0.8 1.0 1.2"
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
for shape in rmc1:8:4000000:32:80 rmc2:32:500000:64:120 rmc3:10:2000000:32:20; do
  IFS=: read -r name T R D L <<<"$shape"
  files=()
  for z in $ZIPF; do
    echo "== round $round, $name, zipf $z: spine" >&2
    f="$OUT/idx-$name-z$z.safetensors"
    "$S" bench sls --tables "$T" --rows "$R" --dim "$D" --lookups "$L" --zipf "$z" --seconds 1 \
      --repeat 3 --indices-out "$f" --json 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin); r["shape"]=sys.argv[1]; print(json.dumps(r))' "$name" |
      tee -a "$OUT/shape-spine.jsonl" >&2
    files+=("$f")
  done
  for py in $PYS; do
    tag=$([ "$py" = /usr/bin/python3 ] && echo debian || echo pypi)
    echo "== $name: torch ($tag)" >&2
    OMP_NUM_THREADS=2 "$py" bench/sls_torch.py --indices "${files[@]}" --rows "$R" --dim "$D" \
      --seconds 1 --repeat 3 |
      python3 -c 'import json,sys
for l in sys.stdin:
    r=json.loads(l); r["shape"]=sys.argv[1]; r["tag"]=sys.argv[2]; print(json.dumps(r), flush=True)' "$name" "$tag" |
      tee -a "$OUT/shape-torch.jsonl" >&2
  done
done
done
python3 - "$OUT" <<'PY'
import json, os, statistics as st, sys
out = sys.argv[1]
sp = [json.loads(l) for l in open(os.path.join(out, "shape-spine.jsonl"))]
tp = [json.loads(l) for l in open(os.path.join(out, "shape-torch.jsonl"))]
zof = lambda r: float(r["indices"].split("-z")[1].rsplit(".safetensors")[0])
tags = sorted({r["tag"] for r in tp})
print("| shape | indices | spine M rows/s | of the random-read limit | " +
      " | ".join("torch %s M rows/s | spine / torch" % t for t in tags) + " |")
print("|---|---|---|---|" + "---|---|" * len(tags))
for shape in ("rmc1", "rmc2", "rmc3"):
    for z in (0.0, 0.8, 1.0, 1.2):
        rs = [r for r in sp if r["shape"] == shape and abs(r["zipf"] - z) < 1e-9]
        if not rs:
            continue
        sr = st.median(r["rows_per_s"] for r in rs)
        cells = []
        for t in tags:
            m = [x["rows_per_s"] for x in tp
                 if x["tag"] == t and x["shape"] == shape and abs(zof(x) - z) < 1e-9]
            cells.append("%.1f | %.2fx" % (st.median(m) / 1e6, sr / st.median(m)) if m else "- | -")
        print("| %s | %s | %.1f | %.0f%% | %s |" % (
            shape.upper(), "uniform" if z == 0 else "Zipf %g" % z, sr / 1e6,
            100 * st.median(r["fraction_of_limit"] for r in rs), " | ".join(cells)))
print("\n(medians of %d rounds)" % len([r for r in sp if r["shape"] == "rmc1" and r["zipf"] == 0]))
PY
