#!/usr/bin/env python3
"""Network modes on real VMs (docs/network.md): none (the default: only lo),
allow (no NIC; a host-enforced allowlist with confined DNS), nat (QEMU's
user network), and published ports in all of them.

Every packet stays on this machine: the servers and the DNS server the
tests use live in a network namespace the tests make (nettest.py), with
addresses from the documentation ranges, and capsuled resolves names with
that DNS server (--dns-server). Inside the guest only busybox tools run:
programs that know nothing of proxies (wget, nc, nslookup, tftp).
"""
import json
import os
import random
import socket
import subprocess
import threading
import time
import unittest

import capsuletest as ct
import nettest

net = None


def setUpModule():
    global net
    ct.require_build()
    net = nettest.TestNet().up()


def tearDownModule():
    if net is not None:
        net.down()


def sh(vm, script, timeout=60):
    """Runs script in the guest: (exit code, stdout, stderr) as text."""
    r = ct.run_exec(vm["proxy_socket_path"], ["sh", "-c", script],
                    timeout=timeout)
    return (r.code, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


class NetDaemonTestCase(ct.DaemonTestCase):
    """A daemon that resolves with the test DNS server."""

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        cls.daemon = ct.Daemon(cls.__name__, extra_args=[
            "--dns-server", nettest.DNS_ADDR])
        cls.daemon.start()
        cls.daemon.request({"op": "Ping"})
        cls.baseline_fds = ct.daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = ct.daemon_children(cls.daemon.proc.pid)
        cls.vms = []
        try:
            cls.setUpVMs()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setUpVMs(cls):
        pass

    @classmethod
    def start(cls, **fields):
        v = cls.daemon.start_vm(memory_mib=256, **fields)
        cls.vms.append(v["vm_id"])
        return v

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon is not None and cls.daemon.proc is not None:
                for vm_id in cls.vms:
                    cls.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                       timeout=ct.STOP_TIMEOUT)
        finally:
            super().tearDownClass()

    def vm_entry(self, vm_id):
        v = self.daemon.vm(vm_id)
        self.assertIsNotNone(v)
        return v

    def log_since(self, mark):
        return self.daemon.log_text()[mark:]


class NoneModeTest(NetDaemonTestCase):
    """No NIC: lo works, nothing else resolves or connects."""

    @classmethod
    def setUpVMs(cls):
        cls.vm = cls.start()

    def test_listed_as_none(self):
        v = self.vm_entry(self.vm["vm_id"])
        self.assertEqual(v["network"], {"mode": "none"})
        self.assertEqual(v["publish"], [])
        self.assertNotIn("egress", v)

    def test_loopback_works(self):
        code, out, err = sh(self.vm, "mkdir -p /tmp/w && echo page > "
                            "/tmp/w/index.html && httpd -p 127.0.0.1:8000 "
                            "-h /tmp/w && wget -qO- http://127.0.0.1:8000/")
        self.assertEqual((code, out), (0, "page\n"), err)

    def test_nothing_else(self):
        asked = len(net.dns_queries())
        code, out, _ = sh(self.vm, "ls /sys/class/net")
        self.assertEqual((code, out.split()), (0, ["lo"]))
        for script in ("nslookup allowed.test",
                       "nslookup allowed.test " + nettest.DNS_ADDR,
                       "timeout 5 wget -qO- http://%s/" % nettest.WEB,
                       "echo x | nc -w 5 %s 7" % nettest.WEB):
            code, out, err = sh(self.vm, script)
            self.assertNotEqual(code, 0, (script, out, err))
            self.assertNotIn("hello", out)
        self.assertEqual(net.dns_queries()[asked:], [])


POLICY = ["allowed.test", "allowed.test:7", "*.wild.test", "private.test",
          "meta.test", "loop.test", "203.0.113.0/25:8080"]


class AllowModeTest(NetDaemonTestCase):
    """Only what the policy names gets out, by name or by address, and the
    guest's DNS reaches nothing but capsuled's decisions."""

    @classmethod
    def setUpVMs(cls):
        cls.vm = cls.start(network={"mode": "allow", "allow": POLICY})

    def test_listed_with_its_policy(self):
        v = self.vm_entry(self.vm["vm_id"])
        self.assertEqual(v["network"], {"mode": "allow", "allow": POLICY})
        self.assertEqual(set(v["egress"]), {
            "dns_allowed", "dns_denied", "connections_allowed",
            "connections_denied", "connections_failed", "connections_open",
            "bytes_out", "bytes_in"})

    def test_allowed_name_by_http_and_raw_tcp(self):
        before = self.vm_entry(self.vm["vm_id"])["egress"]
        code, out, err = sh(self.vm, "wget -qO- http://allowed.test/x")
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)
        code, out, err = sh(self.vm, "echo ping | nc allowed.test 7")
        self.assertEqual((code, out), (0, "ping\n"), err)
        # The guest saw an address of the agent's, not the real one.
        code, out, _ = sh(self.vm, "nslookup allowed.test")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"Address:\s+127\.(6[4-9]|[7-9][0-9]|1[01][0-9]|"
                         r"12[0-7])\.")
        self.assertNotIn(nettest.WEB, out)
        after = self.vm_entry(self.vm["vm_id"])["egress"]
        self.assertGreaterEqual(after["connections_allowed"] -
                                before["connections_allowed"], 2)
        self.assertGreater(after["bytes_in"], before["bytes_in"])
        self.assertGreater(after["bytes_out"], before["bytes_out"])
        self.assertTrue(ct.wait_for(lambda: self.vm_entry(
            self.vm["vm_id"])["egress"]["connections_open"] == 0, 10))
        log = self.daemon.log_text()
        self.assertRegex(log, r"egress allowed\.test:80 \(203\.0\.113\.10\) "
                         r"closed: \d+ bytes out, \d+ in")

    def test_large_download_is_exact(self):
        # Megabytes through the channel: the credit flow both ways, with a
        # server far faster than the guest.
        import hashlib
        import urllib.request
        url = "/bytes/%d" % (8 << 20)
        want = hashlib.sha256(urllib.request.urlopen(
            "http://%s%s" % (nettest.WEB, url), timeout=60).read())
        code, out, err = sh(self.vm, "wget -qO- http://allowed.test%s | "
                            "sha256sum" % url, timeout=120)
        self.assertEqual((code, out.split()[:1]), (0, [want.hexdigest()]),
                         err)

    def test_unlisted_name_is_never_asked_upstream(self):
        mark = len(self.daemon.log_text())
        code, out, err = sh(self.vm, "nslookup other.test; "
                            "timeout 5 wget -qO- http://other.test/")
        self.assertNotEqual(code, 0)
        self.assertNotIn("hello", out)
        self.assertNotIn(nettest.WEB2, out)
        self.assertIn("dns other.test denied: not in this VM's network "
                      "policy (nothing was asked upstream)",
                      self.log_since(mark))
        self.assertNotIn("other.test", net.dns_queries())
        # Nor made-up names below a listed one.
        code, _, _ = sh(self.vm, "nslookup secret-data.allowed.test")
        self.assertNotEqual(code, 0)
        self.assertNotIn("secret-data.allowed.test", net.dns_queries())

    def test_suffix_matches_subdomains_only(self):
        code, out, err = sh(self.vm, "wget -qO- http://sub.wild.test/")
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.SUB_WILD), err)
        code, out, _ = sh(self.vm, "nslookup wild.test; "
                          "timeout 5 wget -qO- http://wild.test/")
        self.assertNotEqual(code, 0)
        self.assertNotIn("hello", out)
        self.assertNotIn("wild.test", [q for q in net.dns_queries()
                                       if q == "wild.test"])

    def test_unlisted_port_is_refused(self):
        mark = len(self.daemon.log_text())
        code, out, _ = sh(self.vm, "timeout 5 wget -qO- http://allowed.test:8080/")
        self.assertNotEqual(code, 0)
        self.assertNotIn("hello", out)
        self.assertIn("egress allowed.test:8080 denied: not in this VM's "
                      "network policy", self.log_since(mark))

    def test_address_ranges(self):
        # An address entry lets a literal address through, on its port.
        code, out, err = sh(self.vm, "wget -qO- http://%s:8080/" %
                            nettest.WEB2)
        self.assertEqual((code, out), (0, "hello from %s:8080\n" %
                                       nettest.WEB2), err)
        mark = len(self.daemon.log_text())
        # Not on another port, and not outside the range.
        for url in ("http://%s/" % nettest.WEB2,
                    "http://%s:8080/" % nettest.UNNAMED):
            code, out, _ = sh(self.vm, "timeout 5 wget -qO- " + url)
            self.assertNotEqual(code, 0, url)
            self.assertNotIn("hello", out)
        self.assertIn("egress %s:80 denied" % nettest.WEB2,
                      self.log_since(mark))

    def test_names_pointing_inside_are_refused(self):
        mark = len(self.daemon.log_text())
        for name, addr, kind in (("private.test", "10.9.8.7", "private"),
                                 ("meta.test", "169.254.169.254",
                                  "cloud metadata"),
                                 ("loop.test", "127.0.0.1", "loopback")):
            code, out, _ = sh(self.vm, "nslookup %s; timeout 5 wget -qO- "
                              "http://%s/" % (name, name))
            self.assertNotEqual(code, 0, name)
            # nslookup names its server (the stub, 127.0.0.1) first
            self.assertIn("can't find %s" % name, out)
            self.assertNotIn(addr, out.split("can't find", 1)[1])
            self.assertIn("dns %s denied: %s resolves only to addresses "
                          "the policy does not name (%s is %s)" %
                          (name, name, addr, kind), self.log_since(mark))

    def test_bypasses_fail(self):
        udp_before = net.udp_count()
        queries_before = len(net.dns_queries())
        for script in (
                # the DNS server itself, and any other resolver
                "nslookup allowed.test %s" % nettest.DNS_ADDR,
                # a literal address no entry names
                "timeout 5 wget -qO- http://%s/" % nettest.UNNAMED,
                # (nc's own status says little: the agent accepts, then
                # resets a connection capsuled refuses; did x come back?)
                "echo x | nc -w 5 %s 7 | grep -q x" % nettest.WEB,
                # UDP
                "tftp -g -r x -l /tmp/x %s" % nettest.WEB,
                # IPv6
                "timeout 5 wget -qO- 'http://[2001:db8::1]/'"):
            code, out, err = sh(self.vm, script)
            self.assertNotEqual(code, 0, (script, out, err))
            self.assertNotIn("hello", out)
            self.assertNotIn("ping", out)
        self.assertEqual(net.udp_count(), udp_before)
        self.assertEqual(len(net.dns_queries()), queries_before)
        code, out, _ = sh(self.vm, "ls /sys/class/net")
        self.assertEqual(out.split(), ["lo"])


class WideEntriesTest(NetDaemonTestCase):
    """What a wide entry does not open: the host's own networks need an
    entry no wider than they are, and an address entry's port holds when
    a name leads to it."""

    @classmethod
    def setUpVMs(cls):
        cls.vm = cls.start(network={"mode": "allow", "allow": [
            "0.0.0.0/0:7", "*.test", "10.9.8.7:5432"]})

    def test_public_addresses_pass(self):
        code, out, err = sh(self.vm, "echo x | nc %s 7" % nettest.WEB)
        self.assertEqual((code, out), (0, "x\n"), err)

    def test_the_hosts_own_networks_do_not(self):
        mark = len(self.daemon.log_text())
        for addr, why in ((nettest.HOST_ADDR, "an address of this host"),
                          ("198.51.100.77",
                           "on a network this host is attached to"),
                          (nettest.PRIVATE, "private")):
            code, out, err = sh(self.vm, "echo x | nc -w 5 %s 7 | grep -q x"
                                % addr)
            self.assertNotEqual(code, 0, (addr, out, err))
            self.assertIn("egress %s:7 denied: %s is %s" % (addr, addr, why),
                          self.log_since(mark))

    def test_an_address_entrys_port_holds_for_names(self):
        # private.test is 10.9.8.7, named with port 5432 only: the name
        # resolves (the entry names the address), port 80 stays shut.
        mark = len(self.daemon.log_text())
        code, out, _ = sh(self.vm, "timeout 10 wget -qO- "
                          "http://private.test/")
        self.assertNotEqual(code, 0, out)
        self.assertIn("egress private.test:80 denied: private.test resolves "
                      "only to addresses the policy does not name (10.9.8.7 "
                      "is private)", self.log_since(mark))


class PolicyErrorTest(NetDaemonTestCase):
    """A malformed policy fails StartVM, naming the entry, and leaves
    nothing behind."""

    def test_bad_policies(self):
        cases = [
            ({"mode": "allow", "allow": ["bad_name!"]}, "allow[0]"),
            ({"mode": "allow", "allow": ["ok.test", "10.0.0.0/33"]},
             "allow[1] \"10.0.0.0/33\""),
            ({"mode": "allow", "allow": ["host.test:0"]}, "host.test:0"),
            ({"mode": "allow", "allow": ["host.test:70000"]},
             "host.test:70000"),
            ({"mode": "allow", "allow": ["2001:db8::1"]}, "IPv6"),
            ({"mode": "allow", "allow": ["*."]}, "allow[0]"),
            ({"mode": "allow", "allow": [7]}, "allow[0]"),
            ({"mode": "bogus"}, "network"),
            ({"mode": "allow", "allow": [], "extra": 1}, "extra"),
            ({"mode": "nat", "allow": ["a.test"]}, "allow"),
            ("open", "network"),
        ]
        for network, needle in cases:
            with self.subTest(network=network):
                r = self.daemon.request({"op": "StartVM", "network": network})
                self.assertError(r, "invalid_argument", needle)
        for publish, needle in ((["80"], "\"publish\"[0] \"80\""),
                                (["8080:80", "8080:81"], "again"),
                                (["1.2.3.4.5:80:80"], "\"publish\"[0]")):
            with self.subTest(publish=publish):
                r = self.daemon.request({"op": "StartVM", "publish": publish})
                self.assertError(r, "invalid_argument", needle)
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertEqual(ct.qemu_procs(self.daemon.dir), [])

    def test_guest_that_cannot_set_up_allow_does_not_start(self):
        # The guest kernel refuses to load nf_tables: the agent cannot
        # install its half, says so, and the VM never runs.
        r = self.daemon.request({
            "op": "StartVM", "memory_mib": 256,
            "boot_args": "module_blacklist=nf_tables",
            "network": {"mode": "allow", "allow": ["allowed.test"]}},
            timeout=ct.START_TIMEOUT)
        self.assertError(r, "vm_failed", "could not set up network mode "
                         "allow", "nf_tables")
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertTrue(ct.wait_for(
            lambda: ct.qemu_procs(self.daemon.dir) == [], 10))
        self.assertNoLeaks()


class FailClosedTest(NetDaemonTestCase):
    """When capsuled's egress cannot work, guest connections fail; nothing
    opens up instead."""

    @classmethod
    def setUpVMs(cls):
        cls.vm = cls.start(network={"mode": "allow",
                                    "allow": ["allowed.test"]})

    def test_dns_gone(self):
        code, out, err = sh(self.vm, "wget -qO- http://allowed.test/")
        self.assertEqual(code, 0, err)
        net.stop_dns()
        try:
            # The guest still has the name's address; capsuled cannot
            # resolve it any more: the connection fails.
            code, out, err = sh(self.vm, "timeout 20 wget -qO- "
                                "http://allowed.test/", timeout=60)
            self.assertNotEqual(code, 0)
            self.assertNotIn("hello", out)
        finally:
            net.start_dns()


class NatModeTest(NetDaemonTestCase):
    """A NIC on QEMU's user network: full outbound access (not isolated),
    the host reachable as the gateway."""

    @classmethod
    def setUpVMs(cls):
        cls.vm = cls.start(network="nat")

    def test_reaches_out_and_the_host(self):
        code, out, err = sh(self.vm, "wget -qO- http://%s/" % nettest.WEB)
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]

        def serve():
            c, _ = srv.accept()
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n")
            c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            code, out, err = sh(self.vm, "wget -qO- http://10.0.2.2:%d/" %
                                port)
            self.assertEqual((code, out), (0, "host\n"), err)
        finally:
            srv.close()
        code, out, _ = sh(self.vm, "ip -4 addr show; ip route")
        self.assertIn("10.0.2.15/24", out)
        self.assertIn("default via 10.0.2.2", out)
        v = self.vm_entry(self.vm["vm_id"])
        self.assertEqual(v["network"], {"mode": "nat"})




class PublishTest(NetDaemonTestCase):
    """--publish: host connections reach a guest port, over the channel,
    with no NIC; many at once, byte-exact, half-close passed through."""

    CONCURRENT = 50

    @classmethod
    def setUpVMs(cls):
        cls.http_port = ct.free_port()
        cls.echo_port = ct.free_port()
        cls.vm = cls.start(publish=[
            "127.0.0.1:%d:8000" % cls.http_port,
            "%d:8001" % cls.echo_port])
        # /tmp/w/blob (1 MiB) and /tmp/w/0 .. /tmp/w/49, each a different
        # size, for the concurrent downloads
        r = ct.run_exec(cls.vm["proxy_socket_path"], None, first={
            "command": ["sh", "-c", "mkdir -p /tmp/w && head -c 1048576 "
                        "/dev/urandom > /tmp/w/blob && for i in $(seq 0 %d);"
                        " do head -c $((16384 + 1000 * i)) /dev/urandom > "
                        "/tmp/w/$i; done && exec httpd -f -p 127.0.0.1:8000 "
                        "-h /tmp/w" % (cls.CONCURRENT - 1)], "detach": True})
        assert r.code == 0, r
        r = ct.run_exec(cls.vm["proxy_socket_path"], None, first={
            "command": ["nc", "-ll", "-p", "8001", "-e", "cat"],
            "detach": True})
        assert r.code == 0, r
        code, out, _ = sh(cls.vm, "for i in $(seq 50); do test -e "
                          "/tmp/w/%d && break; sleep 0.2; done; cd /tmp/w && "
                          "sha256sum *" % (cls.CONCURRENT - 1))
        cls.sums = dict(reversed(line.split()) for line in out.splitlines())
        assert len(cls.sums) == cls.CONCURRENT + 1, out

    def test_listed(self):
        v = self.vm_entry(self.vm["vm_id"])
        self.assertEqual(v["publish"], [
            "127.0.0.1:%d:8000" % self.http_port,
            "127.0.0.1:%d:8001" % self.echo_port])

    def test_http_download_is_exact(self):
        import hashlib
        import urllib.request
        data = urllib.request.urlopen("http://127.0.0.1:%d/blob" %
                                      self.http_port, timeout=60).read()
        self.assertEqual(len(data), 1048576)
        self.assertEqual(hashlib.sha256(data).hexdigest(), self.sums["blob"])

    def test_half_close_passes_through(self):
        # The echo server answers only once it has read everything: the
        # host's FIN has to reach it through the channel.
        for size in (0, 1, 300000):
            payload = random.randbytes(size)
            c = socket.create_connection(("127.0.0.1", self.echo_port),
                                         timeout=60)
            try:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                got = ct.recv_all(c)
            finally:
                c.close()
            self.assertEqual(got, payload, size)

    def test_fifty_connections_at_once(self):
        # busybox httpd forks a server per connection, so all of them are
        # open at once (busybox nc -ll takes one at a time: no test of ours)
        import hashlib
        import urllib.request
        n = self.CONCURRENT
        results = [None] * n

        def get(i):
            try:
                results[i] = urllib.request.urlopen(
                    "http://127.0.0.1:%d/%d" % (self.http_port, i),
                    timeout=60).read()
            except OSError as e:
                results[i] = e
        threads = [threading.Thread(target=get, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        bad = [i for i in range(n) if not isinstance(results[i], bytes) or
               hashlib.sha256(results[i]).hexdigest() != self.sums[str(i)]]
        self.assertEqual(bad, [], [results[i] if not isinstance(
            results[i], bytes) else len(results[i]) for i in bad][:5])

    def test_busy_port_is_a_conflict(self):
        r = self.daemon.request({"op": "StartVM", "publish": [
            "127.0.0.1:%d:80" % self.http_port]}, timeout=ct.START_TIMEOUT)
        self.assertError(r, "conflict", "in use")
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        try:
            r = self.daemon.request({"op": "StartVM", "publish": [
                "127.0.0.1:%d:80" % holder.getsockname()[1]]},
                timeout=ct.START_TIMEOUT)
            self.assertError(r, "conflict", "in use")
        finally:
            holder.close()
        self.assertEqual([v["vm_id"] for v in self.daemon.list_vms()],
                         [self.vm["vm_id"]])

    def test_nothing_listening_in_the_guest(self):
        port = ct.free_port()
        v = self.start(publish=["127.0.0.1:%d:9" % port])
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.settimeout(30)
        try:
            self.assertEqual(c.recv(10), b"")
        except ConnectionResetError:
            pass
        finally:
            c.close()
        r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        self.vms.remove(v["vm_id"])
        # The host port went with the VM.
        s = socket.socket()
        s.bind(("127.0.0.1", port))
        s.close()


class CliTest(NetDaemonTestCase):
    """The issue's own words: `capsule run --allow HOST -- wget ...` works,
    `capsule run -- wget ...` does not."""

    def run_cli(self, *args):
        p = self.daemon.cli("run", "--memory", "256", *args, input=b"",
                            timeout=180)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def test_run_with_and_without_allow(self):
        code, out, err = self.run_cli("--allow", "allowed.test", "--",
                                      "wget", "-qO-", "http://allowed.test/")
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)
        code, out, err = self.run_cli("--", "timeout", "10", "wget", "-qO-",
                                      "http://allowed.test/")
        self.assertNotEqual(code, 0, (out, err))
        self.assertNotIn("hello", out)
        code, out, err = self.run_cli("--allow", "allowed.test", "--",
                                      "timeout", "10", "wget", "-qO-",
                                      "http://other.test/")
        self.assertNotEqual(code, 0, (out, err))
        self.assertNotIn("hello", out)

    def test_bad_flags_name_the_problem(self):
        for args, needle in ((["--allow", "bad_name!"], "bad_name!"),
                             (["--network", "open"], "open"),
                             (["--network", "nat", "--allow", "a.test"],
                              "allow"),
                             (["--publish", "80"], "80")):
            with self.subTest(args=args):
                code, out, err = self.run_cli(*(args + ["--", "true"]))
                self.assertNotEqual(code, 0)
                self.assertIn(needle, err)
        self.assertEqual(self.daemon.list_vms(), [])


class ChannelBreakTest(unittest.TestCase):
    """With capsuled gone (killed), a guest's connections fail; once a new
    capsuled has taken the VM over, they work again."""

    LOOP = ("i=0; while [ $i -lt 300 ] && [ ! -e /tmp/stop ]; do "
            "if timeout 5 wget -qO- http://allowed.test/ >/dev/null 2>&1; "
            "then echo ok; else echo fail; fi >> /tmp/log; i=$((i+1)); "
            "sleep 0.2; done")

    def daemon(self, name, **kw):
        d = ct.Daemon(name, extra_args=["--dns-server", nettest.DNS_ADDR],
                      **kw)
        self.addCleanup(d.kill)
        return d.start()

    def guest_log(self, vm):
        from test_trust import exec_adopted
        r = exec_adopted(vm["proxy_socket_path"], ["cat", "/tmp/log"])
        return r.stdout.decode()

    def test_killed_daemon_fails_closed(self):
        d = self.daemon("chanbreak")
        v = d.start_vm(memory_mib=256, network={"mode": "allow",
                                                "allow": ["allowed.test"]})
        r = ct.run_exec(v["proxy_socket_path"], None, first={
            "command": ["sh", "-c", self.LOOP], "detach": True})
        self.assertEqual(r.code, 0, r)
        self.assertTrue(ct.wait_for(lambda: "ok" in self.guest_log(v), 30))
        d.proc.kill()
        d.proc.wait(10)
        time.sleep(12)          # a few attempts, each at most 5 s
        d2 = self.daemon("chanbreak-2", socket_path=d.sock,
                         state_dir=d.state)
        self.addCleanup(lambda: [os.kill(p, 9) for p, _ in
                                 ct.qemu_procs(d.dir)])
        self.assertTrue(ct.wait_for(
            lambda: self.guest_log(v).endswith("fail\nok\n"), 40),
            self.guest_log(v))
        log = self.guest_log(v)
        self.assertRegex(log, r"^(ok\n)+(fail\n)+(ok\n)+$")
        r = d2.request({"op": "StopVM", "vm_id": v["vm_id"]},
                       timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        d2.stop()


def _detach(proxy, script):
    r = ct.run_exec(proxy, None, first={"command": ["sh", "-c", script],
                                        "detach": True})
    return r.code


def _tcp_owners(remote):
    """uids of the host's established TCP sockets to remote (a.b.c.d, port)
    from /proc/net/tcp."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(remote[0]),
                                         "little"), remote[1])
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [int(r[7]) for r in rows if r[2] == want and r[3] == "01"]


class OwnerTest(unittest.TestCase):
    """A user's VM: what capsuled connects for it is the user's as the
    host's firewall sees it (owner match), not root's; and a user may not
    publish a port below 1024."""

    @classmethod
    def setUpClass(cls):
        from test_trust import TestUser, chmod_nofollow
        from test_users import TestGroup
        ct.require_build()
        cls.group = TestGroup()
        cls.user = cls.daemon = None
        try:
            cls.user = TestUser(cls.group)
            cls.daemon = ct.Daemon(cls.__name__, extra_args=[
                "--dns-server", nettest.DNS_ADDR, "--socket-group",
                cls.group.name])
            chmod_nofollow(cls.daemon.dir, 0o711)
            cls.daemon.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon is not None and cls.daemon.proc is not None:
                cls.daemon.request({"op": "StopVM", "all": True},
                                   timeout=ct.STOP_TIMEOUT)
                cls.daemon.stop()
        finally:
            if cls.user is not None:
                cls.user.remove()
            cls.group.remove()

    def as_user(self, fn, *args):
        from test_trust import run_as
        return run_as(self.user.uid, self.user.gid, fn, *args,
                      groups=self.user.groups)

    def ask(self, req):
        from test_trust import _request
        return self.as_user(_request, self.daemon.sock, req)

    def test_egress_sockets_are_the_owners(self):
        r = self.ask({"op": "StartVM", "memory_mib": 256, "network": {
            "mode": "allow", "allow": ["allowed.test:7"]}})
        self.assertIs(r.get("ok"), True, r)
        code = self.as_user(_detach, r["proxy_socket_path"],
                            "(sleep 10; echo x) | nc allowed.test 7")
        self.assertEqual(code, 0)
        self.assertTrue(ct.wait_for(
            lambda: _tcp_owners((nettest.WEB, 7)) != [], 20))
        self.assertEqual(_tcp_owners((nettest.WEB, 7)), [self.user.uid])
        r = self.daemon.request({"op": "StopVM", "vm_id": r["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertIs(r.get("ok"), True, r)

    def test_no_privileged_ports(self):
        r = self.ask({"op": "StartVM", "memory_mib": 256,
                      "publish": ["127.0.0.1:1000:80"]})
        self.assertEqual(r.get("code"), "permission_denied", r)
        self.assertIn("1000", r.get("error", ""))
        self.assertEqual(self.daemon.list_vms(), [])


if __name__ == "__main__":
    ct.main()
