#!/usr/bin/env python3
"""capsule cp: files and trees into and out of a running VM, through the CLI
and the exec socket's {"copy":...} requests. One daemon, one VM for the
whole class.

What is compared is exact: bytes (sha256), entry types, permission bits,
whole-second mtimes and symlink targets, on the host with lstat and in the
guest with busybox stat(1) run through an exec.
"""
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile

import capsuletest as ct

# The tree both directions copy: (name, kind, mode, mtime, data or target).
# Distinct mtimes per entry, so a swap or a "now" shows up; a 0555 directory
# with contents (it must be filled before it is made read-only); a relative
# and a dangling symlink; an empty file; an executable with odd bits.
T0 = 1262304000                 # 2010-01-01, well clear of "now"
TREE = [
    ("top", "d", 0o755, T0 + 1, None),
    ("top/a.bin", "f", 0o644, T0 + 2, os.urandom(200 * 1024 + 3)),
    ("top/empty", "f", 0o600, T0 + 3, b""),
    ("top/run.sh", "f", 0o751, T0 + 4, b"#!/bin/sh\necho run\n"),
    ("top/sub", "d", 0o700, T0 + 5, None),
    ("top/sub/deep", "d", 0o750, T0 + 6, None),
    ("top/sub/deep/f.txt", "f", 0o640, T0 + 7, b"deep\n" * 1000),
    ("top/ro", "d", 0o555, T0 + 8, None),
    ("top/ro/inside.txt", "f", 0o444, T0 + 9, b"read only\n"),
    ("top/ro/sub", "d", 0o755, T0 + 10, None),
    ("top/link", "l", None, T0 + 11, "sub/deep/f.txt"),
    ("top/dangling", "l", None, T0 + 12, "/no/such/target"),
]


def make_tree(parent, entries=TREE):
    """Creates entries under parent; mtimes and modes are set last,
    innermost first, so filling a directory does not change them."""
    for name, kind, mode, _, data in entries:
        p = os.path.join(parent, name)
        if kind == "d":
            os.mkdir(p, 0o700)
        elif kind == "f":
            with open(p, "wb") as f:
                f.write(data)
        else:
            os.symlink(data, p)
    for name, kind, mode, mtime, _ in reversed(entries):
        p = os.path.join(parent, name)
        if kind != "l":
            os.chmod(p, mode)
        os.utime(p, (mtime, mtime), follow_symlinks=False)


def tree_manifest(entries=TREE, top="top", rename=None):
    """The manifest make_tree's entries must produce (see host_manifest)."""
    m = {}
    for name, kind, mode, mtime, data in entries:
        if rename is not None:
            name = rename + name[len(top):]
        if kind == "f":
            extra = hashlib.sha256(data).hexdigest()
        elif kind == "l":
            extra = data
        else:
            extra = ""
        m[name] = (kind, mode if kind != "l" else 0o777, mtime, extra)
    return m


def host_manifest(parent, top):
    """{relative name: (kind, permission bits, mtime, sha256 or target)}
    for top and everything below it, without following symlinks."""
    m = {}

    def one(rel):
        p = os.path.join(parent, rel)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            kind, extra = "l", os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            kind, extra = "d", ""
        elif stat.S_ISREG(st.st_mode):
            kind = "f"
            with open(p, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        else:
            kind, extra = "?", oct(st.st_mode)
        m[rel] = (kind, stat.S_IMODE(st.st_mode), int(st.st_mtime), extra)
        if kind == "d":
            for n in os.listdir(p):
                one(os.path.join(rel, n))

    one(top)
    return m


# Prints one line per entry below $1 (whose parent is the cwd):
# NAME<TAB>KIND<TAB>OCTAL-MODE<TAB>MTIME<TAB>sha256|target.
GUEST_MANIFEST = r'''
find "$1" | while IFS= read -r f; do
  if [ -L "$f" ]; then k=l; x=$(readlink "$f")
  elif [ -d "$f" ]; then k=d; x=
  elif [ -f "$f" ]; then k=f; x=$(sha256sum < "$f"); x=${x%% *}
  else k='?'; x=
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$k" "$(stat -c %a "$f")" \
    "$(stat -c %Y "$f")" "$x"
done
'''


def newc_entry(name, mode, data=b"", mtime=T0, ino=1):
    """One SVR4 newc cpio entry (what `cpio -o -H newc` writes)."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(data, str):
        data = data.encode()
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0,
              len(name) + 1, 0)
    hdr = b"070701" + b"".join(b"%08X" % v for v in fields) + name + b"\0"
    hdr += b"\0" * (-len(hdr) % 4)
    return hdr + data + b"\0" * (-len(data) % 4)


def newc_file_header(name, size):
    """The header of a regular file entry of `size` bytes, without them:
    what a sender cut short leaves."""
    hdr = newc_entry(name, 0o100644)
    return hdr[:54] + b"%08X" % size + hdr[62:]     # c_filesize


def newc_archive(entries):
    out = b"".join(newc_entry(*e, ino=i + 1) for i, e in enumerate(entries))
    return out + newc_entry("TRAILER!!!", 0, ino=0)


def newc_names(data):
    """The entry names of a newc archive, up to and without its trailer;
    fails on anything but well-formed newc."""
    names, off = [], 0
    while True:
        magic = data[off:off + 6]
        if magic != b"070701":
            raise AssertionError("bad newc magic %r at offset %d" %
                                 (magic, off))
        v = [int(data[off + 6 + 8 * i:off + 14 + 8 * i], 16)
             for i in range(13)]
        size, namesize = v[6], v[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        off += 110 + namesize
        off += -off % 4
        off += size
        off += -off % 4
        if name == "TRAILER!!!":
            return names, off
        names.append(name)


rmtree = ct.rmtree


class CpTest(ct.VMTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="capcp")
        try:
            super().setUpClass()
        except BaseException:
            rmtree(cls.tmp)
            raise

    @classmethod
    def setUpVM(cls):
        cls.src = os.path.join(cls.tmp, "src")
        os.mkdir(cls.src)
        make_tree(cls.src)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if getattr(cls, "tmp", None):
                rmtree(cls.tmp)

    # ---- helpers ----

    def hostdir(self, name):
        """A fresh empty host directory for one test."""
        p = os.path.join(self.tmp, name)
        os.mkdir(p)
        return p

    def sh(self, script, *args, code=0):
        """Runs a shell script in the guest; asserts its exit code."""
        r = ct.run_exec(self.proxy, ["sh", "-c", script, "sh"] + list(args),
                        timeout=120)
        self.assertEqual(r.code, code, "guest script %r: %r" % (script, r))
        return r.stdout.decode()

    def cp(self, *args, input=None, code=0, timeout=120):
        p = self.daemon.cli("cp", *args, input=input, timeout=timeout)
        if code is not None:
            self.assertEqual(p.returncode, code,
                             "capsule cp %s: exit %d, stderr %r" %
                             (" ".join(args), p.returncode, p.stderr))
        if code == 0:
            self.assertEqual(p.stderr, b"", "capsule cp %s" % " ".join(args))
        return p

    def g(self, path):
        """ID:path, the CLI's name for a guest path."""
        return "%s:%s" % (self.vm_id, path)

    def guest_manifest(self, parent, top):
        out = self.sh('cd "$1" && shift && ' + GUEST_MANIFEST, parent, top)
        m = {}
        for line in out.splitlines():
            name, kind, mode, mtime, extra = line.split("\t")
            m[name] = (kind, int(mode, 8), int(mtime), extra)
        return m

    def guest_ls(self, path):
        """The names in a guest directory, dot files and temporaries
        included."""
        out = self.sh('ls -A "$1"', path)
        return sorted(out.split())

    def guest_stat(self, path):
        """(permission bits, mtime, size, sha256) of a guest file."""
        out = self.sh('stat -c "%a %Y %s %F" "$1" && sha256sum < "$1"', path)
        first, second = out.splitlines()
        mode, mtime, size, kind = first.split(" ", 3)
        self.assertIn(kind, ("regular file", "regular empty file"), out)
        return (int(mode, 8), int(mtime), int(size), second.split()[0])

    def assertManifest(self, got, want):
        self.assertEqual(sorted(got), sorted(want),
                         "different entries (names or count)")
        for name in sorted(want):
            self.assertEqual(got[name], want[name],
                             "%s: (kind, mode, mtime, sha256|target) differ"
                             % name)

    def assertClean(self, got_names, want_names, what):
        self.assertEqual(got_names, sorted(want_names),
                         "%s: something was left behind" % what)
        self.assertEqual([n for n in got_names
                          if n.startswith(".capsule-cp.")], [],
                         "%s: a temporary file was left behind" % what)

    # ---- single files ----

    def test_file_to_guest(self):
        h = self.hostdir("f2g")
        data = os.urandom(3 * 1024 * 1024 + 12345)
        big = os.path.join(h, "big.bin")
        with open(big, "wb") as f:
            f.write(data)
        os.chmod(big, 0o751)
        os.utime(big, (T0 + 100, T0 + 100))
        empty = os.path.join(h, "empty")
        open(empty, "wb").close()
        os.chmod(empty, 0o600)
        os.utime(empty, (T0 + 200, T0 + 200))

        self.sh("mkdir -p /tmp/f2g")
        self.cp(big, self.g("/tmp/f2g/big.bin"))
        self.cp(empty, self.g("/tmp/f2g/empty"))
        self.assertEqual(self.guest_stat("/tmp/f2g/big.bin"),
                         (0o751, T0 + 100, len(data),
                          hashlib.sha256(data).hexdigest()))
        self.assertEqual(self.guest_stat("/tmp/f2g/empty"),
                         (0o600, T0 + 200, 0, hashlib.sha256().hexdigest()))
        self.assertClean(self.guest_ls("/tmp/f2g"), ["big.bin", "empty"],
                         "/tmp/f2g")

    def test_file_from_guest(self):
        h = self.hostdir("g2f")
        n = 3 * 1024 * 1024 + 4321
        out = self.sh(
            'mkdir -p /tmp/g2f && cd /tmp/g2f && '
            'head -c %d /dev/urandom > big.bin && : > empty && '
            'chmod 0600 big.bin && chmod 0751 empty && '
            'touch -d @%d big.bin && touch -d @%d empty && '
            'sha256sum big.bin' % (n, T0 + 300, T0 + 400))
        want_sha = out.split()[0]
        self.cp(self.g("/tmp/g2f/big.bin"), os.path.join(h, "big.bin"))
        self.cp(self.g("/tmp/g2f/empty"), os.path.join(h, "empty"))
        # What the guest says about them, and what the host has.
        self.assertEqual(self.guest_stat("/tmp/g2f/big.bin"),
                         (0o600, T0 + 300, n, want_sha))
        self.assertEqual(host_manifest(h, "big.bin"),
                         {"big.bin": ("f", 0o600, T0 + 300, want_sha)})
        self.assertEqual(os.path.getsize(os.path.join(h, "big.bin")), n)
        self.assertEqual(host_manifest(h, "empty"),
                         {"empty": ("f", 0o751, T0 + 400,
                                    hashlib.sha256().hexdigest())})
        self.assertClean(sorted(os.listdir(h)), ["big.bin", "empty"], h)

    # ---- trees ----

    def test_tree_to_guest(self):
        self.sh("mkdir -p /tmp/t2g")
        self.cp(os.path.join(self.src, "top"), self.g("/tmp/t2g"))
        self.assertManifest(self.guest_manifest("/tmp/t2g", "top"),
                            tree_manifest())
        self.assertClean(self.guest_ls("/tmp/t2g"), ["top"], "/tmp/t2g")

    def test_tree_from_guest(self):
        # The guest's copy is checked against the source with stat(1) in
        # the guest; then the copy out must match it.
        self.sh("mkdir -p /tmp/g2t")
        self.cp(os.path.join(self.src, "top"), self.g("/tmp/g2t/"))
        want = tree_manifest()
        self.assertManifest(self.guest_manifest("/tmp/g2t", "top"), want)
        h = self.hostdir("g2t")
        self.cp(self.g("/tmp/g2t/top"), h)
        self.assertManifest(host_manifest(h, "top"), want)
        self.assertClean(sorted(os.listdir(h)), ["top"], h)

    # ---- cp -r semantics ----

    def test_into_dir_vs_new_name_to_guest(self):
        self.sh("mkdir -p /tmp/sem-in/existing")
        f = os.path.join(self.src, "top", "run.sh")
        top = os.path.join(self.src, "top")
        # An existing directory: inside it, under the source's own name
        # (with and without a trailing slash).
        self.cp(f, self.g("/tmp/sem-in/existing"))
        self.cp(top, self.g("/tmp/sem-in/existing/"))
        # A new name: created as that name.
        self.cp(f, self.g("/tmp/sem-in/renamed.sh"))
        self.cp(top, self.g("/tmp/sem-in/newtop"))
        # A symlink is copied as a symlink, not followed.
        self.cp(os.path.join(top, "link"), self.g("/tmp/sem-in/lnk"))

        self.assertEqual(self.guest_ls("/tmp/sem-in"),
                         ["existing", "lnk", "newtop", "renamed.sh"])
        self.assertEqual(self.guest_ls("/tmp/sem-in/existing"),
                         ["run.sh", "top"])
        run = (0o751, T0 + 4, 19,
               hashlib.sha256(b"#!/bin/sh\necho run\n").hexdigest())
        self.assertEqual(self.guest_stat("/tmp/sem-in/existing/run.sh"), run)
        self.assertEqual(self.guest_stat("/tmp/sem-in/renamed.sh"), run)
        self.assertManifest(self.guest_manifest("/tmp/sem-in/existing",
                                                "top"), tree_manifest())
        self.assertManifest(self.guest_manifest("/tmp/sem-in", "newtop"),
                            tree_manifest(rename="newtop"))
        self.assertEqual(self.guest_manifest("/tmp/sem-in", "lnk"),
                         {"lnk": ("l", 0o777, T0 + 11, "sub/deep/f.txt")})

    def test_into_dir_vs_new_name_from_guest(self):
        self.sh("mkdir -p /tmp/sem-out")
        self.cp(os.path.join(self.src, "top"), self.g("/tmp/sem-out"))
        self.assertManifest(self.guest_manifest("/tmp/sem-out", "top"),
                            tree_manifest())
        h = self.hostdir("sem-out")
        os.mkdir(os.path.join(h, "existing"))
        self.cp(self.g("/tmp/sem-out/top/run.sh"), os.path.join(h,
                                                                "existing"))
        self.cp(self.g("/tmp/sem-out/top"), os.path.join(h, "existing/"))
        self.cp(self.g("/tmp/sem-out/top/run.sh"),
                os.path.join(h, "renamed.sh"))
        self.cp(self.g("/tmp/sem-out/top"), os.path.join(h, "newtop"))
        self.cp(self.g("/tmp/sem-out/top/link"), os.path.join(h, "lnk"))

        self.assertEqual(sorted(os.listdir(h)),
                         ["existing", "lnk", "newtop", "renamed.sh"])
        self.assertEqual(sorted(os.listdir(os.path.join(h, "existing"))),
                         ["run.sh", "top"])
        want = tree_manifest()
        run = want["top/run.sh"]
        self.assertEqual(host_manifest(os.path.join(h, "existing"),
                                       "run.sh"), {"run.sh": run})
        self.assertEqual(host_manifest(h, "renamed.sh"), {"renamed.sh": run})
        self.assertManifest(host_manifest(os.path.join(h, "existing"),
                                          "top"), want)
        self.assertManifest(host_manifest(h, "newtop"),
                            tree_manifest(rename="newtop"))
        self.assertEqual(host_manifest(h, "lnk"),
                         {"lnk": ("l", 0o777, T0 + 11, "sub/deep/f.txt")})

    def test_overwrite_file(self):
        # A longer file with other bits is replaced: no stale tail, the new
        # mode and mtime, and no temporary left next to it.
        new = b"short and new\n"
        h = self.hostdir("over")
        src = os.path.join(h, "src")
        with open(src, "wb") as f:
            f.write(new)
        os.chmod(src, 0o640)
        os.utime(src, (T0 + 500, T0 + 500))
        self.sh("mkdir -p /tmp/over && head -c 100000 /dev/urandom > "
                "/tmp/over/f && chmod 0777 /tmp/over/f")
        self.cp(src, self.g("/tmp/over/f"))
        self.assertEqual(self.guest_stat("/tmp/over/f"),
                         (0o640, T0 + 500, len(new),
                          hashlib.sha256(new).hexdigest()))
        self.assertClean(self.guest_ls("/tmp/over"), ["f"], "/tmp/over")

        # And on the host.
        self.sh("cd /tmp/over && printf 'from the guest' > g && "
                "chmod 0604 g && touch -d @%d g" % (T0 + 600))
        dst = os.path.join(h, "dst")
        with open(dst, "wb") as f:
            f.write(os.urandom(100000))
        os.chmod(dst, 0o777)
        self.cp(self.g("/tmp/over/g"), dst)
        self.assertEqual(host_manifest(h, "dst"),
                         {"dst": ("f", 0o604, T0 + 600, hashlib.sha256(
                             b"from the guest").hexdigest())})
        self.assertClean(sorted(os.listdir(h)), ["dst", "src"], h)

    def test_merge_into_existing_dir(self):
        # An existing directory is merged into and keeps its own mode; what
        # was in it stays.
        self.sh("mkdir -p /tmp/merge/top/sub && chmod 0711 /tmp/merge/top && "
                "echo old > /tmp/merge/top/old.txt && "
                "echo old > /tmp/merge/top/run.sh")
        self.cp(os.path.join(self.src, "top"), self.g("/tmp/merge"))
        got = self.guest_manifest("/tmp/merge", "top")
        want = tree_manifest()
        self.assertEqual(got.pop("top")[:2], ("d", 0o711))
        self.assertEqual(got.pop("top/sub")[:2], ("d", 0o755))
        self.assertEqual(got.pop("top/old.txt")[3],
                         hashlib.sha256(b"old\n").hexdigest())
        del want["top"], want["top/sub"]
        self.assertManifest(got, want)

    def test_special_bits(self):
        # The guest (root, trusted by its own owner) keeps setuid, setgid
        # and sticky bits; the host drops them from what a guest sends.
        h = self.hostdir("bits")
        os.mkdir(os.path.join(h, "d"))
        with open(os.path.join(h, "d", "suid"), "wb") as f:
            f.write(b"x")
        os.chmod(os.path.join(h, "d", "suid"), 0o4755)
        os.utime(os.path.join(h, "d", "suid"), (T0, T0))
        os.chmod(os.path.join(h, "d"), 0o3777)
        os.utime(os.path.join(h, "d"), (T0, T0))
        self.sh("mkdir -p /tmp/bits")
        self.cp(os.path.join(h, "d"), self.g("/tmp/bits/"))
        sha = hashlib.sha256(b"x").hexdigest()
        self.assertEqual(self.guest_manifest("/tmp/bits", "d"),
                         {"d": ("d", 0o3777, T0, ""),
                          "d/suid": ("f", 0o4755, T0, sha)})
        self.cp(self.g("/tmp/bits/d"), os.path.join(h, "back"))
        self.assertEqual(host_manifest(h, "back"),
                         {"back": ("d", 0o777, T0, ""),
                          "back/suid": ("f", 0o755, T0, sha)})

    # ---- errors ----

    def assertFails(self, p, code, *needles):
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual(p.returncode, code, err)
        self.assertTrue(err.startswith("capsule: "), err)
        for n in needles:
            self.assertIn(n, err)
        self.assertEqual(p.stdout, b"")

    def test_error_missing_host_source(self):
        self.sh("mkdir -p /tmp/err1")
        missing = os.path.join(self.tmp, "no-such-file")
        p = self.cp(missing, self.g("/tmp/err1/"), code=None)
        self.assertFails(p, 1, missing, "No such file or directory")
        p = self.cp(missing, self.g("/tmp/err1/x"), code=None)
        self.assertFails(p, 1, missing, "No such file or directory")
        self.assertClean(self.guest_ls("/tmp/err1"), [], "/tmp/err1")

    def test_error_missing_guest_source(self):
        h = self.hostdir("err2")
        p = self.cp(self.g("/tmp/no-such-file"), h, code=None)
        self.assertFails(p, 1, "/tmp/no-such-file",
                         "No such file or directory")
        p = self.cp(self.g("/tmp/no-such-file"), os.path.join(h, "x"),
                    code=None)
        self.assertFails(p, 1, "/tmp/no-such-file",
                         "No such file or directory")
        self.assertClean(sorted(os.listdir(h)), [], h)

    def test_error_guest_parent_missing(self):
        f = os.path.join(self.src, "top", "run.sh")
        self.sh("mkdir -p /tmp/err3")
        for src in (f, os.path.join(self.src, "top")):
            p = self.cp(src, self.g("/tmp/err3/missing/x"), code=None)
            self.assertFails(p, 1, "/tmp/err3/missing/x",
                             "parent directory does not exist")
        self.assertClean(self.guest_ls("/tmp/err3"), [], "/tmp/err3")

    def test_error_host_parent_missing(self):
        h = self.hostdir("err4")
        self.sh("mkdir -p /tmp/err4 && echo x > /tmp/err4/f")
        dst = os.path.join(h, "missing", "x")
        for src in ("/tmp/err4/f", "/tmp/err4"):
            p = self.cp(self.g(src), dst, code=None)
            self.assertFails(p, 1, dst, "parent directory does not exist")
        self.assertClean(sorted(os.listdir(h)), [], h)

    def test_error_dir_onto_file(self):
        # Into the guest: the file stays as it was.
        self.sh("mkdir -p /tmp/err5 && printf keep > /tmp/err5/file && "
                "chmod 0640 /tmp/err5/file && touch -d @%d /tmp/err5/file"
                % (T0 + 700))
        p = self.cp(os.path.join(self.src, "top"), self.g("/tmp/err5/file"),
                    code=None)
        self.assertFails(p, 1, "/tmp/err5/file", "not a directory")
        self.assertEqual(self.guest_stat("/tmp/err5/file"),
                         (0o640, T0 + 700, 4,
                          hashlib.sha256(b"keep").hexdigest()))
        self.assertClean(self.guest_ls("/tmp/err5"), ["file"], "/tmp/err5")

        # Out of it: likewise.
        h = self.hostdir("err5")
        f = os.path.join(h, "file")
        with open(f, "wb") as fh:
            fh.write(b"keep")
        os.chmod(f, 0o640)
        os.utime(f, (T0 + 700, T0 + 700))
        p = self.cp(self.g("/tmp/err5"), f, code=None)
        self.assertFails(p, 1, f, "not a directory")
        self.assertEqual(host_manifest(h, "file"),
                         {"file": ("f", 0o640, T0 + 700,
                                   hashlib.sha256(b"keep").hexdigest())})
        self.assertClean(sorted(os.listdir(h)), ["file"], h)

    def test_error_file_onto_dir(self):
        # The file would land on a directory of its name: refused, and the
        # directory stays.
        self.sh("mkdir -p /tmp/err7/run.sh/inner")
        p = self.cp(os.path.join(self.src, "top", "run.sh"),
                    self.g("/tmp/err7"), code=None)
        self.assertFails(p, 1, "/tmp/err7/run.sh", "is a directory")
        self.assertClean(self.guest_ls("/tmp/err7"), ["run.sh"], "/tmp/err7")
        self.assertEqual(self.guest_ls("/tmp/err7/run.sh"), ["inner"])

    def test_error_guest_disk_full(self):
        self.sh("mkdir -p /mnt/small && mount -t tmpfs -o size=1m tmpfs "
                "/mnt/small")
        h = self.hostdir("full")
        big = os.path.join(h, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(4 * 1024 * 1024))
        for dst in ("/mnt/small", "/mnt/small/named.bin"):
            p = self.cp(big, self.g(dst), code=None)
            self.assertFails(p, 1, "/mnt/small/", "No space left on device")
            self.assertClean(self.guest_ls("/mnt/small"), [], "/mnt/small")
        # The space was given back: a small file fits now.
        small = os.path.join(h, "small.bin")
        data = os.urandom(300 * 1024)
        with open(small, "wb") as f:
            f.write(data)
        os.chmod(small, 0o600)
        os.utime(small, (T0 + 800, T0 + 800))
        self.cp(small, self.g("/mnt/small/"))
        self.assertEqual(self.guest_stat("/mnt/small/small.bin"),
                         (0o600, T0 + 800, len(data),
                          hashlib.sha256(data).hexdigest()))
        self.sh("umount /mnt/small")

    def test_error_usage(self):
        f = os.path.join(self.src, "top", "run.sh")
        for args, needle in (
                ((f, f), "neither path is in a VM"),
                ((self.g("/a"), self.g("/b")), "both paths are in a VM"),
                ((f, self.g("relative/x")), "must be absolute"),
                ((f,), "usage"),
                ((f, self.g("/tmp/"), self.g("/tmp/")), "usage")):
            p = self.cp(*args, code=None)
            self.assertFails(p, 2, needle)

    def test_error_unknown_vm(self):
        f = os.path.join(self.src, "top", "run.sh")
        p = self.cp(f, "ffffffff-no-such-vm:/tmp/", code=None)
        self.assertFails(p, 125, "ffffffff-no-such-vm")

    def test_error_bad_archive_on_stdin(self):
        self.sh("mkdir -p /tmp/err6")
        for data, needle in ((b"", "/tmp/err6/"),
                             (b"this is not a cpio archive\n" * 10,
                              "malformed"),
                             (newc_archive([("x", 0o100644, b"abc")])[:114],
                              "ended early")):
            p = self.cp("-", self.g("/tmp/err6/"), input=data, code=None)
            self.assertFails(p, 1, needle)
        self.assertClean(self.guest_ls("/tmp/err6"), [], "/tmp/err6")

    # ---- "-": the archive itself on stdin or stdout ----

    def test_stream_out_unpacks_with_gnu_cpio(self):
        self.sh("mkdir -p /tmp/sout")
        self.cp(os.path.join(self.src, "top"), self.g("/tmp/sout"))
        p = self.cp(self.g("/tmp/sout/top"), "-")
        names, end = newc_names(p.stdout)
        self.assertEqual(end, len(p.stdout), "bytes after the trailer")
        # The top first, everything else below it, parents first.
        self.assertEqual(names[0], "top", names)
        self.assertEqual(sorted(names), sorted(tree_manifest()), names)
        for i, n in enumerate(names[1:], 1):
            self.assertIn(os.path.dirname(n), names[:i],
                          "%s comes before its parent" % n)

        h = self.hostdir("sout")
        u = subprocess.run(["cpio", "-idm", "--quiet"], input=p.stdout,
                           cwd=h, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(u.returncode, 0, u.stderr)
        got = host_manifest(h, "top")
        want = tree_manifest()
        # GNU cpio -m sets a directory's mtime as it creates it, so with
        # parents first (the order capsule documents) filling it changes
        # it again, and it leaves symlinks' own mtimes alone: only files'
        # mtimes can be compared. The rest must be exact.
        for m in (got, want):
            for k, v in m.items():
                if v[0] != "f":
                    m[k] = (v[0], v[1], None, v[3])
        self.assertManifest(got, want)

    def test_stream_in_from_gnu_cpio(self):
        a = subprocess.run("find top | cpio -o -H newc --quiet", shell=True,
                           cwd=self.src, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.sh("mkdir -p /tmp/sin")
        self.cp("-", self.g("/tmp/sin/"), input=a.stdout)
        self.assertManifest(self.guest_manifest("/tmp/sin", "top"),
                            tree_manifest())
        # To a new name, too.
        self.cp("-", self.g("/tmp/sin/renamed"), input=a.stdout)
        self.assertManifest(self.guest_manifest("/tmp/sin", "renamed"),
                            tree_manifest(rename="renamed"))
        self.assertClean(self.guest_ls("/tmp/sin"), ["renamed", "top"],
                         "/tmp/sin")

    # ---- interrupted copies leave nothing behind ----

    def wait_guest_tmp(self, d, timeout=30):
        """Polls until a temporary file shows up in guest directory d."""
        return ct.wait_for(lambda: [n for n in self.guest_ls(d)
                                    if n.startswith(".capsule-cp.")],
                           timeout, interval=0.2)

    def test_cut_connection_leaves_nothing_in_guest(self):
        # The client goes away halfway through a file: the guest's copy
        # ends on end of input and removes its temporary file.
        self.sh("mkdir -p /tmp/cut")
        head = newc_file_header("big.bin", 4 * 1024 * 1024)
        x = ct.Exec(self.proxy, first={"copy": "in", "path": "/tmp/cut"},
                    timeout=60)
        try:
            x.stdin(head + os.urandom(512 * 1024))
            self.assertTrue(self.wait_guest_tmp("/tmp/cut"),
                            "no temporary file while the copy runs")
        finally:
            x.close()
        self.assertTrue(ct.wait_for(lambda: self.guest_ls("/tmp/cut") == [],
                                    10, interval=0.2),
                        "left behind in /tmp/cut: %r" %
                        self.guest_ls("/tmp/cut"))

    def test_interrupted_cp_leaves_nothing_in_guest(self):
        # Ctrl-C on `capsule cp - ID:DIR` halfway through a file: the CLI
        # forwards SIGINT; whatever it ends in, no partial file and no
        # temporary may stay in the guest (exec-protocol.md: "an error
        # never leaves a truncated file behind").
        self.sh("mkdir -p /tmp/intr")
        head = newc_file_header("big.bin", 4 * 1024 * 1024)
        p = self.daemon.cli_popen("cp", "-", self.g("/tmp/intr/"),
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  start_new_session=True)
        try:
            p.stdin.write(head + os.urandom(512 * 1024))
            p.stdin.flush()
            self.assertTrue(self.wait_guest_tmp("/tmp/intr"),
                            "no temporary file while the copy runs")
            os.killpg(p.pid, signal.SIGINT)     # what a terminal does
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                rc = None
            self.assertIsNotNone(rc, "capsule cp ignored SIGINT")
            err = p.stderr.read()
            self.assertNotEqual(rc, 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        self.assertTrue(ct.wait_for(lambda: self.guest_ls("/tmp/intr") ==
                                    [], 10, interval=0.2),
                        "left behind in /tmp/intr after SIGINT: %r "
                        "(capsule cp exited %d, stderr %r)" %
                        (self.guest_ls("/tmp/intr"), rc, err))

    def test_interrupted_cp_leaves_nothing_on_host(self):
        # Ctrl-C on `capsule cp ID:FILE DIR` halfway: the terminal sends
        # SIGINT to the whole foreground group; no partial file and no
        # temporary may stay on the host.
        self.sh("head -c %d /dev/zero > /tmp/intr-big.bin" %
                (64 * 1024 * 1024))
        h = self.hostdir("intr")
        p = self.daemon.cli_popen("cp", self.g("/tmp/intr-big.bin"), h,
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  start_new_session=True)
        try:
            tmp = ct.wait_for(lambda: [n for n in os.listdir(h)
                                       if n.startswith(".capsule-cp.")],
                              30, interval=0.02)
            self.assertTrue(tmp, "no temporary file while the copy runs; "
                            "found %r" % os.listdir(h))
            os.killpg(p.pid, signal.SIGINT)
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                rc = None
            self.assertIsNotNone(rc, "capsule cp ignored SIGINT")
            err = p.stderr.read()
            self.assertNotEqual(rc, 0)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            for f in (p.stdout, p.stderr):
                f.close()
            self.sh("rm -f /tmp/intr-big.bin")
        self.assertTrue(ct.wait_for(lambda: os.listdir(h) == [], 10),
                        "left behind on the host after SIGINT: %r "
                        "(capsule cp exited %d, stderr %r)" %
                        (os.listdir(h), rc, err))

    # ---- the raw socket: the guest refuses hostile archives ----

    def copy_in(self, path, archive):
        x = ct.Exec(self.proxy, first={"copy": "in", "path": path},
                    timeout=60)
        try:
            # The guest may finish (at the trailer) or refuse (a hostile
            # entry) before it reads our EOF, and the exit line may
            # already have closed the connection: that is no failure.
            try:
                x.stdin(archive)
                x.eof()
            except (BrokenPipeError, ConnectionResetError):
                pass
            return x.wait(60)
        finally:
            x.close()

    def test_raw_copy_in(self):
        # The encoder the hostile cases use makes archives the guest takes.
        self.sh("mkdir -p /tmp/raw")
        r = self.copy_in("/tmp/raw", newc_archive([
            ("ok", 0o40755, b"", T0 + 1),
            ("ok/f", 0o100600, b"payload", T0 + 2),
            ("ok/l", 0o120777, b"f", T0 + 3)]))
        self.assertEqual((r.code, r.exit.get("error"), r.stdout, r.stderr),
                         (0, "", b"", b""), r)
        self.assertEqual(self.guest_manifest("/tmp/raw", "ok"), {
            "ok": ("d", 0o755, T0 + 1, ""),
            "ok/f": ("f", 0o600, T0 + 2,
                     hashlib.sha256(b"payload").hexdigest()),
            "ok/l": ("l", 0o777, T0 + 3, "f")})

    def test_raw_copy_in_hostile(self):
        self.sh("mkdir -p /tmp/hostile/in /tmp/hostile/outside")
        cases = [
            ("dotdot below the top", [
                ("evil", 0o40755, b""),
                ("evil/../escaped", 0o100644, b"x")], "unsafe name"),
            ("dotdot deeper", [
                ("evil", 0o40755, b""),
                ("evil/sub", 0o40755, b""),
                ("evil/sub/../../escaped", 0o100644, b"x")], "unsafe name"),
            ("dotdot as the top", [
                ("..", 0o40755, b""),
                ("../escaped", 0o100644, b"x")], "unsafe name"),
            ("dotdot in the top", [
                ("../escaped", 0o100644, b"x")], "unsafe name"),
            ("absolute", [
                ("/tmp/hostile/escaped", 0o100644, b"x")], "unsafe name"),
            ("outside the top", [
                ("evil", 0o40755, b""),
                ("escaped", 0o100644, b"x")], "unsafe name"),
            ("through a symlink", [
                ("evil", 0o40755, b""),
                ("evil/lnk", 0o120777, b"/tmp/hostile/outside"),
                ("evil/lnk/escaped", 0o100644, b"x")], "evil/lnk"),
        ]
        for what, entries, needle in cases:
            with self.subTest(what):
                r = self.copy_in("/tmp/hostile/in", newc_archive(entries))
                self.assertEqual(r.code, 1, r)
                self.assertIn(needle, r.exit.get("error", ""), r)
                self.assertEqual(r.after_exit, [])
        out = self.sh("find /tmp/hostile / -xdev -name escaped")
        self.assertEqual(out, "", "a hostile archive wrote outside its "
                         "destination")
        self.assertEqual(self.guest_ls("/tmp/hostile/outside"), [])

    def test_zzz_no_leaks(self):
        self.assertNoLeaks()


if __name__ == "__main__":
    ct.main()
