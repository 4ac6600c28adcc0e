/*
 * osdep-linux.c — osdep.h on Linux.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/fs.h>	/* BLKGETSIZE64 */

#include "osdep.h"

#define FUSE_SUPER_MAGIC	0x65735546

static int
sock_flags(int flags)
{
	return ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0) |
	    ((flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0);
}

int
osdep_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept4(fd, addr, len, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int
osdep_pipe(int fds[2], int flags)
{
	return pipe2(fds, flags);
}

int
osdep_socket(int domain, int type, int flags)
{
	return socket(domain, type | sock_flags(flags), 0);
}

int
osdep_socketpair(int domain, int type, int flags, int sv[2])
{
	return socketpair(domain, type | sock_flags(flags), 0, sv);
}

int
osdep_msgpair(size_t msglen, int flags, int sv[2])
{
	(void)msglen;	/* each message is a record */
	return osdep_socketpair(AF_UNIX, SOCK_SEQPACKET, flags, sv);
}

/* The address of name in dfd, through /proc/self/fd. */
static int
unix_at(struct sockaddr_un *sun, int dfd, const char *name)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (snprintf(sun->sun_path, sizeof(sun->sun_path), "/proc/self/fd/%d/%s",
	    dfd, name) >= (int)sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
osdep_bind_unix_at(int dfd, int s, const char *name)
{
	struct sockaddr_un sun;

	if (unix_at(&sun, dfd, name) < 0)
		return -1;
	return bind(s, (struct sockaddr *)&sun, sizeof(sun));
}

int
osdep_connect_unix_at(int dfd, int s, const char *name)
{
	struct sockaddr_un sun;

	if (unix_at(&sun, dfd, name) < 0)
		return -1;
	return connect(s, (struct sockaddr *)&sun, sizeof(sun));
}

int
osdep_socket_as(uid_t uid, int domain, int type, int flags)
{
	int fd, e, prev;

	/* The socket takes its owner from the fs uid. */
	prev = setfsuid(uid);
	fd = osdep_socket(domain, type, flags);
	e = errno;
	setfsuid((uid_t)prev);
	errno = e;
	return fd;
}

ssize_t
osdep_recvmsg(int fd, struct msghdr *mh, int flags)
{
	return recvmsg(fd, mh, flags | MSG_CMSG_CLOEXEC);
}

void
osdep_closefrom(int lowfd)
{
	long max;

	/* The syscall: glibc has had a wrapper only since 2.34. */
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
		return;
	/* Before Linux 5.9: one by one, as far as is reasonable. */
	if ((max = sysconf(_SC_OPEN_MAX)) < 0 || max > 65536)
		max = 65536;
	for (int fd = lowfd; fd < max; fd++)
		close(fd);
}

int
osdep_peer(int fd, uid_t *uid, gid_t *gid, pid_t *pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -1;
	if (uid != NULL)
		*uid = cr.uid;
	if (gid != NULL)
		*gid = cr.gid;
	if (pid != NULL)
		*pid = cr.pid;
	return 0;
}

int
osdep_peergroups(int fd, gid_t *groups, size_t *n)
{
	socklen_t len = (socklen_t)(*n * sizeof(gid_t));
	gid_t *g;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		*n = len / sizeof(gid_t);
		return 0;
	}
	if (errno != ERANGE)
		return -1;
	/* More than fit: len is now what all of them take. */
	if ((g = malloc(len)) == NULL)
		return -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
		if (len / sizeof(gid_t) < *n)
			*n = len / sizeof(gid_t);
		memcpy(groups, g, *n * sizeof(gid_t));
	} else
		*n = 0;
	free(g);
	return 0;
}

int
osdep_getgrouplist(const char *user, gid_t gid, gid_t *groups, int *n)
{
	return getgrouplist(user, gid, groups, n);
}

int
osdep_setresgid(gid_t gid)
{
	return setresgid(gid, gid, gid);
}

int
osdep_setresuid(uid_t uid)
{
	return setresuid(uid, uid, uid);
}

int
osdep_parent_death_signal(int sig)
{
	return prctl(PR_SET_PDEATHSIG, sig);
}

int
osdep_no_inspect(void)
{
	return prctl(PR_SET_DUMPABLE, 0);
}

int
osdep_fileid(int dfd, const char *name, struct osdep_fileid *id)
{
	struct statx sx;
	int flags = AT_SYMLINK_NOFOLLOW | (name[0] == '\0' ? AT_EMPTY_PATH : 0);

	if (statx(dfd, name, flags, STATX_TYPE | STATX_INO | STATX_BTIME,
	    &sx) < 0)
		return -1;
	id->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	id->ino = sx.stx_ino;
	id->btime = (sx.stx_mask & STATX_BTIME) ?
	    (uint64_t)sx.stx_btime.tv_sec * 1000000000u +
	    sx.stx_btime.tv_nsec : 0;
	id->type = sx.stx_mode & S_IFMT;
	return 0;
}

int
osdep_open_dirref(const char *path, int flags)
{
	return open(path, O_PATH | O_DIRECTORY | flags);
}

int
osdep_chmod_dirat(int dfd, const char *name, mode_t mode)
{
	char proc[64];
	int fd, r, e;

	/* The kernel's fchmodat always follows a link, and fchmod refuses
	 * O_PATH descriptors: the /proc link names exactly the inode we
	 * opened, not a path someone could swap. */
	fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	r = chmod(proc, mode);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

int
osdep_rename_noreplace(int fromfd, const char *from, int tofd,
    const char *to)
{
	return renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE);
}

int
osdep_tmpfile(int dfd, int flags)
{
	return openat(dfd, ".", O_TMPFILE | O_RDWR | flags, 0600);
}

int
osdep_memfd(const char *name, int sealable)
{
	return memfd_create(name, MFD_CLOEXEC |
	    (sealable ? MFD_ALLOW_SEALING : 0));
}

int
osdep_memfd_seal(int fd)
{
	return fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK |
	    F_SEAL_GROW | F_SEAL_WRITE);
}

struct timespec
osdep_mtime(const struct stat *st)
{
	return st->st_mtim;
}

struct timespec
osdep_ctime(const struct stat *st)
{
	return st->st_ctim;
}

int
osdep_write_locked(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

int
osdep_fdatasync(int fd)
{
	return fdatasync(fd);
}

ssize_t
osdep_copy_range(int in, off_t *inoff, int out, off_t *outoff, size_t len)
{
	return copy_file_range(in, inoff, out, outoff, len, 0);
}

int
osdep_blkdev_size(int fd, uint64_t *size)
{
	return ioctl(fd, BLKGETSIZE64, size);
}

int
osdep_is_fuse(int fd)
{
	struct statfs sfs;

	return fstatfs(fd, &sfs) == 0 && sfs.f_type == FUSE_SUPER_MAGIC;
}

void
osdep_wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}

int
osdep_exe_path(char *buf, size_t len)
{
	ssize_t n;

	if ((n = readlink("/proc/self/exe", buf, len)) < 0)
		return -1;
	if ((size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	buf[n] = '\0';
	return 0;
}

int
osdep_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = getrandom(p, len, 0)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

long
osdep_rss(void)
{
	long size, pages, page = sysconf(_SC_PAGESIZE);
	FILE *f;

	if ((f = fopen("/proc/self/statm", "re")) == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &pages) != 2) {
		fclose(f);
		errno = EIO;
		return -1;
	}
	fclose(f);
	return pages * page;
}

int
osdep_nfds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (dir == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1;		/* not the one readdir itself holds */
}

int
osdep_unpriv_port(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
	int v;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}
