#!/usr/bin/env bash
# hot_bound.sh [BUILD_DIR]: how much a hot-row tier could gain on this machine at best,
# measured in parts with the plain f32 kernel on RMC2-sized tables (TABLES x ROWS x dim 64,
# LOOKUPS per bag, Zipf(ALPHA) indices with the hot rows scattered, 2 threads), then the tier
# itself. A tier of HOT_MB holds K = HOT_MB MiB / (TABLES x 256 B) rows per table: Zipf ranks
# 0..K-1, a share h = H(K) / H(ROWS) of the lookups (H: generalized harmonic numbers). Each round
# measures, with `spine bench sls`:
#   all            the whole distribution (the plain tables, as served)
#   hot_scattered  ranks 0..K-1 only, where they lie in the tables
#   cold           ranks K.. only: the rows a tier leaves to the tables
#   hot_compact    a table of K rows: the tier's hits, read as fast as a compact copy allows
# and reports per round: plain as predicted from its parts, 1 / (h / hot_scattered + (1 - h) /
# cold) (a check of the model against `all`), the tier's bound 1 / (h / hot_compact + (1 - h) /
# cold), and the bound if hits cost nothing, cold / (1 - h). The cold rows alone have the
# memory system and caches to themselves, so a tier reads them no faster than that. Last, the
# tier as built (a profile of 20,000 samples drawn apart) against the plain tables,
# alternating (`--hot-mb`). ROUNDS (default 3); about a minute a round.
set -euo pipefail
B=${1:-build/release}
S=$B/spine
ROUNDS=${ROUNDS:-3}
TABLES=${TABLES:-32}
ROWS=${ROWS:-500000}
LOOKUPS=${LOOKUPS:-120}
ALPHA=${ALPHA:-1.0}
HOT_MB=${HOT_MB:-16}
K=$((HOT_MB * 1048576 / (TABLES * 256)))
OUT=build/bench-sls
mkdir -p "$OUT"
LOG=$OUT/hot-bound.jsonl
rm -f "$LOG"
C=(--tables "$TABLES" --dim 64 --lookups "$LOOKUPS" --seconds 1 --repeat 3 --json)
part() { # name, options...
  local name=$1
  shift
  "$S" bench sls "${C[@]}" "$@" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); r["part"]=sys.argv[1]; r["round"]=int(sys.argv[2]); print(json.dumps(r))' "$name" "$round" |
    tee -a "$LOG" >&2
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS (K = $K rows per table)" >&2
  part all --rows "$ROWS" --zipf "$ALPHA"
  part hot_scattered --rows "$ROWS" --zipf "$ALPHA" --zipf-ranks "0:$K"
  part cold --rows "$ROWS" --zipf "$ALPHA" --zipf-ranks "$K:$ROWS"
  part hot_compact --rows "$K" --zipf "$ALPHA"
done
echo "== the tier as built, against the plain tables" >&2
"$S" bench sls "${C[@]}" --rows "$ROWS" --zipf "$ALPHA" --hot-mb "$HOT_MB" --seconds 2 --repeat 4 \
  2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); r["part"]="tier"; print(json.dumps(r))' |
  tee -a "$LOG" >&2
python3 - "$LOG" "$ROWS" "$K" "$ALPHA" <<'PY'
import json, statistics as st, sys
log, n, K, a = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rs = [json.loads(l) for l in open(log)]
H = lambda m: sum(k ** -a for k in range(1, m + 1))
h = H(K) / H(n)
print("Zipf(%g) over %d rows, tier of %d rows per table: h = %.4f of the lookups" % (a, n, K, h))
print("| round | all | hot scattered | cold | hot compact | plain from parts | tier bound | "
      "bound / plain | hits free | / plain |")
print("|---|---|---|---|---|---|---|---|---|---|")
rows = []
for r in sorted({x["round"] for x in rs if "round" in x}):
    p = {x["part"]: x["rows_per_s"] / 1e6 for x in rs if x.get("round") == r}
    pred = 1 / (h / p["hot_scattered"] + (1 - h) / p["cold"])
    bound = 1 / (h / p["hot_compact"] + (1 - h) / p["cold"])
    free = p["cold"] / (1 - h)
    rows.append((p["all"], pred, bound, free))
    print("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2fx | %.1f | %.2fx |" %
          (r, p["all"], p["hot_scattered"], p["cold"], p["hot_compact"], pred, bound,
           bound / pred, free, free / pred))
m = lambda i: st.median(x[i] for x in rows)
print("medians (M rows/s): all %.1f, plain from parts %.1f, tier bound %.1f (%.2fx), hits free "
      "%.1f (%.2fx)" % (m(0), m(1), m(2), st.median(x[2] / x[1] for x in rows), m(3),
                        st.median(x[3] / x[1] for x in rows)))
t = [x for x in rs if x["part"] == "tier"]
if t:
    t = t[0]
    print("tier as built: %.1f M rows/s against %.1f plain (%.2fx), %.1f%% of rows from the tier" %
          (t["hot_rows_per_s"] / 1e6, t["rows_per_s"] / 1e6, t["hot_ratio"],
           100 * t["hot_hit_rate"]))
PY
