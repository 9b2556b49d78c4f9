"""serve_util.py: what the server tests share: a free loopback port, and `spine serve` started
on one (its stderr to a file) and waited for until it prints its "listening" line."""
import socket
import subprocess


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_serve(spine, args, errpath):
    """Start `spine serve --port P ARGS`; returns (process, port, its first stdout line), the
    line holding "listening" once it is ready (anything else: it failed, see errpath)."""
    port = free_port()
    p = subprocess.Popen([spine, "serve", "--port", str(port), *args], stdout=subprocess.PIPE,
                         stderr=open(errpath, "w") if errpath else subprocess.DEVNULL, text=True)
    return p, port, p.stdout.readline()
