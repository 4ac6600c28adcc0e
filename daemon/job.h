/*
 * job.h — a helper program run to completion beside the event loop.
 *
 * Image work is done by real tools (skopeo, umoci, mkfs.ext4, du) and by
 * forked children of capsuled's own (a walk that copies an OCI layout).
 * Each runs as a job: its own process group, stdin /dev/null, stdout and
 * stderr into one pipe the daemon reads line by line (every line to the
 * `line` callback; the last JOB_TAIL bytes kept for the error message),
 * optionally as a caller's uid, gid and groups, with a file-size limit,
 * and a time limit after which it is killed. `done` is called once, with
 * its wait status, when it has ended and its output is read; a cancelled
 * job is killed, reaped and calls nothing.
 */
#ifndef CAPSULE_JOB_H
#define CAPSULE_JOB_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "caller.h"
#include "err.h"

#define JOB_TAIL	2048		/* output kept for errors */
#define JOB_MAX_LINE	4096		/* longer lines are cut */
#define JOB_EOF_GRACE_S	2		/* output read after it exits */

struct job;

struct job_opts {
	const struct caller *as;	/* NULL: the daemon's own identity */
	uint64_t	 fsize_max;	/* RLIMIT_FSIZE in bytes; 0: none */
	unsigned	 timeout_s;	/* 0: none */
	const char	*const *envp;	/* NULL: an empty environment */
	/* Fds the child keeps, as 3 and 4: -1 (or, for keep_fd2, 0 as a
	 * zeroed struct leaves it) for none. */
	int		 keep_fd;
	int		 keep_fd2;
	/* A line of its output (NUL-terminated, newline removed). */
	void		(*line)(void *arg, const char *line);
};

/* status: a wait status (WIFEXITED ...); tail: its last output, "" if
 * none; timed_out: it was killed at its time limit. */
typedef void job_done_fn(void *arg, int status, const char *tail,
    int timed_out);
/* A function a forked child runs (for work done with the daemon's rights
 * but away from its loop): its return value is the exit status. */
typedef int job_fn(void *arg);

/* Runs argv[0] (an absolute path) with argv. */
struct job *job_exec(struct event_base *base, char *const argv[],
	    const struct job_opts *o, job_done_fn *done, void *arg,
	    struct cap_err *err);
/* Runs fn(fn_arg) in a forked child. */
struct job *job_fork(struct event_base *base, job_fn *fn, void *fn_arg,
	    const struct job_opts *o, job_done_fn *done, void *arg,
	    struct cap_err *err);
/* Kills the job's process group, reaps it, frees; done is not called. */
void	job_cancel(struct job *j);
/* "exited with status 2: <tail>" for an error message. */
void	job_describe(int status, int timed_out, char *out, size_t len);

#endif /* CAPSULE_JOB_H */
