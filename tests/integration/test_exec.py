#!/usr/bin/env python3
"""Exec streams on a VM's proxy socket (cleanroom's vsockexec JSON lines),
raw and through the CLI. One daemon, one VM for the whole class."""
import hashlib
import json
import os
import socket
import re
import signal
import subprocess
import threading
import time
import unittest

import capsuletest as ct


class ExecTest(ct.VMTestCase):

    def assertExec(self, r, code=0, stdout=None, stderr=None):
        self.assertIsNotNone(r.exit, r)
        self.assertEqual(r.exit.get("type"), "exit", r)
        self.assertEqual(r.code, code, r)
        if stdout is not None:
            self.assertEqual(r.stdout, stdout, r)
        if stderr is not None:
            self.assertEqual(r.stderr, stderr, r)
        self.assertEqual(r.after_exit, [], "lines after the exit line")

    # ---- the StartVM reply ----

    def test_start_reply(self):
        v = self.vm
        self.assertIs(v.get("ok"), True, v)
        self.assertRegex(v["vm_id"], r"^[0-9a-f-]{36}$", v)
        self.assertTrue(os.path.isabs(self.proxy), v)
        self.assertTrue(os.path.isdir(v.get("run_dir", "")), v)
        t = v.get("timing_ms")
        self.assertIsInstance(t, dict, v)
        self.assertIsInstance(t.get("vm_ready"), int, v)
        self.assertGreater(t["vm_ready"], 0, v)

    # ---- basics ----

    def test_echo(self):
        r = self.run_cmd(["echo", "hello", "world"])
        self.assertExec(r, 0, b"hello world\n", b"")
        self.assertEqual(r.exit.get("error", ""), "", r)

    def test_stdout_stderr_separate(self):
        r = self.run_cmd(["sh", "-c", "echo out; echo err >&2"])
        self.assertExec(r, 0, b"out\n", b"err\n")

    def test_exit_code(self):
        r = self.run_cmd(["sh", "-c", "exit 7"])
        self.assertExec(r, 7, b"", b"")

    def test_stdin_round_trip(self):
        data = (b"line one\nline two\n" + os.urandom(200 * 1024) +
                b"\0\xff tail without newline")
        r = self.run_cmd(["cat"], stdin=data, timeout=120)
        self.assertExec(r, 0)
        self.assertEqual(len(r.stdout), len(data))
        self.assertTrue(r.stdout == data, "cat echoed different bytes")

    def test_stdin_eof_only(self):
        r = self.run_cmd(["wc", "-c"], stdin=b"")
        self.assertExec(r, 0)
        self.assertEqual(r.stdout.strip(), b"0", r)

    def test_large_output(self):
        n = 8 * 1024 * 1024
        t0 = time.monotonic()
        r = self.run_cmd(["sh", "-c", "head -c %d /dev/urandom | tee /tmp/big "
                          "&& sha256sum /tmp/big >&2 && rm -f /tmp/big" % n],
                         timeout=300)
        took = time.monotonic() - t0
        self.assertExec(r, 0)
        self.assertEqual(len(r.stdout), n, "got %d bytes of %d" %
                         (len(r.stdout), n))
        guest = r.stderr.split()[0].decode() if r.stderr.split() else ""
        self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), guest,
                         "sha256 of the bytes received differs from the "
                         "guest's (stderr %r)" % r.stderr[:200])
        print("\n  8 MiB of output in %.1f s" % took, end=" ")

    def test_missing_command(self):
        r = self.run_cmd(["no-such-command-capsule-test", "arg"])
        self.assertExec(r, 127)
        self.assertTrue(r.exit.get("error"), r)
        self.assertIn("no-such-command-capsule-test", r.exit["error"], r)

    def test_bad_dir(self):
        r = self.run_cmd(["true"], dir="/no/such/dir")
        self.assertExec(r, 126)
        self.assertIn("/no/such/dir", r.exit.get("error", ""), r)

    def test_concurrent_execs(self):
        n = 4
        results = [None] * n
        errors = []

        def one(i):
            try:
                results[i] = self.run_cmd(
                    ["sh", "-c", "sleep 2; echo job-$0; echo e$0 >&2; "
                     "exit $0", str(i + 10)])
            except BaseException as e:
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        took = time.monotonic() - t0
        self.assertEqual(errors, [])
        for i, r in enumerate(results):
            self.assertIsNotNone(r, "exec %d did not finish" % i)
            self.assertExec(r, i + 10, ("job-%d\n" % (i + 10)).encode(),
                            ("e%d\n" % (i + 10)).encode())
        # Four 2 s sleeps one after another would take 8 s.
        self.assertLess(took, 7.5, "the execs did not run concurrently")

    def test_dir_and_env(self):
        r = self.run_cmd(["sh", "-c", 'pwd; echo "$FOO|$BAR"; echo "$PATH"'],
                         dir="/tmp", env=["FOO=bar baz", "BAR=a=b"])
        self.assertExec(r, 0)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(lines[:2], ["/tmp", "bar baz|a=b"], r)
        self.assertIn("/bin", lines[2], "the default PATH was lost")

    def test_env_overrides_default(self):
        r = self.run_cmd(["sh", "-c", 'echo "$HOME"'], env=["HOME=/srv"])
        self.assertExec(r, 0, b"/srv\n")

    def test_signal(self):
        x = ct.Exec(self.proxy, ["sh", "-c", "echo ready; exec sleep 100"])
        try:
            x.read_until(lambda r: b"ready\n" in r.stdout, timeout=30)
            t0 = time.monotonic()
            x.signal(15)
            r = x.wait(timeout=30)
        finally:
            x.close()
        self.assertExec(r, 143)
        self.assertEqual(r.exit.get("signal"), 15, r)
        self.assertLess(time.monotonic() - t0, 20)

    def test_signal_right_away(self):
        # The signal frame may overtake the child's exec; it must still land.
        x = ct.Exec(self.proxy, ["sleep", "100"])
        try:
            x.signal(15)
            r = x.wait(timeout=30)
        finally:
            x.close()
        self.assertExec(r, 143)
        self.assertEqual(r.exit.get("signal"), 15, r)

    def sleepers(self, marker):
        r = self.run_cmd(["ps", "-o", "pid,args"])
        self.assertEqual(r.code, 0, r)
        self.assertIn(b"PID", r.stdout, r)
        return [l for l in r.stdout.decode().splitlines() if marker in l]

    def start_sleeper(self, marker):
        """An exec of `sleep N` (marker "sleep N") that ps can see."""
        x = ct.Exec(self.proxy, ["sh", "-c", "echo up; exec " + marker])
        x.read_until(lambda r: b"up\n" in r.stdout, timeout=30)
        return x

    def assertEndsWhenClosed(self, x, marker):
        self.assertEqual(len(self.sleepers(marker)), 1,
                         "ps cannot see the command")
        x.close()
        self.assertTrue(ct.wait_for(lambda: not self.sleepers(marker), 20,
                                    interval=0.5),
                        "%s still runs after its client went away" % marker)

    def test_client_disconnect_kills_command(self):
        # Nothing may run on unobserved: closing the connection ends it.
        x = self.start_sleeper("sleep 301")
        self.assertEndsWhenClosed(x, "sleep 301")

    def test_close_with_stdin_backed_up_kills_command(self):
        # The command never reads stdin, so capsuled holds input it cannot
        # pass on and stops reading the client; a close must still be seen.
        x = self.start_sleeper("sleep 303")
        x.conn.sock.settimeout(2)
        try:
            x.stdin(b"y" * (4 * 1024 * 1024))
        except OSError:
            pass            # the socket buffers filled up: that is the point
        self.assertEndsWhenClosed(x, "sleep 303")

    def test_half_close_then_close_kills_command(self):
        # shutdown(SHUT_WR) is end of input; a later close is the client
        # going away, and must end the command.
        x = self.start_sleeper("sleep 304")
        x.conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(1)
        self.assertEqual(len(self.sleepers("sleep 304")), 1,
                         "a half-close must not kill the command")
        self.assertEndsWhenClosed(x, "sleep 304")

    def test_cli_exit_status_with_unread_stdin(self):
        # head exits after two lines; the rest of stdin is never read, and
        # the exit status must still come back.
        data = b"".join(b"%d\n" % i for i in range(200000))
        p = self.daemon.cli("exec", self.vm_id, "--", "head", "-2",
                            input=data, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, b"0\n1\n"), p)
        p = self.daemon.cli("exec", self.vm_id, "--", "true",
                            input=b"z" * 3000000, timeout=60)
        self.assertEqual(p.returncode, 0, p)

    def test_tty(self):
        r = self.run_cmd(["tty"], tty=True)
        self.assertExec(r, 0)
        self.assertRegex(r.stdout.decode(), r"^/dev/pts/\d+\r?\n$", r)

    def test_tty_resize(self):
        x = ct.Exec(self.proxy, ["sh", "-c", "read x; stty size"], tty=True)
        try:
            x.resize(123, 45)
            x.stdin(b"go\n")
            r = x.wait(timeout=30)
        finally:
            x.close()
        self.assertExec(r, 0)
        self.assertIn(b"45 123", r.stdout, r)

    def test_null_command(self):
        # cleanroom's readiness probe: one exit line with an error, then EOF.
        x = ct.Exec(self.proxy, first={"command": None})
        try:
            lines = []
            while True:
                line = x.conn.read_line(timeout=20)
                if line is None:
                    break
                lines.append(json.loads(line))
        finally:
            x.close()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0].get("type"), "exit", lines)
        self.assertIsInstance(lines[0].get("exit_code"), int, lines)
        self.assertNotEqual(lines[0]["exit_code"], 0, lines)
        self.assertTrue(lines[0].get("error"), lines)

    def test_bad_first_line(self):
        x = ct.Exec(self.proxy, first=b"this is not json")
        try:
            r = x.wait(timeout=20)
        finally:
            x.close()
        self.assertExec(r, 125)
        self.assertTrue(r.exit.get("error"), r)

    def test_unknown_input_type_ignored(self):
        x = ct.Exec(self.proxy, ["cat"])
        try:
            x.conn.send({"type": "from-the-future", "x": 1})
            x.stdin(b"still here\n")
            x.eof()
            r = x.wait(timeout=30)
        finally:
            x.close()
        self.assertExec(r, 0, b"still here\n")

    # ---- the CLI ----

    def test_cli_exec(self):
        p = self.daemon.cli("exec", self.vm_id, "--", "sh", "-c",
                            "echo hi; exit 3", input=b"")
        self.assertEqual(p.returncode, 3, p)
        self.assertEqual(p.stdout, b"hi\n", p)

    def test_cli_exec_stdin(self):
        data = b"forwarded through capsule exec\n" * 1000
        p = self.daemon.cli("exec", self.vm_id, "--", "cat", input=data,
                            timeout=30)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout, data)

    def test_cli_exec_forwards_signal(self):
        p = self.daemon.cli_popen("exec", self.vm_id, "--", "sh", "-c",
                                  "echo ready; exec sleep 100",
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        try:
            self.assertEqual(p.stdout.readline(), b"ready\n")
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(20)
            except subprocess.TimeoutExpired:
                rc = None
            err = p.stderr.read1(4096) if rc is not None else b""
            self.assertEqual(rc, 143, "capsule exec did not forward SIGTERM "
                             "(still running or wrong status); stderr %r" %
                             err)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()

    def test_cli_exec_id_prefix_and_options(self):
        p = self.daemon.cli("exec", "-w", "/tmp", "-e", "X=1",
                            self.vm_id[:8], "--", "sh", "-c", 'pwd; echo $X',
                            input=b"")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout, b"/tmp\n1\n", p)

    def test_cli_exec_unknown_vm(self):
        p = self.daemon.cli("exec", "ffffffff-no-such-vm", "--", "true",
                            input=b"")
        self.assertEqual(p.returncode, 125, p)
        self.assertIn(b"ffffffff-no-such-vm", p.stderr)

    def test_cli_ps_json(self):
        p = self.daemon.cli("ps", "--json")
        self.assertEqual(p.returncode, 0, p)
        vms = json.loads(p.stdout)
        mine = [v for v in vms if v.get("vm_id") == self.vm_id]
        self.assertEqual(len(mine), 1, vms)
        v = mine[0]
        self.assertEqual(v.get("state"), "running", v)
        ping = self.daemon.request({"op": "Ping"})
        self.assertEqual(v.get("accel"), ping.get("accel"), v)
        self.assertIn(v.get("accel"), ("kvm", "tcg", "hvf"), v)
        self.assertTrue(ct.pid_alive(v.get("pid", 0)), v)
        self.assertEqual(v.get("vcpus"), 1, v)
        self.assertEqual(v.get("memory_mib"), 512, v)

    def test_zzz_no_leaks(self):
        # After every exec above (killed clients, bad lines, concurrent
        # runs) capsuled holds exactly the fds it held with the VM idle.
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
