#!/usr/bin/env python3
"""How long a VM takes to be ready, side by side in one run:

  bare QEMU boot   QEMU with capsule's kernel and initramfs, no devices,
                   told to run an init that is not there: the time from
                   spawn to the kernel giving up on it (and QEMU exiting)
                   is the floor for any boot to /init
  cold start       StartVM to agent-ready with templates off
  restore          StartVM to agent-ready restored from a start template
  pool hand-out    StartVM answered from a warm pool of one (SetPool),
                   waiting for the pool to refill between runs
  capsule run      `capsule run -- true` (start, exec, stop) in each mode
  fork             ForkVM of a running VM: 1 copy, and 4 at once, to
                   every copy ready (docs/snapshots.md)
  snapshot         SnapshotVM of a running VM, and StartVM from it

Prints numbers and ratios; asserts nothing.

    python3 bench/start.py [--build build] [--runs 5]
"""
import argparse
import os
import socket
import statistics
import subprocess
import time

from benchlib import add_build_arg, private_daemon, request


def tsc_khz():
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("cpu MHz"):
                return int(float(l.split(":")[1]) * 1000)
    return 0


def bare_boot(build, mem):
    img = os.path.join(build, "image")
    khz = tsc_khz()
    argv = ["qemu-system-x86_64", "-machine", "microvm", "-accel", "tcg",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-m", str(mem),
            "-kernel", os.path.join(img, "vmlinuz"),
            "-initrd", os.path.join(img, "initramfs.img"),
            "-append", "console=ttyS0 quiet panic=-1 reboot=t %s"
            "rdinit=/capsule-bench-no-init init=/capsule-bench-no-init" %
            ("tsc_early_khz=%d " % khz if khz else "")]
    t0 = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120, check=False)
    return (time.monotonic() - t0) * 1000


def starts(sock_path, runs, mem):
    """The first StartVM's time, then each later one's (and how each
    started)."""
    ctl = socket.socket(socket.AF_UNIX)
    ctl.connect(sock_path)
    out = []
    for _ in range(runs + 1):
        t0 = time.monotonic()
        vm = request(ctl, {"op": "StartVM", "memory_mib": mem})
        ms = (time.monotonic() - t0) * 1000
        out.append((ms, vm["timing_ms"]["start"]))
        request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})
    ctl.close()
    return out[0], out[1:]


def pool_list(ctl):
    return request(ctl, {"op": "ListPools"})["pools"]


def wait_pool_ready(ctl):
    for _ in range(600):
        p = pool_list(ctl)
        if p and p[0]["ready"] >= 1 and p[0]["starting"] == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("the pool did not refill: %r" % pool_list(ctl))


def handouts(sock_path, runs, mem):
    """StartVM answered from a pool of one, each after it refilled."""
    ctl = socket.socket(socket.AF_UNIX)
    ctl.connect(sock_path)
    fields = {"memory_mib": mem, "stop_on_disconnect": True}
    request(ctl, dict(op="SetPool", size=1, **fields))
    out = []
    for _ in range(runs):
        wait_pool_ready(ctl)
        t0 = time.monotonic()
        vm = request(ctl, dict(op="StartVM", **fields))
        out.append((time.monotonic() - t0) * 1000)
        if vm["timing_ms"]["start"] != "pooled":
            raise RuntimeError("not from the pool: %r" % vm["timing_ms"])
        request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})
    wait_pool_ready(ctl)
    return out, ctl


def runs_of_cli(build, sock_path, runs, mem):
    env = dict(os.environ, CAPSULE_SOCKET=sock_path)
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([os.path.join(build, "capsule"), "run", "--memory",
                        str(mem), "--", "true"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        out.append((time.monotonic() - t0) * 1000)
    return out


def forks_and_snapshots(sock_path, runs, mem):
    """ForkVM of a running VM (1 copy; 4 copies), SnapshotVM of it, and
    StartVM from the snapshot: milliseconds each."""
    ctl = socket.socket(socket.AF_UNIX)
    ctl.connect(sock_path)
    parent = request(ctl, {"op": "StartVM", "memory_mib": mem})
    out = {"fork1": [], "fork4": [], "snap": [], "from": []}

    def timed(req):
        t0 = time.monotonic()
        r = request(ctl, req)
        return (time.monotonic() - t0) * 1000, r

    for _ in range(runs):
        ms, r = timed({"op": "ForkVM", "vm_id": parent["vm_id"], "count": 1})
        out["fork1"].append(ms)
        for v in r["vms"]:
            request(ctl, {"op": "StopVM", "vm_id": v["vm_id"]})
    ms, r = timed({"op": "ForkVM", "vm_id": parent["vm_id"], "count": 4})
    out["fork4"].append(ms)
    for v in r["vms"]:
        request(ctl, {"op": "StopVM", "vm_id": v["vm_id"]})
    ms, r = timed({"op": "SnapshotVM", "vm_id": parent["vm_id"],
                   "name": "bench"})
    out["snap"].append(ms)
    for _ in range(runs):
        ms, r = timed({"op": "StartVM", "snapshot": "bench"})
        out["from"].append(ms)
        request(ctl, {"op": "StopVM", "vm_id": r["vm_id"]})
    request(ctl, {"op": "RemoveSnapshot", "name": "bench"})
    request(ctl, {"op": "StopVM", "vm_id": parent["vm_id"]})
    ctl.close()
    return out


def show(name, values):
    print("%-34s median %8.1f ms   min %8.1f   max %8.1f   (n=%d)" % (
        name, statistics.median(values), min(values), max(values),
        len(values)))
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser()
    add_build_arg(ap)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--memory", type=int, default=512)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    mem = a.memory
    print("%d CPUs, guest %d MiB, %d runs each" % (os.cpu_count(), mem,
                                                   a.runs))
    bare = show("bare QEMU boot to (no) /init",
                [bare_boot(build, mem) for _ in range(a.runs)])
    with private_daemon(build, "templates = off\n") as (sock, _):
        first, rest = starts(sock, a.runs, mem)
        cold = show("cold start (templates off)",
                    [first[0]] + [ms for ms, _ in rest])
        run_cold = show("capsule run -- true, cold",
                        runs_of_cli(build, sock, a.runs, mem))
    with private_daemon(build) as (sock, _):
        first, rest = starts(sock, a.runs, mem)
        show("first start (boots, takes template)", [first[0]])
        hows = {h for _, h in rest}
        rest_ms = show("restore from template (%s)" % ",".join(sorted(hows)),
                       [ms for ms, _ in rest])
        run_warm = show("capsule run -- true, restored",
                        runs_of_cli(build, sock, a.runs, mem))
        times, ctl = handouts(sock, a.runs, mem)
        handout = show("pool hand-out (StartVM)", times)
        env_runs = []
        for _ in range(a.runs):
            wait_pool_ready(ctl)
            env_runs += runs_of_cli(build, sock, 1, mem)
        run_pool = show("capsule run -- true, from a pool", env_runs)
        request(ctl, {"op": "SetPool", "size": 0, "memory_mib": mem,
                      "stop_on_disconnect": True})
        ctl.close()
        fs = forks_and_snapshots(sock, a.runs, mem)
        fork1 = show("fork, 1 copy (ForkVM)", fs["fork1"])
        show("fork, 4 copies at once", fs["fork4"])
        show("snapshot (SnapshotVM)", fs["snap"])
        snap_start = show("start from the snapshot", fs["from"])
    print()
    print("cold start / bare boot        %5.2f   (goal <= 1.1)" % (cold / bare))
    print("restore / cold start          %5.3f   (goal <= 0.10)" %
          (rest_ms / cold))
    print("capsule run: restored / cold  %5.3f" % (run_warm / run_cold))
    print("pool hand-out                 %5.2f ms (goal < 5)" % handout)
    print("capsule run: pool / cold      %5.3f" % (run_pool / run_cold))
    print("fork of 1 / cold start        %5.3f" % (fork1 / cold))
    print("from snapshot / cold start    %5.3f" % (snap_start / cold))


if __name__ == "__main__":
    main()
