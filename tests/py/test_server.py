"""test_server.py: `spine serve` end to end over real HTTP on loopback.

Starts the server on a free port with generated models, then checks: endpoints, results equal
to `spine infer` on the same inputs (JSON and binary encodings), batching under concurrency
with results routed to the right caller, large requests split, the bad-request corpus while
good requests keep succeeding, limits (body, header, idle connections), reload with no failed
request (endpoint and SIGHUP), overload answered with 503, drain on SIGTERM with no lost
request. Every request loop is bounded in count and time.

usage: test_server.py SPINE_BINARY WORKDIR
"""
import http.client as httpclient
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from spine_export import write_batch  # noqa: E402
from serve_util import start_serve  # noqa: E402

SPINE, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
for f in os.listdir(WORK):  # server logs of an earlier run would mislead
    if f.startswith("server-"):
        os.remove(os.path.join(WORK, f))
rng = np.random.default_rng(7)
results = []


SERVERS = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)
    if not ok:
        for sv in SERVERS:  # what the server said, for the failure's reader
            tail = open(sv.errpath).read()[-3000:]
            if tail.strip():
                print(f"--- {sv.errpath}:\n{tail}", flush=True)


class Server:
    def __init__(self, *args):
        self.errpath = os.path.join(WORK, f"server-{len(SERVERS)}.stderr")
        self.p, self.port, line = start_serve(SPINE, args, self.errpath)
        SERVERS.append(self)
        if "listening" not in line:
            raise RuntimeError("server did not start: " + line + open(self.errpath).read())

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -999


def http(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def make_batch(cfg, B, max_len=4):
    T, nd = len(cfg["tables"]), cfg["num_dense_features"]
    lengths = rng.integers(0, max_len + 1, size=(T, B)).astype(np.int32)
    values = np.concatenate([rng.integers(0, cfg["tables"][t]["rows"], size=int(lengths[t].sum()))
                             for t in range(T)]).astype(np.int64)
    dense = rng.random((B, nd), dtype=np.float32)
    return dense, lengths, values


def json_body(dense, lengths, values, rid="", binary_out=False):
    b = {"id": rid, "inputs": [
        {"name": "dense", "datatype": "FP32", "shape": list(dense.shape), "data": dense.ravel().tolist()},
        {"name": "lengths", "datatype": "INT32", "shape": list(lengths.shape), "data": lengths.tolist()},
        {"name": "values", "datatype": "INT64", "shape": [int(values.size)], "data": values.tolist()}]}
    if binary_out:
        b["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    return json.dumps(b).encode()


def binary_body(dense, lengths, values, vtype="INT64"):
    parts = [dense.astype(np.float32).tobytes(), lengths.astype(np.int32).tobytes(),
             values.astype(np.int64 if vtype == "INT64" else np.int32).tobytes()]
    hdr = {"inputs": [
        {"name": "dense", "datatype": "FP32", "shape": list(dense.shape),
         "parameters": {"binary_data_size": len(parts[0])}},
        {"name": "lengths", "datatype": "INT32", "shape": list(lengths.shape),
         "parameters": {"binary_data_size": len(parts[1])}},
        {"name": "values", "datatype": vtype, "shape": [int(values.size)],
         "parameters": {"binary_data_size": len(parts[2])}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
    h = json.dumps(hdr).encode()
    return h + b"".join(parts), len(h)


def probs_of(status, headers, data):
    if status != 200:
        return None
    n = headers.get("Inference-Header-Content-Length")
    if n:
        return np.frombuffer(data[int(n):], dtype=np.float32).astype(np.float64)
    return np.array(json.loads(data)["outputs"][0]["data"], dtype=np.float64)


def expected(folder, dense, lengths, values, name):
    path = os.path.join(WORK, name + ".safetensors")
    write_batch(path, dense, lengths, values)
    out = subprocess.run([SPINE, "infer", "--model", folder, "--input", path], check=True,
                         capture_output=True, text=True).stdout
    return np.array([float(x) for x in out.split()])


# ---- models: tiny (fast, Criteo-shaped) ----
tiny = os.path.join(WORK, "tiny")
subprocess.run([SPINE, "model", "gen", "--preset", "tiny", "-o", tiny], check=True,
               capture_output=True)
cfg = json.load(open(os.path.join(tiny, "config.json")))
infer_url = "/v2/models/tiny/infer"

srv = Server("--model", tiny, "--max-batch", "64", "--max-delay-us", "2000", "--sla-ms", "5000",
             "--max-body-mb", "1", "--idle-timeout-s", "5")
try:
    st, _, body = http("GET", srv.url("/v2"))
    check("GET /v2", st == 200 and json.loads(body)["name"] == "spine", body)
    check("live", http("GET", srv.url("/v2/health/live"))[0] == 200)
    check("ready", http("GET", srv.url("/v2/health/ready"))[0] == 200)
    st, _, body = http("GET", srv.url("/v2/models/tiny"))
    meta = json.loads(body) if st == 200 else {}
    check("model metadata", st == 200 and meta.get("inputs", [{}])[1].get("shape") == [26, -1], body)
    check("model ready", http("GET", srv.url("/v2/models/tiny/ready"))[0] == 200)
    st, _, body = http("GET", srv.url("/v2/models/tiny/config"))
    check("model config", st == 200 and json.loads(body)["max_batch_size"] == 0 and
          "dynamic_batching" in json.loads(body), body)
    st, _, body = http("POST", srv.url("/v2/repository/index"), b"")
    check("repository index", st == 200 and json.loads(body)[0]["name"] == "tiny", body)
    check("unknown model 404", http("GET", srv.url("/v2/models/nope"))[0] == 404)

    # results identical to spine infer, JSON and binary
    dense, lengths, values = make_batch(cfg, 37)
    want = expected(tiny, dense, lengths, values, "b37")
    got = probs_of(*http("POST", srv.url(infer_url), json_body(dense, lengths, values, "x")))
    check("JSON infer equals spine infer", got is not None and np.array_equal(got, want),
          None if got is None else np.max(np.abs(got - want)))
    st, hd, data = http("POST", srv.url(infer_url), json_body(dense, lengths, values, binary_out=True))
    got = probs_of(st, hd, data)
    check("JSON in, binary out", got is not None and np.max(np.abs(got - want)) < 1e-6)
    body, hl = binary_body(dense, lengths, values)
    st, hd, data = http("POST", srv.url(infer_url), body,
                        {"Inference-Header-Content-Length": str(hl),
                         "Content-Type": "application/octet-stream"})
    got = probs_of(st, hd, data)
    check("binary infer equals spine infer", got is not None and np.max(np.abs(got - want)) < 1e-6,
          (st, data[:200]))
    # INT32 indices (what spine load sends): widened and range-checked in one pass
    body, hl = binary_body(dense, lengths, values, "INT32")
    got = probs_of(*http("POST", srv.url(infer_url), body, {"Inference-Header-Content-Length": str(hl)}))
    check("binary INT32 infer equals spine infer", got is not None and np.max(np.abs(got - want)) < 1e-6)
    last = values.size - 1
    for name, k, bad in (("negative", 0, -1), ("too large", last, 2**31 - 1)):
        body, hl = binary_body(dense, lengths, np.where(np.arange(values.size) == k, bad, values), "INT32")
        st, _, data = http("POST", srv.url(infer_url), body, {"Inference-Header-Content-Length": str(hl)})
        msg = json.loads(data).get("error", "") if st == 400 else ""
        check(f"binary INT32 index {name}: 400 naming it", f"index {bad} at values[{k}] is outside" in msg,
              (st, data[:200]))
    # a request larger than max-batch is split and reassembled in order
    dense, lengths, values = make_batch(cfg, 300)
    want = expected(tiny, dense, lengths, values, "b300")
    body, hl = binary_body(dense, lengths, values)
    got = probs_of(*http("POST", srv.url(infer_url), body, {"Inference-Header-Content-Length": str(hl)}))
    check("large request split across batches", got is not None and np.max(np.abs(got - want)) < 1e-6)

    # concurrency: many clients, each gets its own answers
    jobs = []
    for i in range(48):
        d, l, v = make_batch(cfg, 1 + i % 9)
        jobs.append((d, l, v))
    wants = []
    for i, (d, l, v) in enumerate(jobs):  # one spine infer per distinct job, up front
        wants.append(expected(tiny, d, l, v, f"c{i}"))
    got = [None] * len(jobs)

    def client(k):
        for i in range(k, len(jobs), 12):
            d, l, v = jobs[i]
            got[i] = probs_of(*http("POST", srv.url(infer_url), json_body(d, l, v, f"id{i}")))
    th = [threading.Thread(target=client, args=(k,)) for k in range(12)]
    [t.start() for t in th]
    [t.join(60) for t in th]
    ok = all(g is not None and np.max(np.abs(g - w)) < 1e-6 for g, w in zip(got, wants))
    check("48 concurrent requests routed to their callers", ok)
    m = http("GET", srv.url("/metrics"))[2].decode()
    bcount = [l for l in m.splitlines() if l.startswith("spine_batches_total")]
    rcount = [l for l in m.splitlines() if l.startswith("spine_requests_total")]
    check("metrics count requests and batches", bcount and rcount and
          int(bcount[0].split()[1]) <= int(rcount[0].split()[1]), (bcount, rcount))
    check("metrics histograms with SLA bucket",
          'spine_request_duration_seconds_bucket{le="5"}' in m and "spine_batch_size_bucket" in m)
    st = json.loads(http("GET", srv.url("/v2/spine/stats"))[2])
    sent = sum(1 + i % 9 for i in range(48))
    check("stats: a live samples/s the server measures over its last rate_s seconds",
          st["samples_per_s"] > 0 and st["rate_s"] == 3 and
          st["samples_per_s"] * min(st["rate_s"], st["time"]) <= st["inferences"] * 1.01 and st["inferences"] >= sent, st)

    # the bad-request corpus, while good requests keep succeeding
    d, l, v = make_batch(cfg, 4)
    good_body = json_body(d, l, v)
    good_want = expected(tiny, d, l, v, "good")
    bad_cases = {
        "not json": b"{nope",
        "truncated json": good_body[: len(good_body) // 2],
        "array root": b"[]",
        "no inputs": b"{}",
        "unknown input": json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}).encode(),
        "wrong dtype": good_body.replace(b'"datatype": "FP32"', b'"datatype": "FP16"', 1),
        "wrong dense width": good_body.replace(b'"shape": [4, 13]', b'"shape": [4, 12]', 1),
        "lengths sum mismatch": good_body.replace(b'"shape": [%d]' % v.size, b'"shape": [%d]' % (v.size + 1), 1),
        "index out of range": json_body(d, l, np.where(np.arange(v.size) == 0, 10**9, v)),
        "negative index": json_body(d, l, np.where(np.arange(v.size) == 0, -1, v)),
        "negative length": json_body(d, np.where(l == l.max(), -1, l).astype(np.int32), v),
        "float index": json.dumps({"inputs": [
            {"name": "dense", "datatype": "FP32", "shape": [4, 13], "data": d.ravel().tolist()},
            {"name": "lengths", "datatype": "INT32", "shape": [26, 4], "data": l.tolist()},
            {"name": "values", "datatype": "INT64", "shape": [int(v.size)],
             "data": [1.5] + v.tolist()[1:]}]}).encode(),
        "deep nesting": b"[" * 10000 + b"]" * 10000,
        "bad binary header length": None,
        "huge shape": json.dumps({"inputs": [{"name": "dense", "datatype": "FP32", "shape": [2**31, 2**31], "data": []}]}).encode(),
    }
    statuses = {}
    for name, b in bad_cases.items():
        if b is None:
            st = http("POST", srv.url(infer_url), good_body, {"Inference-Header-Content-Length": "999999"})[0]
        else:
            st, _, resp = http("POST", srv.url(infer_url), b)
            if st >= 400:
                try:
                    json.loads(resp)["error"]
                except Exception:
                    st = -st  # not a JSON error body
        statuses[name] = st
        g = probs_of(*http("POST", srv.url(infer_url), good_body))
        if g is None or np.max(np.abs(g - good_want)) > 1e-6:
            statuses[name + " (good after)"] = "failed"
    ok = all(isinstance(s, int) and 400 <= s < 500 for s in statuses.values())
    check(f"{len(bad_cases)} bad requests get a 4xx JSON error; good ones keep succeeding", ok, statuses)
    check("GET on infer is 405", http("GET", srv.url(infer_url))[0] == 405)

    # limits
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST " + infer_url.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
    s.settimeout(10)
    resp = s.recv(200)
    s.close()
    check("body over --max-body-mb is refused 413 before it is read", resp.startswith(b"HTTP/1.1 413"), resp[:40])
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (600 << 10) + b"\r\n\r\n")
    s.settimeout(10)
    try:
        resp = s.recv(100)
    except Exception as e:
        resp = str(e).encode()
    s.close()
    check("oversized header refused", resp.startswith(b"HTTP/1.1 4") or resp == b"", resp[:40])
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle = []
    for _ in range(1000):
        idle.append(socket.create_connection(("127.0.0.1", srv.port)))
    g = probs_of(*http("POST", srv.url(infer_url), good_body))
    check("1,000 idle connections do not stop serving", g is not None)
    time.sleep(6)  # beyond --idle-timeout-s 5: the server closes them
    closed = 0
    for c in idle:
        c.settimeout(2)
        try:
            closed += c.recv(1) == b""
        except Exception:
            pass
        c.close()
    check("idle connections are closed after the idle timeout", closed >= 990, closed)

    # reload under load: no failed request
    stop = threading.Event()
    fails = []

    def hammer():
        while not stop.is_set():
            st = http("POST", srv.url(infer_url), good_body)[0]
            if st != 200:
                fails.append(st)
    th = [threading.Thread(target=hammer) for _ in range(4)]
    [t.start() for t in th]
    time.sleep(0.3)
    st1 = http("POST", srv.url("/v2/repository/models/tiny/load"), b"")[0]
    time.sleep(0.3)
    srv.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    stop.set()
    [t.join(30) for t in th]
    gen = [l for l in http("GET", srv.url("/metrics"))[2].decode().splitlines()
           if l.startswith("spine_model_generation")]
    check("reload (endpoint and SIGHUP) under load: no failed request", st1 == 200 and not fails and
          gen and gen[0].endswith(" 3"), (st1, fails[:5], gen))
finally:
    rc = srv.stop()
check("SIGTERM on an idle server exits 0", rc == 0, rc)

# overload: a tiny SLA and queue answer with fast 503s, nothing hangs
srv = Server("--model", tiny, "--sla-ms", "1", "--max-queue", "2", "--max-batch", "8",
             "--threads", "1")
try:
    d, l, v = make_batch(cfg, 200, max_len=8)
    body, hl = binary_body(d, l, v)
    codes = []
    lock = threading.Lock()

    def burst():
        for _ in range(10):
            t0 = time.time()
            st = http("POST", srv.url(infer_url), body, {"Inference-Header-Content-Length": str(hl)})[0]
            with lock:
                codes.append((st, time.time() - t0))
    th = [threading.Thread(target=burst) for _ in range(8)]
    [t.start() for t in th]
    [t.join(60) for t in th]
    sts = [c for c, _ in codes]
    check("overload answers every request (200 or 503), quickly",
          len(codes) == 80 and set(sts) <= {200, 503} and 503 in sts and
          max(t for _, t in codes) < 5, (sorted(set(sts)), max(t for _, t in codes)))
    m = http("GET", srv.url("/metrics"))[2].decode()
    check("refusals counted by reason", 'spine_request_failures_total{reason="deadline"}' in m or
          'spine_request_failures_total{reason="overload"}' in m)
finally:
    srv.stop()

# the batching window: a request waits for companions only while one of the usual size could
# still join it (200-sample requests under --max-batch 256 never wait the 300 ms); small
# requests still wait and merge
srv = Server("--model", tiny, "--threads", "1", "--max-batch", "256", "--max-delay-us", "300000", "--sla-ms", "5000",
             "--inline-max", "0")
try:
    d, l, v = make_batch(cfg, 200, max_len=4)
    body, hl = binary_body(d, l, v, "INT32")
    hb = {"Inference-Header-Content-Length": str(hl)}
    t0 = time.time()
    sts = [http("POST", srv.url(infer_url), body, hb)[0] for _ in range(3)]
    big = time.time() - t0
    def batches():
        m = http("GET", srv.url("/metrics"))[2].decode()
        return int([x for x in m.splitlines() if x.startswith("spine_batches_total")][0].split()[1])
    b0 = batches()
    small = [make_batch(cfg, 4, max_len=4) for _ in range(8)]
    codes = []
    def send(k):
        sb, shl = binary_body(*small[k], "INT32")
        codes.append(http("POST", srv.url(infer_url), sb, {"Inference-Header-Content-Length": str(shl)})[0])
    th = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    t1 = time.time()
    [t.start() for t in th]
    [t.join(30) for t in th]
    waited = time.time() - t1
    nb = batches() - b0
    check("batching window: large requests do not wait for companions that cannot fit; small ones merge",
          sts == [200] * 3 and big < 0.6 and codes == [200] * 8 and nb < 8 and waited >= 0.25,
          (sts, round(big, 3), codes, nb, round(waited, 3)))
finally:
    srv.stop()

# a request that cannot meet its deadline is refused before its indices are decoded: with a
# deadline of 1 us (no batch of 200 samples runs that fast) even an out-of-range index gets the
# 503, not the 400 a full decode would give; shapes are still checked first
srv = Server("--model", tiny, "--threads", "1")
try:
    d, l, v = make_batch(cfg, 200, max_len=8)
    body, hl = binary_body(d, l, v, "INT32")
    hb = {"Inference-Header-Content-Length": str(hl)}
    st0 = http("POST", srv.url(infer_url), body, hb)[0]  # the server learns its rate
    tight = dict(hb, **{"X-Spine-Deadline-Ms": "0.001"})
    st1, _, r1 = http("POST", srv.url(infer_url), body, tight)
    bad, bhl = binary_body(d, l, np.where(np.arange(v.size) == 0, 10**9, v), "INT32")
    st2, _, r2 = http("POST", srv.url(infer_url), bad, dict(tight, **{"Inference-Header-Content-Length": str(bhl)}))
    st3 = http("POST", srv.url(infer_url), bad, {"Inference-Header-Content-Length": str(bhl)})[0]
    wrong, whl = binary_body(d[:, :1], l, v, "INT32")
    st4 = http("POST", srv.url(infer_url), wrong, dict(tight, **{"Inference-Header-Content-Length": str(whl)}))[0]
    check("a deadline out of reach is refused before the indices are decoded (503, not 400)",
          st0 == 200 and st1 == 503 and st2 == 503 and b"cannot meet the deadline" in r2 and
          st3 == 400 and st4 == 400, (st0, st1, st2, r2[:80], st3, st4))
finally:
    srv.stop()

# the work ahead includes what a busy worker has left of its batch, and a worker drops a part
# whose batch would end past its deadline instead of answering it late. A compute-heavy model
# (rmc3's 2560 x 1024 bottom layer: ~10 KB of request per 6 MFLOP) keeps the one worker busy
# with a big request for c seconds (the server's own compute histogram, the faster of two runs;
# the request grown until c >= 0.5 s); the moment its batch starts is read from the queue-time histogram's count.
heavy = os.path.join(WORK, "rmc3")
subprocess.run([SPINE, "model", "gen", "--preset", "rmc3", "--rows-scale", "0.001", "-o", heavy],
               check=True, capture_output=True)
hcfg = json.load(open(os.path.join(heavy, "config.json")))
heavy_url = "/v2/models/rmc3/infer"


def heavy_request(B):
    d, l, v = make_batch(hcfg, B, max_len=20)
    body, hl = binary_body(d, l, v, "INT32")
    return body, {"Inference-Header-Content-Length": str(hl)}


def metric(name):
    m = http("GET", srv.url("/metrics"))[2].decode()
    return float([x for x in m.splitlines() if x.startswith(name + " ")][0].split()[1])


def start_busy(body, hb):
    """send the big request in the background; return when its batch has started (and when)"""
    box = {}
    def go():
        box["st"] = http("POST", srv.url(heavy_url), body, hb, timeout=120)[0]
    started = metric("spine_queue_duration_seconds_count")
    th = threading.Thread(target=go)
    th.start()
    t_end = time.time() + 60
    while metric("spine_queue_duration_seconds_count") == started and time.time() < t_end:
        time.sleep(0.003)
    return th, box, time.time()


busy = ("--model", heavy, "--threads", "1", "--max-batch", "65536", "--inline-max", "0",
        "--max-body-mb", "256", "--sla-ms", "60000", "--max-delay-us", "0")
srv = Server(*busy)
try:
    n = 500
    while True:
        body, hb = heavy_request(n)
        c0 = metric("spine_compute_duration_seconds_sum")
        st0 = http("POST", srv.url(heavy_url), body, hb, timeout=120)[0]
        c = metric("spine_compute_duration_seconds_sum") - c0
        if c >= 0.5 or n >= 16384 or st0 != 200:
            break
        n = min(16384, int(n * 0.6 / max(c, 0.01)) + 1)
    c0 = metric("spine_compute_duration_seconds_sum")  # once more: c is the faster of two
    http("POST", srv.url(heavy_url), body, hb, timeout=120)
    c = min(c, metric("spine_compute_duration_seconds_sum") - c0)
    th, box, t_start = start_busy(body, hb)
    time.sleep(max(0.0, t_start + 0.3 * c - time.time()))  # about 0.7 c left of the big batch
    small, shl = binary_body(*make_batch(hcfg, 1), "INT32")
    st1, _, r1 = http("POST", srv.url(heavy_url), small,
                      {"Inference-Header-Content-Length": str(shl),
                       "X-Spine-Deadline-Ms": str(round(300 * c, 1))})
    th.join(120)
    check("admission counts what a busy worker has left: a request due before it ends is refused at once",
          st0 == 200 and st1 == 503 and b"work ahead" in r1 and box.get("st") == 200,
          (n, round(c, 3), st0, st1, r1[:100], box.get("st")))
finally:
    srv.stop()

# A fresh server has measured no rate, so it admits anything. A second request as big as the
# first, sent as the first one's batch starts (at s; it ends near s + c1), due at s + 1.25 c: when
# the worker takes it, it is still due, but its batch would end near s + 2 c1, so the worker
# refuses it. (Should the first batch run past s + 1.25 c on a loaded machine, the refusal comes
# as "deadline passed while queued": still a 503, never the late 200 the old server gave.) The
# margin holds while c1 > 0.63 c: with the deadline at s + 1.5 c, a first batch 25% faster than
# c (the faster of two runs on another server) was once admitted (a 200: its prediction, from
# that first batch, ended before the deadline).
srv = Server(*busy)
try:
    th, box, t_start = start_busy(body, hb)
    time.sleep(max(0.0, t_start + 0.1 * c - time.time()))
    due = round((t_start + 1.25 * c - time.time()) * 1e3, 1)
    st2, _, r2 = http("POST", srv.url(heavy_url), body, dict(hb, **{"X-Spine-Deadline-Ms": str(due)}),
                      timeout=120)
    th.join(120)
    check("a worker refuses a part whose batch would end past its deadline instead of answering it late",
          st2 == 503 and b"deadline" in r2 and box.get("st") == 200,
          (st2, r2[:100], box.get("st"), round(c, 3), due))
finally:
    srv.stop()

# drain: requests in flight when SIGTERM arrives are all answered
srv = Server("--model", tiny, "--max-delay-us", "20000", "--max-batch", "1024", "--sla-ms", "60000",
             "--threads", "1")
d, l, v = make_batch(cfg, 500, max_len=8)
body, hl = binary_body(d, l, v)
want = expected(tiny, d, l, v, "drain")
answers = []


def one():
    c = httpclient.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        c.request("POST", infer_url, body, {"Inference-Header-Content-Length": str(hl)})
        r = c.getresponse()
        answers.append(probs_of(r.status, dict(r.headers), r.read()))
    except Exception as e:
        answers.append(e)
th = [threading.Thread(target=one) for _ in range(16)]
[t.start() for t in th]
time.sleep(0.05)
rc = srv.stop()
[t.join(60) for t in th]
served = [a for a in answers if isinstance(a, np.ndarray)]
check("drain: every accepted request answered, exit 0", rc == 0 and len(answers) == 16 and
      all(np.max(np.abs(a - want)) < 1e-6 for a in served) and
      all(isinstance(a, np.ndarray) or a is None for a in answers),
      (rc, [type(a).__name__ for a in answers]))

# refusals count against the latency-bounded rate however fast they come: a server that refuses
# everything (a 10 us SLA, 200-sample queries) answers in well under the load generator's 500 ms, and has none
srv = Server("--model", tiny, "--sla-ms", "0.01")
try:
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--qps", "20", "--duration", "0.3", "--sizes", "fixed:200", "--find-max",
                          "--sla-ms", "500", "--json"], capture_output=True, text=True, timeout=120).stdout
    lines = [json.loads(x) for x in out.strip().splitlines()] if out.strip() else [{}]
    check("spine load --find-max: fast refusals are not within the SLA",
          lines[-1].get("max_qps") == 0 and lines[0].get("refused_503", 0) > 0 and
          lines[0].get("p95_ms", 1e9) < 500, out[-400:])
finally:
    srv.stop()

# the load generator against a live server: an open-loop run and a short --find-max
srv = Server("--model", tiny, "--sla-ms", "50")
try:
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--qps", "50", "--duration", "1", "--sizes", "fixed:4", "--json"],
                         capture_output=True, text=True, timeout=60).stdout
    r = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    check("spine load: open-loop run answered", r.get("ok", 0) > 20 and r.get("errors") == 0 and
          r.get("p95_ms", 1e9) < 1000, out[-300:])
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--qps", "20", "--duration", "0.5", "--sizes", "normal:8:2", "--find-max",
                          "--sla-ms", "500", "--json"], capture_output=True, text=True, timeout=120).stdout
    last = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    check("spine load --find-max reports a latency-bounded rate",
          last.get("bench") == "load-max" and last.get("max_qps", 0) >= 20, out[-300:])
    # each window counts the requests served (200) within the SLA; the rate found is the highest
    # window at which at least 95% of those sent were
    wins = [json.loads(x) for x in out.strip().splitlines()[:-1]]
    passing = [w["offered_qps"] for w in wins if w["within_sla"] >= 0.95 * w["sent"] and w["sent"]]
    check("spine load --find-max: the highest window with 95% served within the SLA",
          wins and all(w["within_sla"] <= w["ok"] and
                       abs(w["within_sla_frac"] - w["within_sla"] / max(1, w["sent"])) < 1e-3
                       for w in wins) and
          passing and abs(last.get("max_qps", -1) - max(passing)) < 0.01, out[-600:])
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--concurrency", "2", "--duration", "0.5", "--sizes", "fixed:1", "--json"],
                         capture_output=True, text=True, timeout=60).stdout
    r = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    # a closed loop sends only when answered: every request done, none in flight at the end
    check("spine load --concurrency: closed loop, every request answered",
          r.get("concurrency") == 2 and r.get("ok", 0) > 20 and r.get("ok") == r.get("sent") and
          r.get("offered_qps") == 0 and 0 < r.get("p50_ms", 0) < 100, out[-300:])
    # --get: the HTTP round trip alone (GET, no inference), the floor under the batch-1 overhead
    inf0 = json.loads(http("GET", srv.url("/v2/spine/stats"))[2])["inferences"]
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--concurrency", "1", "--duration", "0.5", "--get", "/v2/health/ready",
                          "--json"], capture_output=True, text=True, timeout=60).stdout
    r = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    inf1 = json.loads(http("GET", srv.url("/v2/spine/stats"))[2])["inferences"]
    check("spine load --get: GETs answered 200, no inference run",
          r.get("ok", 0) > 20 and r.get("errors") == 0 and inf1 == inf0, (out[-300:], inf0, inf1))
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--concurrency", "1", "--duration", "0.3", "--get", "/v2/nothing", "--json"],
                         capture_output=True, text=True, timeout=60).stdout
    r = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    check("spine load --get: a 404 path counts as errors", r.get("ok") == 0 and
          r.get("errors", 0) > 0 and r.get("errors") == r.get("sent"), out[-300:])
    # --then-qps: a second rate right after the first, on the same connections, reported apart
    # (with its first second apart too: how fast a server recovers when an overload ends)
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "tiny",
                          "--qps", "40", "--duration", "1", "--then-qps", "10", "--then-duration", "2",
                          "--sizes", "fixed:4", "--json"], capture_output=True, text=True, timeout=60).stdout
    ls = [json.loads(x) for x in out.strip().splitlines()] if out.strip() else []
    p1, p2 = (ls + [{}, {}])[:2]
    check("spine load --then-qps: each phase by its schedule, the second's first second apart",
          len(ls) == 2 and p2.get("phase") == "then" and p1.get("offered_qps") == 40 and
          15 <= p1.get("sent", 0) <= 70 and p1.get("ok") == p1.get("sent") and
          p2.get("offered_qps") == 10 and 6 <= p2.get("sent", 0) <= 40 and
          p2.get("ok") == p2.get("sent") and 1 <= p2.get("first_s_sent", 0) < p2.get("sent", 0) and
          p2.get("first_s_refused_503") == 0 and 0 < p2.get("first_s_p95_ms", 0) <= p2.get("first_s_max_ms", 0),
          out[-400:])
    for bad, why in ((["--then-duration", "3"], "goes with --then-qps"),
                     (["--then-qps", "5", "--find-max"], "second phase"),
                     (["--then-qps", "5", "--concurrency", "2"], "closed loop")):
        out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}"] + bad,
                             capture_output=True, text=True, timeout=30)
        check(f"spine load {' '.join(bad)} is a usage error", out.returncode == 2 and why in out.stderr,
              out.stderr)
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--concurrency", "2",
                          "--qps", "5"], capture_output=True, text=True, timeout=30)
    check("spine load: --concurrency with --qps is a usage error", out.returncode == 2 and
          "closed loop" in out.stderr, out.stderr)
    out = subprocess.run([SPINE, "serve", "--model", tiny, "--port", str(srv.port)],
                         capture_output=True, text=True, timeout=60)
    check("a second server on a port in use fails clearly (no SO_REUSEPORT sharing)",
          out.returncode == 1 and "cannot listen" in out.stderr, out.stderr[-300:])
    out = subprocess.run([SPINE, "load", "--url", f"http://127.0.0.1:{srv.port}", "--model", "nope",
                          "--duration", "0.2"], capture_output=True, text=True, timeout=30)
    check("spine load: unknown model is a clear error", out.returncode == 1 and "404" in out.stderr,
          out.stderr)
finally:
    srv.stop()


# idle poll: one SCHED_IDLE filler per CPU the server may run on, each pinned to its own CPU;
# none with --idle-poll-ms 0 or without the option (off by default)
def task_stat(pid, tid):
    """/proc/PID/task/TID/stat's fields from the third (state) on: field N is at index N - 3."""
    f = open(f"/proc/{pid}/task/{tid}/stat").read()
    return f[f.rindex(")") + 2:].split()


def sched_idle_threads(pid):
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if int(task_stat(pid, tid)[38]) == 5:  # field 41, policy: SCHED_IDLE
                found.append(int(tid))
        except OSError:
            continue
    return found


for poll in ("100", "0", None):  # None: the default, off
    srv = Server("--model", tiny, *(("--idle-poll-ms", poll) if poll else ()))
    try:
        said = srv.p.stdout.readline() if poll == "100" else ""
        code, _, _ = http("GET", srv.url("/v2/health/ready"))
        fillers = sched_idle_threads(srv.p.pid)
        cpus = os.sched_getaffinity(srv.p.pid)
        if poll != "100":
            check(f"--idle-poll-ms {poll or 'not given'}: no filler threads", code == 200 and not fillers,
                  fillers)
        else:
            pinned = sorted(c for t in fillers for c in os.sched_getaffinity(t))
            check("idle poll: one SCHED_IDLE filler pinned to each CPU of the server's",
                  code == 200 and len(fillers) == len(cpus) and pinned == sorted(cpus) and
                  "awake for 100 ms" in said, (fillers, pinned, cpus, said))

            def filler_cpu():  # clock ticks the fillers have run (fields 14-15, utime + stime)
                return sum(int(x) for tid in fillers for x in task_stat(srv.p.pid, tid)[11:13])
            # small requests open no window: the fillers stay asleep (and use no CPU) however
            # many come; a request of >= 32 samples opens one and they spin (they run only where
            # a CPU has nothing else to do: on a busy machine that can take a while)
            c0 = filler_cpu()
            small = json_body(*make_batch(cfg, 1))
            for _ in range(200):
                http("POST", srv.url(infer_url), small)
            time.sleep(0.3)
            c1 = filler_cpu()
            large = json_body(*make_batch(cfg, 64))
            t0 = time.time()
            while filler_cpu() - c1 < 5 and time.time() - t0 < 20:
                http("POST", srv.url(infer_url), large)
                time.sleep(0.05)
            c2 = filler_cpu()
            check("idle poll: no spinning after small requests, spinning after large ones",
                  c1 - c0 <= 1 and c2 - c1 >= 5, (c0, c1, c2))
    finally:
        srv.stop()
out = subprocess.run([SPINE, "serve", "--idle-poll-ms", "-1"], capture_output=True, text=True,
                     timeout=30)
check("--idle-poll-ms -1 is a usage error", out.returncode == 2 and "idle-poll-ms" in out.stderr,
      out.stderr)

npass = sum(results)
print(f"{npass} passed, {len(results) - npass} failed")
sys.exit(0 if npass == len(results) else 1)
