#!/usr/bin/env python3
"""Host-side trust boundaries (issue 7): capsuled acts on the paths a request
names with the rights of the user who sent it, creates only what is new
(never writing through a symlink or hard link someone planted), keeps its
own files in a private dir, replaces only a stale control socket of its own,
insists on a state dir nobody else can write, and trusts a previous daemon's
records only as far as the kernel confirms them.

The caller-path tests run as a throwaway system user (useradd/userdel); they
skip, saying why, when that user cannot be made. Everything else runs as
root. At most two VMs at a time."""
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import capsuletest as ct

PRIVATE_FILES = ["agent.sock", "console.sock", "disk.img", "qemu.log",
                 "qmp.sock", "vm.json"]
VM_UID_BASE = 1879048192            # vm.c: each QEMU's uid as root
SECRET = b"root's secret; capsule must never write here\n"


# ---- file helpers that never follow a link ----

def chmod_nofollow(path, mode):
    """chmod through an O_PATH descriptor of path itself: refuses a link,
    so it never changes a file outside the test's directory."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise AssertionError("%s is a symbolic link; not chmod-ing "
                                 "through it" % path)
        os.chmod("/proc/self/fd/%d" % fd, mode)
    finally:
        os.close(fd)


def mkdir_owned(path, uid, gid=None, mode=0o700):
    os.mkdir(path)
    chmod_nofollow(path, mode)
    os.chown(path, uid, uid if gid is None else gid, follow_symlinks=False)
    return path


def write_file(path, data, mode=0o600, uid=0, gid=0):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    return path


def snap(path):
    """What a name is: type, mode, owner, size, mtime, inode, links, and
    its bytes (a link's target), read without following a link."""
    st = os.lstat(path)
    data = None
    if stat.S_ISREG(st.st_mode):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                c = os.read(fd, 1 << 20)
                if not c:
                    break
                chunks.append(c)
            data = b"".join(chunks)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        data = os.readlink(path)
    return {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
            "nlink": st.st_nlink, "data": data}


def tree(top, skip=()):
    """{relative path: snap} of everything under top, links not followed;
    top-level names in skip are left out."""
    out = {}

    def walk(d, rel):
        with os.scandir(d) as it:
            for e in sorted(it, key=lambda e: e.name):
                r = os.path.join(rel, e.name) if rel else e.name
                if not rel and e.name in skip:
                    continue
                s = snap(e.path)
                if s["type"] == stat.S_IFDIR:
                    s["mtime_ns"] = None    # entries come and go inside
                    out[r] = s
                    walk(e.path, r)
                else:
                    out[r] = s
    walk(top, "")
    return out


def proc_start(pid):
    """Field 22 of /proc/PID/stat: the start time capsule records."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line for pid %d" % pid)


def boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def exec_adopted(proxy, argv, timeout=15):
    """run_exec on a VM capsuled has just taken over. Its exec socket is
    made again just after capsuled answers; until then connecting fails.
    Once it is there, the first command must run: capsuled holds it until
    the guest agent has said HELLO again."""
    end = time.monotonic() + timeout
    while True:
        try:
            return ct.run_exec(proxy, argv, timeout=60)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() > end:
                raise
        time.sleep(0.05)


# ---- acting as another user ----

def run_as(uid, gid, fn, *args, timeout=120, groups=()):
    """fn(*args) in a forked child that is uid/gid with no supplementary
    groups (but groups, if given); its JSON-able result comes back through
    a pipe."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            out = {"value": fn(*args)}
        except BaseException as e:
            out = {"raised": "%s: %s" % (type(e).__name__, e)}
        try:
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(wfd, data):]
        finally:
            os._exit(0)
    os.close(wfd)
    chunks, timed_out = [], False
    end = time.monotonic() + timeout
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            c = os.read(rfd, 1 << 16)
            if not c:
                break
            chunks.append(c)
    finally:
        os.close(rfd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if timed_out:
        raise AssertionError("as uid %d: %s did not finish within %d s" %
                             (uid, fn.__name__, timeout))
    out = json.loads(b"".join(chunks) or b"{}")
    if "raised" in out or "value" not in out:
        raise AssertionError("as uid %d: %s failed: %s" %
                             (uid, fn.__name__, out.get("raised", out)))
    return out["value"]


def _request(sock, req):
    with ct.Conn(sock, timeout=ct.START_TIMEOUT) as c:
        return c.request(req)


def _exec(proxy, argv):
    r = ct.run_exec(proxy, argv, timeout=60)
    return {"exit": r.exit, "stdout": r.stdout.decode("utf-8", "replace")}


def _symlink(target, path):
    os.symlink(target, path)


def _write(path, data):
    with open(path, "x") as f:
        f.write(data)


def _unlink(path):
    os.unlink(path)


class TestUser:
    """A throwaway system user (in group, a TestGroup, if given); remove()
    deletes it."""

    def __init__(self, group=None):
        if shutil.which("useradd") is None or shutil.which("userdel") is None:
            raise unittest.SkipTest("useradd/userdel not found: cannot make "
                                    "a non-root user to send requests as")
        if os.geteuid() != 0:
            raise unittest.SkipTest("not root: cannot add a user")
        self.name = "capsule-t7-" + secrets.token_hex(3)
        extra = ["--groups", group.name] if group is not None else []
        p = subprocess.run(["useradd", "--system", "--no-create-home",
                            "--shell", "/usr/sbin/nologin"] + extra +
                           [self.name], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            raise unittest.SkipTest("useradd %s failed (%d): %s" % (
                self.name, p.returncode, p.stderr.decode().strip()))
        try:
            pw = pwd.getpwnam(self.name)
        except KeyError:
            self.remove()
            raise
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.groups = [group.gid] if group is not None else []

    def remove(self):
        p = subprocess.run(["userdel", self.name], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        if p.returncode != 0:
            raise AssertionError("userdel %s failed: %s" %
                                 (self.name, p.stderr.decode()))


# ---- the same conflicts, whoever asks ----

class ConflictCases:
    """An existing name where capsule would create one is a conflict; what
    it points to is never written, truncated or followed. Mixed into a test
    class that defines ask(req) (sends a request as its caller),
    caller_dir(name) (a fresh directory that belongs to that caller) and
    plant_symlink(target, path)."""

    def setUp(self):
        # A root-only file with known contents: what an attacker aims at.
        d = self.daemon.dir
        self.secret = os.path.join(d, "secret-%s" % secrets.token_hex(4))
        write_file(self.secret, SECRET, 0o600)
        self.secret_before = snap(self.secret)

    def tearDown(self):
        os.unlink(self.secret)

    def assertSecretUntouched(self):
        now = snap(self.secret)
        self.assertEqual(now, self.secret_before,
                         "the root-only file behind a planted name changed")
        self.assertEqual(now["data"], SECRET)

    def assertNoVMLeft(self):
        self.assertEqual(self.daemon.vms_dir_entries(), [],
                         "a failed start left a private dir")
        self.assertEqual(self.daemon.list_vms(), [])

    def test_symlink_in_run_dir_is_a_conflict(self):
        for name in ("console.log", "proxy.sock", "port-x.sock"):
            with self.subTest(name=name):
                rd = self.caller_dir("sym-" + name)
                planted = os.path.join(rd, name)
                self.plant_symlink(self.secret, planted)
                r = self.ask({"op": "StartVM", "run_dir": rd,
                              "serial_ports": ["x"]})
                self.assertError(r, "conflict", planted, "already exists")
                self.assertSecretUntouched()
                # What it made before the conflict (console.log, proxy.sock)
                # is gone again; the link is left as it was.
                self.assertEqual(os.listdir(rd), [name])
                self.assertEqual(os.readlink(planted), self.secret)
                self.assertNoVMLeft()

    def test_hard_link_in_run_dir_is_a_conflict(self):
        for name in ("console.log", "proxy.sock", "port-x.sock"):
            with self.subTest(name=name):
                rd = self.caller_dir("hard-" + name)
                planted = os.path.join(rd, name)
                os.link(self.secret, planted)
                self.secret_before = snap(self.secret)      # nlink is 2 now
                r = self.ask({"op": "StartVM", "run_dir": rd,
                              "serial_ports": ["x"]})
                self.assertError(r, "conflict", planted, "already exists")
                self.assertSecretUntouched()
                self.assertEqual(os.listdir(rd), [name])
                self.assertEqual(os.lstat(planted).st_ino,
                                 self.secret_before["ino"])
                os.unlink(planted)
                self.secret_before = snap(self.secret)
                self.assertNoVMLeft()

    def test_named_console_log_that_exists(self):
        rd = self.caller_dir("named-log")
        mine = os.path.join(rd, "mine.log")
        write_file(mine, b"the caller's own log\n", 0o640,
                   *self.caller_ids())
        before = snap(mine)
        r = self.ask({"op": "StartVM", "console_log_path": mine})
        self.assertError(r, "conflict", mine, "already exists")
        self.assertEqual(snap(mine), before, "an existing console log was "
                         "written, truncated or re-moded")
        # A hard link to the root-only file, named directly.
        hard = os.path.join(rd, "hard.log")
        os.link(self.secret, hard)
        self.secret_before = snap(self.secret)
        r = self.ask({"op": "StartVM", "console_log_path": hard})
        self.assertError(r, "conflict", hard, "already exists")
        self.assertSecretUntouched()
        self.assertEqual(sorted(os.listdir(rd)), ["hard.log", "mine.log"])
        os.unlink(hard)
        self.secret_before = snap(self.secret)
        self.assertNoVMLeft()

    def test_named_console_log_that_is_a_symlink(self):
        rd = self.caller_dir("named-link")
        link = os.path.join(rd, "link.log")
        self.plant_symlink(self.secret, link)
        r = self.ask({"op": "StartVM", "console_log_path": link})
        self.assertError(r, "conflict", link,
                         "already exists as a symbolic link")
        self.assertSecretUntouched()
        # A dangling link: following it would create its target.
        target = os.path.join(rd, "would-be-created")
        dangling = os.path.join(rd, "dangling.log")
        self.plant_symlink(target, dangling)
        r = self.ask({"op": "StartVM", "console_log_path": dangling})
        self.assertError(r, "conflict", dangling, "already exists")
        self.assertFalse(os.path.lexists(target),
                         "capsule created the target of a dangling link")
        self.assertEqual(sorted(os.listdir(rd)), ["dangling.log",
                                                  "link.log"])
        self.assertNoVMLeft()

    def test_named_proxy_socket_that_exists(self):
        rd = self.caller_dir("named-sock")
        f = os.path.join(rd, "exec.sock")
        write_file(f, b"not a socket\n", 0o600, *self.caller_ids())
        link = os.path.join(rd, "link.sock")
        self.plant_symlink(self.secret, link)
        for path in (f, link):
            before = snap(path)
            r = self.ask({"op": "StartVM", "proxy_socket_path": path})
            self.assertError(r, "conflict", path, "already exists")
            self.assertEqual(snap(path), before)
        self.assertSecretUntouched()
        self.assertEqual(sorted(os.listdir(rd)), ["exec.sock", "link.sock"])
        self.assertNoVMLeft()

    def test_run_dir_that_is_a_symlink_or_a_file(self):
        rd = self.caller_dir("rd-kinds")
        target = self.caller_dir("rd-kinds-target")
        link = os.path.join(rd, "link")
        self.plant_symlink(target, link)
        r = self.ask({"op": "StartVM", "run_dir": link})
        self.assertError(r, "invalid_argument", link, "is a symbolic link")
        self.assertEqual(os.listdir(target), [],
                         "capsule created files through a run_dir link")
        f = os.path.join(rd, "file")
        write_file(f, b"a file\n", 0o600, *self.caller_ids())
        before = snap(f)
        r = self.ask({"op": "StartVM", "run_dir": f})
        self.assertError(r, "invalid_argument", f, "is not a directory")
        self.assertEqual(snap(f), before)
        self.assertEqual(sorted(os.listdir(rd)), ["file", "link"])
        self.assertNoVMLeft()

    def test_run_dir_without_parent_creates_nothing(self):
        rd = self.caller_dir("deep")
        deep = os.path.join(rd, "a", "b", "c")
        r = self.ask({"op": "StartVM", "run_dir": deep})
        self.assertError(r, "invalid_argument", deep,
                         "parent directory does not exist")
        self.assertEqual(os.listdir(rd), [], "capsule created a parent")
        self.assertNoVMLeft()


class UserCallerTest(ConflictCases, ct.DaemonTestCase):
    """Requests from a non-root user to a root capsuled."""

    user = None

    @classmethod
    def setUpClass(cls):
        cls.user = TestUser()
        try:
            super().setUpClass()
            d = cls.daemon
            # Stands in for the group-owned control socket a later issue
            # adds: here any local user may connect to this test daemon.
            chmod_nofollow(d.dir, 0o711)
            chmod_nofollow(d.sock, 0o666)
            # The user's own area, one level down: capsuled opens the
            # parent of a run dir for reading, and the daemon's dir is only
            # traversable.
            cls.home = mkdir_owned(os.path.join(d.dir, "home"),
                                   cls.user.uid, cls.user.gid)
            # A root-only directory; and root-only copies of the images in
            # a directory anyone may read, so only their own mode stops
            # the user.
            cls.rootonly = os.path.join(d.dir, "rootonly")
            os.mkdir(cls.rootonly, 0o700)
            pub = mkdir_owned(os.path.join(d.dir, "pub"), 0, 0, 0o755)
            cls.images = {}
            for field, name in (("kernel_path", "vmlinuz"),
                                ("initrd_path", "initramfs.img"),
                                ("rootfs_path", "rootfs.ext4")):
                src = os.path.join(ct.IMAGE_DIR, name)
                dst = os.path.join(pub, name)
                with open(src, "rb") as f:
                    # rootfs.ext4 is a sparse 1 GiB file: its start (with
                    # the superblock) is all a format check reads.
                    data = f.read(1 << 20) if name == "rootfs.ext4" \
                        else f.read()
                write_file(dst, data, 0o600)
                cls.images[field] = dst
        except BaseException:
            try:
                if cls.daemon is not None:
                    cls.daemon.kill()
            finally:
                cls.user.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if cls.user is not None:
                cls.user.remove()

    # -- ConflictCases hooks --

    def ask(self, req):
        return run_as(self.user.uid, self.user.gid, _request,
                      self.daemon.sock, req)

    def caller_ids(self):
        return self.user.uid, self.user.gid

    def caller_dir(self, name):
        return mkdir_owned(os.path.join(self.home, name + "-" +
                                        secrets.token_hex(3)),
                           self.user.uid, self.user.gid)

    def plant_symlink(self, target, path):
        run_as(self.user.uid, self.user.gid, _symlink, target, path)

    # -- what only a non-root caller can show --

    def test_paths_in_a_root_only_dir(self):
        uid = self.user.uid
        for field, path in (
                ("run_dir", os.path.join(self.rootonly, "rd")),
                ("console_log_path", os.path.join(self.rootonly, "c.log")),
                ("proxy_socket_path", os.path.join(self.rootonly, "x.sock"))):
            with self.subTest(field=field):
                r = self.ask({"op": "StartVM", field: path})
                self.assertError(r, "permission_denied", field, path,
                                 "permission denied for uid %d" % uid)
                self.assertEqual(os.listdir(self.rootonly), [])
        self.assertNoVMLeft()

    def test_images_the_user_cannot_read(self):
        uid = self.user.uid
        rd = self.caller_dir("img")
        for field, path in sorted(self.images.items()):
            link = os.path.join(rd, field + ".link")
            self.plant_symlink(path, link)
            for named in (path, link):
                with self.subTest(field=field, via=named):
                    before = snap(path)
                    r = self.ask({"op": "StartVM", field: named})
                    self.assertError(r, "permission_denied", field, named,
                                     "permission denied for uid %d" % uid)
                    self.assertEqual(snap(path), before)
        self.assertNoVMLeft()

    def test_image_checks_as_the_user(self):
        # The control for the test above: once the user may read the
        # kernel copy it is accepted, and the request fails only on the
        # next image's format. Then: missing and malformed images.
        rd = self.caller_dir("img-ok")
        kernel = os.path.join(rd, "vmlinuz")
        shutil.copyfile(os.path.join(ct.IMAGE_DIR, "vmlinuz"), kernel)
        os.chown(kernel, self.user.uid, self.user.gid, follow_symlinks=False)
        junk = write_file(os.path.join(rd, "junk"), b"\0junk" * 1000, 0o600,
                          self.user.uid, self.user.gid)
        r = self.ask({"op": "StartVM", "kernel_path": kernel,
                      "rootfs_path": junk})
        self.assertError(r, "invalid_argument", "rootfs_path", junk,
                         "is not an ext4 file system image")
        for field, why in (("kernel_path", "is neither an x86_64 bzImage "
                            "nor an x86_64 ELF kernel"),
                           ("initrd_path", "is not an initramfs")):
            r = self.ask({"op": "StartVM", field: junk})
            self.assertError(r, "invalid_argument", field, junk, why)
        missing = os.path.join(rd, "missing")
        for field in sorted(self.images):
            r = self.ask({"op": "StartVM", field: missing})
            self.assertError(r, "invalid_argument", field, missing,
                             "does not exist")
        self.assertNoVMLeft()

    def test_start_as_user(self):
        uid = self.user.uid
        made = os.path.join(self.home, "made-" + secrets.token_hex(3))
        pre = self.caller_dir("pre")
        keep = write_file(os.path.join(pre, "keep"), b"keep me\n", 0o600,
                          uid, self.user.gid)
        named_log = os.path.join(self.home, "named-%s.log" %
                                 secrets.token_hex(3))
        a = b = None
        try:
            a = run_as(uid, self.user.gid, _request, self.daemon.sock,
                       {"op": "StartVM", "run_dir": made,
                        "serial_ports": ["x"], "memory_mib": 256})
            self.assertIs(a.get("ok"), True, a)
            b = run_as(uid, self.user.gid, _request, self.daemon.sock,
                       {"op": "StartVM", "run_dir": pre,
                        "console_log_path": named_log, "memory_mib": 256})
            self.assertIs(b.get("ok"), True, b)

            # A's run dir: capsule made it, for the user, and put only the
            # caller's files in it.
            self.assertEqual(a["run_dir"], made, a)
            self.assertEqual(a["proxy_socket_path"],
                             os.path.join(made, "proxy.sock"), a)
            self.assertEqual(a["console_log_path"],
                             os.path.join(made, "console.log"), a)
            self.assertEqual(a["serial_ports"],
                             {"x": os.path.join(made, "port-x.sock")}, a)
            self.assertEqual(sorted(os.listdir(made)),
                             ["console.log", "port-x.sock", "proxy.sock"])
            want = {"": (stat.S_IFDIR, 0o700),
                    "console.log": (stat.S_IFREG, 0o600),
                    "proxy.sock": (stat.S_IFSOCK, 0o600),
                    "port-x.sock": (stat.S_IFSOCK, 0o600)}
            for name, (kind, mode) in want.items():
                st = os.lstat(os.path.join(made, name))
                self.assertEqual((stat.S_IFMT(st.st_mode),
                                  stat.S_IMODE(st.st_mode), st.st_uid),
                                 (kind, mode, uid), "%s/%s" % (made, name))
            # B: the pre-existing dir gets only the exec socket; the log
            # goes where it was named.
            self.assertEqual(sorted(os.listdir(pre)), ["keep", "proxy.sock"])
            st = os.lstat(named_log)
            self.assertEqual((stat.S_IFMT(st.st_mode),
                              stat.S_IMODE(st.st_mode), st.st_uid),
                             (stat.S_IFREG, 0o600, uid))

            # The private dirs: capsuled's, with capsuled's files.
            for v in (a, b):
                pd = os.path.join(self.daemon.state, "vms", v["vm_id"])
                st = os.lstat(pd)
                self.assertEqual((stat.S_IFMT(st.st_mode),
                                  stat.S_IMODE(st.st_mode), st.st_uid),
                                 (stat.S_IFDIR, 0o700, 0), pd)
                self.assertEqual(sorted(os.listdir(pd)), PRIVATE_FILES, pd)
                for name in ("disk.img", "qemu.log", "vm.json"):
                    st = os.lstat(os.path.join(pd, name))
                    self.assertEqual((stat.S_IFMT(st.st_mode),
                                      stat.S_IMODE(st.st_mode), st.st_uid),
                                     (stat.S_IFREG, 0o600, 0), name)
                with open(os.path.join(pd, "vm.json")) as f:
                    rec = json.load(f)
                self.assertEqual(rec["vm_id"], v["vm_id"])
                self.assertEqual(rec["owner_uid"], uid, rec)
                self.assertEqual(rec["pid"], v["pid"], rec)
                self.assertEqual(rec["pid_start"], proc_start(v["pid"]), rec)
                self.assertEqual(rec["pid_uid"], proc_uid(v["pid"]), rec)
                self.assertGreaterEqual(rec["pid_uid"], VM_UID_BASE, rec)
                self.assertEqual(rec["boot_id"], boot_id(), rec)
                for m in rec["made"]:
                    st = os.lstat(os.path.join(m["dir"], m["name"]))
                    dst = os.stat(m["dir"])
                    self.assertEqual((m["dev"], m["ino"], m["dir_dev"],
                                      m["dir_ino"]),
                                     (st.st_dev, st.st_ino, dst.st_dev,
                                      dst.st_ino), m)
                made_names = sorted((m["dir"], m["name"], m["type"])
                                    for m in rec["made"])
                if v is a:
                    self.assertEqual(made_names, sorted([
                        (self.home, os.path.basename(made), "dir"),
                        (made, "console.log", "file"),
                        (made, "port-x.sock", "socket"),
                        (made, "proxy.sock", "socket")]), rec)
                else:
                    # The named log is the caller's: not capsule's to remove.
                    self.assertEqual(made_names, [(pre, "proxy.sock",
                                                   "socket")], rec)

            # The user runs commands through its own exec sockets.
            for v in (a, b):
                r = run_as(uid, self.user.gid, _exec,
                           v["proxy_socket_path"], ["echo", "as-user"])
                self.assertEqual((r["exit"]["exit_code"], r["stdout"]),
                                 (0, "as-user\n"), r)
            # Someone swaps B's exec socket for a file of their own.
            run_as(uid, self.user.gid, _unlink, b["proxy_socket_path"])
            run_as(uid, self.user.gid, _write, b["proxy_socket_path"],
                   "swapped in by the user\n")
            swapped = snap(b["proxy_socket_path"])
        finally:
            for v in (a, b):
                if v and v.get("ok"):
                    r = self.daemon.request({"op": "StopVM",
                                             "vm_id": v["vm_id"]},
                                            timeout=ct.STOP_TIMEOUT)
                    self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        self.assertFalse(os.path.lexists(made),
                         "the run dir capsule made is left")
        self.assertEqual(sorted(os.listdir(pre)), ["keep", "proxy.sock"],
                         "capsule removed what it did not make, or left "
                         "what it did")
        self.assertEqual(snap(b["proxy_socket_path"]), swapped,
                         "the file swapped in for capsule's socket changed")
        self.assertEqual(snap(keep)["data"], b"keep me\n")
        self.assertTrue(os.path.isfile(named_log),
                        "the console log the caller named was removed")
        self.assertEqual(os.lstat(named_log).st_uid, uid)
        self.assertNoVMLeft()
        self.assertEqual(ct.qemu_procs(self.daemon.dir), [])

    def test_zz_nothing_left(self):
        self.assertNoVMLeft()
        self.assertEqual(self.daemon.qemu(), [])
        self.assertNoLeaks()


class RootCallerTest(ConflictCases, ct.DaemonTestCase):
    """The same conflicts when root asks for a run dir a user controls: the
    original exploit was root's capsuled writing through a user's link."""

    OTHER_UID = 65534           # a user's dir, for ownership only

    def ask(self, req):
        return self.daemon.request(req, timeout=ct.START_TIMEOUT)

    def caller_ids(self):
        return self.OTHER_UID, self.OTHER_UID

    def caller_dir(self, name):
        return mkdir_owned(os.path.join(self.daemon.dir, name + "-" +
                                        secrets.token_hex(3)),
                           self.OTHER_UID, self.OTHER_UID, 0o755)

    def plant_symlink(self, target, path):
        os.symlink(target, path)
        os.chown(path, self.OTHER_UID, self.OTHER_UID, follow_symlinks=False)

    def test_symlinked_parent_of_run_dir_is_followed_for_root(self):
        # Root could reach the target anyway, so a link among the parent
        # components is followed; only the last component must be new or a
        # real directory. Nothing outside the temp dir is touched.
        d = self.daemon.dir
        real = os.path.join(d, "real")
        os.mkdir(real, 0o755)
        os.symlink(real, os.path.join(d, "via"))
        rd = os.path.join(d, "via", "rd")
        before = tree(d, skip=("state", "capsuled.log", "c.sock"))
        v = self.daemon.start_vm(run_dir=rd, memory_mib=256)
        try:
            self.assertEqual(v["run_dir"], rd, v)
            self.assertEqual(sorted(os.listdir(os.path.join(real, "rd"))),
                             ["console.log", "proxy.sock"])
            pd = os.path.join(self.daemon.state, "vms", v["vm_id"])
            with open(os.path.join(pd, "vm.json")) as f:
                rec = json.load(f)
            for m in rec["made"]:
                self.assertTrue(m["dir"].startswith(d + "/"), m)
            r = ct.run_exec(v["proxy_socket_path"], ["echo", "ok"])
            self.assertEqual((r.code, r.stdout), (0, b"ok\n"), r)
        finally:
            r = self.daemon.request({"op": "StopVM", "vm_id": v["vm_id"]},
                                    timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [v["vm_id"]], r)
        self.assertEqual(tree(d, skip=("state", "capsuled.log", "c.sock")),
                         before, "the temp dir differs after the VM went")
        self.assertEqual(os.readlink(os.path.join(d, "via")), real)
        self.assertNoVMLeft()

    def test_zz_nothing_left(self):
        self.assertNoVMLeft()
        self.assertEqual(self.daemon.qemu(), [])
        self.assertNoLeaks()


class StartupTest(unittest.TestCase):
    """What capsuled refuses at start-up: a --socket that is not a stale
    socket of its own, and a state dir others could write to."""

    def setUp(self):
        ct.require_build()
        self.dir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def capsuled(self, sock, state):
        try:
            p = subprocess.run(
                [ct.CAPSULED, "--socket", sock,
                 "--state-dir", state, "--image-dir", ct.IMAGE_DIR],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, timeout=30)
        except subprocess.TimeoutExpired:
            self.fail("capsuled kept running with --socket %s --state-dir %s"
                      " (it should have refused)" % (sock, state))
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def assertRefused(self, sock, state, *why):
        rc, err = self.capsuled(sock, state)
        self.assertNotEqual(rc, 0, err)
        for w in why:
            self.assertIn(w, err)
        return err

    def test_socket_path_that_is_not_a_stale_socket(self):
        state = os.path.join(self.dir, "state")
        target = write_file(os.path.join(self.dir, "target"), b"target\n")
        stale = os.path.join(self.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        cases = {}
        cases["file"] = write_file(os.path.join(self.dir, "file"),
                                   b"a regular file\n")
        cases["link-to-file"] = os.path.join(self.dir, "link-file")
        os.symlink(target, cases["link-to-file"])
        cases["link-to-stale-socket"] = os.path.join(self.dir, "link-sock")
        os.symlink(stale, cases["link-to-stale-socket"])
        cases["dir"] = os.path.join(self.dir, "dir")
        os.mkdir(cases["dir"])
        write_file(os.path.join(cases["dir"], "inside"), b"inside\n")
        for kind, path in sorted(cases.items()):
            with self.subTest(kind=kind):
                before = tree(self.dir, skip=("state",))
                self.assertRefused(path, state, path,
                                   "exists and is not a socket")
                self.assertEqual(tree(self.dir, skip=("state",)), before)

    def test_socket_of_another_uid(self):
        state = os.path.join(self.dir, "state")
        path = os.path.join(self.dir, "theirs.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        os.chown(path, 65534, 65534, follow_symlinks=False)
        before = snap(path)
        self.assertRefused(path, state, path, "belongs to uid 65534")
        self.assertEqual(snap(path), before)

    def test_live_socket(self):
        state = os.path.join(self.dir, "state")
        path = os.path.join(self.dir, "live.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(8)
        srv.settimeout(10)
        self.addCleanup(srv.close)
        before = snap(path)
        self.assertRefused(path, state, path, "already listening")
        self.assertEqual(snap(path), before)
        # It is still ours: a client reaches it (the probe was accepted and
        # closed; this one is new).
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(path)
        c.close()

    def test_stale_socket_is_replaced(self):
        d = ct.Daemon("stale")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.sock)
        s.close()
        try:
            d.start()
            st = os.lstat(d.sock)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            self.assertIs(d.request({"op": "Ping"}).get("ok"), True)
        finally:
            try:
                d.stop()
            finally:
                d.kill()
        self.assertFalse(os.path.lexists(d.sock))

    def test_state_dir_others_can_write(self):
        sock = os.path.join(self.dir, "c.sock")
        for mode, uid in ((0o777, 0), (0o775, 0), (0o700, 65534)):
            with self.subTest(mode=oct(mode), uid=uid):
                state = os.path.join(self.dir, "state-%o-%d" % (mode, uid))
                os.mkdir(state)
                chmod_nofollow(state, mode)
                os.chown(state, uid, uid, follow_symlinks=False)
                self.assertRefused(sock, state, state, "must belong to uid 0")
                st = os.lstat(state)
                self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid),
                                 (mode, uid), "capsuled changed the dir")
                self.assertEqual(os.listdir(state), [])
                self.assertFalse(os.path.lexists(sock))

    def test_vms_dir_not_private(self):
        sock = os.path.join(self.dir, "c.sock")
        elsewhere = os.path.join(self.dir, "elsewhere")
        os.mkdir(elsewhere, 0o700)
        for kind in ("mode 0755", "link"):
            with self.subTest(kind=kind):
                state = os.path.join(self.dir, "state-" + kind[:4])
                os.mkdir(state, 0o700)
                vms = os.path.join(state, "vms")
                if kind == "link":
                    os.symlink(elsewhere, vms)
                else:
                    os.mkdir(vms)
                    chmod_nofollow(vms, 0o755)
                before = tree(self.dir)
                self.assertRefused(sock, state, vms)
                self.assertEqual(tree(self.dir), before)
                self.assertFalse(os.path.lexists(sock))


class StateRecordTest(unittest.TestCase):
    """What a capsuled killed with SIGKILL leaves, and what the next one on
    the same state dir does with it: it takes a VM over, or acts on a
    record at all, only as far as the kernel confirms it. (The service
    side of taking over, with more VMs: test_service.)"""

    def setUp(self):
        ct.require_build()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def innocent(self, *words):
        """A process of nobody's VM (root's), whose command line mentions
        words (paths of a VM, say)."""
        p = subprocess.Popen([sys.executable, "-c",
                              "import time; time.sleep(300)"] + list(words),
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        ct.wait_for(lambda: proc_start(p.pid) > 0, 5)
        return p

    def new_daemon(self, name):
        d = ct.Daemon(name)
        self.addCleanup(d.kill)
        os.makedirs(os.path.join(d.state, "vms"), 0o700)
        chmod_nofollow(d.state, 0o700)
        return d

    def successor(self, d, name):
        """A new capsuled on d's socket and state dir."""
        d2 = ct.Daemon(name, socket_path=d.sock, state_dir=d.state)
        self.addCleanup(d2.kill)
        d2.start()
        return d2

    @staticmethod
    def record(vm_id, pid, start, uid, made=(), **over):
        r = {"backend": "qemu", "boot_id": boot_id(), "created_at": 1,
             "format": 1, "made": list(made), "owner_uid": 0, "pid": pid,
             "pid_start": start, "pid_uid": uid, "vm_id": vm_id}
        r.update(over)
        return r

    @staticmethod
    def made(path, kind="file", dir_path=None, **over):
        """A "made" entry that correctly describes path."""
        st = os.lstat(path)
        dst = os.stat(os.path.dirname(path))
        m = {"dir": dir_path or os.path.dirname(path),
             "dir_dev": dst.st_dev, "dir_ino": dst.st_ino,
             "name": os.path.basename(path), "dev": st.st_dev,
             "ino": st.st_ino, "type": kind}
        m.update(over)
        return m

    @staticmethod
    def plant(d, rec, vm_id=None, raw=None):
        """A private dir in d's vms/, holding rec (or raw bytes)."""
        vm_id = vm_id or rec["vm_id"]
        pd = os.path.join(d.state, "vms", vm_id)
        os.mkdir(pd, 0o700)
        data = raw if raw is not None else json.dumps(rec).encode()
        write_file(os.path.join(pd, "vm.json"), data, 0o600)
        return pd

    def assertAlive(self, p, why):
        self.assertTrue(ct.pid_alive(p.pid), "pid %d (%s) was killed" %
                        (p.pid, why))

    def test_process_identity(self):
        d = self.new_daemon("records-pid")
        uid0 = 0
        cases = {}
        wrong_start = self.innocent("wrong-start")
        cases["wrong start"] = (wrong_start, self.record(
            str(uuid.uuid4()), wrong_start.pid,
            proc_start(wrong_start.pid) + 1, uid0))
        wrong_uid = self.innocent("wrong-uid")
        cases["wrong uid"] = (wrong_uid, self.record(
            str(uuid.uuid4()), wrong_uid.pid, proc_start(wrong_uid.pid),
            VM_UID_BASE))
        wrong_boot = self.innocent("wrong-boot")
        cases["wrong boot"] = (wrong_boot, self.record(
            str(uuid.uuid4()), wrong_boot.pid, proc_start(wrong_boot.pid),
            uid0, boot_id=str(uuid.uuid4())))
        # The control: a record that matches in every way is acted on.
        matching = self.innocent("matching")
        m_rec = self.record(str(uuid.uuid4()), matching.pid,
                            proc_start(matching.pid), uid0)
        for _, rec in cases.values():
            self.plant(d, rec)
        self.plant(d, m_rec)
        d.start()
        try:
            for why, (p, rec) in sorted(cases.items()):
                self.assertAlive(p, why)
            self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(
                matching.pid), 10), "a process the record names exactly "
                "was not killed: the test cannot tell anything apart")
            self.assertEqual(d.vms_dir_entries(), [])
            log = d.log_text()
            self.assertIn("pid %d now belongs to another process; not "
                          "signalling it" % wrong_start.pid, log)
            self.assertIn("pid %d now belongs to another process" %
                          wrong_uid.pid, log)
            self.assertIn("vm %s: its process ran in an earlier boot" %
                          cases["wrong boot"][1]["vm_id"], log)
            # A format-1 record (no spec) is never taken over, and what it
            # named is not listed either.
            self.assertIn("vm %s: recorded by an older capsuled, so it "
                          "cannot be taken over" % m_rec["vm_id"], log)
            self.assertNotIn("taken over (", log)
            self.assertEqual(d.list_vms(), [])
        finally:
            d.stop()

    def test_made_entries_checked_against_the_kernel(self):
        d = self.new_daemon("records-made")
        victims = os.path.join(d.dir, "victims")
        os.mkdir(victims, 0o700)

        def victim(name):
            return write_file(os.path.join(victims, name),
                              b"root-only " + name.encode() + b"\n", 0o600)

        # A valid record with entries of each kind.
        ok_file = victim("capsule-made")
        other = victim("other-file")
        wrong_type = victim("wrong-type")
        wrong_dir = victim("wrong-dir-ino")
        helper = victim("helper")            # its inode lends a wrong one
        rec = self.record(str(uuid.uuid4()), 999999, 1, VM_UID_BASE, made=[
            self.made(ok_file),
            self.made(other, ino=os.lstat(helper).st_ino),
            self.made(wrong_type, "dir"),
            self.made(wrong_dir, dir_ino=os.lstat(helper).st_ino),
        ])
        self.plant(d, rec)
        # Records that do not validate: each also names, correctly, a file
        # that a trusted record would have removed.
        invalid = {}
        for why, mutate in (
                ("relative dir", lambda m: m.update(dir="../..")),
                ("dir not absolute", lambda m: m.update(
                    dir=os.path.relpath(victims, "/"))),
                ("name with a slash", lambda m: m.update(
                    name="x/" + m["name"])),
                ("name ..", lambda m: m.update(name="..")),
                ("bad type", lambda m: m.update(type="fifo")),
                ("dev as a string", lambda m: m.update(dev=str(m["dev"])))):
            f = victim("invalid-" + why.replace(" ", "-"))
            bad = self.made(f)
            mutate(bad)
            invalid[why] = (f, self.record(str(uuid.uuid4()), 999999, 1,
                                           VM_UID_BASE,
                                           made=[self.made(f), bad]))
        for why, (f, r) in invalid.items():
            self.plant(d, r)
        before = {p: snap(p) for p in (other, wrong_type, wrong_dir, helper)}
        before.update({f: snap(f) for f, _ in invalid.values()})
        d.start()
        try:
            self.assertFalse(os.path.lexists(ok_file), "the control: an entry "
                             "that matches was not removed, so the test "
                             "cannot tell anything apart")
            for p, s in sorted(before.items()):
                self.assertEqual(snap(p), s, "%s was touched" % p)
            self.assertEqual(d.vms_dir_entries(), [])
            log = d.log_text()
            for p in (other, wrong_type, wrong_dir):
                self.assertIn("%s is no longer what capsule made; left alone"
                              % p, log)
            for why, (f, r) in sorted(invalid.items()):
                self.assertIn("vm %s: record field" % r["vm_id"], log, why)
            self.assertEqual(log.count("touching nothing it names"),
                             len(invalid), log)
        finally:
            d.stop()

    def test_made_entry_dir_with_dotdot(self):
        # capsuled itself records a run dir as the caller named it, ".."
        # and all ("/x/../rd"), so a "dir" with ".." is not rejected: it is
        # resolved, and then the directory it resolves to must still be
        # the one recorded (dev/ino) before anything in it is removed.
        d = self.new_daemon("records-dotdot")
        victims = os.path.join(d.dir, "victims")
        decoy = os.path.join(d.dir, "decoy")
        os.mkdir(victims, 0o700)
        os.mkdir(decoy, 0o700)
        mine = write_file(os.path.join(victims, "mine"), b"capsule's\n")
        theirs = write_file(os.path.join(decoy, "theirs"), b"root-only\n")
        vst = os.stat(victims)
        rec = self.record(str(uuid.uuid4()), 999999, 1, VM_UID_BASE, made=[
            self.made(mine, dir_path=victims + "/../victims"),
            # Right file, but the dir climbs out to another directory than
            # the one recorded.
            self.made(theirs, dir_path=victims + "/../decoy",
                      dir_dev=vst.st_dev, dir_ino=vst.st_ino)])
        self.plant(d, rec)
        before = snap(theirs)
        d.start()
        try:
            self.assertEqual(d.vms_dir_entries(), [])
            self.assertFalse(os.path.lexists(mine), "an entry that matches "
                             "through '..' was not removed")
            self.assertEqual(snap(theirs), before, "a '..' dir that resolves "
                             "to another directory was trusted")
            self.assertIn("%s/../decoy/theirs is no longer what capsule "
                          "made; left alone" % victims, d.log_text())
        finally:
            d.stop()

    def test_invalid_records_and_strangers_in_vms(self):
        d = self.new_daemon("records-invalid")
        vms = os.path.join(d.state, "vms")
        mine = os.path.join(d.dir, "mine")
        os.mkdir(mine, 0o700)
        keep = write_file(os.path.join(mine, "keep"), b"keep\n", 0o600)
        os.mkdir(os.path.join(mine, "sub"), 0o700)
        write_file(os.path.join(mine, "sub", "deep"), b"deep\n", 0o600)
        target = write_file(os.path.join(d.dir, "named"), b"named\n", 0o600)
        innocent = self.innocent(mine)
        exact = dict(pid=innocent.pid, start=proc_start(innocent.pid), uid=0)

        # vm_id does not match the dir name: nothing it names is touched,
        # not even a process and a file it describes exactly.
        other_id = str(uuid.uuid4())
        mismatched = self.plant(d, self.record(
            other_id, made=[self.made(target)], **exact),
            vm_id=str(uuid.uuid4()))
        # Garbage, and a record of the wrong shape.
        self.plant(d, None, vm_id=str(uuid.uuid4()), raw=b"{not json")
        self.plant(d, self.record(str(uuid.uuid4()), made=[
            self.made(target)], **exact) | {"pid": str(innocent.pid)})
        # An invalid record's private dir holds a link to my dir: removing
        # the private dir must not follow it.
        linked = self.plant(d, None, vm_id=str(uuid.uuid4()), raw=b"[]")
        os.symlink(mine, os.path.join(linked, "link"))
        os.symlink(mine, os.path.join(linked, "agent.sock"))
        # The old layout: a link named like a vm_id, to a run dir.
        old = os.path.join(vms, str(uuid.uuid4()))
        os.symlink(mine, old)
        # Not capsule's at all.
        stranger_file = write_file(os.path.join(vms, "notes.txt"), b"hi\n")
        uuid_file = write_file(os.path.join(vms, str(uuid.uuid4())), b"f\n")
        upper = os.path.join(vms, str(uuid.uuid4()).upper())
        os.mkdir(upper, 0o700)
        write_file(os.path.join(upper, "vm.json"), json.dumps(self.record(
            os.path.basename(upper).lower(), made=[self.made(target)],
            **exact)).encode())
        strangers = sorted(os.path.basename(p) for p in
                           (stranger_file, uuid_file, upper))
        before = tree(mine)
        before_target = snap(target)
        before_strangers = tree(vms, skip=[n for n in os.listdir(vms)
                                           if n not in strangers])
        d.start()
        try:
            self.assertEqual(d.vms_dir_entries(), strangers)
            self.assertEqual(tree(vms), before_strangers)
            self.assertEqual(tree(mine), before, "a link's target changed")
            self.assertEqual(snap(keep)["data"], b"keep\n")
            self.assertEqual(snap(target), before_target)
            self.assertAlive(innocent, "named by invalid records")
            self.assertFalse(os.path.lexists(mismatched))
            log = d.log_text()
            self.assertIn("its record names vm %s; removing its private dir, "
                          "touching nothing it names" % other_id, log)
            self.assertEqual(log.count("touching nothing it names"), 4, log)
            self.assertIn("removing %s, a link to a run dir left by an older "
                          "capsuled" % os.path.basename(old), log)
            for n in strangers:
                self.assertIn("%s in the state dir's vms/ is not capsule's; "
                              "left alone" % n, log)
        finally:
            d.stop()

    def test_record_naming_another_process_instead_of_its_vm(self):
        d = self.new_daemon("records-swap")
        rd = os.path.join(d.dir, "rd")
        d.start()
        v = d.start_vm(run_dir=rd, memory_mib=256)
        qemu = v["pid"]
        d.proc.kill()
        d.proc.wait(10)
        pd = os.path.join(d.state, "vms", v["vm_id"])
        with open(os.path.join(pd, "vm.json")) as f:
            rec = json.load(f)
        # What a killed capsuled leaves is a record that matches QEMU, with
        # (format 2) what the next capsuled needs to take the VM over.
        exe = os.stat("/proc/%d/exe" % qemu)
        self.assertEqual((rec["format"], rec["backend"], rec["vm_id"],
                          rec["pid"], rec["pid_start"], rec["pid_uid"],
                          rec["owner_uid"], rec["owner_gid"],
                          rec["boot_id"], rec["hv_exe"]["dev"],
                          rec["hv_exe"]["ino"], rec["spec"]["run_dir"]),
                         (2, "qemu", v["vm_id"], qemu, proc_start(qemu),
                          proc_uid(qemu), 0, 0, boot_id(), exe.st_dev,
                          exe.st_ino, rd), rec)
        self.assertEqual(sorted(m["name"] for m in rec["made"]),
                         ["console.log", "proxy.sock", "rd"], rec)
        # The pid now names an innocent process whose command line even
        # mentions the VM's run dir: with QEMU's start time, with a wrong
        # one, or forged to match it exactly (pid, start time, uid). None
        # of them is taken over; only the exact one is acted on, as any
        # record naming a process exactly is, and it is not QEMU.
        for how in ("qemu's start", "wrong start", "exact"):
            with self.subTest(how=how):
                p = self.innocent(rd, v["proxy_socket_path"])
                start = {"qemu's start": rec["pid_start"],
                         "wrong start": proc_start(qemu) + 7,
                         "exact": proc_start(p.pid)}[how]
                forged = dict(rec, pid=p.pid, pid_start=start,
                              pid_uid=proc_uid(p.pid))
                if not os.path.isdir(pd):
                    os.mkdir(pd, 0o700)
                rec_path = os.path.join(pd, "vm.json")
                if os.path.lexists(rec_path):
                    os.unlink(rec_path)
                write_file(rec_path, json.dumps(forged).encode())
                d2 = self.successor(d, "records-swap-2")
                try:
                    log = d2.log_text()
                    self.assertNotIn("taken over (", log)
                    if how == "exact":
                        x = d2.vm(v["vm_id"])
                        self.assertEqual(
                            (x and x["state"], x and x.get("error")),
                            ("crashed", "it could not be taken over: pid %d "
                             "does not run the QEMU binary recorded for it"
                             % p.pid), x)
                        self.assertTrue(ct.wait_for(
                            lambda: not ct.pid_alive(p.pid), 10),
                            "the process a record names exactly was not "
                            "ended")
                    else:
                        self.assertAlive(p, "a record named it with a "
                                         "start time that is not its own")
                        self.assertIn("pid %d now belongs to another "
                                      "process; not signalling it" % p.pid,
                                      log)
                        self.assertEqual(d2.list_vms(), [])
                    # The record no longer names QEMU: it is not killed.
                    self.assertTrue(ct.pid_alive(qemu))
                    self.assertFalse(os.path.lexists(pd))
                    # The files it made are still what the record says.
                    self.assertFalse(os.path.lexists(rd))
                finally:
                    d2.stop()
        os.kill(qemu, signal.SIGKILL)
        self.assertTrue(ct.wait_for(lambda: not ct.pid_alive(qemu), 10))

    def swap_console_log(self, run_dir):
        """Someone replaces the console log in a run dir with a file of
        their own. (The new file is made before the old one goes, so it
        cannot get the old inode number: see the report on inode reuse.)"""
        con = os.path.join(run_dir, "console.log")
        old_ino = os.lstat(con).st_ino
        tmp = write_file(os.path.join(run_dir, ".swap"), b"not capsule's "
                         b"any more\n", 0o644)
        os.rename(tmp, con)
        swapped = snap(con)
        self.assertNotEqual(swapped["ino"], old_ino)
        return con, swapped

    def two_vms_left(self, name):
        """Two VMs, in a run dir capsule makes and in one that exists, left
        running by a capsuled killed with SIGKILL; then someone swaps the
        console log in the existing run dir."""
        d = self.new_daemon(name)
        made = os.path.join(d.dir, "made")
        pre = os.path.join(d.dir, "pre")
        os.mkdir(pre, 0o755)
        keep = write_file(os.path.join(pre, "keep"), b"the caller's\n", 0o644)
        d.start()
        v = d.start_vm(run_dir=made, memory_mib=256, serial_ports=["p"])
        w = d.start_vm(run_dir=pre, memory_mib=256)
        pids = [v["pid"], w["pid"]]
        d.proc.kill()
        d.proc.wait(10)
        self.assertTrue(all(ct.pid_alive(p) for p in pids),
                        "QEMU died with capsuled")
        con, swapped = self.swap_console_log(pre)
        return d, made, pre, keep, v, w, pids, con, swapped

    def test_next_daemon_takes_over_what_a_killed_one_left(self):
        d, made, pre, keep, v, w, pids, con, swapped = \
            self.two_vms_left("adopt")
        d2 = self.successor(d, "adopt-2")
        try:
            # The same VMs, the same processes.
            self.assertEqual(
                sorted((x["vm_id"], x["state"], x["pid"]) for x in
                       d2.list_vms()),
                sorted((x["vm_id"], "running", x["pid"]) for x in (v, w)))
            log = d2.log_text()
            for x in (v, w):
                self.assertIn("vm %s: taken over (pid %d, owner uid 0)" %
                              (x["vm_id"], x["pid"]), log)
            self.assertIn("vm %s: its console log %s is not the file it "
                          "was; console output is dropped" %
                          (w["vm_id"], con), log)
            self.assertNotIn("killing its qemu process", log)
            # Both run commands. What the guests write to their consoles:
            # W's first, then V's, which reaches V's log (so W's had the
            # same time to reach the file swapped in, and did not).
            for x in (w, v):
                mark = "console-%s" % x["vm_id"]
                r = exec_adopted(x["proxy_socket_path"], [
                    "sh", "-c", "echo %s > /dev/console; echo ok" % mark])
                self.assertEqual((r.code, r.stdout), (0, b"ok\n"), r)
            self.assertTrue(ct.wait_for(lambda: ("console-%s" % v["vm_id"]).
                                        encode() in snap(os.path.join(
                                            made, "console.log"))["data"],
                                        10),
                            "the adopted VM's console no longer reaches "
                            "its log: the test cannot tell anything apart")
            self.assertEqual(snap(con), swapped, "capsuled wrote to a "
                             "console log that is not the file it made")
            for x in (v, w):
                r = d2.request({"op": "StopVM", "vm_id": x["vm_id"]},
                               timeout=ct.STOP_TIMEOUT)
                self.assertEqual(r.get("stopped"), [x["vm_id"]], r)
            self.assertFalse(any(ct.pid_alive(p) for p in pids))
            self.assertEqual(ct.qemu_procs(d.dir), [])
            # What capsule made goes; the swapped-in file and the caller's
            # own stay as they are.
            self.assertFalse(os.path.lexists(made), "capsule's run dir left")
            self.assertEqual(sorted(os.listdir(pre)), ["console.log", "keep"])
            self.assertEqual(snap(con), swapped)
            self.assertEqual(snap(keep)["data"], b"the caller's\n")
            self.assertEqual(d2.vms_dir_entries(), [])
            self.assertEqual(os.listdir(os.path.join(d.state, "run")), [])

            # The new daemon starts VMs too. Without a run dir, the
            # caller's files go into <state>/run/<id>, a dir of the
            # owner's (root here), apart from capsuled's private dir.
            x = d2.start_vm(memory_mib=256)
            pd = os.path.join(d.state, "vms", x["vm_id"])
            rd = os.path.join(d.state, "run", x["vm_id"])
            self.assertEqual((x["run_dir"], x["proxy_socket_path"],
                              x["console_log_path"]),
                             (rd, os.path.join(rd, "proxy.sock"),
                              os.path.join(rd, "console.log")), x)
            self.assertEqual(sorted(os.listdir(pd)), PRIVATE_FILES)
            self.assertEqual(sorted(os.listdir(rd)),
                             ["console.log", "proxy.sock"])
            # The state dir (0700 until capsuled started) and run/ are
            # searchable, not listable; the rest is private.
            for path, kind, mode in (
                    (d.state, stat.S_IFDIR, 0o711),
                    (os.path.join(d.state, "run"), stat.S_IFDIR, 0o711),
                    (os.path.join(d.state, "vms"), stat.S_IFDIR, 0o700),
                    (pd, stat.S_IFDIR, 0o700),
                    (os.path.join(pd, "qemu.log"), stat.S_IFREG, 0o600),
                    (os.path.join(pd, "disk.img"), stat.S_IFREG, 0o600),
                    (os.path.join(pd, "vm.json"), stat.S_IFREG, 0o600),
                    (rd, stat.S_IFDIR, 0o700),
                    (os.path.join(rd, "console.log"), stat.S_IFREG, 0o600),
                    (os.path.join(rd, "proxy.sock"), stat.S_IFSOCK, 0o600)):
                st = os.lstat(path)
                self.assertEqual((stat.S_IFMT(st.st_mode),
                                  stat.S_IMODE(st.st_mode), st.st_uid),
                                 (kind, mode, 0), path)
            r = ct.run_exec(x["proxy_socket_path"], ["echo", "fine"])
            self.assertEqual((r.code, r.stdout), (0, b"fine\n"), r)
            r = d2.request({"op": "StopVM", "vm_id": x["vm_id"]},
                           timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [x["vm_id"]], r)
            self.assertFalse(os.path.lexists(pd))
            self.assertFalse(os.path.lexists(rd))
        finally:
            d2.stop()

    def test_next_daemon_reaps_what_it_cannot_take_over(self):
        # A record of an older capsuled (format 1) and one whose process
        # no longer runs the QEMU binary recorded: both processes are
        # ended (they are still the ones recorded), what capsule made
        # goes, and a file swapped in for one of them stays.
        d, made, pre, keep, v, w, pids, con, swapped = \
            self.two_vms_left("reap")
        for x, change in (
                (v, lambda r: {k: val for k, val in r.items() if k not in (
                    "spec", "owner_gid", "owner_groups", "hv_exe",
                    "console")} | {"format": 1}),
                (w, lambda r: dict(r, hv_exe=dict(
                    r["hv_exe"], ino=r["hv_exe"]["ino"] + 1)))):
            path = os.path.join(d.state, "vms", x["vm_id"], "vm.json")
            with open(path) as f:
                rec = json.load(f)
            os.unlink(path)
            write_file(path, json.dumps(change(rec)).encode())
        t0 = time.monotonic()
        d2 = self.successor(d, "reap-2")
        try:
            gone = ct.wait_for(lambda: not any(ct.pid_alive(p) for p in pids),
                               10)
            self.assertTrue(gone, "orphaned QEMU survived: %r" %
                            [p for p in pids if ct.pid_alive(p)])
            print("\n  QEMUs gone %.1f s after the new capsuled started" %
                  (time.monotonic() - t0), end=" ")
            self.assertEqual(ct.qemu_procs(d.dir), [])
            self.assertFalse(os.path.lexists(made), "capsule's run dir left")
            self.assertEqual(sorted(os.listdir(pre)), ["console.log", "keep"])
            self.assertEqual(snap(con), swapped)
            self.assertEqual(snap(keep)["data"], b"the caller's\n")
            self.assertEqual(d2.vms_dir_entries(), [])
            self.assertEqual(os.listdir(os.path.join(d.state, "run")), [])
            log = d2.log_text()
            self.assertNotIn("taken over (", log)
            self.assertIn("vm %s: recorded by an older capsuled, so it "
                          "cannot be taken over" % v["vm_id"], log)
            for x in (v, w):
                self.assertIn("vm %s: killing its qemu process %d" %
                              (x["vm_id"], x["pid"]), log)
            self.assertIn("%s/console.log is no longer what capsule made; "
                          "left alone" % pre, log)
            # The one that could not be taken over is listed as crashed,
            # saying why, until StopVM; the older record is not listed.
            why = ("it could not be taken over: pid %d does not run the "
                   "QEMU binary recorded for it" % w["pid"])
            self.assertEqual([(x["vm_id"], x["state"], x.get("error"))
                              for x in d2.list_vms()],
                             [(w["vm_id"], "crashed", why)])
            r = d2.request({"op": "StopVM", "vm_id": w["vm_id"]},
                           timeout=ct.STOP_TIMEOUT)
            self.assertEqual(r.get("stopped"), [w["vm_id"]], r)
            self.assertEqual(d2.list_vms(), [])
        finally:
            d2.stop()


if __name__ == "__main__":
    ct.main()
