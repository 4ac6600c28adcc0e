/*
 * caller.c — file system work with the caller's rights (see caller.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caller.h"
#include "log.h"
#include "osdep.h"
#include "procid.h"
#include "proto.h"
#include "util.h"

/* Our own errno for "a file capsuled would write is on FUSE". */
#define EFUSE			OSDEP_EFUSE

/* One result, child to parent, with the op's fds attached. */
struct caller_msg {
	int32_t		index;		/* op index; -1: all done */
	int32_t		err;		/* errno of the failed op */
	int32_t		created;
	int32_t		nfds;		/* fd, then dir_fd */
	uint64_t	dev, ino, btime, dir_dev, dir_ino, dir_btime, size;
	uint32_t	head_len;
	uint8_t		head[CALLER_HEAD_LEN];
};

struct caller_job {
	struct event_base	*base;
	struct caller		 who;
	struct caller_op	*ops;
	size_t			 n;
	size_t			 got;		/* results received */
	caller_done_fn		*done;
	void			*arg;
	int			 sock;
	int			 pidfd;
	struct event		*rx;		/* results */
	struct event		*exit_ev;	/* the child is gone */
	struct event		*timer;
	int			 reported;	/* done called, or cancelled */
	int			 reaped;
};

int
caller_from_socket(int fd, struct caller *c, struct cap_err *err)
{
	memset(c, 0, sizeof(*c));
	if (osdep_peer(fd, &c->uid, &c->gid, &c->pid) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "peer credentials: "
		    "%s", strerror(errno));
	/* More groups than we keep: the first ones. */
	c->ngroups = CALLER_MAX_GROUPS;
	if (osdep_peergroups(fd, c->groups, &c->ngroups) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "peer groups: %s",
		    strerror(errno));
	return 0;
}

void
caller_self(struct caller *c)
{
	int n;

	memset(c, 0, sizeof(*c));
	c->uid = geteuid();
	c->gid = getegid();
	c->pid = getpid();
	n = getgroups(CALLER_MAX_GROUPS, c->groups);
	c->ngroups = n > 0 ? (size_t)n : 0;
}

int
caller_of_user(const char *user, struct caller *c, struct cap_err *err)
{
	struct passwd pw, *res = NULL;
	char buf[4096], *end;
	unsigned long uid;
	int n = CALLER_MAX_GROUPS, r;

	memset(c, 0, sizeof(*c));
	errno = 0;
	uid = strtoul(user, &end, 10);
	if (user[0] >= '0' && user[0] <= '9' && *end == '\0' && errno == 0 &&
	    uid <= UINT32_MAX - 1)
		r = getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res);
	else
		r = getpwnam_r(user, &pw, buf, sizeof(buf), &res);
	if (res == NULL)
		return cap_err_set(err, r ? r : ENOENT, E_INVALID_ARGUMENT,
		    "no user \"%s\"%s%s", user, r ? ": " : "",
		    r ? strerror(r) : "");
	c->uid = pw.pw_uid;
	c->gid = pw.pw_gid;
	c->pid = getpid();
	/* More groups than we keep: the first ones (fewer rights). */
	if (osdep_getgrouplist(pw.pw_name, pw.pw_gid, c->groups, &n) < 0)
		n = CALLER_MAX_GROUPS;
	c->ngroups = (size_t)n;
	return 0;
}

const char *
caller_basename(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b != NULL ? b + 1 : path;
	if (*b == '\0' || strcmp(b, ".") == 0 || strcmp(b, "..") == 0)
		return NULL;
	return b;
}

void
caller_op_init(struct caller_op *op, enum caller_kind kind,
    const char *field, const char *path, int at)
{
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->field = field;
	op->path = path;
	op->at = at;
	op->fd = -1;
	op->dir_fd = -1;
}

void
caller_op_close(struct caller_op *op)
{
	closep(&op->fd);
	closep(&op->dir_fd);
}

int
caller_ident_at(int dfd, const char *name, struct caller_ident *id,
    mode_t *type)
{
	struct osdep_fileid f;

	if (osdep_fileid(dfd, name, &f) < 0)
		return -errno;
	id->dev = f.dev;
	id->ino = f.ino;
	id->btime = f.btime;
	if (type != NULL)
		*type = f.type;
	return 0;
}

int
caller_ident_same(const struct caller_ident *a, const struct caller_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino &&
	    (a->btime == 0 || b->btime == 0 || a->btime == b->btime);
}

static int
ident_of(int fd, struct caller_ident *id)
{
	return caller_ident_at(fd, "", id, NULL);
}

/* The directory op i works in, as a new fd, and its last component. */
static int
op_parent(struct caller_op *ops, size_t i, const char **name)
{
	struct caller_op *op = &ops[i];
	char parent[PATH_MAX];
	const char *slash;
	int fd;

	if (op->at >= 0) {
		if ((size_t)op->at >= i || ops[op->at].fd < 0 ||
		    strchr(op->path, '/') != NULL)
			return -EINVAL;
		*name = op->path;
		fd = fcntl(ops[op->at].fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	if (op->path[0] != '/' || (*name = caller_basename(op->path)) == NULL)
		return -EINVAL;
	slash = *name - 1;
	if ((size_t)(slash - op->path) >= sizeof(parent))
		return -ENAMETOOLONG;
	snprintf(parent, sizeof(parent), "%.*s", slash == op->path ? 1 :
	    (int)(slash - op->path), op->path);
	/* Earlier components are followed: as the caller, that is fine.
	 * A directory the caller may search but not list will do. */
	fd = osdep_open_dirref(parent, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int
op_read(struct caller_op *op, int dfd, const char *name)
{
	struct stat st;
	uint64_t size = 0;
	ssize_t n;

	/* O_NONBLOCK: a FIFO must not hang the open. */
	op->fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC);
	if (op->fd < 0)
		return -errno;
	if (fstat(op->fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode))
		size = (uint64_t)st.st_size;
	else if (!S_ISBLK(st.st_mode) || osdep_blkdev_size(op->fd, &size) < 0)
		return -EINVAL;
	if (fcntl(op->fd, F_SETFL, 0) < 0)
		return -errno;
	op->size = size;
	if ((n = ident_of(op->fd, &op->id)) < 0)
		return (int)n;
	n = pread(op->fd, op->head, sizeof(op->head), 0);
	if (n < 0)
		return -errno;
	op->head_len = (size_t)n;
	return 0;
}

static int
op_dir(struct caller_op *op, int dfd, const char *name)
{
	if (mkdirat(dfd, name, 0700) == 0)
		op->created = 1;
	else if (errno != EEXIST)
		return -errno;
	if (op->created && op->chown_to && geteuid() == 0 &&
	    fchownat(dfd, name, op->uid, op->gid, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;

		unlinkat(dfd, name, AT_REMOVEDIR);
		op->created = 0;
		return -e;
	}
	op->fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (op->fd < 0) {
		int e = errno;
		struct stat st;

		/* A symlink fails as ENOTDIR or ELOOP: say which it was. */
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			e = ELOOP;
		if (op->created)
			unlinkat(dfd, name, AT_REMOVEDIR);
		op->created = 0;
		return -e;
	}
	return ident_of(op->fd, &op->id);
}

static int
op_share(struct caller_op *op, int dfd, const char *name)
{
	op->fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOCTTY |
	    O_CLOEXEC);
	if (op->fd < 0)
		return -errno;
	/* Its server works as root on it before it drops its rights: a
	 * FUSE server that stops answering would hang it. (Asked here, in
	 * the helper, where a hang costs the helper's time limit.) */
	if (osdep_is_fuse(op->fd))
		return -EFUSE;
	return ident_of(op->fd, &op->id);
}

static int	remove_if_same(int dfd, const char *name,
		    const struct caller_ident *id, mode_t type);

/* O_EXCL and bind() say only "exists": a link there is worth naming. */
static int
exists_why(int dfd, const char *name, int e)
{
	struct stat st;

	if ((e == EEXIST || e == EADDRINUSE) &&
	    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return -ELOOP;
	return -e;
}

static int
op_create(struct caller_op *op, int dfd, const char *name)
{
	/* capsuled writes this file from its event loop: a FUSE server
	 * that stops answering must not be able to stall it. */
	if (osdep_is_fuse(dfd))
		return -EFUSE;
	op->fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_NOCTTY | O_CLOEXEC, 0600);
	if (op->fd < 0)
		return exists_why(dfd, name, errno);
	return ident_of(op->fd, &op->id);
}

static int
op_bind(struct caller_op *op, int dfd, const char *name)
{
	int r;

	/* Our own socket from before a restart: nobody listens on it, and
	 * it goes only if it is still the one recorded. */
	if (op->replace_set && (r = remove_if_same(dfd, name, &op->replace,
	    S_IFSOCK)) < 0 && r != -ESTALE)
		return r;
	/* bind() has no *at form; the /proc link names exactly dfd. */
	if ((r = util_listen_unix_at(dfd, name, 0600, NULL)) < 0)
		return exists_why(dfd, name, -r);
	op->fd = r;
	return caller_ident_at(dfd, name, &op->id, NULL);
}

/* Does op i; on failure it holds nothing. */
static int
op_do(struct caller_op *ops, size_t i)
{
	struct caller_op *op = &ops[i];
	const char *name = NULL;
	int r;

	if ((r = op_parent(ops, i, &name)) < 0)
		return r;
	op->dir_fd = r;
	if ((r = ident_of(op->dir_fd, &op->dir_id)) < 0)
		goto fail;
	switch (op->kind) {
	case CALLER_READ:	r = op_read(op, op->dir_fd, name); break;
	case CALLER_DIR:	r = op_dir(op, op->dir_fd, name); break;
	case CALLER_CREATE:	r = op_create(op, op->dir_fd, name); break;
	case CALLER_BIND:	r = op_bind(op, op->dir_fd, name); break;
	case CALLER_SHARE:	r = op_share(op, op->dir_fd, name); break;
	default:		r = -EINVAL; break;
	}
	if (r == 0)
		return 0;
fail:
	caller_op_close(op);
	return r;
}

/* Removes `name` from dfd if it is still `id`, of type `type`. */
static int
remove_if_same(int dfd, const char *name, const struct caller_ident *id,
    mode_t type)
{
	struct caller_ident now;
	mode_t t;
	int r;

	if ((r = caller_ident_at(dfd, name, &now, &t)) < 0)
		return r == -ENOENT ? 0 : r;
	if (!caller_ident_same(&now, id) || t != type)
		return -ESTALE;
	if (unlinkat(dfd, name, type == S_IFDIR ? AT_REMOVEDIR : 0) < 0)
		return errno == ENOENT ? 0 : -errno;
	return 0;
}

static mode_t
op_type(const struct caller_op *op)
{
	switch (op->kind) {
	case CALLER_DIR:	return S_IFDIR;
	case CALLER_BIND:	return S_IFSOCK;
	default:		return S_IFREG;
	}
}

/* Undoes ops [0, n) in reverse and closes what they hold. */
static void
ops_undo(struct caller_op *ops, size_t n)
{
	while (n-- > 0) {
		struct caller_op *op = &ops[n];
		const char *name = op->at >= 0 ? op->path :
		    caller_basename(op->path);

		if (op->dir_fd >= 0 && name != NULL &&
		    (op->kind == CALLER_CREATE || op->kind == CALLER_BIND ||
		    (op->kind == CALLER_DIR && op->created)))
			remove_if_same(op->dir_fd, name, &op->id,
			    op_type(op));
		caller_op_close(op);
		op->created = 0;
	}
}

/* All or nothing: 0, or -errno with *failed the op that failed. */
static int
ops_do(struct caller_op *ops, size_t n, size_t *failed)
{
	int r;

	for (size_t i = 0; i < n; i++) {
		if ((r = op_do(ops, i)) < 0) {
			ops_undo(ops, i);
			*failed = i;
			return r;
		}
	}
	return 0;
}

/* "/dir/name" for messages, also for ops relative to another. */
static void
op_shown(const struct caller_op *ops, size_t i, char *buf, size_t len)
{
	const struct caller_op *op = &ops[i];

	if (op->at >= 0)
		snprintf(buf, len, "%s/%s", ops[op->at].path, op->path);
	else
		snprintf(buf, len, "%s", op->path);
}

static int
op_error(const struct caller_op *ops, size_t i, int e,
    const struct caller *who, struct cap_err *err)
{
	const struct caller_op *op = &ops[i];
	const char *f = op->field;
	char p[PATH_MAX + 64];
	int makes = op->kind == CALLER_CREATE || op->kind == CALLER_BIND;

	op_shown(ops, i, p, sizeof(p));
	switch (e) {
	case ENOENT:
		if (op->kind == CALLER_READ || op->kind == CALLER_SHARE)
			return cap_err_set(err, e, E_INVALID_ARGUMENT,
			    "%s %s does not exist", f, p);
		return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s: its "
		    "parent directory does not exist (capsule creates only "
		    "the last component)", f, p);
	case EACCES:
	case EPERM:
		return cap_err_set(err, e, E_PERMISSION_DENIED, "%s %s: "
		    "permission denied for uid %u (capsuled acts on the paths "
		    "a request names with the rights of the user who sent "
		    "it)", f, p, (unsigned)who->uid);
	case EEXIST:
	case EADDRINUSE:
		return cap_err_set(err, e, E_CONFLICT, "%s %s already exists; "
		    "capsule creates it anew and never reuses, truncates or "
		    "follows what is there: remove it or choose another path",
		    f, p);
	case ELOOP:
		if (makes)
			return cap_err_set(err, e, E_CONFLICT, "%s %s already "
			    "exists as a symbolic link; capsule will not "
			    "follow it", f, p);
		if (op->kind == CALLER_SHARE)
			return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s: "
			    "too many levels of symbolic links", f, p);
		return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s is a "
		    "symbolic link; name the directory itself", f, p);
	case ENOTDIR:
		return cap_err_set(err, e, E_INVALID_ARGUMENT,
		    op->kind == CALLER_DIR || op->kind == CALLER_SHARE ?
		    "%s %s is not a directory" :
		    "%s %s: a component of the path is not a directory", f, p);
	case EINVAL:
		if (op->kind == CALLER_READ)
			return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s "
			    "is not a regular file or block device", f, p);
		return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s is not "
		    "a path capsule can create a file at", f, p);
	case EFUSE:
		if (op->kind == CALLER_SHARE)
			return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s "
			    "is on a FUSE file system; capsule does not share "
			    "those (its file server would wait on the FUSE "
			    "server)", f, p);
		return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s is on a "
		    "FUSE file system; capsuled writes this file itself and "
		    "will not risk waiting on a FUSE server", f, p);
	case ECHILD:
	case EPROTO:
		return cap_err_set(err, e, E_INTERNAL, "%s %s: the helper that "
		    "acts as uid %u ended without an answer", f, p,
		    (unsigned)who->uid);
	case ETIMEDOUT:
		return cap_err_set(err, e, E_TIMEOUT, "%s %s: no answer from "
		    "its file system within %d s", f, p,
		    CALLER_TIMEOUT_MS / 1000);
	default:
		return cap_err_set(err, e, E_INVALID_ARGUMENT, "%s %s: %s", f,
		    p, strerror(e));
	}
}

int
caller_run_here(struct caller_op *ops, size_t n, struct cap_err *err)
{
	struct caller self;
	size_t failed = 0;
	mode_t old = umask(077);
	int r = ops_do(ops, n, &failed);

	umask(old);
	if (r < 0) {
		caller_self(&self);
		return op_error(ops, failed, -r, &self, err);
	}
	return 0;
}

/* ---- the child ---- */

static int
child_send(int sock, const struct caller_msg *m, const int *fds, int nfds)
{
	union {
		char		buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr	align;
	} u;
	struct iovec iov = { (void *)m, sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(*m) ? 0 :
	    -1;
}

int
caller_become(const struct caller *who)
{
	if (geteuid() != 0 || who->uid == 0)
		return 0;	/* nothing to drop to, or nothing to drop */
	if (setgroups(who->ngroups, who->groups) < 0 ||
	    osdep_setresgid(who->gid) < 0 || osdep_setresuid(who->uid) < 0)
		return -errno;
	/* Fail closed if anything of root is left. */
	if (getuid() != who->uid || geteuid() != who->uid ||
	    getegid() != who->gid || osdep_setresuid(0) == 0)
		return -EPERM;
	return 0;
}

static _Noreturn void
child_main(int sock, pid_t parent, const struct caller *who,
    struct caller_op *ops, size_t n)
{
	static struct caller_msg m;
	size_t failed = 0;
	sigset_t none;
	int r;

	osdep_parent_death_signal(SIGKILL);
	if (getppid() != parent)
		_exit(1);
	/* Not ptrace-able by the caller it is about to become. */
	osdep_no_inspect();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	/* Nothing of the daemon's but the result socket. */
	if (dup2(sock, 3) < 0)
		_exit(1);
	sock = 3;
	osdep_closefrom(4);
	umask(077);
	memset(&m, 0, sizeof(m));
	if ((r = caller_become(who)) < 0) {
		m.index = 0;
		m.err = -r;
		child_send(sock, &m, NULL, 0);
		_exit(1);
	}
	if ((r = ops_do(ops, n, &failed)) < 0) {
		m.index = (int32_t)failed;
		m.err = -r;
		child_send(sock, &m, NULL, 0);
		_exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		int fds[2], nfds = 0;

		memset(&m, 0, sizeof(m));
		m.index = (int32_t)i;
		m.created = ops[i].created;
		m.dev = ops[i].id.dev;
		m.ino = ops[i].id.ino;
		m.btime = ops[i].id.btime;
		m.dir_dev = ops[i].dir_id.dev;
		m.dir_ino = ops[i].dir_id.ino;
		m.dir_btime = ops[i].dir_id.btime;
		m.size = ops[i].size;
		m.head_len = (uint32_t)ops[i].head_len;
		memcpy(m.head, ops[i].head, ops[i].head_len);
		fds[nfds++] = ops[i].fd;
		fds[nfds++] = ops[i].dir_fd;
		m.nfds = nfds;
		if (child_send(sock, &m, fds, nfds) < 0) {
			ops_undo(ops, n);
			_exit(1);
		}
	}
	memset(&m, 0, sizeof(m));
	m.index = -1;
	child_send(sock, &m, NULL, 0);
	_exit(0);
}

/* ---- the parent ---- */

static void
job_free(struct caller_job *j)
{
	if (j->rx != NULL)
		event_free(j->rx);
	if (j->exit_ev != NULL)
		event_free(j->exit_ev);
	if (j->timer != NULL)
		event_free(j->timer);
	closep(&j->sock);
	closep(&j->pidfd);
	free(j);
}

/* Frees the job once it is both reported and reaped. */
static void
job_maybe_free(struct caller_job *j)
{
	if (j->reported && j->reaped)
		job_free(j);
}

static void
job_stop_child(struct caller_job *j)
{
	if (j->rx != NULL)
		event_del(j->rx);
	event_del(j->timer);
	closep(&j->sock);
	if (!j->reaped)
		procid_signal(j->pidfd, SIGKILL);
}

static void
job_report(struct caller_job *j, const struct cap_err *err)
{
	j->reported = 1;
	if (err != NULL)
		ops_undo(j->ops, j->got);
	job_stop_child(j);
	j->done(j->ops, j->n, err, j->arg);
}

static void
job_fail(struct caller_job *j, size_t i, int e)
{
	struct cap_err err;

	op_error(j->ops, i < j->n ? i : 0, e, &j->who, &err);
	job_report(j, &err);
	job_maybe_free(j);
}

/* Takes one result message; 1 when all are in, 0 for more, -1 bad. */
static int
job_take(struct caller_job *j, const struct caller_msg *m, const int *fds,
    int nfds)
{
	struct caller_op *op;

	if (m->index == -1)
		return j->got == j->n && nfds == 0 ? 1 : -1;
	if (m->index < 0 || (size_t)m->index != j->got || m->err != 0 ||
	    m->nfds != 2 || nfds != 2 || m->head_len > CALLER_HEAD_LEN)
		return -1;
	op = &j->ops[j->got++];
	op->fd = fds[0];
	op->dir_fd = fds[1];
	op->created = m->created != 0;
	op->id.dev = (dev_t)m->dev;
	op->id.ino = (ino_t)m->ino;
	op->id.btime = m->btime;
	op->dir_id.dev = (dev_t)m->dir_dev;
	op->dir_id.ino = (ino_t)m->dir_ino;
	op->dir_id.btime = m->dir_btime;
	op->size = m->size;
	op->head_len = m->head_len;
	memcpy(op->head, m->head, m->head_len);
	return 0;
}

static void
job_rx_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct caller_msg m;
	struct caller_job *j = arg;
	union {
		char		buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr	align;
	} u;
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	int fds[4], nfds = 0, r;
	ssize_t n;

	n = osdep_recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	for (c = CMSG_FIRSTHDR(&mh); n >= 0 && c != NULL;
	    c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) /
		    sizeof(int) && nfds < 4; k++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + k * sizeof(int),
			    sizeof(int));
	}
	if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    n != (ssize_t)sizeof(m)) {
		for (int k = 0; k < nfds; k++)
			close(fds[k]);
		/* The child died before it said: the next op is the one. */
		job_fail(j, j->got, n == 0 ? ECHILD : EPROTO);
		return;
	}
	if (m.err != 0 && m.index >= 0) {
		for (int k = 0; k < nfds; k++)
			close(fds[k]);
		job_fail(j, (size_t)m.index, m.err);
		return;
	}
	if ((r = job_take(j, &m, fds, nfds)) < 0) {
		for (int k = 0; k < nfds; k++)
			close(fds[k]);
		job_fail(j, j->got, EPROTO);
		return;
	}
	if (r == 1) {
		job_report(j, NULL);
		job_maybe_free(j);
	}
}

static void
job_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_job *j = arg;
	int st;

	if (procid_reap(j->pidfd, &st) == 0)
		return;
	j->reaped = 1;
	event_del(j->exit_ev);
	/* Results still queued in the socket are read first. */
	if (!j->reported && j->rx != NULL && j->sock >= 0) {
		event_active(j->rx, EV_READ, 0);
		return;
	}
	job_maybe_free(j);
}

static void
job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct caller_job *j = arg;

	log_warn("caller: no answer from the file system within %d s (uid "
	    "%u, %s); giving up", CALLER_TIMEOUT_MS / 1000,
	    (unsigned)j->who.uid, j->ops[j->got < j->n ? j->got : 0].field);
	job_fail(j, j->got, ETIMEDOUT);
}

struct caller_job *
caller_run(struct event_base *base, const struct caller *who,
    struct caller_op *ops, size_t n, caller_done_fn *done, void *arg,
    struct cap_err *err)
{
	struct timeval tv = { CALLER_TIMEOUT_MS / 1000,
	    (CALLER_TIMEOUT_MS % 1000) * 1000 };
	struct caller_job *j;
	pid_t parent = getpid(), pid;
	int sv[2];

	if ((j = calloc(1, sizeof(*j))) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	j->base = base;
	j->who = *who;
	j->ops = ops;
	j->n = n;
	j->done = done;
	j->arg = arg;
	j->sock = j->pidfd = -1;
	if (osdep_msgpair(sizeof(struct caller_msg), O_CLOEXEC, sv) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "socketpair: %s",
		    strerror(errno));
		free(j);
		return NULL;
	}
	if ((pid = fork()) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(j);
		return NULL;
	}
	if (pid == 0) {
		close(sv[0]);
		child_main(sv[1], parent, who, ops, n);
	}
	close(sv[1]);
	j->sock = sv[0];
	j->pidfd = procid_open_child(pid);
	j->rx = event_new(base, j->sock, EV_READ | EV_PERSIST, job_rx_cb, j);
	j->timer = evtimer_new(base, job_timeout_cb, j);
	if (j->pidfd >= 0)
		j->exit_ev = event_new(base, j->pidfd, EV_READ | EV_PERSIST,
		    job_exit_cb, j);
	if (j->pidfd < 0 || j->rx == NULL || j->timer == NULL ||
	    j->exit_ev == NULL || event_add(j->rx, NULL) < 0 ||
	    event_add(j->exit_ev, NULL) < 0 || evtimer_add(j->timer, &tv) < 0) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "cannot watch the file "
		    "opener (pid %d)", (int)pid);
		kill(pid, SIGKILL);
		/* Without a pidfd there is no other way to reap it. */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		job_free(j);
		return NULL;
	}
	return j;
}

void
caller_cancel(struct caller_job *j)
{
	if (j == NULL || j->reported)
		return;
	j->reported = 1;
	ops_undo(j->ops, j->got);
	job_stop_child(j);
	job_maybe_free(j);
}

/* ---- what capsule made, removed later ---- */

int
caller_made_take(struct caller_made *m, struct caller_op *ops, size_t i)
{
	struct caller_op *op = &ops[i];
	const char *name = op->at >= 0 ? op->path : caller_basename(op->path);
	char dir[PATH_MAX];

	memset(m, 0, sizeof(*m));
	m->dir_fd = -1;
	if (name == NULL)
		return -EINVAL;
	if (op->at >= 0)
		snprintf(dir, sizeof(dir), "%s", ops[op->at].path);
	else
		snprintf(dir, sizeof(dir), "%.*s", name - 1 == op->path ? 1 :
		    (int)(name - 1 - op->path), op->path);
	m->dir_path = strdup(dir);
	m->name = strdup(name);
	if (m->dir_path == NULL || m->name == NULL) {
		caller_made_free(m);
		return -ENOMEM;
	}
	m->dir_fd = TAKE_FD(op->dir_fd);
	m->dir_id = op->dir_id;
	m->id = op->id;
	m->type = op_type(op);
	return 0;
}

int
caller_made_reopen(struct caller_made *m)
{
	struct caller_ident now;
	int fd;

	closep(&m->dir_fd);
	if (m->dir_path == NULL || m->dir_path[0] != '/')
		return -EINVAL;
	if ((fd = open(m->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	if (ident_of(fd, &now) < 0 || !caller_ident_same(&now, &m->dir_id)) {
		close(fd);
		return -ESTALE;
	}
	m->dir_fd = fd;
	return 0;
}

int
caller_made_remove(struct caller_made *m)
{
	int r = -EBADF;

	if (m->dir_fd >= 0 && m->name != NULL)
		r = remove_if_same(m->dir_fd, m->name, &m->id, m->type);
	caller_made_free(m);
	return r;
}

void
caller_made_free(struct caller_made *m)
{
	closep(&m->dir_fd);
	free(m->dir_path);
	free(m->name);
	m->dir_path = m->name = NULL;
}
