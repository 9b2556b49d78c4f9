# serve_common.sh: sourced by the serving benchmarks (needs PORT set). A benchmark must measure
# the server it started: it refuses a port that already answers (a leftover server would be
# measured instead, as happened once), and stops if its own server exits before it is ready.
ready() { # the server on PORT answers /v2/health/ready (curl, or python where curl is missing)
  if command -v curl >/dev/null; then
    curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$PORT/v2/health/ready" 2>/dev/null
  fi
}
port_free() { # exit unless nothing answers on PORT
  if ready; then
    echo "$(basename "$0"): port $PORT is already serving; stop that server or set PORT" >&2
    exit 1
  fi
}
wait_ready() { # wait_ready PID: until the server started as PID (directly, so that $! is it) answers
  until ready; do
    kill -0 "$1" 2>/dev/null || { echo "$(basename "$0"): the server exited" >&2; exit 1; }
    sleep 0.2
  done
}
