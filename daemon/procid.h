/*
 * procid.h — who a process is, in terms a reused pid cannot fake.
 *
 * A pid alone names whatever process has it now. capsule records a VM
 * process as (pid, start time in clock ticks since boot, real uid) plus the
 * boot it happened in, and before it signals a process it did not just
 * spawn it opens a pidfd and checks all of them through it (after crun's
 * status.c). A pidfd then stays bound to that one process, so the signal
 * cannot reach a successor that took the pid over.
 *
 * One file per system: procid-linux.c (/proc, pidfds) and procid-darwin.c
 * (proc_pidinfo, and a kqueue watching the process for NOTE_EXIT where
 * Linux has a pidfd). Either way the descriptor is closed with close(),
 * and libevent can watch it: it turns readable once the process is gone.
 */
#ifndef CAPSULE_PROCID_H
#define CAPSULE_PROCID_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define PROCID_BOOT_ID_LEN	36	/* a UUID, as the kernel prints it */

struct procid {
	pid_t		pid;
	uint64_t	start;		/* Linux: /proc/PID/stat field 22;
					 * Darwin: µs since the epoch */
	uid_t		uid;		/* real uid */
};

/* Reads pid's start time and real uid. -ESRCH if there is no such process
 * (or only a zombie is left). */
int	procid_read(pid_t pid, struct procid *out);
/* This boot's id (Linux: /proc/sys/kernel/random/boot_id; Darwin:
 * kern.bootsessionuuid), NUL-terminated. */
int	procid_boot_id(char out[PROCID_BOOT_ID_LEN + 1]);
/* A pidfd for the process `want` describes: -ESRCH if it is gone, -ESTALE
 * if its pid now belongs to a different process. */
int	procid_open(const struct procid *want);
/* pidfd_open for a child of ours that we have not reaped (so the pid
 * cannot have been reused). */
int	procid_open_child(pid_t pid);
int	procid_signal(int pidfd, int sig);
/* 1 if the child behind pidfd has exited (it is left to be reaped), 0 if
 * it still runs, -errno if that cannot be told. */
int	procid_exited(int pidfd);
/* Reaps a child through its pidfd without blocking: 1 and *wstatus if it
 * has exited, 0 if it still runs, -ECHILD if it is not our child. */
int	procid_reap(int pidfd, int *wstatus);
/* Reaps a child through its pidfd, waiting for it to end. */
void	procid_wait(int pidfd);

#endif /* CAPSULE_PROCID_H */
