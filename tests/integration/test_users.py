#!/usr/bin/env python3
"""Several users on one root capsuled (issue 8). With --socket-group, the
group's members use it, each seeing, stopping, running commands in and
copying from only their own VMs; root sees and stops all. Per-user limits
come from the configuration file (root is exempt), per-VM limits are
rlimits here (no systemd). The event stream shows a user only their own
VMs; Prometheus metrics over TCP and over a Unix socket; capsule doctor.

Two throwaway users in a throwaway group (groupadd/useradd, removed in
tearDownClass whatever happens); a user's requests come from a forked
child that has dropped to the user's uid, gid and groups (the user cannot
run this test's Python). At most three VMs at a time, 256 MiB each."""
import http.client
import json
import os
import grp
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
import unittest

import capsuletest as ct
from test_trust import (TestUser, _exec, _request, chmod_nofollow, mkdir_owned,
                        run_as, write_file)

USER_MAX_VMS = 1
USER_MAX_MEMORY_MIB = 512
VM_MEMORY_OVERHEAD_MIB = 4096       # QEMU under TCG maps ~1.5 GiB more
VM_TASKS_MAX = 256

CAPABILITIES = {
    "exec.streaming": True, "sandbox.file_download": True,
    "sandbox.file_upload": True, "sandbox.persistent": True,
    "sandbox.snapshot": True, "network.default_deny": True,
    "network.allowlist_egress": True, "network.guest_interface": True,
    "dns_control_or_equivalent": True}
# guests_<the other architecture>: optional, checked on its own (test_arch).
CHECKS = ["hypervisor", "acceleration", "guest_image",
          "guests_" + ("aarch64" if os.uname().machine == "x86_64" else
                       "x86_64"),
          "state_dir",
          "control_socket", "shared_folders", "resource_limits", "cgroups",
          "systemd", "vms"]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Debian's Prometheus parser (python3-prometheus-client), in Debian's
# python: the python3 running these tests may not have it.
PROM_PYTHON = "/usr/bin/python3"
PROM_PARSE = r'''
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"types": {}, "samples": {}}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out["types"][fam.name] = fam.type
    for s in fam.samples:
        key = s.name + "".join("{%s=%s}" % kv for kv in sorted(
            s.labels.items()))
        if key in out["samples"]:
            sys.exit("sample %s twice" % key)
        out["samples"][key] = s.value
print(json.dumps(out))
'''


# ---- throwaway group and users ----

def _run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)


class TestGroup:
    def __init__(self):
        for tool in ("groupadd", "groupdel", "useradd", "userdel"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s not found: cannot make users "
                                        "to send requests as" % tool)
        if os.geteuid() != 0:
            raise unittest.SkipTest("not root: cannot add users")
        self.name = "capsule-g8-" + secrets.token_hex(3)
        p = _run(["groupadd", "--system", self.name])
        if p.returncode != 0:
            raise unittest.SkipTest("groupadd %s failed (%d): %s" % (
                self.name, p.returncode, p.stderr.decode().strip()))
        self.gid = grp.getgrnam(self.name).gr_gid

    def remove(self):
        p = _run(["groupdel", self.name])
        if p.returncode != 0:
            raise AssertionError("groupdel %s failed: %s" %
                                 (self.name, p.stderr.decode()))



# ---- as a user ----

def as_user(user, fn, *args):
    return run_as(user.uid, user.gid, fn, *args, groups=user.groups)


class OwnerDaemonCase(ct.DaemonTestCase):
    """A daemon whose socket a throwaway group may use, and a throwaway
    user in that group (cls.user, cls.group): removed at the end with any
    process of the user's. setUpOwner is the hook for more set-up;
    config_text, if set, is the daemon's configuration file."""

    group = user = None
    config_text = None

    @classmethod
    def setUpClass(cls):
        cls.group = cls.user = None
        cls.group = TestGroup()
        try:
            cls.user = TestUser(cls.group)
            d = cls.daemon = ct.Daemon(cls.__name__)
            d.extra_args += ["--socket-group", cls.group.name]
            chmod_nofollow(d.dir, 0o711)
            if cls.config_text is not None:
                write_file(os.path.join(d.dir, "capsuled.conf"),
                           cls.config_text.encode())
            d.start()
            d.request({"op": "Ping"})
            cls.setUpOwner()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setUpOwner(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon is not None:
                super().tearDownClass()
        finally:
            try:
                if cls.user is not None:
                    for pid in ct.procs_of_uid(cls.user.uid):
                        os.kill(pid, signal.SIGKILL)
                    cls.user.remove()
            finally:
                if cls.group is not None:
                    cls.group.remove()

    def ask(self, req):
        return as_user(self.user, _request, self.daemon.sock, req)


def _connect_errno(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "connected"
    except OSError as e:
        return e.errno
    finally:
        s.close()


def _lines_unasked(path):
    """Every line a server sends a client that connects and sends nothing
    (a refusal comes at once, then the server closes)."""
    with ct.Conn(path, timeout=10) as c:
        out = []
        while True:
            line = c.read_line()
            if line is None:
                return out
            out.append(json.loads(line))


class FdConn(ct.Conn):
    """A Conn over a socket connected elsewhere."""

    def __init__(self, sock, path, timeout):
        self.path = path
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False


def connect_as(user, path, timeout=ct.START_TIMEOUT):
    """A connection to path made by a forked child that dropped to user:
    the kernel keeps the credentials of whoever called connect(), so the
    daemon sees the user on it however long it lasts (for event streams
    and connections held open)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        try:
            mine.close()
            os.setgroups(user.groups)
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            socket.send_fds(theirs, [b"ok"], [s.fileno()])
        except BaseException as e:
            try:
                theirs.sendall(("%s: %s" % (type(e).__name__, e)).encode())
            except BaseException:
                pass
        finally:
            os._exit(0)
    theirs.close()
    try:
        mine.settimeout(30)
        msg, fds, _, _ = socket.recv_fds(mine, 1024, 1)
    finally:
        mine.close()
        os.waitpid(pid, 0)
    if not fds:
        raise AssertionError("as uid %d: cannot connect to %s: %s" %
                             (user.uid, path, msg.decode()))
    return FdConn(socket.socket(fileno=fds[0]), path, timeout)


# ---- metrics ----



def parse_metrics(text):
    """{"types": {family: type}, "samples": {name{label=value}: value}},
    by Prometheus' own parser; fails on text it rejects."""
    if not os.access(PROM_PYTHON, os.X_OK):
        raise AssertionError("%s not found: install python3-prometheus-"
                             "client (packaging/setup-debian.sh)" %
                             PROM_PYTHON)
    p = subprocess.run([PROM_PYTHON, "-c", PROM_PARSE], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError("Prometheus' parser rejects the metrics: %s\n"
                             "--- metrics ---\n%s" %
                             (p.stderr.decode()[-2000:], text))
    return json.loads(p.stdout)


def scrape_tcp(port, target="/metrics"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", target)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


class UsersTest(ct.DaemonTestCase):
    """One root capsuled, --socket-group, limits in its config file, a VM
    of root's for the whole class."""

    group = None
    users = ()
    root_vm = None

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        cls.group = TestGroup()
        cls.users = []
        try:
            cls.users = [TestUser(cls.group), TestUser(cls.group)]
            cls.port = ct.free_port()
            d = cls.daemon = ct.Daemon(cls.__name__)
            cls.conf = write_file(os.path.join(d.dir, "capsuled.conf"), (
                "# limits for users; root is exempt\n"
                "user_max_vms = %d\n"
                "user_max_memory_mib = %d\n"
                "vm_memory_overhead_mib = %d\n"
                "vm_tasks_max = %d\n" % (USER_MAX_VMS, USER_MAX_MEMORY_MIB,
                                         VM_MEMORY_OVERHEAD_MIB,
                                         VM_TASKS_MAX)).encode())
            d.extra_args += ["--config", cls.conf, "--socket-group",
                             cls.group.name, "--metrics-listen",
                             "127.0.0.1:%d" % cls.port]
            # The users pass through the daemon's dir to the socket and to
            # their VMs' run dirs.
            chmod_nofollow(d.dir, 0o711)
            d.start()
            cls.homes = {}
            for u in cls.users:
                cls.homes[u.uid] = mkdir_owned(os.path.join(
                    d.dir, "home-%s" % u.name), u.uid, u.gid)
            d.request({"op": "Ping"})
            cls.root_vm = d.start_vm(memory_mib=256)
            cls.baseline_fds = ct.daemon_fds(d.proc.pid)
            cls.baseline_children = ct.daemon_children(d.proc.pid)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon is not None and cls.root_vm is not None:
                r = cls.daemon.request({"op": "StopVM", "vm_id":
                                        cls.root_vm["vm_id"]},
                                       timeout=ct.STOP_TIMEOUT)
                assert r.get("stopped") == [cls.root_vm["vm_id"]], r
            if cls.daemon is not None:
                super().tearDownClass()
        finally:
            try:
                for u in cls.users:
                    for pid in ct.procs_of_uid(u.uid):
                        os.kill(pid, signal.SIGKILL)
            finally:
                try:
                    for u in cls.users:
                        u.remove()
                finally:
                    cls.group.remove()

    # -- helpers --

    def ask(self, user, req):
        return as_user(user, _request, self.daemon.sock, req)

    def cli_as(self, user, *args, timeout=60):
        try:
            return subprocess.run(
                [ct.CAPSULE] + list(args), user=user.uid, group=user.gid,
                extra_groups=user.groups, cwd=self.homes[user.uid],
                env={"PATH": "/usr/bin:/bin", "HOME": self.homes[user.uid],
                     "CAPSULE_SOCKET": self.daemon.sock},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("capsule %s as %s did not finish within "
                                 "%d s" % (args, user.name, timeout)) \
                from None

    def start_as(self, user, **fields):
        req = {"op": "StartVM", "memory_mib": 256}
        req.update(fields)
        r = self.ask(user, req)
        self.assertIs(r.get("ok"), True, r)
        self.addCleanup(self.stop_quietly, r["vm_id"])
        return r

    def stop_quietly(self, vm_id):
        if self.daemon.vm(vm_id) is not None:
            self.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                timeout=ct.STOP_TIMEOUT)

    def listed(self, reply):
        self.assertIs(reply.get("ok"), True, reply)
        return sorted((v["vm_id"], v["owner_uid"]) for v in reply["vms"])

    def assertRunning(self, vm):
        x = self.daemon.vm(vm["vm_id"])
        self.assertEqual((x and x["state"], x and x["pid"]),
                         ("running", vm["pid"]), x)

    # -- tests --

    def test_root_vm_is_not_the_users(self):
        u = self.users[0]
        rv = self.root_vm
        self.assertEqual(self.listed(self.ask(u, {"op": "ListVMs"})), [])
        r = self.ask(u, {"op": "StopVM", "vm_id": rv["vm_id"]})
        self.assertError(r, "not_found", "unknown vm_id %s" % rv["vm_id"])
        r = self.ask(u, {"op": "StopVM", "all": True})
        self.assertEqual((r.get("ok"), r.get("stopped")), (True, []), r)
        self.assertRunning(rv)
        # Its exec socket: the kernel refuses first (a run dir and socket
        # only root may reach) ...
        self.assertEqual(as_user(u, _connect_errno,
                                 rv["proxy_socket_path"]), 13)   # EACCES
        # ... and capsuled refuses too, should the user get that far.
        run_dir, proxy = rv["run_dir"], rv["proxy_socket_path"]
        chmod_nofollow(run_dir, 0o711)
        chmod_nofollow(proxy, 0o666)
        try:
            r = as_user(u, _lines_unasked, proxy)
        finally:
            chmod_nofollow(proxy, 0o600)
            chmod_nofollow(run_dir, 0o700)
        self.assertEqual(r, [{
            "type": "exit", "exit_code": 125, "error": "permission denied: "
            "VM %s belongs to another user" % rv["vm_id"]}])
        # Nor through the CLI, which looks VMs up as the user.
        dest = os.path.join(self.homes[u.uid], "hostname")
        for args in (("cp", "%s:/etc/hostname" % rv["vm_id"], dest),
                     ("exec", rv["vm_id"], "--", "true")):
            with self.subTest(args=args[0]):
                p = self.cli_as(u, *args)
                self.assertEqual((p.returncode, p.stderr.decode()),
                                 (125, "capsule: no VM with id or sandbox "
                                  "name %s (see `capsule ps -a`)\n" %
                                  rv["vm_id"]), p)
        self.assertFalse(os.path.lexists(dest))
        # Root still reaches it.
        r = ct.run_exec(proxy, ["echo", "root"])
        self.assertEqual((r.code, r.stdout), (0, b"root\n"), r)

    def test_users_own_vms(self):
        u1, u2 = self.users
        rv = self.root_vm
        a = self.start_as(u1)
        pd = os.path.join(self.daemon.state, "vms", a["vm_id"])
        rd = os.path.join(self.daemon.state, "run", a["vm_id"])
        self.assertEqual((a["run_dir"], a["proxy_socket_path"],
                          a["console_log_path"]),
                         (rd, os.path.join(rd, "proxy.sock"),
                          os.path.join(rd, "console.log")), a)
        # The run dir is the user's; the private dir is capsuled's.
        for path, kind, mode, uid, gid in (
                (rd, stat.S_IFDIR, 0o700, u1.uid, u1.gid),
                (os.path.join(rd, "proxy.sock"), stat.S_IFSOCK, 0o600,
                 u1.uid, u1.gid),
                (os.path.join(rd, "console.log"), stat.S_IFREG, 0o600,
                 u1.uid, u1.gid),
                (pd, stat.S_IFDIR, 0o700, 0, 0)):
            st = os.lstat(path)
            self.assertEqual((stat.S_IFMT(st.st_mode),
                              stat.S_IMODE(st.st_mode), st.st_uid,
                              st.st_gid), (kind, mode, uid, gid), path)
        self.assertEqual(sorted(os.listdir(rd)), ["console.log",
                                                  "proxy.sock"])
        # Per-VM limits without systemd: rlimits on its QEMU.
        with open("/proc/%d/limits" % a["pid"]) as f:
            limits = {l[:26].strip(): l[26:].split()[:2]
                      for l in f.read().splitlines()[1:]}
        self.assertEqual(limits["Max address space"],
                         [str((256 + VM_MEMORY_OVERHEAD_MIB) << 20)] * 2)
        self.assertEqual(limits["Max processes"], [str(VM_TASKS_MAX)] * 2)

        r = as_user(u1, _exec, a["proxy_socket_path"], ["echo", "mine"])
        self.assertEqual(r, {"exit": {"type": "exit", "exit_code": 0,
                                      "error": ""}, "stdout": "mine\n"})
        # Each sees their own; root sees all.
        self.assertEqual(self.listed(self.ask(u1, {"op": "ListVMs"})),
                         [(a["vm_id"], u1.uid)])
        # Copies of a VM run what its owner's rights opened: nobody else
        # forks it or keeps a snapshot of it, root included; another user
        # does not even see it.
        for op in ({"op": "ForkVM", "count": 1},
                   {"op": "SnapshotVM", "name": "theirs"}):
            r = self.daemon.request(dict(op, vm_id=a["vm_id"]))
            self.assertEqual((r.get("ok"), r.get("code")),
                             (False, "permission_denied"), r)
            self.assertIn("only its owner", r.get("error", ""), r)
            r = self.ask(u2, dict(op, vm_id=a["vm_id"]))
            self.assertEqual((r.get("ok"), r.get("code")),
                             (False, "not_found"), r)
        self.assertEqual(self.listed(self.ask(u2, {"op": "ListVMs"})), [])
        self.assertEqual(self.listed(self.daemon.request({"op": "ListVMs"})),
                         sorted([(a["vm_id"], u1.uid), (rv["vm_id"], 0)]))
        r = self.ask(u2, {"op": "StopVM", "vm_id": a["vm_id"]})
        self.assertError(r, "not_found", "unknown vm_id %s" % a["vm_id"])
        self.assertEqual(as_user(u2, _connect_errno,
                                 a["proxy_socket_path"]), 13)
        p = self.cli_as(u2, "cp", "%s:/etc/hostname" % a["vm_id"],
                        os.path.join(self.homes[u2.uid], "x"))
        self.assertEqual(p.returncode, 125, p)
        self.assertRunning(a)

        # Limits: u1 has its one VM; u2 may not ask for more memory than
        # its share; root may do either.
        r = self.ask(u1, {"op": "StartVM", "memory_mib": 256})
        self.assertError(r, "limit_exceeded")
        self.assertEqual(r["error"], "uid %d may run at most %d VMs at once "
                         "(user_max_vms) and runs 1" % (u1.uid,
                                                        USER_MAX_VMS))
        r = self.ask(u2, {"op": "StartVM", "memory_mib": 768})
        self.assertError(r, "limit_exceeded")
        self.assertEqual(r["error"], "uid %d may use at most %d MiB of VM "
                         "memory at once (user_max_memory_mib); this VM "
                         "would make it 768" % (u2.uid, USER_MAX_MEMORY_MIB))
        self.assertEqual(self.listed(self.ask(u2, {"op": "ListVMs"})), [])
        x = self.daemon.start_vm(memory_mib=256)
        r = self.daemon.request({"op": "StopVM", "vm_id": x["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [x["vm_id"]], r)

        # "Stop all" stops the caller's own.
        b = self.start_as(u2)
        r = self.ask(u1, {"op": "StopVM", "all": True})
        self.assertEqual((r.get("ok"), r.get("stopped")),
                         (True, [a["vm_id"]]), r)
        self.assertFalse(ct.pid_alive(a["pid"]))
        self.assertFalse(os.path.lexists(rd))
        self.assertFalse(os.path.lexists(pd))
        self.assertRunning(b)
        self.assertRunning(rv)
        p = self.cli_as(u2, "stop", "--all")
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (0, b["vm_id"].encode() + b"\n", b""), p)
        self.assertIsNone(self.daemon.vm(b["vm_id"]))
        self.assertEqual(self.listed(self.daemon.request({"op": "ListVMs"})),
                         [(rv["vm_id"], 0)])

    def read_events(self, conn, until, timeout=60):
        """Event lines from conn until until(events) holds."""
        events = []
        end = time.monotonic() + timeout
        while not until(events):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("events: timed out; so far %r" % events)
            events.append(conn.read_json(timeout=left))
        return events

    def assertNoMoreEvents(self, conn, wait=1.5):
        try:
            line = conn.read_line(timeout=wait)
        except (socket.timeout, TimeoutError):
            return
        self.fail("an event this subscriber should not see: %r" % line)

    def test_events(self):
        u1, u2 = self.users
        rv = self.root_vm
        root_ev = self.daemon.connect()
        self.addCleanup(root_ev.close)
        self.assertEqual(root_ev.request({"op": "Events"}), {"ok": True})
        ev1 = connect_as(u1, self.daemon.sock)
        self.addCleanup(ev1.close)
        self.assertEqual(ev1.request({"op": "Events"}), {"ok": True})
        ev2 = connect_as(u2, self.daemon.sock)
        self.addCleanup(ev2.close)
        self.assertEqual(ev2.request({"op": "Events"}), {"ok": True})
        # The CLI's stream, as u1.
        pid = self.daemon.proc.pid
        nfds = len(ct.daemon_fds(pid))
        cli = subprocess.Popen(
            [ct.CAPSULE, "events", "--json"], user=u1.uid, group=u1.gid,
            extra_groups=u1.groups, cwd=self.homes[u1.uid],
            env={"PATH": "/usr/bin:/bin", "CAPSULE_SOCKET":
                 self.daemon.sock}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(cli.wait)
        self.addCleanup(cli.kill)
        self.assertTrue(ct.wait_for(lambda: len(ct.daemon_fds(pid)) > nfds,
                                    10), "capsule events did not connect")
        time.sleep(0.5)

        # Root's command in root's VM; u1's VM from start to stop.
        r = ct.run_exec(rv["proxy_socket_path"], ["true"])
        self.assertEqual(r.code, 0, r)
        a = self.start_as(u1)
        r = as_user(u1, _exec, a["proxy_socket_path"], ["echo", "hi"])
        self.assertEqual(r["exit"]["exit_code"], 0, r)
        r = self.ask(u1, {"op": "StopVM", "vm_id": a["vm_id"]})
        self.assertEqual(r.get("stopped"), [a["vm_id"]], r)

        def saw_stopped(vm_id):
            return lambda evs: any(e["event"] == "stopped" and
                                   e.get("vm_id") == vm_id for e in evs)

        mine = self.read_events(ev1, saw_stopped(a["vm_id"]))
        self.assertEqual([e["event"] for e in mine],
                         ["created", "started", "ready", "exec_started",
                          "exec_ended", "stopping", "stopped"], mine)
        for e in mine:
            self.assertEqual((e["vm_id"], e["owner_uid"]),
                             (a["vm_id"], u1.uid), e)
            self.assertRegex(e["time"], TIME_RE)
        seqs = [e["seq"] for e in mine]
        self.assertEqual(seqs, sorted(set(seqs)), mine)
        ev = {e["event"]: e for e in mine}
        self.assertEqual(ev["started"]["pid"], a["pid"])
        self.assertEqual(ev["ready"]["vm_ready"], a["timing_ms"]["vm_ready"])
        self.assertEqual((ev["exec_started"].get("argv0"),
                          ev["exec_started"].get("detach", False)),
                         ("echo", False), ev["exec_started"])
        self.assertEqual((ev["exec_ended"]["exec"], ev["exec_ended"]
                          ["exit_code"], "signal" in ev["exec_ended"]),
                         (ev["exec_started"]["exec"], 0, False))

        # Root's stream: everything, in order, with root's own VM too.
        everything = self.read_events(root_ev, saw_stopped(a["vm_id"]))
        self.assertEqual([e for e in everything if e.get("vm_id") ==
                          a["vm_id"]], mine)
        self.assertEqual([(e["event"], e["owner_uid"], e.get("argv0"))
                          for e in everything if e.get("vm_id") ==
                          rv["vm_id"]],
                         [("exec_started", 0, "true"),
                          ("exec_ended", 0, None)])
        seqs = [e["seq"] for e in everything]
        self.assertEqual(seqs, sorted(set(seqs)), everything)

        # A crash, seen by root; not by the users.
        c = self.daemon.start_vm(memory_mib=256)
        self.addCleanup(self.stop_quietly, c["vm_id"])
        os.kill(c["pid"], signal.SIGKILL)
        crash = self.read_events(root_ev, lambda evs: any(
            e["event"] == "crashed" for e in evs))
        self.assertEqual([(e["event"], e["vm_id"]) for e in crash],
                         [(n, c["vm_id"]) for n in
                          ("created", "started", "ready", "crashed")])
        x = self.daemon.vm(c["vm_id"])
        self.assertEqual((x["state"], crash[-1]["error"]),
                         ("crashed", x["error"]), x)
        self.assertIn("was killed by signal 9", x["error"])
        r = self.daemon.request({"op": "StopVM", "vm_id": c["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [c["vm_id"]], r)
        self.assertNoMoreEvents(ev1)
        self.assertNoMoreEvents(ev2, wait=0.5)

        # The CLI printed the same lines as u1's raw stream.
        cli.kill()
        out, err = cli.communicate(timeout=10)
        self.assertEqual([json.loads(l) for l in out.splitlines()], mine,
                         err)

    def scrape(self):
        status, ctype, text = scrape_tcp(self.port)
        self.assertEqual((status, ctype), (200, "text/plain; version=0.0.4; "
                                                "charset=utf-8"))
        return parse_metrics(text)

    def test_metrics_tcp(self):
        before = self.scrape()
        types = before["types"]
        want = {"capsule_vms": "gauge", "capsule_vm_starts": "counter",
                "capsule_vm_start_failures": "counter",
                "capsule_vm_crashes": "counter",
                "capsule_vm_stops": "counter",
                "capsule_vms_adopted": "counter",
                "capsule_vm_start_seconds": "histogram",
                "capsule_execs": "counter",
                "capsule_exec_failures": "counter",
                "capsule_exec_refused": "counter",
                "capsule_exec_bytes": "counter",
                "process_resident_memory_bytes": "gauge",
                "process_open_fds": "gauge"}
        self.assertEqual(types, want)
        s0 = before["samples"]
        self.assertEqual(sorted(k for k in s0 if k.startswith("capsule_vms{")),
                         sorted('capsule_vms{state=%s}' % st for st in (
                             "starting", "running", "unresponsive",
                             "paused", "stopping", "stopped", "crashed")))
        self.assertGreater(s0["process_resident_memory_bytes"], 1 << 20)

        # A start, three commands with known byte counts, a stop.
        v = self.daemon.start_vm(memory_mib=256)
        self.addCleanup(self.stop_quietly, v["vm_id"])
        px = v["proxy_socket_path"]
        r = ct.run_exec(px, ["head", "-c", "12345", "/dev/zero"])
        self.assertEqual((r.code, len(r.stdout)), (0, 12345), r)
        r = ct.run_exec(px, ["sh", "-c", "head -c 321 /dev/zero >&2"])
        self.assertEqual((r.code, len(r.stderr)), (0, 321), r)
        r = ct.run_exec(px, ["cat"], stdin=b"x" * 777)
        self.assertEqual((r.code, len(r.stdout)), (0, 777), r)
        # A request turned down before it starts is refused, not lost.
        x = ct.Exec(px, first='{"command":[]}')
        self.addCleanup(x.close)
        r = x.wait(30)
        self.assertEqual(r.code, 125, r)
        mid = self.scrape()["samples"]

        def delta(now, key):
            return now[key] - s0[key]

        self.assertEqual(delta(mid, 'capsule_vms{state=running}'), 1)
        self.assertEqual(delta(mid, "capsule_vm_starts_total"), 1)
        self.assertEqual(delta(mid, "capsule_vm_start_seconds_count"), 1)
        self.assertAlmostEqual(delta(mid, "capsule_vm_start_seconds_sum"),
                               v["timing_ms"]["vm_ready"] / 1000.0,
                               delta=0.002)
        self.assertEqual(delta(mid, "capsule_vm_start_seconds_bucket"
                               "{le=+Inf}"), 1)
        self.assertEqual(delta(mid, "capsule_execs_total"), 3)
        self.assertEqual(delta(mid, "capsule_exec_failures_total"), 0)
        self.assertEqual(delta(mid, "capsule_exec_refused_total"), 1)
        self.assertEqual([delta(mid, "capsule_exec_bytes_total{stream=%s}" %
                                s) for s in ("stdin", "stdout", "stderr")],
                         [777, 12345 + 777, 321])
        buckets = sorted((float(k.split("{le=")[1].rstrip("}")), val)
                         for k, val in mid.items()
                         if k.startswith("capsule_vm_start_seconds_bucket"))
        self.assertEqual([b[1] for b in buckets],
                         sorted(b[1] for b in buckets), "not cumulative")
        self.assertEqual(buckets[-1], (float("inf"),
                                       mid["capsule_vm_start_seconds_count"]))
        r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)

        # A crash in the middle of a command: a crash and a lost command.
        w = self.daemon.start_vm(memory_mib=256)
        self.addCleanup(self.stop_quietly, w["vm_id"])
        x = ct.Exec(w["proxy_socket_path"], ["sh", "-c", "echo up; sleep 60"])
        self.addCleanup(x.close)
        x.read_until(lambda r: r.stdout == b"up\n")
        os.kill(w["pid"], signal.SIGKILL)
        r = x.wait(30)
        self.assertEqual(r.code, 125, r)
        self.assertTrue(ct.wait_for(lambda: (self.daemon.vm(w["vm_id"]) or
                                             {}).get("state") == "crashed",
                                    10))
        end = self.scrape()["samples"]
        self.assertEqual(delta(end, "capsule_vm_starts_total"), 2)
        self.assertEqual(delta(end, "capsule_vm_stops_total"), 1)
        self.assertEqual(delta(end, "capsule_vm_crashes_total"), 1)
        self.assertEqual(delta(end, 'capsule_vms{state=crashed}'), 1)
        self.assertEqual(delta(end, 'capsule_vms{state=running}'), 0)
        self.assertEqual(delta(end, "capsule_execs_total"), 4)
        self.assertEqual(delta(end, "capsule_exec_failures_total"), 1)
        self.assertEqual(delta(end, "capsule_exec_refused_total"), 1)
        self.assertEqual(delta(end, "capsule_vm_start_failures_total"), 0)
        self.assertEqual(delta(end, "capsule_vms_adopted_total"), 0)
        r = self.daemon.request({"op": "StopVM", "vm_id": w["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [w["vm_id"]], r)
        self.assertEqual(delta(self.scrape()["samples"],
                               'capsule_vms{state=crashed}'), 0)
        # Only /metrics is served.
        status, _, _ = scrape_tcp(self.port, "/")
        self.assertEqual(status, 404)

    def test_metrics_unix(self):
        path = os.path.join(self.daemon.dir, "metrics.sock")
        d = ct.Daemon("metrics-unix")
        self.addCleanup(d.kill)
        conf = write_file(os.path.join(d.dir, "empty.conf"), b"")
        d.extra_args += ["--config", conf, "--metrics-listen",
                         "unix:" + path]
        # A file that is not a stale socket of capsuled's stays.
        write_file(path, b"not a socket\n")
        p = subprocess.run(d.argv(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0, p)
        self.assertIn(b"metrics_listen %s exists and is not a socket" %
                      path.encode(), p.stdout)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"not a socket\n")
        os.unlink(path)
        # A stale socket (no one listening) is replaced.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        d.start()
        self.assertIn("metrics at http://unix:%s/metrics" % path,
                      d.log_text())
        st = os.lstat(path)
        self.assertEqual((stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                          st.st_uid), (stat.S_IFSOCK, 0o600, 0))
        status, text = ct.http_get_unix(path)
        self.assertEqual(status, 200)
        s0 = parse_metrics(text)["samples"]
        self.assertEqual((s0["capsule_vm_starts_total"],
                          s0["capsule_execs_total"],
                          s0["capsule_vm_stops_total"]), (0, 0, 0))
        v = d.start_vm(memory_mib=256)
        r = ct.run_exec(v["proxy_socket_path"], ["echo", "hello"])
        self.assertEqual((r.code, r.stdout), (0, b"hello\n"), r)
        r = d.request({"op": "StopVM", "vm_id": v["vm_id"]},
                      timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        status, text = ct.http_get_unix(path)
        s1 = parse_metrics(text)["samples"]
        self.assertEqual((s1["capsule_vm_starts_total"],
                          s1["capsule_execs_total"],
                          s1["capsule_vm_stops_total"],
                          s1["capsule_exec_bytes_total{stream=stdout}"]),
                         (1, 1, 1, 6))
        d.stop()
        self.assertFalse(os.path.lexists(path), "metrics socket left")

    def test_doctor(self):
        r = self.daemon.request({"op": "Doctor"})
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r["capabilities"], CAPABILITIES)
        self.assertEqual([c["name"] for c in r["checks"]], CHECKS)
        for c in r["checks"]:
            self.assertEqual(sorted(c), ["message", "name", "status"], c)
            self.assertIn(c["status"], ("pass", "warn", "fail"), c)
            self.assertTrue(c["message"], c)
        checks = {c["name"]: c for c in r["checks"]}
        self.assertEqual(checks["control_socket"], {
            "name": "control_socket", "status": "pass",
            "message": "%s, mode 0660, group %s (its members may use "
            "capsule, each seeing only their own VMs)" %
            (self.daemon.sock, self.group.name)})
        self.assertEqual(checks["guest_image"], {
            "name": "guest_image", "status": "pass",
            "message": ct.IMAGE_DIR})
        self.assertEqual(checks["hypervisor"]["status"], "pass")
        if os.access("/usr/lib/qemu/virtiofsd", os.X_OK):
            self.assertEqual(checks["shared_folders"], {
                "name": "shared_folders", "status": "pass",
                "message": "virtiofsd, one per share (docs/volumes.md)"})
        if not os.path.isdir("/run/systemd/system"):
            self.assertEqual(checks["systemd"], {
                "name": "systemd", "status": "warn", "message":
                "not running on this host: capsuled runs as a plain "
                "daemon"})
            self.assertEqual(checks["resource_limits"], {
                "name": "resource_limits", "status": "warn", "message":
                "rlimits on each VM's process (address space, tasks); "
                "no CPU quota without systemd"})
        # The CLI: the same as JSON, and a verdict in its exit status.
        p = self.daemon.cli("doctor", "--json")
        self.assertEqual(p.returncode, 0, p)
        j = json.loads(p.stdout)
        self.assertEqual((j["capabilities"], [c["name"] for c in
                                              j["checks"]]),
                         (CAPABILITIES, CHECKS))
        p = self.daemon.cli("doctor")
        self.assertEqual(p.returncode, 0, p)
        for name in CHECKS:
            self.assertIn(name.encode(), p.stdout)
        # A member of the group may ask too.
        r = self.ask(self.users[0], {"op": "Doctor"})
        self.assertEqual((r.get("ok"), r.get("capabilities")),
                         (True, CAPABILITIES), r)

    def test_zz_nothing_left(self):
        self.assertEqual(self.listed(self.daemon.request({"op": "ListVMs"})),
                         [(self.root_vm["vm_id"], 0)])
        self.assertEqual(sorted(os.listdir(os.path.join(self.daemon.state,
                                                        "run"))),
                         [self.root_vm["vm_id"]])
        for u in self.users:
            self.assertEqual(ct.procs_of_uid(u.uid), [])
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
