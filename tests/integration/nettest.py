"""A test network on this machine only.

A network namespace of the test's own, joined to the host by a veth pair,
with addresses from the documentation ranges (RFC 5737), a DNS server for
the test names (dnsmasq, in the namespace) and small servers
(netserver.py). Nothing here sends a packet anywhere but into that
namespace, and TestNet.down() removes all of it: the namespace (with the
veth pair), the host routes to it, the processes.

    host  198.51.100.1  ---veth---  198.51.100.2  the namespace: DNS :53
                                       203.0.113.10-13, .200 on its lo
                                       (and 10.9.8.7, nothing on it)

(192.0.2.0/24 is left alone: some machines here use it for real.) If the
host already routes either range, the tests are skipped rather than
disturb it.
"""
import os
import secrets
import socket
import struct
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

HOST_ADDR = "198.51.100.1"
DNS_ADDR = "198.51.100.2"
LINK = "198.51.100.0/24"
WEB = "203.0.113.10"          # allowed.test
WEB2 = "203.0.113.11"         # other.test
WILD = "203.0.113.12"         # wild.test
SUB_WILD = "203.0.113.13"     # sub.wild.test
UNNAMED = "203.0.113.200"     # no name; outside 203.0.113.0/25
SERVER_ADDRS = (WEB, WEB2, WILD, SUB_WILD, UNNAMED)
# private.test's address: refused by every policy the tests use, but should
# anything ever connect to it, it is routed into the namespace too, where
# nothing listens on it.
PRIVATE = "10.9.8.7"
ROUTES = ("203.0.113.0/24", PRIVATE + "/32")

# name -> the address dnsmasq answers (anything else under .test: NXDOMAIN)
NAMES = {
    "allowed.test": WEB,
    "other.test": WEB2,
    "wild.test": WILD,
    "sub.wild.test": SUB_WILD,
    "private.test": PRIVATE,
    "meta.test": "169.254.169.254",
    "loop.test": "127.0.0.1",
}


def _ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args),
                                            p.stderr.decode().strip()))
    return p


def require():
    if os.geteuid() != 0:
        raise unittest.SkipTest("not root: cannot make a network namespace")
    routes = _ip("-4", "route", "show", "table", "all").stdout.decode()
    for r in (LINK,) + ROUTES:
        net = r.split("/")[0].rsplit(".", 1)[0] + "."
        if net in routes:
            raise unittest.SkipTest("this host already routes %s; the "
                                    "network tests would disturb it" % r)
    for tool in ("ip", "dnsmasq"):
        if shutil.which(tool) is None and not os.path.exists(
                "/usr/sbin/" + tool):
            raise unittest.SkipTest("%s not found (packaging/setup-debian.sh "
                                    "installs it)" % tool)


def resolve(name, server=DNS_ADDR, timeout=0.5):
    """One A query from the host: the first address, "NXDOMAIN", or None
    when there is no answer."""
    qid = secrets.randbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53))
        r = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    rid, flags, _, an = struct.unpack(">HHHH", r[:8])
    if rid != qid:
        return None
    if flags & 0xf == 3:
        return "NXDOMAIN"
    if an == 0:
        return None
    return socket.inet_ntoa(r[-4:])


class TestNet:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.ns = "capnet-" + tag
        self.vh = "cv%sh" % tag            # host side, <= 15 bytes
        self.vn = "cv%sn" % tag
        self.dir = tempfile.mkdtemp(prefix="capnet", dir="/tmp")
        self.dns_log = os.path.join(self.dir, "dnsmasq.log")
        self.counts = os.path.join(self.dir, "counts")
        self.procs = []
        self.routes = []
        self.made_ns = False

    def up(self):
        require()
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self):
        _ip("netns", "add", self.ns)
        self.made_ns = True
        _ip("link", "add", self.vh, "type", "veth", "peer", "name", self.vn)
        _ip("link", "set", self.vn, "netns", self.ns)
        _ip("addr", "add", HOST_ADDR + "/24", "dev", self.vh)
        _ip("link", "set", self.vh, "up")
        nsx = ["netns", "exec", self.ns, "ip"]
        _ip(*nsx, "link", "set", "lo", "up")
        _ip(*nsx, "addr", "add", DNS_ADDR + "/24", "dev", self.vn)
        _ip(*nsx, "link", "set", self.vn, "up")
        for a in SERVER_ADDRS + (PRIVATE,):
            _ip(*nsx, "addr", "add", a + "/32", "dev", "lo")
        for r in ROUTES:
            _ip("route", "add", r, "via", DNS_ADDR, "dev", self.vh)
            self.routes.append(r)
        self.start_dns()
        ready = os.path.join(self.dir, "ready")
        self._spawn([sys.executable, os.path.join(HERE, "netserver.py"),
                     ready, self.counts] + list(SERVER_ADDRS))
        end = time.monotonic() + 20
        while not os.path.exists(ready):
            if time.monotonic() > end:
                raise AssertionError("the test servers did not start")
            time.sleep(0.05)

    def _spawn(self, argv):
        with open(os.path.join(self.dir, "stderr"), "ab") as err:
            p = subprocess.Popen(["ip", "netns", "exec", self.ns] + argv,
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(p)
        return p

    def start_dns(self):
        argv = [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq",
                "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--user=root",
                "--listen-address=" + DNS_ADDR, "--bind-interfaces",
                "--port=53", "--local=/test/", "--log-queries",
                "--log-facility=" + self.dns_log, "--pid-file="]
        for name, addr in NAMES.items():
            argv.append("--address=/%s/%s" % (name, addr))
        self.dns = self._spawn(argv)
        end = time.monotonic() + 10
        while resolve("ready.test") != "NXDOMAIN":
            if time.monotonic() > end or self.dns.poll() is not None:
                raise AssertionError("dnsmasq did not start")
            time.sleep(0.05)

    def stop_dns(self):
        if self.dns.poll() is None:
            self.dns.send_signal(signal.SIGTERM)
            self.dns.wait(10)

    def dns_queries(self):
        """The names dnsmasq was asked for, in order, in lower case (a
        resolver may randomise the case of what it asks, as evdns does)."""
        try:
            with open(self.dns_log) as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            # "... dnsmasq[N]: query[A] allowed.test from 192.0.2.1"
            if "query[" in line:
                out.append(line.split("query[", 1)[1].split()[1].lower())
        return out

    def udp_count(self):
        try:
            with open(self.counts) as f:
                return sum(1 for line in f if line.startswith("udp"))
        except OSError:
            return 0

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        self.procs = []
        for r in self.routes:
            _ip("route", "del", r, "via", DNS_ADDR, check=False)
        self.routes = []
        if self.made_ns:
            # The veth pair goes with the namespace.
            _ip("netns", "del", self.ns, check=False)
            _ip("link", "del", self.vh, check=False)
            self.made_ns = False
        shutil.rmtree(self.dir, ignore_errors=True)
