#!/usr/bin/env python3
"""Guests of another architecture: aarch64 VMs under qemu-system-aarch64
(TCG, the virt machine, virtio over PCI) beside the host's x86_64 ones.
StartVM "arch", what ListVMs and doctor say, the errors, templates, forks
and snapshots of aarch64 VMs, and a capsuled restart that takes one over.
(The core exec, cp and tty suites run against aarch64 guests too: see
CMakeLists.txt, CAPSULE_TEST_ARCH.)"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import capsuletest as ct

ARCH = "aarch64"
ARCH_IMAGE = os.path.join(ct.IMAGE_DIR, ARCH)
HOST_ARCH = os.uname().machine


def require_arch_image():
    missing = [f for f in ct.IMAGE_FILES
               if not os.path.isfile(os.path.join(ARCH_IMAGE, f))]
    if missing:
        raise AssertionError("missing %s in %s; build it with: cmake --build "
                             "build --target image-aarch64" % (
                                 ", ".join(missing), ARCH_IMAGE))


def kill_qemus(d):
    """No QEMU of d's outlives the test, whatever happened."""
    for pid, _ in ct.qemu_procs(d.dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_in(proxy, script):
    r = ct.run_exec(proxy, ["sh", "-c", script])
    if r.code != 0:
        raise AssertionError("%r failed: %r" % (script, r))
    return r.stdout.decode()


class ArchTest(ct.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        require_arch_image()
        super().setUpClass()

    def start(self, **fields):
        v = self.daemon.start_vm(**dict(dict(vcpus=1, memory_mib=512),
                                        **fields))
        self.addCleanup(self.daemon.request_once,
                        {"op": "StopVM", "vm_id": v["vm_id"]})
        return v

    def test_aarch64_guest(self):
        v = self.start(arch=ARCH)
        info = self.daemon.vm(v["vm_id"])
        self.assertEqual((info.get("arch"), info.get("accel")),
                         (ARCH, "tcg"), info)
        self.assertEqual(v.get("accel"), "tcg", v)
        self.assertEqual(run_in(v["proxy_socket_path"], "uname -m"),
                         "aarch64\n")
        # Its devices are virtio over PCI (vendor 0x1af4), as under
        # Virtualization.framework, and the agent's channel is the named
        # console port.
        out = run_in(v["proxy_socket_path"],
                     "cat /sys/bus/pci/devices/*/vendor | sort -u; "
                     "cat /sys/class/virtio-ports/*/name")
        self.assertIn("0x1af4\n", out)
        self.assertIn("org.capsule.agent\n", out)
        # The CLI shows it.
        r = self.daemon.cli("ps")
        self.assertEqual(r.returncode, 0, r)
        line = [l for l in r.stdout.decode().splitlines()
                if l.startswith(v["vm_id"])]
        self.assertEqual(len(line), 1, r.stdout)
        self.assertIn(" aarch64 ", line[0])

    def test_host_guest_by_default(self):
        v = self.start()
        self.assertEqual(self.daemon.vm(v["vm_id"]).get("arch"), HOST_ARCH)
        self.assertEqual(run_in(v["proxy_socket_path"], "uname -m"),
                         HOST_ARCH + "\n")

    def test_bad_arch(self):
        for bad in ("arm64", "", "x86-64", 64, ["aarch64"]):
            r = self.daemon.request({"op": "StartVM", "arch": bad})
            self.assertError(r, "invalid_argument", '"arch" must be')
        self.assertTrue(self.daemon.request({"op": "Ping"}).get("ok"))

    def test_kernel_of_the_other_arch(self):
        # Each kernel is refused as the other architecture's, naming the
        # field and the file.
        arm_kernel = os.path.join(ARCH_IMAGE, "vmlinuz")
        x86_kernel = os.path.join(ct.IMAGE_DIR, "vmlinuz")
        r = self.daemon.request({"op": "StartVM", "arch": ARCH,
                                 "kernel_path": x86_kernel})
        self.assertError(r, "invalid_argument", "kernel_path", x86_kernel,
                         "neither an arm64 Image nor an aarch64 ELF kernel")
        r = self.daemon.request({"op": "StartVM", "arch": "x86_64",
                                 "kernel_path": arm_kernel})
        self.assertError(r, "invalid_argument", "kernel_path", arm_kernel,
                         "neither an x86_64 bzImage")
        # The aarch64 kernel named explicitly boots (not from a template).
        v = self.start(arch=ARCH, kernel_path=arm_kernel,
                       initrd_path=os.path.join(ARCH_IMAGE, "initramfs.img"),
                       rootfs_path=os.path.join(ARCH_IMAGE, "rootfs.ext4"))
        self.assertEqual(run_in(v["proxy_socket_path"], "uname -m"),
                         "aarch64\n")

    def test_image_is_the_hosts(self):
        # Refused wherever a StartVM request is taken, before anything
        # is made: StartVM, CreateSandbox, SetPool.
        why = "images are pulled for " + HOST_ARCH
        r = self.daemon.request({"op": "StartVM", "arch": ARCH,
                                 "image": "busybox"})
        self.assertError(r, "invalid_argument", why)
        r = self.daemon.request({"op": "CreateSandbox", "name": "armimg",
                                 "arch": ARCH, "image": "busybox"})
        self.assertError(r, "invalid_argument", why)
        r = self.daemon.request({"op": "ListSandboxes"})
        self.assertEqual(r.get("sandboxes"), [], r)
        r = self.daemon.request({"op": "SetPool", "size": 1, "arch": ARCH,
                                 "image": "busybox"})
        self.assertError(r, "invalid_argument", why)

    def test_sandbox_and_pool(self):
        # A sandbox keeps its architecture across starts; a pool of
        # aarch64 VMs hands one out only to an aarch64 request.
        r = self.daemon.request({"op": "CreateSandbox", "name": "arm",
                                 "arch": ARCH, "memory_mib": 256})
        self.assertTrue(r.get("ok"), r)
        self.addCleanup(self.daemon.request_once,
                        {"op": "RemoveSandbox", "sandbox": "arm",
                         "force": True})
        for _ in range(2):
            v = self.daemon.start_vm(sandbox="arm")
            self.assertEqual(run_in(v["proxy_socket_path"], "uname -m"),
                             "aarch64\n")
            r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                    timeout=ct.STOP_TIMEOUT)
            self.assertTrue(r.get("ok"), r)
        r = self.daemon.request({"op": "SetPool", "size": 1, "arch": ARCH,
                                 "memory_mib": 256})
        self.assertTrue(r.get("ok"), r)
        self.addCleanup(self.daemon.request_once,
                        {"op": "SetPool", "size": 0, "arch": ARCH,
                         "memory_mib": 256})
        self.assertTrue(ct.wait_for(lambda: any(
            x.get("pooled") for x in self.daemon.list_vms()), 60))
        # The pool's request exactly (a pool matches its fields), with
        # and without the architecture.
        host = self.daemon.start_vm(memory_mib=256)
        self.addCleanup(self.daemon.request_once,
                        {"op": "StopVM", "vm_id": host["vm_id"]})
        self.assertNotEqual(host["timing_ms"]["start"], "pooled", host)
        self.assertEqual(self.daemon.vm(host["vm_id"]).get("arch"),
                         HOST_ARCH)
        arm = self.daemon.start_vm(arch=ARCH, memory_mib=256)
        self.addCleanup(self.daemon.request_once,
                        {"op": "StopVM", "vm_id": arm["vm_id"]})
        self.assertEqual(arm["timing_ms"]["start"], "pooled", arm)
        self.assertEqual(run_in(arm["proxy_socket_path"], "uname -m"),
                         "aarch64\n")

    def test_template_fork_snapshot(self):
        # The first aarch64 VM boots and leaves a template (a key of its
        # own: the host's VMs started here have theirs); the next is
        # restored from it.
        self.start(arch=ARCH)
        v = self.start(arch=ARCH)
        self.assertEqual(v["timing_ms"]["start"], "restored", v)
        proxy = v["proxy_socket_path"]
        run_in(proxy, "echo kept > /root/f")
        r = self.daemon.request({"op": "ForkVM", "vm_id": v["vm_id"]},
                                timeout=ct.START_TIMEOUT)
        self.assertTrue(r.get("ok"), r)
        kid = r["vms"][0]
        self.addCleanup(self.daemon.request_once,
                        {"op": "StopVM", "vm_id": kid["vm_id"]})
        self.assertEqual(self.daemon.vm(kid["vm_id"]).get("arch"), ARCH)
        self.assertEqual(run_in(kid["proxy_socket_path"],
                                "uname -m; cat /root/f"), "aarch64\nkept\n")
        r = self.daemon.request({"op": "SnapshotVM", "vm_id": v["vm_id"],
                                 "name": "arm"}, timeout=ct.START_TIMEOUT)
        self.assertTrue(r.get("ok"), r)
        self.addCleanup(self.daemon.request_once,
                        {"op": "RemoveSnapshot", "name": "arm"})
        s = self.daemon.start_vm(snapshot="arm")
        self.addCleanup(self.daemon.request_once,
                        {"op": "StopVM", "vm_id": s["vm_id"]})
        self.assertEqual(s["timing_ms"]["start"], "snapshot", s)
        self.assertEqual(self.daemon.vm(s["vm_id"]).get("arch"), ARCH)
        self.assertEqual(run_in(s["proxy_socket_path"],
                                "uname -m; cat /root/f"), "aarch64\nkept\n")

    def test_zzz_no_leaks(self):
        self.assertNoLeaks()


class ArchServiceTest(unittest.TestCase):
    """Daemons of their own: one without qemu-system-aarch64, one that
    leaves an aarch64 VM running for the next to take over."""

    def setUp(self):
        ct.require_build()
        require_arch_image()

    def new_daemon(self, name, **kw):
        d = ct.Daemon(name, **kw)
        self.addCleanup(d.kill)
        return d

    def test_without_qemu_for_the_arch(self):
        # A PATH with the host's QEMU only (capsuled runs everything else
        # by its full path): aarch64 guests are refused saying what to
        # install; x86_64 ones still run, and doctor says both.
        bindir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.addCleanup(ct.rmtree, bindir)
        os.symlink(shutil.which("qemu-system-x86_64"),
                   os.path.join(bindir, "qemu-system-x86_64"))
        env = dict(os.environ, PATH=bindir)
        d = self.new_daemon("noarm", env=env)
        d.start()
        r = d.request({"op": "StartVM", "arch": ARCH})
        self.assertIs(r.get("ok"), False, r)
        self.assertEqual(r.get("code"), "unavailable", r)
        self.assertIn("aarch64 guests cannot run here: qemu-system-aarch64 "
                      "not found in PATH; install qemu-system-arm",
                      r["error"])
        r = d.cli("doctor", "--json")
        self.assertEqual(r.returncode, 0, r)
        checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertEqual(checks["guests_aarch64"]["status"], "warn", checks)
        self.assertIn("qemu-system-arm", checks["guests_aarch64"]["message"])
        v = d.start_vm(vcpus=1, memory_mib=256)
        self.assertEqual(d.vm(v["vm_id"]).get("arch"), HOST_ARCH)
        d.stop()

    def test_taken_over_after_restart(self):
        d = self.new_daemon("arm-1")
        d.start()
        self.addCleanup(kill_qemus, d)
        v = d.start_vm(arch=ARCH, vcpus=1, memory_mib=512)
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(ct.STOP_TIMEOUT), 0, d.log_text())
        self.assertTrue(ct.pid_alive(v["pid"]), "QEMU went with capsuled")
        d2 = self.new_daemon("arm-2", socket_path=d.sock, state_dir=d.state)
        d2.start()
        info = d2.vm(v["vm_id"])
        self.assertEqual((info.get("state"), info.get("arch"),
                          info.get("pid")), ("running", ARCH, v["pid"]), info)
        r = None
        for _ in range(300):
            try:
                r = ct.run_exec(v["proxy_socket_path"], ["uname", "-m"])
                break
            except (ConnectionRefusedError, FileNotFoundError):
                time.sleep(0.05)
        self.assertIsNotNone(r, "the exec socket never came back")
        self.assertEqual((r.code, r.stdout), (0, b"aarch64\n"), r)
        d2.stop()
        self.assertFalse(ct.pid_alive(v["pid"]))


if __name__ == "__main__":
    ct.main()
