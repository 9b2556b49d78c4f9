#!/usr/bin/env bash
# sls.sh [BUILD_DIR]: pooled embedding lookups alone, side by side in one run: `spine bench sls`
# (f32, f16, int8, int4 rows; each with this machine's random-read limit for its row size
# measured alongside) and PyTorch's nn.EmbeddingBag (fp32, Debian's torch, and PyPI's when
# build/venv-bench exists) on the same lookups: 8 tables x ROWS rows (default 4M: 8.2 GB of f32
# rows, far beyond a 480 MiB last-level cache) x dim 64, 256 bags x 80 lookups, 2 threads,
# uniform indices. Rounds alternate engines. The kernels run with this CPU's best ISA and
# prefetch setting (SPINE_ISA, SPINE_SLS_PREFETCH override them).
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-sls
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-4000000}
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl
PYS="/usr/bin/python3"
[ -x build/venv-bench/bin/python ] && PYS="$PYS build/venv-bench/bin/python"
for r in $(seq "$ROUNDS"); do
  echo "== round $r" >&2
  "$S" bench sls --rowtype f32 --rows "$ROWS" --repeat 1 --indices-out "$OUT/idx.safetensors" --json \
    2>/dev/null | tee -a "$OUT/spine-f32.jsonl" >&2
  for py in $PYS; do
    tag=$([ "$py" = /usr/bin/python3 ] && echo debian || echo pypi)
    OMP_NUM_THREADS=2 "$py" bench/sls_torch.py --indices "$OUT/idx.safetensors" --rows "$ROWS" \
      --repeat 1 | tee -a "$OUT/torch-$tag.jsonl" >&2
  done
  for rt in f16 int8 int4; do
    "$S" bench sls --rowtype "$rt" --rows "$ROWS" --repeat 1 --json 2>/dev/null | tee -a "$OUT/spine-$rt.jsonl" >&2
  done
done
python3 - "$OUT" <<'PY'
import json, os, statistics as st, sys
out = sys.argv[1]
rows = lambda n: [json.loads(l) for l in open(os.path.join(out, n))] if os.path.exists(os.path.join(out, n)) else []
med = lambda rs, k: st.median(r[k] for r in rs)
t = {tag: med(rows("torch-%s.jsonl" % tag), "rows_per_s") for tag in ("debian", "pypi") if rows("torch-%s.jsonl" % tag)}
r0 = rows("spine-f32.jsonl")[0]
print("%s kernels; tables of %d x %d rows; last-level cache %.0f MiB" % (r0.get("isa", "?"), r0["tables"], r0["rows"], r0.get("llc_bytes", 0) / 2**20))
print("| rows | spine M rows/s | of the random-read limit | vs torch EmbeddingBag fp32 |")
print("|---|---|---|---|")
for rt in ("f32", "f16", "int8", "int4"):
    rs = rows("spine-%s.jsonl" % rt)
    r = med(rs, "rows_per_s")
    print("| %s (%d B) | %.1f | %.0f%% (%.1f M) | %s |" % (rt, rs[0]["row_bytes"], r / 1e6,
          100 * med(rs, "fraction_of_limit"), med(rs, "limit_rows_per_s") / 1e6,
          ", ".join("%.2fx %s (%.1f M)" % (r / v, k, v / 1e6) for k, v in t.items())))
PY
