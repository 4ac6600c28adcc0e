#!/usr/bin/env python3
"""Guest health and bounded resources (issue 7): how a VM ends when its
guest reboots or panics, a frozen guest (unresponsive, then running again),
a host disk too full for the VM's disk layer, a console flood against the
capped console log, and clients that hold unfinished lines or too many exec
sessions. At most two VMs at a time (mostly one)."""
import base64
import json
import select
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import capsuletest as ct

MiB = 1024 * 1024


def vm_state(daemon, vm_id, states, timeout, interval=0.5):
    """The VM's ListVMs entry once its state is one of states, else None."""
    def check():
        v = daemon.vm(vm_id)
        return v if v is not None and v.get("state") in states else None
    return ct.wait_for(check, timeout, interval)


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


class ArgsVMTestCase(ct.VMTestCase):
    """VMTestCase on a capsuled started with the flags in ARGS."""

    ARGS = ()

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        cls.daemon = ct.Daemon(cls.__name__, extra_args=cls.ARGS).start()
        cls.daemon.request({"op": "Ping"})      # the persistent connection
        try:
            cls.vm = cls.daemon.start_vm(vcpus=1, memory_mib=512)
            cls.vm_id = cls.vm["vm_id"]
            cls.proxy = cls.vm["proxy_socket_path"]
            cls.setUpVM()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.baseline_fds = ct.daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = ct.daemon_children(cls.daemon.proc.pid)


class GuestEndTest(ct.DaemonTestCase):
    """The guest decides to end: QMP says how, and the VM's state says so."""

    def stop(self, vm_id):
        r = self.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [vm_id], r)

    def end_by(self, command, **fields):
        v = self.daemon.start_vm(memory_mib=256, **fields)
        t0 = time.monotonic()
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c", command],
                        timeout=60)
        x = vm_state(self.daemon, v["vm_id"], ("stopped", "crashed"), 30)
        took = time.monotonic() - t0
        self.assertIsNotNone(x, "still %r 30 s after `%s`" %
                             (self.daemon.vm(v["vm_id"]), command))
        print("\n  ended %.1f s after `%s`" % (took, command), end=" ")
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(v["pid"]), 10))
        return v, r, x

    def test_reboot_ends_the_vm_as_stopped(self):
        # With the kernel's own choice of reboot method, about one reboot
        # in five on microvm under TCG hung after "reboot: Restarting
        # system" (no reset reached QEMU). capsuled's command line asks for
        # a triple-fault reboot, which QEMU always sees: several in a row,
        # with nothing in boot_args, must all end the VM.
        for _ in range(3):
            v, r, x = self.end_by("sync; reboot -f")
            self.assertEqual(x["state"], "stopped", x)
            self.stop(v["vm_id"])
        v, r, x = self.end_by("sync; reboot -f")
        try:
            self.assertEqual(x["state"], "stopped", x)
            self.assertIn("the guest rebooted", x.get("error", ""), x)
            self.assertNotIn("panicked", x["error"], x)
            # The exec running when it went learns why, in protocol.
            self.assertEqual(r.code, 125, r)
            self.assertIn("the guest rebooted", r.exit.get("error", ""), r)
            self.assertTrue(ct.wait_for(
                lambda: not os.path.exists(v["run_dir"]), 5))
            self.assertIn("the guest rebooted", self.daemon.log_text())
        finally:
            self.stop(v["vm_id"])
        self.assertIsNone(self.daemon.vm(v["vm_id"]))

    def test_panic_is_crashed(self):
        v, r, x = self.end_by("echo c > /proc/sysrq-trigger")
        try:
            self.assertEqual(x["state"], "crashed", x)
            self.assertIn("the guest kernel panicked", x.get("error", ""), x)
            # panic=-1 would make the guest reboot; pvpanic must win.
            self.assertNotIn("rebooted", x["error"], x)
            # The message carries the end of the guest console: the
            # panic's register dump.
            self.assertIn("guest console (", x["error"], x)
            self.assertIn("RIP: ", x["error"].split("ends with:", 1)[-1], x)
            self.assertEqual(r.code, 125, r)
            self.assertIn("the guest kernel panicked", r.exit.get("error", ""),
                          r)
        finally:
            self.stop(v["vm_id"])
        self.assertIsNone(self.daemon.vm(v["vm_id"]))

    def test_zz_nothing_left(self):
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.qemu(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertNoLeaks()


class FreezeTest(ct.VMTestCase):
    """QEMU stopped with SIGSTOP: the agent falls silent, the VM turns
    unresponsive and its execs end; SIGCONT brings it back."""

    def test_freeze_and_thaw(self):
        qemu = self.vm["pid"]
        x = ct.Exec(self.proxy, ["sh", "-c", "echo started; exec sleep 100"],
                    timeout=60)
        cli = None
        try:
            x.read_until(lambda r: b"started" in r.stdout, 30)
            cli = self.daemon.cli_popen("exec", self.vm_id, "--", "sh", "-c",
                                        "echo cli-started; exec sleep 100",
                                        stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
            ready, _, _ = select.select([cli.stdout], [], [], 30)
            self.assertTrue(ready, "`capsule exec` printed nothing in 30 s")
            self.assertEqual(os.read(cli.stdout.fileno(), 100),
                             b"cli-started\n")
            os.kill(qemu, signal.SIGSTOP)
            t0 = time.monotonic()

            v = vm_state(self.daemon, self.vm_id, ("unresponsive",), 15)
            took = time.monotonic() - t0
            self.assertIsNotNone(v, "not unresponsive 15 s after SIGSTOP: "
                                 "%r" % self.daemon.vm(self.vm_id))
            print("\n  unresponsive after %.1f s" % took, end=" ")
            self.assertGreaterEqual(took, 8, "unresponsive before 10 s of "
                                    "silence could have passed")
            self.assertIn("has not answered", v.get("error", ""), v)

            # The pending execs end, with the reason.
            r = x.wait(timeout=max(1, 20 - (time.monotonic() - t0)))
            self.assertEqual(r.code, 125, r)
            self.assertIn("has not answered", r.exit.get("error", ""), r)
            try:
                out, err = cli.communicate(
                    timeout=max(1, 20 - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                self.fail("`capsule exec` still waits %.0f s after the "
                          "guest froze" % (time.monotonic() - t0))
            self.assertEqual(cli.returncode, 125, (out, err))
            self.assertTrue(err.startswith(b"capsule: "), err)
            self.assertIn(b"has not answered", err)
            print("execs ended after %.1f s" % (time.monotonic() - t0),
                  end=" ")

            # New ones fail at once.
            t1 = time.monotonic()
            r = ct.run_exec(self.proxy, ["true"], timeout=10)
            self.assertLess(time.monotonic() - t1, 3)
            self.assertEqual(r.code, 125, r)
            self.assertIn("is unresponsive", r.exit.get("error", ""), r)
            self.assertIn(self.vm_id, r.exit["error"], r)
            p = self.daemon.cli("exec", self.vm_id, "--", "true",
                                input=b"", timeout=20)
            self.assertEqual(p.returncode, 125, p)
            self.assertIn(b"is unresponsive", p.stderr, p)
            # The daemon itself is fine meanwhile.
            self.assertIs(self.daemon.request_once({"op": "Ping"})
                          .get("ok"), True)
        finally:
            os.kill(qemu, signal.SIGCONT)
            x.close()
            if cli is not None and cli.poll() is None:
                cli.kill()
                cli.communicate()

        v = vm_state(self.daemon, self.vm_id, ("running",), 15)
        self.assertIsNotNone(v, "not running again 15 s after SIGCONT: %r" %
                             self.daemon.vm(self.vm_id))
        self.assertNotIn("error", v, v)
        r = self.run_cmd(["echo", "thawed"], timeout=60)
        self.assertEqual((r.code, r.stdout), (0, b"thawed\n"), r)
        self.assertIn("answering again", self.daemon.log_text())

    def test_zz_nothing_left(self):
        self.assertNoLeaks()


class ConsoleFloodTest(ArgsVMTestCase):
    """A guest writing without end to its console: the log stays under
    --console-log-max and keeps the newest output."""

    ARGS = ("--console-log-max", "1")
    FLOOD = 20 * 1000 * 1000

    def test_console_flood_keeps_log_capped(self):
        log = self.vm["console_log_path"]
        pid = self.daemon.proc.pid
        hwm0, rss0 = rss_kib(pid, "VmHWM"), rss_kib(pid)
        marker = "END-OF-FLOOD-%d" % os.getpid()
        t0 = time.monotonic()
        x = ct.Exec(self.proxy, ["sh", "-c",
                                 "head -c %d /dev/zero | tr '\\0' x | "
                                 "fold -w 99 > /dev/console; echo %s > "
                                 "/dev/console; echo done" %
                                 (self.FLOOD, marker)], timeout=600)
        biggest, pings = 0, 0
        # While it floods: the log never passes the cap, and the daemon
        # answers.
        while x.result.exit is None:
            try:
                if x.read_msg(timeout=1) is None:
                    break
            except socket.timeout:
                pass
            try:
                biggest = max(biggest, os.path.getsize(log))
            except OSError:
                pass
            if time.monotonic() - t0 > pings * 10:
                self.assertIs(self.daemon.request_once({"op": "Ping"})
                              .get("ok"), True)
                pings += 1
            if time.monotonic() - t0 > 400:
                x.close()
                self.fail("the flood did not end within 400 s")
        r = x.wait(timeout=30)
        took = time.monotonic() - t0
        self.assertEqual((r.code, r.stdout), (0, b"done\n"), r)
        print("\n  %.0f MB through the console in %.0f s" %
              (self.FLOOD / 1e6, took), end=" ")

        def has_marker():
            with open(log, "rb") as f:
                return marker.encode() in f.read()
        self.assertTrue(ct.wait_for(has_marker, 10), "the newest output is "
                        "not in the log")
        with open(log, "rb") as f:
            data = f.read()
        self.assertLessEqual(len(data), MiB, "console log over its cap")
        self.assertLessEqual(biggest, MiB, "console log passed its cap")
        self.assertGreater(len(data), 256 * 1024, "less than the newest "
                           "half was kept")
        note = (b"[capsule: older output was dropped to keep this log under "
                b"1048576 bytes]\n")
        self.assertTrue(data.startswith(note), data[:200])
        self.assertEqual(data.count(b"[capsule: older output"), 1)
        # The newest output, last and whole: x-lines, then the marker.
        body = data[len(note):].replace(b"\r\n", b"\n")
        self.assertTrue(body.endswith(marker.encode() + b"\n"), body[-300:])
        lines = body.split(b"\n")[:-2]
        self.assertGreater(len(lines), 2000)
        self.assertEqual(set(l for l in lines[:-1] if l != b"x" * 99), set(),
                         "the kept part is not the guest's output")
        self.assertNotIn(b"\0", data)
        grown = (rss_kib(pid, "VmHWM") - hwm0) // 1024
        print("capsuled's peak RSS grew %d MiB (RSS %d -> %d MiB)" %
              (grown, rss0 // 1024, rss_kib(pid) // 1024), end=" ")
        self.assertLess(grown, 32, "capsuled's memory grew with the flood")

    def test_zz_nothing_left(self):
        self.assertNoLeaks()


class DiskFullTest(unittest.TestCase):
    """The host file system holding the VM's disk layer fills up: QEMU
    pauses the guest, capsuled says why and ends the VM, frees the space,
    and keeps serving."""

    def mount_tmpfs(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root")
        mnt = tempfile.mkdtemp(prefix="capmnt", dir="/tmp")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "size=96m,mode=0700", "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        if p.returncode != 0:
            os.rmdir(mnt)
            self.skipTest("cannot mount a tmpfs (%s): %s" % (
                p.returncode, p.stderr.decode().strip()))
        return mnt

    def umount(self, mnt, daemon):
        for attempt in range(10):
            p = subprocess.run(["umount", mnt], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            if p.returncode == 0:
                os.rmdir(mnt)
                return
            if daemon is not None:
                daemon.kill()       # something of ours may still hold it
            time.sleep(0.5)
        subprocess.run(["umount", "-l", mnt], timeout=30)
        os.rmdir(mnt)
        raise AssertionError("%s stayed busy; detached it lazily: %s" %
                             (mnt, p.stderr.decode()))

    def test_full_disk_crashes_the_vm(self):
        mnt = self.mount_tmpfs()
        d = None
        try:
            d = ct.Daemon("diskfull", state_dir=os.path.join(mnt, "state"))
            d.start()
            v = d.start_vm(memory_mib=512)
            t0 = time.monotonic()
            x = ct.Exec(v["proxy_socket_path"], ["sh", "-c",
                        "dd if=/dev/zero of=/root/big bs=1M count=300 "
                        "conv=fsync; echo dd=$?"], timeout=180)
            r = x.wait(timeout=180)
            took = time.monotonic() - t0
            print("\n  the exec ended after %.1f s" % took, end=" ")
            self.assertEqual(r.code, 125, r)
            self.assertIn("could not write the VM's disk layer",
                          r.exit.get("error", ""), r)
            self.assertIn("No space left on device", r.exit["error"], r)
            self.assertNotIn(b"dd=", r.stdout, "the guest wrote 300 MB to a "
                             "96 MiB host file system?")
            s = vm_state(d, v["vm_id"], ("crashed",), 30)
            self.assertIsNotNone(s, "not crashed: %r" % d.vm(v["vm_id"]))
            self.assertIn("could not write the VM's disk layer", s["error"])
            self.assertIn("No space left on device", s["error"])
            self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(v["pid"]),
                                        10))
            self.assertIs(d.request_once({"op": "Ping"}).get("ok"), True)
            r = d.request({"op": "StopVM", "vm_id": v["vm_id"]},
                          timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
            # Nothing of the VM is left on the small file system.
            left = sorted(os.path.relpath(os.path.join(dp, n), mnt)
                          for dp, dns, fns in os.walk(mnt) for n in dns + fns)
            # (the image store's dirs are made at start, empty)
            self.assertEqual(left, ["state", "state/capsuled.lock",
                                    "state/fetch", "state/images",
                                    "state/images/tmp", "state/run",
                                    "state/sandboxes", "state/snapshots",
                                    "state/templates",
                                    "state/vms"])
            st = os.statvfs(mnt)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            self.assertLess(used, MiB, "%d bytes still used" % used)
            # And the daemon goes on, with the space back.
            w = d.start_vm(memory_mib=256)
            r = ct.run_exec(w["proxy_socket_path"], ["echo", "again"])
            self.assertEqual((r.code, r.stdout), (0, b"again\n"), r)
            r = d.request({"op": "StopVM", "vm_id": w["vm_id"]},
                          timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [w["vm_id"]], r)
            d.stop()
        finally:
            try:
                if d is not None:
                    d.kill()
            finally:
                self.umount(mnt, d)


class ClientLimitsTest(ArgsVMTestCase):
    """Unfinished lines and too many sessions: bounded in time and memory,
    answered in protocol; idle clients are left alone."""

    ARGS = ("--request-timeout", "3", "--client-input-max", "8")

    def test_partial_control_line_times_out(self):
        with self.daemon.connect() as c:
            c.send_raw(b'{"op": "Pi')
            t0 = time.monotonic()
            r = c.read_json(timeout=20)
            took = time.monotonic() - t0
            self.assertEqual(r, {"ok": False, "code": "too_large",
                                 "error": "request a line stayed unfinished "
                                          "for 3 s; closing the connection"})
            self.assertTrue(2.5 <= took <= 8, "closed after %.1f s" % took)
            self.assertTrue(c.closed_by_peer(5))
        self.assertIs(self.daemon.request_once({"op": "Ping"}).get("ok"),
                      True)

    def test_idle_connections_are_kept(self):
        # No partial line, no deadline: cleanroom holds such connections
        # open for as long as its VMs live.
        fresh, used = self.daemon.connect(), self.daemon.connect()
        try:
            self.assertIs(used.request({"op": "Ping"}).get("ok"), True)
            # A request that arrives in pieces, each well within the limit.
            piecewise = self.daemon.connect()
            for part in (b'{"op"', b': "Pi', b'ng"}\n'):
                piecewise.send_raw(part)
                time.sleep(1)
            self.assertIs(piecewise.read_json(timeout=10).get("ok"), True)
            piecewise.close()
            time.sleep(6)
            for c in (fresh, used):
                r = c.request({"op": "Ping"}, timeout=10)
                self.assertIs(r.get("ok"), True, r)
        finally:
            fresh.close()
            used.close()

    def test_unfinished_input_is_bounded(self):
        pid = self.daemon.proc.pid
        hwm0 = rss_kib(pid, "VmHWM")
        chunk = b"x" * 1000000              # under the 1 MiB line limit
        conns = []
        t0 = time.monotonic()
        try:
            for i in range(20):
                c = self.daemon.connect(timeout=15)
                conns.append(c)
                try:
                    c.send_raw(b'{"op": "Ping", "pad": "' + chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass            # closed early: its reply says why
                except socket.timeout:
                    self.fail("connection %d: capsuled stopped reading "
                              "without closing it" % i)
            grown = (rss_kib(pid, "VmHWM") - hwm0) // 1024
            sent_in = time.monotonic() - t0
            replies = []
            for c in conns:
                r = c.read_json(timeout=15)
                replies.append(r.get("error", ""))
                self.assertEqual((r.get("ok"), r.get("code")),
                                 (False, "too_large"), r)
                self.assertTrue(c.closed_by_peer(5))
        finally:
            for c in conns:
                c.close()
        too_much = sum("holding too much unfinished input" in e
                       for e in replies)
        too_slow = sum("stayed unfinished for 3 s" in e for e in replies)
        print("\n  %d closed for too much input, %d for time; peak RSS grew "
              "%d MiB" % (too_much, too_slow, grown), end=" ")
        self.assertEqual(too_much + too_slow, 20, replies)
        self.assertGreaterEqual(too_much, 1, replies)
        if sent_in < 2.5:
            # All was sent before any line could time out: 8 MiB hold at
            # most 8 of the 20, the rest pushed past the limit.
            self.assertGreaterEqual(too_much, 12, replies)
            self.assertLessEqual(too_slow, 8, replies)
        self.assertLess(grown, 64, "capsuled holds the unfinished input "
                        "without bound")
        self.assertIs(self.daemon.request_once({"op": "Ping"}).get("ok"),
                      True)

    def test_partial_exec_line_times_out(self):
        for case in ("request", "stdin"):
            with self.subTest(case=case):
                if case == "request":
                    # Half a request line.
                    c = ct.Conn(self.proxy, timeout=30)
                    c.send_raw(b'{"command": ["tr')
                else:
                    # A session under way, then half a stdin line.
                    x = ct.Exec(self.proxy, ["cat"], timeout=30)
                    x.stdin(b"hello\n")
                    x.read_until(lambda r: r.stdout == b"hello\n", 30)
                    c = x.conn
                    c.send_raw(b'{"type": "stdin", "da')
                t0 = time.monotonic()
                line = c.read_line(timeout=20)
                took = time.monotonic() - t0
                self.assertIsNotNone(line, "closed without an exit line")
                m = json.loads(line)
                self.assertEqual(m, {"type": "exit", "exit_code": 125,
                                     "error": "exec a line stayed unfinished "
                                              "for 3 s"})
                self.assertTrue(2.5 <= took <= 8, "after %.1f s" % took)
                self.assertTrue(c.closed_by_peer(5))
                c.close()

    def test_idle_exec_sessions_are_kept(self):
        # A command that outlives the timeout, with no input at all.
        t0 = time.monotonic()
        r = self.run_cmd(["sh", "-c", "sleep 5; echo slept"], timeout=60)
        self.assertEqual((r.code, r.stdout), (0, b"slept\n"), r)
        self.assertGreaterEqual(time.monotonic() - t0, 5)
        # A client that connects and says nothing for a while.
        c = ct.Conn(self.proxy, timeout=30)
        try:
            time.sleep(5)
            c.send({"command": ["echo", "late"]})
            lines = []
            for _ in range(100):
                line = c.read_line(timeout=30)
                if line is None:
                    break
                lines.append(json.loads(line))
        finally:
            c.close()
        out = b"".join(base64.b64decode(m["data"]) for m in lines
                       if m.get("type") == "stdout")
        self.assertEqual(out, b"late\n", lines)
        self.assertEqual([(m.get("type"), m.get("exit_code")) for m in lines
                          if m.get("type") == "exit"], [("exit", 0)], lines)

    def test_exec_session_limit(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 1024 + 256
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d: cannot hold "
                          "1024 exec connections" % (hard, need))
        if soft != resource.RLIM_INFINITY and soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE,
                        (soft, hard))
        pid = self.daemon.proc.pid
        base = len(ct.daemon_fds(pid))
        held = []
        try:
            end = time.monotonic() + 120
            for i in range(1024):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                held.append(s)
                s.setblocking(False)
                while True:
                    try:
                        s.connect(self.proxy)
                        break
                    except BlockingIOError:
                        # The listen backlog is full: capsuled accepts
                        # what is queued, then there is room.
                        if time.monotonic() > end:
                            self.fail("could only connect %d times" % i)
                        time.sleep(0.005)
            # Sessions count from accept: wait until all are taken.
            self.assertTrue(ct.wait_for(
                lambda: len(ct.daemon_fds(pid)) >= base + 1024, 20),
                "capsuled did not accept 1024 connections: %d fds" %
                len(ct.daemon_fds(pid)))
            # The next client is told why, in protocol, even if it has
            # sent its request already (no reset).
            for send_first in (False, True):
                with self.subTest(send_first=send_first):
                    c = ct.Conn(self.proxy, timeout=15)
                    try:
                        if send_first:
                            try:
                                c.send({"command": ["true"]})
                            except (BrokenPipeError, ConnectionResetError):
                                pass    # the refusal was quicker
                        m = json.loads(c.read_line(timeout=15) or b"null")
                        self.assertEqual((m and m.get("type"),
                                          m and m.get("exit_code")),
                                         ("exit", 125), m)
                        self.assertIn("VM %s already has 1024 exec sessions"
                                      % self.vm_id, m.get("error", ""), m)
                        self.assertTrue(c.closed_by_peer(5))
                    finally:
                        c.close()
            self.assertIs(self.daemon.request_once({"op": "Ping"}).get("ok"),
                          True)
        finally:
            for s in held:
                s.close()
        self.assertNoLeaks()
        r = self.run_cmd(["echo", "again"], timeout=60)
        self.assertEqual((r.code, r.stdout), (0, b"again\n"), r)

    def test_zz_nothing_left(self):
        self.assertIs(self.daemon.request_once({"op": "Ping"}).get("ok"),
                      True)
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
