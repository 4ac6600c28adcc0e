#!/usr/bin/env python3
"""`capsule shell` and `capsule exec -t` on a real terminal: each test runs
a host shell in a detached tmux server of its own, types into it with
send-keys and reads the screen with capture-pane, as a person would.

One daemon and one VM for the class; the tests that kill or stop a VM
under a shell boot their own.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import time
import unittest

import capsuletest as ct

COLS, ROWS = 100, 30
PANE_TERM = "screen-256color"   # not the guest's default, xterm-256color
HOST_PROMPT = "host$ "
def guest_prompt(vm_id, mark="#"):
    """/etc/profile's PS1 (\\h:\\w\\$) in a login shell: the guest's
    hostname is capsule-<the start of its vm_id>."""
    return "capsule-%s:/%s " % (vm_id[:8], mark)
EXEC_T_PROMPT = "/ # "          # ash's own, for `exec -t -- sh`
WAIT = 30                       # seconds for anything to show on the screen

_servers = 0


class Tmux:
    """A tmux server on its own socket with one COLS x ROWS window running
    a host sh, whose environment has CAPSULE_SOCKET and TERM=PANE_TERM."""

    def __init__(self, test, sock_dir, capsule_socket):
        global _servers
        _servers += 1
        self.test = test
        self.sock = os.path.join(sock_dir, "tmux-%d.sock" % _servers)
        env = {"CAPSULE_SOCKET": capsule_socket, "TERM": PANE_TERM,
               "PS1": HOST_PROMPT, "PATH": os.environ.get("PATH", "/bin"),
               "HOME": os.environ.get("HOME", "/")}
        cmd = "exec env -i %s sh" % " ".join(
            shlex.quote("%s=%s" % kv) for kv in sorted(env.items()))
        self.tmux("new-session", "-d", "-x", str(COLS), "-y", str(ROWS),
                  cmd)
        test.addCleanup(self.kill)
        self.wait_prompt(HOST_PROMPT)

    def tmux(self, *args):
        p = subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null"] +
                           list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise AssertionError("tmux %s: exit %d: %s" %
                                 (" ".join(args), p.returncode,
                                  p.stderr.decode(errors="replace")))
        return p.stdout.decode(errors="replace")

    def kill(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        try:
            os.unlink(self.sock)
        except OSError:
            pass

    def keys(self, *keys):
        """send-keys with tmux key names: "Enter", "C-c", "BSpace"..."""
        self.tmux("send-keys", *keys)

    def type(self, text, enter=True, key="Enter"):
        """Types text literally, then Enter (or key)."""
        self.tmux("send-keys", "-l", text)
        if enter:
            self.keys(key)

    def screen(self):
        """The whole pane, scrollback included, wrapped lines joined, as a
        list of lines without trailing blanks or trailing empty lines."""
        out = self.tmux("capture-pane", "-p", "-J", "-S", "-")
        lines = [l.rstrip() for l in out.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait(self, pred, what, timeout=WAIT):
        """Polls the screen until pred(lines) is true; returns its value."""
        v = ct.wait_for(lambda: pred(self.screen()), timeout, 0.05)
        if not v:
            self.test.fail("no %s on the screen within %s s; it shows:\n%s"
                           % (what, timeout, "\n".join(self.screen())))
        return v

    def wait_line(self, pattern, count=1, timeout=WAIT):
        """Waits for count lines matching pattern in full; returns them."""
        rx = re.compile(pattern)
        return self.wait(
            lambda ls: (lambda m: m if len(m) >= count else None)(
                [l for l in ls if rx.fullmatch(l)]),
            "%d line(s) matching %r" % (count, pattern), timeout)

    def wait_prompt(self, prompt, count=None):
        """Waits for the last line to be prompt (the count'th prompt)."""
        def ready(ls):
            # The guest tty's echo of ^C can land after the output the
            # signal caused, in front of the next prompt.
            ls = [l[2:] if l.startswith("^C") else l for l in ls]
            if not ls or ls[-1] != prompt.rstrip():
                return False
            n = sum(1 for l in ls if l.startswith(prompt.rstrip()))
            return count is None or n >= count
        self.wait(ready, "%r prompt" % prompt)

    def run(self, cmdline, marker):
        """Types cmdline at the prompt on the last line; it must end by
        printing a line that starts with marker. Returns (the lines before
        that one, that line)."""
        before = len(self.screen())     # the prompt's line is before - 1

        def done(ls):
            for i, l in enumerate(ls[before:]):
                if l.startswith(marker):
                    return ls[before:before + i], l
            return None
        self.type(cmdline)
        return self.wait(done, "line starting %r after `%s`" %
                         (marker, cmdline))


class InteractiveTest(ct.VMTestCase):

    # ---- helpers ----

    markers = 0

    def marker(self, name):
        InteractiveTest.markers += 1
        return "%s%d=" % (name, self.markers)

    def host(self):
        return Tmux(self, self.daemon.dir, self.daemon.sock)

    def host_out(self, t, cmd):
        """Runs cmd in the pane's host shell, its output to a file, which it
        returns: unlike the screen, that works whatever state the terminal
        was left in (no echo, no CR to NL: the line ends with ^J)."""
        path = os.path.join(self.daemon.dir, self.marker("host"))
        t.type("%s >%s.tmp 2>&1; mv %s.tmp %s" % (cmd, path, path, path),
               key="C-j")
        if not ct.wait_for(lambda: os.path.exists(path), WAIT, 0.05):
            self.fail("`%s` did not run in the host pane; it shows:\n%s" %
                      (cmd, "\n".join(t.screen())))
        with open(path) as f:
            out = f.read()
        os.unlink(path)
        return out

    def host_stty(self, t):
        """The host pane's terminal settings, as `stty -g` prints them."""
        return self.host_out(t, "stty -g").strip()

    def shell(self, vm_id=None, exec_t=False):
        """A host pane running `capsule shell ID` (or `capsule exec -t ID
        -- sh`), at the guest's prompt; returns (tmux, host stty -g)."""
        t = self.host()
        stty = self.host_stty(t)
        if exec_t:
            cmd = "%s exec -t %s -- sh" % (ct.CAPSULE, vm_id or self.vm_id)
        else:
            cmd = "%s shell %s" % (ct.CAPSULE, vm_id or self.vm_id)
        t.type('%s; echo "rc=$?"' % cmd)
        t.prompt = (EXEC_T_PROMPT if exec_t else
                    guest_prompt(vm_id or self.vm_id))
        t.wait_prompt(t.prompt)
        return t, stty

    def guest(self, t, script):
        """Runs script in the pane's guest shell; returns its output lines
        (the shell's prompt is back)."""
        m = self.marker("done")
        out, _ = t.run("%s; echo %s" % (script, m), m)
        t.wait_prompt(t.prompt)
        return out

    def ask(self, t, expr):
        """The value of a shell word (e.g. "$TERM") in the pane's guest
        shell."""
        m = self.marker("v")
        _, line = t.run('echo "%s%s"' % (m, expr), m)
        t.wait_prompt(t.prompt)
        return line[len(m):]

    def wait_foreground(self, args, timeout=WAIT):
        """Waits (through the exec socket) until a guest process whose
        command line is args is its terminal's foreground process group:
        from then on a key like ^Z or ^C is its."""
        script = ("for d in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $d/cmdline "
                  "2>/dev/null); [ \"$c\" = \"%s \" ] && cat $d/stat; done; "
                  "true" % args)

        def fg():
            r = ct.run_exec(self.proxy, ["sh", "-c", script])
            for line in r.stdout.decode().splitlines():
                f = line.rsplit(")", 1)[1].split()
                # state ppid pgrp session tty_nr tpgid
                if f[2] == f[5]:
                    return True
            return False
        self.assertTrue(ct.wait_for(fg, timeout, 0.1),
                        "`%s` never was the foreground job" % args)

    def assertTerminalRestored(self, t, stty):
        modes = self.host_out(t, "stty -a").replace(";", " ").split()
        self.assertEqual(sorted(m for m in modes if m.lstrip("-") in
                                ("icanon", "echo", "isig", "icrnl", "opost")),
                         ["echo", "icanon", "icrnl", "isig", "opost"],
                         "the host terminal was left in raw mode")
        self.assertEqual(self.host_stty(t), stty,
                         "the host terminal's settings were not restored")

    def exit_shell(self, t, stty, code):
        t.type("exit %d" % code)
        t.wait_prompt(HOST_PROMPT)
        self.assertEqual(t.wait_line(r"rc=\d+"), ["rc=%d" % code])
        self.assertTerminalRestored(t, stty)

    # ---- typing ----

    def test_command_echo_and_output(self):
        t, stty = self.shell()
        t.type("echo hello-$((6 * 7))")
        # The shell echoes what was typed, then runs it.
        t.wait_line(re.escape(guest_prompt(self.vm_id) +
                              "echo hello-$((6 * 7))"))
        t.wait_line("hello-42")
        t.wait_prompt(guest_prompt(self.vm_id), count=2)
        self.assertEqual(self.guest(t, "id; hostname"),
                         ["uid=0(root) gid=0(root)",
                          "capsule-" + self.vm_id[:8]])
        self.exit_shell(t, stty, 0)

    def test_line_editing(self):
        t, stty = self.shell()
        t.type("echo abx", enter=False)
        t.keys("BSpace", "c", "Enter")
        t.wait_line("abc")
        t.wait_prompt(guest_prompt(self.vm_id), count=2)
        # Cursor movement, then history.
        t.type("echo ac-2", enter=False)
        t.keys("Left", "Left", "Left", "b", "Enter")
        t.wait_line("abc-2")
        t.wait_prompt(guest_prompt(self.vm_id), count=3)
        t.keys("Up", "Enter")
        t.wait_line("abc-2", count=2)
        t.wait_prompt(guest_prompt(self.vm_id), count=4)
        screen = t.screen()
        first = next(i for i, l in enumerate(screen)
                     if l.startswith(guest_prompt(self.vm_id)))
        self.assertEqual([l for l in screen[first:]
                          if re.search(r"\ba[bc]", l)],
                         [guest_prompt(self.vm_id) + "echo abc", "abc",
                          guest_prompt(self.vm_id) + "echo abc-2", "abc-2",
                          guest_prompt(self.vm_id) + "echo abc-2", "abc-2"])
        self.exit_shell(t, stty, 0)

    def test_term_passed_through(self):
        t, stty = self.shell()
        self.assertEqual(self.ask(t, "$TERM"), PANE_TERM)
        self.exit_shell(t, stty, 0)

    # ---- window size ----

    def wait_size(self, t, rows, cols):
        """Polls `stty size` in the guest: tmux resizes a pane a moment
        after resize-window returns."""
        want = "%d %d" % (rows, cols)
        end = time.monotonic() + 10
        while True:
            got = self.ask(t, "$(stty size)")
            if got == want or time.monotonic() > end:
                break
        self.assertEqual(got, want, "the guest's window size")

    def test_window_size(self):
        t, stty = self.shell()
        self.assertEqual(self.ask(t, "$(stty size)"), "%d %d" % (ROWS, COLS))
        t.tmux("resize-window", "-x", "120", "-y", "40")
        self.wait_size(t, 40, 120)
        t.tmux("resize-window", "-x", "90", "-y", "25")
        self.wait_size(t, 25, 90)
        # A second pane takes rows from the first: resize-pane's way.
        t.tmux("split-window", "-v", "-l", "5", "sleep 1000")
        t.tmux("select-pane", "-t", "0")
        self.wait_size(t, 25 - 5 - 1, 90)
        t.tmux("resize-pane", "-t", "0", "-y", "15")
        self.wait_size(t, 15, 90)
        t.tmux("kill-pane", "-t", "1")
        self.wait_size(t, 25, 90)
        self.exit_shell(t, stty, 0)

    # ---- job control and signals ----

    def test_job_control(self):
        t, stty = self.shell()
        t.type("sleep 1211")
        self.wait_foreground("sleep 1211")
        t.keys("C-z")
        t.wait_line(r"(\^Z)?\[1\]\+ +Stopped +sleep 1211")
        t.wait_prompt(guest_prompt(self.vm_id), count=2)
        self.assertEqual(self.guest(t, "jobs"),
                         ["[1]+  Stopped                    sleep 1211"])
        t.type("fg")
        t.wait_line(re.escape(guest_prompt(self.vm_id)) + "fg")
        t.wait_line("sleep 1211")           # fg names the job it resumes
        self.wait_foreground("sleep 1211")
        t.keys("C-c")
        t.wait_prompt(guest_prompt(self.vm_id), count=4)
        self.assertEqual(self.guest(t, 'echo "st=$?"; jobs'), ["st=130"])
        self.exit_shell(t, stty, 0)

    def test_ctrl_c_reaches_foreground_group(self):
        t, stty = self.shell()
        # A foreground job that traps SIGINT: the key reaches it, and the
        # interactive shell goes on.
        t.type("sh -c 'trap \"echo got-int; exit 9\" INT; echo waiting; "
               "while :; do sleep 1; done'")
        t.wait_line("waiting")
        t.keys("C-c")
        t.wait_line(r"(\^C)?got-int")
        t.wait_prompt(guest_prompt(self.vm_id), count=2)
        self.assertEqual(self.guest(t, 'echo "st=$?"'), ["st=9"])
        # Every process of a foreground pipeline gets it.
        t.type("sleep 1201 | sleep 1202")
        self.wait_foreground("sleep 1201")
        self.wait_foreground("sleep 1202")
        t.keys("C-c")
        t.wait_prompt(guest_prompt(self.vm_id), count=4)
        self.assertEqual(self.guest(t, 'echo "st=$?"; ps -o args | '
                                    "grep -c '^sleep 120[12]$'"),
                         ["st=130", "0"])
        self.exit_shell(t, stty, 0)

    # ---- leaving ----

    def test_exit_status_and_terminal_restored(self):
        t, stty = self.shell()
        self.exit_shell(t, stty, 3)

    def test_exec_t_sh(self):
        t, stty = self.shell(exec_t=True)
        self.assertRegex(self.ask(t, "$(tty)"), r"^/dev/pts/\d+$")
        self.assertEqual(self.ask(t, "$TERM $(stty size)"),
                         "%s %d %d" % (PANE_TERM, ROWS, COLS))
        self.exit_shell(t, stty, 5)

    def test_shell_as_user(self):
        t = self.host()
        stty = self.host_stty(t)
        t.type('%s shell -u capsule %s; echo "rc=$?"' % (ct.CAPSULE,
                                                         self.vm_id))
        t.prompt = guest_prompt(self.vm_id, "$")      # not root
        t.wait_prompt(t.prompt)
        self.assertEqual(self.guest(t, 'id; echo "$HOME $USER"; '
                                    "stat -c %U $(tty)"),
                         ["uid=1000(capsule) gid=1000(capsule) "
                          "groups=100(users),1000(capsule)",
                          "/home/capsule capsule", "capsule"])
        self.exit_shell(t, stty, 0)

    def test_shell_with_command(self):
        # `capsule shell ID -- CMD` runs CMD on a terminal, too.
        t = self.host()
        stty = self.host_stty(t)
        t.type("%s shell %s -- sh -c 'echo \"tty=$(tty)\"; exit 4'; "
               'echo "rc=$?"' % (ct.CAPSULE, self.vm_id))
        t.wait_prompt(HOST_PROMPT, count=2)
        self.assertEqual(t.wait_line(r"rc=\d+"), ["rc=4"])
        line = t.wait_line(r"tty=.*")
        self.assertRegex(line[0], r"^tty=/dev/pts/\d+$")
        self.assertTerminalRestored(t, stty)

    def second_vm(self):
        vm = self.daemon.start_vm(vcpus=1, memory_mib=256)
        vm_id = vm["vm_id"]

        def stop():
            if self.daemon.vm(vm_id) is not None:
                r = self.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                        timeout=ct.STOP_TIMEOUT)
                self.assertTrue(r.get("ok"), r)
        self.addCleanup(stop)
        return vm_id

    def assertShellLost(self, t, stty, why):
        """capsule exits 125 saying why; the terminal is restored."""
        t.wait_prompt(HOST_PROMPT)
        self.assertEqual(t.wait_line(r"rc=\d+"), ["rc=125"])
        t.wait_line(".*capsule: .*%s.*" % re.escape(why))
        self.assertTerminalRestored(t, stty)

    def test_vm_killed_under_shell(self):
        vm_id = self.second_vm()
        t, stty = self.shell(vm_id)
        self.assertEqual(self.guest(t, "echo alive"), ["alive"])
        p = self.daemon.cli("ps", "--json")
        self.assertEqual(p.returncode, 0, p)
        pid = [v["pid"] for v in json.loads(p.stdout)
               if v["vm_id"] == vm_id][0]
        self.assertIn(pid, [q for q, _ in self.daemon.qemu()])
        os.kill(pid, signal.SIGKILL)
        self.assertShellLost(t, stty, "the VM crashed")

    def test_vm_stopped_under_shell(self):
        vm_id = self.second_vm()
        t, stty = self.shell(vm_id, exec_t=True)
        self.assertEqual(self.guest(t, "echo alive"), ["alive"])
        r = self.daemon.request_once({"op": "StopVM", "vm_id": vm_id},
                                     timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [vm_id], r)
        self.assertShellLost(t, stty, "the VM was stopped")

    def test_zzz_no_leaks(self):
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
