/*
 * copy.c — a file tree to a cpio stream and back (see copy.h).
 * Blocking POSIX calls and libc only: capsule-agent links it statically.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"
#include "cpio.h"

#define COPY_BUF	65536
#define TMP_PREFIX	".capsule-cp."

/* ---- helpers for both directions ---- */

/* Names can come from an untrusted archive and the message from here ends
 * up on a terminal, so control characters are replaced. */
static int __attribute__((format(printf, 4, 0)))
vfail(char *err, size_t errlen, int errnum, const char *fmt, va_list ap)
{
	char *p;

	if (err != NULL && errlen > 0) {
		vsnprintf(err, errlen, fmt, ap);
		for (p = err; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	}
	return -errnum;
}

static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(err, errlen, errnum, fmt, ap);
	va_end(ap);
	return -errnum;
}

/* Only a non-blocking fd gets EAGAIN; wait for it rather than fail. */
static int
io_wait(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	while (poll(&p, 1, -1) == -1)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* Reads up to n bytes. Returns the count, 0 at end of file, or -errno. */
static ssize_t
read_some(int fd, void *p, size_t n)
{
	ssize_t r;
	int w;

	for (;;) {
		if ((r = read(fd, p, n)) >= 0)
			return r;
		if (errno == EAGAIN) {
			if ((w = io_wait(fd, POLLIN)) < 0)
				return w;
		} else if (errno != EINTR)
			return -errno;
	}
}

/* A socket gets send(MSG_NOSIGNAL), so a gone peer is -EPIPE, not a
 * signal. */
static int
write_all(int fd, int sock, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	ssize_t w;
	int r;

	while (n > 0) {
		w = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
		if (w < 0) {
			if (errno == EAGAIN) {
				if ((r = io_wait(fd, POLLOUT)) < 0)
					return r;
			} else if (errno != EINTR)
				return -errno;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
copy_top_name(const char *src, char *out, size_t outlen)
{
	size_t end = strlen(src), start;

	if (end == 0)
		return -EINVAL;
	while (end > 0 && src[end - 1] == '/')
		end--;
	for (start = end; start > 0 && src[start - 1] != '/'; start--)
		;
	/* "/", "." and "..": the directory itself, whatever it is called. */
	if (end == start || (end - start == 1 && src[start] == '.') ||
	    (end - start == 2 && src[start] == '.' && src[start + 1] == '.')) {
		src = ".";
		start = 0;
		end = 1;
	}
	if (end - start >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, src + start, end - start);
	out[end - start] = '\0';
	return 0;
}

/* ---- archive ---- */

struct actx {
	int		fd;
	int		sock;
	char		*err;
	size_t		errlen;
	const char	*src;
	size_t		srclen;		/* src without trailing slashes */
	size_t		toplen;
	uint32_t	ino;
	size_t		namelen;
	char		name[CPIO_NAME_MAX];	/* archive name of this entry */
	char		path[PATH_MAX + CPIO_NAME_MAX];	/* its path */
	char		link[PATH_MAX];
	size_t		olen;
	uint8_t		out[COPY_BUF];
};

/* The source path of the entry at hand, for messages. */
static const char *
a_path(struct actx *a)
{
	if (a->namelen == a->toplen)
		return a->src;
	snprintf(a->path, sizeof(a->path), "%.*s%s", (int)a->srclen, a->src,
	    a->name + a->toplen);
	return a->path;
}

static int __attribute__((format(printf, 3, 4)))
a_fail(struct actx *a, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(a->err, a->errlen, errnum, fmt, ap);
	va_end(ap);
	return -errnum;
}

/* "[verb ]PATH: strerror(errno)" */
static int
a_sys(struct actx *a, const char *verb)
{
	int e = errno;

	return a_fail(a, e, "%s%s%s: %s", verb ? verb : "", verb ? " " : "",
	    a_path(a), strerror(e));
}

static int
a_flush(struct actx *a)
{
	int r;

	r = write_all(a->fd, a->sock, a->out, a->olen);
	a->olen = 0;
	if (r < 0)
		return a_fail(a, -r, "write archive (at %s): %s", a_path(a),
		    strerror(-r));
	return 0;
}

static int
a_put(struct actx *a, const void *p, size_t n)
{
	int r;

	if (n > sizeof(a->out) - a->olen && (r = a_flush(a)) < 0)
		return r;
	memcpy(a->out + a->olen, p, n);
	a->olen += n;
	return 0;
}

static int
a_pad(struct actx *a, size_t n)
{
	static const uint8_t zero[4];

	return a_put(a, zero, cpio_pad4(n));
}

static int
a_header(struct actx *a, const struct stat *st, size_t size, uint32_t nlink)
{
	struct cpio_entry e = { .ino = ++a->ino, .mode = st->st_mode,
	    .nlink = nlink, .size = (uint32_t)size };
	long n;
	int r;

	/* The format has unsigned 32-bit seconds. */
	if (st->st_mtime > 0)
		e.mtime = (uint64_t)st->st_mtime > UINT32_MAX ? UINT32_MAX :
		    (uint32_t)st->st_mtime;
	if (sizeof(a->out) - a->olen < CPIO_HDR_MAX && (r = a_flush(a)) < 0)
		return r;
	n = cpio_header_encode(a->out + a->olen, sizeof(a->out) - a->olen, &e,
	    a->name);
	if (n < 0)
		return a_fail(a, (int)-n, "%s: cannot encode its name",
		    a_path(a));
	a->olen += (size_t)n;
	return 0;
}

static int
a_file(struct actx *a, int fd, const struct stat *st)
{
	uint64_t left = (uint64_t)st->st_size;
	ssize_t n;
	size_t want;
	int r;
	char c;

	if (left > UINT32_MAX)
		return a_fail(a, EFBIG,
		    "%s: too large for the cp archive format (4 GiB limit)",
		    a_path(a));
	if ((r = a_header(a, st, left, 1)) < 0)
		return r;
	/* Exactly the size the header promised, or the archive is wrong. */
	while (left > 0) {
		if (a->olen == sizeof(a->out) && (r = a_flush(a)) < 0)
			return r;
		want = sizeof(a->out) - a->olen;
		if (want > left)
			want = (size_t)left;
		if ((n = read_some(fd, a->out + a->olen, want)) < 0) {
			errno = (int)-n;
			return a_sys(a, "read");
		}
		if (n == 0)
			break;
		a->olen += (size_t)n;
		left -= (uint64_t)n;
	}
	if (left == 0 && (n = read_some(fd, &c, 1)) < 0) {
		errno = (int)-n;
		return a_sys(a, "read");
	}
	if (left > 0 || n > 0)
		return a_fail(a, EIO, "%s changed while being copied",
		    a_path(a));
	return a_pad(a, (size_t)st->st_size);
}

static int	a_entry(struct actx *, int, const char *);

/* Takes fd. */
static int
a_dir(struct actx *a, int fd, const struct stat *st)
{
	size_t len = a->namelen, n;
	struct dirent *de;
	DIR *d;
	int r;

	if ((r = a_header(a, st, 0, 2)) < 0) {
		close(fd);
		return r;
	}
	if ((d = fdopendir(fd)) == NULL) {
		r = a_sys(a, NULL);
		close(fd);
		return r;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0)
				r = a_sys(a, NULL);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		n = strlen(de->d_name);
		if (len + 1 + n >= sizeof(a->name)) {
			r = a_fail(a, ENAMETOOLONG, "%s/%s: path too long for "
			    "the cp archive format", a_path(a), de->d_name);
			break;
		}
		a->name[len] = '/';
		memcpy(a->name + len + 1, de->d_name, n + 1);
		a->namelen = len + 1 + n;
		r = a_entry(a, dirfd(d), de->d_name);
		a->name[len] = '\0';
		a->namelen = len;
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

/* Archives fname in dirfd, whose archive name is in a->name. */
static int
a_entry(struct actx *a, int dirfd, const char *fname)
{
	struct stat st;
	mode_t type;
	ssize_t n;
	int fd, r;

	if (fstatat(dirfd, fname, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return a_sys(a, NULL);
	type = st.st_mode & S_IFMT;
	if (type == S_IFLNK) {
		if ((n = readlinkat(dirfd, fname, a->link,
		    sizeof(a->link))) == -1)
			return a_sys(a, "readlink");
		if ((size_t)n >= sizeof(a->link))
			return a_fail(a, ENAMETOOLONG,
			    "%s: symbolic link target too long", a_path(a));
		if ((r = a_header(a, &st, (size_t)n, 1)) < 0 ||
		    (r = a_put(a, a->link, (size_t)n)) < 0)
			return r;
		return a_pad(a, (size_t)n);
	}
	if (type != S_IFREG && type != S_IFDIR)
		return 0;	/* sockets, fifos, devices: skipped */

	/* O_NONBLOCK: should it have become a fifo, open must not hang. */
	fd = openat(dirfd, fname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK | (type == S_IFDIR ? O_DIRECTORY : 0));
	if (fd == -1)
		return a_sys(a, NULL);
	if (fstat(fd, &st) == -1) {
		r = a_sys(a, NULL);
		close(fd);
		return r;
	}
	if ((st.st_mode & S_IFMT) != type) {
		close(fd);
		return a_fail(a, EIO, "%s changed while being copied",
		    a_path(a));
	}
	if (type == S_IFDIR)
		return a_dir(a, fd, &st);
	r = a_file(a, fd, &st);
	close(fd);
	return r;
}

int
copy_archive(const char *src, int out_fd, char *err, size_t errlen)
{
	struct actx *a;
	struct stat st;
	long n;
	int r;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return fail(err, errlen, ENOMEM, "%s: out of memory", src);
	a->fd = out_fd;
	a->sock = fstat(out_fd, &st) == 0 && S_ISSOCK(st.st_mode);
	a->err = err;
	a->errlen = errlen;
	a->src = src;
	for (a->srclen = strlen(src); a->srclen > 0 &&
	    src[a->srclen - 1] == '/'; a->srclen--)
		;
	if ((r = copy_top_name(src, a->name, sizeof(a->name))) < 0) {
		r = a_fail(a, -r, "%s: %s", src, *src == '\0' ?
		    "empty source path" : strerror(-r));
	} else if (cpio_is_trailer(a->name)) {
		/* It would read as the end of the archive. */
		r = a_fail(a, EINVAL, "%s: cannot be copied under that name",
		    src);
	} else {
		a->namelen = a->toplen = strlen(a->name);
		r = a_entry(a, AT_FDCWD, src);
	}
	if (r == 0) {
		if (sizeof(a->out) - a->olen < CPIO_HDR_MAX)
			r = a_flush(a);
		n = cpio_trailer_encode(a->out + a->olen,
		    sizeof(a->out) - a->olen);
		if (r == 0 && n > 0) {
			a->olen += (size_t)n;
			r = a_flush(a);
		}
	}
	free(a);
	return r;
}

/* ---- extract ---- */

struct dirattr {
	char		*name;
	uint32_t	mode, mtime;
};

struct xctx {
	int		fd;
	int		flags;
	char		*err;
	size_t		errlen;
	const char	*dst;
	const char	*want;		/* required top name, or NULL */
	const char	*cur;		/* archive name of the entry at hand */
	int		base;		/* the directory the top entry is in */
	char		topdisk[NAME_MAX + 1];	/* the top entry's name there */
	char		top[NAME_MAX + 1];	/* and in the archive */
	size_t		toplen;
	char		prefix[PATH_MAX];	/* the top entry's path */
	int		pfd;		/* last parent directory walked to */
	char		pname[CPIO_NAME_MAX];	/* and its archive name */
	unsigned	seq;
	char		tmp[32];
	struct dirattr	*dirs;		/* created directories, in order */
	size_t		ndirs, dircap;
	char		path[PATH_MAX + CPIO_NAME_MAX];
	uint8_t		hdr[CPIO_HDR_MAX];
	uint8_t		buf[COPY_BUF];
};

/* The destination path of archive name `name` (NULL: dst), for messages. */
static const char *
x_path(struct xctx *x, const char *name)
{
	if (name == NULL || x->toplen == 0)
		return x->dst;
	snprintf(x->path, sizeof(x->path), "%s%s", x->prefix,
	    name + x->toplen);
	return x->path;
}

static int __attribute__((format(printf, 3, 4)))
x_fail(struct xctx *x, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(x->err, x->errlen, errnum, fmt, ap);
	va_end(ap);
	return -errnum;
}

/* "[verb ]PATH: strerror(errno)" for the entry at hand. */
static int
x_sys(struct xctx *x, const char *verb)
{
	int e = errno;

	return x_fail(x, e, "%s%s%s: %s", verb ? verb : "", verb ? " " : "",
	    x_path(x, x->cur), strerror(e));
}

static int
x_read(struct xctx *x, void *buf, size_t n)
{
	uint8_t *p = buf;
	ssize_t r;

	while (n > 0) {
		if ((r = read_some(x->fd, p, n)) < 0)
			return x_fail(x, (int)-r, "%s: read archive: %s", x->dst,
			    strerror((int)-r));
		if (r == 0) {
			if (x->cur == NULL)
				return x_fail(x, EBADMSG,
				    "%s: archive ended early", x->dst);
			return x_fail(x, EBADMSG, "archive ended early (in %s)",
			    x_path(x, x->cur));
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int
x_header(struct xctx *x, struct cpio_entry *e)
{
	const char *name;
	long n;
	int r;

	x->cur = NULL;
	if ((r = x_read(x, x->hdr, CPIO_HDR_LEN)) < 0)
		return r;
	/* With the fixed part alone, decode says how long the rest is. */
	if ((n = cpio_header_decode(x->hdr, CPIO_HDR_LEN, e, &name)) == 0) {
		if ((r = x_read(x, x->hdr + CPIO_HDR_LEN,
		    cpio_header_len(e->namesize) - CPIO_HDR_LEN)) < 0)
			return r;
		n = cpio_header_decode(x->hdr, cpio_header_len(e->namesize), e,
		    &name);
	}
	if (n <= 0)
		return x_fail(x, EBADMSG, "%s: malformed archive (bad cpio "
		    "header)", x->dst);
	x->cur = name;
	return 0;
}

/* Whether name is the top name or below it, with no "", "." or "..". */
static int
x_name_ok(struct xctx *x, const char *name)
{
	const char *p, *c;

	if (strncmp(name, x->top, x->toplen) != 0)
		return 0;
	p = name + x->toplen;
	if (*p != '\0' && *p != '/')
		return 0;
	while (*p == '/') {
		c = p + 1;
		p = c + strcspn(c, "/");
		if (p == c || (p - c == 1 && c[0] == '.') ||
		    (p - c == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
	}
	return 1;
}

/* Decides where the top entry goes, `cp -r` style (copy.h). */
static int
x_setup(struct xctx *x, uint32_t type)
{
	const char *dst = x->dst;
	size_t len = strlen(dst), cut, plen;
	struct stat st;

	while (len > 1 && dst[len - 1] == '/')
		len--;
	if (len == 0)
		return x_fail(x, ENOENT, "empty destination path");
	if (stat(dst, &st) == -1) {
		/* ENOTDIR: a parent is not a directory, said below. */
		if (errno != ENOENT && errno != ENOTDIR)
			return x_sys(x, NULL);
	} else if (S_ISDIR(st.st_mode)) {
		if ((x->base = open(dst, O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC)) == -1)
			return x_sys(x, NULL);
		memcpy(x->topdisk, x->top, x->toplen + 1);
		if (strcmp(x->top, ".") == 0)
			snprintf(x->prefix, sizeof(x->prefix), "%.*s",
			    (int)len, dst);
		else
			snprintf(x->prefix, sizeof(x->prefix), "%.*s%s%s",
			    (int)len, dst, dst[len - 1] == '/' ? "" : "/",
			    x->top);
		return 0;
	}
	if (dst[len] == '/' && type != S_IFDIR)
		return x_fail(x, ENOTDIR, "%s: Not a directory", dst);
	for (cut = len; cut > 0 && dst[cut - 1] != '/'; cut--)
		;
	if (len - cut > NAME_MAX || len >= sizeof(x->prefix))
		return x_fail(x, ENAMETOOLONG, "%s: %s", dst,
		    strerror(ENAMETOOLONG));
	for (plen = cut; plen > 1 && dst[plen - 1] == '/'; plen--)
		;
	memcpy(x->prefix, dst, len);
	x->prefix[len] = '\0';
	memcpy(x->topdisk, dst + cut, len - cut);
	x->topdisk[len - cut] = '\0';
	if (strcmp(x->topdisk, ".") == 0 || strcmp(x->topdisk, "..") == 0)
		return x_fail(x, EINVAL, "%s: cannot be created", dst);
	/* The parent, as the user wrote it: symbolic links are fine there. */
	snprintf(x->path, sizeof(x->path), "%.*s", (int)(cut ? plen : 1),
	    cut ? dst : ".");
	if ((x->base = open(x->path, O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return x_fail(x, ENOENT,
			    "%s: parent directory does not exist", dst);
		if (errno == ENOTDIR)
			return x_fail(x, ENOTDIR,
			    "%s: parent is not a directory", dst);
		return x_sys(x, NULL);
	}
	return 0;
}

/*
 * Returns the directory that holds archive name `name`, walking down from
 * the top with O_NOFOLLOW at every step so that no symbolic link (say, one
 * an earlier entry made) leads outside. *last is the name in it.
 */
static int
x_parent(struct xctx *x, const char *name, const char **last)
{
	const char *slash = strrchr(name, '/');
	char *comp, *end, save;
	size_t plen;
	int fd, nfd, r;

	if (slash == NULL) {
		*last = x->topdisk;
		return x->base;
	}
	*last = slash + 1;
	plen = (size_t)(slash - name);
	if (x->pfd >= 0 && strncmp(x->pname, name, plen) == 0 &&
	    x->pname[plen] == '\0')
		return x->pfd;
	if (x->pfd >= 0)
		close(x->pfd);
	x->pfd = -1;
	memcpy(x->pname, name, plen);
	x->pname[plen] = '\0';

	fd = x->base;
	comp = x->topdisk;
	end = x->pname + x->toplen;
	for (;;) {
		save = *end;
		*end = '\0';
		nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
		if (nfd == -1) {
			r = errno;
			if (r == ENOTDIR || r == ELOOP)
				r = x_fail(x, ENOTDIR, "%s: exists and is not a "
				    "directory", x_path(x, x->pname));
			else
				r = x_fail(x, r, "%s: %s", x_path(x, x->pname),
				    strerror(r));
			if (fd != x->base)
				close(fd);
			x->pname[0] = '\0';
			return r;
		}
		*end = save;
		if (fd != x->base)
			close(fd);
		fd = nfd;
		if (*end == '\0')
			break;
		comp = end + 1;
		end = comp + strcspn(comp, "/");
	}
	x->pfd = fd;
	return fd;
}

/* Files and links replace what is there, but not a directory. */
static int
x_not_dir(struct xctx *x, int dfd, const char *last)
{
	struct stat st;

	if (fstatat(dfd, last, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode))
			return x_fail(x, EISDIR, "%s: exists and is a "
			    "directory", x_path(x, x->cur));
	} else if (errno != ENOENT)
		return x_sys(x, NULL);
	return 0;
}

/* Makes a fresh name in dfd, like mkstemp: a file (returns its fd) or,
 * with target, a symbolic link (returns 0). */
static int
x_tmp(struct xctx *x, int dfd, const char *target)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	struct timespec ts;
	uint32_t v;
	int i, tries, fd;

	for (tries = 0; tries < 100; tries++) {
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 12 ^
		    ++x->seq * 2654435761u;
		memcpy(x->tmp, TMP_PREFIX, sizeof(TMP_PREFIX) - 1);
		for (i = 0; i < 6; i++, v /= 36)
			x->tmp[sizeof(TMP_PREFIX) - 1 + i] = chars[v % 36];
		x->tmp[sizeof(TMP_PREFIX) - 1 + i] = '\0';
		if (target != NULL) {
			if (symlinkat(target, dfd, x->tmp) == 0)
				return 0;
		} else if ((fd = openat(dfd, x->tmp, O_WRONLY | O_CREAT |
		    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) >= 0)
			return fd;
		if (errno != EEXIST)
			return x_sys(x, NULL);
	}
	return x_fail(x, EEXIST, "%s: no free temporary name",
	    x_path(x, x->cur));
}

static uint32_t
x_mode(struct xctx *x, const struct cpio_entry *e)
{
	return e->mode & ((x->flags & COPY_UNTRUSTED) ? 0777 : 07777);
}

static int
x_dir(struct xctx *x, const struct cpio_entry *e)
{
	struct dirattr *d;
	const char *last;
	struct stat st;
	int dfd;

	if (e->size != 0)
		return x_fail(x, EBADMSG, "%s: directory with data in the "
		    "archive", x_path(x, x->cur));
	if ((dfd = x_parent(x, x->cur, &last)) < 0)
		return dfd;
	/* 0700 until the end, so that a 0555 directory can be filled. */
	if (mkdirat(dfd, last, 0700) == -1) {
		if (errno != EEXIST)
			return x_sys(x, "mkdir");
		if (fstatat(dfd, last, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return x_sys(x, NULL);
		if (!S_ISDIR(st.st_mode))
			return x_fail(x, ENOTDIR, "%s: exists and is not a "
			    "directory", x_path(x, x->cur));
		return 0;	/* merge; it keeps its mode */
	}
	if (x->ndirs == x->dircap) {
		x->dircap = x->dircap ? 2 * x->dircap : 16;
		if ((d = realloc(x->dirs, x->dircap * sizeof(*d))) == NULL)
			return x_fail(x, ENOMEM, "%s: out of memory",
			    x_path(x, x->cur));
		x->dirs = d;
	}
	d = &x->dirs[x->ndirs];
	if ((d->name = strdup(x->cur)) == NULL)
		return x_fail(x, ENOMEM, "%s: out of memory", x_path(x, x->cur));
	d->mode = x_mode(x, e);
	d->mtime = e->mtime;
	x->ndirs++;
	return 0;
}

static int
x_file(struct xctx *x, const struct cpio_entry *e)
{
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT },
	    { .tv_sec = (time_t)e->mtime } };
	uint32_t left = e->size;
	const char *last;
	ssize_t n;
	int dfd, fd, r;

	if ((dfd = x_parent(x, x->cur, &last)) < 0)
		return dfd;
	if ((r = x_not_dir(x, dfd, last)) < 0)
		return r;
	if ((fd = x_tmp(x, dfd, NULL)) < 0)
		return fd;
	while (left > 0) {
		n = read_some(x->fd, x->buf, left < sizeof(x->buf) ? left :
		    sizeof(x->buf));
		if (n < 0) {
			r = x_fail(x, (int)-n, "%s: read archive: %s", x->dst,
			    strerror((int)-n));
			goto fail;
		}
		if (n == 0) {
			r = x_fail(x, EBADMSG, "archive ended early (in %s)",
			    x_path(x, x->cur));
			goto fail;
		}
		if ((r = write_all(fd, 0, x->buf, (size_t)n)) < 0) {
			errno = -r;
			r = x_sys(x, "write");
			goto fail;
		}
		left -= (uint32_t)n;
	}
	if ((r = x_read(x, x->buf, cpio_pad4(e->size))) < 0)
		goto fail;
	if (fchmod(fd, x_mode(x, e)) == -1 || futimens(fd, t) == -1) {
		r = x_sys(x, NULL);
		goto fail;
	}
	r = close(fd);
	fd = -1;
	if (r == -1) {
		r = x_sys(x, "write");
		goto fail;
	}
	if (renameat(dfd, x->tmp, dfd, last) == -1) {
		r = x_sys(x, NULL);
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dfd, x->tmp, 0);
	return r;
}

static int
x_link(struct xctx *x, const struct cpio_entry *e)
{
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT },
	    { .tv_sec = (time_t)e->mtime } };
	const char *last;
	char *target = (char *)x->buf;
	int dfd, r;

	if (e->size == 0 || e->size >= PATH_MAX)
		return x_fail(x, EBADMSG, "%s: bad symbolic link in the archive",
		    x_path(x, x->cur));
	if ((r = x_read(x, target, e->size + cpio_pad4(e->size))) < 0)
		return r;
	if (memchr(target, '\0', e->size) != NULL)
		return x_fail(x, EBADMSG, "%s: bad symbolic link in the archive",
		    x_path(x, x->cur));
	target[e->size] = '\0';
	if ((dfd = x_parent(x, x->cur, &last)) < 0)
		return dfd;
	if ((r = x_not_dir(x, dfd, last)) < 0 ||
	    (r = x_tmp(x, dfd, target)) < 0)
		return r;
	if (utimensat(dfd, x->tmp, t, AT_SYMLINK_NOFOLLOW) == -1 ||
	    renameat(dfd, x->tmp, dfd, last) == -1) {
		r = x_sys(x, NULL);
		unlinkat(dfd, x->tmp, 0);
		return r;
	}
	return 0;
}

/* The first entry fixes the top name and where it goes. */
static int
x_top(struct xctx *x, const struct cpio_entry *e)
{
	const char *name = x->cur;
	int r;

	if (strchr(name, '/') != NULL || strcmp(name, "..") == 0 ||
	    (strcmp(name, ".") == 0 && (e->mode & S_IFMT) != S_IFDIR))
		return x_fail(x, EPERM, "%s: unsafe name in the archive: %s",
		    x->dst, name);
	if (x->want != NULL && strcmp(name, x->want) != 0)
		return x_fail(x, EPERM, "%s: the archive holds %s, not %s",
		    x->dst, name, x->want);
	if (strlen(name) > NAME_MAX)
		return x_fail(x, ENAMETOOLONG, "%s: name too long in the "
		    "archive", x->dst);
	x->toplen = strlen(name);
	memcpy(x->top, name, x->toplen + 1);
	x->cur = NULL;		/* messages name dst until it is set up */
	r = x_setup(x, e->mode & S_IFMT);
	x->cur = name;
	return r;
}

/* Directory modes and mtimes, innermost first, once they are filled. */
static int
x_finish_dirs(struct xctx *x)
{
	const struct dirattr *d;
	struct timespec t[2] = { { .tv_nsec = UTIME_OMIT } };
	const char *last;
	size_t i;
	int dfd, fd, r;

	for (i = x->ndirs; i-- > 0; ) {
		d = &x->dirs[i];
		x->cur = d->name;
		if ((dfd = x_parent(x, d->name, &last)) < 0)
			return dfd;
		if ((fd = openat(dfd, last, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC)) == -1)
			return x_sys(x, NULL);
		t[1].tv_sec = (time_t)d->mtime;
		r = 0;
		if (fchmod(fd, d->mode) == -1 || futimens(fd, t) == -1)
			r = x_sys(x, NULL);
		close(fd);
		if (r < 0)
			return r;
	}
	return 0;
}

int
copy_extract_top(int in_fd, const char *dst, const char *top, int flags,
    char *err, size_t errlen)
{
	struct cpio_entry e;
	struct xctx *x;
	uint32_t type;
	size_t i;
	int r;

	if ((x = calloc(1, sizeof(*x))) == NULL)
		return fail(err, errlen, ENOMEM, "%s: out of memory", dst);
	x->fd = in_fd;
	x->flags = flags;
	x->err = err;
	x->errlen = errlen;
	x->dst = dst;
	x->want = top;
	x->base = x->pfd = -1;
	for (;;) {
		if ((r = x_header(x, &e)) < 0)
			break;
		if (cpio_is_trailer(x->cur)) {
			if (x->toplen == 0)
				r = x_fail(x, EBADMSG, "%s: the archive is empty",
				    dst);
			break;
		}
		if (x->toplen == 0 && (r = x_top(x, &e)) < 0)
			break;
		if (!x_name_ok(x, x->cur)) {
			r = x_fail(x, EPERM, "%s: unsafe name in the archive: "
			    "%s", dst, x->cur);
			break;
		}
		type = e.mode & S_IFMT;
		if (type == S_IFDIR)
			r = x_dir(x, &e);
		else if (type == S_IFREG)
			r = x_file(x, &e);
		else if (type == S_IFLNK)
			r = x_link(x, &e);
		else
			r = x_fail(x, ENOTSUP, "%s: unsupported file type in "
			    "the archive (mode %06o)", x_path(x, x->cur),
			    (unsigned)e.mode);
		if (r < 0)
			break;
	}
	if (r == 0)
		r = x_finish_dirs(x);
	if (x->pfd >= 0)
		close(x->pfd);
	if (x->base >= 0)
		close(x->base);
	for (i = 0; i < x->ndirs; i++)
		free(x->dirs[i].name);
	free(x->dirs);
	free(x);
	return r;
}

int
copy_extract(int in_fd, const char *dst, int flags, char *err, size_t errlen)
{
	return copy_extract_top(in_fd, dst, NULL, flags, err, errlen);
}
