#!/usr/bin/env bash
# moe.sh [BUILD_DIR]: the MoE benchmarks recorded in docs/BENCHMARKS.md, side by side in one run:
#  - this machine's limits: `spine bench fma` (FMA peak) and `spine bench membw` (sequential GB/s);
#  - mixtral-mini (F32 and BF16): spine's prefill (128-token prompt) and batch-1 decode (each
#    decode step paired with a sequential-read probe just before and after it: --paired-membw)
#    against
#    the tuned PyTorch reference (bench/moe_torch.py) on Debian's torch and, when
#    build/venv-bench exists (bench/run.sh makes it), PyPI's; rounds alternate engines;
#  - moe-lm: static against dynamic gating across batch sizes and capacity factors (prefill
#    throughput and MoE activation memory).
# Models are generated under build/bench-moe on first use (3.2 + 1.6 + 9.8 GB).
# PARTS=limits,mini,gating (the default: all) reruns only some parts; results of the others
# stay from the previous run.
set -euo pipefail
B=${1:-build/release}
S=$B/spine
OUT=build/bench-moe
ROUNDS=${ROUNDS:-3}
T=${THREADS:-2}
mkdir -p "$OUT"
PARTS=${PARTS:-limits,mini,gating}
has() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
has limits || has mini && rm -f "$OUT/fma.jsonl" "$OUT/membw.jsonl"
has mini && rm -f "$OUT"/spine-*.jsonl "$OUT"/torch-*.jsonl "$OUT"/round-*.jsonl
has gating && rm -f "$OUT/gating.jsonl"
for m in mixtral-mini:f32 mixtral-mini:bf16 moe-lm:f32; do
  p=${m%%:*} d=${m##*:}
  [ -f "$OUT/$p-$d/config.json" ] || "$S" moe gen --preset "$p" --dtype "$d" -o "$OUT/$p-$d"
done
if has limits; then
  echo "== limits" >&2
  "$S" bench fma --threads "$T" --json | tail -1 >"$OUT/fma.jsonl"
  "$S" bench membw --threads "$T" --repeat 5 --json | tail -1 >"$OUT/membw.jsonl"
  cat "$OUT/fma.jsonl" "$OUT/membw.jsonl" >&2
fi
PYS="/usr/bin/python3"
[ -x build/venv-bench/bin/python ] && PYS="$PYS build/venv-bench/bin/python"
has mini && for r in $(seq "$ROUNDS"); do
  echo "== round $r of $ROUNDS: mixtral-mini" >&2
  # the limits again in every round: this machine's bandwidth drifts by 10-40% within minutes,
  # so each spine run is bracketed by a bandwidth measurement just before and just after it
  # (round-R.jsonl: membw, spine F32, membw, spine BF16, membw), all of them in the median
  "$S" bench fma --threads "$T" --json | tail -1 >>"$OUT/fma.jsonl"
  "$S" bench membw --threads "$T" --repeat 1 --json | tail -1 | tee -a "$OUT/membw.jsonl" >"$OUT/round-$r.jsonl"
  for d in f32 bf16; do
    "$S" moe run --model "$OUT/mixtral-mini-$d" --random 128 --gen 32 --threads "$T" \
      --repeat 3 --paired-membw 1024 --json | tee -a "$OUT/spine-$d.jsonl" "$OUT/round-$r.jsonl" >&2
    "$S" bench membw --threads "$T" --repeat 1 --json | tail -1 | tee -a "$OUT/membw.jsonl" >>"$OUT/round-$r.jsonl"
  done
  for py in $PYS; do
    tag=$([ "$py" = /usr/bin/python3 ] && echo debian || echo pypi)
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$T "$py" bench/moe_torch.py \
      --model "$OUT/mixtral-mini-f32" --prompt 128 --gen 16 --threads "$T" --rounds 2 |
      tee -a "$OUT/torch-$tag.jsonl" >&2
  done
done
has gating && echo "== moe-lm: static vs dynamic gating" >&2
LM=$OUT/moe-lm-f32
has gating && for bt in 1:128 4:128 16:128; do
  b=${bt%%:*} t=${bt##*:}
  for g in dynamic static:1 static:2 static:12.8; do
    [ "$g" = static:12.8 ] && [ "$b" -gt 4 ] && continue # minutes per run, and 3.5 GB of masks
    if [ "$g" = dynamic ]; then args=(--gating dynamic); else args=(--gating static --capacity-factor "${g#static:}"); fi
    "$S" moe run --model "$LM" --placement map --random "$t" --batch "$b" --gen 0 \
      --threads "$T" --repeat 3 "${args[@]}" --json | tee -a "$OUT/gating.jsonl" >&2
  done
done
python3 - "$OUT" <<'PY'
import json, statistics as st, sys, os
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
med = lambda rs, k: st.median(r[k] for r in rs)
fma = med(rows("fma.jsonl"), "gflops")
seq = med(rows("membw.jsonl"), "seq_gbps")
print("machine: FMA peak %.1f GFLOP/s, sequential read %.2f GB/s (%s threads; medians of %d "
      "measurements spread over the run)" %
      (fma, seq, rows("fma.jsonl")[0]["threads"], len(rows("membw.jsonl"))))
# decode against the bandwidth bracketing it, per round: shown to make the drift visible (it
# moves faster than a 1 s probe can follow: some rounds read above their bracket), while the
# headline ratio is median against median
frac = {"f32": [], "bf16": []}
r = 1
while os.path.exists(os.path.join(out, "round-%d.jsonl" % r)):
    lines = rows("round-%d.jsonl" % r)
    for i, l in enumerate(lines):
        if "decode_weight_gb_s" in l and 0 < i < len(lines) - 1:
            lim = (lines[i - 1]["seq_gbps"] + lines[i + 1]["seq_gbps"]) / 2
            frac[l["dtype"].lower()].append((l["decode_weight_gb_s"], lim))
    r += 1
print("\n| mixtral-mini | prefill tok/s (128) | decode tok/s (batch 1) |")
print("|---|---|---|")
sp = {}
for d in ("f32", "bf16"):
    rs = rows("spine-%s.jsonl" % d)
    sp[d] = (med(rs, "prefill_tok_s"), med(rs, "decode_tok_s"))
    fr = frac[d]
    paired = ("; per round, decode GB/s / mean of the membw just before and after: %s" %
              ", ".join("%.1f/%.1f" % (g, l) for g, l in fr)) if fr else ""
    pf = [r["paired_decode_fraction"] for r in rs if r.get("paired_steps")]
    pairs = ("; **%.0f%% of the probes between its steps** (median over %d runs of each run's "
             "median step: %s)" % (100 * st.median(pf), len(pf), ", ".join("%.0f%%" % (100 * v) for v in pf))) if pf else ""
    split = ("; weight products %.0f%% of the time at %.1f GFLOP/s, attention %.1f%%" % (
        100 * med(rs, "prefill_products_share"), med(rs, "prefill_products_gflops"),
        100 * med(rs, "prefill_attention_share"))) if all("prefill_products_share" in r for r in rs) else ""
    print("| spine %s | %.1f (%.1f GFLOP/s = %.0f%% of FMA peak%s) | %.2f (%.2f GB/s = %.0f%% of the run's median sequential%s%s) |" % (
        d.upper(), sp[d][0], med(rs, "prefill_gflops"), 100 * med(rs, "prefill_gflops") / fma, split,
        sp[d][1], med(rs, "decode_weight_gb_s"), 100 * med(rs, "decode_weight_gb_s") / seq, paired, pairs))
for tag in ("debian", "pypi"):
    rs = rows("torch-%s.jsonl" % tag)
    if not rs:
        continue
    tp, td = med(rs, "prefill_tok_s"), med(rs, "decode_tok_s")
    print("| PyTorch %s (%s), tuned, F32 | %.1f (spine F32 %.2fx) | %.2f (spine F32 %.2fx, BF16 %.2fx) |" % (
        rs[0]["anchor"], tag, tp, sp["f32"][0] / tp, td, sp["f32"][1] / td, sp["bf16"][1] / td))
print("\nspine BF16 decode / F32 decode: %.2fx" % (sp["bf16"][1] / sp["f32"][1]))
print("\n| moe-lm, batch x 128 | gating | tok/s | waste | dropped | MoE act. MB | dynamic speedup | act. memory ratio |")
print("|---|---|---|---|---|---|---|---|")
g = rows("gating.jsonl")
for b in sorted({r["batch"] for r in g}):
    dyn = [r for r in g if r["batch"] == b and r["gating"] == "dynamic"][0]
    for r in [x for x in g if x["batch"] == b]:
        print("| %d x %d | %s%s | %.1f | %.2f | %d of %d | %.1f | %s | %s |" % (
            b, r["prompt"], r["gating"], " CF %g" % r["capacity_factor"] if r["gating"] == "static" else "",
            r["prefill_tok_s"], r["waste_factor"], r["dropped"], r["assignments"],
            r["act_bytes_peak"] / 1e6,
            "%.2fx" % (dyn["prefill_tok_s"] / r["prefill_tok_s"]) if r is not dyn else "",
            "%.2fx" % (r["act_bytes_peak"] / dyn["act_bytes_peak"]) if r is not dyn else ""))
PY
