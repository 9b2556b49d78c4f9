"""moe_torch.py: the tuned PyTorch reference on a spine MoE model folder, for bench/moe.sh.

Loads the folder with tools/moe_reference.py and times a prefill of B x T random tokens and G
greedy decode steps, as a careful PyTorch user would run it: torch.no_grad, single-row
products through torch.mv, BLAS/OpenMP threads set to --threads, OMP_WAIT_POLICY=PASSIVE (set
by bench/moe.sh before Python starts). Prints one JSON object per round.

usage: moe_torch.py --model DIR [--batch 1] [--prompt 128] [--gen 16] [--threads 2]
                    [--rounds 3]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from moe_reference import MoERef, load  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--gen", type=int, default=16)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg, w = load(a.model)
ref = MoERef(cfg, w, tuned=True)
g = torch.Generator().manual_seed(1)
tokens = torch.randint(0, cfg["vocab_size"], (a.batch, a.prompt), generator=g)
for r in range(a.rounds):
    ref.reset()
    t0 = time.perf_counter()
    logits = ref.forward(tokens, logits_all=False)
    tp = time.perf_counter() - t0
    nxt = logits[:, -1, :].argmax(-1)
    t0 = time.perf_counter()
    for _ in range(a.gen):
        nxt = ref.forward(nxt[:, None], logits_all=False)[:, -1, :].argmax(-1)
    td = time.perf_counter() - t0
    print(json.dumps({"anchor": "torch " + torch.__version__, "threads": a.threads,
                      "batch": a.batch, "prompt": a.prompt, "gen": a.gen,
                      "prefill_tok_s": a.batch * a.prompt / tp,
                      "decode_tok_s": a.batch * a.gen / td if a.gen else 0.0}), flush=True)
