#!/usr/bin/env bash
# test_api_doc.sh SPINE WORKDIR: run every ```sh block of docs/API.md, as written and in order,
# in a scratch folder with spine on the PATH (the server listens on port 8000), then check
# that the answers carry what the page says they do.
set -u
SPINE=$1
W=$2
DOC=$(dirname "$0")/../../docs/API.md
rm -rf "$W" && mkdir -p "$W/bin" && ln -s "$(realpath "$SPINE")" "$W/bin/spine"
if (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null; then
  echo "port 8000 is taken: the examples in docs/API.md need it"; echo "0 passed, 1 failed"; exit 1
fi
awk '/^```sh$/{on=1; next} /^```$/{if(on){on=0; print ""}; next} on' "$DOC" >"$W/examples.sh"
cd "$W"
PATH="$W/bin:$PATH" timeout 120 bash -euo pipefail examples.sh >out.txt 2>err.txt
rc=$?
pkill -f "spine serve --model tiny --port 8000" 2>/dev/null
pass=0 fail=0
t() { if grep -q -- "$2" out.txt; then pass=$((pass + 1)); echo "PASS $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi; }
if [ $rc -eq 0 ]; then pass=$((pass + 1)); echo "PASS the examples run with no error"; else
  fail=$((fail + 1)); echo "FAIL the examples exit $rc"; tail -20 err.txt; fi
t "server metadata" '"name":"spine"'
t "model metadata" '"platform":"spine_dlrm"'
t "triton config" '"max_batch_size":0'
t "repository index" '"state":"READY"'
t "JSON infer answers" '"id":"first"'
t "two-sample infer" '"shape":\[2,1\]'
t "binary tensors" "'binary_data_size': 8"
t "range error is a 400 with a message" "is outside \[0, 1)\"} 400"
t "metrics" '^spine_requests_total [1-9]'
t "stats" '"p95_ms"'
t "reload answers 200" '}200$'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
