#!/usr/bin/env bash
# moe_buffering.sh [BUILD_DIR]: the expert-buffering and placement figures of docs/BENCHMARKS.md
# (issue 6): expert-cache replay and placement on synthetic Zipf traces (alpha 0.8, 1.0, 1.2)
# and on a trace recorded from moe-lm, with the miss-rate plot; then mixtral-mini run with a
# bounded expert tier against all-resident, alternating, in memory and throttled to 12 GB/s.
# Needs build/bench-moe/{mixtral-mini-f32,moe-lm-f32} (bench/moe.sh makes them).
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-moe
ROUNDS=${ROUNDS:-2}
mkdir -p "$OUT"
for a in 0.8 1.0 1.2; do
  "$S" moe trace gen --layers 4 --experts 64 --batches 400 --tokens 128 --alpha "$a" \
    --persistence 0.9 --expert-bytes 12582912 -o "$OUT/zipf$a.trace" >/dev/null
  echo "== Zipf alpha $a, 64 experts, 16 slots (25%)"
  for p in lifo fifo lru lfu; do "$S" moe cache-sim --trace "$OUT/zipf$a.trace" --slots 16 --policy "$p"; done
  "$S" moe place --trace "$OUT/zipf$a.trace" --groups 8
done
"$S" moe cache-sim --trace "$OUT/zipf1.0.trace" --sweep --out "$OUT/cache-sweep-zipf1.0" | tail -1
echo "== recorded: moe-lm, 4 x 64-token prompts + 48 decode steps"
"$S" moe run --model "$OUT/moe-lm-f32" --placement map --random 64 --batch 4 --gen 48 \
  --trace-out "$OUT/moe-lm.trace" >/dev/null
"$S" moe cache-sim --trace "$OUT/moe-lm.trace" --slots 16 --policy lifo
"$S" moe place --trace "$OUT/moe-lm.trace" --groups 8
"$S" moe cache-sim --trace "$OUT/moe-lm.trace" --sweep --out "$OUT/cache-sweep-moe-lm" | tail -1
echo "== mixtral-mini: expert tier vs all-resident ($ROUNDS rounds, alternating)"
for r in $(seq "$ROUNDS"); do
  for args in "" "--expert-slots 4 --slow-gbps 0" "--expert-slots 2 --slow-gbps 0" "--expert-slots 5 --slow-gbps 12" \
    "--expert-slots 4 --slow-gbps 12" "--expert-slots 5 --slow-gbps 12 --expert-prefetch" \
    "--expert-prefetch"; do
    echo "-- ${args:-all resident}"
    # shellcheck disable=SC2086
    "$S" moe run --model "$OUT/mixtral-mini-f32" --random 128 --gen 32 --repeat 3 $args |
      grep -E "prefill:|decode:|experts:|prefetch:"
  done
done
echo "== moe-lm: expert parallelism on 2 worker groups, placements fitted on the recorded trace"
for p in rr greedy replicate; do
  "$S" moe place --trace "$OUT/moe-lm.trace" --groups 2 --policy "$p" -o "$OUT/place-$p.txt" | tail -1
done
for r in $(seq "$ROUNDS"); do
  for p in none rr greedy replicate; do
    args=()
    [ "$p" = none ] || args=(--expert-placement "$OUT/place-$p.txt")
    echo "-- $p"
    "$S" moe run --model "$OUT/moe-lm-f32" --placement map --random 64 --batch 4 --gen 16 \
      --repeat 2 "${args[@]}" | grep -E "prefill:|decode:|groups:"
  done
done
