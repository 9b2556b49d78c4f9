#!/usr/bin/env bash
# moe_skewed.sh [BUILD_DIR]: expert buffering and expert placement on models whose routing is
# skewed (`spine moe gen --router-skew A`: router rows scaled by (rank + 1)^-A per layer),
# the setting the paper's buffering and balancing results assume. Two rounds, alternating.
#  - mixtral-mini F32, skew 3: all resident vs 5 and 4 fast-tier slots behind a 12 GB/s link;
#  - moe-lm F32, skew 2: placements fitted on a trace of the model itself, run on 2 groups.
# PARTS=tier,place (the default: both) runs only some parts; ROUNDS (default 2) rounds each.
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-moe
ROUNDS=${ROUNDS:-2}
PARTS=${PARTS:-tier,place}
has() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
mkdir -p "$OUT"
MM=$OUT/mixtral-mini-f32-skew3 LM=$OUT/moe-lm-f32-skew2
[ -f "$MM/config.json" ] || "$S" moe gen --preset mixtral-mini --router-skew 3 -o "$MM"
[ -f "$LM/config.json" ] || "$S" moe gen --preset moe-lm --router-skew 2 -o "$LM"
has tier && echo "== mixtral-mini, router skew 3: expert tier vs all resident"
has tier && for r in $(seq "$ROUNDS"); do
  for args in "" "--expert-slots 5 --slow-gbps 12" "--expert-slots 4 --slow-gbps 12"; do
    echo "-- ${args:-all resident}"
    # shellcheck disable=SC2086
    "$S" moe run --model "$MM" --random 128 --gen 32 --repeat 2 $args |
      grep -E "prefill:|decode:|experts:"
  done
done
has place || exit 0
echo "== moe-lm, router skew 2: placements on 2 worker groups"
"$S" moe run --model "$LM" --placement map --random 64 --batch 4 --gen 48 \
  --trace-out "$OUT/moe-lm-skew2.trace" >/dev/null
"$S" moe cache-sim --trace "$OUT/moe-lm-skew2.trace" --slots 16 --policy lifo
for p in rr greedy anticorr replicate; do
  "$S" moe place --trace "$OUT/moe-lm-skew2.trace" --groups 2 --policy "$p" \
    -o "$OUT/place-skew2-$p.txt" | tail -1
done
# one run first, not counted: the mapped weights come in from disk
"$S" moe run --model "$LM" --placement map --random 64 --batch 4 --gen 16 >/dev/null
rm -f "$OUT/place-skew2-runs.jsonl"
for r in $(seq "$ROUNDS"); do
  for p in rr greedy replicate; do
    "$S" moe run --model "$LM" --placement map --random 64 --batch 4 --gen 16 --repeat 2 \
      --expert-placement "$OUT/place-skew2-$p.txt" --json | tail -1 |
      python3 -c 'import json,sys; r=json.load(sys.stdin); r["policy"]=sys.argv[1]; print(json.dumps(r))' "$p" |
      tee -a "$OUT/place-skew2-runs.jsonl" | cut -c1-120
  done
done
python3 - "$OUT/place-skew2-runs.jsonl" <<'PY'
import json, statistics as st, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
base = {}
print("| placement | prefill tok/s (rounds) | median | decode tok/s (rounds) | median |")
print("|---|---|---|---|---|")
for p in ("rr", "greedy", "replicate"):
    pre = [r["prefill_tok_s"] for r in rs if r["policy"] == p]
    dec = [r["decode_tok_s"] for r in rs if r["policy"] == p]
    base.setdefault("pre", st.median(pre)); base.setdefault("dec", st.median(dec))
    print("| %s | %s | %.1f (%.2fx rr) | %s | %.1f (%.2fx rr) |" % (
        p, " / ".join("%.1f" % x for x in pre), st.median(pre), st.median(pre) / base["pre"],
        " / ".join("%.1f" % x for x in dec), st.median(dec), st.median(dec) / base["dec"]))
PY
