/*
 * reap.h — what a previous capsuled left in the state dir.
 *
 * At start-up, before it listens, capsuled goes through <state>/vms. A VM
 * a previous daemon left behind (it was restarted, crashed or was killed)
 * whose record is valid and whose process is still the very one recorded
 * (pid, start time, uid, same boot) is offered to `adopt`. If it is not
 * adopted (or its process is gone, or the record says too little), the
 * process is ended through a pidfd, the caller-side files the record lists
 * are removed if each is still what capsule made, and the private and
 * public dirs go. A record that does not validate is reported and its
 * private dir removed; nothing it names is touched.
 */
#ifndef CAPSULE_REAP_H
#define CAPSULE_REAP_H

#include "record.h"

/* alive: the recorded process still runs (and is verified). Returns 0 if
 * the VM is now the daemon's again (it may take r's strings, setting
 * r->have_spec 0); anything else: reap it. Called with alive 0 too, so
 * the daemon can report a VM that ended while it was away. */
typedef int reap_adopt_fn(struct record *r, int private_fd, int alive,
    void *arg);

/* vms_fd: <state>/vms, run_fd: <state>/run, both opened
 * O_DIRECTORY|O_NOFOLLOW. Returns how many VMs were found. */
int	reap_all(int vms_fd, int run_fd, reap_adopt_fn *adopt, void *arg);

#endif /* CAPSULE_REAP_H */
