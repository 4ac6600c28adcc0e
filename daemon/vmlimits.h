/*
 * vmlimits.h — each VM's hypervisor under the resource limits the admin set
 * (capsuled.conf: vm_cpu_quota, vm_tasks_max, vm_memory_overhead_mib).
 *
 * As root on a host that runs systemd, each VM's process is moved into a
 * transient scope unit, capsule-vm-<id>.scope, with MemoryMax, CPUQuota and
 * TasksMax, through systemd's D-Bus API (libsystemd's sd-bus): systemd
 * enforces them with cgroups, and the scope outlives a daemon restart like
 * the VM does. Elsewhere the backend starts the process under rlimits
 * (address space, tasks of its uid); a CPU quota needs cgroups and is not
 * applied there (capsule doctor says so).
 */
#ifndef CAPSULE_VMLIMITS_H
#define CAPSULE_VMLIMITS_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* 1 if limits go through systemd scopes here. */
int	vmlimits_use_scope(void);
/* Moves pid into a new scope for vm_id with these limits (0: none). */
int	vmlimits_scope(pid_t pid, const char *vm_id, uint64_t memory_max_mib,
	    unsigned cpu_quota, unsigned tasks_max, struct cap_err *err);
/* A sentence on how limits are enforced here, for doctor. */
const char *vmlimits_how(void);

#endif /* CAPSULE_VMLIMITS_H */
