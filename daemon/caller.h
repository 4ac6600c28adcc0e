/*
 * caller.h — file system work done with the caller's rights.
 *
 * capsuled often runs as root, but a path in a request is the caller's: it
 * must open, create or bind there only what the caller itself could (after
 * OpenBSD vmd's vm_checkperm/config_setvm). So the work on caller-named
 * paths runs in a short-lived child that takes on the caller's uid, gid and
 * groups, as the kernel reports them for the control connection, and hands
 * the results back as file descriptors. Whatever it creates it creates new
 * (O_EXCL, O_NOFOLLOW, mode 0600/0700): an existing file, a symlink or a
 * hard link at a name capsule would create is a conflict, never something
 * to write through. If any step fails, the child undoes the steps before
 * it, so a failed request leaves nothing behind.
 *
 * The child runs asynchronously with a time limit, so a hung file system
 * (a FUSE mount that never answers) costs one child, not the daemon.
 * The same steps can also run in the daemon itself, with its own rights,
 * for files in directories capsuled owns (caller_run_here).
 *
 * What a step made is described by dev/ino pairs, so it can be removed
 * later (caller_made_remove) only if the name still refers to it.
 */
#ifndef CAPSULE_CALLER_H
#define CAPSULE_CALLER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "err.h"

#define CALLER_MAX_GROUPS	256	/* more are dropped: fewer rights */
#define CALLER_HEAD_LEN		2048	/* bytes of a file read for its magic */
#define CALLER_TIMEOUT_MS	10000

struct caller {
	uid_t	uid;
	gid_t	gid;
	pid_t	pid;
	size_t	ngroups;
	gid_t	groups[CALLER_MAX_GROUPS];
};

/* The peer of a connected Unix socket (SO_PEERCRED, SO_PEERGROUPS). */
int	caller_from_socket(int fd, struct caller *c, struct cap_err *err);
/* The daemon itself. */
void	caller_self(struct caller *c);
/* A user named in the configuration (a name or a uid): its uid, primary
 * gid and groups as the user database has them; pid is the daemon's. */
int	caller_of_user(const char *user, struct caller *c,
	    struct cap_err *err);
/* In a child: takes on who's uid, gid and groups for good (nothing to do
 * unless the daemon is root and who is not); fails closed. */
int	caller_become(const struct caller *who);

enum caller_kind {
	CALLER_READ,	/* open an existing file or block device to read */
	CALLER_DIR,	/* open a directory, making it (the last component
			 * only: its parent must exist) if it is missing */
	CALLER_CREATE,	/* create a new file, mode 0600, opened O_RDWR */
	CALLER_BIND,	/* create a listening Unix socket, mode 0600 */
	CALLER_SHARE,	/* open an existing directory to share (a link
			 * at its name is followed: as the caller) */
};

/* Which file a name was: device and inode, and its birth time where the
 * file system keeps one (a freed inode number can be handed out again, a
 * birth time tells the new file from the old). */
struct caller_ident {
	dev_t		dev;
	ino_t		ino;
	uint64_t	btime;		/* ns since the epoch; 0: unknown */
};

/* The ident and type (S_IFMT bits) of name in dfd, not following a link
 * (name "" with dfd: the fd itself). */
int	caller_ident_at(int dfd, const char *name, struct caller_ident *id,
	    mode_t *type);
/* Same file? A birth time known on only one side does not count. */
int	caller_ident_same(const struct caller_ident *a,
	    const struct caller_ident *b);

struct caller_op {
	/* in */
	enum caller_kind kind;
	const char	*field;		/* the request field, for messages */
	const char	*path;		/* absolute, or a name in op `at` */
	int		 at;		/* index of an earlier CALLER_DIR, or -1 */
	/* CALLER_DIR that creates, as root: give the new dir to this uid
	 * and gid (chown_to set). */
	int		 chown_to;
	uid_t		 uid;
	gid_t		 gid;
	/* CALLER_BIND: a stale socket of ours may stand at the name (a VM
	 * re-adopted after a restart): replace it if it is still `replace`. */
	int		 replace_set;
	struct caller_ident replace;
	/* out: every fd is the owner's to close (or -1) */
	int		 fd;		/* the file, directory or socket */
	int		 dir_fd;	/* the directory that holds it */
	int		 created;	/* CALLER_DIR: it did not exist */
	struct caller_ident id;		/* of fd's file */
	struct caller_ident dir_id;	/* of dir_fd's directory */
	uint64_t	 size;		/* CALLER_READ: its size in bytes */
	uint8_t		 head[CALLER_HEAD_LEN];	/* CALLER_READ: first bytes */
	size_t		 head_len;
};

/* Initializes ops[i] for use: no results, every fd -1. */
void	caller_op_init(struct caller_op *op, enum caller_kind kind,
	    const char *field, const char *path, int at);
/* Closes the fds an op holds. */
void	caller_op_close(struct caller_op *op);

/* Called once with every op's results (err NULL) or with what failed
 * (then no op holds anything: the steps were undone). */
typedef void caller_done_fn(struct caller_op *ops, size_t n,
    const struct cap_err *err, void *arg);

struct caller_job;

/* Runs ops in order as `who`, in a child; `done` is called from the event
 * loop, never from inside this call. Returns the job (to cancel it), or
 * NULL with err set. */
struct caller_job *caller_run(struct event_base *base,
	    const struct caller *who, struct caller_op *ops, size_t n,
	    caller_done_fn *done, void *arg, struct cap_err *err);
/* Kills the child; `done` is not called. The ops hold nothing. */
void	caller_cancel(struct caller_job *job);
/* Runs ops in order here, with the daemon's rights. */
int	caller_run_here(struct caller_op *ops, size_t n, struct cap_err *err);

/* A name capsule created in a directory, and how to remove it safely. */
struct caller_made {
	int		 dir_fd;	/* held until removal, or -1 */
	char		*dir_path;	/* for the state record */
	struct caller_ident dir_id;
	char		*name;
	struct caller_ident id;
	mode_t		 type;		/* S_IFSOCK, S_IFREG or S_IFDIR */
};

/* Takes what ops[i] made (its dir_fd moves into m): the socket or file it
 * created, or the directory, if CALLER_DIR created it. */
int	caller_made_take(struct caller_made *m, struct caller_op *ops,
	    size_t i);
/* Opens m->dir_path for a later removal (a previous daemon's record):
 * -ESTALE unless it is still the directory m->dir_id names. */
int	caller_made_reopen(struct caller_made *m);
/* Removes the name if it still refers to what capsule made, and is still
 * of its type (a directory only if it is empty); frees m's contents. Returns 0, or a negative
 * errno (-ESTALE: the name now refers to something else; left alone). */
int	caller_made_remove(struct caller_made *m);
void	caller_made_free(struct caller_made *m);

/* The last path component, or NULL if there is none a file could be
 * created at ("", "/", ".", ".."). */
const char *caller_basename(const char *path);

#endif /* CAPSULE_CALLER_H */
