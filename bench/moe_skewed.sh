#!/usr/bin/env bash
# moe_skewed.sh [BUILD_DIR]: expert buffering and expert placement on models whose routing is
# skewed (`spine moe gen --router-skew A`: router rows scaled by (rank + 1)^-A per layer),
# the setting the paper's buffering and balancing results assume. Two rounds, alternating.
#  - moe-lm F32, skew 2: all resident vs 43 of 64 fast-tier slots (1.49x less expert memory)
#    behind a 12 GB/s link; mixtral-mini F32, skew 3: all resident vs 5 and 4 of 8 slots;
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
# The tier runs: each counted run is a new prompt after warm-up runs on other prompts
# (--warmup --fresh-prompts), the steady state of a server whose tier is warm; the fast tier is
# touched once at start, so a miss pays for its copy and the link, not for fresh pages.
tier_run() { # NAME MODEL ARGS...: one JSON line, tagged
  local name=$1 model=$2
  shift 2
  "$S" moe run --model "$model" "$@" --json | tail -1 |
    python3 -c 'import json,sys; r=json.load(sys.stdin); r["case"]=sys.argv[1]; print(json.dumps(r))' "$name" |
    tee -a "$OUT/tier-runs.jsonl" | cut -c1-100
}
if has tier; then
  rm -f "$OUT/tier-runs.jsonl"
  echo "== expert tier vs all resident (moe-lm skew 2: 43 of 64 slots; mixtral-mini skew 3: 5 of 8)"
  cat "$LM/model.safetensors" >/dev/null # the mapped slow tier: in memory (page cache)
  # all resident: the weights loaded onto 2 MiB pages (faster than running from the mapped
  # file's 4 KiB pages); the tier: the mapped file is the slow tier, the fast tier on 2 MiB pages
  LMARGS="--placement map --random 64 --gen 64 --warmup 2 --repeat 3 --fresh-prompts"
  MMARGS="--random 128 --gen 32 --warmup 1 --repeat 3 --fresh-prompts"
  for _ in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    {
      tier_run lm-all "$LM" ${LMARGS/--placement map/--placement huge}
      tier_run lm-43 "$LM" $LMARGS --expert-slots 43 --slow-gbps 12
      tier_run mm-all "$MM" $MMARGS
      tier_run mm-5 "$MM" $MMARGS --expert-slots 5 --slow-gbps 12
      tier_run mm-4 "$MM" $MMARGS --expert-slots 4 --slow-gbps 12
    }
  done
  python3 - "$OUT/tier-runs.jsonl" <<'PY'
import json, statistics as st, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
def col(case, k): return [r[k] for r in rs if r["case"] == case]
print("| model, fast tier | expert memory | prefill tok/s (rounds) | decode tok/s (rounds) | hit rate | prefill / decode vs all-resident (medians) |")
print("|---|---|---|---|---|---|")
for base, cases in (("lm-all", ("lm-all", "lm-43")), ("mm-all", ("mm-all", "mm-5", "mm-4"))):
    bp, bd = st.median(col(base, "prefill_tok_s")), st.median(col(base, "decode_tok_s"))
    for c in cases:
        r0 = [r for r in rs if r["case"] == c][0]
        fast, allb = r0["expert_fast_bytes"], r0["expert_bytes_all"]
        h, m = sum(col(c, "expert_hits")), sum(col(c, "expert_misses"))
        name = ("moe-lm skew 2, " if c.startswith("lm") else "mixtral-mini skew 3, ") + (
            "all resident" if c == base else "%d slots, 12 GB/s link" % r0["expert_slots"])
        p, d = col(c, "prefill_tok_s"), col(c, "decode_tok_s")
        print("| %s | %.2f GB (%.2fx less) | %s | %s | %s | %s |" % (
            name, fast / 1e9, allb / fast, " / ".join("%.1f" % x for x in p),
            " / ".join("%.2f" % x for x in d), "%.3f" % (h / (h + m)) if h + m else "",
            "" if c == base else "**%.2fx / %.2fx**" % (st.median(p) / bp, st.median(d) / bd)))
PY
fi
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
for _ in $(seq "$ROUNDS"); do
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
