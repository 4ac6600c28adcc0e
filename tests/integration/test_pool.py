#!/usr/bin/env python3
"""Warm pools (SetPool, ListPools; `capsule pool`): a pool keeps its size
of VMs ready; a StartVM with exactly the pool's fields from the same user
takes one at once (timing_ms.start "pooled") and the pool refills; other
requests start their own VM; shrinking stops pooled VMs, never handed-out
ones; bad sizes and sandboxes are refused. Real VMs; one daemon."""
import json
import os
import signal
import subprocess
import time
import unittest

import capsuletest as ct

MEM = 256
FIELDS = {"memory_mib": MEM, "stop_on_disconnect": True}


class PoolTest(ct.DaemonTestCase):

    def set_pool(self, size, conn=None, **fields):
        req = {"op": "SetPool", "size": size}
        req.update(fields)
        r = (conn or self.daemon).request(req, timeout=30)
        self.assertTrue(r.get("ok"), r)
        return r["pool"]

    def pools(self):
        r = self.daemon.request({"op": "ListPools"})
        self.assertTrue(r.get("ok"), r)
        return r["pools"]

    def wait_ready(self, n):
        ok = ct.wait_for(lambda: any(p["ready"] == n and p["starting"] == 0
                                     for p in self.pools()), 120)
        self.assertTrue(ok, "pool not ready: %r" % self.pools())

    def pooled_vms(self):
        return [v for v in self.daemon.list_vms() if v.get("pooled")]

    def tearDown(self):
        for p in self.pools():
            req = {"op": "SetPool", "size": 0}
            req.update(p["request"])
            self.daemon.request(req)
        ct.wait_for(lambda: not self.pooled_vms(), 60)

    def test_a_matching_start_takes_a_ready_vm_and_the_pool_refills(self):
        # Made on a connection that then goes: the pool stays.
        with self.daemon.connect() as c:
            p = self.set_pool(2, conn=c, **FIELDS)
        self.assertEqual(p["size"], 2)
        self.wait_ready(2)
        self.assertEqual(len(self.pooled_vms()), 2)

        with self.daemon.connect() as c:
            t0 = time.monotonic()
            v = c.request(dict(op="StartVM", **FIELDS), timeout=30)
            wall = time.monotonic() - t0
            self.assertTrue(v.get("ok"), v)
            self.assertEqual(v["timing_ms"]["start"], "pooled", v)
            self.assertLess(wall, 1.0)
            listed = self.daemon.vm(v["vm_id"])
            self.assertNotIn("pooled", listed)
            r = ct.run_exec(v["proxy_socket_path"], ["echo", "taken"])
            self.assertEqual(r.stdout, b"taken\n")
        # Its client went: it stops (stop_on_disconnect), the pool refills.
        self.assertTrue(ct.wait_for(
            lambda: self.daemon.vm(v["vm_id"]) is None, ct.STOP_TIMEOUT))
        self.wait_ready(2)
        self.assertEqual(self.pools()[0]["handed_out"], 1)

    def test_another_request_starts_its_own(self):
        self.set_pool(1, **FIELDS)
        self.wait_ready(1)
        pooled = {v["vm_id"] for v in self.pooled_vms()}
        v = self.daemon.start_vm(memory_mib=MEM)     # no stop_on_disconnect
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": v["vm_id"]},
                        timeout=ct.STOP_TIMEOUT)
        self.assertNotEqual(v["timing_ms"]["start"], "pooled")
        self.assertNotIn(v["vm_id"], pooled)
        self.assertEqual({v["vm_id"] for v in self.pooled_vms()}, pooled)

    def test_shrinking_stops_pooled_vms_only(self):
        self.set_pool(2, **FIELDS)
        self.wait_ready(2)
        v = self.daemon.start_vm(**FIELDS)      # on the persistent conn
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": v["vm_id"]},
                        timeout=ct.STOP_TIMEOUT)
        self.assertEqual(v["timing_ms"]["start"], "pooled")
        r = self.daemon.request(dict(op="SetPool", size=0, **FIELDS))
        self.assertEqual(r, {"ok": True, "pool": None})
        self.assertTrue(ct.wait_for(lambda: not self.pooled_vms(), 60))
        self.assertEqual(self.pools(), [])
        self.assertEqual(self.daemon.vm(v["vm_id"])["state"], "running")

    def test_bad_requests_are_refused(self):
        for size, why in ((-1, "size"), (17, "size"), ("2", "size")):
            r = self.daemon.request(dict(op="SetPool", size=size, **FIELDS))
            self.assertError(r, "invalid_argument", why)
        r = self.daemon.request({"op": "SetPool", "memory_mib": MEM})
        self.assertError(r, "invalid_argument", "size")
        r = self.daemon.request({"op": "SetPool", "size": 1,
                                 "sandbox": "nope"})
        self.assertError(r, "invalid_argument", "sandbox")
        r = self.daemon.request({"op": "SetPool", "size": 1,
                                 "memory_mib": 1})
        self.assertError(r, "invalid_argument", "memory_mib")
        self.assertEqual(self.pools(), [])

    def test_cli_pool_serves_capsule_run(self):
        r = self.daemon.cli("pool", "1", "--memory", str(MEM))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.wait_ready(1)
        r = self.daemon.cli("ps")
        self.assertIn(b"pooled: ready for a matching start", r.stdout)
        r = self.daemon.cli("run", "--memory", str(MEM), "--", "echo", "hi")
        self.assertEqual((r.returncode, r.stdout), (0, b"hi\n"), r.stderr)
        r = self.daemon.cli("pool", "ls")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("memory_mib", r.stdout.decode())
        self.assertEqual(self.pools()[0]["handed_out"], 1)

    def test_zz_nothing_left(self):
        self.assertNoLeaks()


class ConfiguredPoolTest(unittest.TestCase):
    """`pool = USER SIZE [FIELDS]` in capsuled.conf: made at start-up,
    changed and removed by SIGHUP; a bad line stops start-up."""

    def daemon_with(self, text):
        d = ct.Daemon(self.id().rsplit(".", 1)[-1])
        self.addCleanup(d.kill)
        self.write_conf(d, text)
        return d

    def write_conf(self, d, text):
        path = os.path.join(d.dir, "capsuled.conf")
        tmp = path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600)
        os.write(fd, text.encode())
        os.close(fd)
        os.rename(tmp, path)

    def pools(self, d):
        r = d.request({"op": "ListPools"})
        self.assertTrue(r.get("ok"), r)
        return r["pools"]

    def hup(self, d):
        n = d.log_text().count("reloaded ")
        d.proc.send_signal(signal.SIGHUP)
        self.assertTrue(ct.wait_for(
            lambda: d.log_text().count("reloaded ") > n, 10), d.log_text())

    def test_pool_lines_make_change_and_remove_pools(self):
        fields = {"memory_mib": MEM}
        d = self.daemon_with("pool = root 1 %s\n" % json.dumps(fields))
        d.start()
        p = self.pools(d)
        self.assertEqual(len(p), 1, p)
        self.assertEqual((p[0]["size"], p[0]["owner_uid"], p[0]["request"],
                          p[0].get("configured")), (1, 0, fields, True), p)
        self.assertTrue(ct.wait_for(lambda: self.pools(d)[0]["ready"] == 1,
                                    120), self.pools(d))
        v = d.request(dict(op="StartVM", **fields), timeout=30)
        self.assertTrue(v.get("ok"), v)
        self.assertEqual(v["timing_ms"]["start"], "pooled", v)
        d.request({"op": "StopVM", "vm_id": v["vm_id"]}, timeout=60)

        # A bigger size, and a second pool (by uid), at the next SIGHUP.
        self.write_conf(d, "pool = root 2 %s\npool = 0 1 {\"memory_mib\": "
                        "192}\n" % json.dumps(fields))
        self.hup(d)
        p = sorted(self.pools(d), key=lambda x: x["request"]["memory_mib"])
        self.assertEqual([(x["size"], x["request"]) for x in p],
                         [(1, {"memory_mib": 192}), (2, fields)], p)
        # A bad line is logged; the good ones stay in force, and while a
        # line fails no configured pool goes (it may be that line's).
        self.write_conf(d, "pool = root 3 %s\npool = nosuchuser9 1\n" %
                        json.dumps(fields))
        self.hup(d)
        self.assertIn('capsuled.conf:2: pool: no user "nosuchuser9"',
                      d.log_text())
        p = sorted(self.pools(d), key=lambda x: x["request"]["memory_mib"])
        self.assertEqual([(x["size"], x["request"]) for x in p],
                         [(1, {"memory_mib": 192}), (3, fields)], p)
        # Gone from the file: the pool and its VMs go.
        self.write_conf(d, "# no pools\n")
        self.hup(d)
        self.assertEqual(self.pools(d), [])
        self.assertTrue(ct.wait_for(lambda: not [
            x for x in d.list_vms() if x.get("pooled")], 60), d.list_vms())
        d.stop()

    def test_bad_pool_line_stops_start_up(self):
        for text, why in (
                ("pool = nosuchuser9 1\n", 'capsuled.conf:1: pool: no user '
                 '"nosuchuser9"'),
                ("# x\npool = root 1 {\"memory_mib\": 1}\n",
                 "capsuled.conf:2: pool: \"memory_mib\" must be"),
                ("pool = root 1 {\"size\": 3}\n",
                 "capsuled.conf:1: pool: the size goes before the fields"),
                ("pool = root 1 {\"sandbox\": \"s\"}\n",
                 "capsuled.conf:1: pool: a sandbox has one VM"),
                ("pool = root 1 {\"vcpus\": 1}\npool = 0 2 {\"vcpus\": 1}\n",
                 "capsuled.conf:2: pool: the same pool as line 1"),
                ("".join("pool = root 1 {\"memory_mib\": %d}\n" % (128 + i)
                         for i in range(5)),
                 "capsuled.conf:5: pool: more than 4 pools for uid 0")):
            with self.subTest(text=text):
                d = self.daemon_with(text)
                r = subprocess.run(d.argv(), stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=60)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(why, r.stderr.decode(), r.stderr)
                self.assertFalse(os.path.exists(d.sock))


if __name__ == "__main__":
    ct.main()
