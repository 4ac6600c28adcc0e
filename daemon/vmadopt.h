/*
 * vmadopt.h — VMs outlive capsuled: a restarted (or upgraded, or killed)
 * daemon takes over the VMs the one before it left running, and a daemon
 * told to go (SIGTERM) leaves its VMs for the next.
 *
 * A VM is taken over only if its record (record.h) names a process the
 * kernel confirms (procid.h) that runs the hypervisor binary recorded;
 * its QMP and agent sockets are connected again, its exec socket made
 * again as its owner, and it serves once its agent says HELLO again.
 * What cannot be taken over is listed as crashed, and reap.c ends it.
 */
#ifndef CAPSULE_VMADOPT_H
#define CAPSULE_VMADOPT_H

/* Takes over the VMs a previous capsuled left running, and cleans up
 * after the rest (reap.h). */
void	vmadopt_all(void);
/* Lets go of every VM without ending it, for a later daemon to take over
 * (VMs still starting are ended). */
void	vmadopt_detach_all(void);

#endif /* CAPSULE_VMADOPT_H */
