#!/usr/bin/env python3
"""capsule exec's features beyond plain stdio, through the CLI and the raw
exec socket: signal forwarding, what outlives what (killed clients, closed
sockets, finished commands), detached commands, timeouts, exit statuses,
users, working directory and environment, and that a client speaking only
cleanroom's original frames sees nothing of capsule's extensions.

One daemon and one VM for the whole class. Guest processes are told apart
by unique `sleep N` durations, which `ps` shows as their whole command line.
"""
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import tempfile
import termios
import time

import capsuletest as ct

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREDIT_WINDOW = 262144          # PROXY_STDIN_WINDOW: the first credit line


def pipe_queued(f):
    """Bytes waiting in the pipe f reads from."""
    b = fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", b)[0]


class Cli:
    """A running `capsule exec`, its stdout read as it comes."""

    def __init__(self, daemon, args, stdin=subprocess.DEVNULL, env=None):
        e = dict(os.environ)
        e["CAPSULE_SOCKET"] = daemon.sock
        if env:
            e.update(env)
        self.args = args
        self.proc = subprocess.Popen([ct.CAPSULE] + list(args), stdin=stdin,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self.out = b""

    def wait_output(self, needle, timeout=30):
        """Reads stdout until needle has come; fails on EOF or timeout."""
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while needle not in self.out:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("`capsule %s`: no %r within %s s; stdout "
                                     "so far %r" % (" ".join(self.args),
                                                    needle, timeout, self.out))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("`capsule %s` closed stdout before %r; "
                                     "stdout %r, exit %r" %
                                     (" ".join(self.args), needle, self.out,
                                      self.proc.poll()))
            self.out += chunk

    def signal(self, sig):
        self.proc.send_signal(sig)

    def finish(self, timeout=30):
        """(returncode, all of stdout, stderr); kills it after timeout."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("`capsule %s` still runs after %s s; stdout "
                                 "so far %r" % (" ".join(self.args), timeout,
                                                self.out))
        self.out += out
        return self.proc.returncode, self.out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


class ExecFeaturesTest(ct.VMTestCase):

    # ---- helpers ----

    def exec_cli(self, *args, input=b"", env=None, timeout=60):
        """`capsule exec ARGS...` with the VM's id in place of ID."""
        args = [self.vm_id if a == "ID" else a for a in args]
        return self.daemon.cli("exec", *args, input=input, env=env,
                               timeout=timeout)

    def cli_popen(self, *args, **kw):
        args = ["exec"] + [self.vm_id if a == "ID" else a for a in args]
        c = Cli(self.daemon, args, **kw)
        self.addCleanup(c.kill)
        return c

    def assertCli(self, p, code, stdout=None, stderr=None):
        self.assertEqual(p.returncode, code, p)
        if stdout is not None:
            self.assertEqual(p.stdout, stdout, p)
        if stderr is not None:
            self.assertEqual(p.stderr, stderr, p)

    def guest(self, script, **kw):
        """Runs sh -c script in the guest over the raw socket; must exit 0."""
        r = ct.run_exec(self.proxy, ["sh", "-c", script], **kw)
        self.assertEqual(r.code, 0, r)
        return r.stdout

    def sleeps(self, *durations):
        """The subset of durations that some guest `sleep N` is running."""
        out = self.guest("ps -o args").decode()
        running = set()
        for line in out.splitlines():
            m = re.fullmatch(r"sleep (\d+)", line.strip())
            if m and int(m.group(1)) in durations:
                running.add(int(m.group(1)))
        return running

    def assertSleepsGone(self, durations, within=20, why=""):
        ok = ct.wait_for(lambda: not self.sleeps(*durations), within,
                         interval=0.3)
        if ok:
            return
        left = self.sleeps(*durations)
        # Not to leave them to the tests after this one.
        self.guest("for p in $(ps -o pid,args | awk '$2 == \"sleep\" && "
                   "(%s) {print $1}'); do kill -9 $p; done" % " || ".join(
                       '$3 == \"%d\"' % d for d in durations))
        self.fail("guest `sleep %s` still running %s s after %s" %
                  (" ".join(map(str, sorted(left))), within, why))

    # ---- signals forwarded by `capsule exec` ----

    def test_signal_runs_the_commands_trap(self):
        for sig, n in ((signal.SIGINT, 1151), (signal.SIGTERM, 1152),
                       (signal.SIGHUP, 1153)):
            name = sig.name[3:]
            with self.subTest(signal=name):
                c = self.cli_popen(
                    "ID", "--", "sh", "-c",
                    "trap 'echo got %s; exit 7' %s; echo ready; sleep %d; "
                    "echo not-reached" % (name, name, n))
                c.wait_output(b"ready\n")
                # Not before sleep runs: a trap that is pending when sh
                # forks it runs only once it has ended.
                self.assertTrue(ct.wait_for(lambda: self.sleeps(n), 10))
                t0 = time.monotonic()
                c.signal(sig)
                rc, out, err = c.finish(20)
                self.assertEqual((rc, out), (7, b"ready\ngot %s\n" %
                                             name.encode()), err)
                self.assertLess(time.monotonic() - t0, 10)

    def test_signal_default_action(self):
        # No trap: the command dies of the signal and capsule exec exits
        # 128+N, as a shell reports it.
        for n, sig in enumerate((signal.SIGINT, signal.SIGTERM,
                                 signal.SIGHUP, signal.SIGQUIT), 1031):
            with self.subTest(signal=sig.name):
                c = self.cli_popen("ID", "--", "sh", "-c",
                                   "echo ready; exec sleep %d" % n)
                c.wait_output(b"ready\n")
                # Not before the exec: ash itself ignores SIGQUIT, and
                # "ready" comes out while it is still ash.
                self.assertTrue(ct.wait_for(lambda: self.sleeps(n), 10))
                c.signal(sig)
                rc, out, err = c.finish(20)
                self.assertEqual((rc, out), (128 + sig, b"ready\n"), err)

    def test_raw_signal_exit_line(self):
        for sig in (signal.SIGINT, signal.SIGHUP):
            with self.subTest(signal=sig.name):
                x = ct.Exec(self.proxy, ["sh", "-c",
                                         "echo ready; exec sleep 100"])
                try:
                    x.read_until(lambda r: b"ready\n" in r.stdout, 30)
                    x.signal(int(sig))
                    r = x.wait(30)
                finally:
                    x.close()
                self.assertEqual(r.code, 128 + sig, r)
                self.assertEqual(r.exit.get("signal"), int(sig), r)
                self.assertEqual(r.exit.get("error"), "", r)

    def test_signal_reaches_whole_process_group(self):
        # SIGHUP goes to the group, not just the leader: the background
        # sleep (which, unlike SIGINT, does not ignore SIGHUP) dies too.
        c = self.cli_popen("ID", "--", "sh", "-c",
                           "sleep 1101 & echo ready; sleep 1102")
        c.wait_output(b"ready\n")
        ct.wait_for(lambda: self.sleeps(1101, 1102) == {1101, 1102}, 10)
        self.assertEqual(self.sleeps(1101, 1102), {1101, 1102})
        c.signal(signal.SIGHUP)
        rc, out, err = c.finish(20)
        self.assertEqual(rc, 129, (out, err))
        self.assertSleepsGone((1101, 1102), 5, "SIGHUP to capsule exec")

    def test_signal_with_stdin_backed_up(self):
        # The command never reads stdin and `yes` never stops writing: the
        # signal must not wait behind the stdin that cannot move.
        yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
        self.addCleanup(lambda: (yes.kill(), yes.wait(), yes.stdout.close()))
        c = self.cli_popen("ID", "--", "sh", "-c",
                           "echo ready; exec sleep 100", stdin=yes.stdout)
        c.wait_output(b"ready\n")
        # Until capsule has stopped reading: the pipe from yes is full.
        full = ct.wait_for(lambda: pipe_queued(yes.stdout) >= 60000, 20)
        self.assertTrue(full, "capsule exec goes on reading stdin that the "
                        "command never takes")
        t0 = time.monotonic()
        c.signal(signal.SIGINT)
        rc, out, err = c.finish(20)
        took = time.monotonic() - t0
        self.assertEqual(rc, 130, (out, err))
        self.assertLess(took, 5, "SIGINT took %.1f s behind stdin" % took)

    # ---- what outlives what ----

    def test_sigkill_cli_kills_process_group(self):
        c = self.cli_popen("ID", "--", "sh", "-c",
                           "sleep 1111 & echo ready; sleep 1112")
        c.wait_output(b"ready\n")
        ct.wait_for(lambda: self.sleeps(1111, 1112) == {1111, 1112}, 10)
        self.assertEqual(self.sleeps(1111, 1112), {1111, 1112})
        c.signal(signal.SIGKILL)
        c.proc.wait(10)
        self.assertSleepsGone((1111, 1112), 20, "capsule exec was SIGKILLed")

    def test_raw_close_kills_process_group(self):
        x = ct.Exec(self.proxy, ["sh", "-c",
                                 "sleep 1113 & echo ready; sleep 1114"])
        try:
            x.read_until(lambda r: b"ready\n" in r.stdout, 30)
            ct.wait_for(lambda: self.sleeps(1113, 1114) == {1113, 1114}, 10)
            self.assertEqual(self.sleeps(1113, 1114), {1113, 1114})
        finally:
            x.close()
        self.assertSleepsGone((1113, 1114), 20, "the exec socket was closed")

    def test_background_child_does_not_outlive_exec(self):
        # exec-protocol.md, Lifetime: once the connection closes the whole
        # process group is killed; "nothing keeps running unobserved unless
        # it was started with detach". A finished exec's connection is
        # closed, so a child its shell left in the background must go too.
        p = self.exec_cli("ID", "--", "sh", "-c",
                          "sleep 1115 >/dev/null 2>&1 & echo started")
        self.assertCli(p, 0, b"started\n")
        self.assertSleepsGone((1115,), 10, "its exec finished and the CLI "
                              "closed the connection (not detached)")

    # ---- -d: detached commands ----

    def test_detach(self):
        t0 = time.monotonic()
        p = self.exec_cli("-d", "ID", "--", "sh", "-c",
                          "echo detached-start; until [ -e /tmp/go-1121 ]; "
                          "do sleep 0.1; done; echo detached-end")
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p)
        m = re.fullmatch(rb"(/var/log/capsule/exec-(\d+)\.log)\n", p.stdout)
        self.assertIsNotNone(m, p)
        log, pid = m.group(1).decode(), int(m.group(2))
        self.assertIn(b"pid %d" % pid, p.stderr)
        self.assertIn(log.encode(), p.stderr)
        self.assertLess(took, 5, "capsule exec -d waited %.1f s" % took)
        # capsule exec has exited; the command runs on, and writes its log.
        self.assertEqual(self.guest("kill -0 %d && echo alive" % pid),
                         b"alive\n")
        ok = ct.wait_for(lambda: self.guest("cat " + log) ==
                         b"detached-start\n", 20, 0.3)
        self.assertTrue(ok, "log %s holds %r" % (log,
                                                 self.guest("cat " + log)))
        self.guest("touch /tmp/go-1121")
        ok = ct.wait_for(lambda: self.guest("cat " + log) ==
                         b"detached-start\ndetached-end\n", 20, 0.3)
        self.assertTrue(ok, "log %s holds %r" % (log,
                                                 self.guest("cat " + log)))
        self.assertTrue(ct.wait_for(lambda: self.guest(
            "kill -0 %d 2>/dev/null || echo gone" % pid) == b"gone\n", 10))

    def test_detach_raw_reply(self):
        x = ct.Exec(self.proxy, first={"command": ["sh", "-c", "echo raw-d"],
                                       "detach": True})
        r = x.wait(30)
        self.assertEqual(len(r.lines), 1, r.lines)
        e = r.exit
        self.assertEqual((e.get("exit_code"), e.get("error")), (0, ""), e)
        self.assertIsInstance(e.get("pid"), int, e)
        self.assertEqual(e.get("log_path"),
                         "/var/log/capsule/exec-%d.log" % e["pid"], e)
        ok = ct.wait_for(lambda: self.guest("cat " + e["log_path"]) ==
                         b"raw-d\n", 20, 0.3)
        self.assertTrue(ok, self.guest("cat " + e["log_path"]))

    def test_detach_cannot_start(self):
        p = self.exec_cli("-d", "ID", "--", "/nonexistent")
        self.assertCli(p, 127, b"")
        self.assertIn(b'"/nonexistent"', p.stderr)
        self.assertIn(b"No such file or directory", p.stderr)

    # ---- --timeout ----

    def test_timeout_kills(self):
        t0 = time.monotonic()
        p = self.exec_cli("--timeout", "1", "ID", "--", "sleep", "30")
        took = time.monotonic() - t0
        self.assertCli(p, 124, b"")
        self.assertIn(b"timeout", p.stderr)
        self.assertLess(took, 8, "--timeout 1 took %.1f s" % took)

    def test_timeout_raw_exit_line(self):
        r = ct.run_exec(self.proxy, None, first={"command": ["sleep", "30"],
                                                 "timeout": 0.5})
        self.assertEqual(r.code, 124, r)
        self.assertNotIn("signal", r.exit, r)
        self.assertEqual(r.exit.get("error"), "timeout: killed after 0.5 s",
                         r)

    def test_timeout_quick_command(self):
        p = self.exec_cli("--timeout", "30", "ID", "--", "sh", "-c",
                          "echo fine; exit 5")
        self.assertCli(p, 5, b"fine\n", b"")

    def test_timeout_kills_background_children(self):
        p = self.exec_cli("--timeout", "2", "ID", "--", "sh", "-c",
                          "sleep 1131 & sleep 1132")
        self.assertCli(p, 124, b"")
        self.assertSleepsGone((1131, 1132), 5, "--timeout 2 expired")

    def test_timeout_outlived_by_background_child(self):
        # "kill the command's process group with SIGKILL when it runs
        # longer": a group whose leader exits early still runs longer.
        p = self.exec_cli("--timeout", "2", "ID", "--", "sh", "-c",
                          "sleep 1133 >/dev/null 2>&1 & echo started")
        self.assertCli(p, 0, b"started\n")
        self.assertSleepsGone((1133,), 10, "its --timeout 2 passed")

    def test_timeout_bad_values(self):
        for v in ("0", "-1", "abc", "2592001"):
            with self.subTest(timeout=v):
                p = self.daemon.cli("exec", "--timeout", v, self.vm_id, "--",
                                    "true", input=b"")
                self.assertEqual(p.returncode, 2, p)
                self.assertIn(b"--timeout", p.stderr)

    # ---- exit statuses ----

    def test_exit_code(self):
        self.assertCli(self.exec_cli("ID", "--", "sh", "-c", "exit 42"), 42,
                       b"", b"")

    def test_killed_by_sigkill(self):
        self.assertCli(self.exec_cli("ID", "--", "sh", "-c", "kill -9 $$"),
                       137, b"", b"")
        r = ct.run_exec(self.proxy, ["sh", "-c", "kill -9 $$"], stdin=b"")
        self.assertEqual((r.code, r.exit.get("signal")), (137, 9), r)

    def test_not_found(self):
        p = self.exec_cli("ID", "--", "no-such-cmd-xyz", "arg")
        self.assertCli(p, 127, b"")
        self.assertIn(b'"no-such-cmd-xyz"', p.stderr)
        self.assertIn(b"No such file or directory", p.stderr)

    def test_not_executable(self):
        self.guest("printf '#!/bin/sh\\necho hi\\n' > /tmp/noexec.sh && "
                   "chmod 644 /tmp/noexec.sh")
        for path in ("/tmp/noexec.sh", "/tmp"):
            with self.subTest(path=path):
                p = self.exec_cli("ID", "--", path)
                self.assertCli(p, 126, b"")
                self.assertIn(('"%s"' % path).encode(), p.stderr)
                self.assertIn(b"Permission denied", p.stderr)

    def test_bad_workdir(self):
        p = self.exec_cli("-w", "/no/such/dir", "ID", "--", "true")
        self.assertCli(p, 126, b"")
        self.assertIn(b"/no/such/dir", p.stderr)

    # ---- identity and environment ----

    def test_default_identity(self):
        p = self.exec_cli("ID", "--", "sh", "-c",
                          'id -u; id -g; echo "$HOME"; echo "$PATH"; '
                          'echo "${USER-unset}"; pwd')
        self.assertCli(p, 0, ("0\n0\n/root\n%s\nunset\n/\n" %
                              DEFAULT_PATH).encode(), b"")

    def test_user_by_name(self):
        p = self.exec_cli("-u", "capsule", "ID", "--", "sh", "-c",
                          'id; echo "$HOME|$USER|$LOGNAME|$PATH"; '
                          'touch /tmp/by-capsule; stat -c %u:%g '
                          '/tmp/by-capsule; rm /tmp/by-capsule')
        self.assertCli(p, 0, ("uid=1000(capsule) gid=1000(capsule) "
                              "groups=100(users),1000(capsule)\n"
                              "/home/capsule|capsule|capsule|%s\n"
                              "1000:1000\n" % DEFAULT_PATH).encode(), b"")

    def test_user_numeric(self):
        p = self.exec_cli("-u", "1234:5678", "ID", "--", "sh", "-c",
                          'id -u; id -g; echo "${USER-unset}"')
        self.assertCli(p, 0, b"1234\n5678\nunset\n", b"")

    def test_user_unknown(self):
        p = self.exec_cli("-u", "nosuchuser", "ID", "--", "id")
        self.assertCli(p, 126, b"")
        self.assertIn(b'user "nosuchuser": no such user', p.stderr)

    def test_workdir_and_env(self):
        p = self.exec_cli("-w", "/tmp", "-e", "A=1", "-e", "B=2 3",
                          "-e", "HOME=/srv", "ID", "--", "sh", "-c",
                          'pwd; echo "$A|$B|$HOME"')
        self.assertCli(p, 0, b"/tmp\n1|2 3|/srv\n", b"")

    def write_host_file(self, text):
        fd, path = tempfile.mkstemp(prefix="envfile", dir=self.daemon.dir)
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        return path

    def test_env_file(self):
        path = self.write_host_file(
            b"# a comment\n"
            b"\n"
            b"   \n"
            b"A=from-file\n"
            b"  # an indented comment\n"
            b"SPACED=a b  c \n"
            b"EMPTY=\n"
            b"EQ=x=y\n"
            b"CRLF=dos\r\n"
            b"FROM_HOST\n"
            b"NOT_IN_HOST_ENV_B1\n"
            b"OVERRIDDEN=file\n")
        env = {"FROM_HOST": "host value", "OVERRIDDEN": "host"}
        os.environ.pop("NOT_IN_HOST_ENV_B1", None)
        p = self.exec_cli("--env-file", path, "-e", "OVERRIDDEN=cli", "ID",
                          "--", "sh", "-c",
                          'echo "A=$A"; echo "S=$SPACED|"; '
                          'echo "E=${EMPTY-unset}"; echo "EQ=$EQ"; '
                          'echo "CRLF=$CRLF|"; echo "H=$FROM_HOST"; '
                          'echo "N=${NOT_IN_HOST_ENV_B1-unset}"; '
                          'echo "O=$OVERRIDDEN"', env=env)
        self.assertCli(p, 0, b"A=from-file\nS=a b  c |\nE=\nEQ=x=y\n"
                       b"CRLF=dos|\nH=host value\nN=unset\nO=cli\n", b"")

    def test_env_file_bad_line(self):
        # Refused before anything is sent: the socket does not even exist.
        for text, lineno in ((b"GOOD=1\n# fine\nBAD KEY=x\n", 3),
                             (b"\n=value\n", 2)):
            with self.subTest(line=lineno):
                path = self.write_host_file(text)
                p = self.daemon.cli(
                    "exec", "--env-file", path, self.vm_id, "--", "true",
                    input=b"", env={"CAPSULE_SOCKET": "/nonexistent/c.sock"})
                self.assertEqual((p.returncode, p.stdout), (2, b""), p)
                self.assertIn(("%s:%d:" % (path, lineno)).encode(), p.stderr)
                self.assertNotIn(b"nonexistent", p.stderr)
        p = self.daemon.cli("exec", "--env-file", "/no/such/envfile",
                            self.vm_id, "--", "true", input=b"",
                            env={"CAPSULE_SOCKET": "/nonexistent/c.sock"})
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"/no/such/envfile", p.stderr)

    def test_term_only_with_tty(self):
        show = ["sh", "-c", 'echo "T=${TERM-unset}"']
        p = self.exec_cli("-t", "ID", "--", *show,
                          env={"TERM": "screen-256color"})
        self.assertCli(p, 0, b"T=screen-256color\r\n")
        p = self.exec_cli("ID", "--", *show, env={"TERM": "screen-256color"})
        self.assertCli(p, 0, b"T=unset\n", b"")
        # No TERM on the host: the guest's default for a terminal.
        e = dict(os.environ)
        e.pop("TERM", None)
        e["CAPSULE_SOCKET"] = self.daemon.sock
        p = subprocess.run([ct.CAPSULE, "exec", "-t", self.vm_id, "--"] +
                           show, input=b"", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=e, timeout=60)
        self.assertCli(p, 0, b"T=xterm-256color\r\n")

    # ---- what cleanroom's clients see ----

    def test_cleanroom_client_sees_original_frames_only(self):
        # More stdin than the credit window, so flow control is in play.
        data = os.urandom(CREDIT_WINDOW + 100000)
        r = ct.run_exec(self.proxy, None, stdin=data, first={
            "command": ["sh", "-c", 'pwd >&2; echo "$X" >&2; cat; '
                        'echo to-err >&2; exit 3'],
            "dir": "/tmp", "env": ["X=from-env"], "tty": False})
        types = {m.get("type") for m in r.lines}
        self.assertEqual(types, {"stdout", "stderr", "exit"},
                         [m for m in r.lines if m.get("type") not in
                          ("stdout", "stderr")])
        self.assertEqual(r.lines[-1], {"type": "exit", "exit_code": 3,
                                       "error": ""})
        self.assertTrue(r.stdout == data, "cat echoed different bytes")
        self.assertEqual(r.stderr, b"/tmp\nfrom-env\nto-err\n")
        self.assertEqual(r.after_exit, [])
        for m in r.lines[:-1]:
            self.assertEqual(set(m), {"type", "data"}, m)

    def test_cleanroom_readiness_probe(self):
        x = ct.Exec(self.proxy, first={"command": None})
        r = x.wait(20)
        self.assertEqual(len(r.lines), 1, r.lines)
        e = r.exit
        self.assertEqual(set(e), {"type", "exit_code", "error"}, e)
        self.assertEqual(e["exit_code"], 125, e)
        self.assertIn("missing command", e["error"])

    def test_stdin_credit(self):
        x = ct.Exec(self.proxy, first={"command": ["cat"],
                                       "stdin_credit": True})
        try:
            first = x.read_msg(timeout=20)
            self.assertEqual(first, {"type": "credit",
                                     "bytes": CREDIT_WINDOW})
            # Three windows' worth, never more than granted outstanding.
            data = os.urandom(3 * CREDIT_WINDOW)
            credit, off = CREDIT_WINDOW, 0
            while off < len(data):
                while credit == 0:
                    m = x.read_msg(timeout=30)
                    self.assertIsNotNone(m, x.result)
                    self.assertNotEqual(m.get("type"), "exit", x.result)
                    if m.get("type") == "credit":
                        credit += m["bytes"]
                n = min(credit, 65536, len(data) - off)
                x.stdin(data[off:off + n])
                off += n
                credit -= n
            x.eof()
            r = x.wait(60)
        finally:
            x.close()
        self.assertEqual(r.code, 0, r)
        self.assertTrue(r.stdout == data, "cat echoed different bytes")
        for m in r.lines:
            if m["type"] == "credit":
                self.assertEqual(set(m), {"type", "bytes"}, m)
                self.assertGreater(m["bytes"], 0, m)

    def test_stdin_beyond_credit(self):
        x = ct.Exec(self.proxy, first={"command": ["sh", "-c",
                                                   "exec sleep 1141"],
                                       "stdin_credit": True})
        try:
            first = x.read_msg(timeout=20)
            self.assertEqual(first, {"type": "credit",
                                     "bytes": CREDIT_WINDOW})
            x.stdin(b"z" * (CREDIT_WINDOW + 1), chunk=CREDIT_WINDOW + 1)
            r = x.wait(30)
        finally:
            x.close()
        self.assertEqual(r.code, 125, r)
        self.assertIn("credit", r.exit.get("error", ""), r)
        self.assertSleepsGone((1141,), 10, "its exec failed on credit")

    def test_zzz_no_leaks(self):
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
