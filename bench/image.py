#!/usr/bin/env python3
"""Benchmark of images: importing the Debian image, a cold start on it
against the built-in busybox one, and the file-system throughput of a
VM's writable layer against the host. Prints numbers; asserts nothing.

    python3 bench/image.py [--build build] [--runs 5] [--mib 256]

Needs build/image/debian.oci.tar (cmake --build build --target
image-debian). It starts a private capsuled (socket and state under a
fresh /tmp dir, removed afterwards) and reports the accel in use.

Baselines, measured in the same run:
- import: the same layer extracted with tar and made into an ext4 image
  with mkfs.ext4 -d by hand: what making a root file system costs without
  capsule's fetch (skopeo), copy-in, digest checks (umoci) and store.
- cold start: StartVM to ready and a first `true`, busybox root file
  system against the imported Debian one.
- throughput: dd of --mib MiB with fsync into the VM's root file system
  (an overlay: the image read-only under the VM's own sparse disk) and
  into a shared folder (virtiofs, a host directory in capsule's state
  file system), each read back after dropping the guest's caches; the
  host doing the same into a file on the file system that holds
  capsule's state.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import time

from benchlib import add_build_arg, private_daemon, request, run_exec


def line(name, values, unit="ms"):
    print("%-34s median %8.1f %s   min %8.1f %s   (n=%d)" % (
        name, statistics.median(values), unit, min(values), unit,
        len(values)))


def mibps(mib, seconds):
    return mib / seconds if seconds > 0 else float("inf")


def dd_rate(text):
    """MiB/s from busybox or GNU dd's last line ("... N bytes ... S s")."""
    m = re.search(r"(\d+) bytes .*?([\d.]+) ?s", text)
    if not m:
        raise RuntimeError("no dd summary in %r" % text[-300:])
    return int(m.group(1)) / 1048576 / float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    add_build_arg(ap)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=256)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    oci = os.path.join(build, "image", "debian.oci.tar")
    if not os.path.isfile(oci):
        print("missing %s: cmake --build build --target image-debian" % oci,
              file=sys.stderr)
        return 2
    with private_daemon(build) as (sock_path, d):
        env = dict(os.environ, CAPSULE_SOCKET=sock_path)
        capsule = os.path.join(build, "capsule")
        ctl = socket.socket(socket.AF_UNIX)
        ctl.connect(sock_path)
        ping = request(ctl, {"op": "Ping"})
        print("capsule %s, %s, accel %s, %d CPUs; image %s (%.0f MiB)" % (
            ping["version"], ping.get("hypervisor", "?"), ping["accel"],
            os.cpu_count(), os.path.basename(oci),
            os.path.getsize(oci) / 1048576))

        # -- import --
        print("\nimport")
        t0 = time.monotonic()
        subprocess.run([capsule, "image", "import", oci, "--name", "debian"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        line("capsule image import (cold)", [(time.monotonic() - t0) * 1000])
        again = []
        for _ in range(a.runs):
            t0 = time.monotonic()
            subprocess.run([capsule, "image", "import", oci, "--name",
                            "debian"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            again.append((time.monotonic() - t0) * 1000)
        line("  again (stored: fetch + verify)", again)
        base = os.path.join(d, "baseline")
        os.mkdir(base)
        t0 = time.monotonic()
        with tarfile.open(oci) as t:
            idx = json.load(t.extractfile("index.json"))
            man = json.load(t.extractfile("blobs/sha256/" + idx["manifests"][
                0]["digest"][7:]))
            layer = "blobs/sha256/" + man["layers"][0]["digest"][7:]
        root = os.path.join(base, "root")
        os.mkdir(root)
        subprocess.run(["tar", "-xf", oci, "-C", base, layer], check=True)
        subprocess.run(["tar", "-xf", os.path.join(base, layer), "-C", root,
                        "--numeric-owner"], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, os.path.join(
            base, "root.ext4"), "8G"], check=True, stdout=subprocess.DEVNULL)
        line("baseline: tar -x + mkfs.ext4 -d", [(time.monotonic() - t0) *
                                                 1000])
        shutil.rmtree(base)

        # -- cold start --
        print("\ncold start: StartVM to ready, then a first `true`")
        for label, fields in (("busybox (built-in)", {}),
                              ("debian (imported image)",
                               {"image": "debian"})):
            ready, first = [], []
            for _ in range(a.runs):
                t0 = time.monotonic()
                vm = request(ctl, dict({"op": "StartVM"}, **fields))
                ready.append((time.monotonic() - t0) * 1000)
                t0 = time.monotonic()
                run_exec(vm["proxy_socket_path"], ["true"])
                first.append((time.monotonic() - t0) * 1000)
                request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})
            line(label, ready)
            line("  first exec", first)

        # -- throughput of the writable disk and of a share --
        print("\nfile-system throughput, %d MiB (dd, bs 1 MiB)" % a.mib)
        share = os.path.join(d, "state", "share")
        os.mkdir(share, 0o755)
        vm = request(ctl, {"op": "StartVM", "image": "debian",
                           "memory_mib": 1024, "volumes": [
                               {"host": share, "guest": "/share"}]})
        px = vm["proxy_socket_path"]
        rates = {}
        for where in ("/root", "/share"):
            out = run_exec(px, ["dd", "if=/dev/zero", "of=%s/bench.bin" %
                                where, "bs=1M", "count=%d" % a.mib,
                                "conv=fsync"])
            w = dd_rate(out)
            run_exec(px, ["sh", "-c",
                          "sync; echo 3 > /proc/sys/vm/drop_caches"])
            out = run_exec(px, ["dd", "if=%s/bench.bin" % where,
                                "of=/dev/null", "bs=1M"])
            rates[where] = (w, dd_rate(out))
        request(ctl, {"op": "StopVM", "vm_id": vm["vm_id"]})
        shutil.rmtree(share)
        hostf = os.path.join(d, "state", "bench.bin")
        out = subprocess.run(["dd", "if=/dev/zero", "of=" + hostf, "bs=1M",
                              "count=%d" % a.mib, "conv=fsync"],
                             stderr=subprocess.PIPE, check=True).stderr
        hw = dd_rate(out.decode())
        fd = os.open(hostf, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        out = subprocess.run(["dd", "if=" + hostf, "of=/dev/null", "bs=1M"],
                             stderr=subprocess.PIPE, check=True).stderr
        hr = dd_rate(out.decode())
        os.unlink(hostf)
        print("%-34s write %8.1f MiB/s   read %8.1f MiB/s" % ((
            "VM root fs (overlay on its disk)",) + rates["/root"]))
        print("%-34s write %8.1f MiB/s   read %8.1f MiB/s" % ((
            "VM shared folder (virtiofs)",) + rates["/share"]))
        print("%-34s write %8.1f MiB/s   read %8.1f MiB/s" % (
            "baseline: host file system", hw, hr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
