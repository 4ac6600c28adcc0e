#!/usr/bin/env python3
"""Benchmark of a VM's network paths (docs/network.md), each beside the
host doing the same thing directly, in one run. Prints numbers; asserts
nothing.

    python3 bench/net.py [--build build] [--size MiB] [--connects N]

Every byte stays on this machine: the servers live in a network namespace
the benchmark makes (tests/integration/nettest.py: 203.0.113.0/24 behind a
veth pair, a dnsmasq for the test names) and capsuled resolves with that
dnsmasq (--dns-server). Needs root, like the tests.

Lines:
  connect   TCP connect, send 2 bytes, read them back, close; the mean
            per connection. The host does it from Python; a guest with
            busybox `nc` in a shell loop, timed inside the guest (by
            /proc/uptime), so each guest figure includes a fork and an
            exec of nc; "guest -> echo server in the guest" (busybox
            nc -ll -e cat on 127.0.0.1, which forks a cat per
            connection) shows what the guest's processes cost alone.
  download  an HTTP GET of --size MiB, wall time: the host with Python,
            a guest with busybox wget to /dev/null (exec round trip
            included, a few ms), with the CPU seconds capsuled and the
            VM's QEMU spent meanwhile.
  publish   the host fetching --size MiB (and a 2-byte page, per
            connection) from busybox httpd in a guest through a
            published port, beside the same from the namespace's server.
"""
import argparse
import os
import socket
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
ct = None           # capsuletest, imported once --build is known
nettest = None


def sh(vm, script, timeout=600):
    r = ct.run_exec(vm["proxy_socket_path"], ["sh", "-c", script],
                    timeout=timeout)
    if r.code != 0:
        raise RuntimeError("guest: %s: exit %s: %s" % (
            script, r.code, r.stderr.decode(errors="replace")[-300:]))
    return r.stdout.decode()


def host_connects(addr, port, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        c = socket.create_connection((addr, port), timeout=30)
        c.sendall(b"x\n")
        got = b""
        while len(got) < 2:
            b = c.recv(16)
            if not b:
                break
            got += b
        c.close()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.mean(times), n


def cpu_s(pid):
    """CPU seconds pid has used (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_gets(url, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        urllib.request.urlopen(url, timeout=30).read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.mean(times), n


def guest_connects(vm, host, port, n):
    """n connections in a guest shell loop, timed by the guest's
    /proc/uptime (10 ms steps: n should be large); ms per connection."""
    out = sh(vm, "read a _ < /proc/uptime; i=0; while [ $i -lt %d ]; do "
             "echo x | nc %s %d >/dev/null || exit 1; i=$((i+1)); done; "
             "read b _ < /proc/uptime; echo $a $b" % (n, host, port))
    a, b = (float(x) for x in out.split())
    return (b - a) * 1000 / n, n


def host_download(url):
    t = time.perf_counter()
    r = urllib.request.urlopen(url, timeout=600)
    n = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
    return n, time.perf_counter() - t


def guest_download(vm, url, size, daemon_pid):
    """wget to /dev/null (a pipe to `wc -c` would time busybox's stdio);
    the byte count comes from a second, untimed fetch. Also the CPU
    seconds capsuled and the VM's QEMU spent meanwhile."""
    c0, q0 = cpu_s(daemon_pid), cpu_s(vm["pid"])
    t = time.perf_counter()
    sh(vm, "wget -qO /dev/null %s" % url)
    took = time.perf_counter() - t
    cpu = (cpu_s(daemon_pid) - c0, cpu_s(vm["pid"]) - q0)
    out = sh(vm, "wget -qO- %s | wc -c" % url)
    if int(out) != size:
        raise RuntimeError("guest got %s bytes of %d" % (out.strip(), size))
    return size, took, cpu


def show_connect(name, result, base=None):
    mean, n = result
    ratio = "" if base is None else "   x%.1f" % (mean / base)
    print("  %-34s mean %7.2f ms  (n=%d)%s" % (name, mean, n, ratio))
    return mean


def show_rate(name, result, base=None):
    n, secs = result[:2]
    rate = n / secs / (1 << 20)
    ratio = "" if base is None else "   x%.2f" % (rate / base)
    cpu = "" if len(result) < 3 else "   CPU s: capsuled %.2f, QEMU %.2f" % (
        result[2])
    print("  %-34s %8.1f MiB/s  (%d MiB in %.2f s)%s%s" % (
        name, rate, n >> 20, secs, ratio, cpu))
    return rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--size", type=int, default=64, help="MiB per download")
    ap.add_argument("--connects", type=int, default=50)
    a = ap.parse_args()
    global ct, nettest
    os.environ["CAPSULE_BUILD_DIR"] = os.path.abspath(a.build)
    import capsuletest as ct
    import nettest
    ct.require_build()
    size = a.size << 20
    n = a.connects

    net = nettest.TestNet().up()
    d = None
    try:
        d = ct.Daemon("bench-net", extra_args=["--dns-server",
                                               nettest.DNS_ADDR])
        d.start()
        port = free_port()
        allow = d.start_vm(memory_mib=512, network={
            "mode": "allow", "allow": ["allowed.test", "allowed.test:7"]})
        nat = d.start_vm(memory_mib=512, network="nat")
        pub = d.start_vm(memory_mib=512, publish=["%d:8000" % port])
        for vm in (allow, nat):
            ct.run_exec(vm["proxy_socket_path"], None, first={
                "command": ["nc", "-ll", "-p", "9", "-e", "cat"],
                "detach": True})
        ct.run_exec(pub["proxy_socket_path"], None, first={
            "command": ["sh", "-c", "mkdir -p /tmp/w && echo x > "
                        "/tmp/w/small && dd if=/dev/zero of=/tmp/w/big "
                        "bs=1048576 count=%d 2>/dev/null && exec httpd -f "
                        "-p 127.0.0.1:8000 -h /tmp/w" % a.size],
            "detach": True})
        sh(pub, "for i in $(seq 100); do wget -qO- http://127.0.0.1:8000/"
           "small >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")

        print("capsule network benchmark: accel %s, %d connects, %d MiB "
              "downloads" % (d.request({"op": "Ping"}).get("accel", "?"),
                             n, a.size))
        print("connect + 2-byte echo, per connection:")
        base = show_connect("host -> server (direct)",
                            host_connects(nettest.WEB, 7, n))
        show_connect("guest -> echo server in the guest",
                     guest_connects(allow, "127.0.0.1", 9, n), base)
        natc = show_connect("nat guest -> server by address",
                            guest_connects(nat, nettest.WEB, 7, n), base)
        allc = show_connect("allow guest -> allowed.test",
                            guest_connects(allow, "allowed.test", 7, n),
                            base)
        print("  allow / nat: x%.2f" % (allc / natc))

        print("download of %d MiB over HTTP:" % a.size)
        url = "http://%s/bytes/%d" % (nettest.WEB, size)
        base = show_rate("host <- server (direct)", host_download(url))
        natr = show_rate("nat guest <- server",
                         guest_download(nat, url, size, d.proc.pid), base)
        allr = show_rate("allow guest <- allowed.test", guest_download(
            allow, "http://allowed.test/bytes/%d" % size, size, d.proc.pid),
            base)
        print("  allow / nat: x%.2f" % (allr / natr))

        print("publish (host -> busybox httpd in the guest):")
        base = show_connect("host GET / from server (direct)",
                            host_gets("http://%s/" % nettest.WEB, n))
        show_connect("host GET small via --publish",
                     host_gets("http://127.0.0.1:%d/small" % port, n), base)
        base = show_rate("host <- server (direct)", host_download(url))
        show_rate("host <- guest via --publish", host_download(
            "http://127.0.0.1:%d/big" % port), base)
    finally:
        if d is not None and d.proc is not None:
            for v in d.list_vms():
                d.request({"op": "StopVM", "vm_id": v["vm_id"]},
                          timeout=ct.STOP_TIMEOUT)
            d.stop()
            ct.rmtree(d.dir)
        net.down()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


if __name__ == "__main__":
    main()
