"""crosscheck_moe.py: spine's MoE transformer against the same model in plain PyTorch.

Each case builds a model in PyTorch (tools/moe_reference.py: random weights, Hugging Face
Mixtral names), exports it as a spine MoE folder, runs `spine moe run --tokens FILE
--logits-out OUT`, and compares the logits of every prompt position after the prefill and of
each greedy decode step, the generated ids, and, for static gating, the assignments each layer
dropped. fp32: max |d logits| <= 1e-4 (bf16 weights: the same bound, against PyTorch on the
same bf16 values widened to f32). One case runs the other way: a model made by `spine moe gen`
read into PyTorch.

usage: crosscheck_moe.py SPINE_BINARY WORKDIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from moe_reference import MoERef, export, load, random_weights  # noqa: E402
from spine_export import st_read  # noqa: E402

SPINE, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
torch.manual_seed(0)
TOL = 1e-4
failures = []

TINY = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_act": "silu",
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 8,
    "num_experts_per_tok": 2, "vocab_size": 300, "max_position_embeddings": 256,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    "sliding_window": None, "router_aux_loss_coef": 0.02, "output_router_logits": False,
}


def run_spine(folder, tokens, gen, extra=()):
    tok = os.path.join(folder, "tokens.txt")
    with open(tok, "w") as f:
        f.write("# crosscheck prompts\n")
        for row in tokens.tolist():
            f.write(" ".join(map(str, row)) + "\n")
    out = os.path.join(folder, "out.safetensors")
    cmd = [SPINE, "moe", "run", "--model", folder, "--tokens", tok, "--gen", str(gen),
           "--threads", "2", "--logits-out", out] + list(extra)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return st_read(out)


def case(name, cfg, B=2, T=7, gen=3, dtype="f32", gating="dynamic", cf=1.0, encoder=False,
         shards=1, from_spine=None, router_scale=1.0, expect_drops=False):
    folder = os.path.join(WORK, name)
    if from_spine:
        subprocess.run([SPINE, "moe", "gen", "-o", folder] + from_spine, check=True,
                       capture_output=True)
        cfg, w = load(folder)
    else:
        w = random_weights(cfg, seed=len(name), router_scale=router_scale)
        export(cfg, w, folder, dtype=dtype, shards=shards)
        cfg, w = load(folder)  # the values spine reads (bf16 rounding included)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    extra = ["--gating", gating, "--capacity-factor", str(cf)]
    if encoder:
        extra.append("--encoder")
        gen = 0
    got = run_spine(folder, tokens.numpy(), gen, extra)
    ref = MoERef(cfg, w, gating=gating, capacity_factor=cf, encoder=encoder)
    want = ref.forward(tokens)
    err = float(np.abs(got["prefill_logits"] - want.numpy()).max())
    drops_ref = ref.drops if gating == "static" else []
    msgs = []
    nxt = want[:, -1, :].argmax(-1)
    ids = []
    for s in range(gen):
        ids.append(nxt)
        lw = ref.forward(nxt[:, None])[:, 0, :]
        err = max(err, float(np.abs(got["decode_logits"][s] - lw.numpy()).max()))
        nxt = lw.argmax(-1)
    if gen:
        ref_ids = torch.stack(ids, 1).numpy()
        if not np.array_equal(ref_ids, got["generated"]):
            msgs.append("generated ids differ: spine %s, torch %s" %
                        (got["generated"].tolist(), ref_ids.tolist()))
    if gating == "static":
        moe_layers = [i for i in range(cfg["num_hidden_layers"])
                      if (i + 1) % cfg.get("moe_every", 1) == 0]
        spine_drops = [int(got["prefill_drops"][i]) for i in moe_layers]
        ref_prefill = drops_ref[:len(moe_layers)]
        if spine_drops != ref_prefill:
            msgs.append("dropped assignments per layer: spine %s, torch %s" %
                        (spine_drops, ref_prefill))
        if expect_drops and sum(spine_drops) == 0:
            msgs.append("the case was meant to drop tokens but dropped none")
        msgs_drops = " drops %s" % spine_drops
    else:
        msgs_drops = ""
    ok = err <= TOL and not msgs
    print("%-28s max |d logits| %.2e%s %s" % (name, err, msgs_drops, "ok" if ok else "FAIL"))
    for m in msgs:
        print("    " + m)
    if not ok:
        failures.append(name)


case("dynamic", TINY)
case("dynamic-batch1-long", TINY, B=1, T=40, gen=5)
case("static-cf1-drops", TINY, gating="static", cf=1.0, B=3, T=9, router_scale=4.0,
     expect_drops=True)
case("static-cf0.5-drops", TINY, gating="static", cf=0.5, B=2, T=8, expect_drops=True)
case("static-cf8-nodrops", TINY, gating="static", cf=8.0)
case("top1-no-renorm-tied", dict(TINY, num_experts_per_tok=1, norm_topk_prob=False,
                                 tie_word_embeddings=True))
case("moe-every-2-dense", dict(TINY, num_hidden_layers=4, moe_every=2), gating="static",
     cf=0.75, expect_drops=True)
case("mha-odd-dims", dict(TINY, hidden_size=40, intermediate_size=52, num_attention_heads=5,
                          num_key_value_heads=5, head_dim=6, vocab_size=101))
case("bf16-weights", TINY, dtype="bf16")
case("sharded-3", TINY, shards=3)
case("encoder", TINY, encoder=True, T=11)
case("encoder-static", TINY, encoder=True, gating="static", cf=0.6, T=10, expect_drops=True)
case("from-spine-gen", None, from_spine=["--preset", "moe-tiny", "--moe-every", "2",
                                         "--layers", "3", "--seed", "5"])
case("from-spine-gen-bf16", None, from_spine=["--preset", "moe-tiny", "--dtype", "bf16"])

if failures:
    print("FAILED: " + ", ".join(failures))
    sys.exit(1)
print("all MoE cross-checks passed")
