/*
 * vmfiles.h — the files a VM uses on the host, opened with the right
 * rights, and removed again without trusting any path.
 *
 * From a struct vm_spec: the VM's private dir (<state>/vms/<id>, mode 0700,
 * made by capsuled), the guest image files, and the caller-facing files
 * (exec socket, console log, raw serial port sockets) in the run dir: the
 * caller's, or a public dir <state>/run/<id> capsuled makes and gives to
 * the VM's owner. Images the caller named, the run dir and everything in
 * it are opened or created by a child acting as the caller (caller.h);
 * the rest, by capsuled. Everything created is new
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

#define VMFILES_MAX	(8 + CTL_MAX_SERIAL_PORTS + VOLUME_MAX)

struct vm_files {
	/* Results, once done: fds are -1 when taken or closed. */
	int		 private_fd;	/* the private dir */
	int		 kernel, initrd, rootfs;
	int		 console;	/* the console log, to write */
	int		 proxy;		/* the exec socket, listening */
	int		 ports[CTL_MAX_SERIAL_PORTS];	/* listening */
	int		 volumes[VOLUME_MAX];	/* shared dirs, as the caller
						 * opened them */
	/* What to remove when the VM goes: caller-side names, and the
	 * private and public dirs capsuled made (by parent and name). */
	struct caller_made made[VMFILES_MAX];
	size_t		 nmade;
	struct caller_made private_dir;
	struct caller_made public_dir;

	/* In flight. */
	struct caller_op here[VMFILES_MAX], there[VMFILES_MAX];
	int		 here_role[VMFILES_MAX], there_role[VMFILES_MAX];
	size_t		 nhere, nthere;
	struct caller_job *job;
	struct event	*defer;
	const struct hv_ops *hv;
	enum ctl_arch	 arch;		/* the kernel's, to check */
	void		(*done)(struct vm_files *f, const struct cap_err *err,
			    void *arg);
	void		*arg;
};

typedef void vmfiles_done_fn(struct vm_files *f, const struct cap_err *err,
    void *arg);

/* Opens and creates everything spec names, the caller-facing files as
 * `who`; a public run dir capsuled makes goes to `who`. `done` reports
 * from the event loop. On failure everything made so far is gone again. */
int	vmfiles_open(struct vm_files *f, struct event_base *base,
	    const struct vm_spec *spec, const struct caller *who,
	    const struct hv_ops *hv, vmfiles_done_fn *done, void *arg,
	    struct cap_err *err);
/* Stops an open in flight; undoes what it made. */
void	vmfiles_cancel(struct vm_files *f);
/* Closes every fd still held and removes what capsule made. */
void	vmfiles_release(struct vm_files *f);
/* Closes every fd and forgets what capsule made without removing it: the
 * VM lives on for a later daemon to adopt. */
void	vmfiles_close(struct vm_files *f);
/* The files of a VM taken over from an earlier daemon: its private dir
 * (private_fd, taken) and, if it has one, its public run dir (both found
 * by name in vms_fd and run_fd), and what it made elsewhere (made[], the
 * entries taken; each is removed later only if still the same). */
int	vmfiles_adopt(struct vm_files *f, int private_fd, int vms_fd,
	    int run_fd, const char *vm_id, int public, struct caller_made *made,
	    size_t nmade);

/* Image checks on a file's first bytes (pure; also for tests). */
int	vmfiles_check_initrd(const uint8_t *head, size_t len,
	    struct cap_err *err);
int	vmfiles_check_rootfs(const uint8_t *head, size_t len,
	    struct cap_err *err);

#endif /* CAPSULE_VMFILES_H */
