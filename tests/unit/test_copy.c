/*
 * test_copy.c — `capsule cp`'s file-tree code, on real directories under
 * /tmp: round trips, cp -r semantics, and hostile archives built by hand.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testrng.h"

#include "copy.h"
#include "rmtree.h"
#include "cpio.h"

static char base[64];
static char err[1024];

/* base/rel, from a small ring of buffers so a call can take several. */
static const char *
P(const char *fmt, ...)
{
	static char ring[8][PATH_MAX];
	static int next;
	char rel[PATH_MAX - sizeof(base)];
	va_list ap;
	char *p = ring[next++ % 8];

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(p, PATH_MAX, "%s/%s", base, rel);
	return p;
}

static int
setup(void **state)
{
	(void)state;
	umask(022);
	strcpy(base, "/tmp/capsule-test-copy.XXXXXX");
	assert_non_null(mkdtemp(base));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	/* Trees here hold links (some to /) and unreadable directories:
	 * rmtree follows none of them out. */
	return rmtree(base);
}

static void
set_mtime(const char *path, time_t t)
{
	struct timespec ts[2] = { { .tv_sec = t }, { .tv_sec = t } };

	assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW),
	    0);
}

static void
put_file(const char *path, const void *data, size_t len, mode_t mode,
    time_t mtime)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	set_mtime(path, mtime);
}

/* The whole file, malloc'ed; *len its size. */
static uint8_t *
slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size + 1), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static int
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Names in dir (not . and ..), counted; fails on a leftover temp file. */
static int
count_dir(const char *dir)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		assert_true(strncmp(de->d_name, ".capsule-cp.", 12) != 0);
		n++;
	}
	closedir(d);
	return n;
}

/* An anonymous file to hold an archive. */
static int
tmp_fd(void)
{
	int fd = open(base, O_RDWR | O_TMPFILE, 0600);

	assert_true(fd >= 0);
	return fd;
}

/* Archives src into a file and extracts it to dst; returns the latter's
 * result (the archive side must succeed). */
static int
cp(const char *src, const char *dst, int flags)
{
	int fd = tmp_fd(), r;

	err[0] = '\0';
	assert_int_equal(copy_archive(src, fd, err, sizeof(err)), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	r = copy_extract(fd, dst, flags, err, sizeof(err));
	close(fd);
	return r;
}

/* a and b hold the same tree: types, permission bits, mtimes, data. */
static void
same_tree(const char *a, const char *b)
{
	struct stat sa, sb;
	struct dirent *de;
	char pa[PATH_MAX], pb[PATH_MAX], la[PATH_MAX], lb[PATH_MAX];
	uint8_t *da, *db;
	size_t na, nb;
	ssize_t n;
	DIR *d;

	assert_int_equal(lstat(a, &sa), 0);
	assert_int_equal(lstat(b, &sb), 0);
	if ((sa.st_mode & 07777) != (sb.st_mode & 07777) ||
	    (sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
		fail_msg("%s: mode %o, want %o", b, sb.st_mode, sa.st_mode);
	if (sa.st_mtime != sb.st_mtime)
		fail_msg("%s: mtime %ld, want %ld", b, (long)sb.st_mtime,
		    (long)sa.st_mtime);
	if (!S_ISDIR(sa.st_mode))
		assert_int_equal(sa.st_size, sb.st_size);
	if (S_ISREG(sa.st_mode)) {
		da = slurp(a, &na);
		db = slurp(b, &nb);
		assert_int_equal(na, nb);
		assert_memory_equal(da, db, na);
		free(da);
		free(db);
	} else if (S_ISLNK(sa.st_mode)) {
		n = readlink(a, la, sizeof(la));
		assert_true(n > 0);
		assert_int_equal(readlink(b, lb, sizeof(lb)), n);
		assert_memory_equal(la, lb, (size_t)n);
	} else if (S_ISDIR(sa.st_mode)) {
		int count = 0;

		assert_non_null(d = opendir(a));
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(pa, sizeof(pa), "%s/%s", a, de->d_name);
			snprintf(pb, sizeof(pb), "%s/%s", b, de->d_name);
			assert_int_equal(lstat(pa, &sa), 0);
			if (!S_ISREG(sa.st_mode) && !S_ISDIR(sa.st_mode) &&
			    !S_ISLNK(sa.st_mode)) {
				/* skipped by the archive */
				assert_false(exists(pb));
				continue;
			}
			same_tree(pa, pb);
			count++;
		}
		closedir(d);
		assert_int_equal(count_dir(b), count);
	}
}

static uint8_t *
random_bytes(size_t n)
{
	uint8_t *p = malloc(n);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < n; i++)
		p[i] = (uint8_t)rng();
	return p;
}

/*
 * src/            0750
 *   empty         0600  ""
 *   small         0644  "hello\n"
 *   big           0640  200001 random bytes
 *   exact         0600  65536 random bytes
 *   fifo                (skipped)
 *   sub/          0700
 *     deep/       0555
 *       ro        0444  "x"
 *     link        -> ../small
 *   dangling      -> /nonexistent/target
 */
static void
make_tree(const char *src)
{
	char p[PATH_MAX];
	uint8_t *data;

	rng_state = 42;
	assert_int_equal(mkdir(src, 0700), 0);
	snprintf(p, sizeof(p), "%s/empty", src);
	put_file(p, "", 0, 0600, 1500000001);
	snprintf(p, sizeof(p), "%s/small", src);
	put_file(p, "hello\n", 6, 0644, 1500000002);
	data = random_bytes(200001);
	snprintf(p, sizeof(p), "%s/big", src);
	put_file(p, data, 200001, 0640, 1500000003);
	free(data);
	data = random_bytes(65536);
	snprintf(p, sizeof(p), "%s/exact", src);
	put_file(p, data, 65536, 0600, 1500000004);
	free(data);
	snprintf(p, sizeof(p), "%s/fifo", src);
	assert_int_equal(mkfifo(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/sub", src);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/sub/deep", src);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/sub/deep/ro", src);
	put_file(p, "x", 1, 0444, 1500000005);
	snprintf(p, sizeof(p), "%s/sub/link", src);
	assert_int_equal(symlink("../small", p), 0);
	set_mtime(p, 1500000006);
	snprintf(p, sizeof(p), "%s/dangling", src);
	assert_int_equal(symlink("/nonexistent/target", p), 0);
	set_mtime(p, 1500000007);
	/* Directories last: filling them moved their mtimes. */
	snprintf(p, sizeof(p), "%s/sub/deep", src);
	assert_int_equal(chmod(p, 0555), 0);
	set_mtime(p, 1500000008);
	snprintf(p, sizeof(p), "%s/sub", src);
	set_mtime(p, 1500000009);
	assert_int_equal(chmod(src, 0750), 0);
	set_mtime(src, 1500000010);
}

/* ---- round trips ---- */

static void
test_round_trip(void **state)
{
	(void)state;
	make_tree(P("src"));
	assert_int_equal(mkdir(P("dst"), 0755), 0);
	/* Into an existing directory: dst/src. */
	assert_int_equal(cp(P("src"), P("dst"), 0), 0);
	same_tree(P("src"), P("dst/src"));
	assert_int_equal(count_dir(P("dst")), 1);
	/* To a new name. */
	assert_int_equal(cp(P("src/"), P("new"), 0), 0);
	same_tree(P("src"), P("new"));
	/* Again into the same place: files replaced, directories merged. */
	put_file(P("dst/src/extra"), "e", 1, 0600, 1);
	put_file(P("dst/src/small"), "old and longer", 14, 0666, 1);
	assert_int_equal(cp(P("src"), P("dst"), 0), 0);
	assert_true(exists(P("dst/src/extra")));
	assert_int_equal(unlink(P("dst/src/extra")), 0);
	same_tree(P("src/small"), P("dst/src/small"));
}

/* The exact bytes of a one-file archive, spelled out without the codec. */
static void
test_archive_bytes(void **state)
{
	char want[512];
	uint8_t got[1024];
	size_t n;
	int fd;

	(void)state;
	put_file(P("f"), "hi\n", 3, 0640, 1700000000);
	n = (size_t)snprintf(want, sizeof(want),
	    "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
	    1, 0100640, 0, 0, 1, 1700000000, 3, 0, 0, 0, 0, 2, 0);
	memcpy(want + n, "f\0hi\n\0", 6);	/* name, data, 1 byte pad */
	n += 6;
	n += (size_t)snprintf(want + n, sizeof(want) - n,
	    "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
	    0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0);
	memcpy(want + n, "TRAILER!!!\0\0\0\0", 14);
	n += 14;
	assert_int_equal(n, 112 + 4 + 124);

	fd = tmp_fd();
	assert_int_equal(copy_archive(P("f"), fd, err, sizeof(err)), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(read(fd, got, sizeof(got)), (ssize_t)n);
	close(fd);
	assert_memory_equal(got, want, n);
}

static void
test_top_name(void **state)
{
	static const char *cases[][2] = {
		{ "a", "a" }, { "a/b", "b" }, { "a/b/", "b" }, { "a/b//", "b" },
		{ "/a", "a" }, { "/", "." }, { "//", "." }, { ".", "." },
		{ "..", "." }, { "a/..", "." }, { "a/.", "." }, { "./a", "a" },
		{ ".a", ".a" }, { "a/...", "..." },
	};
	char out[16];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(copy_top_name(cases[i][0], out, sizeof(out)),
		    0);
		assert_string_equal(out, cases[i][1]);
	}
	assert_int_equal(copy_top_name("", out, sizeof(out)), -EINVAL);
	assert_int_equal(copy_top_name("x/abcd", out, 4), -ENAMETOOLONG);
	assert_int_equal(copy_top_name("x/abc", out, 4), 0);
}

/* cp -r: a file and a directory, into a directory, as a new name, over an
 * existing file, into a missing or non-directory parent. */
static void
test_cp_semantics(void **state)
{
	uint8_t *data;
	size_t len;
	struct stat st;

	(void)state;
	put_file(P("f"), "data", 4, 0751, 1600000000);
	assert_int_equal(mkdir(P("d"), 0755), 0);
	assert_int_equal(mkdir(P("tree"), 0755), 0);
	put_file(P("tree/in"), "in", 2, 0644, 1600000001);

	assert_int_equal(cp(P("f"), P("d"), 0), 0);
	same_tree(P("f"), P("d/f"));
	assert_int_equal(cp(P("f"), P("d/g"), 0), 0);
	same_tree(P("f"), P("d/g"));
	/* A trailing slash on dst that exists. */
	assert_int_equal(cp(P("f"), P("d/"), 0), 0);
	assert_int_equal(count_dir(P("d")), 2);

	/* Over an existing file: replaced, not written through. */
	put_file(P("other"), "something longer", 16, 0600, 1);
	assert_int_equal(symlink(P("other"), P("d/ln")), 0);
	assert_int_equal(cp(P("f"), P("d/ln"), 0), 0);
	same_tree(P("f"), P("d/ln"));
	data = slurp(P("other"), &len);
	assert_int_equal(len, 16);
	free(data);

	/* A directory to a new name, then merged into. */
	assert_int_equal(cp(P("tree"), P("d/t2"), 0), 0);
	same_tree(P("tree"), P("d/t2"));

	/* Missing parent, parent a file. */
	assert_int_equal(cp(P("f"), P("nope/x"), 0), -ENOENT);
	assert_string_equal(err, P("nope/x: parent directory does not exist"));
	assert_int_equal(cp(P("f"), P("f/x"), 0), -ENOTDIR);
	assert_string_equal(err, P("f/x: parent is not a directory"));
	/* A file to "new/": cp says not a directory. */
	assert_int_equal(cp(P("f"), P("new/"), 0), -ENOTDIR);
	assert_false(exists(P("new")));
	/* A directory can go to "new/". */
	assert_int_equal(cp(P("tree"), P("new/"), 0), 0);
	same_tree(P("tree"), P("new"));

	/* A directory over an existing file. */
	assert_int_equal(cp(P("tree"), P("other"), 0), -ENOTDIR);
	assert_string_equal(err, P("other: exists and is not a directory"));
	assert_int_equal(lstat(P("other"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 16);

	/* A file over a directory below dst. */
	assert_int_equal(mkdir(P("d/tree"), 0755), 0);
	assert_int_equal(mkdir(P("d/tree/in"), 0755), 0);
	assert_int_equal(cp(P("tree"), P("d"), 0), -EISDIR);
	assert_string_equal(err, P("d/tree/in: exists and is a directory"));
	assert_int_equal(count_dir(P("d/tree/in")), 0);

	/* "." copies a directory's contents. */
	assert_int_equal(mkdir(P("merge"), 0755), 0);
	assert_int_equal(cp(P("tree/."), P("merge"), 0), 0);
	same_tree(P("tree/in"), P("merge/in"));
	assert_int_equal(count_dir(P("merge")), 1);
}

static void
test_missing_source(void **state)
{
	struct stat st;
	int fd;

	(void)state;
	fd = tmp_fd();
	assert_int_equal(copy_archive(P("nothere"), fd, err, sizeof(err)),
	    -ENOENT);
	assert_string_equal(err, P("nothere: No such file or directory"));
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	close(fd);

	/* Too big for the format: a sparse 4 GiB file. */
	fd = open(P("huge"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4LL << 30), 0);
	close(fd);
	fd = tmp_fd();
	assert_int_equal(copy_archive(P("huge"), fd, err, sizeof(err)), -EFBIG);
	assert_string_equal(err, P("huge: too large for the cp archive format "
	    "(4 GiB limit)"));
	close(fd);

	/* A file whose size is not what stat said. */
	fd = tmp_fd();
	assert_true(copy_archive("/proc/self/status", fd, err,
	    sizeof(err)) < 0);
	assert_string_equal(err, "/proc/self/status changed while being "
	    "copied");
	close(fd);
}

/* Over a socket (send without SIGPIPE) from another process, with data
 * after the trailer that must stay unread. */
static void
test_stream(void **state)
{
	int sv[2], status;
	uint8_t rest[8];
	pid_t pid;

	(void)state;
	make_tree(P("src"));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		if (copy_archive(P("src"), sv[1], err, sizeof(err)) < 0 ||
		    write(sv[1], "after", 5) != 5)
			_exit(1);
		close(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	assert_int_equal(copy_extract(sv[0], P("dst"), 0, err, sizeof(err)),
	    0);
	assert_int_equal(read(sv[0], rest, sizeof(rest)), 5);
	assert_memory_equal(rest, "after", 5);
	close(sv[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	same_tree(P("src"), P("dst"));

	/* The reader goes away: the writer gets EPIPE, not a signal. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	assert_int_equal(copy_archive(P("src"), sv[1], err, sizeof(err)),
	    -EPIPE);
	assert_non_null(strstr(err, "Broken pipe"));
	close(sv[1]);
}

/* Not root-only: a 0555 directory is filled by an unprivileged user. */
static void
test_unprivileged(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(base, 65534, 65534), 0);
	if ((pid = fork()) == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		make_tree(P("src"));
		_exit(cp(P("src"), P("dst"), 0) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (status != 0)
		fail_msg("unprivileged copy failed: status %d", status);
	same_tree(P("src"), P("dst"));
}

/* ---- hand-made archives ---- */

struct ar {
	int	fd;
};

static void
ar_add(struct ar *a, const char *name, uint32_t mode, const void *data,
    size_t len)
{
	struct cpio_entry e = { .mode = mode, .nlink = 1, .size =
	    (uint32_t)len, .mtime = 1234567890 };
	static const uint8_t zero[4];
	uint8_t h[CPIO_HDR_MAX];
	long n;

	n = cpio_header_encode(h, sizeof(h), &e, name);
	assert_true(n > 0);
	assert_int_equal(write(a->fd, h, (size_t)n), n);
	if (len > 0)
		assert_int_equal(write(a->fd, data, len), (ssize_t)len);
	assert_int_equal(write(a->fd, zero, cpio_pad4(len)),
	    (ssize_t)cpio_pad4(len));
}

static void
ar_end(struct ar *a)
{
	uint8_t h[CPIO_HDR_MAX];
	long n = cpio_trailer_encode(h, sizeof(h));

	assert_int_equal(write(a->fd, h, (size_t)n), n);
}

static struct ar
ar_new(void)
{
	struct ar a = { .fd = tmp_fd() };

	return a;
}

/* Extracts a to dst and closes it. */
static int
ar_extract(struct ar *a, const char *dst, int flags)
{
	int r;

	assert_int_equal(lseek(a->fd, 0, SEEK_SET), 0);
	err[0] = '\0';
	r = copy_extract(a->fd, dst, flags, err, sizeof(err));
	close(a->fd);
	return r;
}

/* base holds D (the destination, empty) and outside (empty) only. */
static void
nothing_escaped(void)
{
	assert_int_equal(count_dir(base), 2);
	assert_int_equal(count_dir(P("outside")), 0);
}

static void
test_hostile_names(void **state)
{
	char abs[PATH_MAX];
	const char *bad[][2] = {
		/* first entry, second entry (NULL: none) */
		{ "../x", NULL },
		{ NULL, NULL },		/* "/abs", filled in below */
		{ "top", "top/../../x" },
		{ "top", "top/../x" },
		{ "top", "../x" },
		{ "top", "top//x" },
		{ "top", "top/./x" },
		{ "top", "top/" },
		{ "top", "topx/y" },
		{ "top", "other" },
		{ "top", "./top/x" },
		{ "a/b", NULL },
		{ "..", NULL },
	};
	struct ar a;
	size_t i;

	(void)state;
	assert_int_equal(mkdir(P("D"), 0755), 0);
	assert_int_equal(mkdir(P("outside"), 0755), 0);
	snprintf(abs, sizeof(abs), "%s/abs", base);
	bad[1][0] = abs;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a = ar_new();
		ar_add(&a, bad[i][0], bad[i][1] ? 040755 : 0100644, "x",
		    bad[i][1] ? 0 : 1);
		if (bad[i][1] != NULL)
			ar_add(&a, bad[i][1], 0100644, "x", 1);
		ar_end(&a);
		assert_int_equal(ar_extract(&a, P("D"), 0), -EPERM);
		assert_non_null(strstr(err, "unsafe name in the archive: "));
		assert_non_null(strstr(err, bad[i][1] ? bad[i][1] :
		    bad[i][0]));
		if (bad[i][1] != NULL) {
			/* The top directory was made; nothing else. */
			assert_int_equal(count_dir(P("D/top")), 0);
			assert_int_equal(rmdir(P("D/top")), 0);
		}
		assert_int_equal(count_dir(P("D")), 0);
		nothing_escaped();
	}
	/* The same as a new name rather than into D. */
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/../../x", 0100644, "x", 1);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D/new"), 0), -EPERM);
	assert_int_equal(rmdir(P("D/new")), 0);
	nothing_escaped();
}

/* A link the archive made is never followed by a later entry. */
static void
test_hostile_symlink(void **state)
{
	struct stat st;
	const char *out;
	struct ar a;

	(void)state;
	assert_int_equal(mkdir(P("D"), 0755), 0);
	assert_int_equal(mkdir(P("outside"), 0755), 0);
	out = P("outside");

	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/l", 0120777, out, strlen(out));
	ar_add(&a, "top/l/file", 0100644, "pwned", 5);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -ENOTDIR);
	assert_string_equal(err, P("D/top/l: exists and is not a directory"));
	nothing_escaped();
	assert_int_equal(unlink(P("D/top/l")), 0);

	/* Nor is a directory entry merged into it. */
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/l", 0120777, out, strlen(out));
	ar_add(&a, "top/l", 040755, NULL, 0);
	ar_add(&a, "top/l/file", 0100644, "pwned", 5);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -ENOTDIR);
	assert_string_equal(err, P("D/top/l: exists and is not a directory"));
	nothing_escaped();
	assert_int_equal(unlink(P("D/top/l")), 0);
	assert_int_equal(rmdir(P("D/top")), 0);

	/* A link already there at the top's name is not followed either. */
	assert_int_equal(symlink(out, P("D/top")), 0);
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/file", 0100644, "pwned", 5);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -ENOTDIR);
	nothing_escaped();

	/* Files replace links rather than write through them. */
	assert_int_equal(unlink(P("D/top")), 0);
	assert_int_equal(mkdir(P("D/top"), 0755), 0);
	assert_int_equal(symlink(P("outside/target"), P("D/top/f")), 0);
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/f", 0100644, "data", 4);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), 0);
	nothing_escaped();
	assert_int_equal(lstat(P("D/top/f"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 4);
}

static void
test_hostile_entries(void **state)
{
	static const uint8_t junk[200] = "070701zzzz";
	struct stat st;
	struct ar a;
	int fd;

	(void)state;
	assert_int_equal(mkdir(P("D"), 0755), 0);
	assert_int_equal(mkdir(P("outside"), 0755), 0);

	/* Device nodes, fifos, sockets: refused by name. */
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/dev", 020644, NULL, 0);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -ENOTSUP);
	assert_string_equal(err, P("D/top/dev: unsupported file type in the "
	    "archive (mode 020644)"));
	assert_int_equal(count_dir(P("D/top")), 0);
	assert_int_equal(rmdir(P("D/top")), 0);

	/* A directory with data; a link with none or an embedded NUL. */
	a = ar_new();
	ar_add(&a, "top", 040755, "abc", 3);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	a = ar_new();
	ar_add(&a, "top", 0120777, NULL, 0);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	a = ar_new();
	ar_add(&a, "top", 0120777, "a\0b", 3);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_int_equal(count_dir(P("D")), 0);

	/* Not an archive; only a trailer; nothing at all. */
	fd = tmp_fd();
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	a.fd = fd;
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_string_equal(err, P("D: malformed archive (bad cpio header)"));
	a = ar_new();
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_string_equal(err, P("D: the archive is empty"));
	a = ar_new();
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_string_equal(err, P("D: archive ended early"));

	/* The caller said which top name to expect. */
	a = ar_new();
	ar_add(&a, ".ssh", 040700, NULL, 0);
	ar_end(&a);
	assert_int_equal(lseek(a.fd, 0, SEEK_SET), 0);
	assert_int_equal(copy_extract_top(a.fd, P("D"), "out", 0, err,
	    sizeof(err)), -EPERM);
	assert_string_equal(err, P("D: the archive holds .ssh, not out"));
	assert_int_equal(lseek(a.fd, 0, SEEK_SET), 0);
	assert_int_equal(copy_extract_top(a.fd, P("D"), ".ssh", 0, err,
	    sizeof(err)), 0);
	close(a.fd);
	assert_int_equal(lstat(P("D/.ssh"), &st), 0);
	assert_int_equal(st.st_mode, 040700);
	assert_int_equal(st.st_mtime, 1234567890);
	assert_int_equal(rmdir(P("D/.ssh")), 0);

	/* Control characters do not reach the terminal. */
	a = ar_new();
	ar_add(&a, "\x1b[2J", 020644, NULL, 0);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D"), 0), -ENOTSUP);
	assert_null(strchr(err, '\x1b'));
	nothing_escaped();
}

/* A cut archive leaves neither the file nor its temporary. */
static void
test_truncated(void **state)
{
	char want[PATH_MAX + 64];
	uint8_t *data;
	struct ar a;

	(void)state;
	assert_int_equal(mkdir(P("D"), 0755), 0);
	rng_state = 3;
	data = random_bytes(100000);

	/* Cut inside the data. */
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/done", 0100644, "ok", 2);
	ar_add(&a, "top/f", 0100644, data, 100000);
	assert_int_equal(ftruncate(a.fd, (off_t)(cpio_header_len(4) +
	    cpio_header_len(9) + 4 + cpio_header_len(6) + 70000)), 0);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	snprintf(want, sizeof(want), "archive ended early (in %s)",
	    P("D/top/f"));
	assert_string_equal(err, want);
	assert_false(exists(P("D/top/f")));
	assert_int_equal(count_dir(P("D/top")), 1);	/* done */

	/* Over an existing file: the old one stays whole. */
	put_file(P("D/top/f"), "old", 3, 0644, 5);
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/f", 0100644, data, 100000);
	assert_int_equal(ftruncate(a.fd, (off_t)(cpio_header_len(4) +
	    cpio_header_len(6) + 10)), 0);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	free(data);
	data = slurp(P("D/top/f"), &(size_t){ 0 });
	assert_memory_equal(data, "old", 3);
	free(data);
	assert_int_equal(count_dir(P("D/top")), 2);

	/* Cut inside the padding, inside a header, and with no trailer. */
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/g", 0100644, "abcde", 5);
	assert_int_equal(ftruncate(a.fd, (off_t)(cpio_header_len(4) +
	    cpio_header_len(6) + 5 + 1)), 0);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	snprintf(want, sizeof(want), "archive ended early (in %s)",
	    P("D/top/g"));
	assert_string_equal(err, want);
	assert_false(exists(P("D/top/g")));
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/g", 0100644, "abcde", 5);
	assert_int_equal(ftruncate(a.fd, (off_t)cpio_header_len(4) + 50), 0);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_string_equal(err, P("D: archive ended early"));
	a = ar_new();
	ar_add(&a, "top", 040755, NULL, 0);
	ar_add(&a, "top/g", 0100644, "abcde", 5);
	assert_int_equal(ar_extract(&a, P("D"), 0), -EBADMSG);
	assert_string_equal(err, P("D: archive ended early"));
	assert_int_equal(count_dir(P("D/top")), 3);	/* done, f, g */
}

/* Set-id and sticky bits survive, unless the archive is untrusted. */
static void
test_untrusted_modes(void **state)
{
	struct stat st;
	struct ar a;
	int i;

	(void)state;
	for (i = 0; i < 2; i++) {
		assert_int_equal(mkdir(P("D%d", i), 0755), 0);
		a = ar_new();
		ar_add(&a, "top", 041777, NULL, 0);
		ar_add(&a, "top/suid", 0106755, "#!/bin/sh\n", 10);
		ar_add(&a, "top/ro", 0100400, "r", 1);
		ar_end(&a);
		assert_int_equal(ar_extract(&a, P("D%d", i), i ?
		    COPY_UNTRUSTED : 0), 0);
		assert_int_equal(lstat(P("D%d/top", i), &st), 0);
		assert_int_equal(st.st_mode, i ? 040777 : 041777);
		assert_int_equal(st.st_mtime, 1234567890);
		assert_int_equal(lstat(P("D%d/top/suid", i), &st), 0);
		assert_int_equal(st.st_mode, i ? 0100755 : 0106755);
		assert_int_equal(st.st_size, 10);
		assert_int_equal(st.st_mtime, 1234567890);
		assert_int_equal(lstat(P("D%d/top/ro", i), &st), 0);
		assert_int_equal(st.st_mode, 0100400);
	}
	/* Existing directories keep their mode when merged into. */
	assert_int_equal(chmod(P("D0/top"), 0750), 0);
	a = ar_new();
	ar_add(&a, "top", 040777, NULL, 0);
	ar_end(&a);
	assert_int_equal(ar_extract(&a, P("D0"), 0), 0);
	assert_int_equal(lstat(P("D0/top"), &st), 0);
	assert_int_equal(st.st_mode, 040750);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_archive_bytes, setup,
		    teardown),
		cmocka_unit_test(test_top_name),
		cmocka_unit_test_setup_teardown(test_cp_semantics, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_missing_source, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unprivileged, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_names, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_symlink, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_entries, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_modes, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
