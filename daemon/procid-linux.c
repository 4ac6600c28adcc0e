/*
 * procid-linux.c — process identity through /proc and pidfds (see
 * procid.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procid.h"

#ifndef P_PIDFD
#define P_PIDFD	3
#endif

/* glibc 2.36 has wrappers, but older headers may not: the syscalls are
 * the stable interface. */
static int
sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int
read_small(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	return (int)n;
}

int
procid_read(pid_t pid, struct procid *out)
{
	char path[64], buf[4096], *p, *line;
	unsigned long long start = 0;
	unsigned long uid;
	int field, r;
	char state;

	if (pid <= 1)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((r = read_small(path, buf, sizeof(buf))) < 0)
		return r == -ENOENT ? -ESRCH : r;
	/* The command name (field 2) may hold anything, ')' included: the
	 * fields we want come after its last ')'. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %c", &state) != 1)
		return -EIO;
	if (state == 'Z' || state == 'X')
		return -ESRCH;
	/* Field 3 is the state; starttime is field 22. Each space moves
	 * on to the next field. */
	for (field = 2, p++; field < 22 && *p; p++)
		if (*p == ' ')
			field++;
	if (field != 22 || sscanf(p, "%llu", &start) != 1)
		return -EIO;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((r = read_small(path, buf, sizeof(buf))) < 0)
		return r == -ENOENT ? -ESRCH : r;
	for (p = buf; (line = strsep(&p, "\n")) != NULL;)
		if (sscanf(line, "Uid: %lu", &uid) == 1)
			break;
	if (line == NULL)
		return -EIO;
	out->pid = pid;
	out->start = start;
	out->uid = (uid_t)uid;
	return 0;
}

int
procid_boot_id(char out[PROCID_BOOT_ID_LEN + 1])
{
	char buf[64];
	int r;

	if ((r = read_small("/proc/sys/kernel/random/boot_id", buf,
	    sizeof(buf))) < 0)
		return r;
	if (r < PROCID_BOOT_ID_LEN)
		return -EIO;
	memcpy(out, buf, PROCID_BOOT_ID_LEN);
	out[PROCID_BOOT_ID_LEN] = '\0';
	return 0;
}

int
procid_open(const struct procid *want)
{
	struct procid now;
	int fd, r;

	/* Open first, then look: if the pid was reused before the open, the
	 * start time read afterwards belongs to the new process and differs;
	 * if after, the pidfd still names the one we checked. */
	if ((fd = sys_pidfd_open(want->pid)) < 0)
		return errno == ESRCH ? -ESRCH : -errno;
	r = procid_read(want->pid, &now);
	if (r == 0 && (now.start != want->start || now.uid != want->uid))
		r = -ESTALE;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int
procid_open_child(pid_t pid)
{
	int fd = sys_pidfd_open(pid);

	return fd < 0 ? -errno : fd;
}

int
procid_signal(int pidfd, int sig)
{
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

int
procid_exited(int pidfd)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG |
	    WNOWAIT) < 0)
		return -errno;
	return si.si_pid != 0;
}

int
procid_reap(int pidfd, int *wstatus)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0)
		return -errno;
	if (si.si_pid == 0)
		return 0;
	if (si.si_code == CLD_EXITED)
		*wstatus = (si.si_status & 0xff) << 8;
	else
		*wstatus = si.si_status & 0x7f;	/* as WTERMSIG sees it */
	return 1;
}

void
procid_wait(int pidfd)
{
	siginfo_t si;

	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 &&
	    errno == EINTR)
		;
}
