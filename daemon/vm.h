/*
 * vm.h — every VM's life: start, watch, stop, clean up.
 *
 *   starting --agent HELLO--> running --StopVM--> stopping --exit--> (gone)
 *      |                       |   ^
 *      +--timeout/exit--> (gone, StartVM fails)
 *                              |   | heard again / resumed
 *                              v   |
 *                           unresponsive (no heartbeat, or QEMU paused it)
 *
 *   running/unresponsive --QEMU exits on its own--> crashed/stopped
 *
 * A VM that ends on its own stays listed (crashed, or stopped if the guest
 * powered off or rebooted) with its exit status and why, until StopVM
 * removes it; its processes, sockets and private dir are released at once.
 * An unresponsive VM's pending execs end with the reason, and new ones are
 * refused with it, until the guest answers again.
 */
#ifndef CAPSULE_VM_H
#define CAPSULE_VM_H

#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "caller.h"
#include "ctl.h"
#include "err.h"
#include "hv.h"

enum vm_state {
	VM_STARTING,
	VM_RUNNING,
	VM_UNRESPONSIVE,
	VM_STOPPING,
	VM_STOPPED,
	VM_CRASHED,
};

struct vm;
struct agent;

struct vm_env {
	struct event_base	*base;
	const struct hv_ops	*hv;
	struct hv_caps		 caps;
	char			 state_dir[4096];
	const char		*image_dir;	/* --image-dir, may be NULL */
	uint64_t		 console_max;	/* console log cap, bytes */
};

/* Called once the StartVM outcome is known: vm is running, or err says why
 * not (and everything it had is already released). */
typedef void (*vm_start_cb)(struct vm *vm, const struct cap_err *err,
    void *arg);
/* Called once the VM is gone and cleaned up. */
typedef void (*vm_gone_cb)(const char *vm_id, void *arg);

/* Makes (or checks) <state>/vms: capsuled's own, mode 0700. */
int	vm_init(const struct vm_env *env, struct cap_err *err);
/* Ends what a previous capsuled left behind in <state>/vms (reap.h). */
void	vm_reap_orphans(void);
/* Resolves the request and starts the VM; files the request names are
 * opened with `who`'s rights. Returns 0 when the callback will report the
 * outcome. */
int	vm_start(const struct ctl_start *req, uint64_t owner,
	    const struct caller *who, vm_start_cb cb, void *arg,
	    struct cap_err *err);
/* Stops (or forgets, if it already ended) a VM; cb runs when it is gone,
 * possibly before vm_stop returns. */
void	vm_stop(struct vm *vm, vm_gone_cb cb, void *arg);
/* Stops every VM of `owner`; returns how many callbacks to expect. */
int	vm_stop_owned(uint64_t owner, vm_gone_cb cb, void *arg);
int	vm_stop_all(vm_gone_cb cb, void *arg);
void	vm_owner_gone(uint64_t owner);

struct vm *vm_find(const char *id);
const char *vm_id(const struct vm *vm);
enum vm_state vm_state(const struct vm *vm);
const char *vm_state_name(enum vm_state s);
json_t	*vm_json(const struct vm *vm);
json_t	*vm_list_json(void);
/* StartVM's reply fields. */
json_t	*vm_started_json(const struct vm *vm);
int	vm_count(void);

#endif /* CAPSULE_VM_H */
