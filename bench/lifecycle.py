#!/usr/bin/env python3
"""Benchmark of a VM's life: boot to ready, exec round trip, stop, and a
whole `capsule run -- true`. Prints numbers; asserts nothing.

    python3 bench/lifecycle.py [--build build] [--runs 10] [--execs 200]

It starts a private capsuled (so nothing else skews it) and reports the
accel in use: the figures differ by an order of magnitude between KVM and
TCG.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

from benchlib import add_build_arg, private_daemon, request, run_exec


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def line(name, values, unit="ms"):
    print("%-28s median %8.1f %s   p99 %8.1f %s   (n=%d)" % (
        name, statistics.median(values), unit, pct(values, 99), unit,
        len(values)))


def main():
    ap = argparse.ArgumentParser()
    add_build_arg(ap)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--execs", type=int, default=200)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    with private_daemon(build) as (sock_path, d):
        ctl = socket.socket(socket.AF_UNIX)
        ctl.connect(sock_path)
        ping = request(ctl, {"op": "Ping"})
        print("capsule %s, %s, accel %s, %d CPUs" % (
            ping["version"], ping.get("hypervisor", "?"), ping["accel"],
            os.cpu_count()))

        ready, guest, stop = [], [], []
        for _ in range(a.runs):
            t0 = time.monotonic()
            vm = request(ctl, {"op": "StartVM"})
            ready.append((time.monotonic() - t0) * 1000)
            guest.append(vm["timing_ms"]["guest_boot"])
            t0 = time.monotonic()
            request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})
            stop.append((time.monotonic() - t0) * 1000)
        line("StartVM to ready", ready)
        line("  guest clock at ready", guest)
        line("StopVM (graceful)", stop)

        vm = request(ctl, {"op": "StartVM"})
        rtt = []
        for _ in range(a.execs):
            t0 = time.monotonic()
            run_exec(vm["proxy_socket_path"], ["true"])
            rtt.append((time.monotonic() - t0) * 1000)
        line("exec `true` round trip", rtt)
        request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})

        env = dict(os.environ, CAPSULE_SOCKET=sock_path)
        run = []
        for _ in range(a.runs):
            t0 = time.monotonic()
            subprocess.run([os.path.join(build, "capsule"), "run", "--",
                            "true"], env=env, check=True)
            run.append((time.monotonic() - t0) * 1000)
        line("capsule run -- true", run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
