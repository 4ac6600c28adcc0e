"""capsuletest.py — shared plumbing for capsule's integration tests.

The tests use the real thing: the capsuled and capsule binaries from the
build tree, a private control socket in a short temporary directory, and
real QEMU microVMs booted from build/image.

    CAPSULE_BUILD_DIR   the CMake build directory (default: ../../build)

Everything a test starts lives under one temporary directory per daemon;
on teardown the daemon gets SIGINT (stop every VM, then exit), must exit 0,
and no qemu-system process
whose command line mentions that directory may be left. When a test run
fails, every daemon's capsuled.log is printed and its directory kept.
"""
import base64
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(os.environ.get("CAPSULE_BUILD_DIR") or
                        os.path.join(HERE, "..", "..", "build"))
CAPSULED = os.path.join(BUILD, "capsuled")
CAPSULE = os.path.join(BUILD, "capsule")
IMAGE_DIR = os.path.join(BUILD, "image")
IMAGE_FILES = ("vmlinuz", "initramfs.img", "rootfs.ext4")

MAX_LINE = 1024 * 1024          # PROTO_MAX_LINE in proto/proto.h
# CAPSULE_TEST_ARCH=aarch64: the VMs tests start (Daemon.start_vm) are of
# that architecture, not the host's; CMake runs the core suites so.
TEST_ARCH = os.environ.get("CAPSULE_TEST_ARCH", "")
START_TIMEOUT = 90              # StartVM under TCG takes ~3 s; be generous
STOP_TIMEOUT = 40               # shutdown grace 10 s + quit grace 5 s + slack

_daemons = []                   # every Daemon made, for the failure report


def require_build(image=True):
    """Fails (never skips) when the binaries or the guest image are missing."""
    missing = [p for p in (CAPSULED, CAPSULE) if not os.access(p, os.X_OK)]
    if image:
        missing += [os.path.join(IMAGE_DIR, f) for f in IMAGE_FILES
                    if not os.path.isfile(os.path.join(IMAGE_DIR, f))]
    if image and TEST_ARCH:
        missing += [os.path.join(IMAGE_DIR, TEST_ARCH, f) for f in IMAGE_FILES
                    if not os.path.isfile(os.path.join(IMAGE_DIR, TEST_ARCH,
                                                       f))]
    if missing:
        raise AssertionError(
            "capsule integration tests need a built tree and guest image; "
            "missing: %s\n  build with: cmake -S . -B build && cmake --build "
            "build && cmake --build build --target image%s\n  (or set "
            "CAPSULE_BUILD_DIR to the build directory)" % (
                ", ".join(missing),
                " image-" + TEST_ARCH if TEST_ARCH else ""))


DEBIAN_ROOTFS = os.path.join(IMAGE_DIR, "debian.ext4")
DEBIAN_OCI = os.path.join(IMAGE_DIR, "debian.oci.tar")	# the same tree


def require_debian():
    """Fails (never skips) when the Debian root file system is missing."""
    require_build()
    if not os.path.isfile(DEBIAN_ROOTFS) or not os.path.isfile(DEBIAN_OCI):
        raise AssertionError(
            "missing %s\n  build it with: cmake --build build --target "
            "image-debian (as root; needs mmdebstrap)" % (
                DEBIAN_ROOTFS if not os.path.isfile(DEBIAN_ROOTFS) else
                DEBIAN_OCI))


def qemu_procs(needle):
    """[(pid, cmdline)] of live qemu-system processes that belong to needle
    (a directory): QEMU gets no paths on its command line, only fds, so a
    process is ours if one of its open files lies under needle."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                raw = f.read()
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if not raw or state == "Z":
            continue
        argv = raw.rstrip(b"\0").split(b"\0")
        if not os.path.basename(argv[0]).startswith(b"qemu-system"):
            continue
        cmd = b" ".join(argv).decode("utf-8", "replace")
        try:
            fds = os.listdir("/proc/%s/fd" % d)
            targets = []
            for fd in fds:
                try:
                    targets.append(os.readlink("/proc/%s/fd/%s" % (d, fd)))
                except OSError:
                    pass
        except OSError:
            targets = []
        if needle in cmd or any(t.startswith(needle) for t in targets):
            found.append((int(d), cmd))
    return found


TEMPLATE_MEMFD = "/memfd:capsule-template"


def daemon_fds(pid, templates=False):
    """capsuled's open fds, as 'fd -> target' strings. The start templates'
    memory (docs/templates.md: kept on purpose, at most 4) is left out
    unless templates is true."""
    d = "/proc/%d/fd" % pid
    out = []
    for fd in sorted(os.listdir(d), key=int):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if templates or not t.startswith(TEMPLATE_MEMFD):
            out.append("%s -> %s" % (fd, t))
    return out


def daemon_children(pid):
    kids = []
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def procs_of_uid(uid):
    """Live pids whose real uid is uid (a throwaway user's: all ours)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/status" % d) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid and \
                                pid_alive(int(d)):
                            out.append(int(d))
                        break
        except OSError:
            continue
    return out


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (just now)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(pred, timeout, interval=0.1):
    """Polls pred() until it returns something true; returns that or None."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            return None
        time.sleep(interval)


def _rm_entry(dfd, name):
    try:
        os.unlink(name, dir_fd=dfd)
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError) as e:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise e
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                 dir_fd=dfd)
    try:
        # Make it ours to empty through its own fd, never by path.
        os.fchmod(fd, 0o700)
        for e in os.scandir(fd):
            _rm_entry(fd, e.name)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


def rmtree(path):
    """rm -rf that never follows a symlink out of the tree: every step is
    relative to a directory fd, links are removed, not followed, and
    modes change only through the walked directories' own fds. (Trees in
    tests hold what guests sent: links to /, directories without
    permissions.)"""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        _rm_entry(dfd, name)
    finally:
        os.close(dfd)


def b64(data):
    return base64.b64encode(data).decode("ascii")


class Conn:
    """One control (or raw) connection: JSON lines in, JSON lines out."""

    def __init__(self, path, timeout=START_TIMEOUT):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def read_line(self, timeout=None):
        """One line without its newline, or None at EOF / reset."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            if self.eof:
                return None
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_json(self, timeout=None):
        line = self.read_line(timeout)
        if line is None:
            raise AssertionError("%s: connection closed while waiting for a "
                                 "reply" % self.path)
        try:
            return json.loads(line)
        except ValueError:
            raise AssertionError("%s: reply is not JSON: %r" %
                                 (self.path, line[:300]))

    def request(self, obj, timeout=None):
        self.send(obj)
        return self.read_json(timeout)

    def closed_by_peer(self, timeout=5):
        """True if the peer closes without sending another line."""
        line = self.read_line(timeout)
        return line is None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ExecResult:
    def __init__(self):
        self.stdout = b""
        self.stderr = b""
        self.exit = None          # the exit line, as a dict
        self.lines = []           # every server line, decoded
        self.after_exit = []      # raw lines after exit (should be none)

    @property
    def code(self):
        return None if self.exit is None else self.exit.get("exit_code")

    def __repr__(self):
        return ("ExecResult(exit=%r, stdout=%r, stderr=%r)" %
                (self.exit, self.stdout[:400], self.stderr[:400]))


class Exec:
    """A raw exec session on a VM's proxy socket (execmsg.h)."""

    def __init__(self, proxy_path, command=None, dir=None, env=None, tty=None,
                 first=None, timeout=120):
        self.conn = Conn(proxy_path, timeout=timeout)
        if first is None:
            first = {"command": command}
            if dir is not None:
                first["dir"] = dir
            if env is not None:
                first["env"] = env
            if tty is not None:
                first["tty"] = tty
        if isinstance(first, (bytes, str)):
            first = first.encode() if isinstance(first, str) else first
            self.conn.send_raw(first.rstrip(b"\n") + b"\n")
        else:
            self.conn.send(first)
        self.result = ExecResult()

    def stdin(self, data, chunk=48 * 1024):
        for i in range(0, len(data), chunk):
            self.conn.send({"type": "stdin", "data": b64(data[i:i + chunk])})

    def eof(self):
        self.conn.send({"type": "eof"})

    def signal(self, sig):
        self.conn.send({"type": "signal", "signal": sig})

    def resize(self, cols, rows):
        self.conn.send({"type": "resize", "cols": cols, "rows": rows})

    def read_msg(self, timeout=None):
        """The next server line as a dict (None at EOF); output is kept."""
        line = self.conn.read_line(timeout)
        if line is None:
            return None
        try:
            m = json.loads(line)
        except ValueError:
            raise AssertionError("exec: server line is not JSON: %r" %
                                 line[:300])
        r = self.result
        r.lines.append(m)
        t = m.get("type")
        if t in ("stdout", "stderr"):
            data = base64.b64decode(m.get("data", ""), validate=True)
            if t == "stdout":
                r.stdout += data
            else:
                r.stderr += data
        elif t == "exit":
            r.exit = m
        return m

    def read_until(self, pred, timeout=60):
        """Reads until pred(result) holds; fails on exit or EOF first."""
        end = time.monotonic() + timeout
        while not pred(self.result):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("exec: timed out; so far %r" % self.result)
            m = self.read_msg(timeout=left)
            if m is None or m.get("type") == "exit":
                if pred(self.result):
                    break
                raise AssertionError("exec: ended before the expected "
                                     "output; %r" % self.result)

    def wait(self, timeout=120):
        """Reads to the exit line, then to EOF; returns the ExecResult."""
        end = time.monotonic() + timeout
        while self.result.exit is None:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("exec: no exit line within %s s; so far "
                                     "%r" % (timeout, self.result))
            if self.read_msg(timeout=left) is None:
                raise AssertionError("exec: connection closed without an exit "
                                     "line; so far %r" % self.result)
        # The exit line is the last one: then the server closes.
        while True:
            line = self.conn.read_line(timeout=10)
            if line is None:
                break
            self.result.after_exit.append(line)
        self.conn.close()
        return self.result

    def close(self):
        self.conn.close()


def run_exec(proxy_path, command, stdin=None, timeout=120, **kw):
    """Runs one command; stdin (bytes) is written from a thread, then eof."""
    x = Exec(proxy_path, command, timeout=timeout, **kw)
    errors = []

    def writer():
        try:
            x.stdin(stdin)
            x.eof()
        except OSError as e:
            errors.append(e)

    t = None
    if stdin is not None:
        t = threading.Thread(target=writer, daemon=True)
        t.start()
    r = x.wait(timeout)
    if t is not None:
        t.join(10)
        if errors:
            raise AssertionError("exec: writing stdin failed: %r" % errors)
    return r


def recv_all(s):
    """Everything s receives until the peer ends its side."""
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b


def http_get_unix(path, target="/metrics"):
    """GET target over HTTP/1.0 on a Unix socket: (status, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(b"GET %s HTTP/1.0\r\nHost: capsule\r\n\r\n" %
                  target.encode())
        data = recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


class Daemon:
    """A private capsuled on a short temporary directory."""

    def __init__(self, name="capsuled", socket_path=None, state_dir=None,
                 extra_args=(), env=None):
        require_build()
        self.env = env                  # capsuled's environment, or ours
        self.dir = tempfile.mkdtemp(prefix="cap", dir="/tmp")
        self.name = name
        self.sock = socket_path or os.path.join(self.dir, "c.sock")
        self.state = state_dir or os.path.join(self.dir, "state")
        self.log_path = os.path.join(self.dir, "capsuled.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.conn = None
        self.returncode = None
        _daemons.append(self)

    def argv(self):
        conf = []
        if "--config" not in self.extra_args:
            # An empty file of its own: the host's
            # /etc/capsule/capsuled.conf never reaches a test.
            path = os.path.join(self.dir, "capsuled.conf")
            if not os.path.lexists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                 os.O_NOFOLLOW, 0o600))
            conf = ["--config", path]
        return [CAPSULED, "--socket", self.sock,
                "--state-dir", self.state, "--image-dir", IMAGE_DIR,
                "--log-level", "debug"] + conf + self.extra_args

    def start(self, timeout=20):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     env=self.env)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("capsuled exited with %d at start-up:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                c = Conn(self.sock, timeout=5)
                r = c.request({"op": "Ping"})
                c.close()
                if r.get("ok"):
                    return self
            except OSError:
                pass
            if time.monotonic() > end:
                raise AssertionError("capsuled did not answer Ping on %s "
                                     "within %d s:\n%s" % (self.sock, timeout,
                                                           self.log_text()))
            time.sleep(0.05)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %s)" % e

    def connect(self, timeout=START_TIMEOUT):
        return Conn(self.sock, timeout=timeout)

    def request_once(self, obj, timeout=None):
        """One request on a fresh connection, closed afterwards."""
        with self.connect() as c:
            return c.request(obj, timeout)

    def request(self, obj, timeout=None):
        """One request on the daemon's persistent test connection."""
        if self.conn is None:
            self.conn = self.connect()
        return self.conn.request(obj, timeout)

    def start_vm(self, conn=None, **fields):
        req = {"op": "StartVM"}
        if TEST_ARCH and "kernel_path" not in fields:
            req["arch"] = TEST_ARCH
        req.update(fields)
        r = (conn or self).request(req, timeout=START_TIMEOUT)
        if not r.get("ok"):
            raise AssertionError("StartVM failed: %r" % r)
        return r

    def list_vms(self):
        r = self.request({"op": "ListVMs"})
        if not r.get("ok"):
            raise AssertionError("ListVMs failed: %r" % r)
        return r["vms"]

    def vm(self, vm_id):
        for v in self.list_vms():
            if v.get("vm_id") == vm_id:
                return v
        return None

    def cli(self, *args, input=None, timeout=120, env=None):
        e = dict(os.environ)
        e.pop("CAPSULE_SOCKET", None)
        e["CAPSULE_SOCKET"] = self.sock
        if env:
            e.update(env)
        try:
            return subprocess.run([CAPSULE] + list(args), input=input,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout,
                                  env=e)
        except subprocess.TimeoutExpired as t:
            raise AssertionError(
                "`capsule %s` did not finish within %s s (killed); stdout "
                "%r, stderr %r" % (" ".join(args), timeout,
                                   (t.stdout or b"")[-300:],
                                   (t.stderr or b"")[-300:])) from None

    def cli_popen(self, *args, **kw):
        e = dict(os.environ)
        e["CAPSULE_SOCKET"] = self.sock
        return subprocess.Popen([CAPSULE] + list(args), env=e, **kw)

    def qemu(self):
        return qemu_procs(self.dir)

    def vms_dir_entries(self):
        try:
            return sorted(os.listdir(os.path.join(self.state, "vms")))
        except FileNotFoundError:
            return []

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGINT (SIGTERM would leave the VMs running for a successor);
        asserts exit 0 and that no QEMU of ours is left."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        problems = []
        if self.proc is not None and self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append("capsuled did not exit within %d s of "
                                "SIGINT" % timeout)
                self.proc.kill()
                self.returncode = self.proc.wait()
            self.log.close()
            if self.returncode != 0 and not problems:
                problems.append("capsuled exited with %r after SIGINT, not "
                                "0" % self.returncode)
        # QEMU is reaped by capsuled before it exits; give /proc a moment.
        left = [] if wait_for(lambda: not self.qemu(), 5) else self.qemu()
        if left:
            problems.append("QEMU left running after capsuled exited: %r" %
                            left)
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if problems:
            raise AssertionError("; ".join(problems) + "\n--- %s ---\n%s" %
                                 (self.log_path, self.log_text()))

    def kill(self):
        """Last resort for teardown after a failure elsewhere."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, _ in self.qemu():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class DaemonTestCase(unittest.TestCase):
    """One daemon for the whole class; stopped (and checked) at the end."""

    daemon = None

    @classmethod
    def setUpClass(cls):
        require_build()
        cls.daemon = Daemon(cls.__name__).start()
        cls.daemon.request({"op": "Ping"})   # opens the persistent conn
        cls.baseline_fds = daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = daemon_children(cls.daemon.proc.pid)

    def assertNoLeaks(self):
        """capsuled holds no more fds and no more child processes than when
        the baseline was taken (by default: as the class started, with the
        persistent test connection open)."""
        pid = self.daemon.proc.pid
        ok = wait_for(lambda: len(daemon_fds(pid)) <= len(self.baseline_fds),
                      10)
        self.assertTrue(ok, "capsuled leaks fds: had %s, now %s" %
                        (self.baseline_fds, daemon_fds(pid)))
        self.assertEqual(daemon_children(pid), self.baseline_children)

    @classmethod
    def tearDownClass(cls):
        if cls.daemon is not None:
            try:
                cls.daemon.stop()
            finally:
                cls.daemon.kill()

    def assertError(self, reply, code, *substrings):
        self.assertIs(reply.get("ok"), False, reply)
        self.assertEqual(reply.get("code"), code, reply)
        self.assertIsInstance(reply.get("error"), str, reply)
        self.assertTrue(reply["error"], reply)
        for s in substrings:
            self.assertIn(s, reply["error"], reply)


class VMTestCase(DaemonTestCase):
    """DaemonTestCase with one running VM for the whole class (cls.vm_id,
    cls.proxy), stopped and checked at the end. The leak baseline is taken
    with the VM up; setUpVM is the hook for more class set-up."""

    vm_id = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.vm = cls.daemon.start_vm(vcpus=1, memory_mib=512)
            cls.vm_id = cls.vm["vm_id"]
            cls.proxy = cls.vm["proxy_socket_path"]
            if TEST_ARCH:
                arch = cls.daemon.vm(cls.vm_id).get("arch")
                if arch != TEST_ARCH:
                    raise AssertionError("CAPSULE_TEST_ARCH=%s, but the "
                                         "VM is %r" % (TEST_ARCH, arch))
            cls.setUpVM()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.baseline_fds = daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = daemon_children(cls.daemon.proc.pid)

    @classmethod
    def setUpVM(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.vm_id is not None:
                r = cls.daemon.request({"op": "StopVM", "vm_id": cls.vm_id},
                                       timeout=STOP_TIMEOUT)
                assert r.get("ok") and r.get("stopped") == [cls.vm_id], r
        finally:
            super().tearDownClass()

    def run_cmd(self, command, **kw):
        return run_exec(self.proxy, command, **kw)


def main():
    """unittest.main, then the logs of every daemon if anything failed."""
    t0 = time.monotonic()
    prog = unittest.main(verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    for d in _daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()
        if not ok:
            sys.stderr.write("\n===== %s: %s (kept %s) =====\n%s\n" %
                             (d.name, d.log_path, d.dir, d.log_text()))
        else:
            rmtree(d.dir)
    sys.stderr.write("%s: %.1f s\n" % (os.path.basename(sys.argv[0]),
                                       time.monotonic() - t0))
    sys.exit(0 if ok else 1)
