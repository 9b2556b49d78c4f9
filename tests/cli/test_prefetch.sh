#!/usr/bin/env bash
# test_prefetch.sh LIBSPINE.A: every kernel whose source asks for a software prefetch carries
# prefetch instructions in the built library. A compiler may drop them without a word: GCC 12
# deleted the calls to a plain `static inline` prefetch helper in the AVX-512 decode kernel,
# which then streamed its weights 4-15% slower (matmul_avx512.c), and no result changed.
set -u
LIB=$1
command -v objdump >/dev/null || { echo "objdump (binutils) is missing"; exit 1; }
T=$(mktemp) && trap 'rm -f "$T"' EXIT
# prefetch instructions per function
objdump -d --no-show-raw-insn "$LIB" 2>/dev/null |
  awk '/^[0-9a-f]+ <[^>]+>:$/{fn=substr($2, 2, length($2) - 3); c[fn] += 0}
       /prefetch/{c[fn]++} END{for (f in c) print f, c[f]}' >"$T"
[ -s "$T" ] || { echo "cannot disassemble $LIB"; exit 1; }
pass=0 fail=0
# (mm_tile_amx: where the compiler builds matmul_amx.c)
# "a|b": the prefetches may sit in either function (a static helper, or the kernel it is
# inlined into, as the compiler decides)
for want in mm_small_avx512 mm_tile_avx512 "small_f32|mm_small_avx2" "small_bf16|mm_small_avx2" \
  membw_seq_avx2 sls_f32_avx2 sls_f32_avx512 sls_f16_avx2 sls_f16_avx512 sls_int8_avx2 \
  sls_int8_avx512 sls_int4_avx2 sls_int4_avx512 sls_f32_hot_avx512 sls_int8_hot_avx512 \
  sls_multi_avx2 sls_multi_avx512 $(awk '$1 == "mm_tile_amx" {print $1}' "$T"); do
  n=$(awk -v w="|$want|" 'index(w, "|" $1 "|") {s += $2; seen = 1} END{if (seen) print s}' "$T")
  if [ -z "$n" ]; then
    fail=$((fail + 1)); echo "FAIL $want: not in $LIB"
  elif [ "$n" -gt 0 ]; then
    pass=$((pass + 1)); echo "PASS $want: $n prefetch instructions"
  else
    fail=$((fail + 1)); echo "FAIL $want: no prefetch instruction (the compiler dropped them)"
  fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
