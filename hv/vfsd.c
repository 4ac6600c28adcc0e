/*
 * vfsd.c — starting virtiofsd for a shared folder (vfsd.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* unshare, setresuid */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#define VFSD_FD_SYNC	5
#define VFSD_NOFILE	65536

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
	/* A mount of another namespace cannot be bound, but the working
	 * directory moves into the new namespace with the process. */
	if (fchdir(VFSD_FD_DIR) < 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("capsule-share", VFSD_TOP, "tmpfs", MS_NOSUID | MS_NODEV |
	    MS_NOEXEC, "mode=0755,size=16k") < 0 ||
	    mkdir(VFSD_DIR, 0755) < 0 ||
	    mount(".", VFSD_DIR, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, VFSD_DIR, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID |
	    MS_NODEV | (ro ? MS_RDONLY : 0), NULL) < 0)
		return -1;
	return 0;
}

/* In the child: the share mounted, then the owner's identity in a user
 * namespace of its own, whose map the parent writes (sync: "ready" when
 * it is made, "go" once mapped). */
static _Noreturn void
child(const char *bin, int ro, const struct vfsd_owner *who, int sync)
{
	char *argv[] = { (char *)bin, "--fd=3", "-o", "source=" VFSD_DIR,
	    "-o", "sandbox=namespace", "-o", "cache=auto", "-o",
	    "log_level=warn", "--rlimit-nofile=0", NULL };
	char *envp[] = { NULL };
	struct rlimit rl = { VFSD_NOFILE, VFSD_NOFILE };
	const char *step;
	char c = 'r';

	step = "mount the share";
	if (mount_share(ro) < 0)
		goto fail;
	/* Its own limit: in the user namespace it cannot raise one. */
	setrlimit(RLIMIT_NOFILE, &rl);
	step = "become the share's owner";
	if (setgroups(who->ngroups, who->groups) < 0 ||
	    setresgid(who->gid, who->gid, who->gid) < 0 ||
	    setresuid(who->uid, who->uid, who->uid) < 0)
		goto fail;
	step = "enter a user namespace";
	if (unshare(CLONE_NEWUSER) < 0 || write(sync, &c, 1) != 1 ||
	    read(sync, &c, 1) != 1 || c != 'g')
		goto fail;
	close(sync);
	close(VFSD_FD_DIR);
	if (chdir("/") < 0)
		goto fail;
	execve(bin, argv, envp);
	step = "execute virtiofsd";
fail:
	dprintf(2, "capsuled: share server: cannot %s: %s\n", step,
	    strerror(errno));
	_exit(126);
}

/* The owner, and only the owner, is root in the child's namespace. */
static int
map_owner(pid_t pid, const struct vfsd_owner *who)
{
	char path[64], map[64];

	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)who->uid);
	if (write_file(path, map) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)who->gid);
	return write_file(path, map) < 0 ? -errno : 0;
}

pid_t
vfsd_spawn(const char *bin, int dir_fd, int ro, const struct vfsd_owner *who,
    int listen_fd, int log_fd, struct cap_err *err)
{
	sigset_t none;
	pid_t pid;
	int fd, a, b, sp[2], r;
	char c;

	if (geteuid() != 0)
		return cap_err_set(err, EPERM, E_UNAVAILABLE, "shared folders "
		    "need capsuled to run as root");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "socketpair: %s",
		    strerror(errno));
	if ((pid = fork()) < 0) {
		close(sp[0]);
		close(sp[1]);
		return cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
	}
	if (pid > 0) {
		close(sp[1]);
		/* A short, synchronous handshake: the child only mounts and
		 * changes identity before it says "ready". */
		r = read(sp[0], &c, 1) == 1 && c == 'r' ? 0 : -EPROTO;
		if (r == 0)
			r = map_owner(pid, who);
		c = 'g';
		if (r == 0 && write(sp[0], &c, 1) != 1)
			r = -EPIPE;
		close(sp[0]);
		if (r < 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			return cap_err_set(err, -r, E_INTERNAL, "cannot start "
			    "the shared folder's server (%s; its own words "
			    "are in the VM's QEMU log)", strerror(-r));
		}
		return pid;
	}

	/* Its own session, default signals; ends with QEMU, not with us. */
	close(sp[0]);
	setsid();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd != 0) {
		dup2(fd, 0);
		close(fd);
	}
	/* The socket and the directory to 3 and 4 (out of the way first);
	 * the handshake socket to 5. */
	if ((a = fcntl(listen_fd, F_DUPFD, 10)) < 0 ||
	    (b = fcntl(dir_fd, F_DUPFD, 10)) < 0 ||
	    (fd = fcntl(sp[1], F_DUPFD, 10)) < 0 ||
	    dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0 ||
	    dup2(a, VFSD_FD_SOCK) < 0 || dup2(b, VFSD_FD_DIR) < 0 ||
	    dup2(fd, VFSD_FD_SYNC) < 0)
		_exit(126);
	fcntl(VFSD_FD_SOCK, F_SETFL, 0);
	if (close_range(VFSD_FD_SYNC + 1, ~0U, 0) < 0)
		for (fd = VFSD_FD_SYNC + 1; fd < 65536; fd++)
			close(fd);
	child(bin, ro, who, VFSD_FD_SYNC);
}
