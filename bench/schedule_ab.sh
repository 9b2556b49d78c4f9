#!/usr/bin/env bash
# schedule_ab.sh SPINE MODEL [ROUNDS]: table-major vs sample-chunk lookup order, alternating
# round by round; prints medians and the median per-round ratio sample/table per batch size.
set -euo pipefail
S=$1; M=$2; R=${3:-5}
for i in $(seq "$R"); do
  for sch in table sample; do
    "$S" bench --model "$M" --batch 16,256,1024 --threads 2 --seconds 2 --schedule $sch --json 2>/dev/null
  done
done | python3 -c '
import sys, json, statistics as st
d = {}
for l in sys.stdin:
    r = json.loads(l); d.setdefault(r["batch"], {}).setdefault(r["schedule"], []).append(r["samples_per_s"])
print("batch  table samples/s  sample samples/s  sample/table")
for b, v in sorted(d.items()):
    ratio = st.median([s / t for t, s in zip(v["table"], v["sample"])])
    t, s = st.median(v["table"]), st.median(v["sample"])
    print(f"{b:5d} {t:16.0f} {s:17.0f} {ratio:13.3f}")
'
