#!/usr/bin/env bash
# serve_overhead.sh [BUILD_DIR] [ROUNDS]: the server's overhead at batch 1 on the built-in
# default model (1 worker x 2 threads): the p50 of single-sample queries through HTTP minus the
# engine's own p50 at batch 1 (`spine bench`), rounds alternating the two, medians reported.
# Through the server in two modes: closed loop with one query outstanding (`spine load
# --concurrency 1`, perf_analyzer's default mode: each query sent when the last is answered)
# and open loop at 100 qps (Poisson; every thread sleeps between queries, so each query also
# pays the wake-ups of the client's dispatcher and sender and of the server's threads). For
# scale, the same closed loop sends GET /v2/health/ready (`spine load --get`): the HTTP round
# trip with no inference, this machine's floor under any served request.
# IDLE_POLL_MS sets the server's --idle-poll-ms (default: the server's, 0).
set -euo pipefail
B=${1:-build/release}
ROUNDS=${2:-5}
PORT=${PORT:-18556}
. "$(dirname "$0")/serve_common.sh"
port_free
OUT=build/serve-overhead
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl
for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS" >&2
  "$B/spine" bench --preset rmc2 --rows-scale 0.05 --batch 1 --threads 2 --seconds 3 --json 2>/dev/null |
    tail -1 | tee -a "$OUT/engine.jsonl" >&2
  "$B/spine" serve --port "$PORT" --workers 1 --threads 2 --max-delay-us 0 \
    ${IDLE_POLL_MS:+--idle-poll-ms "$IDLE_POLL_MS"} >/dev/null 2>&1 &
  SP=$!
  wait_ready "$SP"
  "$B/spine" load --url "http://127.0.0.1:$PORT" --concurrency 1 --duration 3 --sizes fixed:1 --json |
    tee -a "$OUT/closed.jsonl" >&2
  "$B/spine" load --url "http://127.0.0.1:$PORT" --qps 100 --duration 3 --sizes fixed:1 --json |
    tee -a "$OUT/open.jsonl" >&2
  "$B/spine" load --url "http://127.0.0.1:$PORT" --concurrency 1 --duration 3 \
    --get /v2/health/ready --json | tee -a "$OUT/get.jsonl" >&2
  kill -TERM $SP
  wait $SP || true
done
python3 - "$OUT" <<'PY'
import json, os, statistics as st, sys
out = sys.argv[1]
rows = lambda n: [json.loads(l) for l in open(os.path.join(out, n))]
eng = st.median(r["p50_ms"] for r in rows("engine.jsonl"))
print("| batch 1, p50 (medians of %d rounds) | ms | overhead over the engine |" % len(rows("engine.jsonl")))
print("|---|---|---|")
print("| the engine alone (`spine bench --batch 1`) | %.3f | |" % eng)
for name, label in (("closed.jsonl", "through the server, closed loop, 1 outstanding"),
                    ("open.jsonl", "through the server, open loop, 100 qps")):
    p = st.median(r["p50_ms"] for r in rows(name))
    print("| %s | %.3f | %.0f us (rounds: %s) |" % (label, p, (p - eng) * 1e3,
          ", ".join("%.3f" % r["p50_ms"] for r in rows(name))))
g = st.median(r["p50_ms"] for r in rows("get.jsonl"))
print("| GET /v2/health/ready, closed loop (no inference: the HTTP round trip) | %.3f | (rounds: %s) |"
      % (g, ", ".join("%.3f" % r["p50_ms"] for r in rows("get.jsonl"))))
PY
