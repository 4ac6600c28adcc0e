/*
 * disk.c — making and opening a VM's writable disk (disk.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "disk.h"
#include "osdep.h"
#include "proto.h"
#include "util.h"

/* mkfs.ext4 on fd, as its /dev/fd/3. */
static int
disk_mkfs(int fd, uint64_t size_mib, struct cap_err *err)
{
	char size[32];
	char *argv[] = { DISK_MKFS, "-q", "-F", "-t", "ext4", "-L",
	    "capsule-disk", "-E", "lazy_itable_init=1,lazy_journal_init=1,"
	    "root_owner=0:0", "/dev/fd/3", size, NULL };

	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mib);
	return util_run(argv, fd, NULL, 0, err);
}

int
disk_make(int dir_fd, const char *name, uint64_t size_mib,
    struct cap_err *err)
{
	struct statvfs sv;
	int fd, r;

	if (fstatvfs(dir_fd, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < DISK_FREE_MIN)
		return cap_err_set(err, ENOSPC, E_LIMIT, "the file system that "
		    "holds capsule's state has %llu MiB free; a new VM disk "
		    "needs at least %llu", (unsigned long long)((uint64_t)
		    sv.f_bavail * sv.f_frsize >> 20),
		    (unsigned long long)(DISK_FREE_MIN >> 20));
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

/* Copies size bytes of in to out (both at offset 0), leaving holes where
 * in has them. */
int
disk_copy(int in, int out, off_t size)
{
	char buf[65536];
	off_t data = 0, hole, o;
	ssize_t n;

	if (ftruncate(out, size) < 0)
		return -errno;
	while (data < size) {
		if ((data = lseek(in, data, SEEK_DATA)) < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((hole = lseek(in, data, SEEK_HOLE)) < 0)
			return -errno;
		while (data < hole) {
			o = data;
			n = osdep_copy_range(in, &data, out, &o,
			    (size_t)(hole - data));
			if (n < 0 && (errno == EXDEV || errno == EINVAL ||
			    errno == ENOSYS || errno == EOPNOTSUPP)) {
				/* The plain way. */
				n = pread(in, buf, (size_t)(hole - data) <
				    sizeof(buf) ? (size_t)(hole - data) :
				    sizeof(buf), data);
				if (n > 0 && pwrite(out, buf, (size_t)n, data) !=
				    n)
					return errno ? -errno : -EIO;
				if (n > 0)
					data += n;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				return -EIO;	/* it shrank under us */
		}
	}
	return 0;
}
