/*
 * qemuarch.c — the guest architectures QEMU runs (see qemuarch.h).
 */
#include <errno.h>
#include <string.h>

#include "proto.h"
#include "qemuarch.h"

#define EM_X86_64_	62	/* ELF e_machine values */
#define EM_AARCH64_	183

static const struct qemu_arch qemuarch_x86_64 = {
	.binary = "qemu-system-x86_64",
	.package = "qemu-system-x86",
	.machine = "microvm",
	.console = "ttyS0",
	/* microvm has no reset the kernel's other methods find, and a
	 * missed reset hangs the guest: a triple fault always works. */
	.boot_args = "reboot=t",
	.virtio = "device",
	.tcg_cpu = NULL,
	.panic_dev = "pvpanic",
	.tsc_hint = 1,
	.legacy_mmio = 1,
};

static const struct qemu_arch qemuarch_aarch64 = {
	.binary = "qemu-system-aarch64",
	.package = "qemu-system-arm",
	/* GICv3: the default GICv2 takes at most 8 vCPUs. */
	.machine = "virt,gic-version=3",
	.console = "ttyAMA0",
	.boot_args = "",
	.virtio = "pci",
	/* QEMU's "max" emulates pointer authentication at a high cost;
	 * an ARMv8.0 core boots Debian's kernel in half the time. */
	.tcg_cpu = "cortex-a72",
	.panic_dev = NULL,	/* Debian's arm64 kernel has no pvpanic */
	.tsc_hint = 0,
	.legacy_mmio = 0,
};

const struct qemu_arch *
qemuarch_get(enum ctl_arch arch)
{
	switch (arch) {
	case CTL_ARCH_X86_64:
		return &qemuarch_x86_64;
	case CTL_ARCH_AARCH64:
		return &qemuarch_aarch64;
	default:
		return NULL;
	}
}

/* A 64-bit little-endian ELF file for machine em. */
static int
is_elf(const uint8_t *b, size_t len, unsigned em)
{
	return len >= 20 && memcmp(b, "\177ELF", 4) == 0 && b[4] == 2 &&
	    b[5] == 1 && (unsigned)(b[18] | b[19] << 8) == em;
}

int
qemuarch_check_kernel(enum ctl_arch arch, const uint8_t *b, size_t len,
    struct cap_err *err)
{
	switch (arch) {
	case CTL_ARCH_X86_64:
		/* A bzImage (setup header "HdrS" at 0x202), or a vmlinux. */
		if (is_elf(b, len, EM_X86_64_) ||
		    (len >= 0x206 && memcmp(b + 0x202, "HdrS", 4) == 0))
			return 0;
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "is neither an x86_64 bzImage nor an x86_64 ELF kernel");
	case CTL_ARCH_AARCH64:
		/* An arm64 Image ("ARM\x64" at 0x38), or a vmlinux. */
		if (is_elf(b, len, EM_AARCH64_) ||
		    (len >= 0x3c && memcmp(b + 0x38, "ARM\x64", 4) == 0))
			return 0;
		if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "is gzip-compressed; capsule boots an "
			    "uncompressed arm64 Image (gunzip it)");
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "is neither an arm64 Image nor an aarch64 ELF kernel");
	default:
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "is for no architecture QEMU runs here");
	}
}
