/*
 * qemuarch.h — what differs between the guest architectures QEMU runs:
 * its binary, machine, console, virtio transport and kernel format.
 *
 * x86_64 guests run on the microvm machine, whose virtio devices sit on
 * virtio-mmio; aarch64 guests on the virt machine with virtio over PCI,
 * as Apple's Virtualization.framework presents it. Both have the same
 * named virtio-serial port for the agent and the same disks by serial,
 * so the guest agent does not care which it is.
 */
#ifndef CAPSULE_QEMUARCH_H
#define CAPSULE_QEMUARCH_H

#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "err.h"

struct qemu_arch {
	const char	*binary;	/* "qemu-system-x86_64" */
	const char	*package;	/* Debian's, to say what to install */
	const char	*machine;	/* -machine, before its options */
	const char	*console;	/* the serial console's device name */
	const char	*boot_args;	/* the machine's own kernel words */
	const char	*virtio;	/* device suffix: "device" or "pci" */
	const char	*tcg_cpu;	/* -cpu under TCG; NULL: QEMU's */
	const char	*panic_dev;	/* pvpanic device, or NULL */
	int		 tsc_hint;	/* pass tsc_early_khz under TCG */
	int		 legacy_mmio;	/* virtio-mmio defaults to legacy */
};

/* NULL for CTL_ARCH_DEFAULT or one QEMU is not set up for. */
const struct qemu_arch *qemuarch_get(enum ctl_arch arch);
/* 0 if head (a file's first len bytes) is a kernel QEMU boots as a
 * guest of arch. */
int	qemuarch_check_kernel(enum ctl_arch arch, const uint8_t *head,
	    size_t len, struct cap_err *err);

#endif /* CAPSULE_QEMUARCH_H */
