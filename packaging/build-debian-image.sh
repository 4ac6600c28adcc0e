#!/usr/bin/env bash
# build-debian-image.sh — a Debian root file system for capsule VMs, with
# python3, git, curl and ca-certificates: the userland real work needs,
# where the built-in image has only busybox.
#
#   build-debian-image.sh --out FILE [--oci ARCHIVE] [--suite SUITE]
#                         [--include PKG,...]
#
# Boot it with the usual kernel and initramfs (capsule-agent stays PID 1):
#   capsule run --rootfs FILE -- python3 -c 'print(1 + 1)'
# --oci also writes the same tree as an OCI image archive (one layer, an
# image config with PATH, WorkingDir /root and Cmd bash), for
#   capsule image import ARCHIVE --name debian
#   capsule run --image debian -- python3 -c 'print(1 + 1)'
#
# mmdebstrap builds the tree from the Debian archive this host's apt uses
# (about 20 s and 250 MB here), as root; mkfs.ext4 -d turns it into an
# ext4 image with room to spare. The image is built next to FILE and
# renamed into place, so a failed build leaves the previous one alone.
set -euo pipefail

prog=${0##*/}
suite=bookworm
include=python3,git,curl,ca-certificates

die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage() {
	echo "usage: $prog --out FILE [--oci ARCHIVE] [--suite SUITE]" \
		"[--include PKG,...]" >&2
	exit 2
}

out=''
oci=''
while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--oci) [ $# -ge 2 ] || usage; oci=$2; shift 2 ;;
	--suite) [ $# -ge 2 ] || usage; suite=$2; shift 2 ;;
	--include) [ $# -ge 2 ] || usage; include=$2; shift 2 ;;
	-h|--help) usage ;;
	*) printf '%s: unknown argument: %s\n' "$prog" "$1" >&2; usage ;;
	esac
done
[ -n "$out" ] || usage
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap's root mode keeps" \
	"the files' owners as Debian sets them)"
for tool in mmdebstrap mkfs.ext4 truncate du tar sha256sum; do
	command -v "$tool" >/dev/null || case $tool in
		mmdebstrap) die "mmdebstrap not found (install mmdebstrap)" ;;
		mkfs.ext4) die "mkfs.ext4 not found (install e2fsprogs)" ;;
		*) die "$tool not found" ;;
	esac
done

dir=$(dirname "$out")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/$(basename "$out")
work=$(mktemp -d "$dir/.build-debian.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# minbase: essential packages and apt, then what --include names. The
# hooks add capsule's unprivileged user (uid 1000, as in the built-in
# image) and drop what a VM never needs (apt's lists, docs).
mmdebstrap --variant=minbase --include="$include" \
	--customize-hook='chroot "$1" useradd --uid 1000 --create-home --shell /bin/bash capsule' \
	--customize-hook='echo capsule >"$1/etc/hostname"' \
	--customize-hook='printf "127.0.0.1\tlocalhost\n127.0.1.1\tcapsule\n::1\t\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
	--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
	"$suite" "$root" >"$work/mmdebstrap.log" 2>&1 ||
	{ tail -20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }

# Twice the tree and 256 MiB more, at least 1 GiB: room for ext4's own
# metadata and for what VMs write (each VM writes to a layer of its own,
# never to this file). The file is sparse: only the tree takes space.
used=$(du -s --block-size=1M "$root" | cut -f1)
size=$((used * 2 + 256))
[ "$size" -ge 1024 ] || size=1024
truncate -s "${size}M" "$work/rootfs.ext4"
mkfs.ext4 -q -F -L capsule-debian -d "$root" "$work/rootfs.ext4" ||
	die "mkfs.ext4 failed"
chmod 0644 "$work/rootfs.ext4"

# The OCI archive: the tree as one uncompressed layer (owners by number,
# as Debian set them), its config and manifest named by their sha256, a
# layout around them, and the layout as one tar.
if [ -n "$oci" ]; then
	lay=$work/layout
	mkdir -p "$lay/blobs/sha256"
	tar -C "$root" --numeric-owner --xattrs --sort=name \
		-cf "$work/layer.tar" . || die "tar of the tree failed"
	blob() {	# FILE -> prints the digest, moves FILE into blobs/
		local d
		d=$(sha256sum "$1" | cut -d' ' -f1)
		mv -f "$1" "$lay/blobs/sha256/$d"
		echo "$d"
	}
	lsize=$(stat -c %s "$work/layer.tar")
	layer=$(blob "$work/layer.tar")
	printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"WorkingDir":"/root","Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$layer" >"$work/config.json"
	csize=$(stat -c %s "$work/config.json")
	config=$(blob "$work/config.json")
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
		"$config" "$csize" "$layer" "$lsize" >"$work/manifest.json"
	msize=$(stat -c %s "$work/manifest.json")
	manifest=$(blob "$work/manifest.json")
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"debian:%s"}}]}' \
		"$manifest" "$msize" "$suite" >"$lay/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
	tar -C "$lay" -cf "$work/oci.tar" oci-layout index.json blobs ||
		die "tar of the layout failed"
	chmod 0644 "$work/oci.tar"
	mkdir -p "$(dirname "$oci")"
	mv -f "$work/oci.tar" "$oci"
	printf '%s: %s (OCI image archive)\n' "$prog" "$oci" >&2
fi
mv -f "$work/rootfs.ext4" "$out"
printf '%s: %s (%d MiB, Debian %s with %s)\n' "$prog" "$out" "$size" \
	"$suite" "$include" >&2
