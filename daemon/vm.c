/*
 * vm.c — the VM registry and each VM's state machine (see vm.h).
 *
 * The parts a VM is made of live elsewhere: its configuration (vmspec.c),
 * its files (vmfiles.c), its persisted record (record.c), the hypervisor
 * (hv/), the agent channel (agent.c), the exec socket (proxy.c) and its
 * capped logs (sink.c); starting one is vmstart.c's, taking VMs over
 * from an earlier daemon vmadopt.c's. This file keeps the registry,
 * reacts to what a VM's parts report, and takes them down again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "disk.h"
#include "sandbox.h"
#include "events.h"
#include "image.h"
#include "vmlimits.h"
#include "log.h"
#include "procid.h"
#include "proto.h"
#include "proxy.h"
#include "record.h"
#include "sink.h"
#include "util.h"
#include "vm.h"
#include "vmfiles.h"
#include "template.h"
#include "vmpool.h"
#include "vmsnap.h"
#include "vmpriv.h"
#include "vmspec.h"

#define VM_SHUTDOWN_GRACE_S	10	/* agent syncs and powers off */
#define VM_QUIT_GRACE_S		5	/* QMP quit, then SIGKILL */
#define VM_CHAN_LOST_GRACE_S	2	/* channel gone: is QEMU exiting? */
#define VM_CONSOLE_TAIL		1536
struct vm_core vm_core = {
	.limits = { .console_max = 10 * 1024 * 1024 },
	.vms = TAILQ_HEAD_INITIALIZER(vm_core.vms),
	.vms_fd = -1,
	.run_fd = -1,
};

/* Makes or opens one of capsuled's directories in the state dir: it must
 * be capsuled's, a directory (not a link), and writable by it alone. */
static int
vm_state_subdir(const char *name, mode_t mode, struct cap_err *err)
{
	char dir[PATH_MAX];
	struct stat st;
	int fd;

	if (snprintf(dir, sizeof(dir), "%s/%s", vm_core.env.state_dir, name) >=
	    (int)sizeof(dir))
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "state directory path is too long");
	if (mkdir(dir, mode) < 0 && errno != EEXIST)
		return cap_err_set(err, errno, E_INTERNAL, "cannot create %s: "
		    "%s", dir, strerror(errno));
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open %s: %s "
		    "(it must be a directory, not a link)", dir,
		    strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 07777 & ~mode) != 0) {
		close(fd);
		return cap_err_set(err, EPERM, E_INTERNAL, "%s must belong to "
		    "capsuled's uid %u with mode %04o at most", dir,
		    (unsigned)geteuid(), (unsigned)mode);
	}
	/* Mode exactly as wanted (mkdir is subject to the umask). */
	if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0) {
		close(fd);
		return cap_err_set(err, errno, E_INTERNAL, "chmod %s: %s", dir,
		    strerror(errno));
	}
	return fd;
}

/* <state>/vms (0700) holds the private dirs; <state>/run (0711) the run
 * dirs given to VMs' owners, who may reach their own by name only. */
int
vm_init(const struct vm_env *e, struct cap_err *err)
{
	int fd;

	vm_core.env = *e;
	if ((vm_core.vms_fd = vm_state_subdir(VMSPEC_PRIVATE, 0700, err)) < 0)
		return vm_core.vms_fd;
	if ((fd = vm_state_subdir(VMSPEC_PUBLIC, 0711, err)) < 0)
		return fd;
	vm_core.run_fd = fd;
	/* Start templates: capsuled's alone, like the private dirs. */
	if ((fd = vm_state_subdir(TEMPLATE_DIR, 0700, err)) < 0)
		return fd;
	template_init(fd);
	return 0;
}

void
vm_set_limits(const struct vm_limits *l)
{
	vm_core.limits = *l;
}

void
vm_ctl_limits(struct ctl_limits *l)
{
	l->max_vcpus = util_host_cpus();
	l->max_memory_mib = util_host_memory_mib();
	l->default_vcpus = vm_core.limits.default_vcpus;
	l->default_memory_mib = vm_core.limits.default_memory_mib;
}

int
vm_visible(const struct vm *vm, uid_t uid)
{
	return uid == 0 || vm->who.uid == uid;
}

uid_t
vm_owner_uid(const struct vm *vm)
{
	return vm->who.uid;
}

int
vm_count_state(enum vm_state st)
{
	struct vm *vm;
	int n = 0;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->state == st)
			n++;
	return n;
}

int
vm_count_visible(uid_t uid, int st)
{
	struct vm *vm;
	int n = 0;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm_visible(vm, uid) && (st < 0 || (int)vm->state == st))
			n++;
	return n;
}

void
vm_event(const struct vm *vm, const char *event, json_t *fields)
{
	events_emit(event, vm->id, vm->who.uid, fields);
}

/* Would `count` more VMs of this size take their owner past a limit?
 * Root is the admin and exempt. */
int
vm_check_quota(const struct caller *who, unsigned count, unsigned vcpus,
    uint64_t mem, struct cap_err *err)
{
	const struct vm_limits *l = &vm_core.limits;
	unsigned n = count, cpus = count * vcpus;
	uint64_t mib = count * mem;
	struct vm *vm;

	if (who->uid == 0)
		return 0;
	TAILQ_FOREACH(vm, &vm_core.vms, entry) {
		if (vm->who.uid != who->uid || vm->state == VM_STOPPED ||
		    vm->state == VM_CRASHED)
			continue;
		n++;
		cpus += vm->spec.vcpus;
		mib += vm->spec.memory_mib;
	}
	if (l->user_max_vms > 0 && n > l->user_max_vms)
		return cap_err_set(err, EDQUOT, E_LIMIT, "uid %u may run at most "
		    "%u VMs at once (user_max_vms) and runs %u", (unsigned)
		    who->uid, l->user_max_vms, n - count);
	if (l->user_max_vcpus > 0 && cpus > l->user_max_vcpus)
		return cap_err_set(err, EDQUOT, E_LIMIT, "uid %u may use at most "
		    "%u vCPUs at once (user_max_vcpus); this VM would make it "
		    "%u", (unsigned)who->uid, l->user_max_vcpus, cpus);
	if (l->user_max_memory_mib > 0 && mib > l->user_max_memory_mib)
		return cap_err_set(err, EDQUOT, E_LIMIT, "uid %u may use at most "
		    "%llu MiB of VM memory at once (user_max_memory_mib); this "
		    "VM would make it %llu", (unsigned)who->uid,
		    (unsigned long long)l->user_max_memory_mib,
		    (unsigned long long)mib);
	return 0;
}

const char *
vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_STARTING:	return VMSTATE_STARTING;
	case VM_RUNNING:	return VMSTATE_RUNNING;
	case VM_UNRESPONSIVE:	return VMSTATE_UNRESPONSIVE;
	case VM_PAUSED:		return VMSTATE_PAUSED;
	case VM_STOPPING:	return VMSTATE_STOPPING;
	case VM_STOPPED:	return VMSTATE_STOPPED;
	case VM_CRASHED:	return VMSTATE_CRASHED;
	}
	return "unknown";
}

const char *
vm_id(const struct vm *vm)
{
	return vm->id;
}

enum vm_state
vm_state(const struct vm *vm)
{
	return vm->state;
}

struct vm *
vm_find(const char *id)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (strcmp(vm->id, id) == 0)
			return vm;
	return NULL;
}

int
vm_count(void)
{
	struct vm *vm;
	int n = 0;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		n++;
	return n;
}

/* A new struct vm, its fds all -1. */
struct vm *
vm_alloc(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (vm != NULL)
		vm->tmpl_ram = vm->tmpl_state = -1;
	return vm;
}

void
vm_free(struct vm *vm)
{
	if (vm->timer != NULL)
		event_free(vm->timer);
	vmidle_stop(vm);
	vmtemplate_release(vm);
	if (vm->rebind != NULL)
		caller_cancel(vm->rebind);
	publish_free(vm->publish);
	egress_free(vm->egress);
	vmspec_free(&vm->spec);
	free(vm->ident);
	oci_config_free(&vm->image_cfg);
	free(vm->waiters);
	free(vm);
}

static void
vm_exit_text(const struct hv_exit *ex, char *buf, size_t len)
{
	if (!ex->have_status)
		snprintf(buf, len, "ended");
	else if (WIFEXITED(ex->wstatus))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(ex->wstatus));
	else if (WIFSIGNALED(ex->wstatus))
		snprintf(buf, len, "was killed by signal %d (%s)",
		    WTERMSIG(ex->wstatus), strsignal(WTERMSIG(ex->wstatus)));
	else
		snprintf(buf, len, "ended (status 0x%x)", ex->wstatus);
}

/* "<what>; QEMU said: ...; guest console: ..." for error messages. */
static void
vm_describe_failure(struct vm *vm, const char *what, char *buf, size_t len)
{
	char qlog[512], con[VM_CONSOLE_TAIL], *p, *q, *line;
	int n;

	sink_drain(vm->hvlog);
	sink_drain(vm->console);
	sink_tail(vm->hvlog, qlog, sizeof(qlog));
	sink_tail(vm->console, con, sizeof(con));
	/* Keep QEMU's errors, drop its "info:" chatter; one line. */
	for (p = q = qlog; (line = strsep(&p, "\n")) != NULL;) {
		size_t m = strlen(line);

		if (m == 0 || strstr(line, ": info: ") != NULL)
			continue;
		if (q != qlog)
			*q++ = ' ';
		memmove(q, line, m);
		q += m;
	}
	*q = '\0';
	n = snprintf(buf, len, "%s", what);
	if (qlog[0] && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, "; %s said: %s",
		    vm_core.env.hv->name, qlog);
	if (n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "; guest console (%s) "
		    "ends with: %s", vm->spec.console_path, con[0] ? con :
		    "(nothing)");
}

/* Releases everything the VM holds but its entry: channel, exec socket,
 * logs, hypervisor, files. The record itself stays until vm_remove. */
void
vm_release(struct vm *vm, const char *why)
{
	if (vm->timer != NULL)
		event_del(vm->timer);
	vmidle_stop(vm);
	vmtemplate_release(vm);
	vmstate_gone(vm);
	/* An adopted VM's exec socket still being made: that job must not
	 * report to a VM that is gone. */
	if (vm->rebind != NULL) {
		caller_cancel(vm->rebind);
		vm->rebind = NULL;
	}
	if (vm->agent != NULL) {
		agent_free(vm->agent, why);
		vm->agent = NULL;
	}
	if (vm->proxy != NULL) {
		proxy_free(vm->proxy, why);
		vm->proxy = NULL;
	}
	publish_free(vm->publish);
	vm->publish = NULL;
	if (vm->egress != NULL) {
		egress_stats(vm->egress, &vm->egress_last);
		egress_free(vm->egress);
		vm->egress = NULL;
	}
	if (vm->hv != NULL) {
		vm_core.env.hv->free(vm->hv);
		vm->hv = NULL;
	}
	sink_free(vm->console);
	sink_free(vm->hvlog);
	vm->console = vm->hvlog = NULL;
	if (vm->files_busy) {
		vmfiles_cancel(&vm->files);
		vm->files_busy = 0;
	} else if (vm->have_files) {
		vmfiles_release(&vm->files);
	}
	vm->have_files = 0;
}

static void
vm_remove(struct vm *vm)
{
	struct vm_waiter *w = vm->waiters;
	size_t n = vm->nwaiters;
	char id[37];

	TAILQ_REMOVE(&vm_core.vms, vm, entry);
	vmpool_vm_gone(vm);
	memcpy(id, vm->id, sizeof(id));
	vm->waiters = NULL;
	vm_free(vm);
	for (size_t i = 0; i < n; i++)
		w[i].cb(id, w[i].arg);
	free(w);
}

static void
vm_add_waiter(struct vm *vm, vm_gone_cb cb, void *arg)
{
	struct vm_waiter *w;

	if (cb == NULL)
		return;
	w = realloc(vm->waiters, (vm->nwaiters + 1) * sizeof(*w));
	if (w == NULL) {
		log_error("%s: out of memory", __func__);
		return;
	}
	vm->waiters = w;
	w[vm->nwaiters].cb = cb;
	w[vm->nwaiters].arg = arg;
	vm->nwaiters++;
}

void
vm_arm_timer(struct vm *vm, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	evtimer_add(vm->timer, &tv);
}

/* Tells the start's requester, once. */
void
vm_report_start(struct vm *vm, const struct cap_err *err)
{
	vm_start_cb cb = vm->start_cb;

	vm->start_cb = NULL;
	if (cb != NULL)
		cb(err != NULL ? NULL : vm, err, vm->start_arg);
}

/* A start that failed before QEMU ran: release, report, forget. */
void
vm_abort_start(struct vm *vm, const struct cap_err *err)
{
	log_warn("vm %s: start failed: %s", vm->id, err->msg);
	vm_event(vm, EV_START_FAILED, json_pack("{s:s}", J_ERROR, err->msg));
	vm_release(vm, "the VM failed to start");
	vm_report_start(vm, err);
	vm_remove(vm);
}

/* The start failed after QEMU ran: remember why, make the process go,
 * and report once it has been reaped and everything is released. */
void
vm_fail_start(struct vm *vm, const char *code, const char *what)
{
	char msg[sizeof(vm->start_err.msg)];

	if (vm->failing)
		return;
	vm->failing = 1;
	vm_describe_failure(vm, what, msg, sizeof(msg));
	/* ESTALE: a restore failed, and a boot may do (control.c). */
	cap_err_set(&vm->start_err, vm->tmpl_lost ? ESTALE : EIO, code, "%s",
	    msg);
	log_warn("vm %s: start failed: %s", vm->id, msg);
	vm->state = VM_STOPPING;
	if (!vm->exited)
		vm_core.env.hv->kill(vm->hv);
}

/* The VM cannot go on: end its execs with why, and its process. */
void
vm_fail_running(struct vm *vm, const char *why)
{
	if (vm->failing)
		return;
	snprintf(vm->error, sizeof(vm->error), "%s", why);
	log_error("vm %s: %s; stopping it", vm->id, why);
	vm->failing = 1;
	vm->state = VM_STOPPING;
	if (vm->agent != NULL)
		agent_end_streams(vm->agent, why);
	vm->stop_phase = 1;
	if (vm_core.env.hv->quit(vm->hv, NULL) < 0)
		vm_core.env.hv->kill(vm->hv);
	vm_arm_timer(vm, VM_QUIT_GRACE_S);
}

/* The exec socket asks whether a command may start now. */
static struct agent *
vm_proxy_agent(void *arg, char *why, size_t len)
{
	struct vm *vm = arg;

	if (vm->state == VM_RUNNING && vm->capture != NULL) {
		snprintf(why, len, "VM %s is being saved; try again in a "
		    "moment", vm->id);
		return NULL;
	}
	if (vm->state == VM_RUNNING && vm->agent != NULL && vm->agent_ready)
		return vm->agent;
	if (vm->state == VM_RUNNING) {
		snprintf(why, len, "VM %s is reconnecting to its guest agent; "
		    "try again in a moment", vm->id);
		return NULL;
	}
	if (vm->state == VM_UNRESPONSIVE || vm->error[0])
		snprintf(why, len, "VM %s is %s: %s", vm->id,
		    vm_state_name(vm->state), vm->error);
	else
		snprintf(why, len, "VM %s is %s", vm->id,
		    vm_state_name(vm->state));
	return NULL;
}

const struct proxy_cbs vm_proxy_cbs = { .agent = vm_proxy_agent };

static int	vm_send_net(struct vm *, struct cap_err *);

/* A stream the guest opened: its network's business. */
static void
vm_agent_open(struct agent *a, struct agent_stream *s,
    const struct chan_open *o, void *arg)
{
	struct vm *vm = arg;

	/* Not while it is being saved: a copy could not go on with it. */
	if (vm->egress != NULL && vm->capture == NULL &&
	    (vm->state == VM_RUNNING || vm->state == VM_STARTING))
		egress_open(vm->egress, s, o);
	/* Else not taken: refused. A VM without "allow" has no way out. */
}

static struct agent *
vm_publish_agent(void *arg)
{
	struct vm *vm = arg;

	return vm->state == VM_RUNNING && vm->agent_ready ? vm->agent : NULL;
}

const struct publish_cbs vm_publish_cbs = { .agent = vm_publish_agent };

int
vm_net_open(struct vm *vm, struct cap_err *err)
{
	int r;

	if (vm->spec.network.mode == NETPOL_ALLOW &&
	    (vm->egress = egress_new(vm_core.env.base, vm->id, vm->who.uid,
	    &vm->spec.network)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if (vm->spec.npublish > 0 && (r = publish_open(vm_core.env.base,
	    vm->id, vm->spec.publish, vm->spec.npublish, vm->who.uid,
	    &vm_publish_cbs, vm, &vm->publish, err)) < 0)
		return r;
	return 0;
}

static void
vm_agent_ready(struct agent *a, uint32_t guest_boot_ms, void *arg)
{
	struct vm *vm = arg;
	struct cap_err err;

	vm->agent_ready = 1;
	if (vm->adopted && vm->state != VM_STARTING) {
		/* An adopted guest's agent said HELLO again: ours once more. */
		event_del(vm->timer);
		if (vm->state == VM_UNRESPONSIVE && !vm->paused) {
			vm->state = VM_RUNNING;
			vm->error[0] = '\0';
		}
		log_info("vm %s: its guest agent answers again", vm->id);
		vm_event(vm, EV_READY, NULL);
		vmadopt_serve(vm);
		return;
	}
	if (vm->state != VM_STARTING || vm->failing)
		return;
	if (vmtemplate_hello(vm))
		return;
	vm->guest_boot_ms = guest_boot_ms;
	if (vm->spec.network.mode != NETPOL_NONE) {
		/* Ready once the guest's network is set up (fail closed). */
		if (vm_send_net(vm, &err) < 0)
			vm_fail_start(vm, err.code, err.msg);
		return;
	}
	if (!vmtemplate_capture(vm))
		vm_running(vm);
}

/* The agent set the guest's network up, or could not. */
static void
vm_agent_net_done(struct agent *a, uint32_t code, const char *msg,
    size_t len, void *arg)
{
	struct vm *vm = arg;
	char why[CHAN_MAX_MSG + 128];

	if (!vm->net_sent || vm->state != VM_STARTING || vm->failing) {
		log_warn("vm %s: the guest agent answered a NET it was not "
		    "sent", vm->id);
		return;
	}
	vm->net_sent = 0;
	if (code != 0) {
		snprintf(why, sizeof(why), "the guest could not set up network "
		    "mode %s: %.*s", netpol_mode_name(vm->spec.network.mode),
		    (int)len, len > 0 ? msg : strerror((int)code));
		vm_fail_start(vm, E_VM_FAILED, why);
		return;
	}
	if (!vmtemplate_capture(vm))
		vm_running(vm);
}

/* The guest's half of allow and nat: sent once per guest boot. */
static int
vm_send_net(struct vm *vm, struct cap_err *err)
{
	struct chan_net n;
	const struct netpol *p = &vm->spec.network;

	memset(&n, 0, sizeof(n));
	if (p->mode == NETPOL_NAT) {
		n.mode = CHAN_NET_NAT;
		n.addr = htonl(0x0a00020f);	/* 10.0.2.15, slirp's */
		n.prefix = 24;
		n.gateway = htonl(0x0a000202);
		n.dns = htonl(0x0a000203);
	} else {
		n.mode = CHAN_NET_ALLOW;
		/* Address entries: routed to the agent, then to us. */
		for (size_t i = 0; i < p->nentries; i++) {
			const struct netpol_entry *e = &p->entries[i];

			if (e->kind != NETPOL_CIDR ||
			    n.nroutes >= CHAN_NET_MAX_ROUTES)
				continue;
			n.routes[n.nroutes].net = htonl(e->net);
			n.routes[n.nroutes].prefix = e->prefix;
			n.nroutes++;
		}
	}
	if (agent_net(vm->agent, &n, err) < 0)
		return -1;
	vm->net_sent = 1;
	return 0;
}

/* Starting is done: the exec socket serves, published ports accept. */
void
vm_running(struct vm *vm)
{
	struct cap_err err;

	vm->proxy = proxy_new(vm_core.env.base, TAKE_FD(vm->files.proxy),
	    vm->spec.image ? &vm->image_cfg : NULL,
	    vm->id, vm->who.uid, &vm_proxy_cbs, vm, &err);
	if (vm->proxy == NULL) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	publish_start(vm->publish);
	event_del(vm->timer);
	vm->t_ready = util_now_ms();
	vm->state = VM_RUNNING;
	log_info("vm %s: running (pid %d, %s, ready in %llu ms)", vm->id,
	    (int)vm->proc.pid, hv_accel_name(vm_core.env.caps.accel),
	    (unsigned long long)(vm->t_ready - vm->t0));
	vm_event(vm, EV_READY, json_pack("{s:I}", T_VM_READY,
	    (json_int_t)(vm->t_ready - vm->t0)));
	vmidle_start(vm);
	vm_report_start(vm, NULL);
}

static void
vm_agent_failed(struct agent *a, const char *why, void *arg)
{
	struct vm *vm = arg;

	if (vm->state == VM_STARTING) {
		vm_fail_start(vm, E_VM_FAILED, why);
		return;
	}
	if (vm->state != VM_RUNNING && vm->state != VM_UNRESPONSIVE)
		return;
	/* Usually the channel closes because QEMU is exiting; give the exit
	 * a moment to arrive so the VM's error (and what its execs are told)
	 * names the real cause. */
	snprintf(vm->chan_error, sizeof(vm->chan_error), "%s", why);
	vm_arm_timer(vm, VM_CHAN_LOST_GRACE_S);
}

/* Not answering: say so, and end what waits on it. */
static void
vm_unresponsive(struct vm *vm, const char *why)
{
	if (vm->state != VM_RUNNING && vm->state != VM_UNRESPONSIVE)
		return;
	snprintf(vm->error, sizeof(vm->error), "%s", why);
	if (vm->state == VM_RUNNING) {
		log_warn("vm %s: unresponsive: %s", vm->id, why);
		vm_event(vm, EV_UNRESPONSIVE, json_pack("{s:s}", J_ERROR,
		    why));
	}
	vm->state = VM_UNRESPONSIVE;
	if (vm->agent != NULL)
		agent_end_streams(vm->agent, vm->error);
}

/* Answering again (both the agent and QEMU agree). */
static void
vm_responsive(struct vm *vm)
{
	if (vm->state != VM_UNRESPONSIVE || vm->silent || vm->paused)
		return;
	log_info("vm %s: answering again", vm->id);
	vm->state = VM_RUNNING;
	vm->error[0] = '\0';
	vm_event(vm, EV_RESPONSIVE, NULL);
}

static void
vm_agent_silent(struct agent *a, unsigned ms, void *arg)
{
	struct vm *vm = arg;
	char why[160];

	vm->silent = 1;
	snprintf(why, sizeof(why), "the guest agent has not answered for "
	    "%u s (the guest is hung, frozen or overloaded)", ms / 1000);
	vm_unresponsive(vm, why);
}

static void
vm_agent_heard(struct agent *a, void *arg)
{
	struct vm *vm = arg;

	vm->silent = 0;
	vm_responsive(vm);
}

const struct agent_cbs vm_agent_cbs = {
	.ready = vm_agent_ready,
	.failed = vm_agent_failed,
	.silent = vm_agent_silent,
	.heard = vm_agent_heard,
	.open = vm_agent_open,
	.net_done = vm_agent_net_done,
};

void
vm_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	char msg[160];

	if ((vm->state == VM_RUNNING || vm->state == VM_UNRESPONSIVE) &&
	    vm->chan_error[0]) {
		snprintf(msg, sizeof(msg), "agent channel failed: ");
		strncat(msg, vm->chan_error, sizeof(msg) - strlen(msg) - 1);
		vm_fail_running(vm, msg);
		return;
	}
	if (vm->state == VM_STARTING && !vm->failing &&
	    vmtemplate_timeout(vm))
		return;
	if (vm->state == VM_STARTING) {
		snprintf(msg, sizeof(msg), "the guest agent was not ready "
		    "within launch_seconds=%u", vm->spec.launch_seconds);
		vm_fail_start(vm, E_TIMEOUT, msg);
		return;
	}
	if (vm->adopted && !vm->agent_ready && vm->state == VM_RUNNING) {
		vm_unresponsive(vm, "its guest agent did not answer after "
		    "capsuled took the VM over");
		vmadopt_serve(vm);
		return;
	}
	if (vm->state != VM_STOPPING || vm->exited)
		return;
	if (vm->stop_phase == 0) {
		log_warn("vm %s: guest did not power off within %d s; "
		    "asking %s to quit", vm->id, VM_SHUTDOWN_GRACE_S,
		    vm_core.env.hv->name);
		vm->stop_phase = 1;
		if (vm_core.env.hv->quit(vm->hv, NULL) < 0)
			vm_core.env.hv->kill(vm->hv);
		vm_arm_timer(vm, VM_QUIT_GRACE_S);
	} else {
		log_warn("vm %s: %s did not quit within %d s; killing pid %d",
		    vm->id, vm_core.env.hv->name, VM_QUIT_GRACE_S,
		    (int)vm->proc.pid);
		vm_core.env.hv->kill(vm->hv);
	}
}

int
vm_write_record(struct vm *vm, struct cap_err *err)
{
	struct record r;
	size_t k = 0;
	int rc;

	memset(&r, 0, sizeof(r));
	memcpy(r.vm_id, vm->id, sizeof(r.vm_id));
	snprintf(r.backend, sizeof(r.backend), "%s", vm_core.env.hv->name);
	if (procid_boot_id(r.boot_id) < 0)
		snprintf(r.boot_id, sizeof(r.boot_id), "%s",
		    "00000000-0000-0000-0000-000000000000");
	r.proc = vm->proc;
	r.owner_uid = vm->who.uid;
	r.created_at = vm->created_at;
	for (size_t i = 0; i < vm->files.nmade && k < VMFILES_MAX; i++) {
		const struct caller_made *m = &vm->files.made[i];

		r.made[k].dir = m->dir_path;
		r.made[k].dir_dev = m->dir_id.dev;
		r.made[k].dir_ino = m->dir_id.ino;
		r.made[k].dir_btime = m->dir_id.btime;
		r.made[k].name = m->name;
		r.made[k].dev = m->id.dev;
		r.made[k].ino = m->id.ino;
		r.made[k].btime = m->id.btime;
		r.made[k].type = m->type;
		k++;
	}
	r.nmade = k;
	/* Format 2: all it takes to adopt the VM. The spec is borrowed. */
	r.have_spec = 1;
	r.spec = vm->spec;
	r.owner_gid = vm->who.gid;
	r.owner_ngroups = vm->who.ngroups;
	memcpy(r.owner_groups, vm->who.groups,
	    vm->who.ngroups * sizeof(gid_t));
	if (vm->hv != NULL)
		vm_core.env.hv->exe(vm->hv, &r.hv_exe.dev, &r.hv_exe.ino);
	r.console = vm->console_id;
	rc = record_write(vm->files.private_fd, &r, err);
	return rc;
}

static void	vm_hv_exited(void *arg, const struct hv_exit *ex);
static void	vm_hv_event(void *arg, enum hv_event ev, const char *detail);

const struct hv_cbs vm_hv_cbs = {
	.exited = vm_hv_exited,
	.event = vm_hv_event,
};

int
vm_image_in_use(const char *digest, uid_t uid)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->spec.image != NULL && (uid == 0 || vm->who.uid == uid) &&
		    strcmp(vm->spec.image, digest) == 0 &&
		    vm->state != VM_STOPPED && vm->state != VM_CRASHED)
			return 1;
	return 0;
}

int
vm_check_arch(const struct ctl_start *req, struct cap_err *err)
{
	const struct hv_caps *c = &vm_core.env.caps;
	enum ctl_arch a = req->arch != CTL_ARCH_DEFAULT ? req->arch :
	    ctl_arch_host();

	if (a == CTL_ARCH_DEFAULT)
		return cap_err_set(err, ENOTSUP, E_INVALID_ARGUMENT, "capsule "
		    "does not know this host's architecture: give \"%s\"",
		    J_ARCH);
	if (c->arch_accel[a] == HV_ACCEL_AUTO)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "%s guests "
		    "cannot run here: %s", ctl_arch_name(a), c->arch_why[a]);
	/* Images are pulled and imported for the host's architecture. */
	if (req->image != NULL && a != ctl_arch_host())
		return cap_err_set(err, ENOTSUP, E_INVALID_ARGUMENT, "images "
		    "are pulled for %s; an %s guest needs its own root file "
		    "system (rootfs_path, or the default image)",
		    ctl_arch_name(ctl_arch_host()), ctl_arch_name(a));
	return 0;
}

int
vm_check_disk(const struct caller *who, uint64_t mib, struct cap_err *err)
{
	const struct vm_limits *l = &vm_core.limits;
	uint64_t total;
	struct vm *vm;

	if (who->uid == 0 || l->user_max_disk_mib == 0)
		return 0;
	total = mib + sandbox_disk_total(who->uid) + vmsnap_mib(who->uid);
	/* A sandbox's VM uses the sandbox's disk, counted above. */
	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->who.uid == who->uid && vm->spec.sandbox == NULL &&
		    vm->state != VM_STOPPED && vm->state != VM_CRASHED)
			total += vm->spec.disk_mib;
	if (total > l->user_max_disk_mib)
		return cap_err_set(err, EDQUOT, E_LIMIT, "uid %u may have at "
		    "most %llu MiB of VM disks (user_max_disk_mib: sandboxes, "
		    "snapshots and running VMs); this would make it %llu", (unsigned)
		    who->uid, (unsigned long long)l->user_max_disk_mib,
		    (unsigned long long)total);
	return 0;
}

const char *
vm_of_sandbox(const char *sandbox, const char **state)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->spec.sandbox != NULL &&
		    strcmp(vm->spec.sandbox, sandbox) == 0 &&
		    vm->state != VM_STOPPED && vm->state != VM_CRASHED) {
			if (state != NULL)
				*state = vm_state_name(vm->state);
			return vm->id;
		}
	return NULL;
}

void
vm_hostname(const struct vm *vm, char *out, size_t len)
{
	snprintf(out, len, "capsule-%.8s", vm->id);
}

int
vm_start(const struct ctl_start *req, const char *sandbox, uint64_t owner,
    const struct caller *who, vm_start_cb cb, void *arg, struct cap_err *err)
{
	struct vm *vm;

	return vmstart(req, sandbox, owner, who, 0, NULL, cb, arg, &vm,
	    err);
}

int
vm_start_pooled(const struct ctl_start *req, const struct caller *who,
    uint64_t pool, vm_start_cb cb, void *arg, struct vm **out,
    struct cap_err *err)
{
	return vmstart(req, NULL, 0, who, pool, NULL, cb, arg, out, err);
}

int
vm_start_restored(const struct ctl_start *req, const struct caller *who,
    uint64_t owner, const struct vmstate_src *src, vm_start_cb cb, void *arg,
    struct vm **out, struct cap_err *err)
{
	return vmstart(req, NULL, owner, who, 0, src, cb, arg, out, err);
}

/* A pooled VM becomes its new owner's, as if it had just started. */
void
vm_unpool(struct vm *vm, uint64_t owner)
{
	struct cap_err err;

	vm->spec.pooled = 0;
	vm->owner = owner;
	vm->t0 = vm->t_spawn = vm->t_ready = util_now_ms();
	vm->idle_since = vm->t0;
	vm->start_how = "pooled";
	vm->start_note[0] = '\0';
	/* Its record must no longer say pooled: a later capsuled keeps it. */
	if (vm_write_record(vm, &err) < 0)
		log_warn("vm %s: %s", vm->id, err.msg);
	log_info("vm %s: handed out of its pool", vm->id);
	vm_event(vm, EV_READY, json_pack("{s:I}", T_VM_READY, (json_int_t)0));
}

/* How a VM that ended on its own ended: state and words. */
static void
vm_settle(struct vm *vm)
{
	char how[128], msg[sizeof(vm->error)];
	const struct hv_exit *ex = &vm->exit;

	if (vm->failing) {
		vm->state = VM_CRASHED;
		if (vm->error[0] == '\0')
			snprintf(vm->error, sizeof(vm->error), "it failed");
		return;
	}
	switch (ex->end) {
	case HV_END_POWEROFF:
		vm->state = VM_STOPPED;
		snprintf(vm->error, sizeof(vm->error), "the guest powered off");
		return;
	case HV_END_REBOOT:
		vm->state = VM_STOPPED;
		snprintf(vm->error, sizeof(vm->error), "the guest rebooted; "
		    "a capsule VM ends when its guest reboots");
		return;
	case HV_END_PANIC:
		vm->state = VM_CRASHED;
		vm_describe_failure(vm, "the guest kernel panicked",
		    vm->error, sizeof(vm->error));
		return;
	default:
		break;
	}
	vm_exit_text(ex, how, sizeof(how));
	if (ex->have_status && WIFEXITED(ex->wstatus) &&
	    WEXITSTATUS(ex->wstatus) == 0 && ex->end != HV_END_SIGNAL) {
		vm->state = VM_STOPPED;
		snprintf(vm->error, sizeof(vm->error), "%s %s",
		    vm_core.env.hv->name, how);
		return;
	}
	vm->state = VM_CRASHED;
	snprintf(msg, sizeof(msg), "%s %s unexpectedly%s",
	    vm_core.env.hv->name, how, ex->end == HV_END_SIGNAL ?
	    " (a signal told it to end)" : "");
	vm_describe_failure(vm, msg, vm->error, sizeof(vm->error));
}

/* The hypervisor process is gone: settle the VM's fate. */
static void
vm_hv_exited(void *arg, const struct hv_exit *ex)
{
	struct vm *vm = arg;
	char how[128], msg[sizeof(vm->error) + 32];

	vm->exited = 1;
	vm->exit = *ex;
	vm_exit_text(ex, how, sizeof(how));
	if (vm->state == VM_STARTING && !vm->failing) {
		vmtemplate_lost(vm, 1);
		snprintf(msg, sizeof(msg), "%s %s before the guest agent was "
		    "ready", vm_core.env.hv->name, how);
		vm_fail_start(vm, E_VM_FAILED, msg);
	}
	if (vm->start_cb != NULL) {
		vm_event(vm, EV_START_FAILED, json_pack("{s:s}", J_ERROR,
		    vm->start_err.msg));
		vm_release(vm, "the VM failed to start");
		vm_report_start(vm, &vm->start_err);
		vm_remove(vm);
		return;
	}
	if (vm->state == VM_STOPPING && !vm->failing) {
		log_info("vm %s: stopped", vm->id);
		vm->state = VM_STOPPED;
		vm_event(vm, EV_STOPPED, NULL);
		vm_release(vm, "the VM was stopped");
		vm_remove(vm);
		return;
	}
	/* It ended on its own (or failed while running). */
	vm_settle(vm);
	vmpool_vm_ended(vm);
	snprintf(msg, sizeof(msg), "the VM %s: %s", vm->state == VM_CRASHED ?
	    "crashed" : "stopped", vm->error);
	if (vm->state == VM_CRASHED)
		log_warn("vm %s: crashed: %s", vm->id, vm->error);
	else
		log_info("vm %s: %s", vm->id, vm->error);
	vm_event(vm, vm->state == VM_CRASHED ? EV_CRASHED : EV_STOPPED,
	    json_pack("{s:s}", J_ERROR, vm->error));
	vm_release(vm, msg);
	if (vm->nwaiters > 0)
		vm_remove(vm);
}

static void
vm_hv_event(void *arg, enum hv_event ev, const char *detail)
{
	struct vm *vm = arg;

	switch (ev) {
	case HV_EV_PANIC:
		log_warn("vm %s: %s", vm->id, detail);
		break;
	case HV_EV_IO_ERROR:
		/* QEMU paused the guest; nothing good comes of waiting. An
		 * ephemeral VM's disk goes with it, which frees the space (a
		 * sandbox's stays, with what it holds). */
		if (vm->state == VM_STARTING)
			vm_fail_start(vm, E_VM_FAILED, detail);
		else if (vm->state == VM_RUNNING ||
		    vm->state == VM_UNRESPONSIVE)
			vm_fail_running(vm, detail);
		break;
	case HV_EV_PAUSED:
		vm->paused = 1;
		vm_unresponsive(vm, detail);
		break;
	case HV_EV_RESUMED:
		vm->paused = 0;
		vm_responsive(vm);
		break;
	case HV_EV_SAVED: case HV_EV_SAVE_FAILED:
	case HV_EV_RESTORED: case HV_EV_RESTORE_FAILED:
		if (!vmstate_hv_event(vm, ev))
			vmtemplate_hv_event(vm, ev);
		break;
	}
}

int
vm_pause(struct vm *vm, int on, struct cap_err *err)
{
	int r;

	if (vm->capture != NULL)
		return cap_err_set(err, EBUSY, E_CONFLICT, "VM %s is being "
		    "saved; try again in a moment", vm->id);
	if (vm->state != (on ? VM_RUNNING : VM_PAUSED))
		return cap_err_set(err, EBUSY, E_CONFLICT, "VM %s is %s; only a "
		    "%s VM can be %s", vm->id, vm_state_name(vm->state),
		    on ? "running" : "paused", on ? "paused" : "resumed");
	if ((r = vm_core.env.hv->pause(vm->hv, on, err)) < 0)
		return r;
	/* Paused, it answers nothing: not unresponsive, not idle, and no
	 * new exec starts until it runs again (running ones wait). */
	vm->state = on ? VM_PAUSED : VM_RUNNING;
	vm->idle_since = util_now_ms();
	log_info("vm %s: %s", vm->id, on ? "paused" : "resumed");
	vm_event(vm, on ? EV_PAUSED : EV_RESUMED, NULL);
	return 0;
}

void
vm_stop(struct vm *vm, vm_gone_cb cb, void *arg)
{
	struct cap_err err;

	switch (vm->state) {
	case VM_STOPPED:
	case VM_CRASHED:
		vm_add_waiter(vm, cb, arg);
		vm_remove(vm);
		return;
	case VM_STARTING:
		vm_add_waiter(vm, cb, arg);
		if (vm->files_busy) {
			/* No process yet: stop the opening, report, go. */
			cap_err_set(&err, ECANCELED, E_VM_FAILED, "StopVM was "
			    "requested while the VM was starting");
			vm_abort_start(vm, &err);
			return;
		}
		vm_fail_start(vm, E_VM_FAILED,
		    "StopVM was requested while the VM was starting");
		return;
	case VM_STOPPING:
		vm_add_waiter(vm, cb, arg);
		return;
	case VM_PAUSED:
		/* Running again, so its agent can sync the disk and power
		 * off; it was silent only because it was paused. */
		vm_core.env.hv->pause(vm->hv, 0, NULL);
		vm->silent = 0;
		break;
	case VM_RUNNING:
	case VM_UNRESPONSIVE:
		break;
	}
	vm_add_waiter(vm, cb, arg);
	vm->state = VM_STOPPING;
	log_info("vm %s: stopping", vm->id);
	vm_event(vm, EV_STOPPING, NULL);
	if (!vm->silent && !vm->paused && vm->agent != NULL &&
	    agent_shutdown(vm->agent) == 0) {
		vm->stop_phase = 0;
		vm_arm_timer(vm, VM_SHUTDOWN_GRACE_S);
	} else {
		vm->stop_phase = 1;
		if (vm_core.env.hv->quit(vm->hv, NULL) < 0)
			vm_core.env.hv->kill(vm->hv);
		vm_arm_timer(vm, VM_QUIT_GRACE_S);
	}
}

int
vm_stop_owned(uint64_t owner, vm_gone_cb cb, void *arg)
{
	struct vm *vm, *next;
	int n = 0;

	/* Count first: a VM that is already gone calls back at once. */
	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->owner == owner)
			n++;
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		if (vm->owner == owner)
			vm_stop(vm, cb, arg);
	return n;
}

int
vm_stop_visible(uid_t uid, vm_gone_cb cb, void *arg)
{
	struct vm *vm, *next;
	int n = 0;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm_visible(vm, uid))
			n++;
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		if (vm_visible(vm, uid))
			vm_stop(vm, cb, arg);
	return n;
}

int
vm_stop_all(vm_gone_cb cb, void *arg)
{
	struct vm *vm, *next;
	int n = vm_count();

	vm_core.shutting_down = 1;
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		vm_stop(vm, cb, arg);
	return n;
}

void
vm_owner_gone(uint64_t owner)
{
	struct vm *vm, *next;

	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next) {
		if (vm->owner != owner)
			continue;
		vm->owner = 0;
		if (vm->spec.stop_on_disconnect) {
			log_info("vm %s: its client went away; stopping it "
			    "(stop_on_disconnect)", vm->id);
			vm_stop(vm, NULL, NULL);
		}
	}
}

/* What ListVMs and StartVM say of vm (pointers into vm). */
static void
vm_describe(const struct vm *vm, struct ctl_vm *v)
{
	const struct hv_exit *ex = &vm->exit;

	memset(v, 0, sizeof(*v));
	v->vm_id = vm->id;
	v->state = vm_state_name(vm->state);
	v->pid = (int)vm->proc.pid;
	v->owner_uid = (unsigned)vm->who.uid;
	v->vcpus = vm->spec.vcpus;
	v->memory_mib = vm->spec.memory_mib;
	v->created_at = vm->created_at;
	v->accel = hv_accel_name(vm_core.env.caps.arch_accel[vm->spec.arch]);
	v->backend = vm_core.env.hv->name;
	v->arch = ctl_arch_name(vm->spec.arch);
	v->kernel_path = vm->spec.kernel ? vm->spec.kernel : "";
	v->rootfs_path = vm->spec.rootfs ? vm->spec.rootfs : "";
	v->image = vm->spec.image;
	v->disk_mib = vm->spec.disk_mib;
	v->idle_seconds = vm->spec.idle_seconds;
	if (vm->spec.sandbox != NULL && sandbox_by_id(vm->spec.sandbox))
		v->sandbox = sandbox_name(sandbox_by_id(vm->spec.sandbox));
	v->run_dir = vm->spec.run_dir ? vm->spec.run_dir : "";
	v->proxy_socket_path = vm->spec.proxy_path ? vm->spec.proxy_path : "";
	v->console_log_path = vm->spec.console_path ? vm->spec.console_path :
	    "";
	v->guest_port = vm->spec.guest_port;
	v->port_names = (const char *const *)vm->spec.port_names;
	v->port_paths = (const char *const *)vm->spec.port_paths;
	v->nports = vm->spec.nports;
	if (vm->exited && ex->have_status) {
		v->have_exit_status = 1;
		v->exit_status = WIFEXITED(ex->wstatus) ?
		    WEXITSTATUS(ex->wstatus) : 128 + WTERMSIG(ex->wstatus);
	}
	if (vm->exited || vm->state == VM_UNRESPONSIVE || vm->error[0])
		v->error = vm->error;
	v->ms_ready = vm->t_ready - vm->t0;
	v->ms_spawn = vm->t_spawn - vm->t0;
	v->ms_guest_boot = vm->guest_boot_ms;
	v->start = vm->start_how;
	v->pooled = vm->spec.pooled;
	v->start_note = vm->start_note;
	v->network = &vm->spec.network;
	v->publish = vm->spec.publish;
	v->npublish = vm->spec.npublish;
	v->volumes = vm->spec.volumes;
	v->nvolumes = vm->spec.nvolumes;
	if (vm->spec.network.mode == NETPOL_ALLOW) {
		struct egress_stats st = vm->egress_last;

		if (vm->egress != NULL)
			egress_stats(vm->egress, &st);
		v->have_egress = 1;
		v->eg_dns_allowed = st.dns_allowed;
		v->eg_dns_denied = st.dns_denied;
		v->eg_allowed = st.conns_allowed;
		v->eg_denied = st.conns_denied;
		v->eg_failed = st.conns_failed;
		v->eg_open = st.open;
		v->eg_bytes_out = st.bytes_out;
		v->eg_bytes_in = st.bytes_in;
	}
}

json_t *
vm_json(const struct vm *vm)
{
	struct ctl_vm v;

	vm_describe(vm, &v);
	return ctl_vm_json(&v);
}

json_t *
vm_list_json(uid_t uid)
{
	json_t *a = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm_visible(vm, uid))
			json_array_append_new(a, vm_json(vm));
	return a;
}

json_t *
vm_started_json(const struct vm *vm)
{
	struct ctl_vm v;

	vm_describe(vm, &v);
	return ctl_started_json(&v);
}
