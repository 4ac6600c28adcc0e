#!/usr/bin/env python3
"""ForkVM (`capsule fork ID -n K`): K copies of a running VM. Each copy
starts from the parent's memory and disk as they were at the fork (its
files, its running processes), then is its own machine: its own clock
(the host's), random numbers, disk; what one writes afterwards no other
sees. The parent goes on. VMs a copy could not go on from (open exec
sessions, raw serial ports) are refused with the reason. Real VMs; one
daemon."""
import os
import time

import capsuletest as ct

MEM = 256

WHOAMI = ["sh", "-c", "date +%s; head -c 16 /dev/urandom | od -An -tx1 | "
          "tr -d ' \\n'; echo"]
# A process that runs on in the VM: its count in /tmp (the guest's RAM).
# (Written to a new file and renamed: a reader never sees it empty.)
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; "
           "mv /tmp/counter.new /tmp/counter; sleep 0.2; done")


class ForkTest(ct.DaemonTestCase):

    def start(self, **kw):
        kw.setdefault("memory_mib", MEM)
        v = self.daemon.start_vm(**kw)
        self.stop_later(v)
        return v

    def stop_later(self, v):
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": v["vm_id"]},
                        timeout=ct.STOP_TIMEOUT)

    def run_in(self, v, argv, code=0):
        r = ct.run_exec(v["proxy_socket_path"], argv)
        self.assertEqual(r.exit.get("exit_code"), code, r)
        return r.stdout.decode()

    def fork(self, v, count, **kw):
        req = {"op": "ForkVM", "vm_id": v["vm_id"], "count": count}
        req.update(kw)
        return self.daemon.request(req, timeout=120)

    def assertError(self, r, code, words):
        self.assertIs(r.get("ok"), False, r)
        self.assertEqual(r.get("code"), code, r)
        self.assertIn(words, r.get("error", ""), r)

    def test_copies_start_where_the_parent_was_and_then_diverge(self):
        p = self.start()
        self.run_in(p, ["sh", "-c", "echo before > /root/f"])
        x = ct.Exec(p["proxy_socket_path"], first={
            "command": ["sh", "-c", COUNTER], "detach": True})
        self.assertEqual(x.wait(30).code, 0)
        x.close()
        self.assertTrue(ct.wait_for(lambda: self.run_in(
            p, ["sh", "-c", "cat /tmp/counter 2>/dev/null || echo 0"])
            .strip() not in ("", "0"), 20))

        t0 = time.monotonic()
        f = self.fork(p, 2)
        took = time.monotonic() - t0
        self.assertTrue(f.get("ok"), f)
        copies = f["vms"]
        for c in copies:
            self.stop_later(c)
        self.assertEqual(len(copies), 2, f)
        ids = {p["vm_id"]} | {c["vm_id"] for c in copies}
        self.assertEqual(len(ids), 3, f)
        for c in copies:
            self.assertEqual(c["timing_ms"]["start"], "forked", c)
            self.assertIn(p["vm_id"], c["timing_ms"]["start_note"], c)
            self.assertTrue(os.path.exists(c["proxy_socket_path"]), c)
        listed = {v["vm_id"]: v for v in self.daemon.list_vms()}
        for c in copies:
            self.assertEqual(listed[c["vm_id"]]["state"], "running")
        print("fork of 2: %.2f s" % took)

        # The parent's file and its running process are in each copy.
        for v in [p] + copies:
            self.assertEqual(self.run_in(v, ["cat", "/root/f"]), "before\n")
            n1 = int(self.run_in(v, ["cat", "/tmp/counter"]))
            self.assertTrue(ct.wait_for(lambda: int(self.run_in(
                v, ["cat", "/tmp/counter"])) > n1, 20),
                "the counter stopped in %s" % v["vm_id"])
        # Each its own: random numbers, and the host's clock.
        seen = {}
        for v in [p] + copies:
            clock, rand = self.run_in(v, WHOAMI).split()
            self.assertLess(abs(int(clock) - time.time()), 5, v["vm_id"])
            seen[rand] = v["vm_id"]
        self.assertEqual(len(seen), 3, seen)
        for v in [p] + copies:
            self.assertEqual(self.run_in(v, ["hostname"]).strip(),
                             "capsule-" + v["vm_id"][:8])
        # What one writes now, no other sees.
        for i, v in enumerate([p] + copies):
            self.run_in(v, ["sh", "-c", "echo %d > /root/mine" % i])
        for i, v in enumerate([p] + copies):
            self.assertEqual(self.run_in(v, ["cat", "/root/mine"]),
                             "%d\n" % i)
        # A copy is a VM like any other: it forks too.
        g = self.fork(copies[0], 1)
        self.assertTrue(g.get("ok"), g)
        self.stop_later(g["vms"][0])
        self.assertEqual(self.run_in(g["vms"][0], ["cat", "/root/mine"]),
                         "1\n")

    def test_what_cannot_be_forked_is_refused(self):
        p = self.start()
        for count in (0, 17, "2", -1):
            self.assertError(self.fork(p, count), "invalid_argument",
                             "count")
        r = self.daemon.request({"op": "ForkVM", "vm_id": "nope"})
        self.assertError(r, "not_found", "unknown vm_id")
        # An exec session open: a copy could not go on with it.
        x = ct.Exec(p["proxy_socket_path"], ["sh", "-c",
                                             "echo started; sleep 30"])
        try:
            end = time.monotonic() + 30
            while b"started" not in x.result.stdout:
                self.assertIsNotNone(x.read_msg(timeout=end -
                                                time.monotonic()))
            self.assertError(self.fork(p, 1), "conflict",
                             "1 exec session or connection open")
        finally:
            x.close()
        # Once it has ended, the VM forks.
        # (fork_ok makes a copy only when it succeeds.)
        self.assertTrue(ct.wait_for(lambda: self.fork_ok(p), 30))
        # Raw serial ports have one host end each.
        s = self.start(serial_ports=["p"])
        self.assertError(self.fork(s, 1), "conflict", "raw serial ports")
        # A paused VM is not running.
        self.assertTrue(self.daemon.request({"op": "PauseVM",
                                             "vm_id": p["vm_id"]})["ok"])
        self.assertError(self.fork(p, 1), "conflict", "is paused")
        self.assertTrue(self.daemon.request({"op": "ResumeVM",
                                             "vm_id": p["vm_id"]})["ok"])
        self.assertEqual(self.run_in(p, ["echo", "ok"]), "ok\n")

    def test_a_sandbox_forks_into_ephemeral_copies(self):
        r = self.daemon.request({"op": "CreateSandbox", "name": "forkme",
                                 "memory_mib": MEM, "disk_size_mib": 512})
        self.assertTrue(r.get("ok"), r)
        self.addCleanup(self.daemon.request, {"op": "RemoveSandbox",
                                              "sandbox": "forkme"})
        v = self.daemon.request({"op": "StartVM", "sandbox": "forkme"},
                                timeout=120)
        self.assertTrue(v.get("ok"), v)
        self.stop_later(v)
        self.run_in(v, ["sh", "-c", "echo kept > /root/k && sync"])
        f = self.fork(v, 1)
        self.assertTrue(f.get("ok"), f)
        c = f["vms"][0]
        self.stop_later(c)
        self.assertEqual(self.run_in(c, ["cat", "/root/k"]), "kept\n")
        # The copy writes its own disk, not the sandbox's.
        self.run_in(c, ["sh", "-c", "echo copy > /root/k && sync"])
        self.assertEqual(self.run_in(v, ["cat", "/root/k"]), "kept\n")
        listed = {x["vm_id"]: x for x in self.daemon.list_vms()}
        self.assertNotIn("sandbox", listed[c["vm_id"]])
        self.assertEqual(listed[c["vm_id"]]["disk_size_mib"], 512)

    def test_cli(self):
        p = self.start()
        r = self.daemon.cli("fork", p["vm_id"], "-n", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = r.stdout.decode().split()
        for i in ids:
            self.stop_later({"vm_id": i})
        self.assertEqual(len(ids), 2, r.stdout)
        self.assertEqual({v["vm_id"] for v in self.daemon.list_vms()
                          if v["vm_id"] in ids and v["state"] == "running"},
                         set(ids))
        r = self.daemon.cli("exec", ids[1], "--", "echo", "copy")
        self.assertEqual((r.returncode, r.stdout), (0, b"copy\n"), r.stderr)
        for bad in (["fork"], ["fork", p["vm_id"], "-n", "x"],
                    ["fork", p["vm_id"], "extra"]):
            r = self.daemon.cli(*bad)
            self.assertEqual(r.returncode, 2, (bad, r))
            self.assertIn(b"fork", r.stderr)
        r = self.daemon.cli("fork", p["vm_id"], "-n", "17")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(b'"count" must be a whole number from 1 to 16', r.stderr)

    def fork_ok(self, p):
        r = self.fork(p, 1)
        if r.get("ok"):
            self.stop_later(r["vms"][0])
        return r.get("ok")

    def test_zz_nothing_left(self):
        self.assertTrue(ct.wait_for(lambda: not [
            v for v in self.daemon.list_vms()
            if v["state"] not in ("stopped", "crashed")], 60),
            self.daemon.list_vms())
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
