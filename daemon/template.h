/*
 * template.h — start templates: a VM as it was right after its first
 * boot (guest agent ready, network set up, nothing run), kept so that
 * later VMs of the same start spec are restored from it instead of booting.
 *
 * A template is taken from the first VM of a spec that boots cold: at
 * ready, before its StartVM is answered, the hypervisor stops it and
 * saves its device state (its RAM is already a file the daemon holds);
 * the daemon copies the RAM into a sealed memfd and the writable disk
 * next to it, and the VM goes on. Later VMs map that RAM copy-on-write
 * (pages nobody writes are shared, and never read from disk again), get
 * a copy of the disk, and load the device state: tens of milliseconds
 * instead of a boot. Both the VM a template came from and every restored
 * copy get the host's time and fresh randomness before anything runs
 * (CHAN_REFRESH).
 *
 * On disk: <state>/templates/<id>/{key,ram,state,disk.img}, id being a
 * hash of the key, the text of everything that makes one start differ
 * from another; a template is used only if its key file says exactly the
 * key asked for. Made in .building-<id> and renamed into place; never
 * written once there (restored VMs map its RAM), only removed.
 */
#ifndef CAPSULE_TEMPLATE_H
#define CAPSULE_TEMPLATE_H

#include <stdint.h>

#include "err.h"

#define TEMPLATE_DIR		"templates"
#define TEMPLATE_DISK_MAX	8	/* kept on disk; the least recently
					 * made or used go first */

struct template;

/* What a start's template depends on. The fds are only fstat'ed: a file
 * is known by device, inode, size and change times, which any rewrite
 * changes. */
struct template_spec {
	const char	*hv;		/* backend, accelerator and version */
	int		 kernel_fd, initrd_fd, rootfs_fd;
	unsigned	 vcpus;
	uint64_t	 memory_mib;
	uint64_t	 disk_mib;
	const char	*agent_args;	/* may be NULL */
	const char	*boot_args;	/* may be NULL */
	const char	*net;		/* network mode and what NET carries */
};

/* dir_fd: <state>/templates, capsuled's own (0700); kept. */
void	template_init(int dir_fd);
/* The name of key's directory in <state>/templates (16 hex digits; the
 * key file inside decides whether it is key's). */
void	template_id(const char *key, char out[17]);
/* The key for a spec (a new string), or NULL without memory. */
char	*template_key(const struct template_spec *s);

/* The template for key, loaded into memory if it is only on disk; NULL
 * if there is none (a broken one is removed and logged). */
struct template *template_get(const char *key);
/* Its RAM: a sealed memfd (no writes, no size change) of memory_mib. */
int	template_ram(const struct template *t);
/* A new fd on its device state, to read from the start. */
int	template_state(const struct template *t, struct cap_err *err);
/* A copy of its disk as name in dir_fd (new, 0600); returns its fd. */
int	template_copy_disk(const struct template *t, int dir_fd,
	    const char *name, struct cap_err *err);
/* A restore from key's template failed: it goes, from memory and disk. */
void	template_drop(const char *key);

/* Taking one. begin: returns the fd the device state is to be written
 * to, or -EEXIST if key has a template or one is being taken. Then
 * exactly one of commit (with the VM's shared RAM file and its disk,
 * both as they are now, the guest stopped) or abort. */
int	template_begin(const char *key, struct cap_err *err);
int	template_commit(const char *key, int ram_fd, uint64_t ram_bytes,
	    int disk_fd, struct cap_err *err);
void	template_abort(const char *key);

#endif /* CAPSULE_TEMPLATE_H */
