#!/usr/bin/env python3
"""Benchmark of many VMs at once: N StartVM sent together (each on its own
connection) until every VM is ready, against one VM started alone in the
same run; then what each idle VM costs the host beyond the guest memory
it uses. Prints numbers; asserts nothing.

    python3 bench/density.py [--build build] [--vms 20] [--memory 128]

Twice, side by side: with start templates off (every VM boots) and on
(the lone VM boots and leaves a template; the N are restored from it and
share its untouched memory).

It starts a private capsuled and reports the accel in use. Per idle VM,
once all are ready and have settled for a few seconds:
- QEMU's proportional set size (PSS, /proc/PID/smaps_rollup);
- the guest memory the guest itself uses (MemTotal - MemFree in the
  guest), which QEMU's PSS includes for the pages the guest touched;
- the difference: what the VM costs beyond its guest's own use;
- capsuled's resident memory with the N VMs less its resident memory
  with none, per VM.
"""
import argparse
import os
import socket
import statistics
import sys
import threading
import time

from benchlib import add_build_arg, private_daemon, request, run_exec


def kib(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start(sock_path, memory, results, i):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    t0 = time.monotonic()
    try:
        r = request(s, {"op": "StartVM", "memory_mib": memory,
                        "launch_seconds": 600})
        results[i] = (time.monotonic() - t0, r)
    except Exception as e:      # reported, not raised: count them all
        results[i] = (time.monotonic() - t0, e)
    finally:
        s.close()


def measure(build, a, config, label):
    """One private capsuled with config: one VM alone, then N at once,
    then the idle costs. False if a start failed."""
    with private_daemon(build, config) as (sock_path, d):
        ctl = socket.socket(socket.AF_UNIX)
        ctl.connect(sock_path)
        ping = request(ctl, {"op": "Ping"})
        dpid = None
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/cmdline" % name, "rb") as f:
                        if sock_path.encode() in f.read():
                            dpid = int(name)
                except OSError:
                    pass
        print("\n== %s ==\ncapsule %s, %s, accel %s, %d CPUs; %d VMs of "
              "%d MiB" % (label, ping["version"], ping.get("hypervisor", "?"),
                          ping["accel"], os.cpu_count(), a.vms, a.memory))
        rss0 = kib("/proc/%d/status" % dpid, "VmRSS")

        # -- baseline: one alone --
        t0 = time.monotonic()
        vm = request(ctl, {"op": "StartVM", "memory_mib": a.memory})
        alone = time.monotonic() - t0
        request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})

        # -- N at once --
        results = [None] * a.vms
        threads = [threading.Thread(target=start, args=(
            sock_path, a.memory, results, i)) for i in range(a.vms)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        good = [r for _, r in results if isinstance(r, dict)]
        bad = [r for _, r in results if not isinstance(r, dict)]
        each = [t for t, r in results if isinstance(r, dict)]
        print("\nstart to ready")
        print("%-34s %8.2f s" % ("baseline: one VM alone", alone))
        print("%-34s %8.2f s   (%d ready, %d failed)" % (
            "%d at once: all ready (wall)" % a.vms, wall, len(good),
            len(bad)))
        if each:
            print("%-34s %8.2f s   median %.2f s" % (
                "  each: slowest", max(each), statistics.median(each)))
        for e in bad[:3]:
            print("  failed: %s" % e)

        # -- per idle VM --
        time.sleep(5)
        pss, used = [], []
        for r in good:
            pss.append(kib("/proc/%d/smaps_rollup" % r["pid"], "Pss"))
            out = run_exec(r["proxy_socket_path"], ["cat", "/proc/meminfo"])
            m = {l.split(":")[0]: int(l.split()[1])
                 for l in out.splitlines() if l.split()}
            used.append(m["MemTotal"] - m["MemFree"])
        rss = kib("/proc/%d/status" % dpid, "VmRSS")
        if pss:
            extra = [p - u for p, u in zip(pss, used)]
            print("\nper idle VM (%d MiB guests)" % a.memory)
            print("%-34s %8.1f MiB" % ("QEMU PSS", statistics.mean(pss) /
                                       1024))
            print("%-34s %8.1f MiB" % ("guest's own use (in the guest)",
                                       statistics.mean(used) / 1024))
            print("%-34s %8.1f MiB" % ("beyond the guest's use",
                                       statistics.mean(extra) / 1024))
            print("%-34s %8.1f MiB   (%.1f MiB with none, %.1f with %d)" % (
                "capsuled RSS per VM", (rss - rss0) / 1024 / len(pss),
                rss0 / 1024, rss / 1024, len(pss)))
        for r in good:
            request(ctl, {"op": "StopVM", "vm_id": r["vm_id"]})
    return not bad


def main():
    ap = argparse.ArgumentParser()
    add_build_arg(ap)
    ap.add_argument("--vms", type=int, default=20)
    ap.add_argument("--memory", type=int, default=128)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    # Side by side: every VM booted, then (the default) the first booted
    # and leaving a start template that the others are restored from.
    ok = measure(build, a, "templates = off\n", "templates off: every VM "
                 "boots")
    ok = measure(build, a, "", "templates on: the others restore the "
                 "first's") and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
