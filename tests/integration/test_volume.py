#!/usr/bin/env python3
"""Shared folders (StartVM "volumes", `capsule run -v HOST:GUEST[:ro]`):
a host directory served by virtiofsd and mounted by the agent at boot.

What is checked: bytes written on one side are read on the other; a
read-only share stays read-only even after root in the guest remounts it
read-write; nothing outside the shared directory is reachable through it
(host symlinks, guest symlinks, ".."); a share acts with its owner's rights
(files a non-root caller's guest creates are the caller's, a directory the
caller cannot open is refused); bad requests are refused naming the entry;
the servers end with their VM, also with a VM a later daemon adopted.
"""
import os
import signal
import stat
import subprocess
import tempfile
import unittest

import capsuletest as ct
from test_trust import _exec, chmod_nofollow, write_file
from test_users import OwnerDaemonCase, as_user

VFSD = "/usr/lib/qemu/virtiofsd"
VM_MEMORY = 256
SECRET = b"outside the share\n"


def vfsd_pids():
    """Every running virtiofsd (by the binary it runs): two processes per
    share, the server and its parent outside its pid namespace (and a
    keeper of capsuled's above them, vfsd.c)."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % name) == VFSD:
                out.add(int(name))
        except OSError:
            pass
    return out


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def read_nofollow(path):
    """A file's bytes, never through a link (a guest writes there)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def mount(*args):
    p = subprocess.run(["mount"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise unittest.SkipTest("mount %s: %s" % (" ".join(args),
                                                  p.stderr.decode()))


def umount(path):
    subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def server_pids(daemon_pid, before):
    """The share servers (virtiofsd) of capsuled's share keepers."""
    keepers = [p for p in vfsd_children(daemon_pid)]
    out = []
    for p in vfsd_pids() - before:
        try:
            if ppid(p) in keepers:
                out.append(p)
        except OSError:
            pass
    return out


def vfsd_children(daemon_pid):
    """capsuled's children that are share keepers (vfsd.c)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if (ppid(int(name)) == daemon_pid and
                        os.readlink("/proc/%s/exe" % name) ==
                        os.readlink("/proc/%d/exe" % daemon_pid)):
                    out.append(int(name))
            except OSError:
                pass
    return out


def require_vfsd():
    if not os.access(VFSD, os.X_OK):
        raise unittest.SkipTest("%s not installed (qemu-system-common)" %
                                VFSD)


class VolumeTest(ct.DaemonTestCase):
    """One VM of root's with three shares: rw, ro, and a rw one holding
    host symlinks that point out of it."""

    @classmethod
    def setUpClass(cls):
        require_vfsd()
        cls.vfsd_before = vfsd_pids()
        super().setUpClass()
        try:
            cls.tmp = tempfile.mkdtemp(prefix="capvol", dir="/tmp")
            t = cls.tmp
            for d in ("rw", "ro", "esc", "rosrc", "romnt"):
                os.mkdir(os.path.join(t, d), 0o755)
            # Below rw: a tmpfs over a directory that holds a file the
            # host cannot see while it is covered.
            os.mkdir(os.path.join(t, "rw", "sub"), 0o755)
            write_file(os.path.join(t, "rw", "sub", "covered"), SECRET, 0o644)
            cls.mounts = []
            mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "capvoltest",
                  os.path.join(t, "rw", "sub"))
            cls.mounts.append(os.path.join(t, "rw", "sub"))
            write_file(os.path.join(t, "rw", "sub", "on-top"), b"top\n", 0o644)
            # A read-only bind mount (of a read-write file system),
            # shared read-write: it stays read-only.
            mount("--bind", os.path.join(t, "rosrc"), os.path.join(t, "romnt"))
            cls.mounts.append(os.path.join(t, "romnt"))
            mount("-o", "remount,bind,ro", os.path.join(t, "romnt"))
            cls.secret = write_file(os.path.join(t, "secret"), SECRET)
            write_file(os.path.join(t, "ro", "keep"), b"read only\n", 0o644)
            os.symlink(cls.secret, os.path.join(t, "esc", "abs"))
            os.symlink("../secret", os.path.join(t, "esc", "rel"))
            os.symlink("/", os.path.join(t, "esc", "root"))
            cls.vm = cls.daemon.start_vm(memory_mib=VM_MEMORY, volumes=[
                {"host": os.path.join(t, "rw"), "guest": "/mnt/rw"},
                {"host": os.path.join(t, "ro"), "guest": "/mnt/ro",
                 "read_only": True},
                {"host": os.path.join(t, "esc"), "guest": "/srv/esc"},
                {"host": os.path.join(t, "romnt"), "guest": "/srv/romnt"},
            ])
            cls.proxy = cls.vm["proxy_socket_path"]
        except BaseException:
            cls.tearDownClass()
            raise
        cls.baseline_fds = ct.daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = ct.daemon_children(cls.daemon.proc.pid)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for m in reversed(getattr(cls, "mounts", [])):
                umount(m)
            if getattr(cls, "tmp", None):
                ct.rmtree(cls.tmp)
        # The servers ended with the VM.
        left = ct.wait_for(lambda: vfsd_pids() <= cls.vfsd_before, 10)
        if not left:
            raise AssertionError("virtiofsd left running: %r" %
                                 (vfsd_pids() - cls.vfsd_before))

    def sh(self, script):
        return ct.run_exec(self.proxy, ["sh", "-c", script], timeout=60)

    def test_a_server_per_share_runs_as_the_owner(self):
        kids = server_pids(self.daemon.proc.pid, self.vfsd_before)
        self.assertEqual(len(kids), 4, kids)
        for pid in kids:
            with open("/proc/%d/uid_map" % pid) as f:
                self.assertEqual(f.read().split(), ["0", "0", "1"])
            with open("/proc/%d/status" % pid) as f:
                status = f.read()
            uid_line = [l for l in status.splitlines()
                        if l.startswith("Uid:")][0]
            self.assertEqual(uid_line.split()[1:], ["0"] * 4)
            # ... root only inside a user namespace of its own.
            self.assertNotEqual(os.readlink("/proc/%d/ns/user" % pid),
                                os.readlink("/proc/self/ns/user"))
            self.assertNotEqual(os.readlink("/proc/%d/ns/mnt" % pid),
                                os.readlink("/proc/self/ns/mnt"))

    def test_writes_cross_both_ways(self):
        data = os.urandom(300 * 1024)
        host_in = write_file(os.path.join(self.tmp, "rw", "from-host"), data,
                             0o644)
        self.addCleanup(os.unlink, host_in)
        r = self.sh("sha256sum /mnt/rw/from-host; "
                    "mkdir -p /mnt/rw/g/sub && "
                    "head -c 70000 /mnt/rw/from-host > /mnt/rw/g/sub/part && "
                    "mv /mnt/rw/g/sub/part /mnt/rw/g/moved && echo done")
        self.addCleanup(ct.rmtree, os.path.join(self.tmp, "rw", "g"))
        self.assertEqual(r.code, 0, r)
        import hashlib
        self.assertIn(hashlib.sha256(data).hexdigest().encode(), r.stdout)
        self.assertTrue(r.stdout.endswith(b"done\n"), r)
        moved = os.path.join(self.tmp, "rw", "g", "moved")
        self.assertEqual(read_nofollow(moved), data[:70000])
        self.assertFalse(os.path.lexists(os.path.join(self.tmp, "rw", "g",
                                                      "sub", "part")))
        st = os.lstat(moved)
        self.assertEqual((st.st_uid, st.st_gid), (0, 0))

    def test_read_only_holds_even_after_a_remount(self):
        keep = os.path.join(self.tmp, "ro", "keep")
        before = os.lstat(keep)
        r = self.sh("echo x > /mnt/ro/keep; echo $?; touch /mnt/ro/new; "
                    "echo $?")
        self.assertEqual(r.stdout.split(), [b"1", b"1"], r)
        self.assertIn(b"Read-only file system", r.stderr)
        # Root in the guest lifts its own read-only flag: the host's
        # stays.
        r = self.sh("mount -o remount,rw /mnt/ro && grep ' /mnt/ro ' "
                    "/proc/mounts; echo x >> /mnt/ro/keep; echo w=$?; "
                    "rm /mnt/ro/keep; echo r=$?; chmod 777 /mnt/ro/keep; "
                    "echo c=$?; mkdir /mnt/ro/d; echo m=$?")
        self.assertIn(b"virtiofs rw", r.stdout, r)
        for word in (b"w=1", b"r=1", b"c=1", b"m=1"):
            self.assertIn(word, r.stdout, r)
        self.assertIn(b"Read-only file system", r.stderr)
        after = os.lstat(keep)
        self.assertEqual((after.st_mode, after.st_size, after.st_mtime_ns),
                         (before.st_mode, before.st_size, before.st_mtime_ns))
        self.assertEqual(read_nofollow(keep), b"read only\n")
        self.assertEqual(sorted(os.listdir(os.path.join(self.tmp, "ro"))),
                         ["keep"])

    def test_nothing_outside_the_share(self):
        # The host's links point out of the share: the guest resolves
        # them in its own file system, never the host's.
        r = self.sh("cat /srv/esc/abs; cat /srv/esc/rel; "
                    "cat /srv/esc/root%s; cat /srv/esc/../secret; "
                    "readlink /srv/esc/abs; echo end" % self.secret)
        self.assertNotIn(SECRET.strip(), r.stdout + r.stderr, r)
        self.assertEqual(r.stdout, self.secret.encode() + b"\nend\n", r)
        # A link the guest makes is resolved in the guest, too.
        r = self.sh("ln -s %s /srv/esc/made && cat /srv/esc/made; "
                    "ln -s ../../../../../.. /srv/esc/up && "
                    "ls /srv/esc/up/%s; echo end" % (self.secret,
                                                       self.tmp))
        self.addCleanup(os.unlink, os.path.join(self.tmp, "esc", "made"))
        self.addCleanup(os.unlink, os.path.join(self.tmp, "esc", "up"))
        self.assertNotIn(SECRET.strip(), r.stdout, r)
        self.assertNotIn(b"secret", r.stdout, r)
        with open(self.secret, "rb") as f:
            self.assertEqual(f.read(), SECRET)

    def test_mounts_below_the_share_are_as_the_host_sees_them(self):
        r = self.sh("ls /mnt/rw/sub; cat /mnt/rw/sub/covered; echo x > "
                    "/mnt/rw/sub/new && echo wrote")
        self.addCleanup(os.unlink, os.path.join(self.tmp, "rw", "sub",
                                                "new"))
        self.assertEqual(r.stdout, b"on-top\nwrote\n", r)
        self.assertNotIn(SECRET.strip(), r.stdout + r.stderr)

    def test_a_read_only_source_stays_read_only(self):
        r = self.sh("echo x > /srv/romnt/f; echo w=$?; mkdir /srv/romnt/d; "
                    "echo m=$?")
        self.assertIn(b"w=1", r.stdout, r)
        self.assertIn(b"m=1", r.stdout, r)
        self.assertIn(b"Read-only file system", r.stderr)
        self.assertEqual(os.listdir(os.path.join(self.tmp, "rosrc")), [])

    def test_no_setuid_or_setgid_from_the_guest(self):
        r = self.sh("cp /bin/busybox /mnt/rw/su && chmod 755 /mnt/rw/su && "
                    "echo copied; chmod 4755 /mnt/rw/su; echo u=$?; "
                    "chmod 2755 /mnt/rw/su; echo g=$?; chmod u+s /mnt/rw/su; "
                    "echo s=$?; mkdir /mnt/rw/gd && chmod 2775 /mnt/rw/gd; "
                    "echo d=$?")
        self.addCleanup(os.unlink, os.path.join(self.tmp, "rw", "su"))
        self.addCleanup(os.rmdir, os.path.join(self.tmp, "rw", "gd"))
        self.assertIn(b"copied", r.stdout, r)
        for word in (b"u=1", b"g=1", b"s=1", b"d=1"):
            self.assertIn(word, r.stdout, r)
        st = os.lstat(os.path.join(self.tmp, "rw", "su"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o755)
        st = os.lstat(os.path.join(self.tmp, "rw", "gd"))
        self.assertFalse(st.st_mode & (stat.S_ISUID | stat.S_ISGID))

    def test_list_and_ps_show_the_volumes(self):
        v = self.daemon.vm(self.vm["vm_id"])
        self.assertEqual(v["volumes"], [
            {"host": os.path.join(self.tmp, "rw"), "guest": "/mnt/rw",
             "read_only": False},
            {"host": os.path.join(self.tmp, "ro"), "guest": "/mnt/ro",
             "read_only": True},
            {"host": os.path.join(self.tmp, "esc"), "guest": "/srv/esc",
             "read_only": False},
            {"host": os.path.join(self.tmp, "romnt"), "guest": "/srv/romnt",
             "read_only": False}])
        p = self.daemon.cli("ps")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(("volumes %s/rw:/mnt/rw, %s/ro:/mnt/ro:ro, "
                       "%s/esc:/srv/esc, %s/romnt:/srv/romnt" %
                       ((self.tmp,) * 4)).encode(), p.stdout)

    def test_bad_volumes_are_refused(self):
        t = self.tmp
        rw = os.path.join(t, "rw")
        cases = [
            ({"host": "rw", "guest": "/x"}, "host directory rw is not "
             "absolute"),
            ({"host": rw, "guest": "x"}, "guest path x is not absolute"),
            ({"host": rw, "guest": "/"}, "is the guest's root"),
            ({"host": rw, "guest": "/proc/x"}, "under /proc, /sys or /dev"),
            ({"host": rw, "guest": "/a/../b"}, "has a . or .. component"),
            ({"host": rw, "guest": "/a b"}, "holds a space"),
            ({"host": rw, "guest": "/a,b"}, "holds a space"),
            ({"host": rw, "guest": '/a"b'}, "holds a space"),
            ({"host": rw + "\x1b[31m", "guest": "/x"},
             "holds a control character"),
            ({"host": rw, "guest": "/a//b"}, "empty component"),
            ({"host": rw, "guest": "/a/"}, "empty component"),
            ({"host": rw, "guest": "/" + "a" * 201}, "too long"),
            ({"host": rw, "guest": "/x", "read_only": "yes"},
             "\"read_only\" must be true or false"),
            ({"host": rw, "guest": "/x", "mode": "ro"},
             "unknown field \"mode\""),
            ({"host": rw}, "needs string \"host\" and \"guest\""),
            ("%s:/x" % rw, "must be an object"),
            ({"host": os.path.join(t, "none"), "guest": "/x"},
             "volumes %s/none does not exist" % t),
            ({"host": self.secret, "guest": "/x"},
             "volumes %s is not a directory" % self.secret),
        ]
        for vol, words in cases:
            with self.subTest(vol=vol):
                r = self.daemon.request({"op": "StartVM",
                                         "memory_mib": VM_MEMORY,
                                         "volumes": [vol]})
                self.assertError(r, "invalid_argument", words)
        r = self.daemon.request({"op": "StartVM", "volumes": [
            {"host": rw, "guest": "/x"}, {"host": rw, "guest": "/x"}]})
        self.assertError(r, "invalid_argument", "\"volumes\"[1]: guest path "
                         "/x is used twice")
        r = self.daemon.request({"op": "StartVM", "volumes": [
            {"host": rw, "guest": "/x%d" % i} for i in range(9)]})
        self.assertError(r, "invalid_argument", "has 9 entries; the limit "
                         "is 8")
        self.assertEqual([v["vm_id"] for v in self.daemon.list_vms()],
                         [self.vm["vm_id"]])
        self.assertEqual(self.daemon.vms_dir_entries(), [self.vm["vm_id"]])
        self.assertNoLeaks()

    def test_cli_run_with_a_relative_volume(self):
        p = subprocess.run(
            [ct.CAPSULE, "run", "--memory", str(VM_MEMORY), "-v",
             "ro:/data:ro", "-v", "rw:/out", "--", "sh", "-c",
             "cat /data/keep; echo hi > /out/cli; grep virtiofs "
             "/proc/mounts"], cwd=self.tmp,
            env=dict(os.environ, CAPSULE_SOCKET=self.daemon.sock),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.addCleanup(os.unlink, os.path.join(self.tmp, "rw", "cli"))
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.splitlines(), [
            b"read only", b"vol0 /data virtiofs ro,nosuid,nodev,relatime 0 0",
            b"vol1 /out virtiofs rw,nosuid,nodev,relatime 0 0"])
        self.assertEqual(read_nofollow(os.path.join(self.tmp, "rw", "cli")),
                         b"hi\n")
        p = self.daemon.cli("run", "-v", self.tmp + ":/x:rx", "--", "true")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn(b"the mode after the guest path must be ro or rw",
                      p.stderr)
        self.assertNoLeaks()


class VolumeCrashTest(ct.DaemonTestCase):
    """QEMU dies under a VM with a share: its server ends too, and
    capsuled has no child left over."""

    def test_servers_end_with_a_killed_qemu(self):
        require_vfsd()
        before = vfsd_pids()
        tmp = tempfile.mkdtemp(prefix="capvol", dir="/tmp")
        self.addCleanup(ct.rmtree, tmp)
        v = self.daemon.start_vm(memory_mib=VM_MEMORY, volumes=[
            {"host": tmp, "guest": "/w"}])
        self.assertEqual(len(vfsd_pids() - before), 2)
        os.kill(v["pid"], signal.SIGKILL)
        self.assertTrue(ct.wait_for(lambda: (self.daemon.vm(v["vm_id"]) or
                                             {}).get("state") == "crashed",
                                    30), self.daemon.vm(v["vm_id"]))
        self.assertTrue(ct.wait_for(lambda: vfsd_pids() <= before, 10),
                        vfsd_pids() - before)
        r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]})
        self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        self.assertNoLeaks()


class VolumeOwnerTest(OwnerDaemonCase):
    """A share acts with its owner's rights: a throwaway user's VM."""

    tmp = None

    @classmethod
    def setUpOwner(cls):
        require_vfsd()
        cls.tmp = tempfile.mkdtemp(prefix="capvol", dir="/tmp")
        chmod_nofollow(cls.tmp, 0o755)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if cls.tmp is not None:
                ct.rmtree(cls.tmp)

    def test_guest_files_belong_to_the_owner(self):
        u = self.user
        mine = os.path.join(self.tmp, "mine")
        os.mkdir(mine, 0o755)
        os.chown(mine, u.uid, u.gid)
        theirs = write_file(os.path.join(mine, "roots"), b"root's\n", 0o644)
        # Mode 0604, group theirs: a member of the group may not read it
        # (group bits before other bits), and neither may their guest.
        denied = write_file(os.path.join(mine, "denied"), SECRET, 0o604,
                            gid=self.group.gid)
        with self.assertRaisesRegex(AssertionError, "PermissionError"):
            as_user(u, read_nofollow, denied)
        before = vfsd_pids()
        r = self.ask({"op": "StartVM", "memory_mib": VM_MEMORY,
                      "volumes": [{"host": mine, "guest": "/w"}]})
        self.assertIs(r.get("ok"), True, r)
        self.addCleanup(self.ask, {"op": "StopVM", "vm_id": r["vm_id"]})
        servers = server_pids(self.daemon.proc.pid, before)
        self.assertEqual(len(servers), 1, servers)
        with open("/proc/%d/uid_map" % servers[0]) as f:
            self.assertEqual(f.read().split(), ["0", str(u.uid), "1"])
        with open("/proc/%d/status" % servers[0]) as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines())
        self.assertIn(str(self.group.gid), status["Groups"].split())
        script = ("echo made > /w/new && mkdir /w/dir; "
                  "stat -c '%u %g' /w/new /w/roots; "
                  "echo x >> /w/roots; echo append=$?; "
                  "cat /w/denied; echo read=$?")
        out = as_user(u, _exec, r["proxy_socket_path"],
                      ["sh", "-c", script])
        # In the guest the owner is root and root's file is nobody's.
        lines = out["stdout"].splitlines()
        self.assertEqual(lines[:2], ["0 0", "65534 65534"], out)
        self.assertIn("append=1", lines, out)
        self.assertIn("read=1", lines, out)
        self.assertNotIn(SECRET.decode().strip(), out["stdout"])
        for name in ("new", "dir"):
            st = os.lstat(os.path.join(mine, name))
            self.assertEqual((st.st_uid, st.st_gid), (u.uid, u.gid), name)
        self.assertEqual(read_nofollow(theirs), b"root's\n")
        self.assertEqual(os.lstat(theirs).st_uid, 0)

    def test_a_directory_the_owner_cannot_open_is_refused(self):
        closed = os.path.join(self.tmp, "closed")
        os.mkdir(closed, 0o700)
        r = self.ask({"op": "StartVM", "memory_mib": VM_MEMORY,
                      "volumes": [{"host": closed, "guest": "/w"}]})
        self.assertError(r, "permission_denied", "volumes %s: permission "
                         "denied for uid %d" % (closed, self.user.uid))
        self.assertEqual(self.daemon.vms_dir_entries(), [])


class VolumeAdoptTest(unittest.TestCase):
    """A daemon told to go with SIGTERM leaves its VMs running; the next
    one adopts them, and their shares keep working until the VM stops."""

    def test_share_survives_a_daemon_restart(self):
        require_vfsd()
        ct.require_build()
        before = vfsd_pids()
        tmp = tempfile.mkdtemp(prefix="capvol", dir="/tmp")
        self.addCleanup(ct.rmtree, tmp)
        d = ct.Daemon("VolumeAdopt")
        self.addCleanup(d.kill)
        d.start()
        vm = d.start_vm(memory_mib=VM_MEMORY, volumes=[
            {"host": tmp, "guest": "/w"}])
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(30), 0)
        d.log.close()
        d.returncode = 0
        self.assertEqual(len(vfsd_pids() - before), 2)
        d2 = ct.Daemon("VolumeAdopt2", socket_path=d.sock, state_dir=d.state)
        self.addCleanup(d2.kill)
        self.addCleanup(lambda: [os.kill(p, signal.SIGKILL)
                                 for p, _ in ct.qemu_procs(d.dir)])
        d2.start()
        r = ct.run_exec(vm["proxy_socket_path"],
                        ["sh", "-c", "echo again > /w/f && cat /w/f"],
                        timeout=60)
        self.assertEqual((r.code, r.stdout), (0, b"again\n"), r)
        self.assertEqual(read_nofollow(os.path.join(tmp, "f")), b"again\n")
        r = d2.request({"op": "StopVM", "vm_id": vm["vm_id"]})
        self.assertIs(r.get("ok"), True, r)
        self.assertTrue(ct.wait_for(lambda: vfsd_pids() <= before, 10),
                        vfsd_pids() - before)
        d2.stop()


if __name__ == "__main__":
    ct.main()
