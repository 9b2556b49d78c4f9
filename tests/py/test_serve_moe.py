"""test_serve_moe.py: `spine serve` with an MoE model, end to end over real HTTP on loopback.

Generates moe-tiny folders with `spine moe gen`, serves one next to a DLRM, and checks: model
metadata and config, next-token logits and greedy generated ids equal to `spine moe run` on the
same prompts, concurrent requests each answered with their own results, the bad-request corpus
(4xx with a JSON error, the server still serving), the MoE counters in /metrics, and a reload.

usage: test_serve_moe.py SPINE_BINARY WORKDIR
"""
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from spine_export import st_read  # noqa: E402
from serve_util import free_port, start_serve  # noqa: E402

SPINE, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


moe = os.path.join(WORK, "moe")
dlrm = os.path.join(WORK, "tiny")
subprocess.run([SPINE, "moe", "gen", "--preset", "moe-tiny", "--seed", "4", "-o", moe],
               check=True, capture_output=True)
subprocess.run([SPINE, "model", "gen", "--preset", "tiny", "-o", dlrm], check=True,
               capture_output=True)
prompts = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], dtype=np.int64)
tok = os.path.join(WORK, "prompts.txt")
with open(tok, "w") as f:
    for row in prompts.tolist():
        f.write(" ".join(map(str, row)) + "\n")
ref_path = os.path.join(WORK, "ref.safetensors")
subprocess.run([SPINE, "moe", "run", "--model", moe, "--tokens", tok, "--gen", "4",
                "--logits-out", ref_path], check=True, capture_output=True)
ref = st_read(ref_path)

errpath = os.path.join(WORK, "server.stderr")


def serve_or_exit(args, err):
    """start_serve, and stop the test with the server's stderr when it does not come up"""
    srv, port, line = start_serve(SPINE, args, err)
    if "listening" not in line:
        print(open(err).read())
        sys.exit(1)
    return srv, f"http://127.0.0.1:{port}", line


srv, base, _ = serve_or_exit(["--model", moe, "--model", dlrm], errpath)


def infer(ids, max_tokens=None, dtype="INT64", extra=None):
    body = {"id": "t", "inputs": [{"name": "input_ids", "datatype": dtype,
                                   "shape": list(np.shape(ids)), "data": np.asarray(ids).tolist()}]}
    if max_tokens is not None:
        body["parameters"] = {"max_tokens": max_tokens}
    if extra:
        body.update(extra)
    return http("POST", base + "/v2/models/moe/infer", json.dumps(body).encode())


st, body = http("GET", base + "/v2/models/moe")
meta = json.loads(body) if st == 200 else {}
check("metadata", st == 200 and meta.get("platform") == "spine_moe" and
      meta["parameters"]["vocab_size"] == 512, body[:200])
st, body = http("GET", base + "/v2/models/moe/config")
check("config", st == 200 and json.loads(body)["max_batch_size"] == 8, body[:200])
st, body = http("GET", base + "/v2/models/tiny")
check("the DLRM next to it still served", st == 200 and b"spine_dlrm" in body)

st, body = infer(prompts)
out = json.loads(body)["outputs"][0] if st == 200 else {}
want = ref["prefill_logits"][:, -1, :]
# within F32 rounding, not bitwise: the server takes the last positions' logits alone (2 rows,
# the AVX-512 kernel) where the CLI writes every position's (10 rows: on AMX where the CPU has
# it, summed in another order); a wrong token or position is off by far more
TOL = 1e-5 * max(1.0, float(np.abs(want).max()))
got = np.array(out.get("data", []), dtype=np.float64).reshape(out.get("shape", [0]))
check("logits equal spine moe run", st == 200 and out["name"] == "logits" and
      got.shape == want.shape and np.abs(got - want).max() <= TOL,
      body[:200] if st != 200 else np.abs(got - want).max())
st, body = infer(prompts.astype(np.int32), max_tokens=4, dtype="INT32")
out = json.loads(body)["outputs"][0] if st == 200 else {}
check("generated ids equal spine moe run (INT32 input)", st == 200 and
      np.array_equal(np.array(out["data"]).reshape(2, 4), ref["generated"]), body[:300])

# concurrency: each caller gets the answer to its own prompt
answers = {}


def worker(i):
    p = np.array([[i % 500, (i * 7) % 500, 3]])
    s, b = infer(p, max_tokens=2)
    answers[i] = (p, s, json.loads(b)["outputs"][0]["data"] if s == 200 else None)


threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
for t in threads:
    t.start()
for t in threads:
    t.join()
serial_ok = True
for i, (p, s, data) in answers.items():
    s2, b2 = infer(p, max_tokens=2)
    serial_ok &= s == 200 and s2 == 200 and json.loads(b2)["outputs"][0]["data"] == data
check("12 concurrent requests, each with its own answer", len(answers) == 12 and serial_ok)

bad = [
    ("malformed JSON", b"{\"inputs\": [", 400),
    ("unknown input", json.dumps({"inputs": [{"name": "tokens", "datatype": "INT64",
                                              "shape": [1, 1], "data": [1]}]}).encode(), 400),
    ("FP32 ids", json.dumps({"inputs": [{"name": "input_ids", "datatype": "FP32",
                                         "shape": [1, 1], "data": [1.0]}]}).encode(), 400),
    ("shape and data disagree", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                                        "shape": [2, 3], "data": [1, 2]}]}).encode(), 400),
    ("id outside the vocabulary", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                                          "shape": [1, 2], "data": [1, 512]}]}).encode(), 400),
    ("negative id", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                            "shape": [1, 1], "data": [-1]}]}).encode(), 400),
    ("too many sequences", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                                   "shape": [9, 1], "data": [1] * 9}]}).encode(), 413),
    ("too long", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                         "shape": [1, 510], "data": [1] * 510}],
                             "parameters": {"max_tokens": 5}}).encode(), 413),
    ("max_tokens too large", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                                     "shape": [1, 1], "data": [1]}],
                                         "parameters": {"max_tokens": 100000}}).encode(), 413),
    ("no inputs", b"{}", 400),
]
for name, b, code in bad:
    st, body = http("POST", base + "/v2/models/moe/infer", b)
    ok = st == code
    try:
        ok = ok and "error" in json.loads(body)
    except ValueError:
        ok = False
    check("bad request: " + name, ok, f"{st} {body[:200]}")
st, body = http("POST", base + "/v2/models/moe/infer", b"{}",
                {"Inference-Header-Content-Length": "2"})
check("bad request: binary tensors refused", st == 400 and b"JSON" in body, body[:200])
st, body = infer(prompts)
check("still serving after the bad requests", st == 200)

st, body = http("GET", base + "/metrics")
text = body.decode()
n_ok = 1 + 1 + 12 + 12 + 1
check("metrics count MoE requests and tokens",
      f'spine_moe_requests_total{{model="moe"}} {n_ok}' in text and
      "spine_moe_generated_tokens_total" in text and "spine_moe_expert_hits_total" in text,
      [l for l in text.splitlines() if "moe" in l])
st, _ = http("POST", base + "/v2/repository/models/moe/load", b"")
st2, body = infer(prompts)
check("reload, then the same answers", st == 200 and st2 == 200 and
      np.abs(np.array(json.loads(body)["outputs"][0]["data"]).reshape(2, -1) - want).max() <= TOL)
srv.send_signal(signal.SIGTERM)
check("drains and exits 0", srv.wait(60) == 0)

# the same model with prefetch and a placement on 2 worker groups, then with expert buffering
trace = os.path.join(WORK, "run.trace")
subprocess.run([SPINE, "moe", "run", "--model", moe, "--random", "8", "--batch", "2", "--gen", "4",
                "--trace-out", trace], check=True, capture_output=True)
place = os.path.join(WORK, "place.txt")
subprocess.run([SPINE, "moe", "place", "--trace", trace, "--groups", "2", "--policy", "greedy",
                "-o", place], check=True, capture_output=True)
srv, base, line = serve_or_exit(["--model", moe, "--expert-prefetch", "--expert-placement", place],
                               errpath + "2")
st, body = infer(prompts)
got = np.array(json.loads(body)["outputs"][0]["data"]).reshape(2, -1) if st == 200 else None
check("placement on 2 groups: the same logits", "listening" in line and st == 200 and
      np.abs(got - want).max() <= TOL, open(errpath + "2").read()[-500:] + str(body[:200]))
st, body = http("GET", base + "/metrics")
text = body.decode()
check("metrics: per-group rows and prefetch precision",
      'spine_moe_group_rows_total{model="moe",group="1"}' in text and
      "spine_moe_prefetch_precision" in text, [l for l in text.splitlines() if "moe" in l])
srv.send_signal(signal.SIGTERM)
srv.wait(60)
srv, base, line = serve_or_exit(["--model", moe, "--expert-slots", "3", "--expert-prefetch"],
                               errpath + "3")
st, body = infer(prompts, max_tokens=4)
check("expert tier: the same generated ids", "listening" in line and st == 200 and
      np.array_equal(np.array(json.loads(body)["outputs"][0]["data"]).reshape(2, 4),
                     ref["generated"]), body[:200])
st, body = http("GET", base + "/metrics")
hits = [l for l in body.decode().splitlines() if l.startswith("spine_moe_expert_misses_total")]
check("metrics: expert-tier misses counted", hits and int(hits[0].split()[-1]) > 0, hits)
srv.send_signal(signal.SIGTERM)
check("drains and exits 0 (tiered)", srv.wait(60) == 0)
# --expert-budget: as slots (moe-tiny: 73,728 B an expert, 2 MoE layers: 300K = 2 slots)
srv, port, line = start_serve(SPINE, ["--model", moe, "--expert-budget", "300K"], errpath + "4")
base = f"http://127.0.0.1:{port}"
st, body = infer(prompts, max_tokens=4) if "listening" in line else (0, b"")
st2, mbody = http("GET", base + "/metrics") if st else (0, b"")
slots = [l for l in mbody.decode().splitlines() if l.startswith("spine_moe_expert_slots")]
check("expert budget: the same generated ids, 2 slots", st == 200 and
      np.array_equal(np.array(json.loads(body)["outputs"][0]["data"]).reshape(2, 4),
                     ref["generated"]) and slots and slots[0].split()[-1] == "2", (body[:200], slots))
srv.send_signal(signal.SIGTERM)
srv.wait(60)
out = subprocess.run([SPINE, "serve", "--port", str(free_port()), "--model", moe, "--expert-budget", "1K"],
                     capture_output=True, text=True, timeout=60)
check("expert budget below one expert per layer: a clear error at start",
      out.returncode != 0 and "less than one expert per MoE layer" in out.stderr, out.stderr[-300:])
print(f"{sum(results)} of {len(results)} checks passed")
sys.exit(0 if all(results) else 1)
