/*
 * disk.c — making and opening a VM's writable disk (disk.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk.h"
#include "proto.h"
#include "util.h"

/* mkfs.ext4 on fd (as its /dev/fd/3); its first words for the error. */
static int
disk_mkfs(int fd, uint64_t size_mib, struct cap_err *err)
{
	char size[32], out[512];
	char *argv[] = { DISK_MKFS, "-q", "-F", "-t", "ext4", "-L",
	    "capsule-disk", "-E", "lazy_itable_init=1,lazy_journal_init=1,"
	    "root_owner=0:0", "/dev/fd/3", size, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	size_t got = 0;
	ssize_t n;
	int pfd[2], st;
	pid_t pid;

	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mib);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "pipe: %s",
		    strerror(errno));
	if ((pid = fork()) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null < 0 || dup2(null, 0) < 0 || dup2(pfd[1], 1) < 0 ||
		    dup2(pfd[1], 2) < 0 || dup2(fd, 3) < 0)
			_exit(126);
		if (close_range(4, ~0U, 0) < 0)
			for (int i = 4; i < 1024; i++)
				close(i);
		execve(argv[0], argv, envp);
		dprintf(2, "cannot execute %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	while ((n = read(pfd[0], out + got, sizeof(out) - 1 - got)) > 0 ||
	    (n < 0 && errno == EINTR))
		if (n > 0 && (got += (size_t)n) == sizeof(out) - 1)
			break;
	close(pfd[0]);
	out[got] = '\0';
	while (got > 0 && out[got - 1] == '\n')
		out[--got] = '\0';
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cap_err_set(err, EIO, E_INTERNAL, "%s failed%s%.300s",
		    DISK_MKFS, got ? ": " : "", out);
	return 0;
}

int
disk_make(int dir_fd, const char *name, uint64_t size_mib,
    struct cap_err *err)
{
	int fd, r;

	fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return cap_err_set(err, errno, errno == EEXIST ? E_CONFLICT :
		    E_INTERNAL, "cannot create the disk %s: %s", name,
		    strerror(errno));
	if (ftruncate(fd, (off_t)(size_mib << 20)) < 0)
		r = cap_err_set(err, errno, errno == EFBIG ? E_LIMIT :
		    E_INTERNAL, "cannot size the disk %s to %llu MiB: %s", name,
		    (unsigned long long)size_mib, strerror(errno));
	else if ((r = disk_mkfs(fd, size_mib, err)) == 0)
		return fd;
	close(fd);
	unlinkat(dir_fd, name, 0);
	return r;
}

int
disk_open(int dir_fd, const char *name, struct cap_err *err)
{
	struct stat st;
	int fd;

	fd = openat(dir_fd, name, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open the "
		    "disk %s: %s", name, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return cap_err_set(err, EINVAL, E_INTERNAL, "the disk %s is "
		    "not a plain file", name);
	}
	return fd;
}

uint64_t
disk_used(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}
