/*
 * kvmprobe.c — can this host's KVM really run an unmodified guest?
 *
 * /dev/kvm opening is not enough: a paravirtual KVM (PVM, module kvm_pvm)
 * accepts every ioctl, even runs a real-mode test guest, yet cannot boot an
 * unmodified kernel ("emulation failure"). So KVM counts as usable only when
 * a hardware vendor module (kvm_intel, kvm_amd) drives it *and* a
 * four-instruction real-mode guest (out 0x42 to port 0x10; hlt) exits
 * exactly as real hardware would make it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hv.h"
#include "proto.h"

#define PROBE_MEM	0x4000
#define PROBE_ENTRY	0x1000
#define PROBE_PORT	0x10
#define PROBE_VALUE	0x42

int
kvmprobe_run(const char *dev, struct cap_err *err)
{
	/* mov $0x42,%al; out %al,$0x10; hlt */
	static const uint8_t code[] = { 0xb0, PROBE_VALUE, 0xe6, PROBE_PORT,
	    0xf4 };
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run = MAP_FAILED;
	uint8_t *mem = MAP_FAILED;
	int kvm = -1, vmfd = -1, vcpu = -1, r, runsz = 0, saw_io = 0, i;

	if (access("/sys/module/kvm_intel", F_OK) != 0 &&
	    access("/sys/module/kvm_amd", F_OK) != 0) {
		r = cap_err_set(err, ENOTSUP, E_UNAVAILABLE,
		    "%s is not backed by hardware virtualization (no kvm_intel "
		    "or kvm_amd module%s)", dev,
		    access("/sys/module/kvm_pvm", F_OK) == 0 ?
		    "; kvm_pvm is a paravirtual KVM that cannot boot an "
		    "unmodified guest" : "");
		goto out;
	}
	if ((kvm = open(dev, O_RDWR | O_CLOEXEC)) < 0) {
		r = cap_err_set(err, errno, E_UNAVAILABLE, "open %s: %s", dev,
		    strerror(errno));
		goto out;
	}
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		r = cap_err_set(err, ENOTSUP, E_UNAVAILABLE,
		    "%s speaks an unknown KVM API version", dev);
		goto out;
	}
	if ((vmfd = ioctl(kvm, KVM_CREATE_VM, 0)) < 0) {
		r = cap_err_set(err, errno, E_UNAVAILABLE, "KVM_CREATE_VM: %s",
		    strerror(errno));
		goto out;
	}
	mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		r = cap_err_set(err, errno, E_INTERNAL, "mmap: %s",
		    strerror(errno));
		goto out;
	}
	memcpy(mem + PROBE_ENTRY, code, sizeof(code));
	memset(&region, 0, sizeof(region));
	region.memory_size = PROBE_MEM;
	region.userspace_addr = (uintptr_t)mem;
	if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ||
	    (vcpu = ioctl(vmfd, KVM_CREATE_VCPU, 0)) < 0 ||
	    (runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0) {
		r = cap_err_set(err, errno, E_UNAVAILABLE,
		    "KVM cannot create a guest: %s", strerror(errno));
		goto out;
	}
	run = mmap(NULL, (size_t)runsz, PROT_READ | PROT_WRITE, MAP_SHARED,
	    vcpu, 0);
	if (run == MAP_FAILED) {
		r = cap_err_set(err, errno, E_UNAVAILABLE, "mmap kvm_run: %s",
		    strerror(errno));
		goto out;
	}
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
		r = cap_err_set(err, errno, E_UNAVAILABLE, "KVM_GET_SREGS: %s",
		    strerror(errno));
		goto out;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	memset(&regs, 0, sizeof(regs));
	regs.rip = PROBE_ENTRY;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
		r = cap_err_set(err, errno, E_UNAVAILABLE,
		    "KVM cannot set guest registers: %s", strerror(errno));
		goto out;
	}
	for (i = 0; i < 4; i++) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			r = cap_err_set(err, errno, E_UNAVAILABLE,
			    "KVM_RUN: %s", strerror(errno));
			goto out;
		}
		if (run->exit_reason == KVM_EXIT_IO &&
		    run->io.direction == KVM_EXIT_IO_OUT &&
		    run->io.port == PROBE_PORT && run->io.size == 1 &&
		    *((uint8_t *)run + run->io.data_offset) == PROBE_VALUE) {
			saw_io = 1;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_HLT && saw_io) {
			r = 0;
			goto out;
		}
		break;
	}
	r = cap_err_set(err, ENOTSUP, E_UNAVAILABLE,
	    "%s cannot run an unmodified guest (test guest exit reason %u%s); "
	    "is this a paravirtual (PVM) KVM?", dev, run->exit_reason,
	    run->exit_reason == KVM_EXIT_INTERNAL_ERROR ?
	    ", emulation failure" : "");
out:
	if (run != MAP_FAILED)
		munmap(run, (size_t)runsz);
	if (vcpu >= 0)
		close(vcpu);
	if (mem != MAP_FAILED)
		munmap(mem, PROBE_MEM);
	if (vmfd >= 0)
		close(vmfd);
	if (kvm >= 0)
		close(kvm);
	return r;
}
