/*
 * vmsnap.h — named snapshots of running VMs, and VMs started from them
 * (vmsnap.c).
 *
 * A snapshot is a VM's whole state (vmstate.h: memory, devices, writable
 * disk) kept under a name in <state>/snapshots/<uid>/<name>/ (capsuled's
 * own, 0700): meta.json, state and disk.img. It outlives the VM and
 * capsuled; StartVM {"snapshot": NAME} starts a new ephemeral VM from it,
 * as often as wanted, each its own machine (refreshed as a fork's copy).
 * A snapshot is taken in .taking-<name> and renamed into place whole;
 * removed by a rename to .removing-<name>-<n> first. Start-up removes
 * what it finds under those names. Names are per owner; only the owner
 * starts or removes one; root lists everyone's.
 */
#ifndef CAPSULE_VMSNAP_H
#define CAPSULE_VMSNAP_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "caller.h"
#include "err.h"
#include "vm.h"

#define VMSNAP_DIR		"snapshots"
#define VMSNAP_FORMAT		1
#define VMSNAP_MAX_PER_UID	16

int	vmsnap_init(const char *state_dir, struct cap_err *err);
void	vmsnap_shutdown(void);

/* SnapshotVM: the outcome is the snapshot as ListSnapshots shows it. */
typedef void (*vmsnap_cb)(json_t *snap, const struct cap_err *err,
    void *arg);
int	vmsnap_take(struct vm *vm, const struct caller *who, const char *name,
	    vmsnap_cb cb, void *arg, struct cap_err *err);
/* What uid's snapshots take on the host's disk, MiB (user_max_disk_mib
 * counts it). */
uint64_t vmsnap_mib(uid_t uid);
/* uid's snapshots (root: everyone's). */
json_t	*vmsnap_list_json(uid_t uid);
/* RemoveSnapshot: uid's own, by name. */
int	vmsnap_remove(uid_t uid, const char *name, struct cap_err *err);
/* StartVM {"snapshot": name}: a new VM of who's, owned by the connection
 * `owner`, starting from who's snapshot; cb as vm_start's. */
int	vmsnap_start(const struct caller *who, const char *name,
	    uint64_t owner, int stop_on_disconnect, vm_start_cb cb, void *arg,
	    struct cap_err *err);

#endif /* CAPSULE_VMSNAP_H */
