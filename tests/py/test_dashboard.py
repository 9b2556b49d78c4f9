"""test_dashboard.py: the dashboard page at / rendered by headless Chromium against a live
server under load: the charts must draw series and the numbers must be live (non-zero
requests, a positive throughput). Also saves a screenshot for people to look at.

usage: test_dashboard.py SPINE_BINARY WORKDIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

from serve_util import start_serve

SPINE, WORK = sys.argv[1], sys.argv[2]
os.makedirs(WORK, exist_ok=True)
chrome = shutil.which("chromium") or shutil.which("chromium-browser")
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)[:500]}", flush=True)


if not chrome:
    check("chromium is installed (make test installs Debian's chromium)", False)
    print("0 passed, 1 failed")
    sys.exit(1)

tiny = os.path.join(WORK, "tiny")
subprocess.run([SPINE, "model", "gen", "--preset", "tiny", "-o", tiny], check=True, capture_output=True)
srv, port, _ = start_serve(SPINE, ["--model", tiny], None)
base = f"http://127.0.0.1:{port}"
body = json.dumps({"inputs": [
    {"name": "dense", "datatype": "FP32", "shape": [2, 13], "data": [0.5] * 26},
    {"name": "lengths", "datatype": "INT32", "shape": [26, 2], "data": [[1, 1]] * 26},
    {"name": "values", "datatype": "INT64", "shape": [52], "data": [0] * 52}]}).encode()
stop = threading.Event()


def load():  # bounded: stops with the test, at most 60 s
    t0 = time.time()
    while not stop.is_set() and time.time() - t0 < 60:
        urllib.request.urlopen(urllib.request.Request(base + "/v2/models/tiny/infer", data=body)).read()
        time.sleep(0.005)


th = threading.Thread(target=load)
th.start()
try:
    time.sleep(1.0)
    flags = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--virtual-time-budget=4000", f"--user-data-dir={os.path.join(WORK, 'profile')}"]
    dom = subprocess.run(flags + ["--dump-dom", base + "/"], capture_output=True, text=True,
                         timeout=90).stdout
    shot = os.path.join(WORK, "dashboard.png")
    subprocess.run(flags + ["--window-size=1400,700", f"--screenshot={shot}", base + "/"],
                   capture_output=True, timeout=90)
    ticks = re.search(r'data-ticks="(\d+)"', dom)
    check("the page ran its live updates", ticks and int(ticks.group(1)) >= 2, dom[:300])
    check("three charts drew series", dom.count('class="series"') >= 3, dom.count('class="series"'))
    reqs = re.search(r'data-k="requests">(\d+)<', dom)
    check("live request count", reqs and int(reqs.group(1)) > 0, reqs)
    tput = re.search(r'data-k="samples/s">([\d.k]+)<', dom)
    check("live throughput", tput and tput.group(1) not in ("0", "0.00"), tput)
    sub = re.search(r'id="sub">([^<]*)<', dom)
    check("status line is live, not disconnected", sub and sub.group(1).startswith("up "), sub)
    fails = re.search(r'data-k="failures">(\d+)<', dom)
    check("no failed requests", fails and fails.group(1) == "0", fails)
    check("screenshot taken", os.path.exists(shot) and os.path.getsize(shot) > 10000)
finally:
    stop.set()
    th.join()
    srv.terminate()
    srv.wait(30)
npass = sum(results)
print(f"{npass} passed, {len(results) - npass} failed")
sys.exit(0 if npass == len(results) else 1)
