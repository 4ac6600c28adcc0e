#!/usr/bin/env python3
"""Real userland on a real VM: the Debian root file system that
`cmake --build build --target image-debian` makes (python3, git, curl),
booted by StartVM's rootfs_path with capsule's own kernel and agent.

And the network modes with programs that use glibc's resolver rather than
busybox's: python's urllib and curl reach an allowed name through the
agent's DNS stub and capsuled, and nothing else (docs/network.md).
"""
import hashlib
import json

import capsuletest as ct
import nettest

net = None


def setUpModule():
    global net
    ct.require_debian()
    net = nettest.TestNet().up()


def tearDownModule():
    if net is not None:
        net.down()


class DebianCase(ct.DaemonTestCase):
    network = None

    @classmethod
    def setUpClass(cls):
        ct.require_debian()
        cls.daemon = ct.Daemon(cls.__name__, extra_args=[
            "--dns-server", nettest.DNS_ADDR])
        cls.daemon.start()
        cls.baseline_fds = ct.daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = ct.daemon_children(cls.daemon.proc.pid)
        fields = {"memory_mib": 512, "rootfs_path": ct.DEBIAN_ROOTFS}
        if cls.network is not None:
            fields["network"] = cls.network
        try:
            cls.vm = cls.daemon.start_vm(**fields)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, "vm", None) is not None:
                cls.daemon.request({"op": "StopVM", "vm_id":
                                    cls.vm["vm_id"]},
                                   timeout=ct.STOP_TIMEOUT)
        finally:
            super().tearDownClass()

    def run_in(self, argv, user=None, timeout=120):
        first = {"command": argv}
        if user is not None:
            first["user"] = user
        r = ct.run_exec(self.vm["proxy_socket_path"], None, first=first,
                        timeout=timeout)
        return (r.code, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace"))


class DebianTest(DebianCase):
    """python3, git and a login user of the image, as an agent or a CI job
    would use them."""

    def test_python(self):
        code, out, err = self.run_in(["python3", "-c", (
            "import json, sqlite3, hashlib\n"
            "db = sqlite3.connect(':memory:')\n"
            "db.execute('create table t (x)')\n"
            "db.executemany('insert into t values (?)', "
            "[(i,) for i in range(100)])\n"
            "s = db.execute('select sum(x) from t').fetchone()[0]\n"
            "print(json.dumps({'sum': s, 'sha': "
            "hashlib.sha256(b'capsule').hexdigest()[:8]}))")])
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out), {
            "sum": 4950,
            "sha": hashlib.sha256(b"capsule").hexdigest()[:8]})

    def test_git(self):
        code, out, err = self.run_in(["sh", "-c", (
            "set -e; cd /tmp && git init -q r && cd r && echo hi > f && "
            "git add f && git -c user.name=t -c user.email=t@capsule "
            "commit -qm first && git log --format=%s && git cat-file -p "
            "HEAD:f")])
        self.assertEqual((code, out), (0, "first\nhi\n"), err)

    def test_image_user(self):
        code, out, err = self.run_in(["sh", "-c", "id -un; echo $HOME; "
                                      "touch $HOME/x && echo ok"],
                                     user="capsule")
        self.assertEqual((code, out), (0, "capsule\n/home/capsule\nok\n"),
                         err)

    def test_no_network(self):
        code, out, _ = self.run_in(["python3", "-c", (
            "import socket\n"
            "try:\n"
            "    socket.create_connection(('%s', 80), timeout=5)\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused')" % nettest.WEB)])
        self.assertEqual((code, out), (0, "refused\n"))


class DebianImageTest(ct.DaemonTestCase):
    """The same tree as an OCI image (debian.oci.tar): imported through
    the CLI, run with the image's own config as the exec defaults."""

    def test_import_and_run_python(self):
        d = self.daemon
        p = d.cli("image", "import", ct.DEBIAN_OCI, "--name", "debian",
                  timeout=600)
        self.assertEqual(p.returncode, 0, p)
        name, digest = p.stdout.decode().split()[-2:]
        self.assertEqual(name, "debian")
        self.addCleanup(d.cli, "image", "rm", "debian")
        # python3 from the image's PATH, in its WorkingDir, with its Env.
        p = d.cli("run", "--image", "debian", "--", "python3", "-c",
                  "import os, sys; print(os.getcwd(), os.environ['LANG'], "
                  "sys.version_info[0])", timeout=300)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.decode().split(), ["/root", "C.UTF-8",
                                                     "3"])
        # No command: the image's Cmd (bash), reading this script.
        p = d.cli("run", "--image", "debian", input=b"echo $((6 * 7)) "
                  b"$(id -un)\n", timeout=300)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.decode().split(), ["42", "root"])
        # The VM wrote to its own layer: the store's file is unchanged
        # (same digest, still listed once).
        r = d.request({"op": "InspectImage", "image": "debian"})
        self.assertEqual(r["image"]["digest"], digest, r)
        self.assertNoLeaks()


class DebianAllowTest(DebianCase):
    """glibc's resolver and real HTTP clients under an allowlist."""

    network = {"mode": "allow", "allow": ["allowed.test"]}

    def test_python_and_curl_reach_the_allowed_name(self):
        code, out, err = self.run_in(["python3", "-c", (
            "import urllib.request\n"
            "print(urllib.request.urlopen('http://allowed.test/', "
            "timeout=20).read().decode(), end='')")])
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)
        code, out, err = self.run_in(["curl", "-sS", "--max-time", "20",
                                      "http://allowed.test/"])
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)

    def test_ipv4_only_lookups(self):
        # glibc's AI_ADDRCONFIG counts IPv4 as configured only if some
        # address other than 127.0.0.1 is: getent ahostsv4 and wget -4
        # ask for it.
        code, out, err = self.run_in(["getent", "ahostsv4", "allowed.test"])
        self.assertEqual(code, 0, (out, err))
        self.assertRegex(out, r"^127\.")
        code, out, err = self.run_in(["curl", "-4sS", "--max-time", "20",
                                      "http://allowed.test/"])
        self.assertEqual((code, out), (0, "hello from %s:80\n" %
                                       nettest.WEB), err)

    def test_dns_over_tcp_trickle_is_cut_off(self):
        # A query announced as 256 bytes, sent a byte a second, never
        # completes: the stub closes the connection after its 10 s of
        # idleness rather than keep one of its 64 slots for ever.
        code, out, err = self.run_in(["python3", "-c", (
            "import socket, time\n"
            "s = socket.create_connection(('127.0.0.1', 53))\n"
            "s.settimeout(1)\n"
            "s.sendall(b'\\x01\\x00')\n"
            "t = time.time()\n"
            "state = 'open'\n"
            "while time.time() - t < 16:\n"
            "    try:\n"
            "        s.send(b'a')\n"
            "        if s.recv(1) == b'':\n"
            "            state = 'closed'\n"
            "            break\n"
            "    except socket.timeout:\n"
            "        pass\n"
            "    except OSError:\n"
            "        state = 'closed'\n"
            "        break\n"
            "print(state, int(time.time() - t))\n")], timeout=60)
        self.assertEqual(code, 0, err)
        state, secs = out.split()
        self.assertEqual(state, "closed", out)
        self.assertLess(int(secs), 14, out)

    def test_dns_responses_are_not_answered(self):
        # A message with QR set is a response: answering it (FORMERR) would
        # let one packet spoofed from the stub's own address loop for ever.
        code, out, err = self.run_in(["python3", "-c", (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.settimeout(2)\n"
            "s.sendto(b'\\x12\\x34\\x81\\x80' + bytes(8), "
            "('127.0.0.1', 53))\n"
            "try:\n"
            "    s.recv(512)\n"
            "    print('answered')\n"
            "except socket.timeout:\n"
            "    print('silent')\n")])
        self.assertEqual((code, out), (0, "silent\n"), err)
        code, out, err = self.run_in(["getent", "hosts", "allowed.test"])
        self.assertEqual(code, 0, (out, err))

    def test_nothing_else(self):
        code, out, err = self.run_in(["python3", "-c", (
            "import socket\n"
            "for name in ('other.test', 'example.com'):\n"
            "    try:\n"
            "        socket.getaddrinfo(name, 80)\n"
            "        print(name, 'resolved')\n"
            "    except socket.gaierror:\n"
            "        print(name, 'no')\n")])
        self.assertEqual((code, out), (0, "other.test no\nexample.com no\n"),
                         err)
        code, out, _ = self.run_in(["curl", "-sS", "--max-time", "10",
                                    "http://%s/" % nettest.WEB2])
        self.assertNotEqual(code, 0)
        self.assertNotIn("hello", out)


if __name__ == "__main__":
    ct.main()
