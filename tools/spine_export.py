"""spine_export.py: PyTorch <-> spine model files, for tests, export and benchmarks.

What lives here: a numpy safetensors reader/writer, the reference DLRM in plain PyTorch
(facebookresearch/dlrm's layout and state_dict names), export of such a model to a spine model
folder (config.json + model.safetensors) with f32/f16/int8/int4 tables, loading a spine model
folder back into PyTorch, and writing input batches as safetensors. Never used at run time.

Export in a few lines:
    from spine_export import DLRM, export_dlrm
    m = DLRM(num_dense=13, bottom=[64, 16], top=[64, 1], rows=[1000] * 26, dim=16)
    export_dlrm(m, "my-model")
"""
import json
import os
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "U8": np.uint8, "I32": np.int32,
       "I64": np.int64}
_DT_REV = {np.dtype(v): k for k, v in _DT.items()}


def st_write(path, tensors, metadata=None):
    """Write {name: np.ndarray} as safetensors (offsets in insertion order). A value may also
    be ("BF16", uint16 array) for bfloat16 bits."""
    header, off, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        if isinstance(arr, tuple):
            dt, arr = arr
            arr = np.ascontiguousarray(arr)
        else:
            arr = np.ascontiguousarray(arr)
            dt = _DT_REV[arr.dtype]
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def st_read(path):
    """Read safetensors into {name: np.ndarray}, memory-mapped and read-only (BF16 comes back
    as uint16). Copy what you mean to modify."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        dt = np.uint16 if e["dtype"] == "BF16" else _DT[e["dtype"]]
        out[name] = mm[base + b:base + en].view(dt).reshape(e["shape"])
    return out


# ---- row quantization (spine's layouts, docs/MODEL_FORMAT.md) -----------------------------

def quantize_rows(w, rowtype):
    """Encode float32 rows [R, D] into spine's row layout; returns the stored array."""
    w = np.asarray(w, dtype=np.float32)
    if rowtype == "f32":
        return w
    if rowtype == "f16":
        return w.astype(np.float16)
    lo = w.min(axis=1).astype(np.float32)
    hi = w.max(axis=1).astype(np.float32)
    levels = 255 if rowtype == "int8" else 15
    scale = ((hi - lo) / np.float32(levels)).astype(np.float32)
    bias = lo
    if rowtype == "int4":
        scale = scale.astype(np.float16).astype(np.float32)
        bias = bias.astype(np.float16).astype(np.float32)
    inv = np.where(scale > 0, np.float32(1) / np.where(scale > 0, scale, 1), 0).astype(np.float32)
    q = np.clip(np.rint((w - bias[:, None]) * inv[:, None]), 0, levels).astype(np.uint8)
    R, D = w.shape
    if rowtype == "int8":
        tail = np.concatenate([scale[:, None].view(np.uint8).reshape(R, 4),
                               bias[:, None].view(np.uint8).reshape(R, 4)], axis=1)
        return np.concatenate([q, tail], axis=1)
    if D % 2:
        q = np.concatenate([q, np.zeros((R, 1), np.uint8)], axis=1)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    tail = np.concatenate([scale.astype(np.float16)[:, None].view(np.uint8).reshape(R, 2),
                           bias.astype(np.float16)[:, None].view(np.uint8).reshape(R, 2)], axis=1)
    return np.concatenate([packed, tail], axis=1)


def dequantize_rows(stored, rowtype, dim):
    """Decode spine's stored rows back to float32 [R, dim], as spine reads them."""
    if rowtype == "f32":
        return np.asarray(stored, np.float32)
    if rowtype == "f16":
        return np.asarray(stored).astype(np.float32)
    s = np.asarray(stored, np.uint8)
    R = s.shape[0]
    if rowtype == "int8":
        q = s[:, :dim].astype(np.float32)
        scale = s[:, dim:dim + 4].copy().view(np.float32).reshape(R)
        bias = s[:, dim + 4:dim + 8].copy().view(np.float32).reshape(R)
    else:
        nb = (dim + 1) // 2
        q = np.empty((R, nb * 2), np.float32)
        q[:, 0::2] = s[:, :nb] & 15
        q[:, 1::2] = s[:, :nb] >> 4
        q = q[:, :dim]
        scale = s[:, nb:nb + 2].copy().view(np.float16).reshape(R).astype(np.float32)
        bias = s[:, nb + 2:nb + 4].copy().view(np.float16).reshape(R).astype(np.float32)
    return (q * scale[:, None] + bias[:, None]).astype(np.float32)


# ---- the reference DLRM ---------------------------------------------------------------------

def _torch():
    import torch  # imported lazily: the numpy helpers above work without torch
    return torch


class DLRM:
    """facebookresearch/dlrm's DLRM_Net in plain PyTorch (built lazily so numpy-only users can
    import this module). bot_l/top_l are nn.Sequential of Linear + ReLU, emb_l a ModuleList of
    nn.EmbeddingBag; forward takes the KeyedJaggedTensor layout and returns logits."""

    def __new__(cls, *args, **kwargs):
        torch = _torch()
        nn = torch.nn

        class _DLRM(nn.Module):
            def __init__(self, num_dense, bottom, top, rows, dim, pooling="sum",
                         interaction="dot", interaction_self=False, poolings=None):
                super().__init__()
                self.num_dense, self.dim, self.rows = num_dense, dim, list(rows)
                self.bottom, self.top = list(bottom), list(top)
                self.interaction, self.interaction_self = interaction, interaction_self
                self.poolings = poolings or [pooling] * len(rows)
                self.bot_l = self._mlp([num_dense] + self.bottom)
                self.emb_l = nn.ModuleList(
                    [nn.EmbeddingBag(n, dim, mode=p) for n, p in zip(self.rows, self.poolings)])
                for e, n in zip(self.emb_l, self.rows):  # DLRM's initialisation
                    a = np.sqrt(1.0 / n)
                    nn.init.uniform_(e.weight, -a, a)
                nf = len(self.rows) + 1
                if interaction == "dot":
                    pairs = nf * (nf + 1) // 2 if interaction_self else nf * (nf - 1) // 2
                    self.interaction_dim = self.bottom[-1] + pairs
                else:
                    self.interaction_dim = self.bottom[-1] + len(self.rows) * dim
                self.top_l = self._mlp([self.interaction_dim] + self.top, last_relu=False)

            @staticmethod
            def _mlp(widths, last_relu=True):
                layers = []
                for i in range(len(widths) - 1):
                    lin = nn.Linear(widths[i], widths[i + 1])
                    nn.init.normal_(lin.weight, 0.0, np.sqrt(2.0 / (widths[i] + widths[i + 1])))
                    nn.init.normal_(lin.bias, 0.0, np.sqrt(1.0 / widths[i + 1]))
                    layers.append(lin)
                    if last_relu or i < len(widths) - 2:
                        layers.append(nn.ReLU())
                return nn.Sequential(*layers)

            def forward(self, dense, lengths, values, weights=None):
                x = self.bot_l(dense)
                ly, off = [], 0
                B = dense.shape[0]
                for t, emb in enumerate(self.emb_l):
                    ln = lengths[t]
                    n = int(ln.sum())
                    offsets = torch.zeros(B, dtype=torch.int64)
                    offsets[1:] = torch.cumsum(ln, 0)[:-1]
                    w = None if weights is None else weights[off:off + n]
                    ly.append(emb(values[off:off + n], offsets, per_sample_weights=w))
                    off += n
                if self.interaction == "dot":
                    T = torch.cat([x] + ly, dim=1).view((B, -1, self.dim))
                    Z = torch.bmm(T, torch.transpose(T, 1, 2))
                    o = 1 if self.interaction_self else 0
                    ni = T.shape[1]
                    li = torch.tensor([i for i in range(ni) for j in range(i + o)])
                    lj = torch.tensor([j for i in range(ni) for j in range(i + o)])
                    R = torch.cat([x, Z[:, li, lj]], dim=1)
                else:
                    R = torch.cat([x] + ly, dim=1)
                return self.top_l(R)

        return _DLRM(*args, **kwargs)


def export_dlrm(model, folder, name="model", rowtypes="f32", lookups_per_table=1):
    """Write a DLRM (the class above, or any module with the same state_dict names and
    attributes) as a spine model folder. rowtypes: one row type for all tables or a list.
    Returns the float32 tables as spine will read them (dequantized)."""
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    T = len(model.rows)
    rts = [rowtypes] * T if isinstance(rowtypes, str) else list(rowtypes)
    tensors, read_back = {}, []
    for k, v in sd.items():
        if k.startswith("emb_l."):
            continue
        tensors[k] = v.astype(np.float32)
    for t in range(T):
        stored = quantize_rows(sd[f"emb_l.{t}.weight"], rts[t])
        tensors[f"emb_l.{t}.weight"] = stored
        read_back.append(dequantize_rows(stored, rts[t], model.dim))
    st_write(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
    cfg = {
        "model_type": "dlrm", "name": name, "num_dense_features": model.num_dense,
        "embedding_dim": model.dim, "bottom_mlp": model.bottom, "top_mlp": model.top,
        "interaction": model.interaction, "interaction_self": bool(model.interaction_self),
        "lookups_per_table": lookups_per_table,
        "tables": [{"rows": int(n), "dtype": rts[t], "pooling": model.poolings[t]}
                   for t, n in enumerate(model.rows)],
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return read_back


def load_dlrm(folder):
    """Load a spine DLRM folder into the PyTorch reference (tables dequantized to float32)."""
    torch = _torch()
    cfg = json.load(open(os.path.join(folder, "config.json")))
    ts = st_read(os.path.join(folder, "model.safetensors"))
    dflt_rt, dflt_pool = cfg.get("embedding_dtype", "f32"), cfg.get("pooling", "sum")
    tabs = cfg["tables"]
    m = DLRM(cfg["num_dense_features"], cfg["bottom_mlp"], cfg["top_mlp"],
             [t["rows"] for t in tabs], cfg["embedding_dim"],
             interaction=cfg.get("interaction", "dot"),
             interaction_self=cfg.get("interaction_self", False),
             poolings=[t.get("pooling", dflt_pool) for t in tabs])
    sd = {}
    for k, v in ts.items():
        if k.startswith("emb_l."):
            t = int(k.split(".")[1])
            v = dequantize_rows(v, tabs[t].get("dtype", dflt_rt), cfg["embedding_dim"])
        sd[k] = torch.from_numpy(np.array(v, np.float32))  # a writable copy
    m.load_state_dict(sd)
    return m, cfg


def write_batch(path, dense, lengths, values, weights=None):
    """Write an input batch (KeyedJaggedTensor layout) for `spine infer --input X.safetensors`."""
    t = {"dense": np.asarray(dense, np.float32), "lengths": np.asarray(lengths, np.int32),
         "values": np.asarray(values, np.int64)}
    if weights is not None:
        t["weights"] = np.asarray(weights, np.float32)
    st_write(path, t)
