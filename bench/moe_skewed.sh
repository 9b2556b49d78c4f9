#!/usr/bin/env bash
# moe_skewed.sh [BUILD_DIR]: expert buffering and expert placement on models whose routing is
# skewed (`spine moe gen --router-skew A`: router rows scaled by (rank + 1)^-A per layer),
# the setting the paper's buffering and balancing results assume. Two rounds, alternating.
#  - mixtral-mini F32, skew 3: all resident vs 5 and 4 fast-tier slots behind a 12 GB/s link;
#  - moe-lm F32, skew 2: placements fitted on a trace of the model itself, run on 2 groups.
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-moe
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
MM=$OUT/mixtral-mini-f32-skew3 LM=$OUT/moe-lm-f32-skew2
[ -f "$MM/config.json" ] || "$S" moe gen --preset mixtral-mini --router-skew 3 -o "$MM"
[ -f "$LM/config.json" ] || "$S" moe gen --preset moe-lm --router-skew 2 -o "$LM"
echo "== mixtral-mini, router skew 3: expert tier vs all resident"
for r in $(seq "$ROUNDS"); do
  for args in "" "--expert-slots 5 --slow-gbps 12" "--expert-slots 4 --slow-gbps 12"; do
    echo "-- ${args:-all resident}"
    # shellcheck disable=SC2086
    "$S" moe run --model "$MM" --random 128 --gen 32 --repeat 2 $args |
      grep -E "prefill:|decode:|experts:"
  done
done
echo "== moe-lm, router skew 2: placements on 2 worker groups"
"$S" moe run --model "$LM" --placement map --random 64 --batch 4 --gen 48 \
  --trace-out "$OUT/moe-lm-skew2.trace" >/dev/null
"$S" moe cache-sim --trace "$OUT/moe-lm-skew2.trace" --slots 16 --policy lifo
for p in rr greedy anticorr replicate; do
  "$S" moe place --trace "$OUT/moe-lm-skew2.trace" --groups 2 --policy "$p" \
    -o "$OUT/place-skew2-$p.txt" | tail -1
done
for r in $(seq "$ROUNDS"); do
  for p in rr greedy replicate; do
    echo "-- $p"
    "$S" moe run --model "$LM" --placement map --random 64 --batch 4 --gen 16 --repeat 2 \
      --expert-placement "$OUT/place-skew2-$p.txt" | grep -E "prefill:|decode:|groups:"
  done
done
