/*
 * vmstate.h — a running VM's whole state: taken from it, and given to a
 * new VM that goes on from there instead of booting (vmstate.c). ForkVM
 * (vmfork.c) and snapshots (vmsnap.c) are made of these.
 */
#ifndef CAPSULE_VMSTATE_H
#define CAPSULE_VMSTATE_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "err.h"

#define VMSTATE_SAVE_S		60	/* to save a VM and copy its disk, and
					 * a second more per 32 MiB of RAM */

struct vm;

/* What a new VM starts from. */
struct vmstate_src {
	int		 state_fd;	/* a full save (read from a new open) */
	int		 disk_fd;	/* the writable disk as saved */
	off_t		 disk_size;
	const char	*how;		/* timing_ms.start: "forked", ... */
	char		 note[192];	/* timing_ms.start_note */
	const char	*key;		/* the saved VM's identity (its kernel,
					 * images, settings: vmtemplate_key);
					 * NULL: not checked */
};

/* The StartVM request of a VM of vm's configuration, with nothing of its
 * host ends (run dir, sockets and log go where capsuled puts a VM's) and
 * no stop_on_disconnect; NULL without memory. */
json_t	*vmstate_request(const struct vm *vm);
/* Is there room on the state's file system for a save of vm and `disks`
 * copies of its disk (and capsule's reserve)? 0, or -ENOSPC (limit). */
int	vmstate_room(const struct vm *vm, unsigned disks, struct cap_err *err);

/* The outcome of a capture; vm is NULL if it went meanwhile. */
typedef void (*vmstate_cb)(struct vm *vm, const struct cap_err *err,
    void *arg);

/* Quiesces vm (its agent has read all we sent), saves it whole, RAM and
 * devices, to state_fd and copies its writable disk to disk_fd while it
 * is stopped (*disk_size: the copy's size), then lets it go on as it
 * was. 0: cb will report; else err says why not (conflict: a VM that is
 * not running, has shared folders, raw serial or published ports, or
 * open streams; see docs/snapshots.md). */
int	vmstate_capture(struct vm *vm, int state_fd, int disk_fd,
	    off_t *disk_size, vmstate_cb cb, void *arg, struct cap_err *err);

#endif /* CAPSULE_VMSTATE_H */
