/*
 * vfsd.c — starting virtiofsd for a shared folder (vfsd.h).
 *
 * Two processes, neither of which capsuled ever waits on:
 *
 *   keeper (root, forked by capsuled): makes a mount namespace of its own
 *     with the share at VFSD_DIR (a recursive clone of the owner's
 *     directory, nosuid, nodev and, for :ro, read-only added to whatever
 *     flags its mounts had), takes on the owner's groups, and clones the
 *     server into a new user namespace whose map it writes: the owner is
 *     root there and nobody else exists. It then waits for the server and
 *     exits with its status; capsuled watches and reaps the keeper.
 *   server (cloned): becomes root of its namespace (the owner outside),
 *     dies with the keeper, installs a seccomp filter and runs virtiofsd.
 *
 * The share's mounts and their flags were made by root in a namespace
 * more privileged than the server's, so the kernel locks them: the server
 * cannot make a read-only share writable. The filter keeps what the
 * kernel would not: setgroups(2) does nothing (virtiofsd drops the
 * supplementary groups, and with them a "deny by group" permission of the
 * owner's), and no mode with set-user-ID or set-group-ID can be set or
 * created (a guest could otherwise leave the owner a setuid program).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* unshare, setresuid, open_tree */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "vfsd.h"

/* Where the share is mounted in the server's namespace: a tmpfs over
 * /run there, so every component is searchable by the owner. */
#define VFSD_TOP	"/run"
#define VFSD_DIR	"/run/share"
#define VFSD_FD_SOCK	3
#define VFSD_FD_DIR	4
#define VFSD_NOFILE	65536
#define VFSD_THREADS	"--thread-pool-size=4"

#if defined(__x86_64__)
#define VFSD_ARCH	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define VFSD_ARCH	AUDIT_ARCH_AARCH64
#endif
#ifndef __NR_openat2
#define __NR_openat2	437
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2	452
#endif

int
vfsd_find(char *out, size_t len, struct cap_err *err)
{
	const char *env = getenv("CAPSULE_VIRTIOFSD");
	const char *bin = env != NULL && env[0] == '/' ? env : VFSD_DEFAULT;

	if (access(bin, X_OK) < 0)
		return cap_err_set(err, ENOENT, E_UNAVAILABLE, "shared folders "
		    "need virtiofsd, and %s is not there: install QEMU's "
		    "(Debian: qemu-system-common) or set CAPSULE_VIRTIOFSD",
		    bin);
	snprintf(out, len, "%s", bin);
	return 0;
}

static int
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The share at VFSD_DIR in a mount namespace of this process's own. */
static int
mount_share(int ro)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_NOSUID |
	    MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0) };
	int tree, r;

	/* The working directory moves into the new namespace with the
	 * process; a descriptor's mount would stay in the old one. */
	if (fchdir(VFSD_FD_DIR) < 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("capsule-share", VFSD_TOP, "tmpfs", MS_NOSUID | MS_NODEV |
	    MS_NOEXEC, "mode=0755,size=16k") < 0 ||
	    mkdir(VFSD_DIR, 0755) < 0)
		return -1;
	/* Recursive: what mounts below it hide stays hidden. Flags are
	 * added to each mount's own, never replaced. */
	if ((tree = open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | AT_RECURSIVE |
	    OPEN_TREE_CLOEXEC)) < 0)
		return -1;
	r = mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
	    sizeof(attr)) < 0 || move_mount(tree, "", AT_FDCWD, VFSD_DIR,
	    MOVE_MOUNT_F_EMPTY_PATH) < 0 ? -1 : 0;
	close(tree);
	return r < 0 || chdir("/") < 0 ? -1 : 0;
}

#define LD_ARG(n)	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, \
			    offsetof(struct seccomp_data, args[n]))
#define DENY_SUID	BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, S_ISUID | \
			    S_ISGID, 0, 1), \
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM), \
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
/* nr's mode argument (the low word: both arches are little-endian). */
#define MODE_ARG(nr, n)	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 4), \
			LD_ARG(n), DENY_SUID

static int
install_filter(void)
{
#ifdef VFSD_ARCH
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VFSD_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
		/* No x32 calls: their numbers would pass every check. */
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_setgroups, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fchmodat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		/* A call that is not nr skips its check with the number
		 * still loaded. */
#ifdef __x86_64__
		MODE_ARG(__NR_chmod, 1),
		MODE_ARG(__NR_creat, 1),
		MODE_ARG(__NR_open, 2),
		MODE_ARG(__NR_mknod, 1),
#endif
		MODE_ARG(__NR_fchmod, 1),
		MODE_ARG(__NR_fchmodat, 2),
		MODE_ARG(__NR_openat, 3),
		MODE_ARG(__NR_mknodat, 2),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ?
	    -1 : 0;
#else
	errno = ENOTSUP;
	return -1;
#endif
}

static _Noreturn void
fail(const char *step)
{
	dprintf(2, "capsuled: share server: cannot %s: %s\n", step,
	    strerror(errno));
	_exit(126);
}

/* The server: waits for its map, becomes the owner, runs virtiofsd. */
static _Noreturn void
server(const char *bin, pid_t keeper, int go)
{
	char *argv[] = { (char *)bin, "--fd=3", "-o", "source=" VFSD_DIR,
	    "-o", "sandbox=namespace", "-o", "cache=auto", "-o",
	    "log_level=warn", "--rlimit-nofile=0", VFSD_THREADS, NULL };
	char *envp[] = { NULL };
	char c;

	if (read(go, &c, 1) != 1 || c != 'g')
		_exit(126);
	close(go);
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
		fail("become the share's owner");
	/* After the change of identity, which clears it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != keeper)
		_exit(126);
	if (install_filter() < 0)
		fail("install its seccomp filter");
	execve(bin, argv, envp);
	fail("execute virtiofsd");
}

static int
map_owner(pid_t pid, const struct vfsd_owner *who)
{
	char path[64], map[64];

	snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
	if (write_file(path, "deny") < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)who->uid);
	if (write_file(path, map) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)who->gid);
	return write_file(path, map);
}

/* The keeper, root in capsuled's namespaces but a mount namespace. */
static _Noreturn void
keeper(const char *bin, int ro, const struct vfsd_owner *who)
{
	struct rlimit rl = { VFSD_NOFILE, VFSD_NOFILE };
	pid_t self = getpid(), pid;
	int sync[2], st;

	if (mount_share(ro) < 0)
		fail("mount the share");
	close(VFSD_FD_DIR);
	/* Its own limit: in the user namespace it cannot raise one. */
	setrlimit(RLIMIT_NOFILE, &rl);
	if (setgroups(who->ngroups, who->groups) < 0)
		fail("take on the owner's groups");
	if (pipe2(sync, O_CLOEXEC) < 0)
		fail("make a pipe");
	pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL,
	    NULL, 0);
	if (pid < 0)
		fail("enter a user namespace");
	if (pid == 0) {
		close(sync[1]);
		server(bin, self, sync[0]);
	}
	close(sync[0]);
	if (map_owner(pid, who) < 0 || write(sync[1], "g", 1) != 1) {
		dprintf(2, "capsuled: share server: cannot map the owner: %s\n",
		    strerror(errno));
		kill(pid, SIGKILL);
	}
	close(sync[1]);
	close(VFSD_FD_SOCK);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			_exit(126);
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

pid_t
vfsd_spawn(const char *bin, int dir_fd, int ro, const struct vfsd_owner *who,
    int listen_fd, int log_fd, struct cap_err *err)
{
	sigset_t none;
	pid_t pid;
	int fd, a, b;

	if (geteuid() != 0)
		return cap_err_set(err, EPERM, E_UNAVAILABLE, "shared folders "
		    "need capsuled to run as root");
	if ((pid = fork()) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
	if (pid > 0)
		return pid;

	/* Its own session, default signals but SIGPIPE (its log pipe's
	 * reader goes when capsuled restarts); ends with QEMU. */
	setsid();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, s == SIGPIPE ? SIG_IGN : SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd != 0) {
		dup2(fd, 0);
		close(fd);
	}
	/* The socket and the directory to 3 and 4 (out of the way first). */
	if ((a = fcntl(listen_fd, F_DUPFD, 10)) < 0 ||
	    (b = fcntl(dir_fd, F_DUPFD, 10)) < 0 ||
	    dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0 ||
	    dup2(a, VFSD_FD_SOCK) < 0 || dup2(b, VFSD_FD_DIR) < 0)
		_exit(126);
	fcntl(VFSD_FD_SOCK, F_SETFL, 0);
	if (close_range(VFSD_FD_DIR + 1, ~0U, 0) < 0)
		for (fd = VFSD_FD_DIR + 1; fd < 65536; fd++)
			close(fd);
	keeper(bin, ro, who);
}
