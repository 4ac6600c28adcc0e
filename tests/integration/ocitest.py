#!/usr/bin/env python3
"""ocitest.py — OCI test images for capsule's image tests, built from
Python (tarfile, hashlib, json; stdlib only).

An image is a list of layers, each a list of entries:

    img = Image([
        Layer(base_dirs() + busybox_entries()),
        Layer([File("/data/a", b"hi\\n", mode=0o640, uid=1000, gid=1000),
               Dir("/data/d"), Symlink("/data/l", "a"),
               Hardlink("/data/h", "/data/a"), Whiteout("/etc/gone"),
               Opaque("/var/cache")], compress=None),
    ], env=["K=V"], working_dir="/data", user="1000",
       entrypoint=["/bin/sh", "-c"], cmd=["echo hi"], ref_name="test:v1")
    built = img.write_layout(DIR)       # an OCI image layout
    built.config_digest                 # "sha256:..." (the image id)
    oci_archive(built, FILE)            # a tar of that layout
    docker_archive(built, FILE)         # what `docker save` writes

Entries take the path inside the image; a leading "/" is dropped, nothing
else is normalised, so hostile names ("../x") go into the tar as given.
Everything is deterministic (fixed mtimes, gzip without a time stamp)
except RandomFile without a seed: the same Image gives the same digests.

Also: corrupt_blob / truncate_blob (damage a blob, keeping its name),
hostile layers (escape_entries, symlink_escape_layers,
hardlink_escape_entries), a registry (Registry: Debian's docker-registry
on 127.0.0.1) and skopeo_push; and the images test_image.py boots:
fs_image (every kind of entry; FS_EXPECT says what its root file system
is, STAT_SCRIPT describes it from inside, fs_differences compares) and
noshell_image.

    python3 tests/integration/ocitest.py       (as root)

checks all of this against the real tools (skopeo, umoci, docker-registry,
and the images' own busybox under chroot) and prints what the tools say
about damaged and hostile images. What it found about skopeo 1.9:

- `skopeo copy docker-archive:X oci:Y` converts the manifest and
  re-marshals the config: the image id changes. `--preserve-digests`
  keeps it but leaves a docker manifest umoci cannot unpack; `dir:` keeps
  it; `skopeo inspect --raw --config SRC` gives the original config bytes.
- `oci-archive:` sources are untarred into /var/tmp whatever TMPDIR says,
  and a killed skopeo leaves them there; `skopeo --tmpdir DIR` moves them.
- a damaged layer: "Digest did not match, expected sha256:<layer digest>,
  got sha256:..." (from a docker archive, the layer's diff_id); umoci alone
  may say only "archive/tar: invalid tar header".
"""
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

import capsuletest as ct

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = MT_LAYER + "+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

MTIME = 1700000000                  # every entry's mtime
CREATED = "2023-11-14T22:13:20Z"    # the config's and history's
BUSYBOX = "/bin/busybox"            # static (package busybox-static)
SKOPEO = "/usr/bin/skopeo"
UMOCI = "/usr/bin/umoci"
REGISTRY = "/usr/bin/docker-registry"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
         "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}
ARCH = _ARCH.get(os.uname().machine, os.uname().machine)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return "sha256:" + h.hexdigest()
            h.update(b)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---- entries ----

class Entry:
    """One tar member. Subclasses set the type; data is bytes or a
    callable returning a file object (read from, size bytes)."""

    type = tarfile.REGTYPE

    def __init__(self, path, mode, uid=0, gid=0, linkname="", size=0,
                 opener=None, mtime=MTIME):
        self.name = path.lstrip("/") if path.startswith("/") else path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.linkname = linkname
        self.size = size
        self.opener = opener
        self.mtime = mtime

    def tarinfo(self):
        ti = tarfile.TarInfo(self.name)
        ti.type = self.type
        ti.mode = self.mode
        ti.uid, ti.gid = self.uid, self.gid
        ti.uname = ti.gname = ""
        ti.mtime = self.mtime
        ti.linkname = self.linkname
        ti.size = self.size if self.type == tarfile.REGTYPE else 0
        return ti

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.name)


class File(Entry):
    def __init__(self, path, data=b"", mode=0o644, uid=0, gid=0):
        if isinstance(data, str):
            data = data.encode()
        super().__init__(path, mode, uid, gid, size=len(data),
                         opener=lambda: io.BytesIO(data))
        self.data = data


class HostFile(Entry):
    """A copy of a file of this machine (its mode unless mode is given)."""

    def __init__(self, path, src, mode=None, uid=0, gid=0):
        st = os.stat(src)
        super().__init__(path, stat.S_IMODE(st.st_mode) if mode is None
                         else mode, uid, gid, size=st.st_size,
                         opener=lambda: open(src, "rb"))
        self.src = src


class _RandomReader:
    def __init__(self, size, seed):
        self.left = size
        self.rng = random.Random(seed) if seed is not None else None

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        n = min(n, 1 << 20)
        self.left -= n
        if self.rng is not None:
            return self.rng.randbytes(n)
        return os.urandom(n)

    def close(self):
        pass


class RandomFile(Entry):
    """size bytes of random data, streamed (never all in memory); with a
    seed, the same bytes every time."""

    def __init__(self, path, size, mode=0o644, uid=0, gid=0, seed=None):
        super().__init__(path, mode, uid, gid, size=size,
                         opener=lambda: _RandomReader(size, seed))


class Dir(Entry):
    type = tarfile.DIRTYPE

    def __init__(self, path, mode=0o755, uid=0, gid=0):
        super().__init__(path, mode, uid, gid)


class Symlink(Entry):
    type = tarfile.SYMTYPE

    def __init__(self, path, target, uid=0, gid=0):
        super().__init__(path, 0o777, uid, gid, linkname=target)


class Hardlink(Entry):
    """A hard link to target, a path in the same layer (a leading "/" is
    dropped, as tar writers do)."""

    type = tarfile.LNKTYPE

    def __init__(self, path, target, uid=0, gid=0, mode=0o644):
        super().__init__(path, mode, uid, gid,
                         linkname=target[1:] if target.startswith("/")
                         else target)


class Whiteout(File):
    """Deletes path (a file or a whole directory) of the layers below."""

    def __init__(self, path):
        d, base = os.path.split(path.rstrip("/"))
        super().__init__(os.path.join(d, ".wh." + base), b"", 0o644)


class Opaque(File):
    """Hides everything the layers below have in directory path."""

    def __init__(self, path):
        super().__init__(os.path.join(path.rstrip("/"), ".wh..wh..opq"),
                         b"", 0o644)


# ---- ready-made entries ----

def base_dirs():
    """What a small distribution image has: /etc, /tmp, /root, ..."""
    return [Dir("/bin"), Dir("/etc"), Dir("/tmp", 0o1777),
            Dir("/root", 0o700), Dir("/home"), Dir("/proc", 0o555),
            Dir("/sys", 0o555), Dir("/dev"), Dir("/var"),
            Dir("/var/tmp", 0o1777), Dir("/usr"), Dir("/usr/bin")]


def busybox_applets():
    p = subprocess.run([BUSYBOX, "--list"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, check=True)
    return sorted(a for a in p.stdout.decode().split()
                  if a and "/" not in a and a != "busybox")


def busybox_entries(bindir="/bin", applets=None):
    """/bin/busybox (a copy of this machine's static one) and a relative
    symlink to it for every applet (or for applets, if given): a
    userland with /bin/sh."""
    if applets is None:
        applets = busybox_applets()
    out = [HostFile(os.path.join(bindir, "busybox"), BUSYBOX, 0o755)]
    out += [Symlink(os.path.join(bindir, a), "busybox") for a in applets]
    return out


def passwd_entries(users=(("app", 1000, 1000, "/home/app"),)):
    """/etc/passwd and /etc/group with root and users (name, uid, gid,
    home); each home directory, owned by its user, mode 0750."""
    pw = ["root:x:0:0:root:/root:/bin/sh"]
    gr = ["root:x:0:"]
    out = []
    for name, uid, gid, home in users:
        pw.append("%s:x:%d:%d:%s:%s:/bin/sh" % (name, uid, gid, name, home))
        gr.append("%s:x:%d:" % (name, gid))
        out.append(Dir(home, 0o750, uid, gid))
    return [File("/etc/passwd", "\n".join(pw) + "\n"),
            File("/etc/group", "\n".join(gr) + "\n")] + out


# busybox picks the applet from argv[0]'s basename and takes any name that
# starts with "busybox" for itself ("/bin/bb echo" says "bb: applet not
# found"): the no-shell image's busybox is called this.
NOSHELL_BIN = "/bin/busybox-nosh"


def noshell_entries(name=NOSHELL_BIN):
    """An image with no shell: the static busybox under another name and
    nothing else (no /bin/sh, /etc/passwd or /tmp)."""
    return [Dir(os.path.dirname(name)), HostFile(name, BUSYBOX, 0o755)]


def deep_escape(target, depth=40):
    """A relative name that, resolved from any directory less than depth
    levels deep, is the absolute path target: "../../..(depth)/target"."""
    return "../" * depth + target.lstrip("/")


def escape_entries(target_dir, token):
    """Entries whose names climb out of the root: "../TOKEN-1",
    "a/../../TOKEN-2", and the same climbing to target_dir (an absolute
    directory of the test's) from any depth: a correct unpacker writes
    none of them outside its root."""
    return [File("../%s-1" % token, b"escaped\n"),
            Dir("a"),
            File("a/../../%s-2" % token, b"escaped\n"),
            File(deep_escape(os.path.join(target_dir, token + "-3")),
                 b"escaped\n"),
            File("a/" + deep_escape(os.path.join(target_dir, token + "-4")),
                 b"escaped\n")]


def symlink_escape_layers(outside_dir, token, same_layer=False,
                          compress="gzip"):
    """An absolute symlink "evil -> outside_dir" and a relative one
    climbing to it, then files written through both ("evil/TOKEN", ...):
    in a later layer, or with same_layer in the same one. A correct
    unpacker leaves outside_dir as it was."""
    links = [Symlink("evil", outside_dir),
             Symlink("evil2", deep_escape(outside_dir))]
    writes = [File("evil/%s-pwned" % token, b"pwned\n"),
              File("evil2/%s-pwned2" % token, b"pwned\n")]
    if same_layer:
        return [Layer(links + writes, compress=compress)]
    return [Layer(links, compress=compress), Layer(writes, compress=compress)]


def hardlink_escape_entries(host_file):
    """A hard link whose target is host_file (an absolute path of this
    machine) reached by climbing out: an unpacker that follows it links
    the host's file into the image (its link count goes up)."""
    return [Hardlink("leak", deep_escape(host_file))]


# ---- layers and images ----

class _HashWriter:
    """A write-only file that counts and hashes what passes through."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b):
        self.f.write(b)
        self.h.update(b)
        self.size += len(b)
        return len(b)

    def flush(self):
        pass

    def digest(self):
        return "sha256:" + self.h.hexdigest()


class Layer:
    """A layer: its entries in order; compress "gzip" or None (a plain
    tar, media type ...layer.v1.tar)."""

    def __init__(self, entries, compress="gzip", level=6):
        if compress not in ("gzip", None):
            raise ValueError("compress: gzip or None")
        self.entries = list(entries)
        self.compress = compress
        self.level = level

    @property
    def media_type(self):
        return MT_LAYER_GZIP if self.compress == "gzip" else MT_LAYER

    def write(self, f):
        """Writes the blob to f; returns (digest, diff_id, size)."""
        blob = _HashWriter(f)
        gz = None
        if self.compress == "gzip":
            gz = gzip.GzipFile(filename="", fileobj=blob, mode="wb",
                               compresslevel=self.level, mtime=0)
            diff = _HashWriter(gz)
        else:
            diff = blob
        tar = tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT)
        for e in self.entries:
            ti = e.tarinfo()
            if ti.type == tarfile.REGTYPE:
                src = e.opener()
                try:
                    tar.addfile(ti, src)
                finally:
                    src.close()
            else:
                tar.addfile(ti)
        tar.close()
        if gz is not None:
            gz.close()
        return blob.digest(), diff.digest(), blob.size


class LayerBlob:
    def __init__(self, digest, diff_id, size, media_type, path):
        self.digest, self.diff_id, self.size = digest, diff_id, size
        self.media_type, self.path = media_type, path

    @property
    def hex(self):
        return self.digest.split(":", 1)[1]

    def __repr__(self):
        return "LayerBlob(%s, %s, %d)" % (self.digest, self.media_type,
                                          self.size)


class Built:
    """An image written as an OCI layout: where, and every digest."""

    def __init__(self, dir, ref_name, config, config_bytes, config_digest,
                 manifest_digest, layers):
        self.dir = dir
        self.ref_name = ref_name
        self.config = config
        self.config_bytes = config_bytes
        self.config_digest = config_digest      # the image id
        self.manifest_digest = manifest_digest
        self.layers = layers

    @property
    def id(self):
        return self.config_digest

    def blob_path(self, digest):
        return os.path.join(self.dir, "blobs", *digest.split(":", 1))

    def ref(self):
        """skopeo's name for it: "oci:DIR:REF" (or "oci:DIR")."""
        return "oci:%s:%s" % (self.dir, self.ref_name) if self.ref_name \
            else "oci:%s" % self.dir


class Image:
    """An image to write: layers and the config fields (absent when None);
    label goes into the config (different labels, different image ids for
    the same layers)."""

    def __init__(self, layers, env=None, working_dir=None, user=None,
                 entrypoint=None, cmd=None, ref_name=None, label=None,
                 arch=ARCH):
        self.layers = list(layers)
        self.env, self.working_dir, self.user = env, working_dir, user
        self.entrypoint, self.cmd = entrypoint, cmd
        self.ref_name = ref_name
        self.label = label
        self.arch = arch

    def expected_config(self):
        """The "config" object of the spec's IMAGE for this image."""
        out = {}
        for key, v in (("env", self.env), ("working_dir", self.working_dir),
                       ("user", self.user), ("entrypoint", self.entrypoint),
                       ("cmd", self.cmd)):
            if v is not None:
                out[key] = v
        return out

    def write_layout(self, path):
        """Writes an OCI image layout at path (a new or empty directory)."""
        blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(blobs, exist_ok=True)
        layers = []
        for i, layer in enumerate(self.layers):
            tmp = os.path.join(blobs, ".layer-%d.tmp" % i)
            with open(tmp, "wb") as f:
                digest, diff_id, size = layer.write(f)
            dst = os.path.join(blobs, digest.split(":", 1)[1])
            os.replace(tmp, dst)
            layers.append(LayerBlob(digest, diff_id, size, layer.media_type,
                                    dst))
        cfg = {}
        for key, v in (("Env", self.env), ("WorkingDir", self.working_dir),
                       ("User", self.user), ("Entrypoint", self.entrypoint),
                       ("Cmd", self.cmd)):
            if v is not None:
                cfg[key] = v
        if self.label is not None:
            cfg["Labels"] = {"capsule.test": self.label}
        config = {
            "created": CREATED, "architecture": self.arch, "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers",
                       "diff_ids": [l.diff_id for l in layers]},
            "history": [{"created": CREATED,
                         "created_by": "ocitest layer %d" % i}
                        for i in range(len(layers))]}
        config_bytes = canonical_json(config)
        config_digest = _put_blob(blobs, config_bytes)
        manifest = {
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": l.media_type, "digest": l.digest,
                        "size": l.size} for l in layers]}
        manifest_bytes = canonical_json(manifest)
        manifest_digest = _put_blob(blobs, manifest_bytes)
        desc = {"mediaType": MT_MANIFEST, "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": self.arch, "os": "linux"}}
        if self.ref_name is not None:
            desc["annotations"] = {REF_NAME: self.ref_name}
        index = {"schemaVersion": 2, "mediaType": MT_INDEX,
                 "manifests": [desc]}
        _write(os.path.join(path, "index.json"), canonical_json(index))
        _write(os.path.join(path, "oci-layout"),
               canonical_json({"imageLayoutVersion": "1.0.0"}))
        return Built(path, self.ref_name, config, config_bytes,
                     config_digest, manifest_digest, layers)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _put_blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    _write(os.path.join(blobs, d), data)
    return "sha256:" + d


# ---- archives ----

def _tar_add_bytes(tar, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
    ti.uname = ti.gname = ""
    tar.addfile(ti, io.BytesIO(data))


def _tar_add_dir(tar, name):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
    ti.uname = ti.gname = ""
    tar.addfile(ti)


def _tar_add_path(tar, name, path):
    st = os.stat(path)
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = st.st_size, 0o644, MTIME
    ti.uname = ti.gname = ""
    with open(path, "rb") as f:
        tar.addfile(ti, f)


def oci_archive(built, out_path):
    """An OCI archive: a tar of the layout (oci-layout, index.json,
    blobs/sha256/...), as `skopeo copy ... oci-archive:` makes."""
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        _tar_add_path(tar, "oci-layout", os.path.join(built.dir,
                                                      "oci-layout"))
        _tar_add_path(tar, "index.json", os.path.join(built.dir,
                                                      "index.json"))
        _tar_add_dir(tar, "blobs")
        _tar_add_dir(tar, "blobs/sha256")
        blobs = os.path.join(built.dir, "blobs", "sha256")
        for name in sorted(os.listdir(blobs)):
            _tar_add_path(tar, "blobs/sha256/" + name,
                          os.path.join(blobs, name))
    return out_path


def _copy_uncompressed(src_path, media_type, dst):
    with open(src_path, "rb") as raw:
        src = gzip.GzipFile(fileobj=raw, mode="rb") \
            if media_type == MT_LAYER_GZIP else raw
        shutil.copyfileobj(src, dst, 1 << 20)


def docker_archive(built, out_path, repo_tag="capsule-test/image:latest",
                   damage=None):
    """What `docker save` writes (the pre-25 layout skopeo reads as
    docker-archive:): manifest.json, <config hex>.json (the very bytes of
    the OCI config, so the image id is the same), <id>/layer.tar
    (uncompressed), <id>/VERSION, <id>/json, repositories. damage
    {layer index: "corrupt" or "truncate"} damages that layer.tar (a
    docker archive names layers by path, not digest: only the config's
    diff_ids can tell)."""
    damage = damage or {}
    cfg_name = built.config_digest.split(":", 1)[1] + ".json"
    ids, parent = [], ""
    for l in built.layers:
        lid = hashlib.sha256(("%s %s" % (parent, l.diff_id)).encode()
                             ).hexdigest()
        ids.append(lid)
        parent = lid
    repo, _, tag = repo_tag.rpartition(":")
    manifest = [{"Config": cfg_name, "RepoTags": [repo_tag],
                 "Layers": ["%s/layer.tar" % i for i in ids]}]
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, (lid, l) in enumerate(zip(ids, built.layers)):
            _tar_add_dir(tar, lid)
            _tar_add_bytes(tar, lid + "/VERSION", b"1.0")
            v1 = {"id": lid, "created": CREATED, "os": "linux"}
            if i:
                v1["parent"] = ids[i - 1]
            _tar_add_bytes(tar, lid + "/json", canonical_json(v1))
            # The uncompressed tar, through a temporary file next to the
            # archive (it may be large).
            tmp = out_path + ".layer.tmp"
            try:
                with open(tmp, "wb") as f:
                    _copy_uncompressed(l.path, l.media_type, f)
                if damage.get(i) == "corrupt":
                    _flip(tmp, None, 16)
                elif damage.get(i) == "truncate":
                    os.truncate(tmp, os.path.getsize(tmp) // 2)
                _tar_add_path(tar, lid + "/layer.tar", tmp)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        _tar_add_bytes(tar, cfg_name, built.config_bytes)
        _tar_add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _tar_add_bytes(tar, "repositories",
                       json.dumps({repo: {tag: ids[-1]}}).encode())
    return out_path


# ---- damage ----

def corrupt_blob(path_or_built, digest, offset=None, count=16):
    """Flips count bytes of blob digest in the middle (or at offset),
    keeping its name and size: its content no longer matches its
    digest."""
    path = path_or_built.blob_path(digest) if isinstance(
        path_or_built, Built) else os.path.join(
            path_or_built, "blobs", *digest.split(":", 1))
    _flip(path, offset, count)
    return path


def _flip(path, offset, count):
    size = os.path.getsize(path)
    if offset is None:
        offset = max(0, size // 2 - count // 2)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(count)
        f.seek(offset)
        f.write(bytes(x ^ 0xFF for x in b))


def truncate_blob(path_or_built, digest, keep=None):
    """Cuts blob digest to keep bytes (default: half), keeping its name."""
    path = path_or_built.blob_path(digest) if isinstance(
        path_or_built, Built) else os.path.join(
            path_or_built, "blobs", *digest.split(":", 1))
    size = os.path.getsize(path)
    os.truncate(path, size // 2 if keep is None else keep)
    return path


# ---- a registry on loopback ----



def _port_open(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Registry:
    """Debian's docker-registry (distribution 2.x) on 127.0.0.1 over plain
    HTTP without auth, its storage and config under dir. stop() ends it
    (SIGTERM, then SIGKILL) and waits for it."""

    def __init__(self, dir):
        self.dir = dir
        self.port = None
        self.proc = None
        self.log_path = os.path.join(dir, "registry.log")

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=30):
        if not os.access(REGISTRY, os.X_OK):
            raise AssertionError("%s not found: apt-get install "
                                 "docker-registry" % REGISTRY)
        storage = os.path.join(self.dir, "storage")
        os.makedirs(storage, exist_ok=True)
        for attempt in range(5):
            self.port = ct.free_port()
            conf = os.path.join(self.dir, "config.yml")
            _write(conf, (
                "version: 0.1\n"
                "log:\n"
                "  level: info\n"
                "storage:\n"
                "  filesystem:\n"
                "    rootdirectory: %s\n"
                "  delete:\n"
                "    enabled: true\n"
                "http:\n"
                "  addr: 127.0.0.1:%d\n"
                "  secret: capsule-test-only\n" % (storage, self.port)
            ).encode())
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(
                    [REGISTRY, "serve", conf], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, cwd=self.dir,
                    env={"PATH": "/usr/bin:/bin", "HOME": self.dir})
            finally:
                log.close()
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                if _port_open(self.port):
                    return self
                time.sleep(0.05)
            self.stop()
            # Lost the port to someone else between free_port and bind:
            # try another; anything else is a failure.
        raise AssertionError("docker-registry did not listen on 127.0.0.1:"
                             "%s:\n%s" % (self.port, self.log_text()))

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError as e:
            return "(no log: %s)" % e

    def stop(self, timeout=10):
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        else:
            p.wait()


def skopeo(*args, timeout=300):
    """Runs skopeo; returns the CompletedProcess (text)."""
    return subprocess.run([SKOPEO] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)


def skopeo_push(built, ref):
    """Copies the layout to ref ("127.0.0.1:PORT/repo:tag") over plain
    HTTP; raises on failure."""
    p = skopeo("copy", "--dest-tls-verify=false", built.ref(),
               "docker://" + ref)
    if p.returncode != 0:
        raise AssertionError("skopeo copy %s docker://%s failed (%d): %s" %
                             (built.ref(), ref, p.returncode, p.stderr))
    return p


# ---- reading a layout back ----

def read_layout(path, ref_name=None):
    """(manifest digest, config digest, [layer digests]) of the image in
    the layout at path (the one annotated ref_name, or the only one)."""
    with open(os.path.join(path, "index.json"), "rb") as f:
        index = json.load(f)
    ms = index["manifests"]
    if ref_name is not None:
        ms = [m for m in ms
              if m.get("annotations", {}).get(REF_NAME) == ref_name]
    if len(ms) != 1:
        raise AssertionError("%s: %d manifests named %r" %
                             (path, len(ms), ref_name))
    md = ms[0]["digest"]
    with open(os.path.join(path, "blobs", *md.split(":", 1)), "rb") as f:
        m = json.load(f)
    return md, m["config"]["digest"], [l["digest"] for l in m["layers"]]


# ---- the images test_image.py boots; what their root file systems are ----

FS_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello from the image",
          "K=image"]
FS_WORKDIR = "/data"
FS_USER = "app"                     # uid 1000 in the image's /etc/passwd
FS_ENTRYPOINT = ["/bin/sh", "-c"]
FS_CMD = ['echo "entry:$GREETING:$(id -un):$(pwd)"']
FS_DEFAULT_OUTPUT = b"entry:hello from the image:app:/data\n"


def fs_image(ref_name="capsule-test/fs:v1", label=None):
    """A busybox userland over three layers (gzip, plain tar, gzip) that
    has every kind of entry: owners, modes (setuid, sticky, 0600),
    whiteouts of a file and of a directory, an opaque directory, a hard
    link, relative and absolute symlinks, a file replaced with another
    owner, a directory re-declared with another mode, parents left
    implicit; and every config default (Env, WorkingDir, User by name,
    Entrypoint, Cmd). FS_EXPECT says what its root file system is."""
    l1 = Layer(base_dirs() + busybox_entries() + passwd_entries() + [
        Dir("/data"),
        File("/data/owned", "uid 1000\n", 0o640, 1000, 1000),
        File("/data/secret", "root only\n", 0o600),
        File("/data/suid", "setuid\n", 0o4755),
        Dir("/data/sticky", 0o1777),
        File("/data/gone", "whited out\n"),
        Dir("/data/gonedir"), File("/data/gonedir/f", "x\n"),
        Dir("/data/opq"), File("/data/opq/old1", "1\n"),
        File("/data/opq/old2", "2\n"),
        File("/data/replaced", "v1\n"),
        Dir("/data/redecl"),
        File("/data/hl1", "hard\n", 0o644, 1000, 1000),
        Hardlink("/data/hl2", "/data/hl1", 1000, 1000),
        Symlink("/data/rel", "hl1"),
        Symlink("/data/abs", "/etc/passwd")])
    l2 = Layer([Whiteout("/data/gone"), Whiteout("/data/gonedir"),
                Opaque("/data/opq"), File("/data/opq/new", "new\n"),
                File("/data/replaced", "v2\n", 0o600, 1000, 1000),
                Dir("/data/redecl", 0o700, 1000, 1000)], compress=None)
    l3 = Layer([File("deep/er/file", "implicit parents\n")])
    return Image([l1, l2, l3], env=FS_ENV, working_dir=FS_WORKDIR,
                 user=FS_USER, entrypoint=FS_ENTRYPOINT, cmd=FS_CMD,
                 ref_name=ref_name, label=label)


_R, _D, _L = stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
# path (absolute, in the image) -> (type, permission bits, uid, gid,
# content (regular file) or target (symlink) or None)
FS_EXPECT = {
    "/bin/sh": (_L, 0o777, 0, 0, b"busybox"),
    "/bin/busybox": (_R, 0o755, 0, 0, None),
    "/etc/passwd": (_R, 0o644, 0, 0,
                    b"root:x:0:0:root:/root:/bin/sh\n"
                    b"app:x:1000:1000:app:/home/app:/bin/sh\n"),
    "/home/app": (_D, 0o750, 1000, 1000, None),
    "/data": (_D, 0o755, 0, 0, None),
    "/data/owned": (_R, 0o640, 1000, 1000, b"uid 1000\n"),
    "/data/secret": (_R, 0o600, 0, 0, b"root only\n"),
    "/data/suid": (_R, 0o4755, 0, 0, b"setuid\n"),
    "/data/sticky": (_D, 0o1777, 0, 0, None),
    "/data/opq": (_D, 0o755, 0, 0, None),
    "/data/opq/new": (_R, 0o644, 0, 0, b"new\n"),
    "/data/replaced": (_R, 0o600, 1000, 1000, b"v2\n"),
    "/data/redecl": (_D, 0o700, 1000, 1000, None),
    "/data/hl1": (_R, 0o644, 1000, 1000, b"hard\n"),
    "/data/hl2": (_R, 0o644, 1000, 1000, b"hard\n"),
    "/data/rel": (_L, 0o777, 0, 0, b"hl1"),
    "/data/abs": (_L, 0o777, 0, 0, b"/etc/passwd"),
    "/deep/er/file": (_R, 0o644, 0, 0, b"implicit parents\n"),
}
FS_ABSENT = ["/data/gone", "/data/gonedir", "/data/opq/old1",
             "/data/opq/old2", "/data/.wh.gone", "/data/.wh.gonedir",
             "/data/opq/.wh..wh..opq"]
FS_HARDLINKS = [("/data/hl1", "/data/hl2")]     # one inode, 2 links
FS_LISTINGS = {"/data/opq": ["new"]}


def noshell_image(ref_name=None, label=None, user="1000"):
    """No shell and no config but User: NOSHELL_BIN (a static busybox) and
    nothing else: no /bin/sh, /etc/passwd, /tmp, Entrypoint or Cmd."""
    return Image([Layer(noshell_entries())], user=user, ref_name=ref_name,
                 label=label)


# A shell script (busybox sh) that describes paths ($1...) one a line:
# "PATH - " if it does not exist, else "PATH RAWMODE(hex) UID GID NLINK
# INODE DATA" where DATA is a symlink's target, a small regular file's
# bytes in hex ("." if empty), or "-". Run in the guest; parse_stat_lines
# reads it.
STAT_SCRIPT = r'''
for p; do
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "$p - "; continue; fi
  s=$(stat -c '%f %u %g %h %i' "$p") || exit 1
  if [ -L "$p" ]; then d=$(readlink "$p")
  elif [ -f "$p" ] && [ "$(stat -c %s "$p")" -lt 4096 ]; then
    d=$(od -An -v -tx1 "$p" | tr -d ' \n'); [ -n "$d" ] || d=.
  else d=-; fi
  echo "$p $s $d"
done
'''


def parse_stat_lines(text):
    """{path: None (absent) or (type, mode, uid, gid, nlink, ino, data)}
    from STAT_SCRIPT's output; data as FS_EXPECT has it."""
    out = {}
    for line in text.splitlines():
        f = line.split(" ")
        if len(f) >= 2 and f[1] == "-":
            out[f[0]] = None
            continue
        if len(f) != 7:
            raise AssertionError("bad stat line %r" % line)
        p, raw, uid, gid, nlink, ino, d = f
        m = int(raw, 16)
        kind = stat.S_IFMT(m)
        if kind == _L:
            data = d.encode()
        elif kind == _R and d != "-":
            data = b"" if d == "." else bytes.fromhex(d)
        else:
            data = None
        out[p] = (kind, stat.S_IMODE(m), int(uid), int(gid), int(nlink),
                  int(ino), data)
    return out


def fs_differences(seen):
    """What in seen (parse_stat_lines of STAT_SCRIPT run on FS_EXPECT's
    and FS_ABSENT's paths) differs from fs_image(): a list of strings,
    empty when all is as expected."""
    bad = []
    for p, (kind, mode, uid, gid, data) in sorted(FS_EXPECT.items()):
        x = seen.get(p)
        if x is None:
            bad.append("%s: missing" % p)
            continue
        got = (x[0], x[1], x[2], x[3]) + ((x[6],) if data is not None
                                          else ())
        want = (kind, mode, uid, gid) + ((data,) if data is not None
                                         else ())
        if got != want:
            bad.append("%s: %s, not %s" % (p, _fmt(got), _fmt(want)))
    for p in FS_ABSENT:
        if seen.get(p, "unasked") is not None:
            bad.append("%s: %s, should be absent" % (p, seen.get(p)))
    for a, b in FS_HARDLINKS:
        x, y = seen.get(a), seen.get(b)
        if not (x and y and x[5] == y[5] and x[4] == 2 and y[4] == 2):
            bad.append("%s and %s: not one inode with 2 links: %s, %s" %
                       (a, b, x and x[4:6], y and y[4:6]))
    return bad


def _fmt(t):
    kind = {_R: "file", _D: "dir", _L: "symlink"}.get(t[0], oct(t[0]))
    return "(%s, %s, %d:%d%s)" % (kind, oct(t[1]), t[2], t[3],
                                  ", %r" % (t[4],) if len(t) > 4 else "")


def fs_paths():
    return sorted(FS_EXPECT) + FS_ABSENT


# ---- self-check against the real tools ----

def _check(cond, what):
    print("  %s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        _check.failed += 1


_check.failed = 0


def _umoci_unpack(layout, ref, bundle):
    return subprocess.run([UMOCI, "unpack", "--image", "%s:%s" % (layout,
                                                                  ref),
                           bundle], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=300, text=True)


def _chroot(root, argv, env=None):
    return subprocess.run(["/usr/sbin/chroot", root] + argv,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60,
                          env=env or {"PATH": "/bin"})


def _names(root):
    """Every path under root, relative, without following links."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def _selfcheck():
    import capsuletest
    for tool in (SKOPEO, UMOCI, REGISTRY, BUSYBOX):
        if not os.access(tool, os.X_OK):
            sys.exit("%s missing: apt-get install -y skopeo umoci "
                     "docker-registry busybox-static" % tool)
    if os.geteuid() != 0:
        sys.exit("run as root (umoci unpack keeps owners only as root)")
    top = tempfile.mkdtemp(prefix="ocitest-", dir="/tmp")
    messages = {}
    reg = None
    try:
        img = fs_image()
        b = img.write_layout(os.path.join(top, "layout"))
        print("fs_image %s (%d layers: %s)" % (
            b.config_digest, len(b.layers),
            ", ".join(l.media_type.rsplit(".", 1)[1] for l in b.layers)))
        _check(sha256_file(b.blob_path(b.config_digest)) == b.config_digest,
               "config blob digest")
        _check(img.write_layout(os.path.join(top, "again")).config_digest ==
               b.config_digest, "the same Image gives the same digest")

        # 1. skopeo reads all three formats; the image id survives.
        arch = oci_archive(b, os.path.join(top, "img.tar"))
        darch = docker_archive(b, os.path.join(top, "docker.tar"),
                               "selfcheck/img:v1")
        for i, src in enumerate([b.ref(), "oci-archive:%s:%s" % (
                arch, b.ref_name), "docker-archive:%s" % darch]):
            tr = src.split(":")[0]
            dst = os.path.join(top, "copy%d" % i)
            p = skopeo("copy", src, "oci:%s:x" % dst)
            _check(p.returncode == 0, "skopeo copy %s: oci: %s" % (
                tr, p.stderr.strip()[-300:]))
            if p.returncode == 0:
                cfg = read_layout(dst, "x")[1]
                messages["image id after `skopeo copy %s: oci:`" % tr] = \
                    "%s (%s)" % (cfg, "the original" if cfg ==
                                 b.config_digest else "NOT the original %s"
                                 % b.config_digest)
                p = _umoci_unpack(dst, "x", os.path.join(top, "bundle%d" % i))
                _check(p.returncode == 0, "  umoci unpacks the copy: %s" %
                       p.stderr.strip()[-300:])
            p = skopeo("copy", "--preserve-digests", src, "oci:%s:x" % (
                dst + "-pd"))
            ok = p.returncode == 0 and read_layout(
                dst + "-pd", "x")[1] == b.config_digest
            _check(ok, "  skopeo copy --preserve-digests %s: oci: keeps the "
                   "image id" % tr)
            if ok:
                p = _umoci_unpack(dst + "-pd", "x", dst + "-pd-bundle")
                messages["umoci unpack after `skopeo copy --preserve-digests "
                         "%s: oci:`" % tr] = "exit %d %s" % (
                    p.returncode, p.stderr.strip() or "(ok)")
            p = skopeo("copy", src, "dir:%s" % (dst + "-dir"))
            with open(os.path.join(dst + "-dir", "manifest.json")) as f:
                cfg = json.load(f)["config"]["digest"]
            _check(p.returncode == 0 and cfg == b.config_digest,
                   "  skopeo copy %s: dir: keeps the image id" % tr)
            p = skopeo("inspect", "--raw", "--config", src)
            _check(p.returncode == 0 and "sha256:" + hashlib.sha256(
                p.stdout.encode()).hexdigest() == b.config_digest,
                "  skopeo inspect --raw --config %s: is the config" % tr)
        p = skopeo("inspect", "--config", b.ref())
        _check(p.returncode == 0 and json.loads(p.stdout)["config"] == {
            "Env": FS_ENV, "WorkingDir": FS_WORKDIR, "User": FS_USER,
            "Entrypoint": FS_ENTRYPOINT, "Cmd": FS_CMD},
            "skopeo inspect --config: Env, WorkingDir, User, Entrypoint, "
            "Cmd")

        # 2. umoci unpack: the root file system FS_EXPECT describes, seen
        # through the image's own busybox (the script the guest runs).
        bundle = os.path.join(top, "bundle")
        p = _umoci_unpack(b.dir, b.ref_name, bundle)
        _check(p.returncode == 0, "umoci unpack: %s" % p.stderr.strip())
        rootfs = os.path.join(bundle, "rootfs")
        p = _chroot(rootfs, ["/bin/sh", "-c", STAT_SCRIPT, "sh"] +
                    fs_paths())
        _check(p.returncode == 0, "STAT_SCRIPT in the image's busybox: %s" %
               p.stderr.decode().strip())
        bad = fs_differences(parse_stat_lines(p.stdout.decode()))
        _check(not bad, "the unpacked tree is FS_EXPECT: %s" % (bad or "yes"))
        # (chroot: as root, in /; the guest runs it as app in /data)
        p = _chroot(rootfs, FS_ENTRYPOINT + FS_CMD,
                    env=dict(e.split("=", 1) for e in FS_ENV))
        _check(p.returncode == 0 and p.stdout ==
               b"entry:hello from the image:root:/\n",
               "Entrypoint+Cmd run in the image: %r %r" % (p.stdout,
                                                            p.stderr))
        p = _chroot(rootfs, ["/bin/su", "-s", "/bin/sh", "-c",
                             "cd %s && %s" % (FS_WORKDIR, FS_CMD[0]),
                             FS_USER], env=dict(e.split("=", 1)
                                                for e in FS_ENV))
        _check(p.returncode == 0 and p.stdout == FS_DEFAULT_OUTPUT,
               "as %s in %s it prints FS_DEFAULT_OUTPUT: %r %r" % (
                   FS_USER, FS_WORKDIR, p.stdout, p.stderr))
        _check(_names(os.path.join(rootfs, "data", "opq")) == ["new"],
               "opaque dir holds only the upper layer's file")
        for i in (0, 1, 2):
            r2 = os.path.join(top, "bundle%d" % i, "rootfs")
            if os.path.isdir(r2):
                p = _chroot(r2, ["/bin/sh", "-c", STAT_SCRIPT, "sh"] +
                            fs_paths())
                seen = parse_stat_lines(p.stdout.decode())
                bad = fs_differences(seen)
                _check(not bad and _names(r2) == _names(rootfs),
                       "  the copy from format %d unpacks to the same tree %s"
                       % (i, bad or ""))

        # The image with no shell.
        ns = noshell_image(ref_name="ns").write_layout(
            os.path.join(top, "noshell"))
        p = _umoci_unpack(ns.dir, "ns", os.path.join(top, "nsb"))
        nsroot = os.path.join(top, "nsb", "rootfs")
        _check(p.returncode == 0 and _names(nsroot) == [
            "bin", NOSHELL_BIN[1:]], "noshell_image holds %s only: %s" % (
                NOSHELL_BIN, _names(nsroot) if p.returncode == 0 else
                p.stderr))
        p = _chroot(nsroot, [NOSHELL_BIN, "echo", "no shell"])
        _check(p.stdout == b"no shell\n", "%s echo runs in it" % NOSHELL_BIN)
        p = _chroot(nsroot, ["/bin/sh", "-c", "true"])
        _check(p.returncode != 0, "and it has no /bin/sh")
        _check(ns.config["config"] == {"User": "1000"},
               "its config: User only")

        # 3. Damaged layers: skopeo refuses them naming the digest.
        for kind, damage in (("corrupt", corrupt_blob),
                             ("truncate", truncate_blob)):
            for li in (0, 1):      # a gzip layer and a plain tar one
                d = os.path.join(top, "%s%d" % (kind, li))
                bb = img.write_layout(d)
                digest = bb.layers[li].digest
                mt = bb.layers[li].media_type.rsplit(".", 1)[1]
                damage(bb, digest)
                p = skopeo("copy", bb.ref(), "oci:%s:x" % (d + "-copy"))
                messages["skopeo copy oci: %s %s layer" % (kind, mt)] = \
                    p.stderr.strip()
                _check(p.returncode != 0 and digest in p.stderr,
                       "skopeo refuses a %s %s layer, naming it" % (kind, mt))
                p = _umoci_unpack(d, bb.ref_name, d + "-bundle")
                messages["umoci unpack %s %s layer" % (kind, mt)] = \
                    p.stderr.strip()
                _check(p.returncode != 0, "umoci refuses it too (%s the "
                       "digest)" % ("naming" if digest in p.stderr else
                                    "NOT naming"))
                a = oci_archive(bb, d + ".tar")
                p = skopeo("copy", "oci-archive:" + a, "oci:%s:x" % (
                    d + "-acopy"))
                _check(p.returncode != 0 and digest in p.stderr,
                       "skopeo refuses it in an OCI archive, naming it")
                # A docker archive names layers by path: skopeo checks a
                # layer.tar against the config's diff_id.
                da = docker_archive(img.write_layout(d + "-good"),
                                    d + "-docker.tar", damage={li: kind})
                p = skopeo("copy", "--preserve-digests",
                           "docker-archive:" + da, "oci:%s:x" % (
                               d + "-dcopy"))
                diff_id = bb.layers[li].diff_id
                messages["skopeo copy docker-archive: %s layer.tar %d" % (
                    kind, li)] = p.stderr.strip() or "exit %d" % p.returncode
                _check(p.returncode != 0 and diff_id in p.stderr,
                       "skopeo refuses a %s layer.tar in a docker archive, "
                       "naming its diff_id" % kind)
        # Not an image at all.
        txt = os.path.join(top, "plain.txt")
        _write(txt, b"not an image\n")
        for tr in ("oci", "oci-archive", "docker-archive"):
            p = skopeo("copy", "%s:%s" % (tr, txt), "oci:%s:x" % (
                top + "/junk-" + tr))
            messages["skopeo copy %s: of a text file" % tr] = \
                p.stderr.strip()
            _check(p.returncode != 0, "skopeo refuses a text file as %s" % tr)
        p = skopeo("copy", "oci:%s/missing:x" % top, "oci:%s:x" % (
            top + "/junk-missing"))
        messages["skopeo copy oci: of a missing path"] = p.stderr.strip()

        # 4. Hostile layers: umoci keeps everything inside its root.
        outside = os.path.join(top, "outside")
        os.mkdir(outside)
        secret = os.path.join(top, "secret")
        _write(secret, b"host file\n")
        hostile = {
            "escape": [Layer(escape_entries(outside, "esc"))],
            "symlink then write, later layer":
                symlink_escape_layers(outside, "sl"),
            "symlink then write, same layer":
                symlink_escape_layers(outside, "ss", same_layer=True),
            "hard link out": [Layer(hardlink_escape_entries(secret))],
        }
        for i, (what, layers) in enumerate(hostile.items()):
            d = os.path.join(top, "hostile%d" % i)
            hb = Image(layers, ref_name="h").write_layout(d)
            p = skopeo("copy", hb.ref(), "oci:%s:x" % (d + "-copy"))
            _check(p.returncode == 0, "skopeo copies the %s image (it does "
                   "not unpack) %s" % (what, p.stderr.strip()))
            bdir = d + "-bundle"
            p = _umoci_unpack(d, "h", bdir)
            messages["umoci unpack: %s" % what] = "exit %d: %s" % (
                p.returncode, p.stderr.strip() or "(no error)")
            _check(os.listdir(outside) == [],
                   "umoci wrote nothing outside (%s)" % what)
            _check(os.lstat(secret).st_nlink == 1,
                   "  the host file still has one link")
            _check(not [n for n in os.listdir(top) if n.startswith(
                ("esc", "sl", "ss"))], "  nothing escaped into %s" % top)
            if os.path.isdir(os.path.join(bdir, "rootfs")):
                messages["umoci unpack: %s" % what] += "; rootfs holds %s" % \
                    _names(os.path.join(bdir, "rootfs"))

        # 5. A registry on loopback: push, pull back, stop.
        reg = Registry(os.path.join(top, "registry"))
        os.mkdir(reg.dir)
        reg.start()
        pid, port = reg.proc.pid, reg.port
        ref = "%s/test/img:v1" % reg.addr
        skopeo_push(b, ref)
        _check(True, "skopeo pushes to docker://%s" % ref)
        p = skopeo("inspect", "--tls-verify=false", "--raw", "--config",
                   "docker://" + ref)
        _check(p.returncode == 0 and "sha256:" + hashlib.sha256(
            p.stdout.encode()).hexdigest() == b.config_digest,
            "the registry has the same config")
        p = skopeo("copy", "--src-tls-verify=false", "docker://" + ref,
                   "oci:%s:x" % (top + "/pulled"))
        _check(p.returncode == 0 and read_layout(
            top + "/pulled", "x")[1] == b.config_digest,
            "pulled back: the same image id %s" % p.stderr.strip())
        messages["skopeo copy docker:// stdout (progress)"] = \
            p.stdout.strip()
        p = skopeo("copy", "docker://" + ref, "oci:%s:x" % (
            top + "/pulled-tls"))
        messages["skopeo copy docker:// over http, TLS verified"] = \
            p.stderr.strip()
        _check(p.returncode != 0, "TLS verification refuses plain http")
        p = skopeo("copy", "--src-tls-verify=false",
                   "docker://%s/test/nothere:v1" % reg.addr,
                   "oci:%s:x" % (top + "/pulled-none"))
        messages["skopeo copy docker:// of an unknown repository"] = \
            p.stderr.strip()
        _check(p.returncode != 0, "an unknown repository fails")
        reg.stop()
        reg = None
        _check(not capsuletest.pid_alive(pid), "the registry process is gone")
        _check(not _port_open(port), "nothing listens on port %d" % port)

        print("\nwhat the tools say:")
        for k, v in messages.items():
            print("- %s:\n    %s" % (k, v.replace("\n", "\n    ")))
    finally:
        if reg is not None:
            reg.stop()
        capsuletest.rmtree(top)
    _check(not [n for n in os.listdir("/var/tmp") if n.startswith(
        ("oci", "docker-tar"))], "skopeo left nothing in /var/tmp")
    if _check.failed:
        sys.exit("%d checks failed" % _check.failed)
    print("\nall checks passed")


if __name__ == "__main__":
    _selfcheck()
