/*
 * reap.h — what a previous capsuled left in the state dir.
 *
 * At start-up, before it listens, capsuled goes through <state>/vms. For
 * each VM a previous daemon left behind (it crashed or was killed) it ends
 * the hypervisor process, if the record's pid still names that very
 * process (pid, start time, uid, same boot), removes the caller-side files
 * the record lists, if each is still what capsule made, and removes the
 * private dir. A record that does not validate is reported and its private
 * dir removed; nothing it names is touched. (Re-adopting running VMs
 * instead is future work.)
 */
#ifndef CAPSULE_REAP_H
#define CAPSULE_REAP_H

/* vms_fd: <state>/vms, opened O_DIRECTORY|O_NOFOLLOW. Returns how many
 * VMs were found. */
int	reap_all(int vms_fd);

#endif /* CAPSULE_REAP_H */
