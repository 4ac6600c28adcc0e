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
	VM_PAUSED,		/* PauseVM: its vCPUs stopped, RAM kept */
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
};

/* What the admin set (capsuled.conf); may change on reload. 0: none. */
struct vm_limits {
	unsigned	default_vcpus;
	uint64_t	default_memory_mib;
	uint64_t	console_max;		/* bytes */
	/* Per owner uid, over all their live VMs; root is exempt. */
	unsigned	user_max_vms;
	unsigned	user_max_vcpus;
	uint64_t	user_max_memory_mib;
	uint64_t	user_max_disk_mib;	/* ephemeral disks + sandboxes */
	/* Per VM, on its hypervisor process (limits.h). */
	unsigned	vm_cpu_quota;		/* percent of one CPU */
	unsigned	vm_tasks_max;
	uint64_t	vm_memory_overhead_mib;	/* above its RAM; 0: none */
	int		templates;		/* start from templates */
};

/* Called once the StartVM outcome is known: vm is running, or err says why
 * not (and everything it had is already released). */
typedef void (*vm_start_cb)(struct vm *vm, const struct cap_err *err,
    void *arg);
/* Called once the VM is gone and cleaned up. */
typedef void (*vm_gone_cb)(const char *vm_id, void *arg);

/* Makes (or checks) <state>/vms (0700) and <state>/run (0711). */
int	vm_init(const struct vm_env *env, struct cap_err *err);
void	vm_set_limits(const struct vm_limits *l);
/* StartVM's limits and defaults for ctl_parse_start. */
void	vm_ctl_limits(struct ctl_limits *l);
/* Resolves the request and starts the VM; files the request names are
 * opened with `who`'s rights. sandbox: the id of the sandbox it runs from
 * (its disk is the sandbox's), or NULL. Returns 0 when the callback will
 * report the outcome. */
int	vm_start(const struct ctl_start *req, const char *sandbox,
	    uint64_t owner, const struct caller *who, vm_start_cb cb,
	    void *arg, struct cap_err *err);
/* The id of the VM running from a sandbox (not yet stopped), or NULL;
 * its state's name in *state if state is not NULL. */
const char *vm_of_sandbox(const char *sandbox, const char **state);
/* Stops (or forgets, if it already ended) a VM; cb runs when it is gone,
 * possibly before vm_stop returns. */
void	vm_stop(struct vm *vm, vm_gone_cb cb, void *arg);
/* Would `mib` more MiB of disk (a sandbox, or an ephemeral VM's) take
 * who past user_max_disk_mib? Root is exempt. */
int	vm_check_disk(const struct caller *who, uint64_t mib,
	    struct cap_err *err);
/* Can a VM of req's architecture run here, with what req asks for? Checked
 * wherever a StartVM request is taken: StartVM, CreateSandbox, SetPool. */
int	vm_check_arch(const struct ctl_start *req, struct cap_err *err);
/* PauseVM / ResumeVM (on: pause). A running VM pauses; a paused one
 * resumes; anything else is a conflict saying its state. */
int	vm_pause(struct vm *vm, int on, struct cap_err *err);
/* Stops every VM of `owner`; returns how many callbacks to expect. */
int	vm_stop_owned(uint64_t owner, vm_gone_cb cb, void *arg);
/* Stops every VM uid may see (root: all). */
int	vm_stop_visible(uid_t uid, vm_gone_cb cb, void *arg);
int	vm_stop_all(vm_gone_cb cb, void *arg);
void	vm_owner_gone(uint64_t owner);

struct vm *vm_find(const char *id);
/* May uid see and act on vm? Its owner and root may. */
int	vm_visible(const struct vm *vm, uid_t uid);
uid_t	vm_owner_uid(const struct vm *vm);
const char *vm_id(const struct vm *vm);
enum vm_state vm_state(const struct vm *vm);
const char *vm_state_name(enum vm_state s);
json_t	*vm_json(const struct vm *vm);
/* The VMs uid may see (root: all). */
json_t	*vm_list_json(uid_t uid);
/* StartVM's reply fields. */
json_t	*vm_started_json(const struct vm *vm);
/* Does a VM that is not over yet, of uid's (0: anyone's), boot the
 * image with this digest? */
int	vm_image_in_use(const char *digest, uid_t uid);
int	vm_count(void);
/* How many are in state s. */
int	vm_count_state(enum vm_state s);
/* How many uid may see (root: all) in state s, or in any state if s < 0. */
int	vm_count_visible(uid_t uid, int s);

#endif /* CAPSULE_VM_H */
