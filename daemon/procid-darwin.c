/*
 * procid-darwin.c — process identity through proc_pidinfo and kqueues
 * (see procid.h).
 *
 * XNU has no pidfd. What stands in for one is a kqueue with an
 * EVFILT_PROC/NOTE_EXIT knote on the process: like a pidfd it is bound to
 * that one process from the moment it is registered (the knote holds the
 * proc, not the pid), and it turns readable when the process exits and
 * stays so, since nothing here drains it. Unlike a pidfd it cannot be
 * used to signal or reap: for that the pid it was made for is kept here,
 * by descriptor, and
 *  - a child we have not reaped is signalled and reaped by pid, which is
 *    safe as long as it is unreaped (its pid cannot be reused);
 *  - any other process is checked again (start time, real uid) just
 *    before kill(). Between that check and kill() the process could end
 *    and its pid be taken: XNU hands pids out in order up to 99999, so
 *    that needs the whole pid space to go round within the window. It is
 *    the one place this is weaker than a pidfd.
 *
 * XNU posts NOTE_EXIT a little before the exited child can be reaped, so
 * procid_reap() may still say 0 once the kqueue is readable: callers
 * watch with EV_PERSIST and are called again.
 */
#include <sys/types.h>
#include <sys/event.h>
#include <sys/proc.h>		/* SZOMB */
#include <sys/sysctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <libproc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "procid.h"

/* What a descriptor from procid_open*() was made for, by descriptor
 * number: close() is all callers do, so an entry stays until its number
 * is given to another watch. */
struct procid_watch {
	struct procid	id;
	int		child;		/* ours and unreaped: by pid is safe */
	int		used;
};

static struct procid_watch	*procid_watches;
static size_t			 procid_nwatches;

static int
procid_remember(int kq, const struct procid *id, int child)
{
	struct procid_watch *w;
	size_t n;

	if ((size_t)kq >= procid_nwatches) {
		n = (size_t)kq + 16;
		if ((w = realloc(procid_watches, n * sizeof(*w))) == NULL)
			return -ENOMEM;
		memset(w + procid_nwatches, 0, (n - procid_nwatches) *
		    sizeof(*w));
		procid_watches = w;
		procid_nwatches = n;
	}
	w = &procid_watches[kq];
	w->id = *id;
	w->child = child;
	w->used = 1;
	return 0;
}

/* The watch behind fd, which must still be a kqueue. */
static struct procid_watch *
procid_lookup(int fd)
{
	struct timespec zero = { 0, 0 };

	if (fd < 0 || (size_t)fd >= procid_nwatches ||
	    !procid_watches[fd].used ||
	    kevent(fd, NULL, 0, NULL, 0, &zero) < 0) {
		errno = EBADF;
		return NULL;
	}
	return &procid_watches[fd];
}

/* A kqueue that turns readable when pid exits. For our own child that has
 * already exited (XNU will not attach to it) it is readable at once. */
static int
procid_watch(pid_t pid, int child)
{
	struct kevent kev;
	int e, kq;

	if ((kq = kqueue()) < 0)
		return -errno;
	/* Close-on-exec, as pidfd_open() makes a pidfd. */
	if (fcntl(kq, F_SETFD, FD_CLOEXEC) < 0) {
		e = errno;
		close(kq);
		return -e;
	}
	EV_SET(&kev, (uintptr_t)pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
	if (kevent(kq, &kev, 1, NULL, 0, NULL) == 0)
		return kq;
	e = errno;
	if (e == ESRCH && child) {
		EV_SET(&kev, 0, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		if (kevent(kq, &kev, 1, NULL, 0, NULL) == 0)
			return kq;
		e = errno;
	}
	close(kq);
	return -e;
}

int
procid_read(pid_t pid, struct procid *out)
{
	struct proc_bsdinfo bi;
	int n;

	if (pid <= 1)
		return -ESRCH;
	n = proc_pidinfo(pid, PROC_PIDTBSDINFO, 0, &bi, (int)sizeof(bi));
	if (n <= 0)
		return errno == ESRCH || errno == 0 ? -ESRCH : -errno;
	if (n != (int)sizeof(bi))
		return -EIO;
	if (bi.pbi_status == SZOMB)
		return -ESRCH;
	out->pid = pid;
	out->start = bi.pbi_start_tvsec * 1000000 + bi.pbi_start_tvusec;
	out->uid = bi.pbi_ruid;
	return 0;
}

int
procid_boot_id(char out[PROCID_BOOT_ID_LEN + 1])
{
	char buf[64];
	size_t len = sizeof(buf);

	/* Made anew at each boot; an upper-case UUID. */
	if (sysctlbyname("kern.bootsessionuuid", buf, &len, NULL, 0) < 0)
		return -errno;
	if (len < PROCID_BOOT_ID_LEN)
		return -EIO;
	memcpy(out, buf, PROCID_BOOT_ID_LEN);
	out[PROCID_BOOT_ID_LEN] = '\0';
	return 0;
}

int
procid_open(const struct procid *want)
{
	struct procid now;
	int kq, r;

	/* Watch first, then look, as on Linux: the knote is bound to the
	 * process that had the pid when it was attached. */
	if ((kq = procid_watch(want->pid, 0)) < 0)
		return kq;
	r = procid_read(want->pid, &now);
	if (r == 0 && (now.start != want->start || now.uid != want->uid))
		r = -ESTALE;
	if (r == 0)
		r = procid_remember(kq, want, 0);
	if (r < 0) {
		close(kq);
		return r;
	}
	return kq;
}

int
procid_open_child(pid_t pid)
{
	struct procid id = { .pid = pid };
	int kq, r;

	if ((kq = procid_watch(pid, 1)) < 0)
		return kq;
	if ((r = procid_remember(kq, &id, 1)) < 0) {
		close(kq);
		return r;
	}
	return kq;
}

int
procid_signal(int pidfd, int sig)
{
	struct procid_watch *w;
	struct procid now;
	int r;

	if ((w = procid_lookup(pidfd)) == NULL)
		return -errno;
	if (!w->child) {
		if ((r = procid_read(w->id.pid, &now)) < 0)
			return r;
		if (now.start != w->id.start || now.uid != w->id.uid)
			return -ESRCH;	/* ours is gone; the pid is another's */
	}
	if (kill(w->id.pid, sig) < 0)
		return -errno;
	return 0;
}

int
procid_exited(int pidfd)
{
	struct procid_watch *w;
	siginfo_t si;

	if ((w = procid_lookup(pidfd)) == NULL)
		return -errno;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)w->id.pid, &si, WEXITED | WNOHANG |
	    WNOWAIT) < 0)
		return -errno;
	return si.si_pid != 0;
}

int
procid_reap(int pidfd, int *wstatus)
{
	struct procid_watch *w;
	pid_t p;
	int st;

	if ((w = procid_lookup(pidfd)) == NULL)
		return -errno;
	if ((p = waitpid(w->id.pid, &st, WNOHANG)) < 0)
		return -errno;
	if (p == 0)
		return 0;
	/* As procid-linux.c makes it from waitid(): no core flag. */
	if (WIFEXITED(st))
		*wstatus = WEXITSTATUS(st) << 8;
	else
		*wstatus = WTERMSIG(st);
	w->child = 0;	/* reaped: its pid is free to be reused */
	return 1;
}

void
procid_wait(int pidfd)
{
	struct procid_watch *w;

	if ((w = procid_lookup(pidfd)) == NULL)
		return;
	while (waitpid(w->id.pid, NULL, 0) < 0 && errno == EINTR)
		;
	w->child = 0;
}
