#!/usr/bin/env python3
"""capsuled as a service you can leave running (issue 8): a capsuled that
is killed, or told to go with SIGTERM, leaves its VMs running and the next
one takes them over (same ids, same processes, exec, serial ports and
detached commands still there; what cannot be taken over is ended and
listed as crashed); SIGINT stops every VM; SIGHUP re-reads the
configuration file, and a bad one names its file and line; foreground by
default, --daemon once listening, a socket systemd hands over; cleanroom's
way of running capsuled as its helper, as a user, two at once; and the
CLI starting a daemon when none listens.

The user-side tests run as a throwaway system user (useradd/userdel) with
HOME and the XDG dirs in the test's temp dir. At most five VMs at a time
(256 MiB each), mostly one or two."""
import base64
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import capsuletest as ct
from test_trust import (TestUser, chmod_nofollow, exec_adopted, mkdir_owned,
                        proc_start, run_as, snap, write_file)


# ---- processes ----

def proc_stat(pid):
    """(state, ppid, pgrp, session) of pid."""
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return f[0], int(f[1]), int(f[2]), int(f[3])


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def procs_mentioning(needle):
    """Live capsuled processes whose command line mentions needle (a temp
    dir of this test)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = proc_cmdline(int(d))
        if argv and os.path.basename(argv[0]) == b"capsuled" and \
                any(needle.encode() in a for a in argv) and \
                ct.pid_alive(int(d)):
            out.append(int(d))
    return out


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    ct.wait_for(lambda: not any(ct.pid_alive(p) for p in pids), 10)


def peer_pid(path):
    """The pid that listens on the Unix socket at path (SO_PEERCRED)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                            struct.calcsize("3i"))
    finally:
        s.close()
    return struct.unpack("3i", cred)[0]


def fnv1a64(s):
    """The hash capsuled names a socket's own state dir by."""
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


class ConfigDaemon(ct.Daemon):
    """A capsuled whose settings all come from a file: --config and, if
    given, extra flags (which win over the file)."""

    def __init__(self, name, settings=None, flags=()):
        super().__init__(name)
        self.conf = os.path.join(self.dir, "capsuled.conf")
        self.flags = list(flags)
        self.write_conf(settings or {})

    def base_settings(self):
        return {"socket": self.sock, "state_dir": self.state,
                "image_dir": ct.IMAGE_DIR, "log_level": "debug"}

    def write_conf(self, settings, raw=None):
        """Replaces the file (a new one, then rename), mode 0600."""
        s = dict(self.base_settings(), **(settings or {}))
        text = raw if raw is not None else "# capsuled.conf\n" + "".join(
            "%s = %s\n" % kv for kv in sorted(s.items()))
        tmp = write_file(self.conf + ".new", text.encode(), 0o600)
        os.rename(tmp, self.conf)

    def argv(self):
        return [ct.CAPSULED, "--config", self.conf] + self.flags


def empty_config(dirname):
    return write_file(os.path.join(dirname, "empty.conf"), b"", 0o600)


# ---- taking VMs over ----

class TakeOverTest(unittest.TestCase):
    """A capsuled that goes away without stopping its VMs; the next one on
    the same socket and state dir."""

    PORT = "p"
    # Opens the serial port named $0 read-write, says ready, and copies
    # $1 bytes from the host to stdout.
    PORT_SCRIPT = ('for d in /sys/class/virtio-ports/*; do '
                   '[ "$(cat "$d/name")" = "$0" ] && dev=/dev/${d##*/}; done; '
                   '[ -n "$dev" ] || { echo "no port $0" >&2; exit 1; }; '
                   'exec 3<>"$dev"; echo ready >&3; head -c "$1" <&3')

    def setUp(self):
        ct.require_build()

    def new_daemon(self, name, **kw):
        d = ct.Daemon(name, **kw)
        self.addCleanup(d.kill)
        return d

    def successor(self, d, name, extra_args=()):
        d2 = ct.Daemon(name, socket_path=d.sock, state_dir=d.state,
                       extra_args=extra_args)
        self.addCleanup(d2.kill)
        # Whatever happens, no QEMU of d's outlives the test.
        self.addCleanup(lambda: kill_pids([p for p, _ in
                                           ct.qemu_procs(d.dir)]))
        d2.start()
        return d2

    def run_dir_files(self, d):
        return sorted(os.listdir(os.path.join(d.state, "run")))

    def serial_round_trip(self, vm, payload):
        """The guest reads payload from the port's host socket; returns
        (what the host got from the guest, the exec's result)."""
        path = vm["serial_ports"][self.PORT]
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        host.settimeout(60)
        result = []
        t = threading.Thread(target=lambda: result.append(ct.run_exec(
            vm["proxy_socket_path"], ["sh", "-c", self.PORT_SCRIPT,
                                      self.PORT, str(len(payload))],
            timeout=60)))
        try:
            host.connect(path)
            t.start()
            got = b""
            while len(got) < 6:
                c = host.recv(6 - len(got))
                if not c:
                    break
                got += c
            host.sendall(payload)
            t.join(70)
        finally:
            host.close()
        self.assertEqual(len(result), 1, "the guest reader hung")
        return got, result[0]

    def boot_five(self, d):
        """Five VMs, one after another: a run dir capsule makes, a run dir
        that exists, a serial port, a detached sleep, a plain one with a
        command running through this daemon."""
        made = os.path.join(d.dir, "made")
        pre = os.path.join(d.dir, "pre")
        os.mkdir(pre, 0o755)
        write_file(os.path.join(pre, "keep"), b"the caller's\n", 0o644)
        vms = {}
        vms["made"] = d.start_vm(run_dir=made, memory_mib=256)
        vms["pre"] = d.start_vm(run_dir=pre, memory_mib=256)
        vms["port"] = d.start_vm(memory_mib=256, serial_ports=[self.PORT])
        vms["detached"] = d.start_vm(memory_mib=256)
        vms["plain"] = d.start_vm(memory_mib=256)
        r = ct.run_exec(vms["detached"]["proxy_socket_path"], None,
                        first={"command": ["sleep", "3600"], "detach": True})
        self.assertEqual(r.code, 0, r)
        sleeper = r.exit["pid"]
        # The port works before, so that after is comparable.
        got, r = self.serial_round_trip(vms["port"], b"before")
        self.assertEqual((got, r.code, r.stdout), (b"ready\n", 0, b"before"),
                         r)
        longx = ct.Exec(vms["plain"]["proxy_socket_path"],
                        ["sh", "-c", "echo started; exec sleep 3599"])
        self.addCleanup(longx.close)
        longx.read_until(lambda r: r.stdout == b"started\n")
        return vms, made, pre, sleeper, longx

    def take_over_five(self, how):
        d = self.new_daemon("five-" + how).start()
        vms, made, pre, sleeper, longx = self.boot_five(d)
        pids = {k: v["pid"] for k, v in vms.items()}
        t0 = time.monotonic()
        if how == "kill":
            d.proc.kill()
            self.assertEqual(d.proc.wait(10), -signal.SIGKILL)
        else:
            d.proc.send_signal(signal.SIGTERM)
            self.assertEqual(d.proc.wait(ct.STOP_TIMEOUT), 0, d.log_text())
            print("\n  capsuled exited %.1f s after SIGTERM" %
                  (time.monotonic() - t0), end=" ")
            log = d.log_text()
            self.assertIn("leaving 5 VM(s) running for the next capsuled",
                          log)
            for k, v in sorted(vms.items()):
                self.assertIn("vm %s: left running (pid %d)" %
                              (v["vm_id"], v["pid"]), log)
            self.assertFalse(os.path.lexists(d.sock), "control socket left")
        self.assertEqual({k: ct.pid_alive(p) for k, p in pids.items()},
                         {k: True for k in pids}, "QEMU went with capsuled")
        # The command streaming through the old daemon ended for its
        # client: its connection went, after SIGTERM with an exit line
        # saying why.
        lines = []
        while True:
            m = longx.read_msg(timeout=10)
            if m is None:
                break
            lines.append(m)
        if how == "term":
            self.assertEqual(lines, [{
                "type": "exit", "exit_code": 125, "error": "capsuled is "
                "restarting; the VM keeps running"}])
        else:
            self.assertEqual(lines, [], "the old capsuled sent lines")

        metrics = os.path.join(d.dir, "metrics.sock")
        d2 = self.successor(d, "five-%s-2" % how,
                            extra_args=["--metrics-listen",
                                        "unix:" + metrics])
        print("\n  next capsuled answered %.1f s after the first went" %
              (time.monotonic() - t0), end=" ")
        listed = {x["vm_id"]: (x["state"], x["pid"], x["owner_uid"])
                  for x in d2.list_vms()}
        self.assertEqual(listed, {v["vm_id"]: ("running", v["pid"], 0)
                                  for v in vms.values()})
        log = d2.log_text()
        for k, v in sorted(vms.items()):
            self.assertIn("vm %s: taken over (pid %d, owner uid 0)" %
                          (v["vm_id"], v["pid"]), log)
        status, body = ct.http_get_unix(metrics)
        self.assertEqual(status, 200)
        self.assertIn("\ncapsule_vms_adopted_total 5\n", body)
        self.assertIn('\ncapsule_vms{state="running"} 5\n', body)

        # A command runs in each, the first one too (exec_adopted waits
        # only for the exec socket to be there).
        waited = {}
        for k, v in sorted(vms.items()):
            t1 = time.monotonic()
            r = exec_adopted(v["proxy_socket_path"], ["echo", k])
            waited[k] = time.monotonic() - t1
            self.assertEqual((r.code, r.stdout), (0, k.encode() + b"\n"),
                             (k, r))
        print("\n  first exec in each took %s s" % ", ".join(
            "%.1f" % waited[k] for k in sorted(waited)), end=" ")
        # The command whose client went is gone from the guest too
        # ("nothing keeps running unobserved"); the detached sleep runs on.
        r = ct.run_exec(vms["plain"]["proxy_socket_path"],
                        ["sh", "-c", "ps | grep -c '[s]leep 3599'"])
        self.assertEqual(r.stdout, b"0\n", r)
        r = ct.run_exec(vms["detached"]["proxy_socket_path"],
                        ["sh", "-c", "kill -0 %d && tr '\\0' ' ' < "
                         "/proc/%d/cmdline" % (sleeper, sleeper)])
        self.assertEqual((r.code, r.stdout), (0, b"sleep 3600 "), r)
        # The serial port passes bytes both ways.
        got, r = self.serial_round_trip(vms["port"], b"after")
        self.assertEqual((got, r.code, r.stdout), (b"ready\n", 0, b"after"),
                         r)
        # The exec sockets are there again, as the old ones were.
        for k, v in sorted(vms.items()):
            st = os.lstat(v["proxy_socket_path"])
            self.assertEqual((stat.S_IFMT(st.st_mode),
                              stat.S_IMODE(st.st_mode), st.st_uid),
                             (stat.S_IFSOCK, 0o600, 0), k)

        # Another round of commands leaves the new daemon as it was.
        pid = d2.proc.pid
        base_fds = ct.daemon_fds(pid)
        base_children = ct.daemon_children(pid)
        for i in range(3):
            for k, v in sorted(vms.items()):
                r = ct.run_exec(v["proxy_socket_path"],
                                ["sh", "-c", "echo $0", k])
                self.assertEqual((r.code, r.stdout), (0, k.encode() + b"\n"))
        self.assertTrue(ct.wait_for(lambda: len(ct.daemon_fds(pid)) <=
                                    len(base_fds), 10),
                        "capsuled leaks fds: had %s, now %s" %
                        (base_fds, ct.daemon_fds(pid)))
        self.assertEqual(ct.daemon_children(pid), base_children)

        # Stopping them all leaves nothing.
        r = d2.request({"op": "StopVM", "all": True},
                       timeout=ct.STOP_TIMEOUT)
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(sorted(r["stopped"]),
                         sorted(v["vm_id"] for v in vms.values()), r)
        self.assertEqual(d2.list_vms(), [])
        self.assertTrue(ct.wait_for(lambda: not ct.qemu_procs(d.dir), 5),
                        ct.qemu_procs(d.dir))
        self.assertFalse(any(ct.pid_alive(p) for p in pids.values()))
        self.assertEqual(d2.vms_dir_entries(), [])
        self.assertEqual(self.run_dir_files(d), [])
        self.assertFalse(os.path.lexists(made))
        self.assertEqual(sorted(os.listdir(pre)), ["keep"])
        d2.stop()

    def test_kill9_then_take_over_five(self):
        self.take_over_five("kill")

    def test_sigterm_then_take_over_five(self):
        self.take_over_five("term")

    def test_qemu_that_died_while_no_daemon_ran(self):
        d = self.new_daemon("gone").start()
        v = d.start_vm(memory_mib=256)
        vm_id, pid = v["vm_id"], v["pid"]
        pd = os.path.join(d.state, "vms", vm_id)
        d.proc.kill()
        d.proc.wait(10)
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(pid), 10))
        d2 = self.successor(d, "gone-2")
        why = "its qemu (pid %d) ended while capsuled was not running" % pid
        x = d2.vm(vm_id)
        self.assertEqual((x and x["state"], x and x["pid"],
                          x and x.get("error")), ("crashed", pid, why), x)
        self.assertIn("vm %s: %s" % (vm_id, why), d2.log_text())
        # Its files went at once; the listing stays until StopVM.
        self.assertFalse(os.path.lexists(pd))
        self.assertFalse(os.path.lexists(v["run_dir"]))
        self.assertEqual(self.run_dir_files(d), [])
        r = d2.request({"op": "StopVM", "vm_id": vm_id},
                       timeout=ct.STOP_TIMEOUT)
        self.assertEqual((r.get("ok"), r.get("stopped")), (True, [vm_id]), r)
        self.assertEqual(d2.list_vms(), [])
        r = d2.request({"op": "StopVM", "vm_id": vm_id})
        self.assertEqual((r.get("ok"), r.get("code")), (False, "not_found"),
                         r)
        d2.stop()

    def test_forged_hv_exe_is_not_taken_over(self):
        d = self.new_daemon("exe").start()
        v = d.start_vm(memory_mib=256)
        vm_id, pid = v["vm_id"], v["pid"]
        pd = os.path.join(d.state, "vms", vm_id)
        d.proc.kill()
        d.proc.wait(10)
        path = os.path.join(pd, "vm.json")
        with open(path) as f:
            rec = json.load(f)
        exe = os.stat("/proc/%d/exe" % pid)
        self.assertEqual((rec["hv_exe"]["dev"], rec["hv_exe"]["ino"]),
                         (exe.st_dev, exe.st_ino), rec)
        # Everything else still names the process exactly.
        self.assertEqual((rec["pid"], rec["pid_start"]),
                         (pid, proc_start(pid)), rec)
        os.unlink(path)
        write_file(path, json.dumps(dict(rec, hv_exe=dict(
            rec["hv_exe"], ino=rec["hv_exe"]["ino"] + 1))).encode())
        d2 = self.successor(d, "exe-2")
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(pid), 10),
                        "a QEMU that could not be taken over still runs")
        why = ("it could not be taken over: pid %d does not run the QEMU "
               "binary recorded for it" % pid)
        self.assertEqual([(x["vm_id"], x["state"], x.get("error"))
                          for x in d2.list_vms()],
                         [(vm_id, "crashed", why)])
        log = d2.log_text()
        self.assertNotIn("taken over (", log)
        self.assertIn("vm %s: killing its qemu process %d" % (vm_id, pid), log)
        self.assertFalse(os.path.lexists(pd))
        self.assertFalse(os.path.lexists(v["run_dir"]))
        self.assertEqual(ct.qemu_procs(d.dir), [])
        r = d2.request({"op": "StopVM", "vm_id": vm_id},
                       timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [vm_id], r)
        self.assertEqual(d2.list_vms(), [])
        d2.stop()

    def test_stop_on_disconnect_vm_is_stopped_after_take_over(self):
        d = self.new_daemon("sod").start()
        c = d.connect()
        self.addCleanup(c.close)
        v = d.start_vm(conn=c, stop_on_disconnect=True, memory_mib=256)
        w = d.start_vm(memory_mib=256)
        d.proc.kill()
        d.proc.wait(10)
        d2 = self.successor(d, "sod-2")
        gone = ct.wait_for(lambda: d2.vm(v["vm_id"]) is None and
                           not ct.pid_alive(v["pid"]), ct.STOP_TIMEOUT)
        self.assertTrue(gone, "a stop_on_disconnect VM outlived its client: "
                        "%r" % d2.vm(v["vm_id"]))
        self.assertIn("vm %s: its client went with the old capsuled; "
                      "stopping it (stop_on_disconnect)" % v["vm_id"],
                      d2.log_text())
        self.assertFalse(os.path.lexists(v["run_dir"]))
        self.assertFalse(os.path.lexists(os.path.join(d.state, "vms",
                                                      v["vm_id"])))
        # The other one is still served.
        x = d2.vm(w["vm_id"])
        self.assertEqual((x and x["state"], x and x["pid"]),
                         ("running", w["pid"]), x)
        r = exec_adopted(w["proxy_socket_path"], ["echo", "ok"])
        self.assertEqual((r.code, r.stdout), (0, b"ok\n"), r)
        r = d2.request({"op": "StopVM", "vm_id": w["vm_id"]},
                       timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [w["vm_id"]], r)
        d2.stop()

    def test_sigint_stops_every_vm(self):
        d = self.new_daemon("sigint").start()
        made = os.path.join(d.dir, "made")
        vs = [d.start_vm(run_dir=made, memory_mib=256),
              d.start_vm(memory_mib=256)]
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGINT)
        self.assertEqual(d.proc.wait(ct.STOP_TIMEOUT), 0, d.log_text())
        print("\n  capsuled exited %.1f s after SIGINT" %
              (time.monotonic() - t0), end=" ")
        self.assertFalse(any(ct.pid_alive(v["pid"]) for v in vs))
        self.assertEqual(ct.qemu_procs(d.dir), [])
        self.assertFalse(os.path.lexists(d.sock))
        self.assertFalse(os.path.lexists(made))
        self.assertEqual(d.vms_dir_entries(), [])
        self.assertEqual(self.run_dir_files(d), [])
        log = d.log_text()
        self.assertIn("Interrupt: stopping 2 VM(s)", log)
        self.assertIn("all VMs stopped; exiting", log)
        for v in vs:
            self.assertIn("vm %s: stopped" % v["vm_id"], log)
        # Nothing is left for a successor to take over.
        d2 = self.successor(d, "sigint-2")
        self.assertEqual(d2.list_vms(), [])
        self.assertNotIn("taken over", d2.log_text())
        d2.stop()


# ---- the configuration file ----

class ConfigTest(unittest.TestCase):
    """--config: errors name the file and line; a file others could change
    is refused; flags win; SIGHUP applies what can change live."""

    user = None

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        cls.user = TestUser()

    @classmethod
    def tearDownClass(cls):
        if cls.user is not None:
            kill_pids(ct.procs_of_uid(cls.user.uid))
            cls.user.remove()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.addCleanup(ct.rmtree, self.dir)

    def capsuled(self, conf, *flags):
        """capsuled --config conf on this test's own socket and state dir;
        it is expected to refuse to start."""
        sock = os.path.join(self.dir, "c.sock")
        state = os.path.join(self.dir, "state")
        try:
            p = subprocess.run([ct.CAPSULED, "--config", conf, "--socket",
                                sock, "--state-dir", state] + list(flags),
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("capsuled kept running with --config %s (it should "
                      "have refused)" % conf)
        self.assertFalse(os.path.lexists(sock), "it listened all the same")
        self.assertFalse(os.path.lexists(state), "it made its state dir")
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def conf(self, text, mode=0o600, uid=0):
        path = os.path.join(self.dir, "capsuled-%s.conf" %
                            uuid.uuid4().hex[:8])
        return write_file(path, text.encode(), mode, uid, uid)

    def test_errors_name_file_and_line(self):
        cases = [
            ("bogus = 1\n", 1, 'unknown key "bogus"'),
            ("# a comment\n\n  accel = fast\n", 3,
             "accel takes one of auto|kvm|tcg"),
            ("default_vcpus = 0\n", 1,
             "default_vcpus takes a whole number from 1 to 256"),
            ("default_vcpus = 257\n", 1,
             "default_vcpus takes a whole number from 1 to 256"),
            ("default_vcpus = two\n", 1,
             "default_vcpus takes a whole number from 1 to 256"),
            ("user_max_vms = -1\n", 1,
             "user_max_vms takes a whole number from 0 to 100000"),
            ("log_level = info\n# again:\nlog_level = debug\n", 3,
             "log_level is set twice"),
            ("accel = tcg\njust some words\n", 2,
             'expected key = value, not "just some words"'),
            ("state_dir = relative/dir\n", 1,
             'state_dir must be an absolute path, not "relative/dir"'),
        ]
        for text, line, why in cases:
            with self.subTest(why=why, text=text):
                conf = self.conf(text)
                rc, err = self.capsuled(conf)
                self.assertNotEqual(rc, 0, err)
                self.assertEqual(err, "capsuled: %s:%d: %s\n" %
                                 (conf, line, why))
        missing = os.path.join(self.dir, "missing.conf")
        rc, err = self.capsuled(missing)
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(err, "capsuled: %s: No such file or directory\n" %
                         missing)

    def test_file_others_could_change_is_refused(self):
        text = "log_level = debug\n"
        for mode in (0o620, 0o602, 0o666):
            with self.subTest(mode=oct(mode)):
                conf = self.conf(text, mode)
                before = snap(conf)
                rc, err = self.capsuled(conf)
                self.assertNotEqual(rc, 0, err)
                self.assertEqual(err, "capsuled: %s is writable by others "
                                 "(mode %04o)\n" % (conf, mode))
                self.assertEqual(snap(conf), before)
        conf = self.conf(text, 0o644, uid=65534)
        rc, err = self.capsuled(conf)
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(err, "capsuled: %s belongs to uid 65534; it must be "
                         "root's or capsuled's\n" % conf)
        # The control: the same file, root's and 0644, is taken.
        conf = self.conf(text + "accel = fast\n", 0o644)
        rc, err = self.capsuled(conf)
        self.assertEqual(err, "capsuled: %s:2: accel takes one of "
                         "auto|kvm|tcg\n" % conf)

    def test_flags_win_over_the_file(self):
        d = ConfigDaemon("flags")
        self.addCleanup(d.kill)
        file_sock = d.sock
        d.sock = os.path.join(d.dir, "flag.sock")
        d.flags = ["--socket", d.sock, "--log-level", "debug"]
        d.write_conf({"socket": file_sock, "log_level": "error"})
        d.start()
        self.assertFalse(os.path.lexists(file_sock), "the file's socket "
                         "was made although a flag named another")
        self.assertIn("<7>debug: control: Ping from uid 0", d.log_text())
        d.stop()

    def test_sighup_rereads_the_file(self):
        u = self.user
        d = ConfigDaemon("hup", {"user_max_vms": "1"})
        self.addCleanup(d.kill)
        d.start()
        # This test's user may use the daemon (a later test does it with a
        # socket group).
        chmod_nofollow(d.dir, 0o711)
        chmod_nofollow(d.sock, 0o666)

        def ask(req):
            return run_as(u.uid, u.gid, _request, d.sock, req)

        def hup():
            n = d.log_text().count("reloaded %s" % d.conf)
            bad = d.log_text().count("reload: ")
            d.proc.send_signal(signal.SIGHUP)
            self.assertTrue(ct.wait_for(
                lambda: d.log_text().count("reloaded %s" % d.conf) > n or
                d.log_text().count("reload: ") > bad, 10),
                "no reload within 10 s:\n" + d.log_text())

        started = []
        try:
            a = ask({"op": "StartVM", "memory_mib": 256})
            self.assertIs(a.get("ok"), True, a)
            started.append(a["vm_id"])
            r = ask({"op": "StartVM", "memory_mib": 256})
            self.assertEqual((r.get("ok"), r.get("code"), r.get("error")),
                             (False, "limit_exceeded", "uid %d may run at "
                              "most 1 VMs at once (user_max_vms) and runs 1"
                              % u.uid), r)
            # Raised in the file: it applies at once.
            d.write_conf({"user_max_vms": "2"})
            hup()
            b = ask({"op": "StartVM", "memory_mib": 256})
            self.assertIs(b.get("ok"), True, b)
            started.append(b["vm_id"])
            r = ask({"op": "StartVM", "memory_mib": 256})
            self.assertEqual((r.get("code"), r.get("error")),
                             ("limit_exceeded", "uid %d may run at most 2 "
                              "VMs at once (user_max_vms) and runs 2" %
                              u.uid), r)
            # Where capsuled listens waits for a restart, and it says so.
            other = os.path.join(d.dir, "other.sock")
            d.write_conf({"user_max_vms": "2", "socket": other})
            hup()
            self.assertIn("socket changed: it takes effect when capsuled "
                          "restarts", d.log_text())
            self.assertFalse(os.path.lexists(other))
            self.assertIs(d.request_once({"op": "Ping"}).get("ok"), True)
            # A file that no longer parses changes nothing.
            d.write_conf(None, raw="user_max_vms = 5\nbogus = 1\n")
            hup()
            self.assertIn("reload: %s:2: unknown key \"bogus\"; keeping the "
                          "settings in force" % d.conf, d.log_text())
            r = ask({"op": "StartVM", "memory_mib": 256})
            self.assertEqual((r.get("code"), r.get("error")),
                             ("limit_exceeded", "uid %d may run at most 2 "
                              "VMs at once (user_max_vms) and runs 2" %
                              u.uid), r)
            self.assertIs(d.proc.poll(), None)
        finally:
            for vm_id in started:
                r = d.request({"op": "StopVM", "vm_id": vm_id},
                              timeout=ct.STOP_TIMEOUT)
                self.assertEqual(r.get("stopped"), [vm_id], r)
        d.stop()


def _request(sock, req):
    with ct.Conn(sock, timeout=ct.START_TIMEOUT) as c:
        return c.request(req)


# ---- how capsuled runs ----

class ProcessTest(unittest.TestCase):
    """Foreground by default, --daemon, and a socket systemd hands over."""

    def setUp(self):
        ct.require_build()
        self.dir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.addCleanup(ct.rmtree, self.dir)
        # Runs before the rmtree: no capsuled of this test outlives it.
        self.addCleanup(lambda: kill_pids(procs_mentioning(self.dir)))
        self.conf = empty_config(self.dir)
        self.sock = os.path.join(self.dir, "c.sock")
        self.state = os.path.join(self.dir, "state")

    def flags(self):
        return ["--config", self.conf, "--socket", self.sock,
                "--state-dir", self.state, "--image-dir", ct.IMAGE_DIR,
                "--log-level", "debug"]

    def test_foreground_by_default(self):
        for extra in ([], ["--foreground"]):
            with self.subTest(flags=extra):
                log = open(os.path.join(self.dir, "fg.log"), "wb")
                self.addCleanup(log.close)
                p = subprocess.Popen([ct.CAPSULED] + self.flags() + extra,
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log)
                try:
                    self.assertTrue(ct.wait_for(
                        lambda: p.poll() is not None or
                        os.path.exists(self.sock), 20))
                    self.assertIsNone(p.poll(), "capsuled exited")
                    # The process we started is the one serving, still
                    # ours, with its log on stderr.
                    self.assertEqual(peer_pid(self.sock), p.pid)
                    state, ppid, _, session = proc_stat(p.pid)
                    self.assertEqual(ppid, os.getpid())
                    self.assertNotEqual(session, p.pid)
                    r = _request(self.sock, {"op": "Ping"})
                    self.assertIs(r.get("ok"), True, r)
                    with open(os.path.join(self.dir, "fg.log")) as f:
                        self.assertIn("listening on %s" % self.sock, f.read())
                    self.assertFalse(os.path.exists(os.path.join(
                        self.state, "capsuled.log")))
                    p.send_signal(signal.SIGINT)
                    self.assertEqual(p.wait(ct.STOP_TIMEOUT), 0)
                    self.assertFalse(os.path.lexists(self.sock))
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()

    def test_daemon_returns_once_listening(self):
        t0 = time.monotonic()
        p = subprocess.run([ct.CAPSULED, "--daemon"] + self.flags(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        print("\n  capsuled --daemon returned after %.1f s" %
              (time.monotonic() - t0), end=" ")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, b"", b""))
        # It answers at once: no retry.
        r = _request(self.sock, {"op": "Ping"})
        self.assertIs(r.get("ok"), True, r)
        pid = peer_pid(self.sock)
        self.addCleanup(kill_pids, [pid])
        self.assertEqual(proc_cmdline(pid)[0].decode(), ct.CAPSULED)
        state, ppid, pgrp, session = proc_stat(pid)
        self.assertNotEqual(ppid, os.getpid(), "still our child")
        self.assertEqual((pgrp, session), (pid, pid), "not detached")
        self.assertEqual(os.readlink("/proc/%d/fd/0" % pid), "/dev/null")
        self.assertEqual(os.readlink("/proc/%d/fd/1" % pid), "/dev/null")
        logpath = os.path.join(self.state, "capsuled.log")
        self.assertEqual(os.readlink("/proc/%d/fd/2" % pid), logpath)
        st = os.lstat(logpath)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, 0))
        with open(logpath) as f:
            self.assertIn("listening on %s (state in %s)" %
                          (self.sock, self.state), f.read())
        os.kill(pid, signal.SIGINT)
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(pid),
                                    ct.STOP_TIMEOUT), "it did not stop")
        self.assertFalse(os.path.lexists(self.sock))
        with open(logpath) as f:
            self.assertIn("Interrupt: stopping 0 VM(s)", f.read())

    def test_daemon_that_cannot_start_says_so(self):
        write_file(self.sock, b"not a socket\n")
        p = subprocess.run([ct.CAPSULED, "--daemon"] + self.flags(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        logpath = os.path.join(self.state, "capsuled.log")
        self.assertEqual((p.returncode, p.stderr.decode()),
                         (1, "capsuled: failed to start; see %s\n" % logpath))
        with open(logpath) as f:
            self.assertIn("--socket %s exists and is not a socket" %
                          self.sock, f.read())
        self.assertTrue(ct.wait_for(lambda: not procs_mentioning(self.dir),
                                    10), "a capsuled that failed stays")
        self.assertEqual(snap(self.sock)["data"], b"not a socket\n")

    def activated(self, listener, listen_pid="$$", stderr=None):
        """capsuled with fd 3 = listener and LISTEN_FDS=1 (LISTEN_PID its
        own pid unless listen_pid says otherwise)."""
        fd = listener.fileno()
        return subprocess.Popen(
            ["sh", "-c", 'LISTEN_PID=%s LISTEN_FDS=1 exec "$0" "$@"' %
             listen_pid, ct.CAPSULED] + self.flags(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr, pass_fds=(3,),
            preexec_fn=lambda: os.dup2(fd, 3))

    def serve_activated(self, blocking):
        """capsuled serving a listening socket it was handed, then SIGINT."""
        path = os.path.join(self.dir, "activated.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(lst.close)
        lst.bind(path)
        lst.listen(16)
        lst.setblocking(blocking)
        logpath = os.path.join(self.dir, "act.log")
        log = open(logpath, "wb")
        self.addCleanup(log.close)

        def log_text():
            with open(logpath) as f:
                return f.read()

        p = self.activated(lst, stderr=log)
        try:
            # A connection to the socket is queued even before capsuled
            # runs: wait for it to say it serves it.
            self.assertTrue(ct.wait_for(
                lambda: p.poll() is not None or "listening on" in log_text(),
                20), "capsuled did not start:\n" + log_text())
            self.assertIn("listening on a socket systemd handed over (state "
                          "in %s)" % self.state, log_text())
            for op in ("Ping", "Doctor", "Ping"):
                try:
                    with ct.Conn(path, timeout=10) as c:
                        r = c.request({"op": op})
                except OSError as e:
                    self.fail("capsuled did not answer %s on the socket "
                              "handed to it (%s); its main thread is in "
                              "syscall %s:\n%s" % (
                                  op, e, _syscall(p.pid), log_text()))
                self.assertIs(r.get("ok"), True, r)
                if op == "Doctor":
                    self.assertEqual(
                        [c for c in r["checks"]
                         if c["name"] == "control_socket"],
                        [{"name": "control_socket", "status": "pass",
                          "message": "handed over by systemd (socket "
                          "activation)"}])
            # Its own --socket is never made.
            self.assertFalse(os.path.lexists(self.sock))
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(ct.STOP_TIMEOUT), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        # Nor is the file it was handed removed.
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        self.assertFalse(os.path.lexists(self.sock))

    def test_socket_activation(self):
        # As systemd hands a socket over by default (NonBlocking=no, and
        # packaging/systemd/capsuled.socket does not change that).
        self.serve_activated(blocking=True)

    def test_socket_activation_nonblocking(self):
        # As with NonBlocking=yes.
        self.serve_activated(blocking=False)

    def test_socket_activation_checks(self):
        # LISTEN_PID names another process: the fds are not for it, and
        # it listens on its own socket.
        path = os.path.join(self.dir, "activated.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(lst.close)
        lst.bind(path)
        lst.listen(16)
        log = open(os.path.join(self.dir, "act.log"), "wb")
        self.addCleanup(log.close)
        p = self.activated(lst, listen_pid=str(os.getpid()), stderr=log)
        try:
            self.assertTrue(ct.wait_for(lambda: p.poll() is not None or
                                        os.path.exists(self.sock), 20))
            self.assertIs(p.poll(), None)
            self.assertEqual(peer_pid(self.sock), p.pid)
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(ct.STOP_TIMEOUT), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        # fd 3 is not a listening socket: it refuses to start.
        for kind in ("unbound socket", "file"):
            with self.subTest(kind=kind):
                if kind == "file":
                    f = open(self.conf, "rb")
                else:
                    f = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.addCleanup(f.close)
                p = self.activated(f, stderr=subprocess.PIPE)
                try:
                    _, err = p.communicate(timeout=30)
                finally:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
                self.assertNotEqual(p.returncode, 0)
                self.assertIn("socket activation: expected one listening "
                              "Unix stream socket, got 1 fd(s)",
                              err.decode())
                self.assertFalse(os.path.lexists(self.sock))

    def test_systemd_restart_keeps_vms(self):
        if not os.path.isdir("/run/systemd/system"):
            self.skipTest("systemd is not running here (no "
                          "/run/systemd/system): cannot restart capsuled "
                          "as a systemd service")
        state = subprocess.run(["systemctl", "is-system-running"],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
        if state.stdout.decode().strip() in ("offline", "unknown", ""):
            self.skipTest("systemctl is-system-running says %r: cannot "
                          "restart capsuled as a systemd service" %
                          state.stdout.decode().strip())
        unit = "capsule-test-%s" % uuid.uuid4().hex[:8]

        def systemctl(*args):
            return subprocess.run(["systemctl"] + list(args),
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=60)

        def main_pid():
            p = systemctl("show", "-p", "MainPID", "--value", unit)
            return int(p.stdout.decode().strip() or 0)

        self.addCleanup(systemctl, "reset-failed", unit)
        self.addCleanup(systemctl, "stop", unit)
        p = subprocess.run(["systemd-run", "--unit", unit, "--property",
                            "KillMode=process", "--property", "Type=notify",
                            ct.CAPSULED] + self.flags(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        first = main_pid()
        self.assertTrue(first)
        v = _request(self.sock, {"op": "StartVM", "memory_mib": 256})
        self.assertIs(v.get("ok"), True, v)
        self.addCleanup(lambda: kill_pids([v["pid"]]))
        self.assertEqual(systemctl("restart", unit).returncode, 0)
        second = main_pid()
        self.assertNotIn(second, (0, first))
        r = _request(self.sock, {"op": "ListVMs"})
        self.assertEqual([(x["vm_id"], x["state"], x["pid"])
                          for x in r["vms"]],
                         [(v["vm_id"], "running", v["pid"])])
        r = exec_adopted(v["proxy_socket_path"], ["echo", "ok"])
        self.assertEqual((r.code, r.stdout), (0, b"ok\n"), r)
        r = _request(self.sock, {"op": "StopVM", "all": True})
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        self.assertEqual(systemctl("stop", unit).returncode, 0)


# ---- as a user: cleanroom's helper, the CLI starting a daemon ----

class UserTestCase(unittest.TestCase):
    """A throwaway user whose HOME and XDG dirs are in a temp dir."""

    user = None

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        cls.user = TestUser()
        try:
            need = [(ct.CAPSULED, os.X_OK), (ct.CAPSULE, os.X_OK)] + [
                (os.path.join(ct.IMAGE_DIR, f), os.R_OK)
                for f in ct.IMAGE_FILES]
            denied = run_as(cls.user.uid, cls.user.gid, _cannot_access, need)
            if denied:
                raise unittest.SkipTest(
                    "the build is not usable by a non-root user (%s): "
                    "cannot run capsuled as one" % ", ".join(denied))
        except BaseException:
            cls.user.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.user is not None:
            kill_pids(ct.procs_of_uid(cls.user.uid))
            cls.user.remove()

    def setUp(self):
        u = self.user
        self.dir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.addCleanup(ct.rmtree, self.dir)
        # Runs first: nothing of the user's outlives the test.
        self.addCleanup(lambda: kill_pids(ct.procs_of_uid(u.uid)))
        chmod_nofollow(self.dir, 0o711)
        self.home = mkdir_owned(os.path.join(self.dir, "home"), u.uid, u.gid)
        self.xdg_state = mkdir_owned(os.path.join(self.dir, "st"), u.uid,
                                     u.gid)
        self.xdg_run = mkdir_owned(os.path.join(self.dir, "rt"), u.uid,
                                   u.gid)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.home,
                    "XDG_STATE_HOME": self.xdg_state,
                    "XDG_RUNTIME_DIR": self.xdg_run}

    def as_user(self, argv, env=None, timeout=60):
        e = dict(self.env, **(env or {}))
        try:
            return subprocess.run(argv, user=self.user.uid,
                                  group=self.user.gid, extra_groups=[],
                                  env=e, cwd=self.home,
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s as %s did not finish within %d s" %
                                 (argv, self.user.name, timeout)) from None


def _cannot_access(need):
    return ["%s (%s)" % (p, "x" if m == os.X_OK else "r")
            for p, m in need if not os.access(p, m)]


CLEANROOM_STOP_WAIT = 2         # cleanroom: SIGINT, then SIGKILL after 2 s


def _cleanroom_helpers(run_dirs, env, seed):
    """What cleanroom's darwin-vz helper client does, for each run dir at
    once: start `capsuled --socket RUN/vz-helper.sock` (stdout discarded,
    stderr kept), dial every 25 ms until it answers (its exit is a
    failure), StartVM with cleanroom's fields, run a command through the
    exec socket in vsockexec JSON lines with an entropy_seed, then close
    and SIGINT it, SIGKILL after 2 s. Runs as the user (run_as)."""
    os.environ.clear()
    os.environ.update(env)
    helpers = []
    try:
        for rd in run_dirs:
            sock = os.path.join(rd, "vz-helper.sock")
            if os.path.lexists(sock):
                os.unlink(sock)
            err = open(os.path.join(env["HOME"], "helper-%s.err" %
                                    os.path.basename(rd)), "wb")
            p = subprocess.Popen([ct.CAPSULED, "--socket", sock],
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err)
            err.close()
            helpers.append({"rd": rd, "sock": sock, "proc": p,
                            "pid": p.pid})
        for h in helpers:
            end = time.monotonic() + 30
            while True:
                if h["proc"].poll() is not None:
                    raise RuntimeError("helper exited with %d before its "
                                       "control socket was ready" %
                                       h["proc"].returncode)
                try:
                    h["conn"] = ct.Conn(h["sock"], timeout=90)
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise RuntimeError("timed out waiting for the "
                                           "helper's control socket")
                    time.sleep(0.025)
        for h in helpers:
            rd = h["rd"]
            h["start"] = h["conn"].request({
                "op": "StartVM",
                "kernel_path": os.path.join(ct.IMAGE_DIR, "vmlinuz"),
                "rootfs_path": os.path.join(ct.IMAGE_DIR, "rootfs.ext4"),
                "vcpus": 1, "memory_mib": 256, "guest_port": 10700,
                "launch_seconds": 60, "run_dir": rd,
                "proxy_socket_path": os.path.join(rd, "vz-proxy.sock"),
                "console_log_path": os.path.join(rd, "console.log")},
                timeout=90)
            if not h["start"].get("ok"):
                raise RuntimeError("StartVM: %r" % h["start"])
        # Both are up: what each has.
        for h in helpers:
            h["files"] = sorted(os.listdir(h["rd"]))
            h["state"] = sorted(os.listdir(os.path.join(
                env["XDG_STATE_HOME"], "capsule", "sockets")))
            x = ct.Exec(h["start"]["proxy_socket_path"], first={
                "command": ["sh", "-c", "echo $CLEANROOM_RUN; id -u"],
                "dir": "/", "env": ["CLEANROOM_RUN=" + h["rd"]],
                "entropy_seed": seed})
            x.eof()
            r = x.wait(60)
            h["exec"] = {"exit": r.exit, "stdout": r.stdout.decode()}
            x = ct.Exec(h["start"]["proxy_socket_path"], first={
                "command": ["true"], "entropy_seed": "not base64!"})
            r = x.wait(60)
            h["bad_seed"] = {"exit": r.exit, "stdout": r.stdout.decode()}
        for h in helpers:
            h["conn"].close()
            t0 = time.monotonic()
            h["proc"].send_signal(signal.SIGINT)
            try:
                h["rc"] = h["proc"].wait(CLEANROOM_STOP_WAIT)
            except subprocess.TimeoutExpired:
                h["rc"] = "killed"
                h["proc"].kill()
                h["proc"].wait(CLEANROOM_STOP_WAIT)
            h["stop_s"] = time.monotonic() - t0
            h["files_after"] = sorted(os.listdir(h["rd"]))
    finally:
        for h in helpers:
            if h["proc"].poll() is None:
                h["proc"].kill()
                h["proc"].wait()
    return [{k: v for k, v in h.items() if k not in ("proc", "conn")}
            for h in helpers]


class CleanroomTest(UserTestCase):
    """capsuled as cleanroom's helper: started per sandbox with only
    --socket, by a user, several at once."""

    def test_two_helpers_side_by_side(self):
        u = self.user
        rds = [mkdir_owned(os.path.join(self.dir, "run-%d" % i), u.uid, u.gid)
               for i in (1, 2)]
        seed = base64.b64encode(os.urandom(64)).decode()
        t0 = time.monotonic()
        out = run_as(u.uid, u.gid, _cleanroom_helpers, rds, self.env, seed,
                     timeout=300)
        print("\n  two helpers, a VM and two commands each: %.1f s" %
              (time.monotonic() - t0), end=" ")
        sockets = os.path.join(self.xdg_state, "capsule", "sockets")
        hashes = sorted(fnv1a64(os.path.join(rd, "vz-helper.sock"))
                        for rd in rds)
        self.assertEqual(len(set(hashes)), 2)
        for h, rd in zip(out, rds):
            with self.subTest(run_dir=rd):
                v = h["start"]
                self.assertEqual((v["run_dir"], v["proxy_socket_path"],
                                  v["console_log_path"]),
                                 (rd, os.path.join(rd, "vz-proxy.sock"),
                                  os.path.join(rd, "console.log")), v)
                # While both ran: each its own socket and state dir.
                self.assertEqual(h["files"], ["console.log", "vz-helper.sock",
                                              "vz-proxy.sock"])
                self.assertEqual(h["state"], hashes)
                self.assertEqual(h["exec"]["exit"]["exit_code"], 0, h)
                self.assertEqual(h["exec"]["stdout"], "%s\n0\n" % rd)
                self.assertEqual(h["bad_seed"]["exit"]["exit_code"], 125, h)
                self.assertIn("entropy_seed", h["bad_seed"]["exit"]["error"])
                # SIGINT: gone within cleanroom's 2 s, VM and all.
                self.assertEqual(h["rc"], 0, h)
                self.assertLess(h["stop_s"], CLEANROOM_STOP_WAIT)
                self.assertFalse(ct.pid_alive(v["pid"]))
                # The console log was named, so it is the caller's and
                # stays; capsule's sockets go.
                self.assertEqual(h["files_after"], ["console.log"])
                sd = os.path.join(sockets, fnv1a64(h["sock"]))
                self.assertEqual(sorted(os.listdir(sd)),
                                 ["capsuled.lock", "fetch", "images", "run",
                                  "sandboxes", "snapshots", "templates",
                                  "vms"])
                self.assertEqual(os.listdir(os.path.join(sd, "sandboxes")),
                                 [])
                self.assertEqual(os.listdir(os.path.join(sd, "fetch")), [])
                self.assertEqual(os.listdir(os.path.join(sd, "images")),
                                 ["tmp"])
                self.assertEqual(os.listdir(os.path.join(sd, "vms")), [])
                self.assertEqual(os.listdir(os.path.join(sd, "run")), [])
                st = os.lstat(sd)
                self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid),
                                 (0o711, u.uid))
        self.assertEqual(sorted(os.listdir(sockets)), hashes)
        self.assertEqual(ct.procs_of_uid(u.uid), [])
        self.assertEqual(ct.qemu_procs(self.dir), [])


class AutostartTest(UserTestCase):
    """`capsule` on the default socket with nobody listening starts
    capsuled --daemon, once; CAPSULE_NO_AUTOSTART=1 turns that off."""

    def test_cli_starts_a_daemon(self):
        u = self.user
        sock = os.path.join(self.xdg_run, "capsule", "capsuled.sock")
        state = os.path.join(self.xdg_state, "capsule")
        p = self.as_user([ct.CAPSULE, "ping", "--json"])
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stderr.decode(), "capsule: starting capsuled (%s "
                         "--daemon); set CAPSULE_NO_AUTOSTART=1 to not\n" %
                         ct.CAPSULED)
        r = json.loads(p.stdout)
        self.assertEqual((r.get("ok"), r.get("vms")), (True, 0), r)
        pid = peer_pid(sock)
        self.addCleanup(kill_pids, [pid])
        with open("/proc/%d/status" % pid) as f:
            uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
        self.assertEqual(uids, [str(u.uid)] * 4)
        self.assertEqual(proc_cmdline(pid), [b"capsuled", b"--daemon"])
        self.assertEqual(proc_stat(pid)[3], pid, "not detached")
        st = os.lstat(sock)
        self.assertEqual((stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                          st.st_uid), (stat.S_IFSOCK, 0o600, u.uid))
        with open(os.path.join(state, "capsuled.log")) as f:
            self.assertIn("listening on %s (state in %s)" % (sock, state),
                          f.read())
        # The next command finds it: no second daemon.
        p = self.as_user([ct.CAPSULE, "ping", "--json"])
        self.assertEqual((p.returncode, p.stderr), (0, b""), p)
        self.assertEqual(peer_pid(sock), pid)
        self.assertEqual(ct.procs_of_uid(u.uid), [pid])
        # A user's capsuled serves that user and root only.
        chmod_nofollow(self.xdg_run, 0o711)
        chmod_nofollow(os.path.dirname(sock), 0o711)
        chmod_nofollow(sock, 0o666)
        r = run_as(65534, 65534, _first_line, sock)
        self.assertEqual(r, [{"ok": False, "code": "permission_denied",
                              "error": "this capsuled serves uid %d only" %
                              u.uid}, None])
        self.assertIs(_request(sock, {"op": "Ping"}).get("ok"), True)
        os.kill(pid, signal.SIGINT)
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(pid),
                                    ct.STOP_TIMEOUT))
        self.assertFalse(os.path.lexists(sock))

        # Turned off: the CLI says how to start one, and starts none.
        p = self.as_user([ct.CAPSULE, "ping"],
                         env={"CAPSULE_NO_AUTOSTART": "1"})
        self.assertNotEqual(p.returncode, 0, p)
        err = p.stderr.decode()
        self.assertIn("capsule: cannot reach capsuled at %s: No such file or "
                      "directory" % sock, err)
        self.assertIn("Start it with `capsuled --daemon`", err)
        self.assertNotIn("starting capsuled", err)
        self.assertFalse(os.path.lexists(sock))
        self.assertEqual(ct.procs_of_uid(u.uid), [])
        # A socket named some other way is never a reason to start one.
        other = os.path.join(self.xdg_run, "other.sock")
        p = self.as_user([ct.CAPSULE, "ping"], env={"CAPSULE_SOCKET": other})
        self.assertNotEqual(p.returncode, 0, p)
        self.assertNotIn("starting capsuled", p.stderr.decode())
        self.assertEqual(ct.procs_of_uid(u.uid), [])


def _syscall(pid):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return "?"


def _first_line(sock):
    """The first line capsuled sends a client that sent nothing, and what
    follows it (None: EOF)."""
    with ct.Conn(sock, timeout=30) as c:
        first = c.read_json()
        more = c.read_line(10)
        return [first, None if more is None else more.decode("replace")]


if __name__ == "__main__":
    ct.main()
