"""benchlib.py — what the benchmarks in bench/ share: a private capsuled,
a control-socket request and a look at which QEMU processes are running."""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Failed(Exception):
    pass


@contextlib.contextmanager
def private_daemon(build, config=""):
    """A capsuled of the benchmark's own, so nothing else skews it: yields
    (its socket path, its dir) on a fresh socket and state dir under /tmp,
    with config (capsuled.conf text) as its only configuration.
    Afterwards it is stopped with SIGINT (its VMs with it) and its dir
    removed; if the benchmark failed, the dir and its log are kept."""
    d = tempfile.mkdtemp(prefix="capbench", dir="/tmp")
    sock = os.path.join(d, "c.sock")
    conf = os.path.join(d, "capsuled.conf")
    with open(conf, "x") as f:
        f.write(config)
    daemon = subprocess.Popen(
        [os.path.join(build, "capsuled"), "--socket", sock, "--state-dir",
         os.path.join(d, "state"), "--image-dir",
         os.path.join(build, "image"), "--log-level", "warn",
         "--config", conf],
        stderr=open(os.path.join(d, "capsuled.log"), "w"))
    ok = False
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        yield sock, d
        ok = True
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(60)
        if ok:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print("capsuled's log is kept in %s" % d, file=sys.stderr)


def request(sock, obj):
    """Sends one control request on sock, returns the reply; Failed if the
    daemon hangs up or the reply is not ok."""
    sock.sendall(json.dumps(obj).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed("capsuled closed the connection")
        buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise Failed("%s: %s" % (obj.get("op"), reply.get("error")))
    return reply


def add_build_arg(ap):
    """--build DIR, the build tree to take capsuled and its image from
    (default: build/ next to bench/)."""
    ap.add_argument("--build", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "build"))


def run_exec(proxy, argv):
    """Runs argv in the VM behind the exec socket proxy; its stdout and
    stderr as text. Raises if it does not exit 0."""
    import base64
    s = socket.socket(socket.AF_UNIX)
    s.connect(proxy)
    s.sendall(json.dumps({"command": argv}).encode() + b"\n")
    buf = b""
    while b'"exit"' not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    lines = [json.loads(l) for l in buf.splitlines() if l.strip()]
    out = b"".join(base64.b64decode(l["data"])
                   for l in lines if l.get("type") in ("stdout", "stderr"))
    code = [l.get("exit_code") for l in lines if l.get("type") == "exit"]
    if code != [0]:
        raise RuntimeError("%r failed: %r" % (argv, out[-500:]))
    return out.decode("utf-8", "replace")


def qemu_pids(needle=None):
    """pids of live qemu-system processes (mentioning needle, if given)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().rstrip(b"\0").split(b"\0")
            with open("/proc/%s/stat" % d) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except (OSError, IndexError):
            continue
        if not os.path.basename(argv[0]).startswith(b"qemu-system"):
            continue
        if needle is None or needle.encode() in b" ".join(argv):
            found.append(int(d))
    return found
