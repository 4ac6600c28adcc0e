/*
 * osdep.h — the calls that differ between the host systems capsule runs on.
 *
 * After tmux's osdep-*.c: one file per system (osdep-linux.c,
 * osdep-darwin.c), chosen by CMake from CMAKE_SYSTEM_NAME, and no #ifdef
 * in the code that calls them. Only what is small and has a real
 * equivalent on each system lives here; bigger differences (process
 * watching, memory files, systemd) stay in their own modules.
 *
 * Each function stands in for a system call and behaves like one: on
 * failure it returns -1 and sets errno (osdep_closefrom and osdep_is_fuse
 * cannot fail). `flags` arguments take O_CLOEXEC and O_NONBLOCK, as
 * pipe2() does, whatever the call.
 *
 * Host side only: the guest agent always runs on Linux and does not link
 * this.
 */
#ifndef CAPSULE_OSDEP_H
#define CAPSULE_OSDEP_H

#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* An errno of capsule's own, "that file is on FUSE": one the calls that
 * report it never give. Darwin has no EMEDIUMTYPE; EFTYPE ("inappropriate
 * file type or format") is as unused there. */
#ifdef EMEDIUMTYPE
#define OSDEP_EFUSE	EMEDIUMTYPE
#else
#define OSDEP_EFUSE	EFTYPE
#endif

/* Descriptors. */
/* accept(), the new socket close-on-exec and non-blocking. */
int	osdep_accept(int fd, struct sockaddr *addr, socklen_t *len);
/* pipe() with flags on both ends. */
int	osdep_pipe(int fds[2], int flags);
/* socket(domain, type, 0) with flags. */
int	osdep_socket(int domain, int type, int flags);
/* socketpair(domain, type, 0, sv) with flags on both ends. */
int	osdep_socketpair(int domain, int type, int flags, int sv[2]);
/* osdep_socket(), the socket owned by uid as a host firewall's owner
 * match sees it. As root; otherwise the socket is simply ours. */
int	osdep_socket_as(uid_t uid, int domain, int type, int flags);
/* A connected pair of local sockets for messages of msglen bytes, each
 * sent whole by one sendmsg() and maybe carrying descriptors, the end of
 * the other side seen as EOF: SOCK_SEQPACKET. XNU has no SOCK_SEQPACKET
 * for AF_UNIX: there it is SOCK_STREAM, buffered for OSDEP_MSG_QUEUE
 * unread messages and readable only once a whole one is there. */
#define OSDEP_MSG_QUEUE	256
int	osdep_msgpair(size_t msglen, int flags, int sv[2]);
/* bind() (connect()) Unix socket s to `name`, one component, in the
 * directory dfd holds, whatever has become of its path: bind() takes no
 * directory fd. Linux goes through /proc/self/fd/N, which also keeps
 * sun_path short however deep the directory; Darwin, which has no such
 * path, through fchdir() and back (capsuled is single-threaded). */
int	osdep_bind_unix_at(int dfd, int s, const char *name);
int	osdep_connect_unix_at(int dfd, int s, const char *name);
/* recvmsg(), any descriptors it brings (SCM_RIGHTS) close-on-exec. */
ssize_t	osdep_recvmsg(int fd, struct msghdr *mh, int flags);
/* Closes every descriptor from lowfd up. For a child between fork and
 * exec: it does not allocate, and cannot fail. */
void	osdep_closefrom(int lowfd);

/* Credentials. */
/* Who is at the other end of a connected Unix socket, as the kernel saw
 * it at connect(): effective uid and gid, and pid. Any pointer may be
 * NULL. */
int	osdep_peer(int fd, uid_t *uid, gid_t *gid, pid_t *pid);
/* That peer's supplementary groups: at most *n of them (the first ones if
 * it has more: fewer groups only ever mean fewer rights); *n is set to how
 * many were stored. */
int	osdep_peergroups(int fd, gid_t *groups, size_t *n);
/* getgrouplist() with gid_t groups, as Linux has it: -1 if user has more
 * than *n groups (the first *n are stored). */
int	osdep_getgrouplist(const char *user, gid_t gid, gid_t *groups, int *n);
/* As root: real, effective and saved gid (uid) all set to gid (uid). */
int	osdep_setresgid(gid_t gid);
int	osdep_setresuid(uid_t uid);

/* A child, after fork. */
/* sig is sent to this process when its parent dies (PR_SET_PDEATHSIG; a
 * change of identity clears it, so call it after). ENOTSUP where the
 * system has no such thing (Darwin): the child then outlives a capsuled
 * that dies, and must be bounded some other way. */
int	osdep_parent_death_signal(int sig);
/* No other process of this uid may inspect this one: no ptrace attach, no
 * core dump (PR_SET_DUMPABLE 0). */
int	osdep_no_inspect(void);

/* Files. */
/* What tells one file from another, even one made later in its place. */
struct osdep_fileid {
	dev_t		dev;
	ino_t		ino;
	uint64_t	btime;		/* birth, ns since the epoch; 0: unknown */
	mode_t		type;		/* S_IFMT bits */
};
/* The file `name` in directory dfd, not following a link; name "" is dfd
 * itself. */
int	osdep_fileid(int dfd, const char *name, struct osdep_fileid *id);
/* Opens directory `path` only to name it (a dirfd for *at calls, fstat),
 * which takes search permission on it but not read: O_PATH on Linux.
 * flags: O_CLOEXEC, O_NOFOLLOW. */
int	osdep_open_dirref(const char *path, int flags);
/* chmod of directory `name` in dfd, not following a link, even one we may
 * not open (mode 0000). */
int	osdep_chmod_dirat(int dfd, const char *name, mode_t mode);
/* renameat(), failing with EEXIST if `to` exists. */
int	osdep_rename_noreplace(int fromfd, const char *from, int tofd,
	    const char *to);
/* An unnamed regular file in directory dfd, open O_RDWR with flags
 * (O_CLOEXEC), mode 0600: gone when its last descriptor is closed. */
int	osdep_tmpfile(int dfd, int flags);
/* A file in memory, open read-write and close-on-exec: memfd_create().
 * With `sealable` it can later be osdep_memfd_seal()ed. ENOTSUP where
 * there is no such file (Darwin; only templates and forks use them, and
 * the Darwin backend saves no VM). */
int	osdep_memfd(const char *name, int sealable);
/* Seals a sealable memfd for good: no write, no growing or shrinking, no
 * more seals. */
int	osdep_memfd_seal(int fd);
/* A file's modification and status-change times. */
struct timespec	osdep_mtime(const struct stat *st);
struct timespec	osdep_ctime(const struct stat *st);
/* 1 if another open file holds a lock on fd's file that a write lock on
 * all of it would conflict with (QEMU locks the images it has open): the
 * open-file-description lock query on Linux. 0 if not or if that cannot
 * be told. */
int	osdep_write_locked(int fd);
/* fdatasync(): fd's data on stable storage. */
int	osdep_fdatasync(int fd);
/* copy_file_range(): len bytes in the kernel, offsets as pread/pwrite.
 * ENOSYS where there is no such call: copy them yourself. */
ssize_t	osdep_copy_range(int in, off_t *inoff, int out, off_t *outoff,
	    size_t len);
/* The size in bytes of the block device open as fd. */
int	osdep_blkdev_size(int fd, uint64_t *size);
/* 1 if fd's file system is FUSE (its server may never answer), 0 if not
 * or if that cannot be told. */
int	osdep_is_fuse(int fd);

/* Memory. */
/* Zeroes len bytes at p, in a way the compiler may not leave out. */
void	osdep_wipe(void *p, size_t len);

/* This process, this host. */
/* The absolute path of the running program, NUL-terminated. */
int	osdep_exe_path(char *buf, size_t len);
/* Fills buf with len random bytes from the kernel (all of them, or -1). */
int	osdep_random(void *buf, size_t len);
/* This process's resident memory in bytes, and its open descriptors. */
long	osdep_rss(void);
int	osdep_nfds(void);
/* The lowest port anyone may bind: a caller below it needs root. */
int	osdep_unpriv_port(void);

#endif /* CAPSULE_OSDEP_H */
