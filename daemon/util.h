/*
 * util.h — small helpers the daemon's files share: cleanup attributes,
 * time, ids, files and directories.
 */
#ifndef CAPSULE_UTIL_H
#define CAPSULE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <unistd.h>

#include "err.h"

static inline void
freep(void *p)
{
	free(*(void **)p);
}
static inline void
closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}
#define _cleanup_free_	__attribute__((cleanup(freep)))
#define _cleanup_close_	__attribute__((cleanup(closep)))
#define TAKE_FD(fd)	({ int _fd = (fd); (fd) = -1; _fd; })
#define TAKE_PTR(p)	({ __typeof__(p) _p = (p); (p) = NULL; _p; })

#define STRINGIFY_(x)	#x
#define STRINGIFY(x)	STRINGIFY_(x)

/* glibc's sys/queue.h lacks the BSD _SAFE iterators. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

uint64_t util_now_ms(void);		/* CLOCK_MONOTONIC */
/* asprintf that returns the string, or NULL. */
char	*util_strdup_printf(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	util_uuid(char out[37]);	/* random v4 UUID */
void	util_rfc3339(long long unix_secs, char out[32]);
/* mkdir -p with the final component mode `mode`. */
int	util_mkdir_p(const char *path, unsigned mode, struct cap_err *err);
/* Unix stream socket bound and listening at path (replacing nothing). */
int	util_listen_unix(const char *path, unsigned mode, struct cap_err *err);
/* Non-blocking connect to a Unix socket. */
int	util_connect_unix(const char *path, struct cap_err *err);
/* The same for socket `name` in the directory dirfd. */
int	util_listen_unix_at(int dirfd, const char *name, unsigned mode,
	    struct cap_err *err);
int	util_connect_unix_at(int dirfd, const char *name, struct cap_err *err);
/* 1 if something accepts connections at path, 0 if not (stale/absent). */
int	util_unix_alive(const char *path);
/* A Unix socket capsuled made, known by its inode so that capsuled never
 * removes one someone else put in its place. */
struct util_sock {
	int	 made;
	dev_t	 dev;
	ino_t	 ino;
};
/* Removes a stale socket of capsuled's own at path (its uid, no one
 * listening); refuses anything else. `what` names the path in errors. */
int	util_unix_clear_stale(const char *path, const char *what,
	    struct cap_err *err);
/* util_unix_clear_stale, then util_listen_unix, remembering it in own. */
int	util_listen_unix_own(const char *path, unsigned mode,
	    struct util_sock *own, const char *what, struct cap_err *err);
/* Unlinks path only if it is still the socket in own. */
void	util_unlink_own(const char *path, struct util_sock *own);
/* Writes text to dfd/name whole or not at all: a new NAME.tmp, fsync,
 * rename, fsync of the dir. 0 or -errno. */
int	util_write_atomic(int dfd, const char *name, const char *text,
	    size_t len);
/* Runs argv[0] (absolute) to completion, stdin /dev/null, with `keep`
 * (if >= 0) as its fd 3 and nothing else of ours, and an environment of
 * PATH alone; the start of its output goes into out (may be NULL) and
 * into the error if it fails.
 * Synchronous: for tools that take milliseconds on capsuled's own files. */
int	util_run(char *const argv[], int keep, char *out, size_t outlen,
	    struct cap_err *err);
/* Host facts for request limits. */
unsigned util_host_cpus(void);
uint64_t util_host_memory_mib(void);

#endif /* CAPSULE_UTIL_H */
