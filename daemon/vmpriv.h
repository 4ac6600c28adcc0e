/*
 * vmpriv.h — what vm.c shares with vmadopt.c and vmidle.c, and no one
 * else: a VM's fields, the registry and the parts of the state machine
 * that taking a VM over re-enters.
 */
#ifndef CAPSULE_VMPRIV_H
#define CAPSULE_VMPRIV_H

#include <sys/queue.h>

#include "agent.h"
#include "caller.h"
#include "egress.h"
#include "oci.h"
#include "procid.h"
#include "publish.h"
#include "proxy.h"
#include "sink.h"
#include "vm.h"
#include "vmfiles.h"
#include "vmspec.h"
#include "vmstate.h"

struct vm_waiter {
	vm_gone_cb	 cb;
	void		*arg;
};

struct vm {
	TAILQ_ENTRY(vm)	 entry;
	char		 id[37];
	enum vm_state	 state;
	uint64_t	 owner;		/* the control connection's id */
	struct caller	 who;		/* who asked for it */
	struct vm_spec	 spec;
	struct oci_config image_cfg;	/* its image's exec defaults */
	struct vm_files	 files;
	int		 files_busy;	/* vmfiles_open in flight */
	int		 have_files;

	struct hv_vm	*hv;
	uid_t		 uid;		/* the hypervisor's, 0 if unchanged */
	struct procid	 proc;
	int		 exited;
	struct hv_exit	 exit;
	long long	 created_at;
	uint64_t	 t0, t_spawn, t_ready;
	uint32_t	 guest_boot_ms;

	struct agent	*agent;
	int		 agent_ready;	/* HELLO seen on this channel */
	int		 adopted;	/* taken over from an earlier daemon */
	struct caller_job *rebind;	/* adopted: making the exec socket */
	struct caller_op rebind_op;
	struct caller_ident console_id;	/* the console log file */
	struct proxy	*proxy;
	struct egress	*egress;	/* network mode allow */
	struct egress_stats egress_last; /* ... its counts once it went */
	struct publish	*publish;	/* published ports, if any */
	int		 net_sent;	/* NET sent, NET_DONE awaited */
	struct sink	*console;
	struct sink	*hvlog;
	struct event	*timer;
	struct event	*idle_ev;	/* idle_timeout: vmidle.c */
	uint64_t	 idle_since;	/* last busy, ms */
	int		 stop_phase;	/* 0 shutdown sent, 1 quit sent */
	char		 chan_error[512]; /* the channel failed while running */
	int		 failing;	/* will end as crashed / failed start */
	int		 silent;	/* the agent stopped answering */
	int		 paused;	/* QEMU paused the guest */
	uint64_t	 pool;		/* the warm pool it was started for */
	char		*ident;		/* vmtemplate_key of what it runs */
	struct vmcapture *capture;	/* being saved whole (vmstate.c) */
	const struct vmstate_src *restore_src; /* starts from a save */

	/* Start templates (vmtemplate.c). */
	char		*tmpl_key;	/* its spec's, if it may use one */
	int		 tmpl_ram;	/* cold: the guest's RAM (a memfd) */
	int		 tmpl_state;	/* the device state, being written
					 * (capture) or to read (restore) */
	enum { VMT_NONE, VMT_CAPTURING, VMT_RESTORING, VMT_REFRESHING }
			 tmpl_phase;
	int		 tmpl_lost;	/* restoring it failed */
	const char	*start_how;	/* "cold" or "restored" */
	char		 start_note[256];

	vm_start_cb	 start_cb;
	void		*start_arg;
	struct cap_err	 start_err;
	struct vm_waiter *waiters;
	size_t		 nwaiters;
	char		 error[1024];	/* why it crashed or hangs */
};

/* The registry: every VM capsuled knows, and what they share. */
struct vm_core {
	struct vm_env	 env;
	struct vm_limits limits;
	TAILQ_HEAD(, vm) vms;
	int		 vms_fd;	/* <state>/vms */
	int		 run_fd;	/* <state>/run */
	int		 shutting_down;	/* no new VMs once capsuled stops */
};
extern struct vm_core vm_core;

extern const struct agent_cbs vm_agent_cbs;
extern const struct hv_cbs vm_hv_cbs;
extern const struct proxy_cbs vm_proxy_cbs;

void	vm_event(const struct vm *vm, const char *event, json_t *fields);
void	vm_arm_timer(struct vm *vm, unsigned seconds);
void	vm_timer_cb(evutil_socket_t fd, short what, void *arg);
int	vm_write_record(struct vm *vm, struct cap_err *err);
void	vm_report_start(struct vm *vm, const struct cap_err *err);
void	vm_release(struct vm *vm, const char *why);
struct vm *vm_alloc(void);
void	vm_free(struct vm *vm);
void	vm_running(struct vm *vm);
/* vmpool.c's: a start for pool (the VM is pooled until vm_unpool). */
int	vm_start_pooled(const struct ctl_start *req, const struct caller *who,
	    uint64_t pool, vm_start_cb cb, void *arg, struct vm **out,
	    struct cap_err *err);
void	vm_unpool(struct vm *vm, uint64_t owner);
/* vmfork.c's and vmsnap.c's: a VM that starts from src (kept by the
 * caller until cb). */
int	vm_start_restored(const struct ctl_start *req, const struct caller *who,
	    uint64_t owner, const struct vmstate_src *src, vm_start_cb cb,
	    void *arg, struct vm **out, struct cap_err *err);
void	vm_fail_start(struct vm *vm, const char *code, const char *what);
/* A start that failed before the hypervisor ran: released, reported. */
void	vm_abort_start(struct vm *vm, const struct cap_err *err);
/* vmstart.c: resolves req, opens the VM's files and starts its
 * hypervisor; sandbox, pool and src as vm_start and its variants. */
int	vmstart(const struct ctl_start *req, const char *sandbox,
	    uint64_t owner, const struct caller *who, uint64_t pool,
	    const struct vmstate_src *src, vm_start_cb cb, void *arg,
	    struct vm **out, struct cap_err *err);
void	vm_fail_running(struct vm *vm, const char *why);
/* Would `count` more VMs of this size take who past user_max_*? */
int	vm_check_quota(const struct caller *who, unsigned count,
	    unsigned vcpus, uint64_t mem, struct cap_err *err);
/* The guest's hostname: capsule-<the first 8 characters of its id>. */
void	vm_hostname(const struct vm *vm, char *out, size_t len);

/* vmstate.c: hv_event: a save is over (1 if it was a capture's); gone: a
 * VM being captured is released; prepare: the disk and saved state of a
 * VM that starts from restore_src, as vmtemplate_prepare. */
int	vmstate_hv_event(struct vm *vm, enum hv_event ev);
void	vmstate_gone(struct vm *vm);
int	vmstate_prepare(struct vm *vm, struct hv_vm_config *cfg, int *disk,
	    struct cap_err *err);

/* vmtemplate.c: a start's use of templates. prepare: before the
 * hypervisor starts (sets cfg's RAM; *disk is the VM's disk if it made
 * one, else -1). capture: at ready after a boot, 1 if it took over.
 * hello: a HELLO while starting, 1 if it was the answer to a REFRESH
 * (or is to be ignored). lost: a restored VM failed to start (1 if it was one; the template
 * goes). */
int	vmtemplate_prepare(struct vm *vm, struct hv_vm_config *cfg, int *disk,
	    struct cap_err *err);
/* What a VM of this config runs, as a template key (a new string). */
char	*vmtemplate_key(const struct vm *vm, const struct hv_vm_config *cfg);
int	vmtemplate_capture(struct vm *vm);
int	vmtemplate_hello(struct vm *vm);
void	vmtemplate_hv_event(struct vm *vm, enum hv_event ev);
int	vmtemplate_lost(struct vm *vm, int drop);
int	vmtemplate_timeout(struct vm *vm);
#define VMT_RESTORE_S	10	/* a restore answers within this, or boots */
#define VMT_SAVE_S	10	/* taking a template, at most */
void	vmtemplate_release(struct vm *vm);

/* The VM's network parts (egress, published ports) for its spec;
 * publishing binds its host ports now. */
int	vm_net_open(struct vm *vm, struct cap_err *err);
extern const struct publish_cbs vm_publish_cbs;

/* vmadopt.c: an adopted VM's exec socket serves from now on, if it is
 * ready to (made again, and the agent answered or was given up on). */
void	vmadopt_serve(struct vm *vm);
/* vmidle.c: from running on, for a VM with an idle timeout. */
void	vmidle_start(struct vm *vm);
void	vmidle_stop(struct vm *vm);

#endif /* CAPSULE_VMPRIV_H */
