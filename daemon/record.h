/*
 * record.h — a VM's persisted record, so that a later capsuled knows what a
 * previous one left running and what it made.
 *
 * The record lives in the VM's private dir (<state>/vms/<id>/vm.json),
 * where only capsuled can write: never in a caller's run dir. It is written
 * whole to a new temporary file and renamed into place, and read back as
 * untrusted input: every field is checked, names are single path
 * components, and what it points at is acted on only if the kernel still
 * agrees (a process by pid, start time and uid; a file by dev/ino/type in a
 * directory by dev/ino).
 */
#ifndef CAPSULE_RECORD_H
#define CAPSULE_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "caller.h"
#include "err.h"
#include "procid.h"
#include "vmfiles.h"
#include "vmspec.h"

/* 1: a process and what to remove; 2: also all it takes to adopt the VM
 * (its spec, owner, hypervisor binary, console log). */
#define RECORD_FORMAT		2
#define RECORD_NAME		"vm.json"
#define RECORD_MAX_BYTES	(64 * 1024)

/* A name capsule made outside the private dir, to remove when done. */
struct record_made {
	char		*dir;		/* absolute */
	dev_t		 dir_dev;
	ino_t		 dir_ino;
	uint64_t	 dir_btime;	/* ns; 0: unknown */
	char		*name;		/* one component */
	dev_t		 dev;
	ino_t		 ino;
	uint64_t	 btime;		/* ns; 0: unknown */
	mode_t		 type;		/* S_IFSOCK, S_IFREG or S_IFDIR */
};

struct record {
	int		 format;
	char		 vm_id[37];
	char		 backend[32];
	char		 boot_id[PROCID_BOOT_ID_LEN + 1];
	struct procid	 proc;		/* the hypervisor process */
	uid_t		 owner_uid;
	long long	 created_at;
	struct record_made made[VMFILES_MAX];
	size_t		 nmade;
	/* Format 2. */
	int		 have_spec;
	struct vm_spec	 spec;		/* owns its strings */
	gid_t		 owner_gid;
	gid_t		 owner_groups[CALLER_MAX_GROUPS];
	size_t		 owner_ngroups;
	struct caller_ident hv_exe;	/* the hypervisor's binary */
	struct caller_ident console;	/* the console log file */
};

/* Pure codec: JSON text <-> struct. decode checks every field; the
 * result owns its strings (record_free). */
char	*record_encode(const struct record *r);
int	record_decode(const char *buf, size_t len, struct record *r,
	    struct cap_err *err);
void	record_free(struct record *r);
/* Is s a vm_id as capsule makes them (a lower-case v4-style UUID)? */
int	record_id_ok(const char *s);

/* Writes the record into the private dir atomically (tmp + rename). */
int	record_write(int private_fd, const struct record *r,
	    struct cap_err *err);
/* Reads and decodes the record in a private dir. */
int	record_read(int private_fd, struct record *r, struct cap_err *err);

#endif /* CAPSULE_RECORD_H */
