/*
 * hv.h — hypervisor backends behind one table of function pointers.
 *
 * A backend turns a resolved VM description into a running guest whose
 * agent channel is a connected stream socket, and knows how to make that
 * guest go away. The daemon watches the returned pid itself. Backends are
 * listed in hv.c; CMake decides which are compiled in (hv/qemu.c on Linux,
 * a Virtualization.framework backend on macOS once it exists).
 */
#ifndef CAPSULE_HV_H
#define CAPSULE_HV_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

enum hv_accel {
	HV_ACCEL_AUTO = 0,
	HV_ACCEL_KVM,
	HV_ACCEL_TCG,
	HV_ACCEL_HVF,
};

struct hv_caps {
	enum hv_accel	accel;		/* what VMs will use */
	char		accel_why[512];	/* why not something better */
	char		version[64];	/* e.g. "QEMU 7.2.x" */
	uint32_t	tsc_khz;	/* host TSC, 0 if unknown */
};

#define HV_MAX_SERIAL_PORTS	8	/* every backend takes this many */

/* A raw byte channel besides the agent's: the guest sees a virtio-serial
 * port called `name`; the host, a socket listening at `path` that takes
 * one connection at a time. */
struct hv_serial_port {
	const char	*name;
	const char	*path;
};

/* Everything a backend needs to start one VM; all paths absolute. */
struct hv_vm_config {
	const char	*vm_id;
	const char	*run_dir;	/* backend may create files here */
	const char	*kernel;
	const char	*initrd;
	const char	*rootfs;	/* base image, never written */
	const char	*cmdline;	/* complete kernel command line */
	const char	*console_log;
	unsigned	vcpus;
	uint64_t	memory_mib;
	enum hv_accel	accel;
	const struct hv_serial_port *ports;	/* nports of them */
	unsigned	nports;
	/* Unprivileged identity for the hypervisor process once it has opened
	 * its files (0: keep the daemon's). One per VM, so a compromised
	 * hypervisor cannot touch another VM's. */
	uid_t		uid;
	gid_t		gid;
};

struct hv_vm;		/* backend-private */

struct hv_ops {
	const char	*name;
	/* Finds out what this host can run; `want` AUTO picks the best. */
	int	(*probe)(enum hv_accel want, struct hv_caps *caps,
		    struct cap_err *err);
	/* Starts the guest. On success *vm is live, *pid is the process to
	 * watch and *agent_fd a connected socket to the guest agent's port. */
	int	(*start)(const struct hv_vm_config *cfg, struct hv_vm **vm,
		    pid_t *pid, int *agent_fd, struct cap_err *err);
	/* Asks the hypervisor to end the guest now (QMP quit). */
	int	(*quit)(struct hv_vm *vm, struct cap_err *err);
	/* Last resort. */
	void	(*kill)(struct hv_vm *vm);
	/* After the process is gone: removes the backend's files, frees vm. */
	void	(*cleanup)(struct hv_vm *vm);
	/* Removes the backend's files from a run dir whose VM is gone and
	 * that no struct hv_vm describes any more (a previous daemon's). */
	void	(*forget)(const char *run_dir);
	/* Tail of the hypervisor's own stderr, for error messages. */
	void	(*log_tail)(struct hv_vm *vm, char *buf, size_t len);
};

const struct hv_ops *hv_default(void);
const struct hv_ops *hv_find(const char *name);
/* NULL-terminated list of every compiled-in backend. */
const struct hv_ops *const *hv_list(void);

const char	*hv_accel_name(enum hv_accel a);
int		 hv_accel_parse(const char *s, enum hv_accel *a);

/* hv/kvmprobe.c: 0 if `dev` can really run an unmodified guest. */
int	kvmprobe_run(const char *dev, struct cap_err *err);

#endif /* CAPSULE_HV_H */
