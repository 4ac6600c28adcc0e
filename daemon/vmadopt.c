/*
 * vmadopt.c — VMs handed from one capsuled to the next (see vmadopt.h):
 * taking over what an earlier daemon left running, from its record, and
 * letting every VM go, still running, when this one exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "events.h"
#include "log.h"
#include "proto.h"
#include "reap.h"
#include "record.h"
#include "util.h"
#include "vmadopt.h"
#include "vmpriv.h"

#define VMADOPT_HELLO_S		10	/* taken over: HELLO again by then */

/* An adopted VM's exec socket starts serving once it is made again and
 * the agent has answered (or has been given up on, so that callers hear
 * why); until then connections wait in its backlog. */
void
vmadopt_serve(struct vm *vm)
{
	struct cap_err err;

	if (vm->proxy != NULL || vm->files.proxy < 0 ||
	    (!vm->agent_ready && vm->state != VM_UNRESPONSIVE))
		return;
	vm->proxy = proxy_new(vm_core.env.base, TAKE_FD(vm->files.proxy),
	    vm->spec.image ? &vm->image_cfg : NULL,
	    vm->id, vm->who.uid, &vm_proxy_cbs, vm, &err);
	if (vm->proxy == NULL)
		log_warn("vm %s: %s", vm->id, err.msg);
	publish_start(vm->publish);
}

static void
vmadopt_rebind_done(struct caller_op *ops, size_t n, const struct cap_err *err,
    void *arg)
{
	struct vm *vm = arg;
	struct cap_err rerr;
	struct caller_made *m = NULL;
	const char *name;

	vm->rebind = NULL;
	if (err != NULL) {
		snprintf(vm->error, sizeof(vm->error), "its exec socket could "
		    "not be made again after capsuled restarted: %.900s",
		    err->msg);
		log_warn("vm %s: %s", vm->id, vm->error);
		return;
	}
	/* The made entry for the socket now names the new one. */
	name = caller_basename(vm->spec.proxy_path);
	for (size_t i = 0; name != NULL && i < vm->files.nmade; i++)
		if (vm->files.made[i].type == S_IFSOCK &&
		    strcmp(vm->files.made[i].name, name) == 0 &&
		    vm->files.made[i].dir_fd >= 0 &&
		    caller_ident_same(&vm->files.made[i].dir_id,
		    &ops[0].dir_id))
			m = &vm->files.made[i];
	if (m != NULL)
		m->id = ops[0].id;
	closep(&vm->files.proxy);
	vm->files.proxy = TAKE_FD(ops[0].fd);
	caller_op_close(&ops[0]);
	vmadopt_serve(vm);
	if (vm_write_record(vm, &rerr) < 0)
		log_warn("vm %s: %s", vm->id, rerr.msg);
}

/* Makes the exec socket again, as its owner (the old one's listener went
 * with the old daemon); replaces the stale socket only if it is still
 * the one recorded. */
static void
vmadopt_rebind(struct vm *vm)
{
	const char *name = caller_basename(vm->spec.proxy_path);
	struct caller_op *op = &vm->rebind_op;
	struct cap_err err;

	caller_op_init(op, CALLER_BIND, J_PROXY_SOCKET_PATH,
	    vm->spec.proxy_path, -1);
	for (size_t i = 0; name != NULL && i < vm->files.nmade; i++)
		if (vm->files.made[i].type == S_IFSOCK &&
		    strcmp(vm->files.made[i].name, name) == 0) {
			op->replace_set = 1;
			op->replace = vm->files.made[i].id;
		}
	vm->rebind = caller_run(vm_core.env.base, &vm->who, op, 1,
	    vmadopt_rebind_done, vm, &err);
	if (vm->rebind == NULL)
		log_warn("vm %s: %s", vm->id, err.msg);
}

/* The console log, opened again by its recorded path: only if it is
 * still the very file recorded (a link or another file put there in the
 * meantime is never written). */
static int
vmadopt_reopen_console(struct vm *vm, const struct caller_ident *want)
{
	struct caller_ident now;
	struct stat st;
	int fd;

	fd = open(vm->spec.console_path, O_RDWR | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    caller_ident_at(fd, "", &now, NULL) < 0 ||
	    !caller_ident_same(&now, want)) {
		close(fd);
		return -ESTALE;
	}
	fcntl(fd, F_SETFL, 0);
	vm->console_id = now;
	return fd;
}

/* A record whose VM cannot be served: listed as crashed until StopVM. */
static void
vmadopt_list_gone(struct record *r, const char *why)
{
	struct vm *vm;

	if ((vm = vm_alloc()) == NULL)
		return;
	memcpy(vm->id, r->vm_id, sizeof(vm->id));
	vm->state = VM_CRASHED;
	vm->who.uid = r->owner_uid;
	vm->who.gid = r->owner_gid;
	vm->proc = r->proc;
	vm->created_at = r->created_at;
	vm->exited = 1;
	vm->spec = r->spec;
	r->have_spec = 0;
	vm->timer = evtimer_new(vm_core.env.base, vm_timer_cb, vm);
	snprintf(vm->error, sizeof(vm->error), "%.1000s", why);
	log_warn("vm %s: %s", vm->id, vm->error);
	vm_event(vm, EV_CRASHED, json_pack("{s:s}", J_ERROR, vm->error));
	TAILQ_INSERT_TAIL(&vm_core.vms, vm, entry);
}

/* Not taken over after all: the spec goes back to the record. Made
 * entries stay with the record too (reap.c removes them). */
static void
vmadopt_give_back(struct vm *vm, struct record *r)
{
	r->spec = vm->spec;
	r->have_spec = 1;
	memset(&vm->spec, 0, sizeof(vm->spec));
	vm_free(vm);
}

static int
vmadopt_one(struct record *r, int private_fd, int alive, void *arg)
{
	struct caller_made made[VMFILES_MAX];
	struct hv_adopt a;
	struct hv_chans ch = { -1, -1, -1 };
	struct cap_err err;
	char why[1200], what[64];
	struct vm *vm;
	int fd, rc;

	if (!r->have_spec) {
		log_warn("vm %s: recorded by an older capsuled, so it cannot "
		    "be taken over", r->vm_id);
		return -1;
	}
	if (!alive) {
		snprintf(why, sizeof(why), "its %s (pid %d) ended while "
		    "capsuled was not running", r->backend, (int)r->proc.pid);
		vmadopt_list_gone(r, why);
		return -1;
	}
	if (strcmp(r->backend, vm_core.env.hv->name) != 0) {
		snprintf(why, sizeof(why), "it was started with backend %s; "
		    "this capsuled runs %s", r->backend, vm_core.env.hv->name);
		vmadopt_list_gone(r, why);
		return -1;
	}
	if ((vm = vm_alloc()) == NULL)
		return -1;
	memcpy(vm->id, r->vm_id, sizeof(vm->id));
	vm->state = VM_RUNNING;
	vm->adopted = 1;
	vm->who.uid = r->owner_uid;
	vm->who.gid = r->owner_gid;
	vm->who.ngroups = r->owner_ngroups;
	memcpy(vm->who.groups, r->owner_groups, r->owner_ngroups *
	    sizeof(gid_t));
	vm->proc = r->proc;
	vm->uid = geteuid() == 0 ? r->proc.uid : 0;
	vm->created_at = r->created_at;
	vm->t0 = vm->t_spawn = vm->t_ready = util_now_ms();
	vm->spec = r->spec;
	r->have_spec = 0;
	vm->spec.private_dir = util_strdup_printf("%s/%s/%s",
	    vm_core.env.state_dir, VMSPEC_PRIVATE, vm->id);
	vm->timer = evtimer_new(vm_core.env.base, vm_timer_cb, vm);
	/* Its image's exec defaults (the store keeps them). */
	if (vm->spec.image != NULL &&
	    image_config(vm->spec.image, &vm->image_cfg, &err) < 0)
		log_warn("vm %s: its image's defaults are lost: %s", vm->id,
		    err.msg);
	/* What it made outside its dirs, each with its directory held. */
	for (size_t i = 0; i < r->nmade; i++) {
		struct record_made *rm = &r->made[i];

		made[i] = (struct caller_made){ .dir_fd = -1,
		    .dir_path = strdup(rm->dir), .dir_id = { rm->dir_dev,
		    rm->dir_ino, rm->dir_btime }, .name = strdup(rm->name),
		    .id = { rm->dev, rm->ino, rm->btime }, .type = rm->type };
		if (made[i].dir_path != NULL && made[i].name != NULL &&
		    caller_made_reopen(&made[i]) < 0)
			log_warn("vm %s: %s is no longer the directory it was; "
			    "what capsule made there stays", vm->id,
			    made[i].dir_path);
	}
	if ((fd = fcntl(private_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    vm->timer == NULL || vm->spec.private_dir == NULL ||
	    vmfiles_adopt(&vm->files, fd, vm_core.vms_fd, vm_core.run_fd,
	    vm->id, !vm->spec.run_dir_named, made, r->nmade) < 0) {
		for (size_t i = 0; i < r->nmade; i++)
			caller_made_free(&made[i]);
		vmadopt_give_back(vm, r);
		vmadopt_list_gone(r, "out of memory while taking it over");
		return -1;
	}
	vm->have_files = 1;
	/* Its network as before (the guest's half is still set up); a host
	 * port taken in the meantime is lost, not fatal. */
	if (vm_net_open(vm, &err) < 0)
		log_warn("vm %s: %s", vm->id, err.msg);
	a = (struct hv_adopt){ .vm_id = vm->id, .dir_fd = private_fd,
	    .pid = r->proc.pid, .start = r->proc.start, .uid = r->proc.uid,
	    .exe_dev = r->hv_exe.dev, .exe_ino = r->hv_exe.ino };
	if ((rc = vm_core.env.hv->adopt(vm_core.env.base, &a, &vm_hv_cbs, vm,
	    &vm->hv, &ch, &err)) < 0) {
		snprintf(why, sizeof(why), "it could not be taken over: %s",
		    err.msg);
		/* Its files stay for reap.c, which kills what runs. */
		vmfiles_close(&vm->files);
		vmadopt_give_back(vm, r);
		vmadopt_list_gone(r, why);
		return -1;
	}
	if ((fd = vmadopt_reopen_console(vm, &r->console)) < 0)
		log_warn("vm %s: its console log %s is not the file it was; "
		    "console output is dropped", vm->id, vm->spec.console_path);
	else {
		lseek(fd, 0, SEEK_END);
		snprintf(what, sizeof(what), "vm %.8s console log", vm->id);
		vm->console = sink_new(vm_core.env.base, ch.console, fd,
		    vm->spec.console_max, what);
		ch.console = -1;
	}
	closep(&ch.console);	/* unread: QEMU drops what nobody reads */
	closep(&ch.log);
	vm->agent = agent_new(vm_core.env.base, ch.agent, &vm_agent_cbs, vm);
	if (vm->agent == NULL)
		close(ch.agent);
	TAILQ_INSERT_TAIL(&vm_core.vms, vm, entry);
	/* Idle from now on, whether or not its exec socket comes back. */
	vmidle_start(vm);
	/* Its agent says HELLO again as soon as we are connected. */
	vm_arm_timer(vm, VMADOPT_HELLO_S);
	vmadopt_rebind(vm);
	log_info("vm %s: taken over (pid %d, owner uid %u)", vm->id,
	    (int)vm->proc.pid, (unsigned)vm->who.uid);
	vm_event(vm, EV_ADOPTED, json_pack("{s:i}", J_PID, (int)vm->proc.pid));
	if (vm->spec.pooled) {
		/* Nobody's yet; the pool it waited in went with the old
		 * capsuled. */
		log_info("vm %s: it waited in the old capsuled's pool; "
		    "stopping it", vm->id);
		vm_stop(vm, NULL, NULL);
	} else if (vm->spec.stop_on_disconnect) {
		log_info("vm %s: its client went with the old capsuled; "
		    "stopping it (stop_on_disconnect)", vm->id);
		vm_stop(vm, NULL, NULL);
	}
	return 0;
}

void
vmadopt_all(void)
{
	if (vm_core.vms_fd >= 0)
		reap_all(vm_core.vms_fd, vm_core.run_fd, vmadopt_one, NULL);
}

/* The daemon goes, the VMs stay: let go of each without ending it. */
void
vmadopt_detach_all(void)
{
	struct vm *vm;

	vm_core.shutting_down = 1;
	while ((vm = TAILQ_FIRST(&vm_core.vms)) != NULL) {
		TAILQ_REMOVE(&vm_core.vms, vm, entry);
		if (vm->state == VM_STARTING) {
			/* Half started: nobody waits for it any more. */
			if (vm->hv != NULL)
				vm_core.env.hv->kill(vm->hv);
			vm_release(vm, "capsuled is stopping");
		} else if (vm->state != VM_STOPPED && vm->state != VM_CRASHED) {
			if (vm->rebind != NULL)
				caller_cancel(vm->rebind);
			vm->rebind = NULL;
			if (vm->agent != NULL)
				agent_free(vm->agent, "capsuled is restarting; "
				    "the VM keeps running");
			proxy_free(vm->proxy, "capsuled is restarting; the VM "
			    "keeps running");
			sink_free(vm->console);
			sink_free(vm->hvlog);
			if (vm->hv != NULL)
				vm_core.env.hv->detach(vm->hv);
			vmfiles_close(&vm->files);
			log_info("vm %s: left running (pid %d)", vm->id,
			    (int)vm->proc.pid);
		}
		if (vm->start_cb != NULL) {
			struct cap_err err;

			cap_err_set(&err, ESHUTDOWN, E_UNAVAILABLE,
			    "capsuled is stopping");
			vm_report_start(vm, &err);
		}
		vm_free(vm);
	}
}
