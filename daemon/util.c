/*
 * util.c — helpers shared by the daemon's files (see util.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "osdep.h"
#include "proto.h"
#include "util.h"

uint64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *
util_strdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

void
util_uuid(char out[37])
{
	uint8_t b[16];

	while (osdep_random(b, sizeof(b)) < 0)
		;
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void
util_rfc3339(long long unix_secs, char out[32])
{
	time_t t = (time_t)unix_secs;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
util_mkdir_p(const char *path, unsigned mode, struct cap_err *err)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "bad directory path \"%s\"", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return cap_err_set(err, errno, E_INTERNAL,
			    "cannot create directory %s: %s", buf,
			    strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return cap_err_set(err, errno, E_INTERNAL,
		    "cannot create directory %s: %s", buf, strerror(errno));
	return 0;
}

/* A non-blocking, close-on-exec Unix stream socket and its address. */
static int
unix_socket(struct sockaddr_un *sun, const char *path, struct cap_err *err)
{
	int fd;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "socket path %s is longer than %zu bytes", path,
		    sizeof(sun->sun_path) - 1);
	strcpy(sun->sun_path, path);
	fd = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "socket: %s",
		    strerror(errno));
	return fd;
}

/* Listens on path, or on name in directory dirfd if that is not
 * AT_FDCWD. */
static int
listen_unix(int dirfd, const char *path, unsigned mode, struct cap_err *err)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if ((fd = unix_socket(&sun, path, err)) < 0)
		return fd;
	/* Born with the right mode: no window where others could connect. */
	old = umask(~mode & 0777);
	if (dirfd == AT_FDCWD)
		r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	else
		r = osdep_bind_unix_at(dirfd, fd, path);
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		int e = errno;

		/* osdep's address for a name in a directory did not fit. */
		if (e == ENAMETOOLONG && dirfd != AT_FDCWD)
			cap_err_set(err, e, E_INVALID_ARGUMENT, "socket name "
			    "%s is too long", path);
		else
			cap_err_set(err, e, e == EADDRINUSE ? E_CONFLICT :
			    E_INTERNAL, "cannot listen on %s: %s", path,
			    strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int
util_listen_unix(const char *path, unsigned mode, struct cap_err *err)
{
	return listen_unix(AT_FDCWD, path, mode, err);
}

/* bind() and connect() take no directory fd: osdep_*_unix_at() use
 * exactly the directory we hold, whatever happens to its path. */
static int
at_name(int dirfd, const char *name, struct cap_err *err)
{
	/* A directory we hold: never AT_FDCWD, which listen_unix() and
	 * connect_unix() take to mean a plain path. */
	if (dirfd < 0)
		return cap_err_set(err, EBADF, E_INTERNAL, "no directory for "
		    "socket %s", name);
	if (strchr(name, '/') != NULL || name[0] == '\0')
		return cap_err_set(err, EINVAL, E_INTERNAL,
		    "bad socket name \"%s\"", name);
	return 0;
}

int
util_listen_unix_at(int dirfd, const char *name, unsigned mode,
    struct cap_err *err)
{
	int r;

	if ((r = at_name(dirfd, name, err)) < 0)
		return r;
	return listen_unix(dirfd, name, mode, err);
}

/* Connects to path, or to name in directory dirfd if that is not
 * AT_FDCWD. */
static int
connect_unix(int dirfd, const char *path, struct cap_err *err)
{
	struct sockaddr_un sun;
	int fd, r;

	if ((fd = unix_socket(&sun, path, err)) < 0)
		return fd;
	if ((dirfd == AT_FDCWD ? connect(fd, (struct sockaddr *)&sun,
	    sizeof(sun)) : osdep_connect_unix_at(dirfd, fd, path)) < 0) {
		/* osdep's address for a name in a directory did not fit. */
		r = errno == ENAMETOOLONG && dirfd != AT_FDCWD ?
		    cap_err_set(err, errno, E_INVALID_ARGUMENT, "socket name "
		    "%s is too long", path) :
		    cap_err_set(err, errno, E_UNAVAILABLE,
		    "cannot connect to %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

int
util_connect_unix_at(int dirfd, const char *name, struct cap_err *err)
{
	int r;

	if ((r = at_name(dirfd, name, err)) < 0)
		return r;
	return connect_unix(dirfd, name, err);
}

int
util_connect_unix(const char *path, struct cap_err *err)
{
	return connect_unix(AT_FDCWD, path, err);
}

int
util_unix_alive(const char *path)
{
	int fd = util_connect_unix(path, NULL);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int
util_unix_clear_stale(const char *path, const char *what, struct cap_err *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : cap_err_set(err, errno,
		    E_INVALID_ARGUMENT, "%s %s: %s", what, path,
		    strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return cap_err_set(err, EEXIST, E_CONFLICT, "%s %s exists and "
		    "is not a socket; capsuled replaces only a stale socket of "
		    "its own", what, path);
	if (st.st_uid != geteuid())
		return cap_err_set(err, EPERM, E_CONFLICT, "%s %s belongs to "
		    "uid %u, not to capsuled's uid %u", what, path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
	if (util_unix_alive(path))
		return cap_err_set(err, EADDRINUSE, E_CONFLICT,
		    "%s %s: something is already listening there", what, path);
	if (unlink(path) < 0 && errno != ENOENT)
		return cap_err_set(err, errno, E_INTERNAL, "cannot remove the "
		    "stale socket %s: %s", path, strerror(errno));
	return 0;
}

int
util_listen_unix_own(const char *path, unsigned mode, struct util_sock *own,
    const char *what, struct cap_err *err)
{
	struct stat st;
	int fd;

	own->made = 0;
	if (util_unix_clear_stale(path, what, err) < 0)
		return -1;
	if ((fd = util_listen_unix(path, mode, err)) < 0)
		return -1;
	if (lstat(path, &st) == 0) {
		own->dev = st.st_dev;
		own->ino = st.st_ino;
		own->made = 1;
	}
	return fd;
}

void
util_unlink_own(const char *path, struct util_sock *own)
{
	struct stat st;

	if (own->made && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == own->dev && st.st_ino == own->ino)
		unlink(path);
	own->made = 0;
}

unsigned
util_host_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

uint64_t
util_host_memory_mib(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return 1024;
	return (uint64_t)pages * (uint64_t)size / (1024 * 1024);
}

int
util_write_atomic(int dfd, const char *name, const char *text, size_t len)
{
	char tmp[NAME_MAX + 1];
	size_t off = 0;
	int fd, e = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* Only its writer uses the tmp name, so a leftover is its own. */
	unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len && e == 0) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno != EINTR)
			e = errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (e == 0 && fsync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && e == 0)
		e = errno;
	if (e == 0 && renameat(dfd, tmp, dfd, name) < 0)
		e = errno;
	if (e != 0) {
		unlinkat(dfd, tmp, 0);
		return -e;
	}
	fsync(dfd);
	return 0;
}

int
util_run(char *const argv[], int keep, char *out, size_t outlen,
    struct cap_err *err)
{
	char buf[1024], drop[4096];
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int pfd[2], st = 0, null;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (osdep_pipe(pfd, O_CLOEXEC) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "pipe: %s",
		    strerror(errno));
	if ((pid = fork()) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
	}
	if (pid == 0) {
		if ((null = open("/dev/null", O_RDONLY)) < 0 ||
		    dup2(null, STDIN_FILENO) < 0 ||
		    dup2(pfd[1], STDOUT_FILENO) < 0 ||
		    dup2(pfd[1], STDERR_FILENO) < 0 ||
		    (keep >= 0 && dup2(keep, 3) < 0) ||
		    (keep == 3 && fcntl(3, F_SETFD, 0) < 0))
			_exit(126);
		osdep_closefrom(keep >= 0 ? 4 : 3);
		execve(argv[0], argv, envp);
		dprintf(2, "cannot execute %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	/* Read to the end (a full pipe would block the child), keeping what
	 * fits: that is the text an error message needs. */
	while ((n = read(pfd[0], got < sizeof(buf) - 1 ? buf + got : drop,
	    got < sizeof(buf) - 1 ? sizeof(buf) - 1 - got : sizeof(drop))) > 0 ||
	    (n < 0 && errno == EINTR))
		if (n > 0 && got < sizeof(buf) - 1)
			got += (size_t)n;
	close(pfd[0]);
	while (got > 0 && buf[got - 1] == '\n')
		got--;
	buf[got] = '\0';
	if (out != NULL)
		snprintf(out, outlen, "%s", buf);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return cap_err_set(err, errno, E_INTERNAL, "waitpid: %s",
			    strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cap_err_set(err, EIO, E_INTERNAL, "%s failed%s%.400s",
		    argv[0], buf[0] ? ": " : "", buf);
	return 0;
}
