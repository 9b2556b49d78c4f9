#!/usr/bin/env bash
# test_cli.sh SPINE WORKDIR: the spine command line end to end on real files.
set -u
SPINE=$1
W=$2
rm -rf "$W" && mkdir -p "$W"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# a command must fail cleanly: the given exit code (not a signal) and a message with a phrase
refuses() {
  local name=$1 code=$2 phrase=$3; shift 3
  "$@" >"$W/out" 2>"$W/err"; local rc=$?
  if [ "$rc" -eq "$code" ] && grep -q -- "$phrase" "$W/err"; then ok "$name"
  else bad "$name (rc $rc, stderr: $(head -c 300 "$W/err"))"; fi
}

check "help lists commands" bash -c "'$SPINE' --help | grep -q 'model gen'"
check "version" bash -c "'$SPINE' version | grep -q '^spine [0-9]'"
refuses "unknown command" 2 "unknown command" "$SPINE" frobnicate
refuses "unknown option" 2 "unknown option" "$SPINE" bench --frob
refuses "missing preset" 2 "required" "$SPINE" model gen -o "$W/x"
refuses "unknown preset" 1 "unknown preset" "$SPINE" model gen --preset nope -o "$W/x"
refuses "bad dtype" 2 "f32, f16, int8 or int4" "$SPINE" model gen --preset tiny --dtype int2 -o "$W/x"

"$SPINE" model gen --preset tiny --seed 5 -o "$W/tiny" 2>/dev/null
"$SPINE" model gen --preset tiny --seed 5 --threads 1 -o "$W/tiny2" 2>/dev/null
"$SPINE" model gen --preset tiny --seed 6 -o "$W/tiny3" 2>/dev/null
check "gen is deterministic for a seed" cmp -s "$W/tiny/model.safetensors" "$W/tiny2/model.safetensors"
check "another seed gives other weights" bash -c "! cmp -s '$W/tiny/model.safetensors' '$W/tiny3/model.safetensors'"
check "info shows tables and parameters" bash -c "'$SPINE' model info '$W/tiny' | grep -q 'embeddings:   26 tables, dim 8' && '$SPINE' model info '$W/tiny' | grep -q 'emb_l.25'"
"$SPINE" model gen --preset rmc2 --rows-scale 0.001 --dtype int4 -o "$W/rmc2q" 2>/dev/null
check "quantized preset" bash -c "'$SPINE' model info '$W/rmc2q' | grep -q ' int4 '"
check "kaggle preset shapes" bash -c "'$SPINE' model gen --preset dlrm-kaggle --rows-scale 0.0001 -o '$W/kag' 2>/dev/null && '$SPINE' model info '$W/kag' | grep -q '13 -> 512 -> 256 -> 64 -> 16'"

# Criteo TSV: good lines, then bad ones in the middle; every line gets an output line
good() { printf '%s\t' "$1" 1 2 "" 4 5 6 7 8 9 10 11 12 13; printf '68fd1e64\t%.0s' $(seq 25); printf '%s\n' "$2"; }
{ good 0 aa; good 1 bb; printf '1\t2\t3\n'; good 0 cc; printf 'x\n'; good 1 dd; } >"$W/in.tsv"
"$SPINE" infer --model "$W/tiny" --input "$W/in.tsv" -o "$W/out.txt" 2>"$W/err"; rc=$?
check "malformed lines: exit 1" test "$rc" -eq 1
check "malformed lines: one output per input line" test "$(wc -l <"$W/out.txt")" -eq 6
check "malformed lines: reported with line and column" grep -q "in.tsv:3:6: error: field 3" "$W/err"
check "malformed lines: second report" grep -q "in.tsv:5:" "$W/err"
check "malformed lines: their outputs are nan" bash -c "sed -n '3p;5p' '$W/out.txt' | grep -c nan | grep -q 2"
{ good 0 aa; good 1 bb; good 0 cc; good 1 dd; } >"$W/good.tsv"
"$SPINE" infer --model "$W/tiny" --input "$W/good.tsv" >"$W/good.txt"
check "nothing else lost: good lines give the same outputs" bash -c "grep -v nan '$W/out.txt' | cmp -s - '$W/good.txt'"
check "stdin input and probabilities in (0,1)" bash -c "'$SPINE' infer --model '$W/tiny' --input - <'$W/good.tsv' | awk '\$1<=0||\$1>=1{exit 1}'"
check "tsv with CRLF" bash -c "sed 's/\$/\r/' '$W/good.tsv' | '$SPINE' infer --model '$W/tiny' --input - | cmp -s - '$W/good.txt'"
refuses "model without tables refuses Criteo width" 1 "fields, expected" "$SPINE" infer --model "$W/rmc2q" --input "$W/good.tsv"

# hostile model folders: a clear error, exit 1, never a signal
refuses "missing model" 1 "No such file" "$SPINE" model info "$W/none"
mkdir -p "$W/broken" && cp "$W/tiny/config.json" "$W/broken/"
head -c 100 "$W/tiny/model.safetensors" >"$W/broken/model.safetensors"
refuses "truncated weights" 1 "header claims" "$SPINE" model info "$W/broken"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' >"$W/broken/model.safetensors"
refuses "huge header length" 1 "100 MB" "$SPINE" model info "$W/broken"
cp "$W/tiny/model.safetensors" "$W/broken/"
echo '{"model_type": "dlrm", "num_dense_features": 13' >"$W/broken/config.json"
refuses "bad config json" 1 "config.json: json" "$SPINE" model info "$W/broken"
sed 's/"embedding_dim": 8/"embedding_dim": 4096/' "$W/tiny/config.json" >"$W/broken/config.json"
refuses "config disagrees with weights" 1 "embedding_dim" "$SPINE" model info "$W/broken"
sed 's/"rows": 999}/"rows": 999999999999}/' "$W/tiny/config.json" >"$W/broken/config.json"
refuses "huge table in config" 1 "has shape" "$SPINE" model info "$W/broken"

# bench: JSON lines per batch size
"$SPINE" bench --preset tiny --batch 1,4 --seconds 0.05 --json >"$W/bench.json" 2>"$W/err"
check "bench --json: one object per batch size" test "$(grep -c '"samples_per_s"' "$W/bench.json")" -eq 2
check "bench --json parses" python3 -c "import json,sys; [json.loads(l) for l in open('$W/bench.json')]"
check "bench --gap-ms idles between batches, outside the timing" bash -c "'$SPINE' bench --preset tiny --batch 4 --seconds 0.2 --gap-ms 50 --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"gap_ms\"] == 50 and 4 <= r[\"iters\"] <= 6 and r[\"mean_ms\"] < 40 else 1)'"
refuses "bench: negative --gap-ms" 2 "--gap-ms" "$SPINE" bench --preset tiny --gap-ms -1
check "bench table" bash -c "'$SPINE' bench --preset tiny --batch 2 --seconds 0.02 --threads 2 | grep -q 'samples/s'"
check "demo" bash -c "'$SPINE' demo | grep -q 'p(click)'"
check "bench membw runs" bash -c "'$SPINE' bench membw --mib 64 --threads 1 --seconds 0.05 --repeat 1 --json | grep -q lines_per_s"
check "bench --gap-ms --idle-poll-ms: idles between batches with the CPUs kept awake" bash -c "'$SPINE' bench --preset rmc2 --rows-scale 0.01 --batch 16 --seconds 0.1 --gap-ms 2 --idle-poll-ms 50 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"gap_ms\"] == 2 and r[\"idle_poll_ms\"] == 50 and r[\"iters\"] >= 5 else 1)'"
refuses "bench: bad idle poll window" 2 "idle-poll-ms" "$SPINE" bench --preset rmc2 --rows-scale 0.01 --idle-poll-ms -3
check "bench --zipf --hot-mb serves rows from hot tiers" bash -c "'$SPINE' bench --preset rmc2 --rows-scale 0.01 --zipf 1.2 --hot-mb 1 --batch 16 --seconds 0.1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"hit_rate\"] > 0.3 else 1)'"
check "bench sls reports rows/s against the limit" bash -c "'$SPINE' bench sls --tables 1 --rows 300000 --rowtype int4 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"rows_per_s\"] > 0 and r[\"limit_rows_per_s\"] > 0 and r[\"row_bytes\"] == 36 else 1)'"
refuses "bench sls: bad row type" 2 "f32, f16, int8 or int4" "$SPINE" bench sls --rowtype int2
# SPINE_ISA caps the kernels; a malformed SPINE_SLS_PREFETCH is ignored, a good one taken
for isa in scalar avx2; do
  check "SPINE_ISA=$isa caps the lookup kernels" bash -c "SPINE_ISA=$isa SPINE_SLS_PREFETCH=t9:x '$SPINE' bench sls --tables 1 --rows 200000 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"isa\"] in (\"scalar\", \"$isa\") and r[\"rows_per_s\"] > 0 else 1)'"
done
check "SPINE_SLS_PREFETCH=t1:8 is taken" bash -c "SPINE_SLS_PREFETCH=t1:8 '$SPINE' bench sls --tables 1 --rows 200000 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"prefetch\"] == \"t1:8\" and r[\"rows_per_s\"] > 0 else 1)'"
check "a malformed SPINE_SLS_PREFETCH leaves the default" bash -c "[ \"\$(SPINE_SLS_PREFETCH=t1:0 '$SPINE' bench sls --tables 1 --rows 200000 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[\"prefetch\"])')\" = \"\$('$SPINE' bench sls --tables 1 --rows 200000 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[\"prefetch\"])')\" ]"
check "bench sls --hot-mb measures hot tiers against plain tables" bash -c "'$SPINE' bench sls --tables 2 --rows 200000 --dim 32 --zipf 1.0 --hot-mb 1 --pages 4k --batch 16 --lookups 8 --seconds 0.05 --repeat 2 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"hot_rows_per_s\"] > 0 and 0 < r[\"hot_hit_rate\"] < 1 and 0 < r[\"hot_bytes\"] <= 1 << 20 and r[\"hot_ratio\"] > 0 else 1)'"
refuses "bench sls: bad page size" 2 "2m or 4k" "$SPINE" bench sls --pages 1g
check "bench sls --zipf-ranks measures a rank range of the tables" bash -c "'$SPINE' bench sls --tables 2 --rows 200000 --zipf 1.0 --zipf-ranks 0:64 --batch 16 --lookups 8 --seconds 0.05 --repeat 1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"zipf_rank_lo\"] == 0 and r[\"zipf_rank_hi\"] == 64 and r[\"rows_per_s\"] > 0 else 1)'"
refuses "bench sls: --zipf-ranks without --zipf" 2 "zipf-ranks takes LO:HI" "$SPINE" bench sls --zipf-ranks 0:64
refuses "bench sls: --zipf-ranks past the rows" 2 "zipf-ranks takes LO:HI" "$SPINE" bench sls --rows 1000 --zipf 1 --zipf-ranks 0:1001
refuses "bench sls: --zipf-ranks with --hot-mb" 2 "zipf-ranks takes LO:HI" "$SPINE" bench sls --zipf 1 --zipf-ranks 0:64 --hot-mb 1
refuses "bench sls: a Zipf rank range too rare to draw" 1 "too rarely to sample" "$SPINE" bench sls --tables 1 --rows 1000000 --zipf 5 --zipf-ranks 999000:1000000 --batch 16 --lookups 8 --seconds 0.05 --repeat 1
check "bench fma runs" bash -c "'$SPINE' bench fma --threads 1 --seconds 0.05 --json | grep -q gflops"

# DLRM traces and profiles (hot-entry profiling)
"$SPINE" trace gen --preset rmc2 --rows-scale 0.002 --samples 2000 --zipf 1.1 --locality 0.2 -o "$W/q.trace" >/dev/null 2>&1
check "trace gen writes a batch file of the queries" bash -c "'$SPINE' profile --preset rmc2 --rows-scale 0.002 --trace '$W/q.trace' | grep -q '2000 queries, 7680000 lookups'"
check "profile reports hot-tier hit rates and writes a profile" bash -c "'$SPINE' profile --preset rmc2 --rows-scale 0.002 --trace '$W/q.trace' -o '$W/q.profile' | grep -q 'hot tier of    4 MB' && test -s '$W/q.profile'"
check "bench --profile uses the profile" bash -c "'$SPINE' bench --preset rmc2 --rows-scale 0.002 --zipf 1.1 --hot-mb 1 --profile '$W/q.profile' --batch 16 --seconds 0.1 --json 2>/dev/null | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"hit_rate\"] > 0.3 else 1)'"
refuses "profile: trace for another model" 1 "needs \"dense\"" "$SPINE" profile --preset tiny --trace "$W/q.trace"
"$SPINE" trace gen --preset rmc2 --rows-scale 0.004 --samples 50 --zipf 0 -o "$W/big.trace" >/dev/null 2>&1
refuses "profile: index outside a table" 1 "is outside table" "$SPINE" profile --preset rmc2 --rows-scale 0.002 --trace "$W/big.trace"
refuses "bench: profile of another model" 1 "tables profiled" "$SPINE" bench --preset tiny --hot-mb 1 --profile "$W/q.profile" --batch 4 --seconds 0.05

# MoE: gen / info / run, and every refusal
refuses "moe: unknown preset" 2 "unknown MoE preset" "$SPINE" moe gen --preset nope -o "$W/m"
refuses "moe: bad dtype" 2 "f32 or bf16" "$SPINE" moe gen --preset moe-tiny --dtype f16 -o "$W/m"
refuses "moe: no subcommand" 2 "usage" "$SPINE" moe
"$SPINE" moe gen --preset moe-tiny --seed 3 -o "$W/moe" >/dev/null 2>&1
"$SPINE" moe gen --preset moe-tiny --seed 3 --threads 1 -o "$W/moe2" >/dev/null 2>&1
check "moe gen is deterministic for a seed" cmp -s "$W/moe/model.safetensors" "$W/moe2/model.safetensors"
"$SPINE" moe gen --preset moe-tiny --seed 3 --router-skew 3 -o "$W/moe-skew" >/dev/null 2>&1
check "moe gen --router-skew skews routing" bash -c "'$SPINE' moe run --model '$W/moe' --random 64 --batch 4 --gen 0 --trace-out '$W/flat.trace' >/dev/null && '$SPINE' moe run --model '$W/moe-skew' --random 64 --batch 4 --gen 0 --trace-out '$W/skew.trace' >/dev/null && python3 -c \"
import sys
def top(p):
    rows = [list(map(int, l.split()[2:])) for l in open(p) if l[0].isdigit()]
    return max(max(r) / sum(r) for r in rows)
sys.exit(0 if top('$W/skew.trace') > top('$W/flat.trace') + 0.05 else 1)\""
check "moe info" bash -c "'$SPINE' moe info --model '$W/moe' | grep -q '8 per MoE layer, top-2'"
printf '1 2 3 4\n5 6 7 8\n' >"$W/tok.txt"
check "moe run on a token file" bash -c "'$SPINE' moe run --model '$W/moe' --tokens '$W/tok.txt' --gen 3 | grep -q 'decode:  2 x 3 tokens'"
check "moe run static reports drops" bash -c "'$SPINE' moe run --model '$W/moe' --random 32 --batch 2 --gen 2 --gating static --capacity-factor 0.5 --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"dropped\"] > 0 and r[\"waste_factor\"] > 0 else 1)'"
check "moe run --product-shapes accounts for every weight byte of a decode step" bash -c "'$SPINE' moe run --preset moe-tiny --random 8 --gen 4 --repeat 2 --product-shapes --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); s=r[\"decode_product_shapes\"]; per=sum(e[\"bytes\"] for e in s)/(r[\"gen\"]*r[\"repeat\"]); gap=r[\"bytes_per_token\"]-per; sys.exit(0 if s and all(e[\"regions\"] > 0 and e[\"seconds\"] > 0 for e in s) and 0 < gap <= 65536 else 1)'"
check "moe run: where prefill and decode time go" bash -c "'$SPINE' moe run --preset moe-tiny --random 32 --gen 4 --repeat 2 --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); ok=all(0 < r[p+\"_attention_share\"] and 0 < r[p+\"_products_share\"] and r[p+\"_attention_share\"] + r[p+\"_products_share\"] <= 1 for p in (\"prefill\", \"decode\")) and r[\"prefill_products_gflops\"] >= r[\"prefill_gflops\"]; sys.exit(0 if ok else 1)'"
check "moe run: prefill time split in text" bash -c "'$SPINE' moe run --preset moe-tiny --random 8 --gen 2 | grep -q 'of the prefill time, .* GFLOP/s while they run; attention'"
check "moe run --product-shapes in text" bash -c "'$SPINE' moe run --preset moe-tiny --random 8 --gen 2 --product-shapes | grep -q 'weight products by shape'"
check "moe run --prefill-shapes accounts for every FLOP of the counted prefills" bash -c "'$SPINE' moe run --preset moe-tiny --random 24 --gen 2 --warmup 1 --repeat 3 --prefill-shapes --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); s=r[\"prefill_product_shapes\"]; per=sum(e[\"flops\"] for e in s)/r[\"repeat\"]; want=r[\"prefill_gflops\"]*1e9*r[\"prefill_s\"]; sys.exit(0 if s and all(e[\"regions\"] > 0 and e[\"seconds\"] > 0 and e[\"flops\"] > 0 for e in s) and abs(per - want) <= 0.01 * want else 1)'"
check "moe run --prefill-shapes in text" bash -c "'$SPINE' moe run --preset moe-tiny --random 24 --gen 0 --prefill-shapes | grep -q 'GFLOP each'"
check "moe run --encoder" bash -c "'$SPINE' moe run --model '$W/moe' --random 9 --encoder | grep -q 'encode: 1 x 9'"
check "moe run --preset in memory" bash -c "'$SPINE' moe run --preset moe-tiny --dtype bf16 --random 4 --gen 2 | grep -q 'BF16 weights'"
printf '1 2 3\n5 999999 7\n' >"$W/tok-bad.txt"
refuses "moe: token outside the vocabulary" 1 "outside the vocabulary" "$SPINE" moe run --model "$W/moe" --tokens "$W/tok-bad.txt"
printf '1 2 3\n5 6\n' >"$W/tok-ragged.txt"
refuses "moe: ragged token file" 1 "line 2" "$SPINE" moe run --model "$W/moe" --tokens "$W/tok-ragged.txt"
printf '1 2 x\n' >"$W/tok-junk.txt"
refuses "moe: junk in a token file" 1 "column 5" "$SPINE" moe run --model "$W/moe" --tokens "$W/tok-junk.txt"
refuses "moe: sequence longer than the model allows" 1 "exceeds the model's maximum" "$SPINE" moe run --model "$W/moe" --random 500 --gen 20
refuses "moe: batch larger than the file" 1 "holds 2 sequences" "$SPINE" moe run --model "$W/moe" --tokens "$W/tok.txt" --batch 3
mkdir -p "$W/moe-bad" && cp "$W/moe/model.safetensors" "$W/moe-bad/"
sed 's/"intermediate_size": 96/"intermediate_size": 95/' "$W/moe/config.json" >"$W/moe-bad/config.json"
refuses "moe: config disagrees with weights" 1 "does not match config.json" "$SPINE" moe info --model "$W/moe-bad"
sed 's/"moe_every": 1/"moe_every": 2/' "$W/moe/config.json" >"$W/moe-bad/config.json"
refuses "moe: moe_every disagrees with weights" 1 "mlp.gate_proj" "$SPINE" moe info --model "$W/moe-bad"
head -c 300 "$W/moe/config.json" >"$W/moe-bad/config.json"
refuses "moe: truncated config.json" 1 "config.json" "$SPINE" moe info --model "$W/moe-bad"
cp "$W/moe/config.json" "$W/moe-bad/config.json"
head -c 100000 "$W/moe/model.safetensors" >"$W/moe-bad/model.safetensors"
refuses "moe: truncated weights" 1 "model.safetensors" "$SPINE" moe info --model "$W/moe-bad"
rm "$W/moe-bad/model.safetensors"
printf '{"weight_map": {"a": "../../etc/passwd.safetensors"}}' >"$W/moe-bad/model.safetensors.index.json"
refuses "moe: shard path outside the folder" 1 "plain" "$SPINE" moe info --model "$W/moe-bad"

# MoE routing traces, expert-cache replay, placement
check "moe run --trace-out" bash -c "'$SPINE' moe run --model '$W/moe' --random 6 --batch 2 --gen 3 --trace-out '$W/run.trace' >/dev/null && head -1 '$W/run.trace' | grep -q 'experts=8 top_k=2' && test \$(grep -vc '^#' '$W/run.trace') -eq 9"
"$SPINE" moe trace gen --layers 2 --experts 16 --batches 40 --tokens 32 --alpha 1.2 --expert-bytes 1000 -o "$W/gen.trace" >/dev/null
check "moe trace gen" test "$(grep -vc '^#' "$W/gen.trace")" -eq 81
check "moe cache-sim" bash -c "'$SPINE' moe cache-sim --trace '$W/gen.trace' --slots 4 --policy lru | grep -q 'GB moved'"
check "moe cache-sim --sweep writes a table and a plot" bash -c "'$SPINE' moe cache-sim --trace '$W/gen.trace' --sweep --out '$W/sweep' >/dev/null && test \$(wc -l <'$W/sweep.tsv') -eq 17 && grep -q '<polyline' '$W/sweep.svg' && grep -q belady '$W/sweep.svg'"
check "moe place, every policy" bash -c "'$SPINE' moe place --trace '$W/gen.trace' --groups 4 | grep -q 'replicate'"
check "moe place -o" bash -c "'$SPINE' moe place --trace '$W/gen.trace' --groups 4 --policy greedy -o '$W/place.txt' >/dev/null && grep -c '^layer' '$W/place.txt' | grep -q 2"
printf 'spine-moe-trace 1 experts=4 top_k=1 expert_bytes=0\n0 0 1 2 3\n' >"$W/bad.trace"
refuses "moe: bad trace" 1 "line 2: expected 4 token counts" "$SPINE" moe cache-sim --trace "$W/bad.trace" --slots 2
refuses "moe: bad policy" 2 "lifo, fifo" "$SPINE" moe cache-sim --trace "$W/gen.trace" --slots 2 --policy mru
refuses "moe: too many groups" 1 "groups must be" "$SPINE" moe place --trace "$W/gen.trace" --groups 17

# expert buffering: any slot count and policy gives the all-resident outputs, bit for bit
printf '3 1 4 1 5 9 2 6\n5 3 5 8 9 7 9 3\n' >"$W/tok8.txt"
"$SPINE" moe run --model "$W/moe" --tokens "$W/tok8.txt" --gen 4 --logits-out "$W/all.st" >/dev/null
for pk in lifo:1 lifo:3 fifo:2 lru:2 lfu:5; do
  check "expert tier ${pk%%:*}, ${pk##*:} slots: outputs identical" bash -c "'$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 4 --expert-slots ${pk##*:} --expert-policy ${pk%%:*} --logits-out '$W/tier.st' | grep -q 'fast-tier slots' && cmp -s '$W/all.st' '$W/tier.st'"
done
"$SPINE" moe run --model "$W/moe" --tokens "$W/tok8.txt" --gen 2 --gating static --capacity-factor 0.5 --logits-out "$W/all-static.st" >/dev/null
check "expert tier under static gating: outputs identical" bash -c "'$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 2 --gating static --capacity-factor 0.5 --expert-slots 2 --slow-gbps 50 --logits-out '$W/tier-static.st' >/dev/null && cmp -s '$W/all-static.st' '$W/tier-static.st'"
check "expert prefetch: outputs identical, precision reported" bash -c "'$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 4 --expert-slots 3 --expert-prefetch --slow-gbps 1 --logits-out '$W/pf.st' | grep -q 'prediction precision' && cmp -s '$W/all.st' '$W/pf.st'"
# the slow tier's copy rate: 12 GB/s by default for weights in memory, unthrottled from a mapped file
check "slow tier default: 12 GB/s in memory" bash -c "'$SPINE' moe run --model '$W/moe' --placement huge --random 4 --gen 1 --expert-slots 2 | grep -q 'copies at 12 GB/s'"
check "slow tier default: unthrottled from a mapped file" bash -c "'$SPINE' moe run --model '$W/moe' --placement map --random 4 --gen 1 --expert-slots 2 | grep -q 'copies unthrottled'"
check "slow tier: --slow-gbps 0 unthrottles" bash -c "'$SPINE' moe run --model '$W/moe' --placement huge --random 4 --gen 1 --expert-slots 2 --slow-gbps 0 | grep -q 'copies unthrottled'"
# --warmup: uncounted runs first, the tier stays warm; --fresh-prompts: a new prompt every run
misses() { "$SPINE" moe run --model "$W/moe" --random 16 --gen 4 --expert-slots 8 --json "$@" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["expert_misses"]))'; }
check "warm-up: a cold tier misses" test "$(misses)" -gt 0
check "warm-up: the same prompt again, all experts fit: no misses counted" test "$(misses --warmup 1)" -eq 0
"$SPINE" moe run --model "$W/moe" --random 16 --gen 4 --warmup 2 --repeat 2 --fresh-prompts --logits-out "$W/fresh-all.st" >/dev/null
check "fresh prompts: the tier gives identical outputs" bash -c "'$SPINE' moe run --model '$W/moe' --random 16 --gen 4 --warmup 2 --repeat 2 --fresh-prompts --expert-slots 3 --logits-out '$W/fresh-tier.st' >/dev/null && cmp -s '$W/fresh-all.st' '$W/fresh-tier.st'"
check "fresh prompts: another prompt than without" bash -c "'$SPINE' moe run --model '$W/moe' --random 16 --gen 4 --warmup 2 --repeat 2 --logits-out '$W/same.st' >/dev/null && ! cmp -s '$W/fresh-all.st' '$W/same.st'"
# tools/st_diff.py (beside this script's repository): a logits file against itself, then against
# another prompt's; a truncated file is refused
STD="$(cd "$(dirname "$0")/../.." && pwd)/tools/st_diff.py"
check "st_diff: a file against itself is 0 apart" bash -c "python3 '$STD' '$W/all.st' '$W/all.st' | grep -q 'prefill_logits F32 .*: max |difference| 0 ' && python3 '$STD' '$W/all.st' '$W/all.st' | grep -q 'generated I64 .*: equal'"
check "st_diff: another prompt's logits are apart" bash -c "python3 '$STD' '$W/fresh-all.st' '$W/same.st' | grep 'prefill_logits' | grep -vq 'difference 0 '"
head -c 100 "$W/all.st" >"$W/trunc.st"
refuses "st_diff: a truncated file" 2 "past the end of the file" python3 "$STD" "$W/trunc.st" "$W/all.st"
refuses "moe: fresh prompts need --random" 2 "needs --random" "$SPINE" moe run --model "$W/moe" --tokens "$W/tok8.txt" --fresh-prompts
# --paired-membw: a probe between decode steps, one fraction per step
check "moe run --paired-membw pairs every counted decode step with probes" bash -c "'$SPINE' moe run --model '$W/moe' --random 8 --gen 3 --repeat 2 --paired-membw 64 --json | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r[\"paired_steps\"] == 6 and r[\"paired_decode_fraction\"] > 0 and r[\"paired_membw_gbps\"] > 0 else 1)'"
refuses "moe: --paired-membw needs batch 1" 1 "needs --batch 1" "$SPINE" moe run --model "$W/moe" --random 8 --batch 2 --gen 3 --paired-membw 64
refuses "moe: --paired-membw buffer too small" 2 "paired-membw" "$SPINE" moe run --model "$W/moe" --random 8 --gen 3 --paired-membw 8
# --expert-budget: bytes for all MoE layers' experts, as slots (moe-tiny: 73,728 B an expert, 2 MoE layers)
check "expert budget 300K: 2 slots, outputs identical" bash -c "'$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 4 --expert-budget 300K --logits-out '$W/budget.st' | grep -q 'expert budget 300K: 2 slots per MoE layer' && cmp -s '$W/all.st' '$W/budget.st'"
refuses "moe: budget below one expert per layer" 1 "less than one expert per MoE layer" "$SPINE" moe run --model "$W/moe" --random 4 --expert-budget 100K
refuses "moe: bad budget" 2 "positive byte count" "$SPINE" moe run --model "$W/moe" --random 4 --expert-budget 3x
refuses "moe: budget and slots" 2 "not both" "$SPINE" moe run --model "$W/moe" --random 4 --expert-budget 1G --expert-slots 2
refuses "serve: bad budget" 2 "positive byte count" "$SPINE" serve --expert-budget -5
refuses "moe: belady is offline only" 2 "lifo, fifo, lru or lfu" "$SPINE" moe run --model "$W/moe" --random 4 --expert-slots 2 --expert-policy belady

# expert parallelism: experts on worker groups by a placement file; same outputs
"$SPINE" moe place --trace "$W/run.trace" --groups 2 --policy replicate -o "$W/place2.txt" >/dev/null
# (bitwise with AMX off: copies split an expert's tokens, and with AMX a part of 8 or fewer rows
# sums in another order than the whole, equal only to within F32 rounding)
check "moe run --expert-placement: outputs identical, group loads reported" bash -c "SPINE_AMX=0 '$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 4 --logits-out '$W/all-noamx.st' >/dev/null && SPINE_AMX=0 '$SPINE' moe run --model '$W/moe' --tokens '$W/tok8.txt' --gen 4 --expert-placement '$W/place2.txt' --logits-out '$W/placed.st' | grep -q 'worker groups ran' && cmp -s '$W/all-noamx.st' '$W/placed.st'"
printf 'spine-moe-placement 1 experts=8 groups=2 copies=1\nlayer 0: 0 1 0 1 0 1 0 1\n' >"$W/place-short.txt"
refuses "moe: placement misses a layer" 1 "no entry for MoE layer 1" "$SPINE" moe run --model "$W/moe" --random 4 --expert-placement "$W/place-short.txt"
printf 'spine-moe-placement 1 experts=8 groups=2 copies=1\nlayer 0: 0 1 0 1 0 1 0 2\n' >"$W/place-bad.txt"
refuses "moe: placement group out of range" 1 "expert 7" "$SPINE" moe run --model "$W/moe" --random 4 --expert-placement "$W/place-bad.txt"
printf 'spine-moe-placement 1 experts=4 groups=2 copies=1\nlayer 0: 0 1 0 1\nlayer 1: 0 1 0 1\n' >"$W/place-e4.txt"
refuses "moe: placement for another model" 1 "4 experts per layer" "$SPINE" moe run --model "$W/moe" --random 4 --expert-placement "$W/place-e4.txt"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
