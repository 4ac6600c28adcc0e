#!/usr/bin/env python3
"""Pausing and resuming a running VM (PauseVM, ResumeVM; `capsule pause`,
`capsule resume`): a paused guest runs nothing, keeps its memory, is
neither unresponsive nor idle, refuses new commands, and carries on where
it was when resumed; a command that was running finishes with all its
output. Stopping a paused VM is a clean stop (a sandbox keeps what it
wrote). One daemon; real VMs."""
import socket
import time

import capsuletest as ct

VM_MEMORY = 256
# Prints a line every 0.1 s, then the time the guest saw pass.
TICKER = ("i=0; s=$(date +%s); while [ $i -lt 60 ]; do echo $i; "
          "i=$((i+1)); sleep 0.1; done; echo took=$(( $(date +%s) - s ))")


class PauseTest(ct.DaemonTestCase):

    def state(self, vm_id):
        v = self.daemon.vm(vm_id)
        return v and v["state"]

    def test_pause_holds_a_command_and_resume_finishes_it(self):
        v = self.daemon.start_vm(memory_mib=VM_MEMORY)
        self.addCleanup(self.daemon.request, {"op": "StopVM",
                                              "vm_id": v["vm_id"]})
        x = ct.Exec(v["proxy_socket_path"], ["sh", "-c", TICKER])
        x.read_until(lambda r: b"5\n" in r.stdout, timeout=60)
        r = self.daemon.request({"op": "PauseVM", "vm_id": v["vm_id"]})
        self.assertEqual(r, {"ok": True, "vm_id": v["vm_id"],
                             "state": "paused"})
        # Whatever was in flight arrives; then nothing for a while.
        time.sleep(1)
        x.conn.sock.settimeout(0.2)
        while True:
            try:
                m = x.read_msg(timeout=0.2)
            except (socket.timeout, AssertionError):
                break
            if m is None:
                break
        held = x.result.stdout
        time.sleep(12)          # past the 10 s an unanswering agent gets
        try:
            m = x.read_msg(timeout=0.5)
        except (socket.timeout, AssertionError):
            m = None
        self.assertIsNone(m, "output while paused: %r" % m)
        self.assertEqual(x.result.stdout, held)
        self.assertEqual(self.state(v["vm_id"]), "paused")
        # No new command while paused; the refusal says why.
        r = ct.run_exec(v["proxy_socket_path"], ["true"], timeout=30)
        self.assertEqual(r.code, 125, r)
        self.assertIn("is paused", r.exit.get("error", ""), r)
        self.assertError(self.daemon.request({"op": "PauseVM",
                                              "vm_id": v["vm_id"]}),
                         "conflict", "is paused; only a running VM can be "
                         "paused")
        r = self.daemon.request({"op": "ResumeVM", "vm_id": v["vm_id"]})
        self.assertEqual(r.get("state"), "running", r)
        res = x.wait(timeout=60)
        self.assertEqual(res.code, 0, res)
        lines = res.stdout.decode().split()
        self.assertEqual(lines[:-1], [str(i) for i in range(60)])
        self.assertEqual(self.state(v["vm_id"]), "running")
        self.assertError(self.daemon.request({"op": "ResumeVM",
                                              "vm_id": v["vm_id"]}),
                         "conflict", "is running; only a paused VM can be "
                         "resumed")
        r = ct.run_exec(v["proxy_socket_path"], ["echo", "after"])
        self.assertEqual((r.code, r.stdout), (0, b"after\n"), r)

    def test_cli_and_stop_while_paused(self):
        sb = self.daemon.request({"op": "CreateSandbox", "name": "p",
                                  "memory_mib": VM_MEMORY})
        self.assertIs(sb.get("ok"), True, sb)
        self.addCleanup(self.daemon.request, {"op": "RemoveSandbox",
                                              "sandbox": "p"})
        p = self.daemon.cli("start", "p")
        self.assertEqual(p.returncode, 0, p)
        vm_id = p.stdout.decode().strip()
        # Written, not yet synced when the VM is paused and stopped.
        r = ct.run_exec(self.daemon.vm(vm_id)["proxy_socket_path"],
                        ["sh", "-c", "echo kept > /root/k"])
        self.assertEqual(r.code, 0, r)
        p = self.daemon.cli("pause", "p")
        self.assertEqual((p.returncode, p.stdout.decode().strip()),
                         (0, vm_id), p)
        p = self.daemon.cli("ps")
        self.assertIn(b"paused", p.stdout)
        sb = self.daemon.request({"op": "ListSandboxes"})["sandboxes"][0]
        self.assertEqual((sb["name"], sb["state"], sb["vm_id"]),
                         ("p", "paused", vm_id))
        t0 = time.monotonic()
        p = self.daemon.cli("stop", "p")
        self.assertEqual(p.returncode, 0, p)
        # The agent powered it off (a QMP quit would come after 10 s).
        self.assertLess(time.monotonic() - t0, 9)
        self.assertIn("vm %s: stopped" % vm_id, self.daemon.log_text())
        v = self.daemon.request({"op": "StartVM", "sandbox": "p"},
                                timeout=ct.START_TIMEOUT)
        r = ct.run_exec(v["proxy_socket_path"], ["cat", "/root/k"])
        self.assertEqual((r.code, r.stdout), (0, b"kept\n"), r)
        self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]})
        p = self.daemon.cli("resume", "nope")
        self.assertEqual(p.returncode, 1, p)
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
