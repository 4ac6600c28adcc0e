/*
 * vfsd.h — the file server behind a shared folder under QEMU: one
 * virtiofsd (QEMU's own C one) per share, speaking vhost-user to QEMU.
 *
 * It acts with the share owner's rights and nothing more (vfsd.c has the
 * how): the directory, opened by the owner, is cloned with every mount
 * below it, nosuid and nodev, read-only for a read-only share, by root in
 * a mount namespace of its own; the server runs as the owner, as root of
 * a user namespace where nobody else is mapped, keeps the owner's
 * supplementary groups, and cannot set a set-user-ID or set-group-ID
 * mode. The kernel locks the mount flags against the server's namespace,
 * so not even a compromised server can write through a read-only share.
 * virtiofsd then pivots into the directory itself (-o sandbox=namespace):
 * nothing outside it is reachable. Files the guest creates belong to the
 * owner; the guest sees the owner's files as root's and everyone else's
 * as nobody's; creating a file as a guest user other than root fails,
 * because that uid has no host identity to act as. The owner can ptrace
 * its own server (it is the owner's process), and so reach the VM's
 * memory and QEMU's side of the vhost-user channel: nothing the owner of
 * the VM could not reach anyway.
 *
 * Capsuled never waits on a server: a server stuck in a file system costs
 * that share, not the daemon. It ends when QEMU closes its socket, so a VM
 * a later daemon adopts keeps its shares and they end with it. Needs
 * capsuled to run as root.
 */
#ifndef CAPSULE_VFSD_H
#define CAPSULE_VFSD_H

#include <sys/types.h>

#include "err.h"

#define VFSD_DEFAULT	"/usr/lib/qemu/virtiofsd"

struct vfsd_owner {
	uid_t		 uid;
	gid_t		 gid;
	const gid_t	*groups;
	size_t		 ngroups;
};

/* The virtiofsd to run ($CAPSULE_VIRTIOFSD, else VFSD_DEFAULT), or an
 * error saying what to install. */
int	vfsd_find(char *out, size_t len, struct cap_err *err);
/* Starts a server for dir_fd on the listening vhost-user socket
 * listen_fd; its output goes to log_fd. Returns its pid. */
pid_t	vfsd_spawn(const char *bin, int dir_fd, int ro,
	    const struct vfsd_owner *who, int listen_fd, int log_fd,
	    struct cap_err *err);

#endif /* CAPSULE_VFSD_H */
