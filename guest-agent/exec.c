/*
 * exec.c — one command per stream: spawning it, feeding its stdin under the
 * host's credit, reading its output under ours, and reporting its exit.
 *
 * Nothing here blocks: every fd the agent keeps is non-blocking, and a
 * stream that cannot make progress simply waits for the next poll round.
 * The one exception is a detached command, whose start is waited for (a
 * few seconds at most) so the host hears whether it started at all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "copy.h"
#include "proto.h"

#define EXEC_DEFAULT_PATH \
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define EXEC_DEFAULT_HOME	"HOME=/root"
#define EXEC_DEFAULT_TERM	"TERM=xterm-256color"
#define EXEC_KEEP_INBUF		65536	/* largest idle stdin buffer */
#define EXEC_NAME_MAX		512	/* of argv[0], dir and user in messages */
#define EXEC_LOG_DIR		"/var/log/capsule"	/* detached output */
#define EXEC_LOG_MODE		0640
#define EXEC_DETACH_WAIT_MS	5000	/* for a detached child to exec */

/* What the child reports through its CLOEXEC pipe when it cannot go on. */
enum exec_step {
	EXEC_STEP_SETSID = 1,
	EXEC_STEP_TTY,
	EXEC_STEP_DUP,
	EXEC_STEP_CHDIR,
	EXEC_STEP_EXEC,
	EXEC_STEP_USER,		/* text: the call that failed */
	EXEC_STEP_LOG,		/* text: the file that failed */
	EXEC_STEP_COPY,		/* text: the copy's own message */
};

/* Written with one write() of at most PIPE_BUF bytes, so it arrives whole:
 * the header, then the text up to and including its NUL. */
struct exec_report {
	int32_t	step;
	int32_t	err;
	char	text[PIPE_BUF - 8];
};
#define EXEC_REPORT_HEAD	8

/* Everything the child needs, prepared before fork(). */
struct exec_spawn {
	const char	*const *argv;
	const char	*const *envp;
	const char	*dir;
	int		 tty;
	int		 detach;
	const char	*slave;
	const struct user *user;
	int		 in, out, err;	/* child ends of the pipes */
	int		 report;	/* write end of the error pipe */
};

static struct rlimit exec_nofile;	/* what commands get */
static int exec_nofile_saved;

int
exec_init(void)
{
	struct rlimit rl = { AGENT_NOFILE, AGENT_NOFILE };

	if (getrlimit(RLIMIT_NOFILE, &exec_nofile) < 0)
		return -errno;
	exec_nofile_saved = 1;
	/* Four fds per stream, 1024 streams: more than the default 1024. */
	if (exec_nofile.rlim_max > rl.rlim_max)
		rl.rlim_max = exec_nofile.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	return 0;
}

struct stream *
exec_new(uint32_t id)
{
	struct stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->id = id;
	s->in_fd = s->err_fd = -1;
	s->out_fd[EXEC_STDOUT] = s->out_fd[EXEC_STDERR] = -1;
	chan_tx_init(&s->tx);
	chan_rx_init(&s->rx);
	return s;
}

static void
exec_closefd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void
exec_closepair(int p[2])
{
	exec_closefd(&p[0]);
	exec_closefd(&p[1]);
}

void
exec_close_fds(struct stream *s)
{
	exec_closefd(&s->in_fd);
	exec_closefd(&s->out_fd[EXEC_STDOUT]);
	exec_closefd(&s->out_fd[EXEC_STDERR]);
	exec_closefd(&s->err_fd);
	free(s->in_buf);
	s->in_buf = NULL;
	s->in_off = s->in_len = s->in_cap = 0;
	s->in_closed = 1;
}

void
exec_free(struct stream *s)
{
	if (s == NULL)
		return;
	exec_close_fds(s);
	free(s->argv0);
	free(s->dir);
	free(s->user);
	free(s);
}

/* ---- spawning ---- */

static size_t
exec_keylen(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* Defaults (NULL-terminated, at most EXEC_NDEFAULTS), overridden or
 * extended by the request, in request order. */
#define EXEC_NDEFAULTS	4
static const char **
exec_env(const struct chan_exec *x, const char *const *defaults)
{
	const char **env;
	size_t n = 0, i, j;
	int has_term = 0;

	if ((env = calloc((size_t)x->envc + EXEC_NDEFAULTS + 2,
	    sizeof(*env))) == NULL)
		return NULL;
	for (i = 0; defaults[i] != NULL && i < EXEC_NDEFAULTS; i++)
		env[n++] = defaults[i];
	for (i = 0; i < x->envc; i++) {
		const char *kv = x->envp[i];
		size_t k = exec_keylen(kv);

		if (k == 4 && strncmp(kv, "TERM", 4) == 0)
			has_term = 1;
		for (j = 0; j < n; j++)
			if (exec_keylen(env[j]) == k &&
			    strncmp(env[j], kv, k) == 0)
				break;
		env[j] = kv;
		if (j == n)
			n++;
	}
	if (x->tty && !has_term)
		env[n++] = EXEC_DEFAULT_TERM;
	env[n] = NULL;
	return env;
}

static const char *
exec_getenv(const char *const *envp, const char *key)
{
	size_t k = strlen(key);

	for (; *envp; envp++)
		if (strncmp(*envp, key, k) == 0 && (*envp)[k] == '=')
			return *envp + k + 1;
	return NULL;
}

static _Noreturn void
exec_child_fail(int report, int step, int err, const char *text)
{
	struct exec_report f;
	size_t len = 0;
	ssize_t n;

	f.step = step;
	f.err = err;
	if (text != NULL) {
		len = strnlen(text, sizeof(f.text) - 1);
		memcpy(f.text, text, len);
	}
	f.text[len] = '\0';
	do
		n = write(report, &f, EXEC_REPORT_HEAD + len + 1);
	while (n < 0 && errno == EINTR);
	switch (step) {
	case EXEC_STEP_EXEC:
		_exit(err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
	case EXEC_STEP_CHDIR: case EXEC_STEP_USER:
		_exit(EXIT_CANNOT_EXEC);
	case EXEC_STEP_COPY:
		_exit(1);
	}
	_exit(EXIT_CAPSULE_ERROR);
}

/* execvp() with the command's own PATH rather than the agent's. */
static int
exec_search(const char *const *argv, const char *const *envp)
{
	const char *path, *p, *end;
	char buf[PATH_MAX];
	size_t len = strlen(argv[0]);
	int denied = 0;

	if (strchr(argv[0], '/') != NULL) {
		execve(argv[0], (char *const *)argv, (char *const *)envp);
		return -errno;
	}
	if ((path = exec_getenv(envp, "PATH")) == NULL)
		path = EXEC_DEFAULT_PATH + 5;
	for (p = path;; p = end + 1) {
		size_t dl;

		if ((end = strchr(p, ':')) == NULL)
			end = p + strlen(p);
		dl = (size_t)(end - p);
		if (dl == 0) {
			buf[0] = '.';
			dl = 1;
		} else if (dl + 1 + len + 1 <= sizeof(buf)) {
			memcpy(buf, p, dl);
		}
		if (dl + 1 + len + 1 <= sizeof(buf)) {
			buf[dl] = '/';
			memcpy(buf + dl + 1, argv[0], len + 1);
			execve(buf, (char *const *)argv, (char *const *)envp);
			switch (errno) {
			case EACCES:
				denied = 1;
				break;
			case ENOENT: case ENOTDIR: case ESTALE: case ENODEV:
			case ETIMEDOUT: case ENAMETOOLONG: case ELOOP:
				break;
			default:
				return -errno;
			}
		}
		if (*end == '\0')
			break;
	}
	return denied ? -EACCES : -ENOENT;
}

/* A child starts with default signals, nothing blocked, and the
 * RLIMIT_NOFILE the agent itself was given. */
static void
exec_child_reset(void)
{
	sigset_t none;
	int i;

	for (i = 1; i < NSIG; i++)
		signal(i, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (exec_nofile_saved)
		setrlimit(RLIMIT_NOFILE, &exec_nofile);
}

/* A detached command's log, named after its pid: the child knows it from
 * getpid(), the parent from fork(). */
static void
exec_log_path(char *buf, size_t len, pid_t pid)
{
	snprintf(buf, len, EXEC_LOG_DIR "/exec-%ld.log", (long)pid);
}

/* Detached: stdin from /dev/null, stdout and stderr appended to its log. */
static void
exec_child_detach(const struct exec_spawn *sp)
{
	const struct user *u = sp->user;
	char log[64];
	int fd;

	if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 ||
	    dup2(fd, 0) < 0)
		exec_child_fail(sp->report, EXEC_STEP_LOG, errno, "/dev/null");
	if (fd > 2)
		close(fd);
	exec_log_path(log, sizeof(log), getpid());
	/* O_NOFOLLOW: the name is predictable, though only root can write
	 * the directory. */
	if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC, EXEC_LOG_MODE)) < 0 ||
	    (u->set && fchown(fd, u->uid, u->gid) < 0) ||
	    dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		exec_child_fail(sp->report, EXEC_STEP_LOG, errno, log);
	if (fd > 2)
		close(fd);
}

/* Before chdir and exec, so both are checked against the user's rights. */
static void
exec_child_user(const struct exec_spawn *sp)
{
	const struct user *u = sp->user;

	if (!u->set)
		return;
	if (setgroups(u->ngroups, u->groups) < 0)
		exec_child_fail(sp->report, EXEC_STEP_USER, errno, "setgroups");
	if (setgid(u->gid) < 0)
		exec_child_fail(sp->report, EXEC_STEP_USER, errno, "setgid");
	if (setuid(u->uid) < 0)
		exec_child_fail(sp->report, EXEC_STEP_USER, errno, "setuid");
}

static _Noreturn void
exec_child(const struct exec_spawn *sp)
{
	int i, fd, r;

	exec_child_reset();
	if (setsid() < 0)
		exec_child_fail(sp->report, EXEC_STEP_SETSID, errno, NULL);
	if (sp->tty) {
		/* The slave is the user's terminal: chown it while root. */
		if ((fd = open(sp->slave, O_RDWR | O_NOCTTY)) < 0 ||
		    ioctl(fd, TIOCSCTTY, 0) < 0 ||
		    (sp->user->set && fchown(fd, sp->user->uid, (gid_t)-1) < 0))
			exec_child_fail(sp->report, EXEC_STEP_TTY, errno, NULL);
		for (i = 0; i < 3; i++)
			if (dup2(fd, i) < 0)
				exec_child_fail(sp->report, EXEC_STEP_DUP,
				    errno, NULL);
		if (fd > 2)
			close(fd);
	} else if (sp->detach) {
		exec_child_detach(sp);
	} else if (dup2(sp->in, 0) < 0 || dup2(sp->out, 1) < 0 ||
	    dup2(sp->err, 2) < 0) {
		exec_child_fail(sp->report, EXEC_STEP_DUP, errno, NULL);
	}
	exec_child_user(sp);
	if (chdir(sp->dir[0] ? sp->dir : "/") < 0)
		exec_child_fail(sp->report, EXEC_STEP_CHDIR, errno, NULL);
	r = exec_search(sp->argv, sp->envp);
	exec_child_fail(sp->report, EXEC_STEP_EXEC, -r, NULL);
}

static int
exec_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int
exec_open_pty(const struct chan_exec *x, char *slave, size_t cap)
{
	struct winsize ws = {
		.ws_col = x->cols ? x->cols : 80,
		.ws_row = x->rows ? x->rows : 24,
	};
	int m, r;

	if ((m = posix_openpt(O_RDWR | O_NOCTTY)) < 0)
		return -errno;
	if (fcntl(m, F_SETFD, FD_CLOEXEC) < 0 || grantpt(m) < 0 ||
	    unlockpt(m) < 0 || (r = ptsname_r(m, slave, cap)) != 0 ||
	    ioctl(m, TIOCSWINSZ, &ws) < 0) {
		r = -errno;
		close(m);
		return r;
	}
	return m;
}

/* mkdir -p, for the log directory. */
static int
exec_mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX], *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1;; p++) {
		int last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		if (last)
			break;
		*p = '/';
	}
	return 0;
}

/* HOME, USER and LOGNAME for the user, before the request's own env. */
static int
exec_user_env(const struct user *u, const char **defaults, char **own)
{
	size_t n = 0;

	defaults[n++] = EXEC_DEFAULT_PATH;
	if (!u->set) {
		defaults[n++] = EXEC_DEFAULT_HOME;
		defaults[n] = NULL;
		return 0;
	}
	if (asprintf(&own[0], "HOME=%s", u->home && u->home[0] ? u->home :
	    "/") < 0) {
		own[0] = NULL;
		return -ENOMEM;
	}
	defaults[n++] = own[0];
	if (u->name != NULL) {
		if (asprintf(&own[1], "USER=%s", u->name) < 0) {
			own[1] = NULL;
			return -ENOMEM;
		}
		defaults[n++] = own[1];
		if (asprintf(&own[2], "LOGNAME=%s", u->name) < 0) {
			own[2] = NULL;
			return -ENOMEM;
		}
		defaults[n++] = own[2];
	}
	defaults[n] = NULL;
	return 0;
}

/* Starts the command as user u (resolved by the caller). On failure
 * returns -errno with a message in err and leaves s without a process;
 * the caller reports EXIT 125. A detached command gets neither pipes nor
 * a tty: see exec_detach() for the rest of its start. */
int
exec_start(struct stream *s, const struct chan_exec *x, const struct user *u,
    char *err, size_t errlen)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 };
	int rep[2] = { -1, -1 }, pty = -1, dup_pty = -1, r, i;
	const char **argv = NULL, **envp = NULL;
	const char *defaults[EXEC_NDEFAULTS + 1];
	char *own[3] = { NULL, NULL, NULL };
	struct exec_spawn sp = { 0 };
	int tty = x->tty && !x->detach;
	char slave[64];
	const char *what;
	pid_t pid;

	s->argv0 = strndup(x->argv[0], EXEC_NAME_MAX);
	s->dir = strndup(x->dir, EXEC_NAME_MAX);
	s->user = strndup(x->user, EXEC_NAME_MAX);
	argv = calloc((size_t)x->argc + 1, sizeof(*argv));
	what = "out of memory";
	if (s->argv0 == NULL || s->dir == NULL || s->user == NULL ||
	    argv == NULL || exec_user_env(u, defaults, own) < 0 ||
	    (envp = exec_env(x, defaults)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	for (i = 0; (uint32_t)i < x->argc; i++)
		argv[i] = x->argv[i];

	if (x->detach) {
		what = "mkdir " EXEC_LOG_DIR;
		if ((r = exec_mkdirs(EXEC_LOG_DIR, 0755)) < 0)
			goto fail;
	}
	what = "pipe";
	if (pipe2(rep, O_CLOEXEC) < 0)
		goto fail_errno;
	if (x->detach) {
		/* stdio is set up by the child itself */
	} else if (tty) {
		what = "open pty";
		if ((pty = exec_open_pty(x, slave, sizeof(slave))) < 0) {
			r = pty;
			goto fail;
		}
		if ((dup_pty = fcntl(pty, F_DUPFD_CLOEXEC, 3)) < 0)
			goto fail_errno;
	} else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(er, O_CLOEXEC) < 0) {
		goto fail_errno;
	}

	sp.argv = argv;
	sp.envp = envp;
	sp.dir = x->dir;
	sp.tty = tty;
	sp.detach = x->detach;
	sp.slave = slave;
	sp.user = u;
	sp.in = in[0];
	sp.out = out[1];
	sp.err = er[1];
	sp.report = rep[1];

	what = "fork";
	if ((pid = fork()) < 0)
		goto fail_errno;
	if (pid == 0)
		exec_child(&sp);

	s->pid = pid;
	s->tty = tty;
	s->err_fd = rep[0];
	close(rep[1]);
	if (x->timeout_ms > 0) {
		s->timeout_ms = x->timeout_ms;
		s->deadline = agent_now_ms() + x->timeout_ms;
	}
	if (x->detach) {
		s->in_closed = 1;
	} else if (tty) {
		s->out_fd[EXEC_STDOUT] = pty;
		s->in_fd = dup_pty;
	} else {
		close(in[0]);
		close(out[1]);
		close(er[1]);
		s->in_fd = in[1];
		s->out_fd[EXEC_STDOUT] = out[0];
		s->out_fd[EXEC_STDERR] = er[0];
	}
	/* Failing these would only make reads block; the fds are ours. */
	exec_nonblock(s->err_fd);
	if (s->in_fd >= 0)
		exec_nonblock(s->in_fd);
	for (i = 0; i < EXEC_NOUT; i++)
		if (s->out_fd[i] >= 0)
			exec_nonblock(s->out_fd[i]);
	for (i = 0; i < 3; i++)
		free(own[i]);
	free(argv);
	free(envp);
	return 0;

fail_errno:
	r = -errno;
fail:
	snprintf(err, errlen, "capsule-agent: %s: %s", what, strerror(-r));
	exec_closepair(in);
	exec_closepair(out);
	exec_closepair(er);
	exec_closepair(rep);
	exec_closefd(&pty);
	exec_closefd(&dup_pty);
	for (i = 0; i < 3; i++)
		free(own[i]);
	free(argv);
	free(envp);
	return r;
}

/* ---- copies ---- */

/* A child that does not exec keeps every fd the agent has, among them
 * other streams' pipes, whose readers would never see EOF. */
static void
exec_close_from(int lowfd)
{
	int fd;

	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	for (fd = lowfd; fd < AGENT_NOFILE; fd++)
		close(fd);
}

static _Noreturn void
exec_copy_child(unsigned kind, const char *path, int in, int out, int report)
{
	char msg[sizeof(((struct exec_report *)0)->text)] = "";
	int r;

	exec_child_reset();
	/* copy.h: with SIGPIPE ignored a gone reader is -EPIPE, a message. */
	signal(SIGPIPE, SIG_IGN);
	if (setsid() < 0)
		exec_child_fail(report, EXEC_STEP_SETSID, errno, NULL);
	/* All three are above 2, and 3 is free once the first two moved. */
	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(report, 3) < 0)
		exec_child_fail(report, EXEC_STEP_DUP, errno, NULL);
	exec_close_from(4);
	if (chdir("/") < 0)
		exec_child_fail(3, EXEC_STEP_CHDIR, errno, NULL);
	if (kind == CHAN_COPY_IN)
		r = copy_extract(0, path, 0, msg, sizeof(msg));
	else
		r = copy_archive(path, 1, msg, sizeof(msg));
	if (r < 0)
		exec_child_fail(3, EXEC_STEP_COPY, -r, msg);
	_exit(0);
}

/*
 * A COPY_IN or COPY_OUT stream: a child of ours, not a command, runs
 * copy_extract() on its stdin or copy_archive() onto its stdout, as root
 * in "/". Otherwise it is a stream like any other: STDIN frames feed it,
 * its output goes out as STDOUT frames under credit, and exec_finish()
 * sends EXIT 0, or 1 with the child's message. path is the checked
 * payload: not NUL-terminated.
 */
int
exec_copy(struct stream *s, unsigned kind, const uint8_t *path, size_t len,
    char *err, size_t errlen)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, rep[2] = { -1, -1 };
	const char *what = "out of memory";
	pid_t pid;
	int r;

	s->copy = 1;
	/* Whole: the child needs it, not just a message. */
	if ((s->argv0 = strndup((const char *)path, len)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	what = "pipe";
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(rep, O_CLOEXEC) < 0)
		goto fail_errno;
	what = "fork";
	if ((pid = fork()) < 0)
		goto fail_errno;
	if (pid == 0)
		exec_copy_child(kind, s->argv0, in[0], out[1], rep[1]);

	s->pid = pid;
	s->err_fd = rep[0];
	close(rep[1]);
	close(in[0]);
	close(out[1]);
	if (kind == CHAN_COPY_IN) {
		s->in_fd = in[1];
		exec_nonblock(s->in_fd);
	} else {
		/* COPY_OUT reads nothing: its stdin is at EOF at once. */
		close(in[1]);
		s->in_closed = 1;
	}
	s->out_fd[EXEC_STDOUT] = out[0];
	exec_nonblock(s->out_fd[EXEC_STDOUT]);
	exec_nonblock(s->err_fd);
	return 0;

fail_errno:
	r = -errno;
fail:
	snprintf(err, errlen, "capsule-agent: %s: %s", what, strerror(-r));
	exec_closepair(in);
	exec_closepair(out);
	exec_closepair(rep);
	return r;
}

/* ---- stdin ---- */

static void
exec_grant(struct stream *s, struct chanio *c, size_t n)
{
	uint8_t p[4];
	uint32_t g = chan_rx_release(&s->rx, (uint32_t)n);

	if (g > 0 && s->id != 0 && chan_u32_encode(p, sizeof(p), g) == 4)
		chanio_send(c, CHAN_CREDIT, s->id, p, sizeof(p));
}

/* The child's stdin is gone: what is buffered can never be delivered, but
 * the host's credit must still come back. */
static void
exec_stdin_gone(struct stream *s, struct chanio *c)
{
	size_t n = s->in_len;

	exec_closefd(&s->in_fd);
	free(s->in_buf);
	s->in_buf = NULL;
	s->in_off = s->in_len = s->in_cap = 0;
	s->in_closed = 1;
	s->eof_done = 1;
	exec_grant(s, c, n);
}

int
exec_write(struct stream *s, struct chanio *c)
{
	while (s->in_len > 0 && s->in_fd >= 0) {
		ssize_t n = write(s->in_fd, s->in_buf + s->in_off, s->in_len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			/* EPIPE for a pipe, EIO for a pty whose slave is
			 * closed: nobody will read this any more. */
			exec_stdin_gone(s, c);
			return 0;
		}
		s->in_off += (size_t)n;
		s->in_len -= (size_t)n;
		exec_grant(s, c, (size_t)n);
	}
	if (s->in_len > 0)
		return 0;
	s->in_off = 0;
	if (s->in_cap > EXEC_KEEP_INBUF) {
		free(s->in_buf);
		s->in_buf = NULL;
		s->in_cap = 0;
	}
	if (s->eof && !s->eof_done && s->in_fd >= 0) {
		if (s->tty) {
			/* A pty has no half-close: EOF is the VEOF char,
			 * which ends a read() on the slave. */
			struct termios t;
			char veof = 4;
			ssize_t n;

			if (tcgetattr(s->in_fd, &t) == 0 &&
			    t.c_cc[VEOF] != _POSIX_VDISABLE)
				veof = (char)t.c_cc[VEOF];
			n = write(s->in_fd, &veof, 1);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n < 0)
				exec_stdin_gone(s, c);
			s->eof_done = 1;
		} else {
			exec_closefd(&s->in_fd);
			s->in_closed = 1;
			s->eof_done = 1;
		}
	}
	return 0;
}

int
exec_stdin(struct stream *s, struct chanio *c, const uint8_t *p,
    uint32_t len)
{
	int r;

	if ((r = chan_rx_receive(&s->rx, len)) < 0)
		return r;
	if (s->in_closed || s->eof || s->closed || s->reaped ||
	    s->in_fd < 0) {
		exec_grant(s, c, len);
		return 0;
	}
	if (len == 0)
		return 0;
	if (s->in_cap - s->in_off - s->in_len < len) {
		size_t need = s->in_len + len, cap;
		uint8_t *b;

		if (s->in_off > 0) {
			memmove(s->in_buf, s->in_buf + s->in_off, s->in_len);
			s->in_off = 0;
		}
		if (s->in_cap < need) {
			cap = s->in_cap ? s->in_cap : 4096;
			while (cap < need)
				cap *= 2;
			if ((b = realloc(s->in_buf, cap)) == NULL) {
				exec_grant(s, c, len);
				return -ENOMEM;
			}
			s->in_buf = b;
			s->in_cap = cap;
		}
	}
	memcpy(s->in_buf + s->in_off + s->in_len, p, len);
	s->in_len += len;
	return exec_write(s, c);
}

int
exec_eof(struct stream *s, struct chanio *c)
{
	if (s->eof)
		return 0;
	s->eof = 1;
	return exec_write(s, c);
}

int
exec_resize(struct stream *s, uint16_t cols, uint16_t rows)
{
	struct winsize ws = { .ws_col = cols, .ws_row = rows };
	int fd = s->in_fd >= 0 ? s->in_fd : s->out_fd[EXEC_STDOUT];

	if (!s->tty || fd < 0 || cols == 0 || rows == 0)
		return 0;
	if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
		return -errno;
	return 0;
}

int
exec_kill(struct stream *s, int sig)
{
	if (s->pid <= 0)
		return -ESRCH;
	if (kill(-s->pid, sig) == 0)
		return 0;
	/* Not yet its own group: the child has not reached setsid(). Once
	 * reaped, the bare pid may already belong to someone else. */
	if (errno == ESRCH && !s->reaped && kill(s->pid, sig) == 0)
		return 0;
	return -errno;
}

/* The host is done with the stream (CLOSE, or it broke the protocol):
 * kill the group and stop moving bytes. The error pipe stays, so the EXIT
 * sent once the leader is reaped still says why it failed to start.
 * A copy is not killed: with its pipes closed it fails on EOF or EPIPE by
 * itself, and removes its temporary file, which SIGKILL would leave. */
void
exec_abort(struct stream *s)
{
	if (!s->closed && s->pid > 0 && !s->copy)
		exec_kill(s, SIGKILL);
	s->closed = 1;
	exec_closefd(&s->in_fd);
	exec_closefd(&s->out_fd[EXEC_STDOUT]);
	exec_closefd(&s->out_fd[EXEC_STDERR]);
	free(s->in_buf);
	s->in_buf = NULL;
	s->in_off = s->in_len = s->in_cap = 0;
	s->in_closed = 1;
}

/* ---- output ---- */

/* Reads at most what the window allows into a frame. Returns the number
 * of bytes sent, 0 at EOF (the fd is then closed) or -errno. */
int
exec_read(struct stream *s, struct chanio *c, int which)
{
	uint32_t allow = chan_tx_allow(&s->tx, CHAN_MAX_DATA);
	uint8_t *buf;
	ssize_t n;

	if (s->out_fd[which] < 0)
		return 0;
	if (allow == 0)
		return -EAGAIN;
	if ((buf = chanio_reserve(c, allow)) == NULL)
		return -ENOMEM;
	n = read(s->out_fd[which], buf, allow);
	if (n > 0) {
		chan_tx_consume(&s->tx, (uint32_t)n);
		chanio_commit(c, which == EXEC_STDERR ? CHAN_STDERR :
		    CHAN_STDOUT, s->id, (size_t)n);
		return (int)n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -errno;
	/* 0 is EOF; EIO on a pty master means the slave side is gone. */
	if (n < 0 && errno != EIO)
		agent_log("stream %u: read: %s", s->id, strerror(errno));
	exec_closefd(&s->out_fd[which]);
	return 0;
}

/* After the leader is reaped: send what it left in the pipes, as credit
 * allows. Returns 1 once everything is out (EOF or would block). */
int
exec_drain(struct stream *s, struct chanio *c)
{
	int i, r;

	if (s->closed)
		return 1;
	for (i = 0; i < EXEC_NOUT; i++) {
		while (s->out_fd[i] >= 0 && !s->out_dry[i]) {
			if (chan_tx_allow(&s->tx, 1) == 0 ||
			    chanio_queued(c) >= AGENT_QUEUE_HIGH)
				return 0;
			r = exec_read(s, c, i);
			if (r == -EAGAIN)
				s->out_dry[i] = 1;
			else if (r == -ENOMEM)
				return 0;
		}
	}
	return 1;
}

int
exec_send_exit(struct chanio *c, uint32_t id, int32_t code, int32_t sig,
    const char *msg)
{
	struct chan_exit e = { .exit_code = code, .signal = sig, .msg = msg,
	    .msg_len = msg ? (uint32_t)strlen(msg) : 0 };
	uint8_t p[8 + CHAN_MAX_MSG];
	int n;

	if ((n = chan_exit_encode(p, sizeof(p), &e)) < 0)
		return n;
	return chanio_send(c, CHAN_EXIT, id, p, (size_t)n);
}

static const char *
exec_step_name(int step)
{
	switch (step) {
	case EXEC_STEP_SETSID:	return "setsid";
	case EXEC_STEP_TTY:	return "open controlling tty";
	case EXEC_STEP_DUP:	return "dup2";
	}
	return "spawn";
}

/* Returns 1 with the child's report in f if it wrote one, else 0. The
 * child writes it before _exit() or exec fails, so it is there by then. */
static int
exec_report_read(int fd, struct exec_report *f)
{
	ssize_t n;

	if (fd < 0)
		return 0;
	do
		n = read(fd, f, sizeof(*f));
	while (n < 0 && errno == EINTR);
	if (n < EXEC_REPORT_HEAD)
		return 0;
	n -= EXEC_REPORT_HEAD;
	f->text[(size_t)n < sizeof(f->text) ? (size_t)n : sizeof(f->text) - 1] =
	    '\0';
	return 1;
}

/* "2", "0.5", "1.25": a timeout as the user would have written it. */
static void
exec_seconds(char *buf, size_t len, uint32_t ms)
{
	int n = snprintf(buf, len, "%u.%03u", ms / 1000, ms % 1000);

	while (n > 0 && (size_t)n < len && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && (size_t)n < len && buf[n - 1] == '.')
		buf[--n] = '\0';
}

/* The EXIT for a stream: from the child's report if it wrote one, else
 * from its wait status. */
static void
exec_outcome(const struct stream *s, const struct exec_report *f,
    int32_t *code, int32_t *sig, char *msg, size_t len)
{
	const char *why;
	char secs[32];

	*code = EXIT_CAPSULE_ERROR;
	*sig = 0;
	msg[0] = '\0';
	if (f == NULL) {
		if (WIFEXITED(s->status)) {
			*code = WEXITSTATUS(s->status);
		} else if (WIFSIGNALED(s->status)) {
			*sig = WTERMSIG(s->status);
			*code = 128 + *sig;
		}
		/* Only if our SIGKILL is what ended it: a leader that
		 * exited just before the deadline keeps its own status. */
		if (s->timed_out && *sig == SIGKILL) {
			*code = EXIT_TIMEOUT;
			*sig = 0;
			exec_seconds(secs, sizeof(secs), s->timeout_ms);
			snprintf(msg, len, "timeout: killed after %s s", secs);
		}
		return;
	}
	why = f->err > 0 ? strerror(f->err) : "unknown error";
	switch (f->step) {
	case EXEC_STEP_EXEC:
		*code = f->err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
		snprintf(msg, len, "exec \"%s\": %s",
		    s->argv0 ? s->argv0 : "", why);
		break;
	case EXEC_STEP_CHDIR:
		*code = EXIT_CANNOT_EXEC;
		snprintf(msg, len, "chdir \"%s\": %s",
		    s->dir && s->dir[0] ? s->dir : "/", why);
		break;
	case EXEC_STEP_USER:
		*code = EXIT_CANNOT_EXEC;
		snprintf(msg, len, "user \"%s\": %.1024s: %s",
		    s->user ? s->user : "", f->text, why);
		break;
	case EXEC_STEP_LOG:
		snprintf(msg, len, "capsule-agent: open %.1024s: %s", f->text,
		    why);
		break;
	case EXEC_STEP_COPY:
		*code = 1;
		if (f->text[0] != '\0')
			snprintf(msg, len, "%s", f->text);
		else
			snprintf(msg, len, "copy \"%s\": %s",
			    s->argv0 ? s->argv0 : "", why);
		break;
	default:
		snprintf(msg, len, "capsule-agent: %s: %s",
		    exec_step_name(f->step), why);
		break;
	}
}

/* Sends EXIT (unless the stream was orphaned) and lets go of the fds. */
int
exec_finish(struct stream *s, struct chanio *c)
{
	char msg[CHAN_MAX_MSG];
	struct exec_report f;
	int32_t code, sig;
	int r = 0;

	exec_outcome(s, exec_report_read(s->err_fd, &f) ? &f : NULL, &code,
	    &sig, msg, sizeof(msg));
	if (s->id != 0)
		r = exec_send_exit(c, s->id, code, sig, msg);
	exec_close_fds(s);
	s->dead = 1;
	return r;
}

/*
 * The rest of a detached start: wait, a few seconds at most, until the
 * child has exec'd (its CLOEXEC report pipe reads EOF) or reported why it
 * could not. Then answer STARTED or EXIT; either way the stream is over
 * for the host, and the table keeps it only to reap it and to time it out.
 */
int
exec_detach(struct stream *s, struct chanio *c)
{
	struct pollfd p = { .fd = s->err_fd, .events = POLLIN };
	long deadline = agent_now_ms() + EXEC_DETACH_WAIT_MS;
	struct chan_started st = { .pid = (uint32_t)s->pid };
	uint8_t buf[4 + 64];
	char msg[CHAN_MAX_MSG], log[64];
	struct exec_report f;
	int32_t code, sig;
	uint32_t id = s->id;
	int n, r = 0;

	for (;;) {
		long left = deadline - agent_now_ms();

		if (left <= 0) {
			/* Slow, not failed: say it started and go on. */
			agent_log("stream %u: pid %ld has not exec'd after %d "
			    "ms", id, (long)s->pid, EXEC_DETACH_WAIT_MS);
			break;
		}
		if ((n = poll(&p, 1, (int)left)) > 0 ||
		    (n < 0 && errno != EINTR))
			break;
	}
	exec_log_path(log, sizeof(log), s->pid);
	if (exec_report_read(s->err_fd, &f)) {
		/* It never ran: no log to point at, so none to leave. */
		unlink(log);
		exec_outcome(s, &f, &code, &sig, msg, sizeof(msg));
		r = exec_send_exit(c, id, code, sig, msg);
	} else {
		st.log = log;
		st.log_len = (uint32_t)strlen(log);
		if ((n = chan_started_encode(buf, sizeof(buf), &st)) > 0)
			r = chanio_send(c, CHAN_STARTED, id, buf, (size_t)n);
		s->detached = 1;
	}
	exec_closefd(&s->err_fd);
	s->id = 0;
	return r;
}

/* Kills the command's process group once its timeout has passed. Returns
 * the ms left until that, or -1 if no deadline is pending. */
long
exec_expire(struct stream *s, long now)
{
	if (s->deadline == 0 || s->timed_out || s->reaped || s->dead ||
	    s->closed)
		return -1;
	if (now < s->deadline)
		return s->deadline - now;
	/* Not logged for detached commands: the serial console is slow, and
	 * a thousand expiring at once would stall the loop for seconds. */
	exec_kill(s, SIGKILL);
	s->timed_out = 1;
	return -1;
}
