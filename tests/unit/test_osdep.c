/*
 * test_osdep.c — common/osdep-*.c on the system it was built for: each
 * call does what osdep.h promises (flags set, peers named, files told
 * apart, links not followed). Written with POSIX calls only, so the same
 * test checks osdep-darwin.c on macOS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "osdep.h"
#include "rmtree.h"
#include "testfs.h"

static int
setup(void **state)
{
	(void)state;
	strcpy(tfs_base, "/tmp/capsule-test-osdep.XXXXXX");
	assert_non_null(mkdtemp(tfs_base));
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return rmtree(tfs_base);
}

static void
assert_flags(int fd, int cloexec, int nonblock)
{
	assert_true(fd >= 0);
	assert_int_equal(!!(fcntl(fd, F_GETFD) & FD_CLOEXEC), cloexec);
	assert_int_equal(!!(fcntl(fd, F_GETFL) & O_NONBLOCK), nonblock);
}

static void
test_pipe_and_socket_flags(void **state)
{
	int p[2], sv[2], fd;

	(void)state;
	assert_int_equal(osdep_pipe(p, O_CLOEXEC), 0);
	assert_flags(p[0], 1, 0);
	assert_flags(p[1], 1, 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(osdep_pipe(p, O_CLOEXEC | O_NONBLOCK), 0);
	assert_flags(p[0], 1, 1);
	assert_flags(p[1], 1, 1);
	close(p[0]);
	close(p[1]);
	assert_int_equal(osdep_socketpair(AF_UNIX, SOCK_STREAM, O_CLOEXEC,
	    sv), 0);
	assert_flags(sv[0], 1, 0);
	assert_flags(sv[1], 1, 0);
	close(sv[0]);
	close(sv[1]);
	fd = osdep_socket(AF_INET, SOCK_STREAM, O_NONBLOCK | O_CLOEXEC);
	assert_flags(fd, 1, 1);
	close(fd);
	fd = osdep_socket(AF_UNIX, SOCK_STREAM, 0);
	assert_flags(fd, 0, 0);
	close(fd);
	/* Whoever we are, the socket is made and we stay who we were. */
	fd = osdep_socket_as(65534, AF_INET, SOCK_STREAM, O_CLOEXEC);
	assert_flags(fd, 1, 0);
	close(fd);
	assert_int_equal(geteuid(), getuid());
}

static void
test_accept_and_peer(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	gid_t groups[64], mine[64];
	size_t n = 64;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int l, c, a, nmine;

	(void)state;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", P("sock"));
	l = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(l, 1), 0);
	c = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC);
	assert_int_equal(connect(c, (struct sockaddr *)&sun, sizeof(sun)), 0);
	a = osdep_accept(l, NULL, NULL);
	assert_flags(a, 1, 1);

	assert_int_equal(osdep_peer(a, &uid, &gid, &pid), 0);
	assert_int_equal(uid, geteuid());
	assert_int_equal(gid, getegid());
	assert_int_equal(pid, getpid());
	assert_int_equal(osdep_peer(a, &uid, NULL, NULL), 0);

	/* Our groups, as the kernel gives them: each one is ours. */
	assert_int_equal(osdep_peergroups(a, groups, &n), 0);
	nmine = getgroups(64, mine);
	assert_true(nmine >= 0);
	for (size_t i = 0; i < n; i++) {
		int found = groups[i] == getegid();

		for (int k = 0; k < nmine; k++)
			found |= groups[i] == mine[k];
		assert_true(found);
	}
	/* Fewer kept than there are: the first ones, no error. */
	if (n > 1) {
		gid_t one;
		size_t n1 = 1;

		assert_int_equal(osdep_peergroups(a, &one, &n1), 0);
		assert_int_equal(n1, 1);
		assert_int_equal(one, groups[0]);
	}
	close(a);
	close(c);
	close(l);
}

static void
test_recvmsg_cloexec(void **state)
{
	union {
		char		buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr	align;
	} u;
	char byte = 'x';
	struct iovec iov = { &byte, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;
	int sv[2], p[2], got;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(p), 0);	/* not close-on-exec */
	memset(&u, 0, sizeof(u));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &p[0], sizeof(int));
	assert_int_equal(sendmsg(sv[0], &mh, 0), 1);

	memset(&u, 0, sizeof(u));
	mh.msg_controllen = sizeof(u.buf);
	assert_int_equal(osdep_recvmsg(sv[1], &mh, 0), 1);
	c = CMSG_FIRSTHDR(&mh);
	assert_non_null(c);
	assert_int_equal(c->cmsg_type, SCM_RIGHTS);
	memcpy(&got, CMSG_DATA(c), sizeof(int));
	assert_flags(got, 1, 0);
	close(got);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

static void
test_closefrom(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	if ((pid = fork()) == 0) {
		if (dup2(0, 40) < 0 || dup2(0, 300) < 0 || dup2(0, 20) < 0)
			_exit(2);
		osdep_closefrom(30);
		if (fcntl(40, F_GETFD) != -1 || errno != EBADF ||
		    fcntl(300, F_GETFD) != -1 || fcntl(20, F_GETFD) < 0)
			_exit(1);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void
test_fileid(void **state)
{
	struct osdep_fileid a, b, l;
	int dfd, fd;

	(void)state;
	tfs_put("f", "x", 0644);
	assert_int_equal(symlink("f", P("l")), 0);
	dfd = osdep_open_dirref(tfs_base, O_CLOEXEC);
	assert_flags(dfd, 1, 0);
	assert_int_equal(osdep_fileid(dfd, "f", &a), 0);
	assert_int_equal(a.type, S_IFREG);
	fd = openat(dfd, "f", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(osdep_fileid(fd, "", &b), 0);
	assert_true(a.dev == b.dev && a.ino == b.ino && a.btime == b.btime);
	close(fd);
	/* The link, not what it names. */
	assert_int_equal(osdep_fileid(dfd, "l", &l), 0);
	assert_int_equal(l.type, S_IFLNK);
	assert_true(l.ino != a.ino);
	/* The dirref names the directory itself. */
	assert_int_equal(osdep_fileid(dfd, "", &b), 0);
	assert_int_equal(b.type, S_IFDIR);
	assert_int_equal(osdep_fileid(dfd, "missing", &b), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(osdep_is_fuse(dfd), 0);
	close(dfd);
}

static void
test_chmod_dirat(void **state)
{
	struct stat st;
	int dfd;

	(void)state;
	dfd = open(tfs_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(mkdir(P("locked"), 0700), 0);
	assert_int_equal(chmod(P("locked"), 0), 0);
	assert_int_equal(osdep_chmod_dirat(dfd, "locked", 0700), 0);
	assert_int_equal(stat(P("locked"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	/* A link to a directory: the directory keeps its mode. */
	assert_int_equal(mkdir(P("target"), 0755), 0);
	assert_int_equal(chmod(P("target"), 0755), 0);
	assert_int_equal(symlink("target", P("link")), 0);
	osdep_chmod_dirat(dfd, "link", 0700);
	assert_int_equal(stat(P("target"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	close(dfd);
}

static void
test_rename_sync_copy(void **state)
{
	char buf[16] = "";
	off_t in_off = 0, out_off = 0;
	ssize_t n;
	int dfd, in, out;

	(void)state;
	dfd = open(tfs_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	tfs_put("a", "hello", 0644);
	tfs_put("b", "there", 0644);
	assert_int_equal(osdep_rename_noreplace(dfd, "a", dfd, "b"), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(osdep_rename_noreplace(dfd, "a", dfd, "c"), 0);
	assert_int_equal(access(P("a"), F_OK), -1);

	in = openat(dfd, "c", O_RDONLY | O_CLOEXEC);
	out = openat(dfd, "d", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(in >= 0 && out >= 0);
	n = osdep_copy_range(in, &in_off, out, &out_off, 5);
	if (n < 0) {
		/* Not here: the caller copies by hand. */
		assert_int_equal(errno, ENOSYS);
	} else {
		assert_int_equal(n, 5);
		assert_int_equal(in_off, 5);
		assert_int_equal(pread(out, buf, sizeof(buf), 0), 5);
		assert_string_equal(buf, "hello");
	}
	assert_int_equal(osdep_fdatasync(out), 0);
	close(in);
	close(out);
	close(dfd);
}

static void
test_ids(void **state)
{
	gid_t groups[64];
	pid_t pid;
	int n = 64, st;

	(void)state;
	/* (The count on Linux, 0 on macOS.) */
	assert_true(osdep_getgrouplist("root", 0, groups, &n) >= 0);
	assert_true(n >= 1);
	if (geteuid() != 0) {
		skip();
		return;
	}
	if ((pid = fork()) == 0) {
		if (osdep_setresgid(65534) < 0 || osdep_setresuid(65534) < 0)
			_exit(2);
		if (getuid() != 65534 || geteuid() != 65534 ||
		    getgid() != 65534 || getegid() != 65534)
			_exit(3);
		/* Nothing of root left to take back. */
		_exit(osdep_setresuid(0) == 0 ? 4 : 0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void
test_process(void **state)
{
	char path[4096], a[32], b[32];
	const char *base;
	int n, fd;

	(void)state;
	assert_int_equal(osdep_exe_path(path, sizeof(path)), 0);
	assert_int_equal(path[0], '/');
	base = strrchr(path, '/') + 1;
	assert_string_equal(base, "test_osdep");
	assert_int_equal(osdep_exe_path(path, 4), -1);

	assert_int_equal(osdep_random(a, sizeof(a)), 0);
	assert_int_equal(osdep_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));

	assert_true(osdep_rss() > 0);
	n = osdep_nfds();
	assert_true(n >= 3);
	fd = dup(0);
	assert_int_equal(osdep_nfds(), n + 1);
	close(fd);
	n = osdep_unpriv_port();
	assert_true(n >= 0 && n <= 65536);
}

/* Whole messages with a descriptor each, one read apiece, and EOF once
 * the sender has gone: what caller.c's helper relies on. */
static void
test_msgpair(void **state)
{
	struct { int n; char pad[2000]; } m;
	union {
		char		buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr	align;
	} u;
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh;
	struct cmsghdr *c;
	int sv[2], fd;

	(void)state;
	assert_int_equal(osdep_msgpair(sizeof(m), O_CLOEXEC, sv), 0);
	assert_flags(sv[0], 1, 0);
	assert_flags(sv[1], 1, 0);
	for (int i = 0; i < 2; i++) {
		memset(&m, 0, sizeof(m));
		m.n = i;
		memset(&mh, 0, sizeof(mh));
		memset(&u, 0, sizeof(u));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		fd = 0;
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		assert_int_equal(sendmsg(sv[1], &mh, 0), (ssize_t)sizeof(m));
	}
	close(sv[1]);
	for (int i = 0; i < 2; i++) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		assert_int_equal(osdep_recvmsg(sv[0], &mh, MSG_DONTWAIT),
		    (ssize_t)sizeof(m));
		assert_int_equal(m.n, i);
		c = CMSG_FIRSTHDR(&mh);
		assert_non_null(c);
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
		assert_flags(fd, 1, 0);
		close(fd);
	}
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	assert_int_equal(osdep_recvmsg(sv[0], &mh, MSG_DONTWAIT), 0);
	close(sv[0]);
}

/* The directory held, not the path it had. */
static void
test_unix_at(void **state)
{
	int dfd, l, s, a;

	(void)state;
	assert_int_equal(mkdir(P("d"), 0700), 0);
	dfd = open(P("d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(rename(P("d"), P("e")), 0);
	l = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC);
	assert_int_equal(osdep_bind_unix_at(dfd, l, "s"), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(access(P("e/s"), F_OK), 0);
	s = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC);
	assert_int_equal(osdep_connect_unix_at(dfd, s, "s"), 0);
	a = osdep_accept(l, NULL, NULL);
	assert_true(a >= 0);
	close(a);
	close(s);
	s = osdep_socket(AF_UNIX, SOCK_STREAM, O_CLOEXEC);
	assert_int_equal(osdep_connect_unix_at(dfd, s, "none"), -1);
	assert_int_equal(errno, ENOENT);
	close(s);
	close(l);
	close(dfd);
}

static void
test_tmpfile_and_times(void **state)
{
	struct timespec t[2] = { { 1000000000, 5 }, { 1200000000, 7 } };
	struct timespec m;
	struct stat st;
	int dfd, fd, n = 0;
	DIR *d;

	(void)state;
	dfd = open(tfs_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	fd = osdep_tmpfile(dfd, O_CLOEXEC);
	assert_flags(fd, 1, 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Nothing of it to be seen in the directory. */
	assert_non_null(d = opendir(tfs_base));
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	assert_int_equal(n, 2);
	assert_int_equal(futimens(fd, t), 0);
	assert_int_equal(fstat(fd, &st), 0);
	m = osdep_mtime(&st);
	assert_int_equal(m.tv_sec, t[1].tv_sec);
	assert_int_equal(m.tv_nsec, t[1].tv_nsec);
	assert_true(osdep_ctime(&st).tv_sec > 0);
	close(fd);
	close(dfd);
}

/* A memfd, sealed for good; or none at all (ENOTSUP), as on macOS. */
static void
test_memfd(void **state)
{
	int fd;

	(void)state;
	if ((fd = osdep_memfd("test", 1)) < 0) {
		assert_int_equal(errno, ENOTSUP);
		assert_int_equal(osdep_memfd_seal(0), -1);
		return;
	}
	assert_flags(fd, 1, 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	assert_int_equal(osdep_memfd_seal(fd), 0);
	assert_int_equal(write(fd, "d", 1), -1);
	assert_int_equal(ftruncate(fd, 0), -1);
	close(fd);
}

/* Another process's lock is seen; none is not. */
static void
test_write_locked(void **state)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, p[2], st;
	pid_t pid;
	char c;

	(void)state;
	tfs_put("disk", "x", 0600);
	fd = open(P("disk"), O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(osdep_write_locked(fd), 0);
	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		int wfd = open(P("disk"), O_RDWR);

		if (wfd < 0 || fcntl(wfd, F_SETLK, &fl) < 0)
			_exit(1);
		close(p[0]);
		if (write(p[1], "k", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	assert_true(pid > 0);
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(osdep_write_locked(fd), 1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(osdep_write_locked(fd), 0);
	close(p[0]);
	close(fd);
}

static void
test_child_calls(void **state)
{
	char buf[64];
	pid_t pid;
	int st;

	(void)state;
	memset(buf, 0xa5, sizeof(buf));
	osdep_wipe(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	osdep_wipe(buf, 0);
	/* In a child: each does its work, or says the system has none. */
	if ((pid = fork()) == 0) {
		if (osdep_parent_death_signal(SIGKILL) < 0 && errno != ENOTSUP)
			_exit(2);
		if (osdep_no_inspect() < 0)
			_exit(3);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_and_socket_flags),
		cmocka_unit_test_setup_teardown(test_accept_and_peer, setup,
		    teardown),
		cmocka_unit_test(test_recvmsg_cloexec),
		cmocka_unit_test(test_closefrom),
		cmocka_unit_test_setup_teardown(test_fileid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chmod_dirat, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rename_sync_copy, setup,
		    teardown),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_process),
		cmocka_unit_test(test_msgpair),
		cmocka_unit_test_setup_teardown(test_unix_at, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmpfile_and_times, setup,
		    teardown),
		cmocka_unit_test(test_memfd),
		cmocka_unit_test_setup_teardown(test_write_locked, setup,
		    teardown),
		cmocka_unit_test(test_child_calls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
