/*
 * osdep-darwin.c — osdep.h on macOS.
 *
 * Darwin has no accept4, pipe2 or SOCK_CLOEXEC: the descriptor is made
 * first and its flags set after. capsuled is single-threaded, so no other
 * thread can fork and exec in between.
 */
#define __STDC_WANT_LIB_EXT1__	1	/* memset_s, before any header */
#include <sys/types.h>
#include <sys/param.h>
#include <sys/disk.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ucred.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <libproc.h>
#include <limits.h>
#include <stdio.h>	/* renameatx_np */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mach/mach.h>

#include "osdep.h"

/* Sets flags (O_CLOEXEC, O_NONBLOCK) on fd; closes it if that fails. */
static int
set_flags(int fd, int flags)
{
	int e, fl;

	if (fd < 0)
		return -1;
	if (((flags & O_CLOEXEC) && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) ||
	    ((flags & O_NONBLOCK) && ((fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Both ends, or neither. */
static int
set_flags2(int fds[2], int flags)
{
	int e;

	if (set_flags(fds[0], flags) < 0) {
		e = errno;
		close(fds[1]);
		errno = e;
		return -1;
	}
	if (set_flags(fds[1], flags) < 0) {
		e = errno;
		close(fds[0]);
		errno = e;
		return -1;
	}
	return 0;
}

int
osdep_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return set_flags(accept(fd, addr, len), O_CLOEXEC | O_NONBLOCK);
}

int
osdep_pipe(int fds[2], int flags)
{
	if (pipe(fds) < 0)
		return -1;
	return set_flags2(fds, flags);
}

int
osdep_socket(int domain, int type, int flags)
{
	return set_flags(socket(domain, type, 0), flags);
}

int
osdep_socketpair(int domain, int type, int flags, int sv[2])
{
	if (socketpair(domain, type, 0, sv) < 0)
		return -1;
	return set_flags2(sv, flags);
}

int
osdep_msgpair(size_t msglen, int flags, int sv[2])
{
	int buf, low, e;

	/* Stream, as XNU has no SOCK_SEQPACKET for AF_UNIX. A message sent
	 * by one sendmsg() is appended whole while there is room for it, so
	 * room is made for many; and the reader is told of data only once a
	 * whole message is there (SO_RCVLOWAT, which kevent and poll heed),
	 * or at EOF. */
	if (msglen == 0 || msglen > INT_MAX / OSDEP_MSG_QUEUE) {
		errno = EINVAL;
		return -1;
	}
	buf = (int)msglen * OSDEP_MSG_QUEUE;
	low = (int)msglen;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &buf,
		    sizeof(buf)) < 0 || setsockopt(sv[i], SOL_SOCKET,
		    SO_RCVBUF, &buf, sizeof(buf)) < 0 || setsockopt(sv[i],
		    SOL_SOCKET, SO_RCVLOWAT, &low, sizeof(low)) < 0) {
			e = errno;
			close(sv[0]);
			close(sv[1]);
			errno = e;
			return -1;
		}
	}
	return set_flags2(sv, flags);
}

/* bind() or connect() s to name, relative to dfd: there is no bindat()
 * in the SDK, so the working directory is dfd for the call. */
static int
unix_at(int dfd, int s, const char *name, int do_bind)
{
	struct sockaddr_un sun;
	int cwd, e, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, name, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	if (fchdir(dfd) < 0) {
		e = errno;
		close(cwd);
		errno = e;
		return -1;
	}
	r = do_bind ? bind(s, (struct sockaddr *)&sun, sizeof(sun)) :
	    connect(s, (struct sockaddr *)&sun, sizeof(sun));
	e = errno;
	if (fchdir(cwd) < 0)
		abort();	/* somewhere else from now on: not safe to go on */
	close(cwd);
	errno = e;
	return r;
}

int
osdep_bind_unix_at(int dfd, int s, const char *name)
{
	return unix_at(dfd, s, name, 1);
}

int
osdep_connect_unix_at(int dfd, int s, const char *name)
{
	return unix_at(dfd, s, name, 0);
}

int
osdep_socket_as(uid_t uid, int domain, int type, int flags)
{
	uid_t euid = geteuid();
	int fd, e;

	/* The socket takes its credential from the process: the effective
	 * uid, briefly (single-threaded; the saved uid stays root). */
	if (euid != 0 || uid == euid || seteuid(uid) < 0)
		return osdep_socket(domain, type, flags);
	fd = osdep_socket(domain, type, flags);
	e = errno;
	if (seteuid(euid) < 0)
		abort();	/* stuck as someone else: not safe to go on */
	errno = e;
	return fd;
}

ssize_t
osdep_recvmsg(int fd, struct msghdr *mh, int flags)
{
	struct cmsghdr *c;
	ssize_t n;
	int rfd;

	/* No MSG_CMSG_CLOEXEC: each fd is marked as it arrives (no other
	 * thread forks in between). */
	if ((n = recvmsg(fd, mh, flags)) < 0)
		return -1;
	for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) /
		    sizeof(int); k++) {
			memcpy(&rfd, CMSG_DATA(c) + k * sizeof(int),
			    sizeof(int));
			fcntl(rfd, F_SETFD, FD_CLOEXEC);
		}
	}
	return n;
}

void
osdep_closefrom(int lowfd)
{
	struct proc_fdinfo fds[256];
	int n, closed, max;

	/* What is open, a buffer at a time (no malloc: we may be between
	 * fork and exec); again while a full buffer let us close some. */
	do {
		n = proc_pidinfo(getpid(), PROC_PIDLISTFDS, 0, fds,
		    (int)sizeof(fds));
		if (n <= 0)
			break;
		closed = 0;
		for (int i = 0; i < n / (int)PROC_PIDLISTFD_SIZE; i++) {
			if (fds[i].proc_fd >= lowfd) {
				close(fds[i].proc_fd);
				closed++;
			}
		}
	} while (closed > 0 && n == (int)sizeof(fds));
	if (n > 0)
		return;
	if ((max = getdtablesize()) < 0 || max > 65536)
		max = 65536;
	for (int fd = lowfd; fd < max; fd++)
		close(fd);
}

int
osdep_peer(int fd, uid_t *uid, gid_t *gid, pid_t *pid)
{
	socklen_t len = sizeof(*pid);
	uid_t u;
	gid_t g;

	if (getpeereid(fd, &u, &g) < 0)
		return -1;
	if (pid != NULL &&
	    getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, pid, &len) < 0)
		return -1;
	if (uid != NULL)
		*uid = u;
	if (gid != NULL)
		*gid = g;
	return 0;
}

int
osdep_peergroups(int fd, gid_t *groups, size_t *n)
{
	struct xucred xu;
	socklen_t len = sizeof(xu);

	if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERCRED, &xu, &len) < 0)
		return -1;
	if (xu.cr_version != XUCRED_VERSION) {
		errno = EINVAL;
		return -1;
	}
	/* At most NGROUPS (16), the effective gid first. */
	if (xu.cr_ngroups < 0 || (size_t)xu.cr_ngroups >
	    sizeof(xu.cr_groups) / sizeof(xu.cr_groups[0])) {
		errno = EINVAL;
		return -1;
	}
	if ((size_t)xu.cr_ngroups < *n)
		*n = (size_t)xu.cr_ngroups;
	memcpy(groups, xu.cr_groups, *n * sizeof(gid_t));
	return 0;
}

int
osdep_getgrouplist(const char *user, gid_t gid, gid_t *groups, int *n)
{
	/* The same 32-bit ids, declared as int here. */
	return getgrouplist(user, (int)gid, (int *)groups, n);
}

/* As root, setgid and setuid set all three ids: there is no setres*id. */
int
osdep_setresgid(gid_t gid)
{
	return setgid(gid);
}

int
osdep_setresuid(uid_t uid)
{
	return setuid(uid);
}

int
osdep_parent_death_signal(int sig)
{
	/* XNU has no parent-death signal. Nothing short of a thread
	 * watching the parent (NOTE_EXIT) stands in for it, and these
	 * children are single-threaded by design: say so, and let the
	 * caller bound the child otherwise. */
	(void)sig;
	errno = ENOTSUP;
	return -1;
}

int
osdep_no_inspect(void)
{
	struct rlimit rl = { 0, 0 };
	int r = 0;

	/* The nearest to PR_SET_DUMPABLE 0: no debugger may attach from now
	 * on (PT_DENY_ATTACH), and no core file. task_for_pid() is not
	 * covered: macOS grants it only to root or an entitled debugger
	 * the user has approved. */
	if (ptrace(PT_DENY_ATTACH, 0, 0, 0) < 0)
		r = -1;
	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		r = -1;
	return r;
}

int
osdep_fileid(int dfd, const char *name, struct osdep_fileid *id)
{
	struct stat st;

	if ((name[0] == '\0' ? fstat(dfd, &st) :
	    fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) < 0)
		return -1;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->btime = st.st_birthtimespec.tv_sec > 0 ?
	    (uint64_t)st.st_birthtimespec.tv_sec * 1000000000u +
	    (uint64_t)st.st_birthtimespec.tv_nsec : 0;
	id->type = st.st_mode & S_IFMT;
	return 0;
}

int
osdep_open_dirref(const char *path, int flags)
{
#ifdef O_SEARCH
	/* O_EXEC | O_DIRECTORY: search permission is enough. */
	return open(path, O_SEARCH | flags);
#else
	/* Older SDKs: read permission is needed as well. */
	return open(path, O_RDONLY | O_DIRECTORY | flags);
#endif
}

int
osdep_chmod_dirat(int dfd, const char *name, mode_t mode)
{
	/* Darwin's fchmodat acts on a link itself, as lchmod does, so a
	 * link swapped in is not followed. (It does not check that name is
	 * still a directory; the caller opens it O_DIRECTORY next.) */
	return fchmodat(dfd, name, mode, AT_SYMLINK_NOFOLLOW);
}

int
osdep_rename_noreplace(int fromfd, const char *from, int tofd,
    const char *to)
{
	return renameatx_np(fromfd, from, tofd, to, RENAME_EXCL);
}

int
osdep_tmpfile(int dfd, int flags)
{
	unsigned char rnd[8];
	char name[32];
	int e, fd;

	/* No O_TMPFILE: a new file under a random name, unlinked at once.
	 * For that moment it has a name in dfd, which the caller owns. */
	for (int tries = 0; tries < 16; tries++) {
		arc4random_buf(rnd, sizeof(rnd));
		snprintf(name, sizeof(name), ".tmp-%02x%02x%02x%02x%02x%02x"
		    "%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5],
		    rnd[6], rnd[7]);
		fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
		    (flags & O_CLOEXEC), 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -1;
		if (unlinkat(dfd, name, 0) < 0) {
			e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		return fd;
	}
	errno = EEXIST;
	return -1;
}

int
osdep_memfd(const char *name, int sealable)
{
	/* No memfd, and no sealing to make one safe to share. */
	(void)name;
	(void)sealable;
	errno = ENOTSUP;
	return -1;
}

int
osdep_memfd_seal(int fd)
{
	(void)fd;
	errno = ENOTSUP;
	return -1;
}

struct timespec
osdep_mtime(const struct stat *st)
{
	return st->st_mtimespec;
}

struct timespec
osdep_ctime(const struct stat *st)
{
	return st->st_ctimespec;
}

int
osdep_write_locked(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	/* The SDK has no F_OFD_GETLK (XNU keeps it private). F_GETLK
	 * reports the locks of other processes, which is what is asked:
	 * none of capsuled's own. */
	return fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

int
osdep_fdatasync(int fd)
{
	/* fsync alone leaves the data in the drive's cache here; where the
	 * file system cannot go further, it is what there is. */
	if (fcntl(fd, F_FULLFSYNC) == 0)
		return 0;
	return fsync(fd);
}

ssize_t
osdep_copy_range(int in, off_t *inoff, int out, off_t *outoff, size_t len)
{
	/* No ranged copy in the kernel (clonefile is whole files only). */
	errno = ENOSYS;
	return -1;
}

int
osdep_blkdev_size(int fd, uint64_t *size)
{
	uint32_t bsize;
	uint64_t count;

	if (ioctl(fd, DKIOCGETBLOCKSIZE, &bsize) < 0 ||
	    ioctl(fd, DKIOCGETBLOCKCOUNT, &count) < 0)
		return -1;
	*size = (uint64_t)bsize * count;
	return 0;
}

int
osdep_is_fuse(int fd)
{
	struct statfs sfs;

	/* macFUSE (osxfuse before version 4) names its mounts so. FUSE-T
	 * serves over NFS and cannot be told apart. */
	if (fstatfs(fd, &sfs) < 0)
		return 0;
	return strncmp(sfs.f_fstypename, "macfuse", 7) == 0 ||
	    strncmp(sfs.f_fstypename, "osxfuse", 7) == 0;
}

void
osdep_wipe(void *p, size_t len)
{
	/* No explicit_bzero here; memset_s (C11 Annex K) may not be
	 * left out either. */
	if (len > 0)
		memset_s(p, len, 0, len);
}

int
osdep_exe_path(char *buf, size_t len)
{
	/* Not _NSGetExecutablePath: that is the path it was run by. */
	if (proc_pidpath(getpid(), buf, (uint32_t)len) <= 0)
		return -1;
	return 0;
}

int
osdep_random(void *buf, size_t len)
{
	arc4random_buf(buf, len);	/* cannot fail */
	return 0;
}

long
osdep_rss(void)
{
	struct mach_task_basic_info info;
	mach_msg_type_number_t n = MACH_TASK_BASIC_INFO_COUNT;

	if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO,
	    (task_info_t)&info, &n) != KERN_SUCCESS) {
		errno = EIO;
		return -1;
	}
	return (long)info.resident_size;
}

int
osdep_nfds(void)
{
	struct proc_fdinfo *fds;
	int n;

	/* Asked with no buffer, it says how much room to make (a bound). */
	if ((n = proc_pidinfo(getpid(), PROC_PIDLISTFDS, 0, NULL, 0)) <= 0)
		return -1;
	if ((fds = malloc((size_t)n)) == NULL)
		return -1;
	n = proc_pidinfo(getpid(), PROC_PIDLISTFDS, 0, fds, n);
	free(fds);
	return n <= 0 ? -1 : n / (int)PROC_PIDLISTFD_SIZE;
}

int
osdep_unpriv_port(void)
{
	/* Fixed in XNU (no sysctl moves it, unlike FreeBSD's reservedhigh).
	 * macOS since 10.14 lets anyone listen below it on the wildcard
	 * address; counting those ports as root's is the safe side. */
	return IPPORT_RESERVED;
}
