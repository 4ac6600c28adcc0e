/*
 * hv.h — hypervisor backends behind one table of function pointers.
 *
 * A backend turns a resolved VM description into a running guest and
 * reports on it through events on the daemon's event loop: the guest's
 * end (with why, when the hypervisor said), a pause or an I/O error. It
 * hands the daemon three streams: the agent channel, the guest's serial
 * console and the hypervisor's own messages; the daemon relays the last
 * two into capped log files. A backend builds its own kernel command line
 * (console device, clock hints) and receives every file as a descriptor
 * the daemon opened, so it never opens a caller's path itself.
 *
 * Backends are listed in hv.c; CMake decides which are compiled in
 * (hv/qemu.c on Linux; a Virtualization.framework backend on macOS once
 * it exists).
 */
#ifndef CAPSULE_HV_H
#define CAPSULE_HV_H

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "ctl.h"
#include "err.h"

enum hv_accel {
	HV_ACCEL_AUTO = 0,
	HV_ACCEL_KVM,
	HV_ACCEL_TCG,
	HV_ACCEL_HVF,
};

struct hv_caps {
	enum hv_accel	accel;		/* what VMs of the host's
					 * architecture will use */
	char		accel_why[512];	/* why not something better */
	/* Per guest architecture (ctl.h): how its VMs run, AUTO if they
	 * cannot here, and then why. */
	enum hv_accel	arch_accel[CTL_ARCH_MAX + 1];
	char		arch_why[CTL_ARCH_MAX + 1][160];
	char		version[64];	/* e.g. "QEMU 7.2.x" */
	uint32_t	tsc_khz;	/* host TSC, 0 if unknown */
	char		shares_why[256];/* why shared folders cannot work
					 * here; "" if they can */
};

#define HV_MAX_SERIAL_PORTS	8	/* every backend takes this many */

/* A raw byte channel besides the agent's: the guest sees a virtio-serial
 * port called `name`; the host, the listening socket `fd` (made by the
 * daemon; the backend takes it), one connection at a time. */
struct hv_serial_port {
	const char	*name;
	int		 fd;
};

#define HV_MAX_SHARES		8	/* every backend takes this many */

/* A host directory the guest mounts as virtiofs by `tag`. */
struct hv_share {
	const char	*tag;
	int		 dir_fd;	/* opened by its owner */
	int		 ro;		/* enforced on the host */
};

/* What backs the guest's RAM (see hv_vm_config.ram). */
enum hv_ram {
	HV_RAM_ANON = 0,
	HV_RAM_SHARED,
	HV_RAM_TEMPLATE,
	HV_RAM_RESTORE,
};

/* Everything a backend needs to start one VM. The fds stay the daemon's;
 * the backend duplicates what it keeps. */
struct hv_vm_config {
	const char	*vm_id;
	enum ctl_arch	 arch;		/* the guest's; caps.arch_accel says
					 * it can run */
	int		 dir_fd;	/* the VM's private directory (0700,
					 * the daemon's): backend files go here */
	int		 kernel_fd;
	int		 initrd_fd;
	/* Two disks: the base image (read-only, shared by many VMs) and the
	 * VM's writable disk (raw; the agent mounts an overlay of the two).
	 * The guest finds them by serial: DISK_SERIAL_BASE, _DISK (proto.h). */
	int		 rootfs_fd;
	int		 disk_fd;
	const char	*agent_args;	/* capsule's words to its agent (e.g.
					 * capsule.net=allow), after the
					 * backend's own; may be NULL */
	const char	*boot_args;	/* the caller's, after those; may be
					 * NULL */
	unsigned	 vcpus;
	uint64_t	 memory_mib;
	const struct hv_serial_port *ports;	/* nports of them */
	unsigned	 nports;
	/* A NIC on the backend's own NAT network (network mode "nat"):
	 * guest 10.0.2.15/24, gateway (the host) 10.0.2.2, resolver
	 * 10.0.2.3. Without it the guest has no NIC at all. */
	int		 nat;
	/* Shared folders, and whose rights their file servers have. */
	const struct hv_share *shares;
	unsigned	 nshares;
	uid_t		 share_uid;
	gid_t		 share_gid;
	const gid_t	*share_groups;
	size_t		 share_ngroups;
	/* Unprivileged identity for the hypervisor process once it has
	 * opened its files (0: keep the daemon's). One per VM, so a
	 * compromised hypervisor cannot touch another VM's. */
	uid_t		 uid;
	gid_t		 gid;
	/* Resource limits the process starts with (0: none): its address
	 * space in MiB and how many tasks its uid may have. */
	uint64_t	 rlimit_as_mib;
	unsigned	 rlimit_nproc;
	/* Guest RAM. HV_RAM_ANON: the backend's own. HV_RAM_SHARED: ram_fd,
	 * a file of memory_mib the daemon keeps, mapped shared, so that the
	 * daemon can copy it once save() has stopped the guest.
	 * HV_RAM_TEMPLATE: ram_fd is a template's sealed RAM, mapped
	 * copy-on-write, and restore_fd the device state save() wrote: the
	 * guest goes on from where the template was taken instead of
	 * booting (HV_EV_RESTORED or HV_EV_RESTORE_FAILED says how that
	 * went). HV_RAM_RESTORE: the backend's own RAM, and restore_fd a
	 * full save() (RAM and all) of a VM to go on from, as for a
	 * template. Everything else in the config must be as it was then. */
	enum hv_ram	 ram;
	int		 ram_fd;
	int		 restore_fd;
};

/* The streams a started VM offers; each fd is the daemon's to close. */
struct hv_chans {
	int	agent;		/* connected to the guest agent's port */
	int	console;	/* the guest's serial console, read only */
	int	log;		/* the hypervisor's own stdout and stderr */
};

/* Why a guest ended, as far as its hypervisor said. */
enum hv_end {
	HV_END_UNKNOWN = 0,	/* the process ended without saying why */
	HV_END_POWEROFF,	/* the guest powered off */
	HV_END_REBOOT,		/* the guest reset itself (VMs never reboot) */
	HV_END_PANIC,		/* the guest kernel panicked */
	HV_END_QUIT,		/* the host asked it to (hv_ops.quit) */
	HV_END_SIGNAL,		/* the hypervisor was told to end by a signal */
};

struct hv_exit {
	enum hv_end	end;
	int		have_status;	/* wstatus is known (our own child) */
	int		wstatus;
};

enum hv_event {
	HV_EV_PAUSED,		/* the hypervisor paused the guest by itself */
	HV_EV_RESUMED,
	HV_EV_IO_ERROR,		/* a host write for the guest's disk failed */
	HV_EV_PANIC,		/* the guest says its kernel panicked */
	HV_EV_SAVED,		/* save() finished; the guest is stopped */
	HV_EV_SAVE_FAILED,	/* save() did not; the guest is stopped */
	HV_EV_RESTORED,		/* a HV_RAM_TEMPLATE or _RESTORE guest runs */
	HV_EV_RESTORE_FAILED,	/* ... could not be restored */
};

struct hv_cbs {
	/* The hypervisor process is gone; the backend watches no more. */
	void	(*exited)(void *arg, const struct hv_exit *ex);
	/* Something happened to the running guest; detail is text for
	 * people (the hypervisor's words), never empty. */
	void	(*event)(void *arg, enum hv_event ev, const char *detail);
};

/* What a record says of a VM a previous daemon started, to adopt it. */
struct hv_adopt {
	const char	*vm_id;
	int		 dir_fd;	/* its private directory */
	pid_t		 pid;		/* with start time and uid: */
	uint64_t	 start;		/* see daemon/procid.h */
	uid_t		 uid;
	dev_t		 exe_dev;	/* the hypervisor's binary */
	ino_t		 exe_ino;
};

struct hv_vm;		/* backend-private */

struct hv_ops {
	const char	*name;
	/* Finds out what this host can run; `want` AUTO picks the best. */
	int	(*probe)(enum hv_accel want, struct hv_caps *caps,
		    struct cap_err *err);
	/* Is this (the first len bytes of a file) a kernel it can boot as
	 * a guest of arch? */
	int	(*check_kernel)(enum ctl_arch arch, const uint8_t *head,
		    size_t len, struct cap_err *err);
	/* Starts the guest; events arrive on base from now on. */
	int	(*start)(struct event_base *base, const struct hv_vm_config *cfg,
		    const struct hv_cbs *cbs, void *arg, struct hv_vm **vm,
		    struct hv_chans *chans, struct cap_err *err);
	/* Takes over a running VM a previous daemon started: checks it is
	 * the very process recorded, running the recorded binary, and
	 * connects to it again. -ESRCH: it is gone; -ESTALE: not it. */
	int	(*adopt)(struct event_base *base, const struct hv_adopt *a,
		    const struct hv_cbs *cbs, void *arg, struct hv_vm **vm,
		    struct hv_chans *chans, struct cap_err *err);
	/* Stops (pause 1) or restarts (0) the guest's vCPUs; its memory
	 * and devices stay as they are. */
	int	(*pause)(struct hv_vm *vm, int pause, struct cap_err *err);
	/* Stops the guest and writes its state to state_fd. Not full: the
	 * devices only, for HV_RAM_TEMPLATE starts of copies (its RAM is
	 * the HV_RAM_SHARED file it started with). Full: its RAM too, for
	 * HV_RAM_RESTORE starts. HV_EV_SAVED or _SAVE_FAILED follows; the
	 * guest stays stopped until pause(vm, 0). NULL if unsupported. */
	int	(*save)(struct hv_vm *vm, int state_fd, int full,
		    struct cap_err *err);
	/* Gives up a save() under way, at once: no event follows for it,
	 * and pause(vm, 0) after it lets the guest go on. */
	void	(*save_cancel)(struct hv_vm *vm);
	/* Asks the hypervisor to end the guest now. */
	int	(*quit)(struct hv_vm *vm, struct cap_err *err);
	/* Last resort. */
	void	(*kill)(struct hv_vm *vm);
	/* The process to persist, and the binary it runs. */
	pid_t	(*pid)(const struct hv_vm *vm);
	void	(*exe)(const struct hv_vm *vm, dev_t *dev, ino_t *ino);
	/* Stops watching and frees vm; kills the process if it still runs.
	 * The files it made in dir_fd are left to the daemon. */
	void	(*free)(struct hv_vm *vm);
	/* Stops watching and frees vm, leaving the VM running for a later
	 * daemon to adopt. */
	void	(*detach)(struct hv_vm *vm);
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
