"""moe_reference.py: the MoE transformer in plain PyTorch ops, for spine's cross-checks and
benchmarks. Never used at run time.

What lives here: a Mixtral-architecture decoder (RMSNorm, rotary positions in Hugging Face's
rotate_half convention, grouped-query attention with a KV cache, SwiGLU experts, a linear router
with softmax top-k gating, MoE every `moe_every` layers, dense SwiGLU elsewhere) that reads and
writes spine MoE model folders (config.json with Hugging Face keys + model.safetensors with
Hugging Face tensor names), with the two gating modes written independently of spine's C code:

  dynamic: for each expert, the tokens that chose it (torch.where), index_add of the weighted
           outputs (the Hugging Face Mixtral loop);
  static:  GShard/fairseq: capacity C = ceil(CF * k * S / E) clamped to [1, S]; positions by
           cumsum over one-hot masks, first choices before second choices; a dense dispatch
           mask [S, E, C] and einsum dispatch/combine; dropped assignments contribute nothing.

`tuned=True` follows what a careful PyTorch user does for decode: single-row products through
torch.mv and no autograd.
"""
import json
import math
import os

import numpy as np
import torch

from spine_export import st_read, st_write


def bf16_bits(t):
    """float32 tensor -> bfloat16 bits as a uint16 numpy array (round to nearest even)."""
    return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def bits_to_f32(u16):
    return torch.from_numpy((np.asarray(u16).astype(np.uint32) << 16).view(np.float32))


def tensor_names(cfg):
    """(name, shape, fan_in) in file order; fan_in 0: a norm, -1: the embedding."""
    H, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or H // cfg["num_attention_heads"]
    qd = cfg["num_attention_heads"] * hd
    kvd = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
    E, every = cfg["num_local_experts"], cfg.get("moe_every", 1)
    out = [("model.embed_tokens.weight", (V, H), -1)]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", (H,), 0), (p + "self_attn.q_proj.weight", (qd, H), H),
                (p + "self_attn.k_proj.weight", (kvd, H), H),
                (p + "self_attn.v_proj.weight", (kvd, H), H),
                (p + "self_attn.o_proj.weight", (H, qd), qd),
                (p + "post_attention_layernorm.weight", (H,), 0)]
        if E > 0 and (i + 1) % every == 0:
            out.append((p + "block_sparse_moe.gate.weight", (E, H), H))
            for e in range(E):
                q = p + "block_sparse_moe.experts.%d." % e
                out += [(q + "w1.weight", (F, H), H), (q + "w2.weight", (H, F), F),
                        (q + "w3.weight", (F, H), H)]
        else:
            out += [(p + "mlp.gate_proj.weight", (F, H), H), (p + "mlp.down_proj.weight", (H, F), F),
                    (p + "mlp.up_proj.weight", (F, H), H)]
    out.append(("model.norm.weight", (H,), 0))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, H), H))
    return out


def random_weights(cfg, seed=0, router_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape, fan in tensor_names(cfg):
        if fan == 0:
            w[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif fan < 0:
            w[name] = torch.randn(shape, generator=g)
        else:
            w[name] = torch.randn(shape, generator=g) / math.sqrt(fan)
            if name.endswith("gate.weight"):
                w[name] *= router_scale
    return w


def export(cfg, weights, folder, dtype="f32", shards=1):
    """Write config.json and model.safetensors (or `shards` files + the index)."""
    os.makedirs(folder, exist_ok=True)
    c = dict(cfg)
    c["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    items = list(weights.items())
    enc = {}
    for k, v in items:
        enc[k] = ("BF16", bf16_bits(v)) if dtype == "bf16" else v.numpy().astype(np.float32)
    if shards == 1:
        st_write(os.path.join(folder, "model.safetensors"), enc, {"format": "pt"})
        return
    per = (len(items) + shards - 1) // shards
    wmap = {}
    for s in range(shards):
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {k: enc[k] for k, _ in items[s * per:(s + 1) * per]}
        st_write(os.path.join(folder, fn), part, {"format": "pt"})
        wmap.update({k: fn for k in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)


def load(folder):
    """(config dict, {name: float32 torch tensor}) from a model folder (bf16 upcast exactly)."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    w = {}
    files = ["model.safetensors"]
    if not os.path.exists(os.path.join(folder, files[0])):
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    for fn in files:
        for k, v in st_read(os.path.join(folder, fn)).items():
            w[k] = bits_to_f32(v) if v.dtype == np.uint16 else torch.from_numpy(np.array(v))
    return cfg, w


class MoERef:
    def __init__(self, cfg, w, gating="dynamic", capacity_factor=1.0, encoder=False, tuned=False):
        self.cfg, self.w = cfg, w
        self.H = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.H // self.nh
        self.E, self.k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
        self.every = cfg.get("moe_every", 1)
        self.eps = cfg.get("rms_norm_eps", 1e-5)
        self.norm_topk = cfg.get("norm_topk_prob", True)
        self.gating, self.cf, self.encoder, self.tuned = gating, capacity_factor, encoder, tuned
        theta = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float()
                                          / self.hd))
        self.lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        self.reset()

    def reset(self):
        self.kc = [None] * self.cfg["num_hidden_layers"]
        self.vc = [None] * self.cfg["num_hidden_layers"]
        self.pos = 0
        self.drops = []

    def lin(self, x, W):
        if self.tuned and x.shape[0] == 1:
            return torch.mv(W, x[0]).unsqueeze(0)
        return x @ W.t()

    def rms(self, x, w):
        v = x.pow(2).mean(-1, keepdim=True)
        return w * (x * torch.rsqrt(v + self.eps))

    def rope(self, x, pos):  # x [B, T, h, hd]
        t = torch.arange(pos, pos + x.shape[1], dtype=torch.float32)
        fr = torch.outer(t, self.inv_freq)
        cos, sin = torch.cat([fr, fr], -1).cos(), torch.cat([fr, fr], -1).sin()
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        h = self.hd // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def attention(self, li, xn, B, T):
        p = "model.layers.%d.self_attn." % li
        S = B * T
        q = self.lin(xn, self.w[p + "q_proj.weight"]).view(B, T, self.nh, self.hd)
        k = self.lin(xn, self.w[p + "k_proj.weight"]).view(B, T, self.nkv, self.hd)
        v = self.lin(xn, self.w[p + "v_proj.weight"]).view(B, T, self.nkv, self.hd)
        q, k = self.rope(q, self.pos), self.rope(k, self.pos)
        if self.kc[li] is None or self.encoder:
            self.kc[li], self.vc[li] = k, v
        else:
            self.kc[li] = torch.cat([self.kc[li], k], 1)
            self.vc[li] = torch.cat([self.vc[li], v], 1)
        K, Vv = self.kc[li], self.vc[li]
        rep = self.nh // self.nkv
        K = K.repeat_interleave(rep, dim=2).transpose(1, 2)  # [B, nh, L, hd]
        Vv = Vv.repeat_interleave(rep, dim=2).transpose(1, 2)
        qh = q.transpose(1, 2)  # [B, nh, T, hd]
        sc = qh @ K.transpose(-1, -2) / math.sqrt(self.hd)
        L = K.shape[2]
        if not self.encoder:
            qpos = torch.arange(self.pos, self.pos + T)[:, None]
            kpos = torch.arange(L)[None, :]
            sc = sc.masked_fill(kpos > qpos, float("-inf"))
        o = torch.softmax(sc, -1) @ Vv  # [B, nh, T, hd]
        o = o.transpose(1, 2).reshape(S, self.nh * self.hd)
        return self.lin(o, self.w[p + "o_proj.weight"])

    def expert(self, x, p):
        h = torch.nn.functional.silu(self.lin(x, self.w[p + "w1.weight"])) * \
            self.lin(x, self.w[p + "w3.weight"])
        return self.lin(h, self.w[p + "w2.weight"])

    def route(self, li, xn):
        logits = self.lin(xn, self.w["model.layers.%d.block_sparse_moe.gate.weight" % li])
        probs = torch.softmax(logits, -1, dtype=torch.float32)
        topv, topi = torch.topk(probs, self.k, -1)
        if self.norm_topk:
            topv = topv / topv.sum(-1, keepdim=True)
        return topv, topi

    def moe(self, li, xn):
        topv, topi = self.route(li, xn)
        p = "model.layers.%d.block_sparse_moe.experts." % li
        S = xn.shape[0]
        if self.gating == "dynamic":
            out = torch.zeros_like(xn)
            for e in range(self.E):
                tok, slot = torch.where(topi == e)
                if tok.numel() == 0:
                    continue
                y = self.expert(xn[tok], p + "%d." % e) * topv[tok, slot, None]
                out.index_add_(0, tok, y)
            return out
        C = int(min(max(1, math.ceil(self.cf * self.k * S / self.E)), S))
        dispatch = torch.zeros(S, self.E, C)
        combine = torch.zeros(S, self.E, C)
        taken = torch.zeros(self.E, dtype=torch.int64)
        dropped = 0
        for j in range(self.k):
            onehot = torch.nn.functional.one_hot(topi[:, j], self.E)  # [S, E]
            loc = torch.cumsum(onehot, 0) - 1 + taken[None, :]
            locs = (loc * onehot).sum(-1)  # [S]
            keep = locs < C
            dropped += int((~keep).sum())
            s_idx = torch.nonzero(keep).flatten()
            dispatch[s_idx, topi[s_idx, j], locs[s_idx]] = 1.0
            combine[s_idx, topi[s_idx, j], locs[s_idx]] = topv[s_idx, j]
            taken += onehot.sum(0)
        self.drops.append(dropped)
        xd = torch.einsum("sec,sm->ecm", dispatch, xn)
        yd = torch.stack([self.expert(xd[e], p + "%d." % e) for e in range(self.E)])
        return torch.einsum("sec,ecm->sm", combine, yd)

    def dense_ffn(self, li, xn):
        p = "model.layers.%d.mlp." % li
        h = torch.nn.functional.silu(self.lin(xn, self.w[p + "gate_proj.weight"])) * \
            self.lin(xn, self.w[p + "up_proj.weight"])
        return self.lin(h, self.w[p + "down_proj.weight"])

    @torch.no_grad()
    def forward(self, tokens, logits_all=True):
        """tokens: int64 [B, T] -> logits [B, T, V] (or [B, V] for the last position)."""
        B, T = tokens.shape
        if self.encoder:
            self.reset()
        x = self.w["model.embed_tokens.weight"][tokens.reshape(-1)]
        for li in range(self.cfg["num_hidden_layers"]):
            p = "model.layers.%d." % li
            x = x + self.attention(li, self.rms(x, self.w[p + "input_layernorm.weight"]), B, T)
            xn = self.rms(x, self.w[p + "post_attention_layernorm.weight"])
            if self.E > 0 and (li + 1) % self.every == 0:
                x = x + self.moe(li, xn)
            else:
                x = x + self.dense_ffn(li, xn)
        self.pos += T
        x = x.view(B, T, self.H)
        if not logits_all:
            x = x[:, -1:, :]
        x = self.rms(x, self.w["model.norm.weight"])
        out = x.reshape(-1, self.H) @ self.lm_head.t()
        return out.view(B, -1, self.lm_head.shape[0])
