"""sls_torch.py: PyTorch's nn.EmbeddingBag (mode "sum", fp32) on the lookups `spine bench sls
--indices-out FILE` used: the same tables (shapes), indices, bag sizes and thread count.

usage: sls_torch.py --indices FILE [FILE...] --rows R --dim D [--threads 2] [--seconds 2]
                    [--repeat 3] [--batch 256]
Prints one JSON object per index file: rows/s (median of the repeats). The tables are made
once (zero-filled: a gather's speed does not depend on the values) and serve every file.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from spine_export import st_read  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--indices", required=True, nargs="+")
ap.add_argument("--rows", type=int, required=True)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seconds", type=float, default=2)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--batch", type=int, default=256,
                help="bags per table per run, as spine bench sls --batch (the file holds many)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
bags = None
for path in a.indices:
    b = st_read(path)
    lengths, values = np.array(b["lengths"]), np.array(b["values"])
    T, B2 = lengths.shape
    B = a.batch
    nsets = B2 // B
    L = int(lengths[0, 0])
    if bags is None:
        bags = [torch.nn.EmbeddingBag(a.rows, a.dim, mode="sum", _weight=torch.zeros(a.rows, a.dim))
                for _ in range(T)]
    sets = []
    vals = values.reshape(T, nsets, B * L)
    offs = torch.arange(0, B * L, L, dtype=torch.int64)
    for s in range(nsets):
        sets.append([torch.from_numpy(vals[t, s].copy()) for t in range(T)])
    rates = []
    with torch.no_grad():
        for _ in range(a.repeat):
            runs, t0 = 0, time.perf_counter()
            while True:
                idx = sets[runs % nsets]
                for t in range(T):
                    bags[t](idx[t], offs)
                runs += 1
                el = time.perf_counter() - t0
                if el >= a.seconds:
                    break
            rates.append(runs * B * L * T / el)
    print(json.dumps({"anchor": "torch " + torch.__version__ + " nn.EmbeddingBag",
                      "threads": a.threads, "tables": T, "rows": a.rows, "dim": a.dim, "batch": B,
                      "lookups": L, "indices": os.path.basename(path),
                      "rows_per_s": statistics.median(rates)}), flush=True)
