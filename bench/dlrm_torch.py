"""dlrm_torch.py: spine vs PyTorch on the same DLRM, same machine, same run.

Generates (or reuses) a model folder with `spine model gen`, measures `spine bench` on it, then
loads the very same weights into PyTorch and measures the same batch sizes with the same thread
count, input distribution (uniform indices, fixed bag size) and ring of distinct batches (enough
that the rows touched per ring exceed the last-level cache four times). PyTorch gets a fair
setup: inference_mode, per-table values/offsets prepared outside the timed region, interaction
index tensors built once, intra-op threads = --threads. Rounds alternate spine and PyTorch;
medians over rounds are reported, with ratios.

usage: python3 bench/dlrm_torch.py --spine build/release/spine --preset rmc2 --rows-scale 0.25
       --batch 1,16,256,1024 --threads 2 [--rounds 3] [--seconds 3] [--json-out FILE]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from spine_export import load_dlrm  # noqa: E402

RING_BYTES = 128 << 20


def ring_size(row_bytes_per_sample, B):
    return max(2, min(256, math.ceil(RING_BYTES / max(1.0, row_bytes_per_sample * B))))


def torch_bench(model, cfg, B, lookups, threads, seconds, rng, torch):
    T = len(cfg["tables"])
    dim = cfg["embedding_dim"]
    rows = [t["rows"] for t in cfg["tables"]]
    row_bytes = sum(lookups * dim * 4 for _ in rows)
    ring = ring_size(row_bytes, B)
    batches = []
    offsets = torch.arange(0, B * lookups, lookups, dtype=torch.int64)
    for _ in range(ring):
        dense = torch.from_numpy(rng.random((B, cfg["num_dense_features"]), dtype=np.float32))
        sparse = [(torch.from_numpy(rng.integers(0, n, size=B * lookups).astype(np.int64)), offsets)
                  for n in rows]
        batches.append((dense, sparse))
    nf = T + 1
    o = 1 if cfg.get("interaction_self") else 0
    li = torch.tensor([i for i in range(nf) for j in range(i + o)])
    lj = torch.tensor([j for i in range(nf) for j in range(i + o)])

    def forward(dense, sparse):
        x = model.bot_l(dense)
        ly = [emb(v, off) for emb, (v, off) in zip(model.emb_l, sparse)]
        Tm = torch.cat([x] + ly, dim=1).view((dense.shape[0], -1, dim))
        Z = torch.bmm(Tm, torch.transpose(Tm, 1, 2))
        R = torch.cat([x, Z[:, li, lj]], dim=1)
        return torch.sigmoid(model.top_l(R))

    lat = []
    with torch.inference_mode():
        for d, s in batches:  # warm-up: page faults, allocator
            forward(d, s)
        start = time.perf_counter()
        r = 0
        while time.perf_counter() - start < seconds or len(lat) < 5:
            t0 = time.perf_counter()
            forward(*batches[r])
            lat.append(time.perf_counter() - t0)
            r = (r + 1) % ring
    lat = np.array(lat)
    return {"samples_per_s": B * len(lat) / lat.sum(), "p50_ms": np.percentile(lat, 50) * 1e3,
            "p95_ms": np.percentile(lat, 95) * 1e3, "p99_ms": np.percentile(lat, 99) * 1e3,
            "iters": len(lat)}


def spine_bench(spine, folder, batches, threads, seconds):
    out = subprocess.run([spine, "bench", "--model", folder, "--batch", ",".join(map(str, batches)),
                          "--threads", str(threads), "--seconds", str(seconds), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return {r["batch"]: r for r in map(json.loads, out.strip().splitlines())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spine", required=True)
    ap.add_argument("--preset", default="rmc2")
    ap.add_argument("--rows-scale", default="0.25")
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--batch", default="1,16,256,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--workdir", default="build/bench")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    torch.set_num_threads(a.threads)
    batches = [int(x) for x in a.batch.split(",")]
    folder = os.path.join(a.workdir, f"{a.preset}-x{a.rows_scale}-{a.dtype}")
    if not os.path.exists(os.path.join(folder, "config.json")):
        subprocess.run([a.spine, "model", "gen", "--preset", a.preset, "--rows-scale", a.rows_scale,
                        "--dtype", a.dtype, "-o", folder], check=True)
    model, cfg = load_dlrm(folder)
    model.eval()
    lookups = cfg["lookups_per_table"]
    rng = np.random.default_rng(1)
    runs = {"spine": {b: [] for b in batches}, "torch": {b: [] for b in batches}}
    for rnd in range(a.rounds):
        s = spine_bench(a.spine, folder, batches, a.threads, a.seconds)
        for b in batches:
            runs["spine"][b].append(s[b])
            runs["torch"][b].append(torch_bench(model, cfg, b, lookups, a.threads, a.seconds, rng,
                                                torch))
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    med = lambda rs, k: float(np.median([r[k] for r in rs]))  # noqa: E731
    print(f"# {a.preset} x{a.rows_scale} {a.dtype}, {a.threads} threads, torch {torch.__version__}, "
          f"medians of {a.rounds} rounds of {a.seconds:g} s")
    print(f"{'batch':>6} {'spine samples/s':>16} {'torch samples/s':>16} {'ratio':>6} "
          f"{'spine p50 ms':>13} {'torch p50 ms':>13} {'latency ratio':>14}")
    rows = []
    for b in batches:
        ss, ts = med(runs["spine"][b], "samples_per_s"), med(runs["torch"][b], "samples_per_s")
        sp, tp = med(runs["spine"][b], "p50_ms"), med(runs["torch"][b], "p50_ms")
        print(f"{b:>6} {ss:>16.1f} {ts:>16.1f} {ss / ts:>6.2f} {sp:>13.4f} {tp:>13.4f} "
              f"{tp / sp:>14.2f}")
        rows.append({"batch": b, "spine_samples_per_s": ss, "torch_samples_per_s": ts,
                     "throughput_ratio": ss / ts, "spine_p50_ms": sp, "torch_p50_ms": tp,
                     "latency_ratio": tp / sp, "torch": torch.__version__, "threads": a.threads,
                     "preset": a.preset, "rows_scale": a.rows_scale, "dtype": a.dtype})
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
