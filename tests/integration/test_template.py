#!/usr/bin/env python3
"""Start templates: the first start of a spec boots and leaves a template;
later starts of the spec restore it (StartVM's timing_ms says which). Each
restored VM is its own machine: its clock is the host's, its random
numbers are its own, its disk is its own. A template that cannot be
restored is removed and the start boots instead; a start that cannot use
templates (a sandbox, raw serial ports, templates off) boots and says why.
Real VMs; one daemon per class."""
import os
import time

import capsuletest as ct

MEM = 256

# What makes one guest differ from another: its clock, its random stream.
WHOAMI = ["sh", "-c", "date +%s; head -c 16 /dev/urandom | od -An -tx1 | "
          "tr -d ' \\n'; echo; cat /proc/sys/kernel/random/boot_id"]


class TemplateTest(ct.DaemonTestCase):

    def start(self, **kw):
        kw.setdefault("memory_mib", MEM)
        v = self.daemon.start_vm(**kw)
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": v["vm_id"]},
                        timeout=ct.STOP_TIMEOUT)
        return v

    def run_in(self, v, argv):
        r = ct.run_exec(v["proxy_socket_path"], argv)
        self.assertEqual(r.exit.get("exit_code"), 0, r)
        return r.stdout.decode()

    def template_fds(self):
        return {f for f in ct.daemon_fds(self.daemon.proc.pid, True)
                if ct.TEMPLATE_MEMFD in f}

    def templates(self):
        d = os.path.join(self.daemon.state, "templates")
        return sorted(n for n in os.listdir(d) if not n.startswith("."))

    def whoami(self, v):
        t, rnd, boot = self.run_in(v, WHOAMI).split()
        return int(t), rnd, boot

    def test_a_second_start_restores_and_is_its_own_machine(self):
        before = set(self.templates())
        a = self.start(vcpus=1)
        ta = a["timing_ms"]
        self.assertEqual(ta["start"], "cold", ta)
        self.assertIn("later starts of this spec restore", ta["start_note"])
        self.assertEqual(len(set(self.templates()) - before), 1)

        b = self.start(vcpus=1)
        c = self.start(vcpus=1)
        for v in (b, c):
            t = v["timing_ms"]
            self.assertEqual(t["start"], "restored", t)
            # A restore is a small part of a boot (goal: 10%).
            self.assertLess(t["vm_ready"], ta["vm_ready"] / 4, (t, ta))

        seen = {}
        for name, v in (("a", a), ("b", b), ("c", c)):
            now = int(time.time())
            t, rnd, boot = self.whoami(v)
            # The clock is the host's at once, not the template's.
            self.assertLessEqual(abs(t - now), 3, (name, t, now))
            seen[name] = (rnd, boot)
        rnds = [s[0] for s in seen.values()]
        self.assertEqual(len(set(rnds)), 3,
                         "copies share a random stream: %r" % seen)
        # Each its own name: capsule-<the start of its vm_id>.
        for v in (a, b, c):
            self.assertEqual(self.run_in(v, ["hostname"]).strip(),
                             "capsule-" + v["vm_id"][:8])

        # Each has its own disk: what one writes the other never sees.
        self.run_in(b, ["sh", "-c", "echo mine > /root/b.txt; sync"])
        out = self.run_in(c, ["sh", "-c", "ls /root; test ! -e /root/b.txt "
                              "&& echo absent"])
        self.assertIn("absent", out)
        self.assertIn("mine", self.run_in(b, ["cat", "/root/b.txt"]))

    def test_another_spec_gets_its_own_template(self):
        before = set(self.templates())
        v = self.start(vcpus=2)
        self.assertEqual(v["timing_ms"]["start"], "cold")
        self.assertEqual(len(set(self.templates()) - before), 1)
        w = self.start(vcpus=2)
        self.assertEqual(w["timing_ms"]["start"], "restored")
        self.assertIn("2", self.run_in(w, ["nproc"]))

    def test_a_broken_template_is_removed_and_the_start_boots(self):
        mem = MEM + 64          # a spec of its own
        self.start(memory_mib=mem)
        new = [n for n in self.templates()]
        # Find this spec's template: the one whose key names its memory.
        path = None
        for n in new:
            d = os.path.join(self.daemon.state, "templates", n)
            with open(os.path.join(d, "key")) as f:
                if "memory %d\n" % mem in f.read():
                    path = d
        self.assertIsNotNone(path)
        fd = os.open(os.path.join(path, "state"),
                     os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        os.write(fd, b"this is not a QEMU state stream\n" * 64)
        os.close(fd)

        v = self.start(memory_mib=mem)
        t = v["timing_ms"]
        self.assertEqual(t["start"], "cold", t)
        self.assertIn("restoring the template failed", t["start_note"])
        self.assertIn("hello", self.run_in(v, ["echo", "hello"]))
        # The broken one went; the boot left a good one in its place.
        w = self.start(memory_mib=mem)
        self.assertEqual(w["timing_ms"]["start"], "restored",
                         w["timing_ms"])
        self.doCleanups()       # stops them
        # Nothing of theirs is left open; only the templates' memory.
        pid = self.daemon.proc.pid
        self.assertNoLeaks()
        # The templates' memory is bounded: at most 4 kept.
        self.assertTrue(1 <= len(self.template_fds()) <= 4,
                        self.template_fds())
        self.assertEqual(ct.daemon_children(pid), self.baseline_children)

    def test_serial_ports_and_boot_args_boot_and_say_why(self):
        for fields, why in (({"serial_ports": ["org.test.tmpl"]},
                             "serial ports"),
                            ({"boot_args": "loglevel=3"}, "boot_args")):
            for _ in range(2):      # not even a second time
                v = self.start(**fields)
                t = v["timing_ms"]
                self.assertEqual(t["start"], "cold", (fields, t))
                self.assertIn(why, t["start_note"])


class TemplatesOffTest(ct.DaemonTestCase):

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        d = ct.Daemon(cls.__name__)
        with open(os.path.join(d.dir, "capsuled.conf"), "x") as f:
            f.write("templates = off\n")
        cls.daemon = d.start()
        cls.daemon.request({"op": "Ping"})
        cls.baseline_fds = ct.daemon_fds(d.proc.pid)
        cls.baseline_children = ct.daemon_children(d.proc.pid)

    def test_every_start_boots(self):
        for _ in range(2):
            v = self.daemon.start_vm(memory_mib=MEM)
            self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                timeout=ct.STOP_TIMEOUT)
            self.assertEqual(v["timing_ms"]["start"], "cold")
            self.assertIn("templates are off", v["timing_ms"]["start_note"])
        self.assertEqual(os.listdir(os.path.join(self.daemon.state,
                                                 "templates")), [])


if __name__ == "__main__":
    ct.main()
