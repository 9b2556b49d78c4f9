#!/usr/bin/env bash
# serve_gap.sh [BUILD_DIR] [ROUNDS]: where the server's share of offline throughput goes, on the
# built-in default model, 2 threads, queries of 165 samples.
# 1. The engine alone, batches back to back and after idle gaps of 5, 20, 50, 100 ms
#    (`spine bench --gap-ms`; the gap is outside the timing): what idling between queries costs
#    a batch on this machine, with no server involved; each without and with the CPUs kept
#    awake through the gap (`--idle-poll-ms 100`). Rounds alternate
#    the gaps.
# 2. The server saturated: closed loop, 1 and 2 queries outstanding (`spine load --concurrency`),
#    queries/s and the engine's own time per batch from /metrics (spine_compute_duration_seconds).
# 3. The server open loop at 60 qps (Poisson) for 8 s: the engine's time per batch, and the CPU
#    seconds of the server's engine threads, of its HTTP threads, of its idle-poll fillers and of
#    the load generator.
# IDLE_POLL_MS sets the server's --idle-poll-ms for parts 2 and 3 (ROUNDS 0 skips part 1).
set -euo pipefail
B=${1:-build/release}
ROUNDS=${2:-3}
PORT=${PORT:-18556}
. "$(dirname "$0")/serve_common.sh"
port_free
for r in $(seq "$ROUNDS"); do
  for g in 0 5 20 50 100; do
    for p in 0 100; do
      "$B/spine" bench --preset rmc2 --rows-scale 0.05 --batch 165 --threads 2 --seconds 3 \
        --gap-ms "$g" --idle-poll-ms "$p" --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("engine alone, gap %3g ms, idle poll %3g ms: %6.0f samples/s, p50 %.2f ms per batch" % (r["gap_ms"], r["idle_poll_ms"], r["samples_per_s"], r["p50_ms"]))'
    done
  done
done
"$B/spine" serve --port "$PORT" ${IDLE_POLL_MS:+--idle-poll-ms "$IDLE_POLL_MS"} >/dev/null 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null; wait $SP 2>/dev/null || true' EXIT
wait_ready "$SP"
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
for c in 1 2 1 2; do
  s0=$(metric spine_compute_duration_seconds_sum)
  n0=$(metric spine_compute_duration_seconds_count)
  q=$("$B/spine" load --url "http://127.0.0.1:$PORT" --concurrency "$c" --sizes fixed:165 \
    --duration 6 --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["achieved_qps"])')
  s1=$(metric spine_compute_duration_seconds_sum)
  n1=$(metric spine_compute_duration_seconds_count)
  python3 -c "import sys; q,s0,n0,s1,n1=map(float,sys.argv[1:]); print('server, %d outstanding: %.1f qps = %.0f samples/s, engine %.2f ms per batch' % ($c, q, q*165, 1e3*(s1-s0)/(n1-n0)))" "$q" "$s0" "$n0" "$s1" "$n1"
done
cpu() { # CPU seconds of the server's threads whose name matches $1
  for t in /proc/$SP/task/*; do
    if grep -q "$1" "$t/comm"; then awk '{print $14 + $15}' "$t/stat"; fi
  done | awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {print s / hz}'
}
s0=$(metric spine_compute_duration_seconds_sum)
n0=$(metric spine_compute_duration_seconds_count)
e0=$(cpu '^spine')
h0=$(cpu MHD)
i0=$(cpu idlepoll)
TIMEFORMAT=%U+%S
lt=$( { time "$B/spine" load --url "http://127.0.0.1:$PORT" --qps 60 --duration 8 --json >/dev/null; } 2>&1)
s1=$(metric spine_compute_duration_seconds_sum)
n1=$(metric spine_compute_duration_seconds_count)
e1=$(cpu '^spine')
h1=$(cpu MHD)
i1=$(cpu idlepoll)
python3 -c "import sys; s0,n0,s1,n1,e0,e1,h0,h1,i0,i1=map(float,sys.argv[1:11]); lt=eval(sys.argv[11]); n=n1-n0
print('server, 60 qps open loop: %d queries, engine %.2f ms per batch; CPU per query: engine threads %.2f ms, HTTP threads %.2f ms, idle fillers %.2f ms, load generator %.2f ms' % (n, 1e3*(s1-s0)/n, 1e3*(e1-e0)/n, 1e3*(h1-h0)/n, 1e3*(i1-i0)/n, 1e3*lt/n))" \
  "$s0" "$n0" "$s1" "$n1" "$e0" "$e1" "$h0" "$h1" "$i0" "$i1" "$lt"
