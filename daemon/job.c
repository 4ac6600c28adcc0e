/*
 * job.c — a helper program run to completion beside the loop (job.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "job.h"
#include "log.h"
#include "osdep.h"
#include "procid.h"
#include "proto.h"
#include "util.h"

struct job {
	struct event_base	*base;
	pid_t			 pid;
	int			 pidfd;
	int			 out;		/* read end of its output */
	struct event		*out_ev, *exit_ev, *timer;
	struct evbuffer		*buf;		/* a partial line */
	char			 tail[JOB_TAIL];
	size_t			 tail_len;
	int			 exited, eof, status, timed_out;
	void			(*line)(void *, const char *);
	job_done_fn		*done;
	void			*arg;
};

static void
job_free(struct job *j)
{
	if (j->out_ev != NULL)
		event_free(j->out_ev);
	if (j->exit_ev != NULL)
		event_free(j->exit_ev);
	if (j->timer != NULL)
		event_free(j->timer);
	if (j->buf != NULL)
		evbuffer_free(j->buf);
	closep(&j->out);
	closep(&j->pidfd);
	free(j);
}

/* Keeps the last JOB_TAIL - 1 bytes of output, as text. */
static void
job_keep(struct job *j, const char *s, size_t n)
{
	if (n >= sizeof(j->tail) - 1) {
		s += n - (sizeof(j->tail) - 1);
		n = sizeof(j->tail) - 1;
	}
	if (j->tail_len + n >= sizeof(j->tail)) {
		size_t drop = j->tail_len + n - (sizeof(j->tail) - 1);

		memmove(j->tail, j->tail + drop, j->tail_len - drop);
		j->tail_len -= drop;
	}
	memcpy(j->tail + j->tail_len, s, n);
	j->tail_len += n;
	j->tail[j->tail_len] = '\0';
}

/* A line of a tool's output goes into logs, JSON and terminals: control
 * characters (escape sequences, NUL, CR) become spaces, bytes that are
 * not UTF-8 '?'. */
static void
job_emit(struct job *j, char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = ' ';
	s[n] = '\0';
	cap_utf8_scrub(s, n);
	if (n > 0 && j->line != NULL)
		j->line(j->arg, s);
	job_keep(j, s, n);
	job_keep(j, "\n", 1);
}

static void
job_lines(struct job *j, int all)
{
	char line[JOB_MAX_LINE + 1];
	struct evbuffer_ptr p;
	size_t n;

	for (;;) {
		p = evbuffer_search_eol(j->buf, NULL, &n, EVBUFFER_EOL_LF);
		if (p.pos < 0) {
			n = evbuffer_get_length(j->buf);
			if (n == 0 || (!all && n < JOB_MAX_LINE))
				return;
			n = n > JOB_MAX_LINE ? JOB_MAX_LINE : n;
			evbuffer_remove(j->buf, line, n);
		} else {
			size_t len = (size_t)p.pos;

			n = len > JOB_MAX_LINE ? JOB_MAX_LINE : len;
			evbuffer_remove(j->buf, line, n);
			evbuffer_drain(j->buf, len - n + 1);
		}
		job_emit(j, line, n);
	}
}

static void
job_finish(struct job *j)
{
	char tail[JOB_TAIL];
	size_t n = j->tail_len;

	if (!j->exited || !j->eof)
		return;
	/* Trailing newlines say nothing. */
	while (n > 0 && j->tail[n - 1] == '\n')
		n--;
	memcpy(tail, j->tail, n);
	tail[n] = '\0';
	j->done(j->arg, j->status, tail, j->timed_out);
	job_free(j);
}

static void
job_out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int n;

	(void)what;
	n = evbuffer_read(j->buf, fd, 16384);
	if (n > 0) {
		job_lines(j, 0);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	job_lines(j, 1);
	event_del(j->out_ev);
	j->eof = 1;
	job_finish(j);
}

static void
job_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	struct timeval grace = { JOB_EOF_GRACE_S, 0 };
	int st = 255 << 8;	/* unknown, if it cannot be read */

	(void)fd;
	(void)what;
	/* Anything of its group still running goes with it: killed while
	 * the leader is a zombie, so the group's id cannot be anyone's. */
	if (procid_exited(j->pidfd) == 0)
		return;
	kill(-j->pid, SIGKILL);
	procid_reap(j->pidfd, &st);
	j->status = st;
	j->exited = 1;
	event_del(j->exit_ev);
	/* Its output ends now, or soon: whoever else holds the pipe (a
	 * process that left the group) does not hold the job. */
	evtimer_del(j->timer);
	if (!j->eof)
		evtimer_add(j->timer, &grace);
	job_finish(j);
}

static void
job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;

	(void)fd;
	(void)what;
	if (j->exited) {	/* the grace for its output is over */
		job_lines(j, 1);
		event_del(j->out_ev);
		j->eof = 1;
		job_finish(j);
		return;
	}
	j->timed_out = 1;
	kill(-j->pid, SIGKILL);
	procid_signal(j->pidfd, SIGKILL);
}

/* In the child: becomes what o says; output goes to out. */
static void
job_child_setup(const struct job_opts *o, int out, pid_t parent)
{
	struct rlimit rl;
	sigset_t none;
	int fd;

	setsid();	/* its own session and group: nothing of capsuled's */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) < 0 || dup2(fd, 0) < 0 ||
	    dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(126);
	/* Out of the way first, so that neither overwrites the other. */
	if (o->keep_fd >= 0) {
		int a = fcntl(o->keep_fd, F_DUPFD, 10), b = o->keep_fd2 > 0 ?
		    fcntl(o->keep_fd2, F_DUPFD, 10) : -1;

		if (a < 0 || dup2(a, 3) < 0 || (o->keep_fd2 > 0 &&
		    (b < 0 || dup2(b, 4) < 0)))
			_exit(126);
	}
	fd = o->keep_fd < 0 ? 3 : o->keep_fd2 > 0 ? 5 : 4;
	osdep_closefrom(fd);
	if (o->fsize_max > 0) {
		rl.rlim_cur = rl.rlim_max = o->fsize_max;
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(126);
	}
	if (o->as != NULL && caller_become(o->as) < 0) {
		dprintf(2, "cannot take on uid %u\n", (unsigned)o->as->uid);
		_exit(126);
	}
	/* After the change of identity, which clears it: if capsuled dies,
	 * so does the job (the next capsuled clears what it left). */
	osdep_parent_death_signal(SIGKILL);
	if (getppid() != parent)
		_exit(126);
}

static struct job *
job_spawn(struct event_base *base, char *const argv[], job_fn *fn,
    void *fn_arg, const struct job_opts *o, job_done_fn *done, void *arg,
    struct cap_err *err)
{
	static char *const empty[] = { NULL };
	struct timeval tv = { o->timeout_s, 0 };
	struct job *j;
	pid_t parent;
	int p[2];

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	j->base = base;
	j->pidfd = j->out = -1;
	j->line = o->line;
	j->done = done;
	j->arg = arg;
	if (osdep_pipe(p, O_CLOEXEC) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "pipe: %s", strerror(errno));
		free(j);
		return NULL;
	}
	parent = getpid();
	if ((j->pid = fork()) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		free(j);
		return NULL;
	}
	if (j->pid == 0) {
		job_child_setup(o, p[1], parent);
		if (fn != NULL)
			_exit(fn(fn_arg));
		execve(argv[0], argv, o->envp ? (char *const *)o->envp :
		    empty);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	j->out = p[0];
	fcntl(j->out, F_SETFL, O_NONBLOCK);
	j->pidfd = procid_open_child(j->pid);
	j->buf = evbuffer_new();
	j->out_ev = event_new(base, j->out, EV_READ | EV_PERSIST, job_out_cb,
	    j);
	if (j->pidfd >= 0)
		j->exit_ev = event_new(base, j->pidfd, EV_READ | EV_PERSIST,
		    job_exit_cb, j);
	j->timer = evtimer_new(base, job_timeout_cb, j);
	if (j->pidfd < 0 || j->buf == NULL || j->out_ev == NULL ||
	    j->exit_ev == NULL || j->timer == NULL ||
	    event_add(j->out_ev, NULL) < 0 || event_add(j->exit_ev, NULL) < 0 ||
	    (o->timeout_s > 0 && evtimer_add(j->timer, &tv) < 0)) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "cannot watch %s (pid %d)",
		    argv ? argv[0] : "a helper", (int)j->pid);
		kill(-j->pid, SIGKILL);
		while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
			;
		job_free(j);
		return NULL;
	}
	return j;
}

struct job *
job_exec(struct event_base *base, char *const argv[],
    const struct job_opts *o, job_done_fn *done, void *arg,
    struct cap_err *err)
{
	return job_spawn(base, argv, NULL, NULL, o, done, arg, err);
}

struct job *
job_fork(struct event_base *base, job_fn *fn, void *fn_arg,
    const struct job_opts *o, job_done_fn *done, void *arg,
    struct cap_err *err)
{
	return job_spawn(base, NULL, fn, fn_arg, o, done, arg, err);
}

void
job_cancel(struct job *j)
{
	if (j == NULL)
		return;
	if (!j->exited) {
		/* The group, and the child itself through its pidfd: a child
		 * cancelled before its setsid() is in no group of its own yet,
		 * and the wait below must not outlast it. */
		kill(-j->pid, SIGKILL);
		procid_signal(j->pidfd, SIGKILL);
		procid_wait(j->pidfd);
	}
	job_free(j);
}

void
job_describe(int status, int timed_out, char *out, size_t len)
{
	if (timed_out)
		snprintf(out, len, "took too long and was stopped");
	else if (WIFEXITED(status))
		snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "was killed by signal %d%s", WTERMSIG(status),
		    WTERMSIG(status) == SIGXFSZ ? " (file too large)" : "");
	else
		snprintf(out, len, "ended with wait status %d", status);
}
