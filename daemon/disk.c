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
