"""benchlib.py — what the benchmarks in bench/ share: a control-socket
request and a look at which QEMU processes are running."""
import json
import os


class Failed(Exception):
    pass


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
