#!/usr/bin/env python3
"""VM lifecycle: stop, crash, stop_on_disconnect, per-connection StopVM,
capsule run, and capsuled's own shutdown. At most two VMs at a time, but
for twenty started at once."""
import os
import signal
import subprocess
import threading
import time
import unittest

import capsuletest as ct


class LifecycleTest(ct.DaemonTestCase):

    def exec_echo(self, proxy, word="alive"):
        r = ct.run_exec(proxy, ["echo", word], timeout=60)
        self.assertEqual((r.code, r.stdout), (0, word.encode() + b"\n"), r)

    def private_dir(self, vm_id):
        return os.path.join(self.daemon.state, "vms", vm_id)

    def assertGone(self, vm_id, pid, run_dir, proxy):
        """Nothing of the VM is left: record, process, sockets, run dir,
        private dir."""
        self.assertIsNone(self.daemon.vm(vm_id), "VM still listed")
        self.assertFalse(ct.pid_alive(pid), "QEMU pid %d still runs" % pid)
        self.assertEqual(ct.qemu_procs(self.private_dir(vm_id)), [])
        self.assertFalse(os.path.exists(proxy), "%s left behind" % proxy)
        self.assertFalse(os.path.exists(run_dir), "%s left behind" % run_dir)
        self.assertFalse(os.path.exists(self.private_dir(vm_id)))

    def stop(self, vm_id, conn=None):
        r = (conn or self.daemon).request({"op": "StopVM", "vm_id": vm_id},
                                          timeout=ct.STOP_TIMEOUT)
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r.get("stopped"), [vm_id], r)
        return r

    # ---- StopVM ----

    def test_stop_leaves_nothing(self):
        proxy = os.path.join(self.daemon.dir, "px1.sock")
        v = self.daemon.start_vm(proxy_socket_path=proxy)
        self.assertEqual(v["proxy_socket_path"], proxy, v)
        pid, run_dir = v["pid"], v["run_dir"]
        self.assertTrue(ct.pid_alive(pid), v)
        self.assertEqual([p for p, _ in ct.qemu_procs(
            self.private_dir(v["vm_id"]))], [pid])
        self.exec_echo(proxy)
        t0 = time.monotonic()
        self.stop(v["vm_id"])
        print("\n  StopVM took %.1f s" % (time.monotonic() - t0), end=" ")
        self.assertGone(v["vm_id"], pid, run_dir, proxy)
        self.assertEqual(self.daemon.vms_dir_entries(), [])

    def test_stop_with_callers_run_dir(self):
        # A run dir the caller made stays, but capsuled's files in it go.
        run_dir = os.path.join(self.daemon.dir, "rd")
        os.mkdir(run_dir)
        v = self.daemon.start_vm(run_dir=run_dir)
        self.assertEqual(v["run_dir"], run_dir, v)
        self.assertTrue(v["proxy_socket_path"].startswith(run_dir), v)
        self.exec_echo(v["proxy_socket_path"])
        self.stop(v["vm_id"])
        self.assertFalse(ct.pid_alive(v["pid"]))
        self.assertTrue(os.path.isdir(run_dir))
        self.assertEqual(sorted(os.listdir(run_dir)), [],
                         "capsuled left files in the caller's run dir")

    # ---- a VM that dies on its own ----

    def test_killed_qemu_becomes_crashed(self):
        v = self.daemon.start_vm()
        vm_id, run_dir, proxy = v["vm_id"], v["run_dir"], v["proxy_socket_path"]
        listed = self.daemon.vm(vm_id)
        self.assertEqual(listed.get("state"), "running", listed)
        pid = listed["pid"]
        self.assertTrue(ct.pid_alive(pid))
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()

        def crashed():
            x = self.daemon.vm(vm_id)
            return x if x and x.get("state") == "crashed" else None

        x = ct.wait_for(crashed, 10)
        self.assertIsNotNone(x, "not crashed 10 s after SIGKILL: %r" %
                             self.daemon.vm(vm_id))
        print("\n  crashed after %.1f s" % (time.monotonic() - t0), end=" ")
        self.assertIn("exit_status", x, x)
        self.assertEqual(x["exit_status"], 128 + signal.SIGKILL, x)
        self.assertTrue(x.get("error"), x)
        # Its resources are released at once; the record stays.
        self.assertTrue(ct.wait_for(lambda: not os.path.exists(run_dir), 5),
                        "run dir %s not released" % run_dir)
        self.assertFalse(os.path.exists(proxy))
        self.assertEqual(self.daemon.vm(vm_id).get("state"), "crashed")
        # StopVM forgets it.
        self.stop(vm_id)
        self.assertGone(vm_id, pid, run_dir, proxy)
        r = self.daemon.request({"op": "StopVM", "vm_id": vm_id})
        self.assertError(r, "not_found", "unknown vm_id")

    def test_guest_poweroff_is_stopped(self):
        # vm.h: a VM that ends on its own stays listed, "stopped if the
        # guest powered off cleanly" (QEMU exits 0), else "crashed".
        v = self.daemon.start_vm()
        vm_id, run_dir = v["vm_id"], v["run_dir"]
        ct.run_exec(v["proxy_socket_path"], ["sh", "-c", "sync; poweroff -f"],
                    timeout=30)

        def ended():
            x = self.daemon.vm(vm_id)
            return x if x and x.get("state") in ("stopped", "crashed") \
                else None

        x = ct.wait_for(ended, 15)
        self.assertIsNotNone(x, "still %r 15 s after poweroff" %
                             self.daemon.vm(vm_id))
        self.assertFalse(ct.pid_alive(v["pid"]))
        self.assertTrue(ct.wait_for(lambda: not os.path.exists(run_dir), 5))
        try:
            self.assertEqual(x.get("exit_status"), 0, x)
            self.assertEqual(x.get("state"), "stopped",
                             "a clean guest power-off is reported as %r" % x)
        finally:
            self.stop(vm_id)

    # ---- capsule run ----

    def test_cli_run_uname(self):
        p = self.daemon.cli("run", "--", "uname", "-a", input=b"")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(b"Linux", p.stdout, p)
        self.assertEqual(len(p.stdout.splitlines()), 1, p)
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.qemu(), [])

    def test_cli_run_exit_status(self):
        p = self.daemon.cli("run", "--memory", "256", "--", "sh", "-c",
                            "echo to-stderr >&2; exit 5", input=b"")
        self.assertEqual(p.returncode, 5, p)
        self.assertEqual(self.daemon.list_vms(), [])

    def test_cli_run_twenty_times(self):
        t0 = time.monotonic()
        bad = []
        for i in range(20):
            p = self.daemon.cli("run", "--", "true", input=b"", timeout=120)
            if p.returncode != 0:
                bad.append((i, p.returncode, p.stderr[-500:]))
        took = time.monotonic() - t0
        print("\n  20 runs in %.1f s (%.1f s each)" % (took, took / 20),
              end=" ")
        self.assertEqual(bad, [])
        self.assertTrue(ct.wait_for(lambda: not self.daemon.qemu(), 10),
                        "QEMU left: %r" % self.daemon.qemu())
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertEqual(self.daemon.list_vms(), [])

    def test_cli_run_killed_stops_its_vm(self):
        # capsule run holds its control connection with stop_on_disconnect:
        # if the CLI dies, its VM goes too.
        p = self.daemon.cli_popen("run", "--", "sh", "-c",
                                  "echo ready; exec sleep 100",
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        try:
            self.assertEqual(p.stdout.readline(), b"ready\n")
            vms = self.daemon.list_vms()
            self.assertEqual(len(vms), 1, vms)
            pid = vms[0]["pid"]
            p.kill()
            p.wait()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()
        self.assertTrue(ct.wait_for(lambda: not self.daemon.list_vms() and
                                    not ct.pid_alive(pid), ct.STOP_TIMEOUT),
                        "the VM of a killed `capsule run` is still there: %r"
                        % self.daemon.list_vms())

    # ---- connections and ownership ----

    def test_stop_on_disconnect(self):
        c = self.daemon.connect()
        v = self.daemon.start_vm(conn=c, stop_on_disconnect=True)
        pid, run_dir = v["pid"], v["run_dir"]
        self.exec_echo(v["proxy_socket_path"])
        c.close()
        gone = ct.wait_for(lambda: self.daemon.vm(v["vm_id"]) is None and
                           not ct.pid_alive(pid), ct.STOP_TIMEOUT)
        self.assertTrue(gone, "VM still there after its connection closed: "
                        "%r" % self.daemon.vm(v["vm_id"]))
        self.assertGone(v["vm_id"], pid, run_dir, v["proxy_socket_path"])

    def test_no_stop_on_disconnect_by_default(self):
        c = self.daemon.connect()
        v = self.daemon.start_vm(conn=c)
        c.close()
        time.sleep(2)
        x = self.daemon.vm(v["vm_id"])
        self.assertIsNotNone(x, "VM went away with its connection")
        self.assertEqual(x.get("state"), "running", x)
        self.exec_echo(v["proxy_socket_path"])
        self.stop(v["vm_id"])

    def test_stop_without_id_stops_own_vms(self):
        a, b = self.daemon.connect(), self.daemon.connect()
        try:
            va = self.daemon.start_vm(conn=a)
            vb = self.daemon.start_vm(conn=b)
            r = a.request({"op": "StopVM", "id": "a"},
                          timeout=ct.STOP_TIMEOUT)
            self.assertIs(r.get("ok"), True, r)
            self.assertEqual(r.get("stopped"), [va["vm_id"]], r)
            self.assertGone(va["vm_id"], va["pid"], va["run_dir"],
                            va["proxy_socket_path"])
            x = self.daemon.vm(vb["vm_id"])
            self.assertEqual(x and x.get("state"), "running", x)
            self.exec_echo(vb["proxy_socket_path"])
            r = a.request({"op": "StopVM"})
            self.assertEqual((r.get("ok"), r.get("stopped")), (True, []), r)
            r = b.request({"op": "StopVM"}, timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [vb["vm_id"]], r)
            self.assertGone(vb["vm_id"], vb["pid"], vb["run_dir"],
                            vb["proxy_socket_path"])
        finally:
            a.close()
            b.close()

    def test_second_daemon_leaves_running_vms_alone(self):
        # `capsuled` run twice with the same defaults must not touch the
        # VMs of the one already serving.
        v = self.daemon.start_vm()
        try:
            p = subprocess.run(
                [ct.CAPSULED, "--socket", self.daemon.sock,
                 "--state-dir", self.daemon.state, "--image-dir",
                 ct.IMAGE_DIR], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertNotEqual(p.returncode, 0, p)
            self.assertIn(b"already", p.stderr, p)
            time.sleep(1)
            x = self.daemon.vm(v["vm_id"])
            self.assertEqual(x and x.get("state"), "running",
                             "the second capsuled broke the first one's VM: "
                             "%r\nits stderr: %s" % (x, p.stderr.decode()))
            self.assertTrue(os.path.isdir(v["run_dir"]))
            self.exec_echo(v["proxy_socket_path"])
        finally:
            self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)

    def test_live_vms_never_share_paths(self):
        # A second VM may not take over the first one's exec socket, run
        # dir or console log: capsule creates each anew (O_EXCL), so what
        # the first VM has is a conflict, never something to reuse.
        rd = os.path.join(self.daemon.dir, "shared-rd")
        con = os.path.join(self.daemon.dir, "shared-console.log")
        v = self.daemon.start_vm(run_dir=rd, console_log_path=con)
        try:
            for field, value, clash in (
                    ("run_dir", rd, v["proxy_socket_path"]),
                    ("proxy_socket_path", v["proxy_socket_path"],
                     v["proxy_socket_path"]),
                    ("console_log_path", con, con)):
                r = self.daemon.request({"op": "StartVM", field: value},
                                        timeout=ct.START_TIMEOUT)
                self.assertError(r, "conflict", clash, "already exists")
            self.exec_echo(v["proxy_socket_path"])
            # Its state record is capsuled's, never in a caller's dir.
            self.assertEqual(sorted(os.listdir(rd)), ["proxy.sock"])
        finally:
            self.stop(v["vm_id"])
        # capsule made the run dir, so it went; the console log the caller
        # named is the caller's, so it stays.
        self.assertFalse(os.path.exists(rd), "capsule's run dir left")
        self.assertTrue(os.path.exists(con), "the caller's console log was "
                        "deleted")
        os.unlink(con)

    def test_each_vm_runs_as_its_own_unprivileged_uid(self):
        if os.geteuid() != 0:
            self.skipTest("capsuled drops QEMU's privileges only as root")

        def ids(pid):
            with open("/proc/%d/status" % pid) as f:
                st = dict(l.split(":", 1) for l in f.read().splitlines())
            return (st["Uid"].split(), st["Gid"].split(),
                    st["Groups"].split())

        a = self.daemon.start_vm(memory_mib=256)
        b = self.daemon.start_vm(memory_mib=256)
        try:
            (ua, ga, gra), (ub, gb, grb) = ids(a["pid"]), ids(b["pid"])
            for uids, gids in ((ua, ga), (ub, gb)):
                self.assertEqual(len(set(uids)), 1, uids)   # real..fs alike
                self.assertNotEqual(uids[0], "0", "QEMU still runs as root")
                self.assertNotEqual(gids[0], "0")
            self.assertNotEqual(ua[0], ub[0], "two VMs share a uid")
            self.assertEqual(gra, [ga[0]], "QEMU kept supplementary groups")
            # The guest still writes its disk and the daemon still stops it.
            r = ct.run_exec(a["proxy_socket_path"], ["sh", "-c",
                            "echo data > /root/f && sync && cat /root/f"])
            self.assertEqual((r.code, r.stdout), (0, b"data\n"), r)
        finally:
            self.stop(a["vm_id"])
            self.stop(b["vm_id"])

    def test_twenty_starts_at_once(self):
        """20 StartVM sent together, each on its own connection: every
        one becomes a ready VM of its own (none lost, none hung), each
        runs a command, and all stop leaving nothing."""
        n = 20
        results = [None] * n

        def go(i):
            try:
                with self.daemon.connect(timeout=600) as c:
                    results[i] = c.request({"op": "StartVM",
                                            "memory_mib": 128,
                                            "launch_seconds": 600})
            except Exception as e:      # counted below, with the rest
                results[i] = {"ok": False, "error": repr(e)}

        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
        print("\n  %d VMs ready in %.1f s" % (n, time.monotonic() - t0),
              end=" ")
        started = [r for r in results if r and r.get("ok")]
        try:
            self.assertEqual(len(started), n, [r for r in results
                                               if not (r and r.get("ok"))])
            self.assertEqual(len({r["vm_id"] for r in started}), n)
            self.assertEqual(len({r["proxy_socket_path"] for r in started}),
                             n)
            for r in started:
                self.exec_echo(r["proxy_socket_path"], r["vm_id"][:8])
            self.assertEqual(sorted(v["vm_id"] for v in
                                    self.daemon.list_vms()),
                             sorted(r["vm_id"] for r in started))
        finally:
            r = self.daemon.request({"op": "StopVM", "all": True},
                                    timeout=300)
            self.assertIs(r.get("ok"), True, r)
        self.assertEqual(sorted(r.get("stopped")),
                         sorted(v["vm_id"] for v in started))
        for v in started:
            self.assertFalse(ct.pid_alive(v["pid"]))
        self.assertNoLeaks()

    def test_zz_nothing_left(self):
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.qemu(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertNoLeaks()


class ShutdownTest(unittest.TestCase):
    """SIGINT to capsuled with a running VM: the VM stops, capsuled exits 0.
    (SIGTERM leaves VMs running for the next capsuled: test_service.)"""

    def test_sigint_with_running_vm(self):
        d = ct.Daemon("shutdown").start()
        try:
            v = d.start_vm()
            pid = v["pid"]
            self.assertTrue(ct.pid_alive(pid))
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGINT)
            rc = d.proc.wait(ct.STOP_TIMEOUT)
            print("\n  capsuled exited %.1f s after SIGINT" %
                  (time.monotonic() - t0), end=" ")
            self.assertEqual(rc, 0, d.log_text())
            self.assertFalse(ct.pid_alive(pid), "QEMU outlived capsuled")
            self.assertEqual(d.qemu(), [])
            self.assertFalse(os.path.exists(d.sock), "control socket left")
            self.assertFalse(os.path.exists(v["run_dir"]), "run dir left")
            self.assertEqual(d.vms_dir_entries(), [])
            self.assertIn("stopped", d.log_text())
        finally:
            try:
                d.stop()
            finally:
                d.kill()


class DaemonCrashTest(unittest.TestCase):
    """A VM whose capsuled died is cleaned up by the next capsuled, even in
    a run dir the caller chose; and no VM starts once shutdown began."""

    def test_next_daemon_adopts_vms_in_callers_run_dirs(self):
        # A killed capsuled's VMs are the next one's: same pids, exec
        # works, and when they stop, what capsule made goes and what it
        # did not make stays.
        d = ct.Daemon("crash").start()
        try:
            made = os.path.join(d.dir, "made")      # capsule creates it
            mine = os.path.join(d.dir, "mine")      # the caller's own
            os.mkdir(mine)
            with open(os.path.join(mine, "keep"), "w") as f:
                f.write("the caller's\n")
            v = d.start_vm(run_dir=made)
            w = d.start_vm(run_dir=mine)
            pids = [v["pid"], w["pid"]]
            d.proc.kill()
            d.proc.wait(10)
            self.assertTrue(all(ct.pid_alive(p) for p in pids),
                            "QEMU died with capsuled")
            d2 = ct.Daemon("crash2", socket_path=d.sock,
                           state_dir=d.state).start()
            try:
                for x in (v, w):
                    y = d2.vm(x["vm_id"])
                    self.assertEqual((y and y["state"], y and y["pid"]),
                                     ("running", x["pid"]), y)
                    r = ct.run_exec(x["proxy_socket_path"], ["echo", "ok"],
                                    timeout=60)
                    self.assertEqual((r.code, r.stdout), (0, b"ok\n"), r)
                for x in (v, w):
                    r = d2.request({"op": "StopVM", "vm_id": x["vm_id"]},
                                   timeout=ct.STOP_TIMEOUT)
                    self.assertEqual(r.get("stopped"), [x["vm_id"]], r)
                self.assertFalse(any(ct.pid_alive(p) for p in pids))
                self.assertFalse(os.path.exists(made), "capsule's run dir")
                self.assertEqual(sorted(os.listdir(mine)), ["keep"])
                self.assertEqual(d2.vms_dir_entries(), [])
            finally:
                d2.stop()
        finally:
            d.kill()

    def test_no_start_during_shutdown(self):
        d = ct.Daemon("shutdown-start").start()
        try:
            v = d.start_vm()
            # A frozen QEMU makes the stop take a while (agent shutdown,
            # then QMP quit, then SIGKILL after ~15 s).
            os.kill(v["pid"], signal.SIGSTOP)
            d.proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            r = d.request_once({"op": "StartVM"}, timeout=30)
            self.assertIs(r.get("ok"), False, r)
            self.assertEqual(r.get("code"), "unavailable", r)
            self.assertIn("shutting down", r.get("error", ""), r)
            self.assertEqual(d.proc.wait(ct.STOP_TIMEOUT), 0, d.log_text())
            self.assertFalse(ct.pid_alive(v["pid"]))
        finally:
            d.kill()


if __name__ == "__main__":
    ct.main()
