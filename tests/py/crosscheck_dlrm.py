"""crosscheck_dlrm.py: spine's DLRM against the same model in PyTorch.

Each case builds a DLRM in plain PyTorch (nn.EmbeddingBag + nn.Linear + the dot or cat
interaction), exports it with tools/spine_export.py, runs `spine infer` on random batches
written as safetensors, and compares probabilities and logits. Tolerances (docs/MODEL_FORMAT.md):
fp32 tables: max |dp| <= 1e-5; f16/int8/int4 tables are compared against PyTorch on the
dequantized weights, where only summation order differs: max |dp| <= 1e-5 as well, and the
quantization error itself (against the unquantized model) is reported, not asserted.

usage: crosscheck_dlrm.py SPINE_BINARY WORKDIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from spine_export import DLRM, export_dlrm, write_batch  # noqa: E402

SPINE, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
torch.manual_seed(0)
rng = np.random.default_rng(0)
results = []


def random_batch(model, B, max_len, empty_frac=0.2, weighted=False):
    T = len(model.rows)
    lengths = rng.integers(1, max_len + 1, size=(T, B)).astype(np.int32)
    lengths[rng.random((T, B)) < empty_frac] = 0
    values = np.concatenate([rng.integers(0, model.rows[t], size=int(lengths[t].sum()))
                             for t in range(T)]).astype(np.int64)
    dense = rng.random((B, model.num_dense), dtype=np.float32)
    weights = rng.random(values.shape[0], dtype=np.float32) if weighted else None
    return dense, lengths, values, weights


def spine_infer(folder, batch_path, logits):
    cmd = [SPINE, "infer", "--model", folder, "--input", batch_path, "--threads", "2",
           "--batch", "48"]
    if logits:
        cmd.append("--logits")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return np.array([float(x) for x in out.split()], dtype=np.float64)


def case(name, model, B, max_len, rowtypes="f32", weighted=False, tol=1e-5, empty_frac=0.2):
    folder = os.path.join(WORK, name)
    read_back = export_dlrm(model, folder, name=name, rowtypes=rowtypes)
    ref = model
    if rowtypes != "f32":  # PyTorch on the weights spine actually reads
        with torch.no_grad():
            for e, w in zip(model.emb_l, read_back):
                e.weight.copy_(torch.from_numpy(w))
    dense, lengths, values, weights = random_batch(model, B, max_len, empty_frac, weighted)
    bpath = os.path.join(WORK, name + ".batch.safetensors")
    write_batch(bpath, dense, lengths, values, weights)
    with torch.no_grad():
        logit = ref(torch.from_numpy(dense), torch.from_numpy(lengths.astype(np.int64)),
                    torch.from_numpy(values),
                    None if weights is None else torch.from_numpy(weights)).numpy()[:, 0]
    prob = 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
    sp, sl = spine_infer(folder, bpath, False), spine_infer(folder, bpath, True)
    dp, dl = float(np.max(np.abs(sp - prob))), float(np.max(np.abs(sl - logit)))
    ok = dp <= tol and sp.shape == prob.shape
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name:28s} B={B:4d} max|dprob|={dp:.2e} "
          f"max|dlogit|={dl:.2e} (tol {tol:g})", flush=True)


def tiny(**kw):
    rows = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 7, 11, 100, 200, 300, 400]
    return DLRM(13, [32, 8], [32, 16, 1], rows, 8, **kw)


def rmc2_scaled(**kw):
    return DLRM(256, [128, 64], [128, 64, 1], [2000 + 37 * t for t in range(32)], 64, **kw)


case("tiny-sum", tiny(), 64, 5)
case("tiny-mean", tiny(pooling="mean"), 64, 5)
case("tiny-weighted", tiny(), 64, 5, weighted=True)
case("tiny-all-empty", tiny(), 16, 3, empty_frac=1.0)
case("tiny-cat", DLRM(13, [32, 16], [32, 1], [50] * 6, 8, interaction="cat"), 40, 4)
case("tiny-dot-self", tiny(interaction_self=True), 33, 4)
case("rmc2-scaled-sum", rmc2_scaled(), 100, 120, empty_frac=0.05)
case("rmc2-scaled-mean", rmc2_scaled(pooling="mean"), 50, 120, empty_frac=0.05)
case("rmc2-scaled-weighted", rmc2_scaled(), 50, 120, weighted=True, empty_frac=0.05)
for rt in ("f16", "int8", "int4"):
    case(f"tiny-{rt}", tiny(), 64, 5, rowtypes=rt)
    case(f"rmc2-scaled-{rt}", rmc2_scaled(), 40, 120, rowtypes=rt, empty_frac=0.05)
case("odd-dim-int4", DLRM(5, [16, 13], [8, 1], [97, 3, 1000], 13), 30, 6, rowtypes="int4")
case("odd-dim-mixed", DLRM(5, [16, 13], [8, 1], [97, 3, 1000, 64], 13), 30, 6,
     rowtypes=["f32", "f16", "int8", "int4"])

# Criteo TSV: the documented feature mapping, checked against the same model in PyTorch.
model = DLRM(13, [16, 8], [16, 1], [1460, 583, 7, 1] + [97] * 22, 8)
folder = os.path.join(WORK, "criteo")
export_dlrm(model, folder, name="criteo")
lines, dense, vals = [], [], []
for i in range(200):
    ints = [int(x) for x in rng.integers(-3, 5000, size=13)]
    cats = [f"{int(x):08x}" for x in rng.integers(0, 2**32, size=26)]
    if i % 7 == 0:
        ints[i % 13] = None  # missing dense value
    if i % 5 == 0:
        cats[i % 26] = ""  # missing categorical value
    label = [str(i % 2)] if i % 3 else []
    lines.append("\t".join(label + ["" if v is None else str(v) for v in ints] + cats))
    dense.append([np.float32(np.log1p(max(v or 0, 0))) for v in ints])
    vals.append([int(c, 16) % model.rows[t] if c else 0 for t, c in enumerate(cats)])
tsv = os.path.join(WORK, "criteo.tsv")
with open(tsv, "w") as f:
    f.write("\n".join(lines) + "\n")
out = subprocess.run([SPINE, "infer", "--model", folder, "--input", tsv, "--batch", "64"],
                     check=True, capture_output=True, text=True).stdout
sp = np.array([float(x) for x in out.split()])
vals = np.array(vals, np.int64)  # [B, T] -> table-major
with torch.no_grad():
    logit = model(torch.tensor(np.array(dense, np.float32)), torch.ones(26, 200, dtype=torch.int64),
                  torch.from_numpy(vals.T.reshape(-1).copy())).numpy()[:, 0]
prob = 1 / (1 + np.exp(-logit.astype(np.float64)))
d = float(np.max(np.abs(sp - prob)))
results.append(d <= 1e-5)
print(f"{'PASS' if d <= 1e-5 else 'FAIL'} {'criteo-tsv-mapping':28s} B= 200 max|dprob|={d:.2e}")

npass = sum(results)
print(f"{npass} passed, {len(results) - npass} failed")
sys.exit(0 if npass == len(results) else 1)
