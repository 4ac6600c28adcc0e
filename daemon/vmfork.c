/*
 * vmfork.c — ForkVM: copies of a running VM, each its own machine.
 *
 * The parent is saved whole into files without a name in its private dir
 * (vmstate_capture: it goes on at once); then each copy is a new ephemeral
 * VM of the parent's configuration that starts from that state
 * (vmstate_prepare). ForkVM answers once every copy is ready; if one
 * fails, the others are stopped and the fork fails: all or nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "osdep.h"
#include "proto.h"
#include "util.h"
#include "vmfork.h"
#include "vmpriv.h"
#include "vmstate.h"

struct vmfork {
	char		 parent_id[37];
	struct caller	 who;
	uint64_t	 owner;
	unsigned	 count;
	json_t		*req;		/* the copies' StartVM */
	struct vmstate_src src;		/* the parent's save */
	char		*key;		/* src.key: the parent's ident */
	uint64_t	 t0;
	unsigned	 starting;	/* copies whose start is not over */
	char		 ids[VMFORK_MAX][37];
	unsigned	 nids;
	int		 failed;
	struct cap_err	 err;
	vmfork_cb	 cb;
	void		*arg;
};

static void
vmfork_free(struct vmfork *f)
{
	closep(&f->src.state_fd);
	closep(&f->src.disk_fd);
	json_decref(f->req);
	free(f->key);
	free(f);
}

static void
vmfork_fail(struct vmfork *f, const struct cap_err *err)
{
	if (!f->failed) {
		f->failed = 1;
		f->err = *err;
	}
}

/* Every copy's start is over: the answer. */
static void
vmfork_finish(struct vmfork *f)
{
	json_t *vms = f->failed ? NULL : json_array();
	struct cap_err err;
	struct vm *vm;
	unsigned i;

	if (!f->failed && vms == NULL) {
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		vmfork_fail(f, &err);
	}
	/* Every copy, and running: one that ended meanwhile fails it. */
	for (i = 0; !f->failed && i < f->nids; i++) {
		if ((vm = vm_find(f->ids[i])) == NULL ||
		    vm->state != VM_RUNNING) {
			cap_err_set(&err, EIO, E_VM_FAILED, "a copy of the VM "
			    "(%s) ended before the fork was over", f->ids[i]);
			vmfork_fail(f, &err);
		} else
			json_array_append_new(vms, vm_started_json(vm));
	}
	if (f->failed) {
		json_decref(vms);
		for (i = 0; i < f->nids; i++)
			if ((vm = vm_find(f->ids[i])) != NULL)
				vm_stop(vm, NULL, NULL);
		log_warn("vm %s: fork failed: %s", f->parent_id, f->err.msg);
		f->cb(NULL, &f->err, f->arg);
	} else {
		log_info("vm %s: forked into %u cop%s in %llu ms", f->parent_id,
		    f->nids, f->nids == 1 ? "y" : "ies",
		    (unsigned long long)(util_now_ms() - f->t0));
		f->cb(vms, NULL, f->arg);
	}
	vmfork_free(f);
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
	} else
		memcpy(f->ids[f->nids++], vm->id, sizeof(f->ids[0]));
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
		    vm_start_restored(&req, &f->who, f->owner, &f->src,
		    vmfork_copy_started, f, &vm, &err) < 0) {
			vmfork_fail(f, &err);
			ctl_start_free(&req);
			break;
		}
		ctl_start_free(&req);
		f->starting++;
	}
	if (f->starting == 0)
		vmfork_finish(f);
}

/* The parent is saved (or not) and goes on: the copies start. */
static void
vmfork_saved(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct vmfork *f = arg;

	(void)vm;
	if (err != NULL) {
		vmfork_fail(f, err);
		vmfork_finish(f);
		return;
	}
	vmfork_copies(f);
}

int
vmfork_start(struct vm *vm, const struct caller *who, uint64_t owner,
    unsigned count, int stop_on_disconnect, vmfork_cb cb, void *arg,
    struct cap_err *err)
{
	struct vmfork *f;
	int r;

	if (count < 1 || count > VMFORK_MAX)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "count "
		    "must be a whole number from 1 to %d", VMFORK_MAX);
	if (vm_core.shutting_down)
		return cap_err_set(err, ESHUTDOWN, E_UNAVAILABLE,
		    "capsuled is shutting down");
	/* The copies run what the parent runs, opened as its owner at its
	 * start: only that owner makes more of them. */
	if (who->uid != vm->who.uid)
		return cap_err_set(err, EPERM, E_PERMISSION_DENIED, "VM %s is "
		    "uid %u's: only its owner forks it", vm->id,
		    (unsigned)vm->who.uid);
	/* All of them, before the parent is stopped for nothing. */
	if ((r = vm_check_quota(who, count, vm->spec.vcpus,
	    vm->spec.memory_mib, err)) < 0 ||
	    (r = vm_check_disk(who, count * vm->spec.disk_mib, err)) < 0 ||
	    (r = vmstate_room(vm, count + 1, err)) < 0)
		return r;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	f->src.state_fd = f->src.disk_fd = -1;
	f->src.how = "forked";
	f->src.key = f->key = vm->ident != NULL ? strdup(vm->ident) : NULL;
	snprintf(f->src.note, sizeof(f->src.note), "a copy of vm %s", vm->id);
	memcpy(f->parent_id, vm->id, sizeof(f->parent_id));
	f->who = *who;
	f->owner = owner;
	f->count = count;
	f->cb = cb;
	f->arg = arg;
	f->t0 = util_now_ms();
	if ((f->req = vmstate_request(vm)) == NULL ||
	    json_object_set_new(f->req, J_STOP_ON_DISCONNECT,
	    json_boolean(stop_on_disconnect)) < 0) {
		vmfork_free(f);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	/* Files without a name: they go when the fork is over. */
	if ((f->src.state_fd = osdep_tmpfile(vm->files.private_fd,
	    O_CLOEXEC)) < 0 ||
	    (f->src.disk_fd = osdep_tmpfile(vm->files.private_fd,
	    O_CLOEXEC)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot make files for "
		    "the VM's saved state: %s", strerror(errno));
		vmfork_free(f);
		return r;
	}
	if ((r = vmstate_capture(vm, f->src.state_fd, f->src.disk_fd,
	    &f->src.disk_size, vmfork_saved, f, err)) < 0) {
		vmfork_free(f);
		return r;
	}
	log_info("vm %s: forking into %u cop%s for uid %u", vm->id, count,
	    count == 1 ? "y" : "ies", (unsigned)who->uid);
	return 0;
}
