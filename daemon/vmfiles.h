/*
 * vmfiles.h — the files a VM uses on the host, opened with the right
 * rights, and removed again without trusting any path.
 *
 * From a struct vm_spec: the VM's private dir (<state>/vms/<id>, mode 0700,
 * made by capsuled), the guest image files, and the caller-facing files
 * (exec socket, console log, raw serial port sockets) in the run dir. What
 * the caller named is opened or created by a child acting as the caller
 * (caller.h); what capsuled chose, by capsuled. Everything created is new
 * (O_EXCL), private (0600/0700) and remembered by dev/ino, so removing it
 * later touches only what capsule made: never a directory it did not
 * create, never a console log the caller named (that file is theirs).
 */
#ifndef CAPSULE_VMFILES_H
#define CAPSULE_VMFILES_H

#include <stdint.h>

#include <event2/event.h>

#include "caller.h"
#include "ctl.h"
#include "err.h"
#include "hv.h"
#include "vmspec.h"

#define VMFILES_MAX	(8 + CTL_MAX_SERIAL_PORTS)

struct vm_files {
	/* Results, once done: fds are -1 when taken or closed. */
	int		 private_fd;	/* the private dir */
	int		 kernel, initrd, rootfs;
	uint64_t	 rootfs_size;
	int		 console;	/* the console log, to write */
	int		 proxy;		/* the exec socket, listening */
	int		 ports[CTL_MAX_SERIAL_PORTS];	/* listening */
	/* What to remove when the VM goes: caller-side names, and the
	 * private dir (by its parent and name). */
	struct caller_made made[VMFILES_MAX];
	size_t		 nmade;
	struct caller_made private_dir;

	/* In flight. */
	struct caller_op here[VMFILES_MAX], there[VMFILES_MAX];
	int		 here_role[VMFILES_MAX], there_role[VMFILES_MAX];
	size_t		 nhere, nthere;
	struct caller_job *job;
	struct event	*defer;
	const struct hv_ops *hv;
	void		(*done)(struct vm_files *f, const struct cap_err *err,
			    void *arg);
	void		*arg;
};

typedef void vmfiles_done_fn(struct vm_files *f, const struct cap_err *err,
    void *arg);

/* Opens and creates everything spec names; `done` reports from the event
 * loop. On failure everything made so far is gone again. */
int	vmfiles_open(struct vm_files *f, struct event_base *base,
	    const struct vm_spec *spec, const struct caller *who,
	    const struct hv_ops *hv, vmfiles_done_fn *done, void *arg,
	    struct cap_err *err);
/* Stops an open in flight; undoes what it made. */
void	vmfiles_cancel(struct vm_files *f);
/* Closes every fd still held and removes what capsule made. */
void	vmfiles_release(struct vm_files *f);

/* Image checks on a file's first bytes (pure; also for tests). */
int	vmfiles_check_initrd(const uint8_t *head, size_t len,
	    struct cap_err *err);
int	vmfiles_check_rootfs(const uint8_t *head, size_t len,
	    struct cap_err *err);

#endif /* CAPSULE_VMFILES_H */
