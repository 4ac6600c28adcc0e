#!/usr/bin/env python3
"""Images (issue 10, notes/image-spec.md): ImportImage from an OCI layout,
an OCI archive and a `docker save` archive, PullImage from a registry on
loopback, ListImages / InspectImage / RemoveImage / PruneImages on the
control socket and as `capsule image ...`, and VMs booted from an image
("image" in StartVM, `capsule start/run --image`) whose execs take their
defaults from the image's config.

The images are made here (ocitest.py: tarfile + hashlib, a static busybox
for a userland); `python3 ocitest.py` checks them against skopeo, umoci
and docker-registry themselves. Needs skopeo and umoci (capsuled runs
them), busybox-static and, for the pull tests, docker-registry; a missing
tool fails the tests, saying which to install. Four VM boots, at most two
at a time (256 MiB each); the per-owner tests add two throwaway users.
"""
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
import unittest

import capsuletest as ct
import ocitest as oci
from test_trust import TestUser, _request, chmod_nofollow
from test_users import TestGroup, as_user

IMPORT_TIMEOUT = 600        # a 200 MB layer: fetch, verify, unpack, mkfs
STAGES = ("fetch", "verify", "unpack", "mkfs")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
BIG_MB = 200
VM_MEMORY = 256

SMALL_ENV = ["PATH=/bin", "SMALL=1"]
SMALL_CMD = ["echo", "small"]


def require_tools(*extra):
    """Fails (never skips) when a tool capsuled or the tests need is
    missing."""
    missing = [t for t in (oci.SKOPEO, oci.UMOCI, oci.BUSYBOX) + extra
               if not os.access(t, os.X_OK)]
    if missing:
        raise AssertionError(
            "the image tests need %s\n  install with: apt-get install -y "
            "skopeo umoci busybox-static docker-registry" %
            ", ".join(missing))


def small_image(ref_name="capsule-test/small:v1", label=None, extra=()):
    """One gzip layer: /bin/busybox, /bin/sh and /bin/echo; Env and Cmd
    only (its config has no working_dir, user or entrypoint)."""
    return oci.Image([oci.Layer([oci.Dir("/bin")] + oci.busybox_entries(
        applets=["sh", "echo"]) + list(extra))], env=SMALL_ENV, cmd=SMALL_CMD,
        ref_name=ref_name, label=label)


def busybox_size():
    return os.stat(oci.BUSYBOX).st_size


# ---- what capsuled keeps in its state dir ----

def images_dir(d):
    return os.path.join(d.state, "images")


def image_dirs(d):
    """The image directories under <state>/images (everything but tmp that
    is a directory), sorted."""
    try:
        names = os.listdir(images_dir(d))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "tmp" and stat.S_ISDIR(
        os.lstat(os.path.join(images_dir(d), n)).st_mode))


def listdir_or_empty(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def tmp_left(d):
    return listdir_or_empty(os.path.join(images_dir(d), "tmp"))


def fetch_left(d):
    return listdir_or_empty(os.path.join(d.state, "fetch"))


def allocated_sizes(d):
    """{allocated bytes: path} of every regular file in the image dirs."""
    out = {}
    for n in image_dirs(d):
        for dirpath, dirs, files in os.walk(os.path.join(images_dir(d), n)):
            for f in files:
                p = os.path.join(dirpath, f)
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode):
                    out[st.st_blocks * 512] = p
    return out


def names_containing(top, token, skip=()):
    """Paths under top (links not followed) whose name contains token,
    leaving out the trees in skip."""
    found = []
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(dirpath, x) not in skip]
        for n in dirs + files:
            if token in n:
                found.append(os.path.join(dirpath, n))
    return found


def procs_using(paths):
    """[(pid, cmdline)] of live processes other than this one whose
    command line, working directory or open files mention one of paths."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        pid = int(p)
        if not ct.pid_alive(pid):
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8",
                                                           "replace")
        except OSError:
            continue
        seen = [cmd]
        for link in ["/proc/%d/cwd" % pid] + [
                "/proc/%d/fd/%s" % (pid, fd) for fd in
                listdir_or_empty("/proc/%d/fd" % pid)]:
            try:
                seen.append(os.readlink(link))
            except OSError:
                pass
        if any(x in s for x in paths for s in seen):
            found.append((pid, cmd.strip()))
    return found


def skopeo_tmp_names():
    """What skopeo's archive readers leave in /var/tmp when killed."""
    return set(n for n in listdir_or_empty("/var/tmp")
               if n.startswith(("oci", "docker-tar")))


# ---- the base case ----

class ImageCase(ct.DaemonTestCase):
    """A daemon for the class, a temporary directory for its images
    (cls.tmp, removed at the end), helpers for the image ops."""

    tmp = None

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        require_tools()
        cls.tmp = tempfile.mkdtemp(prefix="capimg", dir="/tmp")
        try:
            cls.startDaemon()
            cls.setUpImages()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.baseline_fds = ct.daemon_fds(cls.daemon.proc.pid)
        cls.baseline_children = ct.daemon_children(cls.daemon.proc.pid)

    @classmethod
    def startDaemon(cls):
        cls.daemon = ct.Daemon(cls.__name__).start()
        cls.daemon.request({"op": "Ping"})  # opens the persistent conn

    @classmethod
    def setUpImages(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.daemon is not None:
                super().tearDownClass()
        finally:
            if cls.tmp is not None:
                ct.rmtree(cls.tmp)

    # -- requests --

    def ask(self, req, conn=None, timeout=IMPORT_TIMEOUT):
        """(progress lines, final reply) of one request."""
        c = conn or self.daemon
        if c is self.daemon:
            if c.conn is None:
                c.conn = c.connect()
            c = c.conn
        c.send(req)
        lines = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply to %r within %d s; progress "
                                     "so far %r" % (req, timeout, lines))
            m = c.read_json(timeout=left)
            if "progress" in m and "ok" not in m:
                lines.append(m)
                continue
            return lines, m

    def import_req(self, path, name=None, progress=None, ident=None):
        req = {"op": "ImportImage", "path": path}
        if name is not None:
            req["name"] = name
        if progress is not None:
            req["progress"] = progress
        if ident is not None:
            req["id"] = ident
        return req

    def import_image(self, path, name=None, conn=None, **kw):
        """Imports path; asserts it worked; returns the IMAGE."""
        lines, r = self.ask(self.import_req(path, name, **kw), conn)
        self.assertIs(r.get("ok"), True, r)
        self.assertIsInstance(r.get("image"), dict, r)
        return r["image"]

    def op(self, op, **fields):
        req = {"op": op}
        req.update(fields)
        return self.ask(req, timeout=ct.START_TIMEOUT)[1]

    def listed(self, conn=None):
        """[(name, digest, owner_uid)] of ListImages, sorted."""
        _, r = self.ask({"op": "ListImages"}, conn)
        self.assertIs(r.get("ok"), True, r)
        return sorted((i["name"], i["digest"], i["owner_uid"])
                      for i in r["images"])

    def inspect(self, name):
        r = self.op("InspectImage", image=name)
        self.assertIs(r.get("ok"), True, r)
        return r["image"]

    def forget(self, *names):
        """Removes names (those still there) and prunes: for cleanups."""
        for n in names:
            r = self.op("RemoveImage", image=n)
            if not r.get("ok") and r.get("code") != "not_found":
                raise AssertionError("RemoveImage %s: %r" % (n, r))
        r = self.op("PruneImages")
        if not r.get("ok"):
            raise AssertionError("PruneImages: %r" % r)

    # -- checks --

    def assertImage(self, img, name, digest, owner_uid=0, config=None,
                    since=None, min_size=None):
        """img is an IMAGE of the spec: those values, a size, a time."""
        for key in ("name", "digest", "size", "created_at", "owner_uid"):
            self.assertIn(key, img, img)
        self.assertRegex(img["digest"], DIGEST_RE)
        self.assertEqual((img["name"], img["digest"], img["owner_uid"]),
                         (name, digest, owner_uid), img)
        self.assertIsInstance(img["size"], int, img)
        self.assertGreater(img["size"], 0, img)
        if min_size is not None:
            self.assertGreaterEqual(img["size"], min_size, img)
        self.assertIsInstance(img["created_at"], (int, float), img)
        if since is not None:
            self.assertGreaterEqual(img["created_at"], int(since) - 2, img)
            self.assertLessEqual(img["created_at"], time.time() + 2, img)
        if config is not None and "config" in img:
            self.assertEqual(img["config"], config, img)

    def assertSizeIsOnDisk(self, img):
        """"size" is the allocated bytes of a file in an image dir (the
        image's root file system)."""
        sizes = allocated_sizes(self.daemon)
        self.assertIn(img["size"], sizes,
                      "no file in %s has %d bytes allocated: %r" % (
                          images_dir(self.daemon), img["size"], sizes))

    def assertClean(self, d=None):
        """No import is half-made: <state>/images/tmp and <state>/fetch
        empty (or absent)."""
        d = d or self.daemon
        # The daemon removes a job's dirs beside its loop (rm jobs).
        ct.wait_for(lambda: not tmp_left(d) and not fetch_left(d), 30)
        self.assertEqual(tmp_left(d), [], "left in %s/tmp" % images_dir(d))
        self.assertEqual(fetch_left(d), [], "left in %s/fetch" % d.state)

    def assertFailedCleanly(self, r, dirs_before, listed_before, *substr):
        """r is an error reply naming substr; nothing was kept."""
        self.assertIs(r.get("ok"), False, r)
        self.assertIsInstance(r.get("error"), str, r)
        self.assertTrue(r["error"].strip(), r)
        self.assertIsInstance(r.get("code"), str, r)
        for s in substr:
            self.assertIn(s, r["error"], r)
        self.assertNotIn("image", r, r)
        self.assertEqual(image_dirs(self.daemon), dirs_before)
        self.assertEqual(self.listed(), listed_before)
        self.assertClean()


# ---- import, list, inspect, remove, prune; no VMs ----

class ImportTest(ImageCase):

    @classmethod
    def setUpImages(cls):
        cls.small = small_image().write_layout(os.path.join(cls.tmp,
                                                            "small"))
        cls.small_oci = oci.oci_archive(cls.small, os.path.join(
            cls.tmp, "small-oci.tar"))
        cls.small_docker = oci.docker_archive(cls.small, os.path.join(
            cls.tmp, "small-docker.tar"), "capsule-test/small:v1")
        cls.small_config = {"env": SMALL_ENV, "cmd": SMALL_CMD}

    def fresh(self, label, **kw):
        """A small image of its own (its own digest) as a layout."""
        return small_image(label=label, **kw).write_layout(
            os.path.join(self.tmp, "%s-%s" % (label, secrets.token_hex(3))))

    # -- import: three formats, one image --

    def test_three_formats_are_one_image(self):
        b = self.small
        before = image_dirs(self.daemon)
        t0 = time.time()
        names = []

        def cleanup():
            self.forget(*names)
        self.addCleanup(cleanup)
        for path, want in ((b.dir, "capsule-test/small:v1"),
                           (self.small_oci, "capsule-test/small:v1"),
                           (self.small_docker, "small-docker")):
            with self.subTest(path=os.path.basename(path)):
                # No name: the index's ref.name annotation, else (docker
                # archive) the file name without ".tar".
                img = self.import_image(path)
                names.append(img["name"])
                self.assertImage(img, want, b.config_digest,
                                 config=self.small_config, since=t0,
                                 min_size=busybox_size())
                self.assertSizeIsOnDisk(img)
                self.assertClean()
        new = sorted(set(image_dirs(self.daemon)) - set(before))
        self.assertEqual(len(new), 1, "one image stored once: %r" %
                         image_dirs(self.daemon))
        self.assertEqual(sorted(image_dirs(self.daemon)),
                         sorted(before + new))
        mine = [x for x in self.listed() if x[1] == b.config_digest]
        self.assertEqual(mine, [("capsule-test/small:v1", b.config_digest, 0),
                                ("small-docker", b.config_digest, 0)])
        # Inspect by name and by digest: the config, keys absent that the
        # image does not set.
        for key in ("capsule-test/small:v1", "small-docker",
                    b.config_digest):
            with self.subTest(inspect=key):
                img = self.inspect(key)
                self.assertEqual(img.get("digest"), b.config_digest, img)
                self.assertEqual(img.get("config"), self.small_config, img)
                if key != b.config_digest:
                    self.assertImage(img, key, b.config_digest)
        self.assertNoLeaks()

    def test_default_names(self):
        b = small_image(ref_name=None, label="names").write_layout(
            os.path.join(self.tmp, "plain-layout"))
        arch = oci.oci_archive(b, os.path.join(self.tmp, "plain-archive.tar"))
        long_name = "A.b_c:d/e@f-" + "x" * 116
        self.assertEqual(len(long_name), 128)
        cases = ((b.dir, None, "plain-layout"),
                 (b.dir + "/", None, "plain-layout"),
                 (arch, None, "plain-archive"),
                 (arch, "given/name:1", "given/name:1"),
                 (b.dir, long_name, long_name),
                 (b.dir, "9", "9"))
        self.addCleanup(self.forget, *set(c[2] for c in cases))
        for path, name, want in cases:
            with self.subTest(path=path, name=name):
                img = self.import_image(path, name)
                self.assertImage(img, want, b.config_digest)
        self.assertEqual(sorted(n for n, d, _ in self.listed()
                                if d == b.config_digest),
                         sorted(set(c[2] for c in cases)))
        self.assertClean()

    def test_bad_names(self):
        dirs, listed = image_dirs(self.daemon), self.listed()
        for name in ("", "-x", ".x", "..", "a b", "x" * 129, "caf\u00e9",
                     "a\nb", "a\\b", "a*b", "a;b", "a$b", "a,b", "\u2028",
                     5, ["x"]):
            with self.subTest(name=name):
                _, r = self.ask(self.import_req(self.small.dir, name))
                if r.get("ok"):
                    # Taken: fail, but leave nothing for the next name.
                    self.forget(name)
                self.assertError(r, "invalid_argument")
                self.assertIn("name", r["error"], r)
                self.assertFailedCleanly(r, dirs, listed)

    # -- bad input --

    def test_bad_paths(self):
        dirs, listed = image_dirs(self.daemon), self.listed()
        missing = os.path.join(self.tmp, "missing")
        empty = os.path.join(self.tmp, "empty-dir")
        os.mkdir(empty)
        text = os.path.join(self.tmp, "plain.txt")
        with open(text, "w") as f:
            f.write("not an image\n")
        junk_tar = os.path.join(self.tmp, "junk.tar")
        with tarfile.open(junk_tar, "w") as t:
            t.add(text, arcname="hello.txt")
        cut = os.path.join(self.tmp, "cut-oci.tar")
        with open(self.small_oci, "rb") as f, open(cut, "wb") as g:
            g.write(f.read(os.path.getsize(self.small_oci) // 2))
        for what, path in (("missing path", missing),
                           ("empty directory", empty),
                           ("text file", text),
                           ("tar that is no image", junk_tar),
                           ("truncated OCI archive", cut)):
            with self.subTest(what):
                _, r = self.ask(self.import_req(path))
                self.assertFailedCleanly(r, dirs, listed, path)
        for what, req in (("no path", {"op": "ImportImage"}),
                          ("path not a string", {"op": "ImportImage",
                                                 "path": 7})):
            with self.subTest(what):
                _, r = self.ask(req)
                self.assertError(r, "invalid_argument", "path")
                self.assertFailedCleanly(r, dirs, listed)
        self.assertNoLeaks()

    def test_damaged_layers(self):
        """A corrupt or truncated layer: the error names its digest (in
        a docker archive a layer is known by its diff_id)."""
        dirs, listed = image_dirs(self.daemon), self.listed()
        img = oci.fs_image(label="damaged")     # gzip, tar, gzip layers
        for kind, damage in (("corrupt", oci.corrupt_blob),
                             ("truncate", oci.truncate_blob)):
            for li in (0, 1):
                d = os.path.join(self.tmp, "%s-%d" % (kind, li))
                b = img.write_layout(d)
                layer = b.layers[li]
                damage(b, layer.digest)
                arch = oci.oci_archive(b, d + "-oci.tar")
                good = img.write_layout(d + "-good")
                dock = oci.docker_archive(good, d + "-docker.tar",
                                          damage={li: kind})
                for fmt, path, digest in (("layout", d, layer.digest),
                                          ("oci archive", arch,
                                           layer.digest),
                                          ("docker archive", dock,
                                           layer.diff_id)):
                    with self.subTest(kind=kind, layer=layer.media_type,
                                      format=fmt):
                        _, r = self.ask(self.import_req(path,
                                                        "damaged-%s" % kind))
                        self.assertFailedCleanly(r, dirs, listed, digest)
        # The config blob, too.
        d = os.path.join(self.tmp, "corrupt-config")
        b = img.write_layout(d)
        oci.corrupt_blob(b, b.config_digest, count=4)
        _, r = self.ask(self.import_req(d, "damaged-config"))
        self.assertFailedCleanly(r, dirs, listed)
        self.assertNoLeaks()

    def test_hostile_layers(self):
        """Names that climb out of the root, writes through a symlink to
        a directory outside, a hard link to a host file: the import fails
        with an error or succeeds, and nothing outside is touched."""
        outside = os.path.join(self.tmp, "outside")
        os.mkdir(outside)
        secret = os.path.join(self.tmp, "secret")
        with open(secret, "wb") as f:
            f.write(b"host file\n")
        token = "capsule-escape-" + secrets.token_hex(4)
        cases = {
            "dot-dot names": [oci.Layer(oci.escape_entries(outside, token))],
            "absolute symlink, write in a later layer":
                oci.symlink_escape_layers(outside, token + "-l"),
            "absolute symlink, write in the same layer":
                oci.symlink_escape_layers(outside, token + "-s",
                                          same_layer=True),
            "plain tar, later layer": oci.symlink_escape_layers(
                outside, token + "-p", compress=None),
            "hard link to a host file":
                [oci.Layer(oci.hardlink_escape_entries(secret))],
        }
        roots = ("/", "/tmp", "/var/tmp", os.path.dirname(self.daemon.dir))
        names = []
        self.addCleanup(lambda: self.forget(*names))
        for i, (what, layers) in enumerate(sorted(cases.items())):
            with self.subTest(what):
                dirs, listed = image_dirs(self.daemon), self.listed()
                d = os.path.join(self.tmp, "hostile-%d" % i)
                oci.Image(layers, label=what).write_layout(d)
                _, r = self.ask(self.import_req(d, "hostile-%d" % i))
                if r.get("ok"):
                    names.append("hostile-%d" % i)
                    self.assertClean()
                else:
                    self.assertFailedCleanly(r, dirs, listed)
                written = sorted(os.listdir(outside))
                for n in written:       # the next case starts clean
                    ct.rmtree(os.path.join(outside, n))
                self.assertEqual(written, [], "written outside: %r" % r)
                st = os.lstat(secret)
                self.assertEqual(st.st_nlink, 1, "the host file was "
                                 "linked into the image: %r" % r)
                with open(secret, "rb") as f:
                    self.assertEqual(f.read(), b"host file\n")
                skip = [os.path.join(images_dir(self.daemon), n)
                        for n in image_dirs(self.daemon)]
                left = names_containing(self.tmp, token) + names_containing(
                    self.daemon.dir, token, skip)
                for root in roots:
                    for n in listdir_or_empty(root):
                        if token in n:
                            left.append(os.path.join(root, n))
                            ct.rmtree(os.path.join(root, n))  # ours
                self.assertEqual(left, [], "extraction wrote outside the "
                                 "image: %r" % r)
        self.assertNoLeaks()

    # -- progress --

    def test_progress(self):
        b = self.fresh("progress")
        self.addCleanup(self.forget, "progress-a", "progress-b",
                        "progress-c")
        lines, r = self.ask(self.import_req(b.dir, "progress-a", True,
                                            ident="p-1"))
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r.get("id"), "p-1", r)
        self.assertTrue(lines, "no progress lines with \"progress\": true")
        order = []
        for m in lines:
            self.assertEqual(sorted(m), ["id", "progress"], m)
            self.assertEqual(m["id"], "p-1", m)
            p = m["progress"]
            self.assertEqual(sorted(p), ["message", "stage"], m)
            self.assertIn(p["stage"], STAGES, m)
            self.assertIsInstance(p["message"], str, m)
            order.append(STAGES.index(p["stage"]))
        self.assertEqual(order, sorted(order), "stages out of order: %r" %
                         lines)
        # A fresh image goes through every stage.
        self.assertEqual(sorted(set(order)), [0, 1, 2, 3], lines)
        fetch = [m["progress"]["message"] for m in lines
                 if m["progress"]["stage"] == "fetch"]
        self.assertTrue(any("Copying blob sha256:" in x for x in fetch),
                        fetch)
        # Without "progress" (or with false): the reply is the first line.
        for name, progress in (("progress-b", None), ("progress-c", False)):
            lines, r = self.ask(self.import_req(b.dir, name, progress,
                                                ident=name))
            self.assertEqual(lines, [])
            self.assertEqual((r.get("ok"), r.get("id")), (True, name), r)
            self.assertEqual(r["image"]["digest"], b.config_digest)

    # -- concurrency --

    def test_concurrent_imports(self):
        b = oci.Image([oci.Layer([oci.Dir("/data"), oci.RandomFile(
            "/data/rand", 48 << 20)], compress=None)], env=["X=1"],
            label="concurrent").write_layout(os.path.join(self.tmp, "conc"))
        dirs = image_dirs(self.daemon)
        self.addCleanup(self.forget, "conc-a", "conc-b")
        with self.daemon.connect() as c1, self.daemon.connect() as c2:
            c1.send(self.import_req(b.dir, "conc-a", ident=1))
            c2.send(self.import_req(b.dir, "conc-b", ident=2))
            r1 = c1.read_json(timeout=IMPORT_TIMEOUT)
            r2 = c2.read_json(timeout=IMPORT_TIMEOUT)
        for r, name, ident in ((r1, "conc-a", 1), (r2, "conc-b", 2)):
            self.assertEqual((r.get("ok"), r.get("id")), (True, ident), r)
            self.assertImage(r["image"], name, b.config_digest,
                             min_size=48 << 20)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1,
                         image_dirs(self.daemon))
        self.assertClean()
        # Again, now that it is stored: every request is answered (three
        # of them: the second waits for the first, which takes the stored
        # image without unpacking), and the daemon takes imports after.
        self.addCleanup(self.forget, "conc-c", "conc-d", "conc-e")
        conns = [self.daemon.connect() for _ in range(3)]
        try:
            for i, c in enumerate(conns):
                c.send(self.import_req(b.dir, "conc-" + "cde"[i], ident=i))
            for i, c in enumerate(conns):
                r = c.read_json(timeout=IMPORT_TIMEOUT)
                self.assertEqual((r.get("ok"), r.get("id")), (True, i), r)
                self.assertEqual(r["image"]["digest"], b.config_digest)
        finally:
            for c in conns:
                c.close()
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1)
        self.assertClean()
        self.assertNoLeaks()

    def test_default_name_never_moves_a_name(self):
        """An image's own ref.name (or its file name) is only a default:
        it does not take over a name that means another image."""
        mine = self.fresh("mine")
        self.addCleanup(self.forget, "app:1", "other-app")
        self.assertEqual(self.import_image(mine.dir, "app:1")["digest"],
                         mine.config_digest)
        other = small_image(label="other", ref_name="app:1", extra=[
            oci.File("/other", b"another image")]).write_layout(
            os.path.join(self.tmp, "other-app"))
        r = self.ask(self.import_req(other.dir))[1]
        self.assertError(r, "conflict", "app:1", "--name")
        self.assertEqual(self.inspect("app:1")["digest"], mine.config_digest)
        # Named in the request, it may.
        self.assertEqual(self.import_image(other.dir, "other-app")["digest"],
                         other.config_digest)
        self.assertClean()

    # -- remove and prune --

    def test_remove_and_prune(self):
        b = self.fresh("rp")
        dirs = image_dirs(self.daemon)
        self.addCleanup(self.forget, "rp-a", "rp-b")
        self.import_image(b.dir, "rp-a")
        self.import_image(b.dir, "rp-b")
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1)
        r = self.op("RemoveImage", image="rp-a")
        self.assertEqual(r, {"ok": True, "removed": ["rp-a"]})
        self.assertEqual([x for x in self.listed()
                          if x[1] == b.config_digest],
                         [("rp-b", b.config_digest, 0)])
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1,
                         "data removed while rp-b refers to it")
        r = self.op("PruneImages")
        self.assertIs(r.get("ok"), True, r)
        self.assertNotIn(b.config_digest, r["removed"], r)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1)
        self.assertEqual(self.inspect("rp-b")["digest"], b.config_digest)
        # By digest: every name of the caller's that refers to it.
        r = self.op("RemoveImage", image=b.config_digest)
        self.assertEqual(r, {"ok": True, "removed": ["rp-b"]})
        for key in ("rp-a", "rp-b"):
            self.assertError(self.op("InspectImage", image=key), "not_found")
            self.assertError(self.op("RemoveImage", image=key), "not_found")
        still = len(image_dirs(self.daemon)) == len(dirs) + 1
        r = self.op("PruneImages")
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r["removed"], [b.config_digest] if still else [],
                         r)
        self.assertEqual(image_dirs(self.daemon), dirs)
        r = self.op("PruneImages")
        self.assertEqual(r, {"ok": True, "removed": []})
        self.assertError(self.op("RemoveImage", image="sha256:" + "0" * 64),
                         "not_found")
        self.assertError(self.op("InspectImage", image="no-such-image"),
                         "not_found", "no-such-image")
        self.assertError(self.op("RemoveImage", image="no-such-image"),
                         "not_found", "no-such-image")
        self.assertClean()

    # -- StartVM's "image" (no VM boots here) --

    def test_start_vm_image_errors(self):
        self.addCleanup(self.forget, "start-err")
        self.import_image(self.small.dir, "start-err")
        r = self.op("StartVM", image="start-err",
                    rootfs_path=os.path.join(ct.IMAGE_DIR, "rootfs.ext4"),
                    memory_mib=VM_MEMORY)
        self.assertError(r, "invalid_argument", "image", "rootfs_path")
        r = self.op("StartVM", image="no-such-image", memory_mib=VM_MEMORY)
        self.assertError(r, "not_found", "no-such-image")
        r = self.op("StartVM", image="sha256:" + "1" * 64,
                    memory_mib=VM_MEMORY)
        self.assertError(r, "not_found")
        self.assertEqual(self.daemon.list_vms(), [])
        self.assertEqual(self.daemon.vms_dir_entries(), [])
        self.assertEqual(self.daemon.qemu(), [])

    # -- the CLI --

    def test_cli(self):
        d = self.daemon
        b = self.fresh("cli")
        dirs = image_dirs(d)
        self.addCleanup(self.forget, "cli-a", "cli-b")
        p = d.cli("image", "import", b.dir, "--name", "cli-a")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.decode().splitlines()[-1],
                         "cli-a %s" % b.config_digest, p)
        p = d.cli("image", "import", self.small_docker, "--name", "cli-b",
                  "--json")
        self.assertEqual(p.returncode, 0, p)
        out = [json.loads(l) for l in p.stdout.decode().splitlines()]
        self.assertTrue(all(isinstance(x, dict) for x in out), out)
        # Alone, a docker archive is known by the config skopeo converts
        # it to (its own is docker's, not OCI's): a digest of its own,
        # the same each time, with the same runtime config.
        docker_digest = out[-1].get("digest", "")
        self.assertImage(out[-1], "cli-b", docker_digest,
                         config=self.small_config)
        for x in out[:-1]:
            self.assertIn("progress", json.dumps(x), x)

        # ls: NAME  DIGEST(12 hex)  SIZE  CREATED
        p = d.cli("image", "ls")
        self.assertEqual(p.returncode, 0, p)
        rows = [l.split() for l in p.stdout.decode().splitlines()]
        for name, digest in (("cli-a", b.config_digest),
                             ("cli-b", docker_digest)):
            self.assertIn([name, digest[7:19]], [r[:2] for r in rows],
                          p.stdout.decode())
        p = d.cli("image", "ls", "--json")
        self.assertEqual(p.returncode, 0, p)
        j = json.loads(p.stdout)
        images = j["images"] if isinstance(j, dict) else j
        self.assertEqual(sorted((i["name"], i["digest"]) for i in images
                                if i["name"].startswith("cli-")),
                         [("cli-a", b.config_digest),
                          ("cli-b", docker_digest)])
        # inspect prints the IMAGE, config and all.
        p = d.cli("image", "inspect", "cli-a")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(json.loads(p.stdout), self.inspect("cli-a"))
        self.assertEqual(json.loads(p.stdout)["config"], self.small_config)
        # Errors: exit 1, stderr names what was wrong.
        for args, what in ((("image", "inspect", "cli-nothere"),
                            "cli-nothere"),
                           (("image", "rm", "cli-nothere"), "cli-nothere"),
                           (("image", "import", os.path.join(
                               self.tmp, "nothere")),
                            os.path.join(self.tmp, "nothere")),
                           (("image", "import", b.dir, "--name", "bad*name"),
                            "bad*name")):
            with self.subTest(args=args):
                p = d.cli(*args)
                self.assertEqual(p.returncode, 1, p)
                self.assertIn(what, p.stderr.decode(), p)
        # rm several, prune.
        p = d.cli("image", "rm", "cli-a", "cli-b")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual([x for x in self.listed()
                          if x[0].startswith("cli-")], [])
        p = d.cli("image", "prune")
        self.assertEqual(p.returncode, 0, p)
        self.assertTrue(set(image_dirs(d)) <= set(dirs), image_dirs(d))
        self.assertClean()


# ---- a VM from an image ----

class ImageVMTest(ImageCase):
    """fs_image imported once; one VM booted from it for the class checks
    its file system and every exec default. Two more boots: `capsule run
    --image` and the image without a shell."""

    vm = None

    @classmethod
    def setUpImages(cls):
        cls.img = oci.fs_image(ref_name="capsule-test/fs:v1")
        cls.built = cls.img.write_layout(os.path.join(cls.tmp, "fs"))
        r = cls.daemon.request({"op": "ImportImage", "path": cls.built.dir},
                               timeout=IMPORT_TIMEOUT)
        if not r.get("ok"):
            raise AssertionError("ImportImage of fs_image: %r" % r)
        cls.name = r["image"]["name"]
        cls.vm = cls.daemon.start_vm(image=cls.name, memory_mib=VM_MEMORY)
        cls.proxy = cls.vm["proxy_socket_path"]

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.vm is not None:
                r = cls.daemon.request({"op": "StopVM", "vm_id":
                                        cls.vm["vm_id"]},
                                       timeout=ct.STOP_TIMEOUT)
                assert r.get("ok") and r.get("stopped") == [
                    cls.vm["vm_id"]], r
        finally:
            super().tearDownClass()

    def run_in(self, command=(), proxy=None, absent=False, **fields):
        """Runs command (no "command" field at all with absent) with the
        other request fields given; returns the ExecResult."""
        first = dict(fields)
        if not absent:
            first["command"] = list(command)
        return ct.run_exec(proxy or self.proxy, None, first=first,
                           timeout=120)

    def assertRan(self, r, stdout, code=0):
        self.assertEqual((r.code, r.stdout), (code, stdout), r)

    # -- the file system --

    def test_file_system(self):
        r = self.run_in(["sh", "-c", oci.STAT_SCRIPT, "sh"] +
                        oci.fs_paths(), user="root")
        self.assertEqual(r.code, 0, r)
        seen = oci.parse_stat_lines(r.stdout.decode())
        self.assertEqual(oci.fs_differences(seen), [], r.stdout.decode())
        r = self.run_in(["ls", "-A", "/data/opq"], user="root")
        self.assertRan(r, b"new\n")
        r = self.run_in(["sha256sum", "/bin/busybox"], user="root")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.stdout.split()[0].decode(),
                         oci.sha256_file(oci.BUSYBOX)[7:])
        r = self.run_in(["cat", "/data/rel", "/data/abs"], user="root")
        self.assertRan(r, oci.FS_EXPECT["/data/hl1"][4] +
                       oci.FS_EXPECT["/etc/passwd"][4])

    # -- exec defaults from the config --

    def test_user(self):
        r = self.run_in(["sh", "-c", "id -u; id -g; id -un; echo $HOME"])
        self.assertRan(r, b"1000\n1000\napp\n/home/app\n")
        # Its rights are uid 1000's.
        self.assertRan(self.run_in(["cat", "/data/owned"]), b"uid 1000\n")
        r = self.run_in(["cat", "/data/secret"])
        self.assertNotEqual(r.code, 0, r)
        self.assertEqual(r.stdout, b"", r)
        # The request's "user" wins.
        for user in ("root", "0"):
            r = self.run_in(["sh", "-c", "id -u; cat /data/secret"],
                            user=user)
            self.assertRan(r, b"0\nroot only\n")

    def test_env(self):
        r = self.run_in(["env"])
        self.assertEqual(r.code, 0, r)
        env = r.stdout.decode().splitlines()
        for e in oci.FS_ENV:
            self.assertIn(e, env)
        # The request overrides per key; the image's other keys stay.
        r = self.run_in(["env"], env=["K=request", "NEW=1"])
        env = r.stdout.decode().splitlines()
        self.assertIn("K=request", env)
        self.assertNotIn("K=image", env)
        self.assertIn("NEW=1", env)
        self.assertIn("GREETING=hello from the image", env)
        self.assertIn(oci.FS_ENV[0], env)

    def test_working_dir(self):
        self.assertRan(self.run_in(["pwd"]), b"/data\n")
        self.assertRan(self.run_in(["pwd"], dir="/"), b"/\n")
        self.assertRan(self.run_in(["pwd"], dir="/home/app"),
                       b"/home/app\n")

    def test_entrypoint_and_cmd(self):
        # No "command", or an empty one: Entrypoint + Cmd.
        self.assertRan(self.run_in(absent=True), oci.FS_DEFAULT_OUTPUT)
        self.assertRan(self.run_in([]), oci.FS_DEFAULT_OUTPUT)
        # ... with the request's env, user and dir.
        r = self.run_in(absent=True, env=["GREETING=from the request"],
                        user="root", dir="/")
        self.assertRan(r, b"entry:from the request:root:/\n")
        # A command runs as it is, without the Entrypoint.
        self.assertRan(self.run_in(["echo", "as", "is"]), b"as is\n")

    def test_listed_with_its_digest(self):
        v = self.daemon.vm(self.vm["vm_id"])
        self.assertEqual(v.get("image"), self.built.config_digest, v)
        self.assertEqual(v.get("state"), "running", v)

    def test_image_in_use_stays(self):
        dirs = image_dirs(self.daemon)
        for key in (self.name, self.built.config_digest):
            with self.subTest(image=key):
                r = self.op("RemoveImage", image=key)
                self.assertError(r, "conflict")
        r = self.op("PruneImages")
        self.assertIs(r.get("ok"), True, r)
        self.assertNotIn(self.built.config_digest, r["removed"])
        self.assertEqual(self.inspect(self.name)["digest"],
                         self.built.config_digest)
        self.assertEqual(image_dirs(self.daemon), dirs)
        p = self.daemon.cli("image", "rm", self.name)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(self.name, p.stderr.decode(), p)
        self.assertRan(self.run_in(["echo", "still", "up"]), b"still up\n")

    # -- the CLI boots from an image --

    def test_cli_run_image_default_command(self):
        p = self.daemon.cli("run", "--image", self.name, "--memory",
                            str(VM_MEMORY), input=b"", timeout=180)
        self.assertEqual((p.returncode, p.stdout), (0, oci.FS_DEFAULT_OUTPUT),
                         p)
        # A command runs as it is, with the image's defaults; and what one
        # VM writes, another VM of the image does not see.
        mark = "/data/written-%s" % secrets.token_hex(3)
        r = self.run_in(["sh", "-c", "echo x > %s && sync" % mark],
                        user="root")
        self.assertRan(r, b"")
        p = self.daemon.cli("run", "--image", self.name, "--memory",
                            str(VM_MEMORY), "--", "sh", "-c",
                            "id -un; pwd; ls %s 2>/dev/null || echo clean" %
                            mark, input=b"", timeout=180)
        self.assertEqual((p.returncode, p.stdout),
                         (0, b"app\n/data\nclean\n"), p)
        self.assertEqual([v["vm_id"] for v in self.daemon.list_vms()],
                         [self.vm["vm_id"]])

    # -- no shell, no passwd, no Entrypoint or Cmd --

    def test_image_without_a_shell(self):
        b = oci.noshell_image(label="noshell").write_layout(
            os.path.join(self.tmp, "noshell"))
        img = self.import_image(b.dir, "noshell")
        self.assertEqual(self.inspect("noshell")["config"], {"user": "1000"})
        self.addCleanup(self.forget, "noshell")
        dirs = image_dirs(self.daemon)
        # Started by digest, from the CLI.
        p = self.daemon.cli("start", "--image", img["digest"], "--memory",
                            str(VM_MEMORY), "--json", timeout=180)
        self.assertEqual(p.returncode, 0, p)
        v = json.loads(p.stdout)
        vm_id = v["vm_id"]
        stopped = []

        def stop():
            if not stopped:
                self.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                    timeout=ct.STOP_TIMEOUT)
        self.addCleanup(stop)
        self.assertEqual(self.daemon.vm(vm_id).get("image"), img["digest"])
        proxy = v["proxy_socket_path"]
        bb = oci.NOSHELL_BIN
        self.assertRan(self.run_in([bb, "echo", "no", "shell"], proxy),
                       b"no shell\n")
        # User 1000 without an /etc/passwd: gid 1000 too.
        self.assertRan(self.run_in([bb, "id", "-u"], proxy), b"1000\n")
        self.assertRan(self.run_in([bb, "id", "-g"], proxy), b"1000\n")
        self.assertRan(self.run_in([bb, "pwd"], proxy), b"/\n")
        r = self.run_in(["/bin/sh", "-c", "true"], proxy)
        self.assertEqual(r.code, 127, r)
        # Neither Entrypoint nor Cmd: 125, saying so.
        for absent, command in ((True, None), (False, [])):
            with self.subTest(command=command):
                r = self.run_in(command or [], proxy, absent=absent)
                self.assertEqual(r.code, 125, r)
                self.assertRegex(r.exit.get("error", ""),
                                 re.compile("entrypoint|cmd", re.I))
        # In use: not removed; once the VM is gone: removed.
        self.assertError(self.op("RemoveImage", image="noshell"), "conflict")
        r = self.daemon.request({"op": "StopVM", "vm_id": vm_id},
                                timeout=ct.STOP_TIMEOUT)
        self.assertEqual(r.get("stopped"), [vm_id], r)
        stopped.append(True)
        r = self.op("RemoveImage", image="noshell")
        self.assertEqual(r, {"ok": True, "removed": ["noshell"]})
        self.assertIs(self.op("PruneImages").get("ok"), True)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) - 1,
                         image_dirs(self.daemon))
        self.assertClean()


    # -- a sandbox keeps its image --

    def test_a_sandbox_keeps_its_image(self):
        b = small_image(label="pinned").write_layout(
            os.path.join(self.tmp, "pinned"))
        img = self.import_image(b.dir, "pinned")
        self.addCleanup(self.forget, "pinned")
        r = self.op("CreateSandbox", name="pinned-sb", image="pinned",
                    memory_mib=VM_MEMORY)
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r["sandbox"]["image"], img["digest"])
        gone = []
        self.addCleanup(lambda: gone or self.op("RemoveSandbox",
                                                sandbox="pinned-sb"))
        self.assertError(self.op("RemoveImage", image="pinned"), "conflict",
                         "a sandbox of yours")
        # The name moves to another image: the sandbox keeps its own.
        other = small_image(label="pinned-2", extra=[
            oci.File("/marker", b"two\n")]).write_layout(
            os.path.join(self.tmp, "pinned-2"))
        moved = self.import_image(other.dir, "pinned")
        self.assertNotEqual(moved["digest"], img["digest"])
        v = self.op("StartVM", sandbox="pinned-sb")
        self.assertIs(v.get("ok"), True, v)
        self.assertEqual(self.daemon.vm(v["vm_id"])["image"], img["digest"])
        # The image's Cmd and Env, with the sandbox's disk on top.
        r = self.run_in(proxy=v["proxy_socket_path"], absent=True)
        self.assertRan(r, b"small\n")
        self.op("StopVM", vm_id=v["vm_id"])
        self.assertIs(self.op("RemoveSandbox", sandbox="pinned-sb")
                      .get("ok"), True)
        gone.append(True)
        # Nothing names or keeps the first image now: it is gone.
        self.assertNotIn("sha256-" + img["digest"][7:],
                         image_dirs(self.daemon))
        r = self.op("RemoveImage", image="pinned")
        self.assertEqual(r, {"ok": True, "removed": ["pinned"]})


# ---- names are per owner ----

class OwnerTest(ImageCase):
    """Two throwaway users in a --socket-group: each sees and uses only
    their own names; the data of one image is stored once."""

    group = None
    users = ()

    @classmethod
    def startDaemon(cls):
        cls.group = TestGroup()
        cls.users = []
        for _ in range(2):
            cls.users.append(TestUser(cls.group))
        d = cls.daemon = ct.Daemon(cls.__name__)
        d.extra_args += ["--socket-group", cls.group.name]
        chmod_nofollow(d.dir, 0o711)
        d.start()
        d.request({"op": "Ping"})

    @classmethod
    def setUpImages(cls):
        # Readable by everyone (the import runs with the caller's rights),
        # and a root-only copy.
        chmod_nofollow(cls.tmp, 0o755)
        cls.built = small_image(label="owners").write_layout(
            os.path.join(cls.tmp, "pub"))
        cls.rootonly = os.path.join(cls.tmp, "rootonly")
        os.mkdir(cls.rootonly, 0o700)
        small_image(label="owners").write_layout(
            os.path.join(cls.rootonly, "img"))

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            try:
                for u in cls.users:
                    for pid in ct.procs_of_uid(u.uid):
                        os.kill(pid, signal.SIGKILL)
                for u in cls.users:
                    u.remove()
            finally:
                if cls.group is not None:
                    cls.group.remove()

    def as_(self, user, req):
        return as_user(user, _request, self.daemon.sock, req)

    def their_list(self, user):
        r = self.as_(user, {"op": "ListImages"})
        self.assertIs(r.get("ok"), True, r)
        return sorted((i["name"], i["digest"], i["owner_uid"])
                      for i in r["images"])

    def cli_as(self, user, *args):
        return subprocess.run(
            [ct.CAPSULE] + list(args), user=user.uid, group=user.gid,
            extra_groups=user.groups, cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                 "CAPSULE_SOCKET": self.daemon.sock},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, timeout=120)

    def test_names_are_per_owner(self):
        a, b = self.users
        dig = self.built.config_digest
        dirs = image_dirs(self.daemon)
        self.addCleanup(self.cleanup_as, a, "shared")
        self.addCleanup(self.cleanup_as, b, "shared")
        r = self.as_(a, self.import_req(self.built.dir, "shared"))
        self.assertIs(r.get("ok"), True, r)
        self.assertImage(r["image"], "shared", dig, owner_uid=a.uid)
        self.assertEqual(self.their_list(a), [("shared", dig, a.uid)])
        # b sees nothing of a's, by name or by digest, and cannot use it.
        self.assertEqual(self.their_list(b), [])
        for key in ("shared", dig):
            with self.subTest(key=key):
                for op in ("InspectImage", "RemoveImage"):
                    self.assertError(self.as_(b, {"op": op, "image": key}),
                                     "not_found")
                r = self.as_(b, {"op": "StartVM", "image": key,
                                 "memory_mib": VM_MEMORY})
                self.assertError(r, "not_found")
        self.assertEqual(self.daemon.list_vms(), [])
        # Root sees all.
        self.assertIn(("shared", dig, a.uid), self.listed())
        # b's own "shared": the same data, stored once.
        r = self.as_(b, self.import_req(self.built.dir, "shared"))
        self.assertIs(r.get("ok"), True, r)
        self.assertImage(r["image"], "shared", dig, owner_uid=b.uid)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1)
        self.assertEqual(self.their_list(a), [("shared", dig, a.uid)])
        self.assertEqual(self.their_list(b), [("shared", dig, b.uid)])
        self.assertEqual([x for x in self.listed() if x[0] == "shared"],
                         sorted([("shared", dig, a.uid),
                                 ("shared", dig, b.uid)]))
        p = self.cli_as(b, "image", "ls")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual([l.split()[:2] for l in p.stdout.decode()
                          .splitlines() if l.startswith("shared")],
                         [["shared", dig[7:19]]], p)
        # a's removal takes a's name only.
        r = self.as_(a, {"op": "RemoveImage", "image": "shared"})
        self.assertEqual(r, {"ok": True, "removed": ["shared"]})
        self.assertEqual(self.their_list(a), [])
        r = self.as_(b, {"op": "InspectImage", "image": "shared"})
        self.assertIs(r.get("ok"), True, r)
        self.assertEqual(r["image"]["owner_uid"], b.uid, r)
        self.assertIs(self.op("PruneImages").get("ok"), True)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1,
                         "pruned while b's name refers to it")
        self.assertClean()

    def test_a_config_alone_is_not_the_image(self):
        """b knows a's image config (not a secret: build logs print it)
        and puts it in a layout of its own over a layer that is not the
        image's: capsule must not hand b a's stored image for it."""
        a, b = self.users
        dig = self.built.config_digest
        self.addCleanup(self.cleanup_as, a, "secret")
        self.addCleanup(self.cleanup_as, b, "claim")
        r = self.as_(a, self.import_req(self.built.dir, "secret"))
        self.assertIs(r.get("ok"), True, r)
        fake = small_image(label="other", extra=[oci.File(
            "/claim", b"not a's layer")]).write_layout(
            os.path.join(self.tmp, "claim"))
        blobs = os.path.join(fake.dir, "blobs", "sha256")
        self.assertEqual(oci._put_blob(blobs, self.built.config_bytes), dig)
        manifest = {"schemaVersion": 2, "mediaType": oci.MT_MANIFEST,
                    "config": {"mediaType": oci.MT_CONFIG, "digest": dig,
                               "size": len(self.built.config_bytes)},
                    "layers": [{"mediaType": l.media_type, "digest": l.digest,
                                "size": l.size} for l in fake.layers]}
        mb = oci.canonical_json(manifest)
        md = oci._put_blob(blobs, mb)
        oci._write(os.path.join(fake.dir, "index.json"), oci.canonical_json(
            {"schemaVersion": 2, "mediaType": oci.MT_INDEX, "manifests": [
                {"mediaType": oci.MT_MANIFEST, "digest": md,
                 "size": len(mb)}]}))
        r = self.as_(b, self.import_req(fake.dir, "claim"))
        self.assertIs(r.get("ok"), False, "b got a's image for its "
                      "config: %r" % r)
        self.assertEqual(self.their_list(b), [])
        self.assertClean()

    def cleanup_as(self, user, name):
        r = self.as_(user, {"op": "RemoveImage", "image": name})
        if not r.get("ok") and r.get("code") != "not_found":
            raise AssertionError(r)
        self.op("PruneImages")

    def test_import_reads_as_the_caller(self):
        a = self.users[0]
        path = os.path.join(self.rootonly, "img")
        dirs, listed = image_dirs(self.daemon), self.listed()
        r = self.as_(a, self.import_req(path, "not-mine"))
        self.assertFailedCleanly(r, dirs, listed)
        self.assertIn("permission denied", r["error"].lower(), r)
        self.assertEqual(self.their_list(a), [])
        # The control: root may read it.
        self.addCleanup(self.forget, "root-only")
        self.import_image(path, "root-only")


# ---- pull from a registry on loopback ----

class PullTest(ImageCase):
    """Debian's docker-registry on 127.0.0.1 (plain HTTP, no auth, storage
    in the test's directory), the image pushed by skopeo."""

    registry = None
    registry_pid = None

    @classmethod
    def setUpImages(cls):
        require_tools(oci.REGISTRY)
        cls.built = small_image(label="pull").write_layout(
            os.path.join(cls.tmp, "pull"))
        os.mkdir(os.path.join(cls.tmp, "registry"))
        cls.registry = oci.Registry(os.path.join(cls.tmp, "registry"))
        cls.registry.start()
        cls.registry_pid = cls.registry.proc.pid
        cls.ref = "%s/test/img:v1" % cls.registry.addr
        oci.skopeo_push(cls.built, cls.ref)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.registry is not None:
                cls.registry.stop()
                assert cls.registry_pid is None or not ct.pid_alive(
                    cls.registry_pid), "docker-registry still runs"
        finally:
            super().tearDownClass()

    def pull_req(self, ref, **kw):
        req = {"op": "PullImage", "ref": ref}
        req.update(kw)
        return req

    def test_pull(self):
        dig = self.built.config_digest
        dirs = image_dirs(self.daemon)
        names = [self.ref, "pulled", "cli-pulled"]
        self.addCleanup(self.forget, *names)
        t0 = time.time()
        lines, r = self.ask(self.pull_req(self.ref, tls_verify=False,
                                          progress=True, id="pull-1"))
        self.assertEqual((r.get("ok"), r.get("id")), (True, "pull-1"), r)
        # Name default: the ref as given.
        self.assertImage(r["image"], self.ref, dig, since=t0,
                         config={"env": SMALL_ENV, "cmd": SMALL_CMD},
                         min_size=busybox_size())
        self.assertTrue(lines, "no progress lines")
        for m in lines:
            self.assertEqual(m.get("id"), "pull-1", m)
            self.assertIn(m["progress"]["stage"], STAGES, m)
        self.assertTrue(any(m["progress"]["stage"] == "fetch" and
                            "Copying blob sha256:" in m["progress"]["message"]
                            for m in lines), lines)
        self.assertEqual(self.inspect(self.ref)["config"],
                         {"env": SMALL_ENV, "cmd": SMALL_CMD})
        # docker:// is accepted; the same image is stored once.
        lines, r = self.ask(self.pull_req("docker://" + self.ref,
                                          name="pulled", tls_verify=False))
        self.assertEqual(lines, [])
        self.assertIs(r.get("ok"), True, r)
        self.assertImage(r["image"], "pulled", dig)
        p = self.daemon.cli("image", "pull", self.ref, "--name",
                            "cli-pulled", "--tls-verify=false")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stdout.decode().splitlines()[-1],
                         "cli-pulled %s" % dig, p)
        self.assertEqual(len(image_dirs(self.daemon)), len(dirs) + 1)
        self.assertEqual(sorted(x[0] for x in self.listed() if x[1] == dig),
                         sorted(names))
        self.assertClean()
        self.assertNoLeaks()

    def test_pull_errors(self):
        dirs, listed = image_dirs(self.daemon), self.listed()
        reg = self.registry.addr
        for what, req, words in (
                ("TLS verified against plain HTTP",
                 self.pull_req(self.ref), [self.ref]),
                ("unknown repository",
                 self.pull_req("%s/test/nothere:v1" % reg, tls_verify=False),
                 ["test/nothere"]),
                ("unknown tag",
                 self.pull_req("%s/test/img:nope" % reg, tls_verify=False),
                 ["nope"]),
                ("nothing listening",
                 self.pull_req("127.0.0.1:%d/test/img:v1" % ct.free_port(),
                               tls_verify=False), []),
                ("bad name", self.pull_req(self.ref, name="-x",
                                           tls_verify=False), ["name"])):
            with self.subTest(what):
                _, r = self.ask(req)
                self.assertFailedCleanly(r, dirs, listed, *words)
        for req in ({"op": "PullImage"}, self.pull_req(""),
                    self.pull_req(5), self.pull_req(self.ref,
                                                    tls_verify="no")):
            with self.subTest(req=req):
                _, r = self.ask(req)
                self.assertError(r, "invalid_argument")
                self.assertFailedCleanly(r, dirs, listed)
        self.assertNoLeaks()


# ---- capsuled killed in the middle of an import ----

class InterruptedImportTest(unittest.TestCase):
    """A 200 MB layer; capsuled gets SIGKILL while it fetches (an OCI
    archive) and while it unpacks (a layout). Its helpers must not outlive
    it, and the next capsuled on the state dir shows no trace of it."""

    @classmethod
    def setUpClass(cls):
        ct.require_build()
        require_tools()
        cls.tmp = tempfile.mkdtemp(prefix="capimg", dir="/tmp")
        try:
            cls.built = oci.Image([
                oci.Layer([oci.Dir("/data"), oci.RandomFile(
                    "/data/big", BIG_MB << 20)], compress=None),
                oci.Layer([oci.File("/data/small", "small\n")])],
                env=["BIG=1"], label="big").write_layout(
                    os.path.join(cls.tmp, "big"))
            cls.archive = oci.oci_archive(cls.built, os.path.join(
                cls.tmp, "big-oci.tar"))
        except BaseException:
            ct.rmtree(cls.tmp)
            raise

    @classmethod
    def tearDownClass(cls):
        ct.rmtree(cls.tmp)

    def kill(self, d):
        """SIGKILL, reaped; the Daemon object told so."""
        if d.conn is not None:
            d.conn.close()
            d.conn = None
        d.proc.send_signal(signal.SIGKILL)
        d.returncode = d.proc.wait(30)
        d.log.close()

    def successor(self, d, name):
        d2 = ct.Daemon(name, socket_path=d.sock, state_dir=d.state)
        self.addCleanup(d2.kill)
        return d2.start()

    def kill_during(self, d, path, stage):
        """Starts importing path; SIGKILLs capsuled at the first progress
        line of stage or a later one; returns the progress seen."""
        c = d.connect()
        try:
            c.send({"op": "ImportImage", "path": path, "name": "big",
                    "progress": True})
            seen = []
            end = time.monotonic() + IMPORT_TIMEOUT
            while time.monotonic() < end:
                m = c.read_json(timeout=end - time.monotonic())
                if "ok" in m:
                    self.fail("the import ended (%r) before stage %s; seen "
                              "%r" % (m, stage, seen))
                s = m.get("progress", {}).get("stage")
                seen.append(s)
                if s in STAGES and STAGES.index(s) >= STAGES.index(stage):
                    self.kill(d)
                    return seen
            self.fail("no %s stage within %d s: %r" % (stage, IMPORT_TIMEOUT,
                                                       seen))
        finally:
            c.close()

    def assertHelpersGone(self, d, path):
        """No skopeo, umoci or mkfs of the dead capsuled's keeps working on
        its state dir or the image (they die with it): waits 10 s, then
        kills what is left and fails."""
        watch = [d.state, path]
        left = [] if ct.wait_for(lambda: not procs_using(watch), 10) \
            else procs_using(watch)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        ct.wait_for(lambda: not procs_using(watch), 10)
        self.assertEqual(left, [], "still running 10 s after capsuled was "
                         "killed")

    def assertNoTrace(self, d):
        r = d.request({"op": "ListImages"})
        self.assertEqual(r, {"ok": True, "images": []})
        self.assertEqual(image_dirs(d), [])
        self.assertSwept(d)

    def assertSwept(self, d):
        """What the killed daemon left goes at the next start, beside the
        loop: soon, not before the first request."""
        ct.wait_for(lambda: not tmp_left(d) and not fetch_left(d), 30)
        self.assertEqual(tmp_left(d), [], "left in %s/tmp" % images_dir(d))
        self.assertEqual(fetch_left(d), [], "left in %s/fetch" % d.state)

    def test_killed_mid_import(self):
        d = ct.Daemon("interrupted-0").start()
        self.addCleanup(d.kill)
        for i, (path, stage) in enumerate(((self.archive, "fetch"),
                                           (self.built.dir, "unpack"))):
            with self.subTest(path=os.path.basename(path), stage=stage):
                var_tmp = skopeo_tmp_names()
                t0 = time.monotonic()
                seen = self.kill_during(d, path, stage)
                print("\n  killed %.1f s into the import at %r" % (
                    time.monotonic() - t0, seen[-3:]), end=" ")
                try:
                    self.assertHelpersGone(d, path)
                    # skopeo untars an OCI archive into /var/tmp unless
                    # told otherwise (--tmpdir): there nobody cleans up.
                    stray = sorted(skopeo_tmp_names() - var_tmp)
                    for n in stray:
                        ct.rmtree(os.path.join("/var/tmp", n))
                    self.assertEqual(stray, [], "left in /var/tmp")
                finally:
                    d = self.successor(d, "interrupted-%d" % (i + 1))
                self.assertNoTrace(d)
        # And the import works now, from either form, stored once.
        c = d.connect(timeout=IMPORT_TIMEOUT)
        try:
            for path in (self.built.dir, self.archive):
                r = c.request({"op": "ImportImage", "path": path, "name":
                               "big"}, timeout=IMPORT_TIMEOUT)
                self.assertIs(r.get("ok"), True, r)
                self.assertEqual(r["image"]["digest"],
                                 self.built.config_digest)
                self.assertGreaterEqual(r["image"]["size"], BIG_MB << 20)
                self.assertIn(r["image"]["size"], allocated_sizes(d))
        finally:
            c.close()
        self.assertEqual(len(image_dirs(d)), 1, image_dirs(d))
        self.assertSwept(d)
        d.stop()


if __name__ == "__main__":
    ct.main()
