#!/usr/bin/env python3
"""Benchmark of exec and copy in a running VM, each next to a raw baseline.
Prints numbers; asserts nothing beyond the bytes arriving intact.

    python3 bench/exec.py [--build-dir build] [--size 256] [--execs 200]

It starts a private capsuled and one VM with a raw serial port (StartVM's
serial_ports), then measures:

- the round trip of `true`, through the `capsule exec` CLI and through the
  exec socket (JSON lines), against a raw round trip on the serial port: a
  one-byte echo (`dd bs=1`), and a fork+exec of /bin/true per line;
- stdout (`head -c N /dev/zero`, and `dd` with 64 KiB blocks) and stdin
  (`cat >/dev/null`) throughput of `capsule exec`, and `capsule cp` both
  ways, against the same number of bytes over the raw port, read or
  written in the guest by `head -c N` (the minimal tool) and by `dd bs=64k`
  (busybox head moves a byte at a time, which under TCG is slower than the
  port itself; dd shows what the port can carry).

The raw port is a virtio-serial port like the one capsule's agent channel
uses, with nothing on top, so capsule/raw is the cost of capsule's layers
(CLI, exec socket JSON and base64, daemon, channel framing and credit,
agent). The accel matters most: TCG is an order of magnitude slower than
KVM at everything here.
"""
import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import Failed, qemu_pids, request

MiB = 1024 * 1024
STEP_TIMEOUT = 900      # seconds for any one command; TCG at 256 MiB ~ 60
PORT = "bench.raw"
# Finds the port's device by name, opens it once read-write (a port takes
# one opener at a time) and says "ready": a guest write waits until the
# host is connected, while a read before that would see end of file. The
# host stays connected for the whole run: a hang-up and a new connection
# would race with the next guest's hello.
OPEN_PORT = ('for d in /sys/class/virtio-ports/*; do '
             '[ "$(cat "$d/name")" = "$0" ] && dev=/dev/${d##*/}; done; '
             '[ -n "$dev" ] || { echo "no port $0" >&2; exit 1; }; '
             'exec 3<>"$dev"; echo ready >&3; ')

children = []           # every process we start, for the clean-up


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.abspath(a.build_dir)
        self.capsule = os.path.join(self.build, "capsule")
        self.size = a.size * MiB
        self.dir = tempfile.mkdtemp(prefix="capbench", dir="/tmp")
        self.sock = os.path.join(self.dir, "c.sock")
        self.env = dict(os.environ, CAPSULE_SOCKET=self.sock)
        self.daemon = None
        self.ctl = None
        self.vm = None
        self.port = None        # the host end of the raw port

    # ---- set-up and clean-up ----

    def start_daemon(self):
        log = open(os.path.join(self.dir, "capsuled.log"), "w")
        # Its own session: a Ctrl-C at the terminal is ours to handle; the
        # daemon gets exactly one SIGINT, which stops its VMs.
        self.daemon = subprocess.Popen(
            [os.path.join(self.build, "capsuled"),
             "--socket", self.sock, "--state-dir",
             os.path.join(self.dir, "state"), "--image-dir",
             os.path.join(self.build, "image"), "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        end = time.monotonic() + 20
        while True:
            if self.daemon.poll() is not None:
                raise Failed("capsuled exited at start-up; see %s" %
                             os.path.join(self.dir, "capsuled.log"))
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                self.ctl = s
                return request(s, {"op": "Ping"})
            except OSError:
                s.close()
            if time.monotonic() > end:
                raise Failed("capsuled did not answer within 20 s")
            time.sleep(0.05)

    def cleanup(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.port is not None:
            self.port.close()
        for p in children:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.ctl is not None:
            self.ctl.close()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGINT)
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        # capsuled reaps its QEMU before it exits; this is for a daemon
        # that had to be killed.
        for pid in qemu_pids(self.dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- helpers ----

    def cli(self, *args, **kw):
        p = subprocess.Popen([self.capsule] + list(args), env=self.env, **kw)
        children.append(p)
        return p

    def cli_run(self, *args, stdin=subprocess.DEVNULL):
        p = self.cli(*args, stdin=stdin, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failed("capsule %s: no end after %d s" % (
                " ".join(args), STEP_TIMEOUT)) from None
        if p.returncode != 0:
            raise Failed("capsule %s: exit %d: %s" % (
                " ".join(args), p.returncode,
                err.decode("utf-8", "replace").strip()[-500:]))
        return out

    def guest(self, script, *args, **kw):
        """capsule exec of a shell script on the raw port (Popen)."""
        return self.cli("exec", self.vm["vm_id"], "--", "sh", "-c",
                        OPEN_PORT + script, PORT, *[str(x) for x in args],
                        **kw)

    def port_connect(self):
        self.port = socket.socket(socket.AF_UNIX)
        self.port.settimeout(600)
        self.port.connect(self.vm["serial_ports"][PORT])

    def port_hello(self):
        if self.recv_exactly(6) != b"ready\n":
            raise Failed("raw port: no hello from the guest")

    def recv_exactly(self, n):
        got = bytearray()
        while len(got) < n:
            chunk = self.port.recv(min(n - len(got), MiB))
            if not chunk:
                raise Failed("raw port: end of file after %d of %d bytes" %
                             (len(got), n))
            got += chunk
        return bytes(got)

    def guest_done(self, p, what):
        try:
            err = p.communicate(timeout=STEP_TIMEOUT)[1] or b""
        except subprocess.TimeoutExpired:
            raise Failed("%s: no end after %d s" % (what,
                                                    STEP_TIMEOUT)) from None
        if p.returncode != 0:
            raise Failed("%s: exit %d: %s" % (what, p.returncode,
                         err.decode("utf-8", "replace").strip()[-500:]))

    # ---- round trips ----

    def rtt_cli(self):
        t = []
        for _ in range(self.a.execs):
            t0 = time.monotonic()
            self.cli_run("exec", self.vm["vm_id"], "--", "true")
            t.append((time.monotonic() - t0) * 1000)
        return t

    def rtt_socket(self):
        t = []
        for _ in range(self.a.execs):
            t0 = time.monotonic()
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.vm["proxy_socket_path"])
            s.sendall(b'{"command":["true"]}\n')
            buf, exit_line = b"", None
            while exit_line is None:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    m = json.loads(line)
                    if m.get("type") == "exit":
                        exit_line = m
            s.close()
            t.append((time.monotonic() - t0) * 1000)
            if exit_line is None or exit_line.get("exit_code") != 0:
                raise Failed("exec socket: true ended with %r" % exit_line)
        return t

    def rtt_raw(self, script, payload):
        """Round trips of `payload` through a guest loop on the raw port
        that answers self.a.execs times, then ends."""
        p = self.guest(script, self.a.execs, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port_hello()
        t = []
        for _ in range(self.a.execs):
            t0 = time.monotonic()
            self.port.sendall(payload)
            if self.recv_exactly(len(payload)) != payload:
                raise Failed("raw port: the echo differs")
            t.append((time.monotonic() - t0) * 1000)
        self.guest_done(p, "raw round trip")
        return t

    # ---- throughput (seconds for self.size bytes) ----

    def stdout_cli(self, *command):
        t0 = time.monotonic()
        p = self.cli("exec", self.vm["vm_id"], "--", *command,
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        n = 0
        while True:
            chunk = p.stdout.read1(MiB)
            if not chunk:
                break
            n += len(chunk)
        self.guest_done(p, "capsule exec %s" % command[0])
        dt = time.monotonic() - t0
        if n != self.size:
            raise Failed("stdout: %d bytes, not %d" % (n, self.size))
        return dt

    def stdin_cli(self, path):
        with open(path, "rb") as f:
            t0 = time.monotonic()
            p = self.cli("exec", self.vm["vm_id"], "--", "sh", "-c",
                         "cat >/dev/null", stdin=f, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
            self.guest_done(p, "capsule exec cat")
            return time.monotonic() - t0

    # The guest's end of a raw transfer. busybox head -c copies a byte at a
    # time through stdio, which under TCG is slower than the port; dd with
    # 64 KiB blocks is not, so it shows what the port itself can carry.
    RAW_READ = {
        "head": 'head -c "$1" <&3 >/dev/null',
        "dd": 'dd bs=65536 iflag=fullblock,count_bytes count="$1" <&3 '
              '>/dev/null 2>&1',
    }
    RAW_WRITE = {
        "head": 'head -c "$1" /dev/zero >&3',
        "dd": 'dd if=/dev/zero bs=65536 iflag=count_bytes count="$1" >&3 '
              '2>/dev/null',
    }

    def raw_to_guest(self, tool):
        zeros = bytes(MiB)
        p = self.guest(self.RAW_READ[tool], self.size,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        self.port_hello()
        t0 = time.monotonic()
        left = self.size
        while left > 0:
            n = min(left, len(zeros))
            self.port.sendall(zeros[:n])
            left -= n
        # The reader ends after exactly size bytes (early only at end of
        # file, and the host stays connected).
        self.guest_done(p, "raw %s" % tool)
        return time.monotonic() - t0

    def raw_from_guest(self, tool):
        p = self.guest(self.RAW_WRITE[tool], self.size,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        self.port_hello()
        t0 = time.monotonic()
        n = 0
        while n < self.size:
            chunk = self.port.recv(min(MiB, self.size - n))
            if not chunk:
                raise Failed("raw port: end of file after %d bytes" % n)
            n += len(chunk)
        dt = time.monotonic() - t0
        self.guest_done(p, "raw %s" % tool)
        return dt

    def has_cp(self):
        p = self.cli("cp", stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return b'unknown command "cp"' not in p.communicate()[1]

    GUEST_FILE = "/tmp/bench.bin"

    def cp(self, src, dst):
        t0 = time.monotonic()
        self.cli_run("cp", src, dst)
        return time.monotonic() - t0

    def check_cp_in(self):
        n = int(self.cli_run("exec", self.vm["vm_id"], "--", "wc", "-c",
                             self.GUEST_FILE).split()[0])
        if n != self.size:
            raise Failed("cp in: the guest has %d bytes, not %d" %
                         (n, self.size))

    def check_cp_out(self, src, dst):
        self.cli_run("exec", self.vm["vm_id"], "--", "rm", "-f",
                     self.GUEST_FILE)
        if os.path.getsize(dst) != self.size or sha256(dst) != sha256(src):
            raise Failed("cp: the copy back differs from the original")
        os.unlink(dst)

    def timed(self, fn, *args):
        """fn's seconds, and the CPU seconds the CLI (every child reaped
        meanwhile), capsuled and QEMU spent meanwhile."""
        def snap():
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (ru.ru_utime + ru.ru_stime, cpu_seconds(self.daemon.pid),
                    cpu_seconds(self.vm["pid"]))
        c0 = snap()
        t = fn(*args)
        return t, [b - a for a, b in zip(c0, snap())]

    # ---- the run ----

    def run(self):
        a = self.a
        load0, others = loadavg(), len(qemu_pids())
        ping = self.start_daemon()
        print("capsule exec benchmark, %s" %
              time.strftime("%Y-%m-%d %H:%M %Z"))
        print("host: %s, %d CPUs, load average %s at start, %d other QEMU "
              "processes running" % (cpu_model(), os.cpu_count(), load0,
                                     others))
        print("capsule %s, %s, accel %s" % (ping["version"],
              ping.get("hypervisor", "?"), ping["accel"]))
        if ping.get("accel_note"):
            print("  (%s)" % ping["accel_note"])
        self.vm = request(self.ctl, {"op": "StartVM", "vcpus": a.cpus,
                                     "memory_mib": a.memory,
                                     "serial_ports": [PORT]})
        print("VM: %d vCPU, %d MiB; %d round trips; transfers of %d MiB" %
              (a.cpus, a.memory, a.execs, a.size))
        sys.stdout.flush()
        self.port_connect()

        cli, sock = self.rtt_cli(), self.rtt_socket()
        spawn = self.rtt_raw(
            'i=0; while [ $i -lt $1 ] && read -r l; do (exec /bin/true); '
            'echo "$l"; i=$((i+1)); done <&3 >&3', b"x\n")
        echo = self.rtt_raw('exec dd bs=1 count="$1" <&3 >&3 2>/dev/null',
                            b"x")
        med = statistics.median
        print()
        print("%-42s %9s %9s %14s %14s" % (
            "round trip (n=%d)" % a.execs, "median", "p99",
            "/raw fork+exec", "/raw echo"))
        for name, t, ratios in (
                ("capsule exec ID -- true (CLI)", cli, True),
                ("exec socket, {\"command\":[\"true\"]}", sock, True),
                ("raw port: fork+exec /bin/true per line", spawn, False),
                ("raw port: 1-byte echo (dd bs=1)", echo, False)):
            print("%-42s %6.2f ms %6.2f ms" % (name, med(t), pct(t, 99)) +
                  ("   %11.1fx %13.1fx" % (med(t) / med(spawn),
                                           med(t) / med(echo))
                   if ratios else ""))
        sys.stdout.flush()

        src = os.path.join(self.dir, "random.bin")
        with open(src, "wb") as f:
            for _ in range(a.size):
                f.write(os.urandom(MiB))
        raw = {}
        for tool in ("head", "dd"):
            raw["out", tool] = self.raw_from_guest(tool)
            raw["in", tool] = self.raw_to_guest(tool)
        print()
        print("%-40s %15s %15s" % ("raw port, %d MiB" % a.size,
                                   "head -c N", "dd bs=64k"))
        for way, name in (("out", "guest->host"), ("in", "host->guest")):
            print("%-40s %9.1f MiB/s %9.1f MiB/s" % (
                name, a.size / raw[way, "head"], a.size / raw[way, "dd"]))
        sys.stdout.flush()

        rows = [("out", "guest->host: exec head -c N /dev/zero",
                 self.timed(self.stdout_cli, "head", "-c", str(self.size),
                            "/dev/zero")),
                ("out", "guest->host: exec dd if=/dev/zero bs=64k",
                 self.timed(self.stdout_cli, "dd", "if=/dev/zero",
                            "bs=65536", "iflag=count_bytes",
                            "count=%d" % self.size, "status=none")),
                ("in", "host->guest: exec sh -c 'cat >/dev/null'",
                 self.timed(self.stdin_cli, src))]
        has_cp = self.has_cp()
        if has_cp:
            guest = "%s:%s" % (self.vm["vm_id"], self.GUEST_FILE)
            back = os.path.join(self.dir, "back.bin")
            rows.append(("in", "host->guest: cp FILE ID:/tmp/f",
                         self.timed(self.cp, src, guest)))
            self.check_cp_in()
            rows.append(("out", "guest->host: cp ID:/tmp/f FILE",
                         self.timed(self.cp, guest, back)))
            self.check_cp_out(src, back)
        print()
        print("%-40s %15s %9s %7s %7s   %s" % (
            "capsule, %d MiB" % a.size, "", "/raw head", "/raw dd",
            "wall s", "CPU s: CLI capsuled QEMU"))
        for way, name, (t, cpu) in rows:
            mbs = a.size / t
            print("%-40s %9.1f MiB/s %9.2f %7.2f %7.1f   %10.1f %8.1f %4.1f"
                  % (name, mbs, mbs / (a.size / raw[way, "head"]),
                     mbs / (a.size / raw[way, "dd"]), t, *cpu))
        if not has_cp:
            print("(capsule cp is not in this build)")
        print()
        print("load average %s at the end, %d other QEMU processes" %
              (loadavg(), len(qemu_pids()) - len(qemu_pids(self.dir))))
        request(self.ctl, {"op": "StopVM", "vm_id": self.vm["vm_id"]})
        return 0


def cpu_seconds(pid):
    """User and system time of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(here, "..", "build"))
    ap.add_argument("--size", type=int, default=256,
                    help="MiB per transfer (default 256)")
    ap.add_argument("--execs", type=int, default=200,
                    help="round trips per kind (default 200)")
    ap.add_argument("--memory", type=int, default=1024,
                    help="VM memory in MiB (default 1024)")
    ap.add_argument("--cpus", type=int, default=1)
    a = ap.parse_args()
    if a.size < 1 or a.execs < 1:
        ap.error("--size and --execs must be at least 1")
    if a.size * 2 > a.memory - 128:
        ap.error("the guest keeps a --size file in /tmp (half its memory); "
                 "give it --memory %d or more" % (a.size * 2 + 128))

    def stop(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    b = Bench(a)
    try:
        return b.run()
    except Failed as e:
        print("bench/exec.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/exec.py: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
