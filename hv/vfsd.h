/*
 * vfsd.h — the file server behind a shared folder under QEMU: one
 * virtiofsd (QEMU's own C one) per share, speaking vhost-user to QEMU.
 *
 * It acts with the share owner's rights and nothing more. In a mount
 * namespace of its own, the directory (a descriptor its owner opened) is
 * bind-mounted nosuid and nodev, read-only for a read-only share, by
 * capsuled as root; then the process becomes the owner and enters a user
 * namespace in which the owner is root and nobody else is mapped. The
 * read-only flag was set by a more privileged namespace than the server's,
 * so the kernel keeps it locked: nothing the guest asks of the server,
 * not even a compromised server, can make the share writable. virtiofsd
 * then pivots into the directory itself (-o sandbox=namespace): nothing
 * outside it is reachable. The map is written by capsuled, which must be
 * root: virtiofsd drops supplementary groups with setgroups(2), which a
 * namespace that mapped itself may not do. Files the guest creates belong
 * to the owner;
 * the guest sees the owner's files as root's and everyone else's as
 * nobody's; creating a file as a guest user other than root fails,
 * because that uid has no host identity to act as.
 *
 * virtiofsd ends when QEMU closes its vhost-user socket, so a VM a later
 * daemon adopts keeps its shares working and they end with it.
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
