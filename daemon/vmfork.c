/*
 * vmfork.c — ForkVM: copies of a running VM, each its own machine.
 *
 * The parent is quiesced (its agent has read everything we sent, and the
 * heartbeat is off: agent_sync), saved whole, RAM and devices, to a file
 * without a name in its private dir (hv save, full), and its writable
 * disk is copied next to it while it is stopped; then it goes on as it
 * was, none the wiser. Each copy is a new ephemeral VM of the parent's
 * configuration that starts from that state instead of booting
 * (HV_RAM_RESTORE), on its own copy of the disk, and is refreshed like a
 * template's copy (vmtemplate.c: the host's clock, fresh randomness, a new
 * channel). ForkVM answers once every copy is ready; if one fails, the
 * others are stopped and the fork fails: all or nothing.
 *
 * Refused, with the reason: VMs with shared folders (their file servers'
 * state is not part of a save), raw serial ports or published ports (one
 * host end each), and VMs with exec sessions or connections open (a copy
 * could not go on with them, and their bytes half-way through the channel
 * at the save would reach the copies). New execs wait while it is saved.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* O_TMPFILE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "proto.h"
#include "sandbox.h"
#include "util.h"
#include "vmfork.h"
#include "vmpriv.h"

struct vmfork {
	struct vm	*parent;	/* while it is being saved */
	char		 parent_id[37];
	struct caller	 who;
	uint64_t	 owner;
	unsigned	 count;
	json_t		*req;		/* the copies' StartVM */
	int		 state_fd;	/* the full save (no name) */
	int		 disk_fd;	/* the parent's disk at the save */
	off_t		 disk_size;
	struct event	*timer;
	uint64_t	 t0;
	unsigned	 starting;	/* copies whose start is not over */
	char		 ids[VMFORK_MAX][37];
	unsigned	 nids;
	int		 failed;
	struct cap_err	 err;
	vmfork_cb	 cb;
	void		*arg;
};

/* The copies' StartVM: the parent's configuration, nothing of its host
 * ends (run dir, sockets and log go where capsuled puts a VM's). */
static json_t *
vmfork_request(const struct vm *vm, int stop_on_disconnect)
{
	const struct vm_spec *s = &vm->spec;
	json_t *r = json_pack("{s:s, s:i, s:I, s:I, s:i, s:i, s:b}", J_OP,
	    OP_START_VM, J_VCPUS, (int)s->vcpus, J_MEMORY_MIB,
	    (json_int_t)s->memory_mib, J_DISK_SIZE_MIB, (json_int_t)s->disk_mib,
	    J_LAUNCH_SECONDS, (int)s->launch_seconds, J_IDLE_TIMEOUT,
	    (int)s->idle_seconds, J_STOP_ON_DISCONNECT, stop_on_disconnect);

	if (r == NULL)
		return NULL;
	if (s->guest_port != AGENT_DEFAULT_GUEST_PORT)
		json_object_set_new(r, J_GUEST_PORT,
		    json_integer(s->guest_port));
	if (s->kernel_named)
		json_object_set_new(r, J_KERNEL_PATH, json_string(s->kernel));
	if (s->initrd_named)
		json_object_set_new(r, J_INITRD_PATH, json_string(s->initrd));
	if (s->image != NULL)
		json_object_set_new(r, J_IMAGE, json_string(s->image));
	else if (s->rootfs_named)
		json_object_set_new(r, J_ROOTFS_PATH, json_string(s->rootfs));
	if (s->boot_args != NULL)
		json_object_set_new(r, J_BOOT_ARGS, json_string(s->boot_args));
	if (s->network.mode != NETPOL_NONE)
		json_object_set_new(r, J_NETWORK,
		    ctl_network_json(&s->network));
	return r;
}

/* Why vm cannot be forked now ("" if it can). */
static const char *
vmfork_why_not(const struct vm *vm, char *buf, size_t len)
{
	size_t n;

	if (vm->state != VM_RUNNING || !vm->agent_ready || vm->agent == NULL) {
		snprintf(buf, len, "VM %s is %s; only a running VM with its "
		    "guest agent ready can be forked", vm->id,
		    vm_state_name(vm->state));
		return buf;
	}
	if (vm->fork != NULL)
		return "the VM is being forked already";
	if (vm_core.env.hv->save == NULL)
		return "the hypervisor backend cannot save a VM";
	if (!(agent_features(vm->agent) & CHAN_FEAT_REFRESH))
		return "the VM's guest agent is too old to be copied; rebuild "
		    "the guest image with this capsule";
	if (vm->spec.nvolumes > 0)
		return "the VM has shared folders (virtiofs): their file "
		    "servers' state is not part of a saved VM";
	if (vm->spec.nports > 0)
		return "the VM has raw serial ports: each has one host socket, "
		    "which a copy could not have";
	if (vm->spec.npublish > 0)
		return "the VM publishes ports: each host port can be bound "
		    "by one VM, so its copies could not have them";
	if ((n = agent_nstreams(vm->agent)) > 0) {
		snprintf(buf, len, "the VM has %zu exec session%s or "
		    "connection%s open, which a copy could not go on with; "
		    "fork it when they have ended", n, n == 1 ? "" : "s",
		    n == 1 ? "" : "s");
		return buf;
	}
	return "";
}

static void
vmfork_free(struct vmfork *f)
{
	if (f->timer != NULL)
		event_free(f->timer);
	closep(&f->state_fd);
	closep(&f->disk_fd);
	json_decref(f->req);
	free(f);
}

/* Every copy's start is over: the answer. */
static void
vmfork_finish(struct vmfork *f)
{
	json_t *vms = NULL;
	struct vm *vm;
	unsigned i;

	if (f->failed) {
		for (i = 0; i < f->nids; i++)
			if ((vm = vm_find(f->ids[i])) != NULL)
				vm_stop(vm, NULL, NULL);
		log_warn("vm %s: fork failed: %s", f->parent_id, f->err.msg);
		f->cb(NULL, &f->err, f->arg);
	} else {
		vms = json_array();
		for (i = 0; vms != NULL && i < f->nids; i++)
			if ((vm = vm_find(f->ids[i])) != NULL)
				json_array_append_new(vms, vm_started_json(vm));
		log_info("vm %s: forked into %u cop%s in %llu ms", f->parent_id,
		    f->nids, f->nids == 1 ? "y" : "ies",
		    (unsigned long long)(util_now_ms() - f->t0));
		if (vms == NULL) {
			cap_err_set(&f->err, ENOMEM, E_INTERNAL,
			    "out of memory");
			f->cb(NULL, &f->err, f->arg);
		} else
			f->cb(vms, NULL, f->arg);
	}
	vmfork_free(f);
}

static void
vmfork_fail(struct vmfork *f, const struct cap_err *err)
{
	if (!f->failed) {
		f->failed = 1;
		f->err = *err;
	}
}

/* The parent goes on, as if nothing happened. */
static void
vmfork_resume(struct vmfork *f)
{
	struct vm *vm = f->parent;
	struct cap_err err;

	if (vm == NULL)
		return;
	f->parent = NULL;
	vm->fork = NULL;
	event_del(f->timer);
	if (vm->hv != NULL && vm_core.env.hv->pause(vm->hv, 0, &err) < 0) {
		log_warn("vm %s: cannot resume it after the fork's save: %s",
		    vm->id, err.msg);
		vm_fail_running(vm, "it could not be resumed after being "
		    "saved for a fork");
		return;
	}
	if (vm->agent != NULL)
		agent_heartbeat(vm->agent, 1);
}

static void
vmfork_copy_started(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct vmfork *f = arg;

	f->starting--;
	if (err != NULL) {
		struct cap_err e = *err;

		cap_err_wrap(&e, "a copy of the VM");
		vmfork_fail(f, &e);
	} else {
		vm->fork_src = NULL;
		memcpy(f->ids[f->nids++], vm->id, sizeof(f->ids[0]));
	}
	if (f->starting == 0)
		vmfork_finish(f);
}

/* The parent is saved and goes on: the copies start. */
static void
vmfork_copies(struct vmfork *f)
{
	struct ctl_limits lim;
	struct ctl_start req;
	struct cap_err err;
	struct vm *vm;
	unsigned i;

	vm_ctl_limits(&lim);
	for (i = 0; i < f->count && !f->failed; i++) {
		if (ctl_parse_start(f->req, &lim, &req, &err) < 0 ||
		    vm_start_fork(&req, &f->who, f->owner, f,
		    vmfork_copy_started, f, &vm, &err) < 0) {
			vmfork_fail(f, &err);
			ctl_start_free(&req);
			break;
		}
		ctl_start_free(&req);
		vm->fork_src = f;
		f->starting++;
	}
	if (f->starting == 0)
		vmfork_finish(f);
}

/* The parent's disk as it was at the save, into a file without a name. */
static int
vmfork_copy_disk(struct vmfork *f, struct vm *vm, struct cap_err *err)
{
	struct sandbox *sb;
	struct stat st;
	int in, r;

	if (vm->spec.sandbox != NULL)
		in = (sb = sandbox_by_id(vm->spec.sandbox)) != NULL ?
		    sandbox_open_disk(sb, err) : cap_err_set(err, ENOENT,
		    E_NOT_FOUND, "the VM's sandbox is gone");
	else if ((in = openat(vm->files.private_fd, DISK_FILE, O_RDONLY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		in = cap_err_set(err, errno, E_INTERNAL, "cannot open the VM's "
		    "disk: %s", strerror(errno));
	if (in < 0)
		return in;
	if (fstat(in, &st) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "the VM's disk: %s",
		    strerror(errno));
		close(in);
		return r;
	}
	if ((f->disk_fd = openat(vm->files.private_fd, ".", O_TMPFILE |
	    O_RDWR | O_CLOEXEC, 0600)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot make a file "
		    "for the fork's disk: %s", strerror(errno));
		close(in);
		return r;
	}
	r = disk_copy(in, f->disk_fd, st.st_size);
	close(in);
	if (r < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot copy the VM's "
		    "disk: %s", strerror(-r));
	f->disk_size = st.st_size;
	return 0;
}

/* QEMU has saved the parent (ok) or could not. */
static void
vmfork_saved(struct vmfork *f, int ok)
{
	struct vm *vm = f->parent;
	struct cap_err err;
	uint64_t t = util_now_ms();

	if (!ok)
		cap_err_set(&err, EIO, E_VM_FAILED, "%s could not save the VM",
		    vm_core.env.hv->name);
	if (!ok || vmfork_copy_disk(f, vm, &err) < 0) {
		vmfork_resume(f);
		vmfork_fail(f, &err);
		vmfork_finish(f);
		return;
	}
	vmfork_resume(f);
	log_info("vm %s: saved for %u cop%s (stopped %llu ms, disk %llu ms)",
	    f->parent_id, f->count, f->count == 1 ? "y" : "ies",
	    (unsigned long long)(util_now_ms() - f->t0),
	    (unsigned long long)(util_now_ms() - t));
	vmfork_copies(f);
}

/* The parent's agent has read everything we sent: save it. */
static void
vmfork_synced(struct agent *a, void *arg)
{
	struct vm *vm = arg;
	struct vmfork *f = vm->fork;
	struct cap_err err;

	(void)a;
	if (f == NULL)
		return;
	if (vm_core.env.hv->save(vm->hv, f->state_fd, 1, &err) < 0) {
		vmfork_resume(f);
		vmfork_fail(f, &err);
		vmfork_finish(f);
	}
}

static void
vmfork_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vmfork *f = arg;
	struct cap_err err;

	(void)fd;
	(void)what;
	cap_err_set(&err, ETIMEDOUT, E_TIMEOUT, "saving the VM took more "
	    "than %d s", VMFORK_SAVE_S);
	vmfork_resume(f);
	vmfork_fail(f, &err);
	vmfork_finish(f);
}

int
vmfork_start(struct vm *vm, const struct caller *who, uint64_t owner,
    unsigned count, int stop_on_disconnect, vmfork_cb cb, void *arg,
    struct cap_err *err)
{
	struct timeval tv = { VMFORK_SAVE_S, 0 };
	struct vmfork *f;
	const char *why;
	char buf[256];

	if (count < 1 || count > VMFORK_MAX)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "count "
		    "must be a whole number from 1 to %d", VMFORK_MAX);
	if (vm_core.shutting_down)
		return cap_err_set(err, ESHUTDOWN, E_UNAVAILABLE,
		    "capsuled is shutting down");
	if (*(why = vmfork_why_not(vm, buf, sizeof(buf))) != '\0')
		return cap_err_set(err, EBUSY, E_CONFLICT, "cannot fork VM %s: "
		    "%s", vm->id, why);
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	f->state_fd = f->disk_fd = -1;
	f->parent = vm;
	memcpy(f->parent_id, vm->id, sizeof(f->parent_id));
	f->who = *who;
	f->owner = owner;
	f->count = count;
	f->cb = cb;
	f->arg = arg;
	f->t0 = util_now_ms();
	if ((f->req = vmfork_request(vm, stop_on_disconnect)) == NULL ||
	    (f->timer = evtimer_new(vm_core.env.base, vmfork_timeout,
	    f)) == NULL) {
		vmfork_free(f);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if ((f->state_fd = openat(vm->files.private_fd, ".", O_TMPFILE |
	    O_RDWR | O_CLOEXEC, 0600)) < 0) {
		cap_err_set(err, errno, E_INTERNAL, "cannot make a file for "
		    "the VM's saved state: %s", strerror(errno));
		vmfork_free(f);
		return -1;
	}
	vm->fork = f;
	event_add(f->timer, &tv);
	log_info("vm %s: forking into %u cop%s for uid %u", vm->id, count,
	    count == 1 ? "y" : "ies", (unsigned)who->uid);
	agent_sync(vm->agent, vmfork_synced, vm);
	return 0;
}

int
vmfork_hv_event(struct vm *vm, enum hv_event ev)
{
	if (vm->fork == NULL || (ev != HV_EV_SAVED && ev != HV_EV_SAVE_FAILED))
		return 0;
	vmfork_saved(vm->fork, ev == HV_EV_SAVED);
	return 1;
}

void
vmfork_parent_gone(struct vm *vm)
{
	struct vmfork *f = vm->fork;
	struct cap_err err;

	if (f == NULL)
		return;
	vm->fork = NULL;
	f->parent = NULL;
	cap_err_set(&err, ECANCELED, E_VM_FAILED, "the VM went away while "
	    "it was being saved for the fork");
	vmfork_fail(f, &err);
	vmfork_finish(f);
}

int
vmfork_prepare(struct vm *vm, struct hv_vm_config *cfg, int *disk,
    struct cap_err *err)
{
	struct vmfork *f = vm->fork_src;
	char path[64];
	int r;

	if ((*disk = openat(vm->files.private_fd, DISK_FILE, O_RDWR | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot create the "
		    "VM's disk: %s", strerror(errno));
	if ((r = disk_copy(f->disk_fd, *disk, f->disk_size)) < 0) {
		closep(disk);
		unlinkat(vm->files.private_fd, DISK_FILE, 0);
		return cap_err_set(err, -r, E_INTERNAL, "cannot copy the "
		    "parent's disk: %s", strerror(-r));
	}
	/* Its own open file: QEMU reads it from the start. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", f->state_fd);
	if ((vm->tmpl_state = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot open the "
		    "parent's saved state: %s", strerror(errno));
		closep(disk);
		unlinkat(vm->files.private_fd, DISK_FILE, 0);
		return r;
	}
	cfg->ram = HV_RAM_RESTORE;
	cfg->restore_fd = vm->tmpl_state;
	vm->tmpl_phase = VMT_RESTORING;
	vm->start_how = "forked";
	snprintf(vm->start_note, sizeof(vm->start_note), "a copy of vm %s",
	    f->parent_id);
	return 0;
}
