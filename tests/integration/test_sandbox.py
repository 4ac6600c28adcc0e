#!/usr/bin/env python3
"""A VM's writable disk and named sandboxes that persist (issue 10).

Every VM's root is an overlay: the base image read-only underneath, the
VM's own sparse disk on top (`--disk-size`, StartVM disk_size_mib). A full
disk is ENOSPC for the command and the VM carries on. A sandbox
(CreateSandbox, `capsule create --name`) keeps that disk and its
configuration across stops and daemon restarts: files written in it are
there after `stop` + `start`, after capsuled is restarted (SIGINT: its VMs
stop) and when capsuled leaves the VM running for its successor (SIGTERM).
Names are per owner; a record that does not validate is left alone, a
create that never finished is cleaned up. `--idle-timeout` stops a VM no
exec, copy or forward has used for that long, and keeps a sandbox's disk.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import capsuletest as ct
from test_users import OwnerDaemonCase

VM_MEMORY = 256
MiB = 1 << 20


def sandbox_dirs(d):
    try:
        return sorted(os.listdir(os.path.join(d.state, "sandboxes")))
    except FileNotFoundError:
        return []


def ok(r):
    if not r.get("ok"):
        raise AssertionError("request failed: %r" % r)
    return r


class DiskTest(ct.DaemonTestCase):
    """An ephemeral VM's disk: sized, private, gone with the VM."""

    def test_a_full_disk_is_enospc_and_the_vm_goes_on(self):
        base = os.path.join(ct.IMAGE_DIR, "rootfs.ext4")
        before = os.stat(base)
        v = self.daemon.start_vm(memory_mib=VM_MEMORY, disk_size_mib=64)
        self.addCleanup(self.daemon.request,
                        {"op": "StopVM", "vm_id": v["vm_id"]})
        self.assertEqual(self.daemon.vm(v["vm_id"])["disk_size_mib"], 64)
        disk = os.path.join(self.daemon.state, "vms", v["vm_id"], "disk.img")
        st = os.stat(disk)
        self.assertEqual(st.st_size, 64 * MiB)
        self.assertLess(st.st_blocks * 512, 16 * MiB, "not sparse")
        self.assertEqual(st.st_mode & 0o777, 0o600)
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                        "grep ' / ' /proc/mounts; "
                        "dd if=/dev/zero of=/big bs=1M count=100; "
                        "echo dd=$?; rm /big; echo still > /root/ok && "
                        "cat /root/ok"], timeout=120)
        self.assertEqual(r.code, 0, r)
        self.assertIn(b"overlay / overlay rw", r.stdout)
        self.assertIn(b"dd=1", r.stdout, r)
        self.assertIn(b"No space left on device", r.stderr)
        self.assertTrue(r.stdout.endswith(b"still\n"), r)
        self.assertEqual(self.daemon.vm(v["vm_id"])["state"], "running")
        # The base image was never written.
        after = os.stat(base)
        self.assertEqual((after.st_mtime_ns, after.st_size),
                         (before.st_mtime_ns, before.st_size))
        ok(self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]}))
        self.assertFalse(os.path.lexists(disk))
        self.assertNoLeaks()

    def test_each_vm_starts_from_a_clean_disk(self):
        for word in (b"first", b"second"):
            v = self.daemon.start_vm(memory_mib=VM_MEMORY)
            r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                            "cat /root/mark 2>/dev/null; echo %s > "
                            "/root/mark" % word.decode()])
            ok(self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]}))
            self.assertEqual((r.code, r.stdout), (0, b""), r)

    def test_disk_size_is_checked(self):
        for bad in (0, 63, 1 << 40, "8G", -1):
            with self.subTest(bad=bad):
                r = self.daemon.request({"op": "StartVM",
                                         "disk_size_mib": bad})
                self.assertError(r, "invalid_argument", "disk_size_mib")
        p = self.daemon.cli("start", "--disk-size", "8X")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"--disk-size takes a number with an optional unit",
                      p.stderr)


class SandboxTest(ct.DaemonTestCase):

    def create(self, name, **fields):
        req = {"op": "CreateSandbox", "name": name,
               "memory_mib": VM_MEMORY}
        req.update(fields)
        r = ok(self.daemon.request(req))
        self.addCleanup(self.remove, name)
        return r["sandbox"]

    def remove(self, name):
        sb = [s for s in ok(self.daemon.request(
            {"op": "ListSandboxes"}))["sandboxes"] if s["name"] == name]
        if sb and sb[0].get("vm_id"):
            self.daemon.request({"op": "StopVM", "vm_id": sb[0]["vm_id"]})
        if sb:
            ok(self.daemon.request({"op": "RemoveSandbox",
                                    "sandbox": name}))

    def sandboxes(self):
        return {s["name"]: s for s in ok(self.daemon.request(
            {"op": "ListSandboxes"}))["sandboxes"]}

    def test_a_file_survives_stop_and_start(self):
        sb = self.create("keep", disk_size_mib=512)
        self.assertEqual(sb["state"], "stopped")
        self.assertEqual(sb["disk_size_mib"], 512)
        self.assertEqual(sb["config"], {"memory_mib": VM_MEMORY})
        self.assertLess(sb["disk_used_bytes"], 16 * MiB)
        self.assertEqual(sandbox_dirs(self.daemon), [sb["id"]])
        v = ok(self.daemon.request({"op": "StartVM", "sandbox": "keep"},
                                   timeout=ct.START_TIMEOUT))
        self.assertEqual(self.daemon.vm(v["vm_id"])["sandbox"], "keep")
        self.assertEqual(self.sandboxes()["keep"]["vm_id"], v["vm_id"])
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                        "head -c 3000000 /dev/urandom > /root/data; "
                        "sha256sum /root/data; rm /bin/true; echo gone"])
        self.assertEqual(r.code, 0, r)
        digest = r.stdout.split()[0]
        ok(self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]}))
        self.assertEqual(self.sandboxes()["keep"]["state"], "stopped")
        self.assertGreater(self.sandboxes()["keep"]["disk_used_bytes"],
                           3000000)
        v = ok(self.daemon.request({"op": "StartVM", "sandbox": sb["id"]},
                                   timeout=ct.START_TIMEOUT))
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                        "sha256sum /root/data; ls /bin/true; echo $?"])
        self.assertEqual(r.stdout.split()[0], digest, r)
        self.assertTrue(r.stdout.endswith(b"1\n"), r)   # still deleted
        ok(self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]}))

    def test_one_vm_at_a_time_and_no_removal_while_running(self):
        self.create("busy")
        v = ok(self.daemon.request({"op": "StartVM", "sandbox": "busy"},
                                   timeout=ct.START_TIMEOUT))
        self.assertError(self.daemon.request({"op": "StartVM",
                                              "sandbox": "busy"}),
                         "conflict", "already running (vm %s)" % v["vm_id"])
        self.assertError(self.daemon.request({"op": "RemoveSandbox",
                                              "sandbox": "busy"}),
                         "conflict", "sandbox busy is running")
        p = self.daemon.cli("rm", "busy")
        self.assertEqual(p.returncode, 1, p)
        p = self.daemon.cli("rm", "--force", "busy")
        self.assertEqual((p.returncode, p.stdout), (0, b"busy\n"), p)
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(sandbox_dirs(self.daemon), [])
        self.assertNoLeaks()

    def test_bad_requests(self):
        self.create("taken")
        cases = [
            ({"name": "taken"}, "conflict", "already have a sandbox called "
             "taken"),
            ({"name": "-x"}, "invalid_argument", "must be 1-64 of"),
            ({"name": "a/b"}, "invalid_argument", "must be 1-64 of"),
            ({"name": "a" * 65}, "invalid_argument", "must be 1-64 of"),
            ({"name": "cafe"}, "invalid_argument", "only of hex digits"),
            ({"name": "0f1e2d3c-4b5a"}, "invalid_argument",
             "only of hex digits"),
            ({}, "invalid_argument", "\"name\""),
            ({"name": "x", "run_dir": "/tmp"}, "invalid_argument",
             "\"run_dir\" belongs to one run"),
            ({"name": "x", "stop_on_disconnect": True}, "invalid_argument",
             "\"stop_on_disconnect\" belongs to one run"),
            ({"name": "x", "vcpus": 0}, "invalid_argument", "vcpus"),
            ({"name": "x", "bogus": 1}, "invalid_argument", "bogus"),
            ({"name": "x", "image": "no-such-image"}, "not_found",
             "no-such-image"),
        ]
        for fields, code, words in cases:
            with self.subTest(fields=fields):
                req = {"op": "CreateSandbox"}
                req.update(fields)
                self.assertError(self.daemon.request(req), code, words)
        self.assertError(self.daemon.request(
            {"op": "StartVM", "sandbox": "taken", "vcpus": 2}),
            "invalid_argument", "vcpus")
        self.assertError(self.daemon.request(
            {"op": "StartVM", "sandbox": "nope"}), "not_found",
            "no sandbox nope")
        self.assertError(self.daemon.request(
            {"op": "RemoveSandbox", "sandbox": "nope"}), "not_found")
        self.assertEqual(sorted(self.sandboxes()), ["taken"])
        self.assertEqual(len(sandbox_dirs(self.daemon)), 1)
        p = self.daemon.cli("start", "taken", "--cpus", "2")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"takes no other options", p.stderr)

    def test_cli(self):
        self.addCleanup(self.remove, "cli")
        p = self.daemon.cli("create", "--name", "cli", "--memory",
                            str(VM_MEMORY), "--disk-size", "1G")
        self.assertEqual((p.returncode, p.stdout), (0, b"cli\n"), p)
        p = self.daemon.cli("run", "--name", "cli", "--", "sh", "-c",
                            "echo one >> /root/log; cat /root/log")
        self.assertEqual((p.returncode, p.stdout), (0, b"one\n"), p)
        self.assertEqual(self.sandboxes()["cli"]["state"], "stopped")
        p = self.daemon.cli("start", "cli")
        self.assertEqual(p.returncode, 0, p)
        vm_id = p.stdout.decode().strip()
        p = self.daemon.cli("exec", "cli", "--", "cat", "/root/log")
        self.assertEqual((p.returncode, p.stdout), (0, b"one\n"), p)
        p = self.daemon.cli("ps", "-a")
        self.assertIn(b"    sandbox cli\n", p.stdout)
        line = [l for l in p.stdout.decode().splitlines()
                if l.startswith("cli ")]
        self.assertEqual(len(line), 1, p.stdout)
        self.assertIn("running", line[0])
        self.assertIn("/1024 MiB", line[0])
        self.assertIn(vm_id, line[0])
        p = self.daemon.cli("stop", "cli")
        self.assertEqual((p.returncode, p.stdout.decode().strip()),
                         (0, vm_id), p)
        p = self.daemon.cli("ps", "-a", "--json")
        out = json.loads(p.stdout)
        self.assertEqual(out["vms"], [])
        self.assertEqual([s["name"] for s in out["sandboxes"]], ["cli"])
        # run --name creates what is not there yet, with the options.
        self.addCleanup(self.remove, "fresh")
        p = self.daemon.cli("run", "--name", "fresh", "--memory",
                            str(VM_MEMORY), "--", "true")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(self.sandboxes()["fresh"]["config"],
                         {"memory_mib": VM_MEMORY})
        p = self.daemon.cli("run", "--name", "fresh", "--cpus", "1", "--",
                            "true")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"runs as it was created", p.stderr)

    def test_idle_timeout_stops_the_vm_and_keeps_the_disk(self):
        self.create("idle", idle_timeout_seconds=3)
        v = ok(self.daemon.request({"op": "StartVM", "sandbox": "idle"},
                                   timeout=ct.START_TIMEOUT))
        self.assertEqual(self.daemon.vm(v["vm_id"])["idle_timeout_seconds"],
                         3)
        # Busy for longer than the timeout: an exec keeps it alive.
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                        "sleep 5; echo kept > /root/k; echo done"],
                        timeout=60)
        self.assertEqual((r.code, r.stdout), (0, b"done\n"), r)
        self.assertEqual(self.daemon.vm(v["vm_id"])["state"], "running")
        t0 = time.monotonic()
        self.assertTrue(ct.wait_for(
            lambda: self.daemon.vm(v["vm_id"]) is None, 30),
            self.daemon.vm(v["vm_id"]))
        self.assertGreater(time.monotonic() - t0, 1.5)
        self.assertIn("idle for 3 s", self.daemon.log_text())
        self.assertEqual(self.sandboxes()["idle"]["state"], "stopped")
        v = ok(self.daemon.request({"op": "StartVM", "sandbox": "idle"},
                                   timeout=ct.START_TIMEOUT))
        r = ct.run_exec(v["proxy_socket_path"], ["cat", "/root/k"])
        self.assertEqual((r.code, r.stdout), (0, b"kept\n"), r)
        # (It may have gone idle again already.)
        r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]})
        self.assertTrue(r.get("ok") or r.get("code") == "not_found", r)


class SandboxRestartTest(unittest.TestCase):
    """Sandboxes across daemon restarts, and what a crash leaves."""

    def setUp(self):
        ct.require_build()

    def daemon(self, name, like=None):
        d = (ct.Daemon(name) if like is None else
             ct.Daemon(name, socket_path=like.sock, state_dir=like.state))
        self.addCleanup(d.kill)
        if like is not None:
            self.addCleanup(lambda: [os.kill(p, signal.SIGKILL)
                                     for p, _ in ct.qemu_procs(like.dir)])
        return d.start()

    def write_in(self, d, name, text):
        v = ok(d.request({"op": "StartVM", "sandbox": name},
                         timeout=ct.START_TIMEOUT))
        r = ct.run_exec(v["proxy_socket_path"], ["sh", "-c",
                        "echo %s >> /root/f; cat /root/f" % text])
        self.assertEqual(r.code, 0, r)
        return v, r.stdout

    def test_sandboxes_outlive_the_daemon(self):
        d = self.daemon("SbRestart1")
        sb = ok(d.request({"op": "CreateSandbox", "name": "s",
                           "memory_mib": VM_MEMORY}))["sandbox"]
        v, out = self.write_in(d, "s", "a")
        self.assertEqual(out, b"a\n")
        d.stop()                # SIGINT: the VM stops, the sandbox stays
        d2 = self.daemon("SbRestart2", like=d)
        self.assertEqual([(s["id"], s["state"]) for s in ok(d2.request(
            {"op": "ListSandboxes"}))["sandboxes"]], [(sb["id"],
                                                       "stopped")])
        v, out = self.write_in(d2, "s", "b")
        self.assertEqual(out, b"a\nb\n")
        # SIGTERM: the VM keeps running for the next daemon.
        d2.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d2.proc.wait(30), 0)
        d2.log.close()
        d2.returncode = 0
        d3 = self.daemon("SbRestart3", like=d)
        s = ok(d3.request({"op": "ListSandboxes"}))["sandboxes"][0]
        self.assertEqual((s["state"], s["vm_id"]), ("running", v["vm_id"]))
        self.assertEqual(d3.vm(v["vm_id"])["sandbox"], "s")
        r = d3.request({"op": "StartVM", "sandbox": "s"})
        self.assertEqual(r.get("code"), "conflict", r)
        r = ct.run_exec(v["proxy_socket_path"], ["cat", "/root/f"])
        self.assertEqual(r.stdout, b"a\nb\n", r)
        ok(d3.request({"op": "StopVM", "vm_id": v["vm_id"]}))
        ok(d3.request({"op": "RemoveSandbox", "sandbox": "s"}))
        self.assertEqual(sandbox_dirs(d3), [])
        d3.stop()

    def test_unfinished_and_damaged_records(self):
        d = self.daemon("SbRecords1")
        good = ok(d.request({"op": "CreateSandbox", "name": "good",
                             "memory_mib": VM_MEMORY}))["sandbox"]
        bad = ok(d.request({"op": "CreateSandbox", "name": "broken",
                            "memory_mib": VM_MEMORY}))["sandbox"]
        lost = ok(d.request({"op": "CreateSandbox", "name": "lost",
                             "memory_mib": VM_MEMORY}))["sandbox"]
        d.stop()
        top = os.path.join(d.state, "sandboxes")
        # A create and a removal cut short; a damaged record; a sandbox
        # whose record is gone (its disk may still matter to someone); a
        # stranger's name.
        half = ".creating-0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
        going = ".removing-0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0c"
        for n in (half, going):
            os.mkdir(os.path.join(top, n), 0o700)
            open(os.path.join(top, n, "disk.img"), "w").close()
        rec = os.path.join(top, bad["id"], "sandbox.json")
        with open(rec) as f:
            text = f.read()
        with open(rec, "w") as f:
            f.write(text.replace('"start":{', '"start":{"run_dir":"/x",'))
        os.unlink(os.path.join(top, lost["id"], "sandbox.json"))
        os.mkdir(os.path.join(top, "not-ours"), 0o700)
        d2 = self.daemon("SbRecords2", like=d)
        names = [s["name"] for s in ok(d2.request(
            {"op": "ListSandboxes"}))["sandboxes"]]
        self.assertEqual(names, ["good"])
        self.assertEqual(sorted(os.listdir(top)), sorted(
            [good["id"], bad["id"], lost["id"], "not-ours"]))
        self.assertTrue(os.path.exists(os.path.join(top, lost["id"],
                                                    "disk.img")))
        log = d2.log_text()
        self.assertIn("%s (its creation did not finish)" % half, log)
        self.assertIn("%s (its removal did not finish)" % going, log)
        self.assertIn("sandbox %s: its record" % bad["id"], log)
        self.assertIn("\"run_dir\" belongs to one run", log)
        self.assertIn("sandbox %s: its record cannot be opened" % lost["id"],
                      log)
        self.assertIn("not-ours is not capsule's; left alone", log)
        v = ok(d2.request({"op": "StartVM", "sandbox": "good"},
                          timeout=ct.START_TIMEOUT))
        ok(d2.request({"op": "StopVM", "vm_id": v["vm_id"]}))
        d2.stop()
        for n in (bad["id"], lost["id"]):
            ct.rmtree(os.path.join(top, n))
        os.rmdir(os.path.join(top, "not-ours"))


class SandboxOwnersTest(OwnerDaemonCase):
    """Names are per owner; a user sees and touches only their own; the
    sizes of a user's disks are bounded by user_max_disk_mib."""

    config_text = "user_max_disk_mib = 10240\n"

    def test_disk_quota(self):
        r = self.ask({"op": "CreateSandbox", "name": "big",
                      "disk_size_mib": 8192, "memory_mib": VM_MEMORY})
        self.assertIs(r.get("ok"), True, r)
        self.addCleanup(self.ask, {"op": "RemoveSandbox", "sandbox": "big"})
        for req in ({"op": "CreateSandbox", "name": "more",
                     "disk_size_mib": 4096},
                    {"op": "StartVM", "disk_size_mib": 4096,
                     "memory_mib": VM_MEMORY}):
            with self.subTest(op=req["op"]):
                r = self.ask(req)
                self.assertEqual(r.get("code"), "limit_exceeded", r)
                self.assertIn("user_max_disk_mib", r["error"])
                self.assertIn("this would make it 12288", r["error"])
        # Root is exempt; the sandbox's own VM adds nothing.
        r = self.daemon.request({"op": "CreateSandbox", "name": "rootbig",
                                 "disk_size_mib": 1 << 20})
        self.assertIs(r.get("ok"), True, r)
        self.addCleanup(self.daemon.request, {"op": "RemoveSandbox",
                                              "sandbox": "rootbig"})
        v = self.ask({"op": "StartVM", "sandbox": "big"})
        self.assertIs(v.get("ok"), True, v)
        self.ask({"op": "StopVM", "vm_id": v["vm_id"]})

    def test_names_are_per_owner(self):
        u = self.user
        mine = ok(self.ask({"op": "CreateSandbox", "name": "same",
                            "memory_mib": VM_MEMORY}))["sandbox"]
        roots = ok(self.daemon.request({"op": "CreateSandbox",
                                        "name": "same",
                                        "memory_mib": VM_MEMORY}))["sandbox"]
        self.addCleanup(self.daemon.request, {"op": "RemoveSandbox",
                                              "sandbox": roots["id"]})
        self.addCleanup(self.daemon.request, {"op": "RemoveSandbox",
                                              "sandbox": mine["id"]})
        self.assertEqual(mine["owner_uid"], u.uid)
        self.assertNotEqual(mine["id"], roots["id"])
        theirs = ok(self.ask({"op": "ListSandboxes"}))["sandboxes"]
        self.assertEqual([s["id"] for s in theirs], [mine["id"]])
        every = ok(self.daemon.request({"op": "ListSandboxes"}))["sandboxes"]
        self.assertEqual(sorted(s["id"] for s in every),
                         sorted([mine["id"], roots["id"]]))
        # The user cannot reach root's by id; root may not start theirs.
        for op in ("StartVM", "RemoveSandbox"):
            self.assertEqual(self.ask({"op": op, "sandbox": roots["id"]})
                             .get("code"), "not_found")
        r = self.daemon.request({"op": "StartVM", "sandbox": mine["id"]})
        self.assertEqual(r.get("code"), "permission_denied", r)
        self.assertIn("only its owner starts it", r["error"])
        v = ok(self.ask({"op": "StartVM", "sandbox": "same"}))
        self.assertEqual(self.daemon.vm(v["vm_id"])["owner_uid"], u.uid)
        # Root's CLI acts on root's own "same": never on the user's VM.
        for args in (("stop", "same"), ("exec", "same", "--", "true"),
                     ("pause", "same")):
            p = self.daemon.cli(*args)
            self.assertEqual(p.returncode, 125 if args[0] == "exec" else 1,
                             p)
            self.assertIn(b"sandbox same is not running", p.stderr)
        p = self.daemon.cli("rm", "-f", "same")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(self.daemon.vm(v["vm_id"])["state"], "running")
        self.assertEqual([s["id"] for s in ok(self.daemon.request(
            {"op": "ListSandboxes"}))["sandboxes"]], [mine["id"]])
        # The user's own rm -f stops theirs and removes it.
        r = self.ask({"op": "RemoveSandbox", "sandbox": "same",
                      "force": True})
        self.assertEqual(r.get("removed"), {"id": mine["id"],
                                            "name": "same"}, r)
        self.assertIsNone(self.daemon.vm(v["vm_id"]))
        self.assertFalse(os.path.lexists(os.path.join(
            self.daemon.state, "sandboxes", mine["id"])))


if __name__ == "__main__":
    ct.main()
