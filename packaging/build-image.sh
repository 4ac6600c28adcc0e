#!/usr/bin/env bash
# build-image.sh — build capsule's guest image: kernel, initramfs with
# capsule-agent as /init, and a busybox root file system.
#
# The initramfs names the modules the agent loads in /etc/capsule/modules,
# and those only a network mode needs in /etc/capsule/modules-nat and
# /etc/capsule/modules-allow, which the agent loads when the kernel
# command line says capsule.net=nat or capsule.net=allow; shared folders'
# in /etc/capsule/modules-vol, loaded when it names a capsule.vol.
#
#   build-image.sh --agent PATH --out DIR [--arch ARCH] [--from ROOT]
#                  [--kernel-version VER]
#
# Writes DIR/vmlinuz, DIR/initramfs.img and DIR/rootfs.ext4. Everything is
# built in a temporary directory inside DIR and renamed into place, so a
# failed build leaves the previous image alone.
#
# ARCH is the guest's: x86_64 or aarch64 (default: the host's). The kernel, its
# modules and busybox come from ROOT (default /): ROOT/boot/vmlinuz-VER,
# ROOT/lib/modules/VER, ROOT/bin/busybox. For another architecture than
# the host's, fetch-debian-arch.sh unpacks Debian's packages into a ROOT.
set -euo pipefail

prog=${0##*/}
# Drivers the agent loads, in this order after their dependencies, by
# architecture (set_arch). x86_64 guests run on QEMU's microvm, whose
# devices sit on virtio-mmio; pvpanic_mmio binds its pvpanic device (ACPI
# QEMU0001), so a guest kernel panic reaches QEMU as a panic rather than a
# reboot. aarch64 guests see virtio over PCI, as under QEMU's virt machine
# and Apple's Virtualization.framework; pvpanic_pci is QEMU's PCI pvpanic.
set_arch() {
	case $1 in
	x86_64)
		transport=virtio_mmio panic=pvpanic_mmio
		elf_machine='Advanced Micro Devices X86-64'
		kernel_flavour=cloud-amd64 ;;
	aarch64)
		transport=virtio_pci panic=pvpanic_pci
		elf_machine='AArch64'
		kernel_flavour=cloud-arm64 ;;
	*) die "unknown architecture $1 (x86_64 or aarch64)" ;;
	esac
	modules_wanted=("$transport" virtio_console virtio_blk virtio_rng
		overlay "$panic")
	# Without these the guest cannot boot or reach the host.
	modules_required=("$transport" virtio_console virtio_blk)
}
# nat: the NIC on QEMU's user-mode network.
modules_nat=(virtio_net)
# allow: nftables' nat chain and redirect, which send the guest's TCP to
# the agent; conntrack, which they pull in, tells it where each went.
modules_allow=(nft_chain_nat nft_redir)
# vol: shared folders (virtiofs, which pulls in fuse), loaded only by VMs
# that have one.
modules_vol=(virtiofs)
rootfs_size=1G

die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() {
	echo "usage: $prog --agent PATH --out DIR [--arch ARCH] [--from ROOT]" \
		"[--kernel-version VER]" >&2
	exit 2
}

agent='' out='' kver='' arch=$(uname -m) from=''
while [ $# -gt 0 ]; do
	case $1 in
	--agent) [ $# -ge 2 ] || usage; agent=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
	--arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
	--from) [ $# -ge 2 ] || usage; from=$2; shift 2 ;;
	--kernel-version) [ $# -ge 2 ] || usage; kver=$2; shift 2 ;;
	--agent=*) agent=${1#*=}; shift ;;
	--out=*) out=${1#*=}; shift ;;
	--arch=*) arch=${1#*=}; shift ;;
	--from=*) from=${1#*=}; shift ;;
	--kernel-version=*) kver=${1#*=}; shift ;;
	-h|--help) usage ;;
	*) note "unknown argument: $1"; usage ;;
	esac
done
[ -n "$agent" ] && [ -n "$out" ] || usage
set_arch "$arch"
from=${from%/}
[ -z "$from" ] || [ -d "$from" ] || die "--from $from: not a directory"

# ---- inputs ----
[ -f "$agent" ] || die "agent binary not found: $agent"
[ "$(head -c 4 "$agent" | od -An -c | tr -d ' ')" = '177ELF' ] ||
	die "$agent is not an ELF binary"
if command -v readelf >/dev/null &&
	readelf -l "$agent" 2>/dev/null | grep -q 'Requesting program interpreter'; then
	die "$agent is dynamically linked; the agent must be built with -static"
fi
if command -v readelf >/dev/null &&
	! readelf -h "$agent" | grep -q "Machine: *$elf_machine\$"; then
	die "$agent is not built for $arch"
fi

for tool in cpio gzip mkfs.ext4 truncate find sort; do
	command -v "$tool" >/dev/null || case $tool in
		cpio) die "cpio not found (install cpio)" ;;
		mkfs.ext4) die "mkfs.ext4 not found (install e2fsprogs)" ;;
		*) die "$tool not found" ;;
	esac
done

busybox=''
if [ -n "$from" ]; then
	for b in "$from/bin/busybox" "$from/usr/bin/busybox"; do
		[ -f "$b" ] && { busybox=$b; break; }
	done
	[ -n "$busybox" ] || die "no busybox in $from (unpack busybox-static)"
else
	for b in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
		[ -n "$b" ] && [ -x "$b" ] && { busybox=$b; break; }
	done
	[ -n "$busybox" ] || die "busybox not found (install busybox-static)"
fi
if command -v readelf >/dev/null &&
	readelf -l "$busybox" 2>/dev/null | grep -q 'Requesting program interpreter'; then
	die "$busybox is dynamically linked (install busybox-static)"
fi
if command -v readelf >/dev/null &&
	! readelf -h "$busybox" | grep -q "Machine: *$elf_machine\$"; then
	die "$busybox is not built for $arch"
fi

pick_kernel() {
	local v best='' any=''
	for v in $(ls "$from/lib/modules" 2>/dev/null | sort -V); do
		[ -f "$from/boot/vmlinuz-$v" ] || continue
		any=$v
		case $v in *-$kernel_flavour) best=$v ;; esac
	done
	printf '%s\n' "${best:-$any}"
}
if [ -z "$kver" ]; then
	kver=$(pick_kernel)
	[ -n "$kver" ] || die "no kernel with both $from/lib/modules/VER and" \
		"$from/boot/vmlinuz-VER (install linux-image-$kernel_flavour)"
fi
vmlinuz=$from/boot/vmlinuz-$kver
moddir=$from/lib/modules/$kver
[ -f "$vmlinuz" ] || die "$vmlinuz not found (install linux-image-$kver)"
[ -r "$vmlinuz" ] || die "cannot read $vmlinuz (Debian installs it mode 0600: run as root)"
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep not found (run depmod $kver)"
case $(head -c 2 "$vmlinuz" | od -An -tx1 | tr -d ' ') in
1f8b) [ "$arch" = aarch64 ] && die "$vmlinuz is gzip-compressed; QEMU" \
	"boots it, Virtualization.framework needs the plain Image" ;;
esac

# ---- work area: inside DIR so the final renames are atomic ----
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.build-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
initdir=$work/initramfs
rootdir=$work/rootfs
mkdir -p "$initdir" "$rootdir"

# ---- modules ----
# Module name as the kernel knows it: basename, no suffix, '-' is '_'.
modname() {
	local b=${1##*/}
	b=${b%%.ko*}
	printf '%s\n' "${b//-/_}"
}

declare -A dep_of=() path_of=() builtin=() seen=()
while IFS= read -r line; do
	path=${line%%:*}
	dep_of[$path]=${line#*:}
	path_of[$(modname "$path")]=$path
done <"$moddir/modules.dep"
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r line; do
		builtin[$(modname "$line")]=1
	done <"$moddir/modules.builtin"
fi

# visit PATH: PATH's dependencies, then PATH, onto `order`, each once.
order=()
visit() {
	local p=$1 d
	[ -z "${seen[$p]:-}" ] || return 0
	seen[$p]=1
	for d in ${dep_of[$p]:-}; do
		visit "$d"
	done
	order+=("$p")
}

# resolve WHAT NAME...: the modules NAME... need, in load order, in
# `order`, leaving out those already in `seen`.
resolve() {
	local what=$1 m
	shift
	order=()
	for m in "$@"; do
		if [ -n "${builtin[$m]:-}" ]; then
			note "$m is built into $kver, skipped"
		elif [ -n "${path_of[$m]:-}" ]; then
			visit "${path_of[$m]}"
		elif printf '%s\n' "${modules_required[@]}" | grep -qx "$m"; then
			die "kernel $kver has no $m module and does not build it in"
		else
			note "kernel $kver has no $m module: $what goes without it"
		fi
	done
}

# install_list FILE: copies the modules in `order` into the initramfs
# (once, whichever lists name them) and names them in FILE, in order.
declare -A copied=()
install_list() {
	local list=$1 p src name dst
	: >"$list"
	for p in ${order[@]+"${order[@]}"}; do
		src=$moddir/$p
		[ -f "$src" ] || die "$src is listed in modules.dep but missing"
		name=${p##*/}
		name=${name%%.ko*}.ko
		dst=$initdir/lib/modules/$name
		if [ -z "${copied[$p]:-}" ]; then
			[ ! -e "$dst" ] || die "two modules named $name"
			case $p in
			*.ko) cp "$src" "$dst" ;;
			*.ko.xz) command -v xz >/dev/null ||
					die "$p is xz-compressed (install xz-utils)"
				xz -dc "$src" >"$dst" ;;
			*.ko.zst) command -v zstd >/dev/null ||
					die "$p is zstd-compressed (install zstd)"
				zstd -qdc "$src" >"$dst" ;;
			*.ko.gz) gzip -dc "$src" >"$dst" ;;
			*) die "unsupported module file: $p" ;;
			esac
			copied[$p]=1
		fi
		printf 'lib/modules/%s\n' "$name" >>"$list"
	done
}

mkdir -p "$initdir/lib/modules" "$initdir/etc/capsule"
resolve "the guest" "${modules_wanted[@]}"
install_list "$initdir/etc/capsule/modules"
nmod_base=${#order[@]}
declare -A base_seen=()
for p in "${!seen[@]}"; do base_seen[$p]=1; done
# mode_list MODE NAME...: /etc/capsule/modules-MODE, without what the base
# list has loaded already.
mode_list() {
	local mode=$1 p
	shift
	seen=()
	for p in "${!base_seen[@]}"; do seen[$p]=1; done
	resolve "mode $mode" "$@"
	install_list "$initdir/etc/capsule/modules-$mode"
}
mode_list nat "${modules_nat[@]}"
nmod_nat=${#order[@]}
mode_list allow "${modules_allow[@]}"
nmod_allow=${#order[@]}
mode_list vol "${modules_vol[@]}"
nmod_vol=${#order[@]}

# ---- initramfs ----
install -m 0755 "$agent" "$initdir/init"
mkdir -p "$initdir/dev" "$initdir/proc" "$initdir/sys" "$initdir/newroot"
(cd "$initdir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$work/initramfs.img"

# ---- root file system ----
# The applets to link: busybox lists them itself, and for a foreign
# architecture the host's busybox of the same version does.
lister=$busybox
if [ -n "$from" ]; then
	lister=$(command -v busybox || true)
	[ -n "$lister" ] || die "busybox not found on the host (install" \
		"busybox-static): it lists the applets of $busybox"
	# Debian's dynamic busybox is configured with other applets.
	! readelf -l "$lister" 2>/dev/null |
		grep -q 'Requesting program interpreter' ||
		die "$lister is dynamically linked (install busybox-static):" \
			"it cannot list the applets of $busybox"
	bbver() { grep -a -o -m1 'BusyBox v[0-9][0-9.]*' "$1" | head -n1; }
	[ "$(bbver "$lister")" = "$(bbver "$busybox")" ] ||
		die "$lister is $(bbver "$lister"), $busybox is" \
			"$(bbver "$busybox"): cannot list its applets"
fi
install -D -m 0755 "$busybox" "$rootdir/bin/busybox"
while IFS= read -r applet; do
	applet=${applet#/}
	[ -n "$applet" ] && [ "$applet" != bin/busybox ] || continue
	mkdir -p "$rootdir/$(dirname "$applet")"
	[ -e "$rootdir/$applet" ] || ln -s /bin/busybox "$rootdir/$applet"
done < <("$lister" --list-full)

for d in proc sys dev run root mnt home etc usr/bin usr/sbin sbin; do
	mkdir -p "$rootdir/$d"
done
mkdir -p "$rootdir/tmp" "$rootdir/var/tmp"
chmod 1777 "$rootdir/tmp" "$rootdir/var/tmp"
chmod 0700 "$rootdir/root"
# An unprivileged user for `capsule exec --user capsule`.
mkdir -p "$rootdir/home/capsule"
chmod 0755 "$rootdir/home/capsule"
[ "$(id -u)" != 0 ] || chown 1000:1000 "$rootdir/home/capsule"

cat >"$rootdir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
capsule:x:1000:1000:capsule:/home/capsule:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootdir/etc/group" <<'EOF'
root:x:0:
tty:x:5:
users:x:100:capsule
capsule:x:1000:
nogroup:x:65534:
EOF
echo capsule >"$rootdir/etc/hostname"
cat >"$rootdir/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	capsule
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$rootdir/etc/profile" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\h:\w\$ '
umask 022
EOF
cat >"$rootdir/etc/os-release" <<'EOF'
NAME="capsule busybox"
ID=capsule
PRETTY_NAME="capsule busybox"
EOF
chmod 0644 "$rootdir"/etc/*

truncate -s "$rootfs_size" "$work/rootfs.ext4"
mkfs.ext4 -q -F -L capsule-root -E root_owner=0:0 -d "$rootdir" \
	"$work/rootfs.ext4" || die "mkfs.ext4 failed"
# mkfs.ext4 -d copies the owners of the files; built as a user, they would
# all belong to that user inside the guest.
if [ "$(id -u)" != 0 ]; then
	command -v debugfs >/dev/null || die "debugfs not found (install e2fsprogs)"
	(cd "$rootdir" && find . -mindepth 1) | sed 's|^\.||' |
		while IFS= read -r f; do
			printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$f" "$f"
		done >"$work/owners.debugfs"
	printf 'sif /home/capsule uid 1000\nsif /home/capsule gid 1000\n' \
		>>"$work/owners.debugfs"
	debugfs -w -f "$work/owners.debugfs" "$work/rootfs.ext4" >/dev/null 2>&1 ||
		die "debugfs could not set file owners to root"
fi

cp "$vmlinuz" "$work/vmlinuz"

# ---- publish ----
chmod 0644 "$work/vmlinuz" "$work/initramfs.img" "$work/rootfs.ext4"
for f in vmlinuz initramfs.img rootfs.ext4; do
	mv -f "$work/$f" "$out/$f"
done

size() { du -h --apparent-size "$1" | cut -f1; }
echo "$prog: $arch kernel $kver: $out/vmlinuz ($(size "$out/vmlinuz"))," \
	"$out/initramfs.img ($(size "$out/initramfs.img"), $nmod_base modules" \
	"+ $nmod_nat for nat + $nmod_allow for allow + $nmod_vol for shares)," \
	"$out/rootfs.ext4 ($(size "$out/rootfs.ext4") sparse, $(du -h "$out/rootfs.ext4" | cut -f1) used)"
