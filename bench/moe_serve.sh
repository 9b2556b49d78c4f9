#!/usr/bin/env bash
# moe_serve.sh [BUILD_DIR]: an MoE model through the server against the engine alone, same
# prompt and tokens: `spine moe run` (prefill + greedy decode) and one HTTP request with
# max_tokens, timed end to end by the client, 3 times each, alternating.
# Needs build/bench-moe/mixtral-mini-bf16 (bench/moe.sh makes it).
set -euo pipefail
B=${1:-build/release}
S=$B/spine
M=build/bench-moe/mixtral-mini-bf16
PORT=${PORT:-8391}
. "$(dirname "$0")/serve_common.sh"
port_free
python3 - "$M" <<'PY' >/tmp/spine-moe-prompt.txt
import random, sys
random.seed(1)
print(" ".join(str(random.randrange(32000)) for _ in range(128)))
PY
"$S" serve --model "$M" --port "$PORT" >/tmp/spine-moe-serve.log 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null; wait $SP 2>/dev/null || true' EXIT # gone before the next run starts
wait_ready "$SP"
BODY=$(python3 -c "import json; ids=[int(x) for x in open('/tmp/spine-moe-prompt.txt').read().split()]; print(json.dumps({'inputs':[{'name':'input_ids','datatype':'INT64','shape':[1,len(ids)],'data':[ids]}],'parameters':{'max_tokens':32}}))")
for r in 1 2 3; do
  "$S" moe run --model "$M" --tokens /tmp/spine-moe-prompt.txt --gen 32 --json |
    python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print('engine: %.3f s (prefill %.3f + decode %.3f)' % (r['prefill_s']+r['decode_s'], r['prefill_s'], r['decode_s']))"
  curl -s -o /dev/null -w 'server: %{time_total} s end to end\n' -X POST \
    "localhost:$PORT/v2/models/mixtral-mini-bf16/infer" -d "$BODY"
done
