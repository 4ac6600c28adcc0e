#!/usr/bin/env python3
"""Snapshots (SnapshotVM, ListSnapshots, RemoveSnapshot; StartVM
{"snapshot": NAME}; `capsule snapshot`, `capsule start --from`): a running
VM's whole state kept under a name, outliving the VM and capsuled. Each VM
started from it goes on where the VM was (its files, its processes), then
is its own machine. A snapshot whose base image changed is refused, not
restored over the wrong disk. Real VMs."""
import os
import shutil
import time
import unittest

import capsuletest as ct

MEM = 256
WHOAMI = ["sh", "-c", "date +%s; head -c 16 /dev/urandom | od -An -tx1 | "
          "tr -d ' \\n'; echo"]
# (Written to a new file and renamed: a reader never sees it empty.)
COUNTER = ("i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; "
           "mv /tmp/counter.new /tmp/counter; sleep 0.2; done")


class SnapshotTest(ct.DaemonTestCase):

    def start(self, daemon=None, **kw):
        d = daemon or self.daemon
        if "snapshot" not in kw:
            kw.setdefault("memory_mib", MEM)
        r = d.request(dict(op="StartVM", **kw), timeout=ct.START_TIMEOUT)
        if r.get("ok"):
            self.addCleanup(d.request, {"op": "StopVM", "vm_id": r["vm_id"]},
                            timeout=ct.STOP_TIMEOUT)
        return r

    def run_in(self, v, argv):
        r = ct.run_exec(v["proxy_socket_path"], argv)
        self.assertEqual(r.exit.get("exit_code"), 0, r)
        return r.stdout.decode()

    def snapshot(self, v, name, daemon=None):
        return (daemon or self.daemon).request(
            {"op": "SnapshotVM", "vm_id": v["vm_id"], "name": name},
            timeout=120)

    def remove(self, name, daemon=None):
        return (daemon or self.daemon).request({"op": "RemoveSnapshot",
                                                "name": name})

    def snapshots(self, daemon=None):
        r = (daemon or self.daemon).request({"op": "ListSnapshots"})
        self.assertTrue(r.get("ok"), r)
        return {s["name"]: s for s in r["snapshots"]}

    def assertError(self, r, code, words):
        self.assertIs(r.get("ok"), False, r)
        self.assertEqual(r.get("code"), code, r)
        self.assertIn(words, r.get("error", ""), r)

    def test_vms_from_a_snapshot_go_on_where_it_was(self):
        p = self.start()
        self.assertTrue(p.get("ok"), p)
        self.run_in(p, ["sh", "-c", "echo saved > /root/f"])
        x = ct.Exec(p["proxy_socket_path"], first={
            "command": ["sh", "-c", COUNTER], "detach": True})
        self.assertEqual(x.wait(30).code, 0)
        x.close()
        self.assertTrue(ct.wait_for(lambda: self.run_in(
            p, ["sh", "-c", "cat /tmp/counter 2>/dev/null || echo 0"])
            .strip() not in ("", "0"), 20))

        s = self.snapshot(p, "base")
        self.assertTrue(s.get("ok"), s)
        self.addCleanup(self.remove, "base")
        snap = s["snapshot"]
        self.assertEqual((snap["name"], snap["vm_id"], snap["memory_mib"],
                          snap["owner_uid"]), ("base", p["vm_id"], MEM, 0))
        self.assertGreater(snap["bytes"], 0)
        self.assertIn("base", self.snapshots())
        # The VM went on, and the snapshot outlives it.
        self.run_in(p, ["sh", "-c", "echo after > /root/f"])
        self.daemon.request({"op": "StopVM", "vm_id": p["vm_id"]},
                            timeout=ct.STOP_TIMEOUT)

        vms = []
        for _ in range(2):
            t0 = time.monotonic()
            v = self.start(snapshot="base")
            took = time.monotonic() - t0
            self.assertTrue(v.get("ok"), v)
            self.assertEqual(v["timing_ms"]["start"], "snapshot", v)
            self.assertIn("from snapshot base", v["timing_ms"]["start_note"])
            print("start from snapshot: %.2f s" % took)
            vms.append(v)
        self.assertNotEqual(vms[0]["vm_id"], vms[1]["vm_id"])
        seen = set()
        for i, v in enumerate(vms):
            self.assertEqual(self.run_in(v, ["cat", "/root/f"]), "saved\n")
            n1 = int(self.run_in(v, ["cat", "/tmp/counter"]))
            self.assertTrue(ct.wait_for(lambda: int(self.run_in(
                v, ["cat", "/tmp/counter"])) > n1, 20))
            clock, rand = self.run_in(v, WHOAMI).split()
            self.assertLess(abs(int(clock) - time.time()), 5)
            seen.add(rand)
            self.run_in(v, ["sh", "-c", "echo %d > /root/f" % i])
        self.assertEqual(len(seen), 2)
        for v in vms:
            self.assertEqual(self.run_in(v, ["hostname"]).strip(),
                             "capsule-" + v["vm_id"][:8])
        for i, v in enumerate(vms):
            self.assertEqual(self.run_in(v, ["cat", "/root/f"]), "%d\n" % i)

    def test_names_and_errors(self):
        p = self.start()
        self.assertTrue(self.snapshot(p, "one").get("ok"))
        self.addCleanup(self.remove, "one")
        self.assertError(self.snapshot(p, "one"), "conflict",
                         "a snapshot named one exists already")
        for bad in (".hidden", "-x", "a/b", "x" * 65, "../up"):
            self.assertError(self.snapshot(p, bad), "invalid_argument",
                             "snapshot name")
        self.assertError(self.snapshot(p, ""), "invalid_argument", '"name"')
        self.assertError(self.start(snapshot="nope"), "not_found",
                         "no snapshot nope")
        self.assertError(self.start(snapshot="one", memory_mib=512),
                         "invalid_argument", "memory_mib")
        self.assertError(self.remove("nope"), "not_found", "no snapshot")
        self.assertTrue(self.remove("one").get("ok"))
        self.assertNotIn("one", self.snapshots())
        self.assertError(self.start(snapshot="one"), "not_found",
                         "no snapshot one")
        # Nothing half-made is left in the state dir.
        d = os.path.join(self.daemon.state, "snapshots", "0")
        self.assertEqual(os.listdir(d), [])

    def test_a_changed_base_image_is_refused(self):
        base = os.path.join(self.daemon.dir, "rootfs.ext4")
        shutil.copyfile(os.path.join(ct.IMAGE_DIR, "rootfs.ext4"), base)
        p = self.start(rootfs_path=base)
        self.assertTrue(p.get("ok"), p)
        self.assertTrue(self.snapshot(p, "pinned").get("ok"))
        self.addCleanup(self.remove, "pinned")
        self.daemon.request({"op": "StopVM", "vm_id": p["vm_id"]},
                            timeout=ct.STOP_TIMEOUT)
        v = self.start(snapshot="pinned")
        self.assertTrue(v.get("ok"), v)
        self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                            timeout=ct.STOP_TIMEOUT)
        os.utime(base, (time.time() + 10, time.time() + 10))
        self.assertError(self.start(snapshot="pinned"), "conflict",
                         "differ from when it was saved")

    def test_cli(self):
        p = self.start()
        r = self.daemon.cli("snapshot", p["vm_id"], "--name", "clisnap")
        self.assertEqual((r.returncode, r.stdout), (0, b"clisnap\n"),
                         r.stderr)
        self.addCleanup(self.remove, "clisnap")
        r = self.daemon.cli("snapshot", "ls")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"clisnap", r.stdout)
        r = self.daemon.cli("start", "--from", "clisnap")
        self.assertEqual(r.returncode, 0, r.stderr)
        vm_id = r.stdout.decode().strip()
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": vm_id})
        r = self.daemon.cli("exec", vm_id, "--", "echo", "hi")
        self.assertEqual((r.returncode, r.stdout), (0, b"hi\n"), r.stderr)
        r = self.daemon.cli("start", "--from", "clisnap", "--memory", "512")
        self.assertEqual(r.returncode, 2, r)
        r = self.daemon.cli("snapshot", p["vm_id"])
        self.assertEqual(r.returncode, 2, r)
        r = self.daemon.cli("snapshot", "rm", "clisnap")
        self.assertEqual((r.returncode, r.stdout), (0, b"clisnap\n"),
                         r.stderr)
        self.assertNotIn("clisnap", self.snapshots())

    def test_zz_nothing_left(self):
        self.assertTrue(ct.wait_for(lambda: not [
            v for v in self.daemon.list_vms()
            if v["state"] not in ("stopped", "crashed")], 60),
            self.daemon.list_vms())
        self.assertNoLeaks()


class SnapshotRestartTest(unittest.TestCase):
    """A snapshot outlives the capsuled that took it."""

    def test_a_later_capsuled_starts_from_it(self):
        a = ct.Daemon("first").start()
        self.addCleanup(a.kill)
        v = a.start_vm(memory_mib=MEM)
        ct.run_exec(v["proxy_socket_path"], ["sh", "-c", "echo kept > "
                                             "/root/k"])
        r = a.request({"op": "SnapshotVM", "vm_id": v["vm_id"],
                       "name": "lasting"}, timeout=120)
        self.assertTrue(r.get("ok"), r)
        a.stop()
        b = ct.Daemon("second", state_dir=a.state).start()
        self.addCleanup(b.kill)
        self.assertIn("lasting", [s["name"] for s in b.request(
            {"op": "ListSnapshots"})["snapshots"]])
        w = b.start_vm(snapshot="lasting")
        r = ct.run_exec(w["proxy_socket_path"], ["cat", "/root/k"])
        self.assertEqual(r.stdout, b"kept\n", r)
        b.request({"op": "StopVM", "vm_id": w["vm_id"]},
                  timeout=ct.STOP_TIMEOUT)
        self.assertTrue(b.request({"op": "RemoveSnapshot",
                                   "name": "lasting"}).get("ok"))
        b.stop()


if __name__ == "__main__":
    ct.main()
