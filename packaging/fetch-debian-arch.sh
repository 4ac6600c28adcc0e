#!/usr/bin/env bash
# fetch-debian-arch.sh — unpack Debian's cloud kernel (with its modules)
# and busybox-static for another architecture into a directory, for
# build-image.sh --from. Nothing is installed: the packages are fetched
# with `apt-get download` and unpacked with dpkg-deb.
#
#   fetch-debian-arch.sh --arch aarch64 --out ROOT
#
# apt must know the architecture: packaging/setup-debian.sh runs
# `dpkg --add-architecture arm64` and `apt-get update`. ROOT is replaced
# whole, and only once everything is unpacked.
set -euo pipefail

prog=${0##*/}
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage() { echo "usage: $prog --arch aarch64 --out ROOT" >&2; exit 2; }

arch='' out=''
while [ $# -gt 0 ]; do
	case $1 in
	--arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--arch=*) arch=${1#*=}; shift ;;
	--out=*) out=${1#*=}; shift ;;
	*) usage ;;
	esac
done
[ -n "$arch" ] && [ -n "$out" ] || usage
case $arch in
aarch64) debarch=arm64 ;;
*) die "unknown architecture $arch (this script fetches aarch64)" ;;
esac
for tool in apt-get apt-cache dpkg-deb depmod; do
	command -v "$tool" >/dev/null || die "$tool not found (a Debian host" \
		"with kmod is needed)"
done
dpkg --print-foreign-architectures | grep -qx "$debarch" ||
	die "dpkg does not know $debarch: run packaging/setup-debian.sh" \
		"(dpkg --add-architecture $debarch && apt-get update)"

# The metapackage names the current kernel package.
meta=linux-image-cloud-$debarch:$debarch
kpkg=$(apt-cache depends "$meta" 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }') ||
	kpkg=
[ -n "$kpkg" ] || die "apt knows no $meta (apt-get update?)"

out=${out%/}
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.fetch-$debarch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/root"
(cd "$work/debs" && apt-get download -q "$kpkg" "busybox-static:$debarch") ||
	die "apt-get download $kpkg busybox-static:$debarch failed"
for deb in "$work"/debs/*.deb; do
	dpkg-deb -x "$deb" "$work/root"
done
# The package's postinst would make modules.dep; nothing ran it here.
kver=
for d in "$work"/root/lib/modules/*; do
	[ -d "$d" ] && kver=${d##*/}
done
[ -n "$kver" ] || die "$kpkg has no /lib/modules"
depmod -b "$work/root" "$kver" || die "depmod $kver failed"

rm -rf "$out"
mv "$work/root" "$out"
echo "$prog: $kpkg and busybox-static:$debarch in $out"
