#!/usr/bin/env python3
"""The control socket: request parsing, validation, errors, framing, and the
daemon's start-up checks on its socket. One daemon; no VM is booted."""
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest

import capsuletest as ct


class ControlTest(ct.DaemonTestCase):

    # ---- Ping ----

    def test_ping_fields(self):
        r = self.daemon.request({"op": "Ping"})
        self.assertIs(r.get("ok"), True, r)
        self.assertNotIn("id", r, "no id was sent, none may come back")
        self.assertRegex(r.get("version", ""), r"^\d+\.\d+\.\d+", r)
        self.assertEqual(r.get("protocol"), 1, r)
        self.assertIsInstance(r.get("protocol"), int, r)
        self.assertIn(r.get("accel"), ("kvm", "tcg", "hvf"), r)
        self.assertIsInstance(r.get("backends"), list, r)
        self.assertIn("qemu", r["backends"], r)

    def test_ping_hypervisor_version(self):
        # hv/qemu.c turns "QEMU emulator version X" into "QEMU X".
        r = self.daemon.request({"op": "Ping"})
        self.assertRegex(r.get("hypervisor", ""), r"^QEMU \d+\.\d+", r)

    def test_id_echo(self):
        for ident in ("req-1", 42, 3.5, {"a": [1, {"b": None}], "c": "d"},
                      [1, "x"], None, True):
            r = self.daemon.request({"op": "Ping", "id": ident})
            self.assertIs(r.get("ok"), True, r)
            self.assertIn("id", r, r)
            self.assertEqual(r["id"], ident, r)

    def test_id_echo_on_error(self):
        r = self.daemon.request({"op": "NoSuchOp", "id": {"n": 7}})
        self.assertError(r, "unsupported_op")
        self.assertEqual(r.get("id"), {"n": 7}, r)

    def test_cli_ping(self):
        p = self.daemon.cli("ping")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(b"capsuled", p.stdout, p)
        p = self.daemon.cli("ping", "--json")
        self.assertEqual(p.returncode, 0, p)
        self.assertIs(json.loads(p.stdout).get("ok"), True, p)

    # ---- malformed requests ----

    def test_invalid_json_keeps_connection(self):
        c = self.daemon.connect()
        try:
            c.send_raw(b'{"op": "Ping", \n')
            r = c.read_json()
            self.assertError(r, "invalid_json")
            r = c.request({"op": "Ping", "id": "after"})
            self.assertIs(r.get("ok"), True, r)
            self.assertEqual(r.get("id"), "after", r)
        finally:
            c.close()

    def test_not_an_object(self):
        c = self.daemon.connect()
        try:
            c.send_raw(b"[1, 2]\n")
            self.assertError(c.read_json(), "invalid_argument")
            c.send_raw(b'{"id": 5}\n')
            r = c.read_json()
            self.assertError(r, "invalid_argument", "op")
            self.assertEqual(r.get("id"), 5, r)
            self.assertIs(c.request({"op": "Ping"}).get("ok"), True)
        finally:
            c.close()

    def test_oversized_line(self):
        c = self.daemon.connect(timeout=30)
        line = (b'{"op":"Ping","pad":"' + b"x" * (ct.MAX_LINE + 16) +
                b'"}\n')
        errors = []

        def sender():
            try:
                c.send_raw(line)
            except OSError as e:      # the daemon may close mid-send
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            r = c.read_json(timeout=30)
            self.assertError(r, "too_large")
            self.assertTrue(c.closed_by_peer(timeout=10),
                            "the connection should close after too_large")
        finally:
            t.join(10)
            c.close()
        r = self.daemon.request_once({"op": "Ping", "id": "new"})
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r.get("id"), "new", r)

    def test_line_at_the_limit_is_accepted(self):
        # PROTO_MAX_LINE excludes the newline: exactly 1 MiB must pass.
        head = b'{"op":"Ping","id":"edge"}'
        line = head + b" " * (ct.MAX_LINE - len(head))
        self.assertEqual(len(line), ct.MAX_LINE)
        c = self.daemon.connect(timeout=30)
        try:
            c.send_raw(line + b"\n")
            r = c.read_json(timeout=30)
            self.assertIs(r.get("ok"), True, r)
            self.assertEqual(r.get("id"), "edge", r)
            self.assertIs(c.request({"op": "Ping"}).get("ok"), True)
        finally:
            c.close()

    def test_unknown_op(self):
        r = self.daemon.request({"op": "Frobnicate"})
        self.assertError(r, "unsupported_op", "Frobnicate")

    def test_unknown_field(self):
        r = self.daemon.request({"op": "StartVM", "bogus_field": 1})
        self.assertError(r, "invalid_argument", "bogus_field")
        r = self.daemon.request({"op": "ListVMs", "other_field": True})
        self.assertError(r, "invalid_argument", "other_field")

    # ---- StartVM validation (nothing may boot) ----

    def test_relative_kernel_path(self):
        r = self.daemon.request({"op": "StartVM",
                                 "kernel_path": "build/image/vmlinuz"})
        self.assertError(r, "invalid_argument", "kernel_path")

    def test_vcpus_zero(self):
        r = self.daemon.request({"op": "StartVM", "vcpus": 0})
        self.assertError(r, "invalid_argument", "vcpus")

    def test_memory_too_small(self):
        r = self.daemon.request({"op": "StartVM", "memory_mib": 1})
        self.assertError(r, "invalid_argument", "memory_mib")

    def test_wrong_types(self):
        for field, value in (("vcpus", "2"), ("memory_mib", 1.5),
                             ("stop_on_disconnect", "yes"),
                             ("kernel_path", 7)):
            r = self.daemon.request({"op": "StartVM", field: value})
            self.assertError(r, "invalid_argument", field)

    def test_missing_rootfs(self):
        path = "/nonexistent-capsule-test/rootfs.ext4"
        r = self.daemon.request({"op": "StartVM", "rootfs_path": path})
        self.assertError(r, "invalid_argument", path)

    def test_initrd_not_an_initramfs(self):
        path = os.path.join(self.daemon.dir, "notaninitrd")
        with open(path, "wb") as f:
            f.write(b"#!/bin/sh\necho hello\n")
        r = self.daemon.request({"op": "StartVM", "initrd_path": path})
        self.assertError(r, "invalid_argument", "initrd_path", path)

    def test_proxy_socket_dir_missing(self):
        # Caught before booting, and named: not an internal error later.
        path = "/nonexistent-capsule-test/dir/p.sock"
        r = self.daemon.request({"op": "StartVM", "proxy_socket_path": path})
        self.assertError(r, "invalid_argument", "proxy_socket_path", path)

    def test_rootfs_not_ext4(self):
        path = os.path.join(self.daemon.dir, "zeros.img")
        with open(path, "wb") as f:
            f.write(b"\0" * (256 * 1024))
        r = self.daemon.request({"op": "StartVM", "rootfs_path": path})
        self.assertIs(r.get("ok"), False, r)
        self.assertEqual(r.get("code"), "invalid_argument", r)
        self.assertIn(path, r.get("error", ""), r)

    def test_kernel_not_a_kernel(self):
        path = os.path.join(self.daemon.dir, "notakernel")
        with open(path, "wb") as f:
            f.write(b"#!/bin/sh\n" + b"\0" * 4096)
        r = self.daemon.request({"op": "StartVM", "kernel_path": path})
        self.assertError(r, "invalid_argument", path)

    def test_zz_failed_starts_left_nothing(self):
        # Runs after the StartVM failures above (unittest sorts by name).
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.qemu(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])

    # ---- StopVM ----

    def test_stop_unknown_id(self):
        r = self.daemon.request({"op": "StopVM", "vm_id": "no-such-vm"})
        self.assertError(r, "not_found", "unknown vm_id", "no-such-vm")

    def test_stop_without_id_and_no_vms(self):
        c = self.daemon.connect()
        try:
            r = c.request({"op": "StopVM", "id": 1})
            self.assertIs(r.get("ok"), True, r)
            self.assertEqual(r.get("stopped"), [], r)
            self.assertEqual(r.get("id"), 1, r)
        finally:
            c.close()

    def test_list_empty(self):
        r = self.daemon.request({"op": "ListVMs"})
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r.get("vms"), [], r)

    # ---- framing ----

    def test_pipelined_requests_answered_in_order(self):
        reqs = [
            b'{"op":"Ping","id":1}',
            b'{"op":"ListVMs","id":2}',
            b'{"op":"Nope","id":3}',
            b'not json at all',
            b'{"op":"StopVM","vm_id":"missing","id":5}',
            b'{"op":"StartVM","vcpus":0,"id":6}',
            b'{"op":"Ping","id":7}',
        ]
        c = self.daemon.connect()
        try:
            c.send_raw(b"\n".join(reqs) + b"\n")
            got = [c.read_json(timeout=20) for _ in reqs]
        finally:
            c.close()
        self.assertEqual([g.get("id") for g in got],
                         [1, 2, 3, None, 5, 6, 7], got)
        self.assertEqual([g.get("ok") for g in got],
                         [True, True, False, False, False, False, True], got)
        self.assertEqual([g.get("code") for g in got],
                         [None, None, "unsupported_op", "invalid_json",
                          "not_found", "invalid_argument", None], got)

    def test_last_line_without_newline(self):
        # A peer that half-closes after its last request still gets a reply.
        c = self.daemon.connect()
        try:
            c.send_raw(b'{"op":"Ping","id":"tail"}')
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_json(timeout=10)
            self.assertIs(r.get("ok"), True, r)
            self.assertEqual(r.get("id"), "tail", r)
        finally:
            c.close()

    # ---- the socket at start-up ----

    def test_stale_socket_is_replaced(self):
        d = ct.Daemon("stale-socket")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(d.sock)
        stale.close()            # the file stays; nobody listens
        self.assertTrue(os.path.exists(d.sock))
        try:
            d.start()
            r = d.request({"op": "Ping"})
            self.assertIs(r.get("ok"), True, r)
        finally:
            try:
                d.stop()
            finally:
                d.kill()

    def test_second_daemon_on_live_socket_fails(self):
        state = os.path.join(self.daemon.dir, "state2")
        p = subprocess.run(
            [ct.CAPSULED, "--socket", self.daemon.sock,
             "--state-dir", state, "--image-dir", ct.IMAGE_DIR],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=30)
        err = p.stderr.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 0, err)
        self.assertIn(self.daemon.sock, err)
        self.assertRegex(err, r"(?i)already (listening|running|in use)")
        # The first daemon keeps its socket.
        self.assertTrue(os.path.exists(self.daemon.sock))
        r = self.daemon.request_once({"op": "Ping"})
        self.assertIs(r.get("ok"), True, r)

    def test_cli_without_daemon(self):
        gone = os.path.join(self.daemon.dir, "nobody.sock")
        refused = os.path.join(self.daemon.dir, "refused.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(refused)
        s.close()
        for path in (gone, refused):
            p = self.daemon.cli("ping", env={"CAPSULE_SOCKET": path},
                                timeout=20)
            err = p.stderr.decode("utf-8", "replace")
            self.assertNotEqual(p.returncode, 0, err)
            self.assertEqual(p.stdout, b"")
            self.assertIn(path, err)
            self.assertRegex(err, r"(?i)start")
            self.assertIn("capsuled", err)
        p = subprocess.run([ct.CAPSULE, "--socket", gone, "ping"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=20)
        self.assertNotEqual(p.returncode, 0, p)
        self.assertIn(gone.encode(), p.stderr)

    def test_zzz_daemon_still_answers(self):
        # Last: after everything above, a fresh connection still works.
        r = self.daemon.request_once({"op": "Ping", "id": "final"})
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r.get("id"), "final", r)
        self.assertNoLeaks()



class SerialPortTest(ct.DaemonTestCase):
    """StartVM's serial_ports: a raw byte channel between a host socket and
    a guest virtio-serial port. Boots one VM (the rest of this file boots
    none)."""

    NAME = "test.port"
    # The guest finds its device by name, opens it once read-write (a port
    # takes one opener at a time) and says hello: a guest write waits for
    # the host to be connected, and a read before that would see EOF.
    OPEN = ('for d in /sys/class/virtio-ports/*; do '
            '[ "$(cat "$d/name")" = "$0" ] && dev=/dev/${d##*/}; done; '
            '[ -n "$dev" ] || { echo "no port $0" >&2; exit 1; }; '
            'exec 3<>"$dev"; echo ready >&3; ')

    def guest(self, vm, script, n, stdin=None):
        return ct.run_exec(vm["proxy_socket_path"],
                           ["sh", "-c", self.OPEN + script, self.NAME,
                            str(n)], stdin=stdin, timeout=120)

    def read_exactly(self, sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def test_serial_port_both_ways(self):
        vm = self.daemon.start_vm(serial_ports=[self.NAME])
        path = os.path.join(vm["run_dir"], "port-%s.sock" % self.NAME)
        self.assertEqual(vm.get("serial_ports"), {self.NAME: path}, vm)
        self.assertEqual(self.daemon.vm(vm["vm_id"]).get("serial_ports"),
                         {self.NAME: path})
        payload = os.urandom(200000)
        host = socket.socket(socket.AF_UNIX)
        host.settimeout(60)
        try:
            host.connect(path)
            # Host to guest.
            result = []
            t = threading.Thread(target=lambda: result.append(self.guest(
                vm, 'head -c "$1" <&3', len(payload))))
            t.start()
            self.assertEqual(self.read_exactly(host, 6), b"ready\n")
            host.sendall(payload)
            t.join(130)
            self.assertEqual(len(result), 1, "the guest reader hung")
            r = result[0]
            self.assertEqual(r.code, 0, r)
            self.assertEqual(len(r.stdout), len(payload))
            self.assertTrue(r.stdout == payload, "bytes differ")
            # Guest to host: the exec's stdin goes out through the port.
            result = []
            t = threading.Thread(target=lambda: result.append(self.guest(
                vm, 'cat >&3', len(payload), stdin=payload)))
            t.start()
            self.assertEqual(self.read_exactly(host, 6), b"ready\n")
            got = self.read_exactly(host, len(payload))
            t.join(130)
            self.assertEqual(len(result), 1, "the guest writer hung")
            self.assertEqual(result[0].code, 0, result[0])
            self.assertEqual(len(got), len(payload))
            self.assertTrue(got == payload, "bytes differ")
        finally:
            host.close()
        r = self.daemon.request({"op": "StopVM", "vm_id": vm["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
        self.assertIs(r.get("ok"), True, r)
        self.assertFalse(os.path.exists(path))
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
