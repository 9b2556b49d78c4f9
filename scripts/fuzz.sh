#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS: run every libFuzzer target for SECONDS each on a seeded corpus
# under build/; a crash fails the run and leaves the reproducer in BUILD_DIR/crashes.
set -euo pipefail
B=$1
S=$2
C=$B/corpus
TARGETS="safetensors config json criteo request request_moe moe_config tokens trace profile"
for t in $TARGETS; do mkdir -p "$C/$t"; done
mkdir -p "$B/crashes"
# seeds: a real model, its config, a TSV line, an infer request
if [ ! -f "$C/safetensors/tiny" ]; then
  "$B/spine" model gen --preset tiny --rows-scale 0.01 -o "$B/seed-model" >/dev/null 2>&1
  cp "$B/seed-model/model.safetensors" "$C/safetensors/tiny"
  cp "$B/seed-model/config.json" "$C/config/tiny.json"
  cp "$B/seed-model/config.json" "$C/json/tiny.json"
fi
[ -f "$C/moe_config/tiny.json" ] || {
  "$B/spine" moe gen --preset moe-tiny --layers 1 -o "$B/seed-moe" >/dev/null 2>&1
  cp "$B/seed-moe/config.json" "$C/moe_config/tiny.json"
}
[ -f "$C/tokens/seed" ] || printf '# prompts\n1 2 3\n4,5,6\r\n' >"$C/tokens/seed"
[ -f "$C/trace/seed" ] || "$B/spine" moe trace gen --layers 2 --experts 8 --batches 6 --tokens 4 \
  -o "$C/trace/seed" >/dev/null 2>&1
[ -f "$C/trace/placement" ] ||
  printf 'spine-moe-placement 1 experts=4 groups=2 copies=2\nlayer 1: 0 1/0 1 0\n' >"$C/trace/placement"
[ -f "$C/request_moe/seed" ] ||
  printf '{"id":"a","inputs":[{"name":"input_ids","datatype":"INT64","shape":[2,2],"data":[[1,2],[3,4]]}],"parameters":{"max_tokens":3}}' >"$C/request_moe/seed"
[ -f "$C/profile/seed" ] || python3 - "$C/profile/seed" <<'PY'
import json, struct, sys
ts = [("counts.0", 5), ("counts.1", 7), ("counts.2", 1)]
hdr, off = {}, 0
for n, r in ts:
    hdr[n] = {"dtype": "I32", "shape": [r], "data_offsets": [off, off + 4 * r]}
    off += 4 * r
h = json.dumps(hdr).encode()
body = b"".join(struct.pack("<%di" % r, *range(r)) for _, r in ts)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + body)
PY
[ -f "$C/criteo/line" ] ||
  printf '1\t5\t\t3\t-1\t0\t1\t2\t3\t4\t5\t6\t7\t8\t68fd1e64\t\t%s\n' "$(printf 'ab\t%.0s' $(seq 23))ff" >"$C/criteo/line"
[ -f "$C/request/json" ] || python3 - "$C/request" <<'PY'
import json, sys
d = {"id": "seed", "inputs": [
    {"name": "dense", "datatype": "FP32", "shape": [2, 13], "data": [0.5] * 26},
    {"name": "lengths", "datatype": "INT32", "shape": [26, 2], "data": [[1, 0]] * 26},
    {"name": "values", "datatype": "INT64", "shape": [26], "data": [0] * 26}]}
open(sys.argv[1] + "/json", "w").write(json.dumps(d))
PY
status=0
for t in $TARGETS; do
  echo "fuzz_$t: ${S}s"
  if ! "$B/fuzz_$t" "$C/$t" -max_total_time="$S" -max_len=65536 -rss_limit_mb=2048 \
      -artifact_prefix="$B/crashes/$t-" >"$B/fuzz_$t.log" 2>&1; then
    echo "fuzz_$t FAILED: see $B/fuzz_$t.log"; tail -30 "$B/fuzz_$t.log"; status=1
  else
    grep -E "^Done [0-9]+ runs" "$B/fuzz_$t.log" || true
  fi
done
exit $status
