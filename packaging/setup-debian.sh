#!/usr/bin/env bash
# Installs what capsule needs to build, run and test on Debian 12.
# Idempotent; run as root (or with sudo available).
set -euo pipefail

pkgs=(
	# build
	build-essential cmake pkg-config
	libevent-dev libjansson-dev libsystemd-dev libcmocka-dev
	# run: the hypervisor and its disk tool; QEMU's virtiofsd for shared
	# folders; qemu-system-aarch64 for aarch64 guests
	qemu-system-x86 qemu-utils qemu-system-common qemu-system-arm
	# guest image: kernel + modules, userland, ext4 without root tools;
	# the Debian image (build target image-debian)
	linux-image-cloud-amd64 busybox-static e2fsprogs cpio gzip mmdebstrap
	# the aarch64 guest image (target image-aarch64): the agent built by a
	# cross compiler; its kernel and busybox are fetched from Debian's
	# arm64 archive, which dpkg is told about below
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	# integration tests; fuzzing (libFuzzer comes with clang's runtimes)
	python3 clang libclang-rt-14-dev
	# interactive tests drive a real terminal; the metrics test parses
	# capsuled's output with Prometheus' own parser
	tmux python3-prometheus-client
	# network tests: a DNS server for the test names (the binary only,
	# no system service) and ip(8) for their namespaces
	dnsmasq-base iproute2
	# images: skopeo fetches and pulls, umoci applies the layers; the
	# image tests run Debian's registry on loopback (its service is not
	# started, see below)
	skopeo umoci docker-registry
)

as_root=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || {
		echo "setup-debian.sh: run as root (or install sudo)" >&2
		exit 1
	}
	as_root=(sudo)
fi

# apt-get download of arm64 packages (fetch-debian-arch.sh) needs dpkg to
# know the architecture; nothing arm64 is installed.
update=
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "setup-debian.sh: dpkg --add-architecture arm64"
	"${as_root[@]}" dpkg --add-architecture arm64
	update=1
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	[ -z "$update" ] || "${as_root[@]}" apt-get update -qq
	echo "setup-debian.sh: all packages present"
	exit 0
fi
echo "setup-debian.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
# Packages with a service (docker-registry) must not start it: the tests
# run their own registry on loopback. Where nothing says so already, a
# policy-rc.d says so for the length of this install.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
	"${as_root[@]}" chmod 755 "$policy"
	made_policy=1
fi
rc=0
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
	rc=$?
[ -n "$made_policy" ] && "${as_root[@]}" rm -f "$policy"
exit "$rc"
