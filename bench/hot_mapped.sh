#!/usr/bin/env bash
# hot_mapped.sh [BUILD_DIR]: a hot-row tier in front of tables read from a mapped file larger
# than the memory the process may use: full-size RMC2 (4.1 GB of f32 tables, generated once
# under build/bench), `spine bench --placement map --zipf ALPHA --batch 256 --threads 2` in a
# memory cgroup of LIMIT_MB (default 1024), the file's pages dropped from the page cache before
# each run, plain tables alternating with a tier of HOT_MB (default 512) for ROUNDS (default 2).
# The cgroup limit counts the page cache the process faults in and the tier's own memory, so
# both runs have the same memory. Needs root and a cgroup memory controller (v1 or v2); says so
# and exits 2 otherwise. Prints samples/s, the tier's hit rate, major faults and the megabytes
# read from disk per run. About 2 minutes a run.
set -euo pipefail
B=${1:-build/release}
S=$B/spine
ROUNDS=${ROUNDS:-2}
LIMIT_MB=${LIMIT_MB:-1024}
HOT_MB=${HOT_MB:-512}
ALPHA=${ALPHA:-1.0}
SECONDS_PER=${SECONDS_PER:-10}
M=build/bench/rmc2-x1-f32
[ -f "$M/model.safetensors" ] || "$S" model gen --preset rmc2 -o "$M"
[ "$(id -u)" = 0 ] || { echo "hot_mapped.sh: needs root (a memory cgroup)" >&2; exit 2; }
self=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
if [ -n "$self" ] && [ -d "/sys/fs/cgroup/memory$self" ]; then
  CG=/sys/fs/cgroup/memory$self/spine-hot-mapped
  mkdir -p "$CG"
  echo $((LIMIT_MB << 20)) >"$CG/memory.limit_in_bytes"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG=/sys/fs/cgroup$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup)/spine-hot-mapped
  mkdir -p "$CG"
  echo $((LIMIT_MB << 20)) >"$CG/memory.max"
else
  echo "hot_mapped.sh: no cgroup memory controller here" >&2
  exit 2
fi
trap 'rmdir "$CG" 2>/dev/null || true' EXIT
dev=$(lsblk -no PKNAME "$(df --output=source "$M" | tail -1)" 2>/dev/null || true)
[ -n "$dev" ] || dev=$(basename "$(df --output=source "$M" | tail -1)")
sectors() { awk -v d="$dev" '$3 == d {print $6}' /proc/diskstats; }
run() { # hot_mb (0: plain)
  python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$M/model.safetensors"
  local extra=() r0 r1
  [ "$1" != 0 ] && extra=(--hot-mb "$1")
  r0=$(sectors)
  sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec /usr/bin/time -f "major faults %F" "$@"' _ "$CG" \
    "$S" bench --model "$M" --placement map --zipf "$ALPHA" --batch 256 --threads 2 \
    --seconds "$SECONDS_PER" --json "${extra[@]}" 2>"$W/err" >"$W/out" || { cat "$W/err" >&2; exit 1; }
  r1=$(sectors)
  python3 - "$W/out" "$W/err" "$1" "$(((r1 - r0) / 2048))" <<'PY'
import json, re, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
f = re.search(r"major faults (\d+)", open(sys.argv[2]).read())
print("%-6s samples/s %7.1f  hot-tier hit rate %5.1f%%  major faults %6s  read from disk %6s MB" %
      ("tier" if sys.argv[3] != "0" else "plain", r["samples_per_s"],
       100 * r.get("hit_rate", 0), f.group(1) if f else "?", sys.argv[4]))
PY
}
W=$(mktemp -d)
echo "rmc2 x1 f32 mapped, Zipf $ALPHA, memory limit $LIMIT_MB MiB, tier $HOT_MB MB, device $dev" >&2
for _ in $(seq "$ROUNDS"); do
  run 0
  run "$HOT_MB"
done
rm -rf "$W"
