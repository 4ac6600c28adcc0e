/*
 * vmstart.c — how a VM starts (see vm.h): its request resolved into a
 * spec (vmspec.c), its files opened with the caller's rights (vmfiles.c),
 * its disk made, a template or a saved state used where one serves
 * (vmtemplate.c, vmstate.c), and its hypervisor spawned with all of it.
 * What happens next, until it is running and after, is vm.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "disk.h"
#include "image.h"
#include "log.h"
#include "procid.h"
#include "proto.h"
#include "sandbox.h"
#include "sink.h"
#include "util.h"
#include "vm.h"
#include "vmfiles.h"
#include "vmlimits.h"
#include "vmpriv.h"
#include "vmspec.h"

#define VM_HV_LOG		"qemu.log"	/* the hypervisor's messages */
#define VM_HV_LOG_MAX		(1024 * 1024)
/* As root, each VM's hypervisor runs as its own uid/gid from this range;
 * no passwd entry is needed, and nothing else on a normal system uses it. */
#define VM_UID_BASE		1879048192u	/* 0x70000000 */
#define VM_UID_SLOTS		65536u

_Static_assert(CTL_MAX_SERIAL_PORTS <= HV_MAX_SERIAL_PORTS,
    "every backend must take as many serial ports as StartVM allows");

/* A free unprivileged uid for a VM's hypervisor (root only). */
static uid_t
vmstart_free_uid(void)
{
	for (uint32_t slot = 0; slot < VM_UID_SLOTS; slot++) {
		uid_t u = VM_UID_BASE + slot;
		struct vm *vm;
		int taken = 0;

		TAILQ_FOREACH(vm, &vm_core.vms, entry)
			if (vm->uid == u)
				taken = 1;
		if (!taken)
			return u;
	}
	return 0;
}

/* The hypervisor's own messages go to a capped file in the private dir. */
static int
vmstart_hvlog(struct vm *vm, int log_fd, struct cap_err *err)
{
	char what[64];
	int fd;

	fd = openat(vm->files.private_fd, VM_HV_LOG, O_RDWR | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		close(log_fd);
		return cap_err_set(err, errno, E_INTERNAL, "cannot create %s: "
		    "%s", VM_HV_LOG, strerror(errno));
	}
	snprintf(what, sizeof(what), "vm %.8s %s log", vm->id,
	    vm_core.env.hv->name);
	if ((vm->hvlog = sink_new(vm_core.env.base, log_fd, fd, VM_HV_LOG_MAX,
	    what)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

/* capsule's words to its agent on the kernel command line: the modules
 * its network mode needs, and each shared folder as
 * capsule.vol=TAG,ro|rw,GUESTPATH (guest paths hold no space or comma:
 * volume.h). Returns a new string ("" for none). */
static char *
vmstart_agent_args(const struct vm_spec *s)
{
	char *out = strdup(s->network.mode == NETPOL_NAT ? "capsule.net=nat" :
	    s->network.mode == NETPOL_ALLOW ? "capsule.net=allow" : "");

	for (unsigned i = 0; out != NULL && i < s->nvolumes; i++) {
		char *more = util_strdup_printf("%s%scapsule.vol=vol%u,%s,%s",
		    out, out[0] ? " " : "", i, s->volumes[i].ro ? "ro" : "rw",
		    s->volumes[i].guest);

		free(out);
		out = more;
	}
	return out;
}

/* capsule's words to the agent, then the guest's name (not part of what
 * the VM runs, vm->ident: every copy of a template gets its own). */
static char *
vmstart_agent_args_named(const struct vm *vm, const char *args)
{
	char host[CHAN_MAX_HOSTNAME + 1];

	vm_hostname(vm, host, sizeof(host));
	return util_strdup_printf("%s%scapsule.hostname=%s", args,
	    args[0] ? " " : "", host);
}

/* The files are open: start the hypervisor. */
static void
vmstart_files_done(struct vm_files *f, const struct cap_err *ferr, void *arg)
{
	const struct vm_limits *l = &vm_core.limits;
	struct vm *vm = arg;
	struct hv_serial_port ports[CTL_MAX_SERIAL_PORTS];
	struct hv_share shares[VOLUME_MAX];
	char *named;
	int disk;
	char tags[VOLUME_MAX][16];
	struct hv_vm_config cfg;
	struct hv_chans ch = { -1, -1, -1 };
	struct cap_err err;
	char what[64];
	int r, scope;

	vm->files_busy = 0;
	if (ferr != NULL) {
		vm_abort_start(vm, ferr);
		return;
	}
	vm->have_files = 1;
	if (vm_core.shutting_down) {
		cap_err_set(&err, ECANCELED, E_VM_FAILED, "StopVM was "
		    "requested while the VM was starting");
		vm_abort_start(vm, &err);
		return;
	}
	memset(&cfg, 0, sizeof(cfg));
	if (geteuid() == 0 && (vm->uid = vmstart_free_uid()) == 0) {
		cap_err_set(&err, EAGAIN, E_UNAVAILABLE, "no unprivileged uid "
		    "left for another VM");
		vm_abort_start(vm, &err);
		return;
	}
	for (unsigned i = 0; i < vm->spec.nports; i++) {
		ports[i].name = vm->spec.port_names[i];
		ports[i].fd = f->ports[i];
	}
	cfg.vm_id = vm->id;
	cfg.arch = vm->spec.arch;
	cfg.dir_fd = f->private_fd;
	cfg.kernel_fd = f->kernel;
	cfg.initrd_fd = f->initrd;
	cfg.rootfs_fd = f->rootfs;
	cfg.boot_args = vm->spec.boot_args;
	for (unsigned i = 0; i < vm->spec.nvolumes; i++) {
		snprintf(tags[i], sizeof(tags[i]), "vol%u", i);
		shares[i].tag = tags[i];
		shares[i].dir_fd = f->volumes[i];
		shares[i].ro = vm->spec.volumes[i].ro;
	}
	cfg.shares = shares;
	cfg.nshares = vm->spec.nvolumes;
	cfg.share_uid = vm->who.uid;
	cfg.share_gid = vm->who.gid;
	cfg.share_groups = vm->who.groups;
	cfg.share_ngroups = vm->who.ngroups;
	if ((cfg.agent_args = vmstart_agent_args(&vm->spec)) == NULL) {
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		vm_abort_start(vm, &err);
		return;
	}
	cfg.nat = vm->spec.network.mode == NETPOL_NAT;
	cfg.vcpus = vm->spec.vcpus;
	cfg.memory_mib = vm->spec.memory_mib;
	cfg.ports = ports;
	cfg.nports = vm->spec.nports;
	cfg.uid = vm->uid;
	cfg.gid = (gid_t)vm->uid;
	scope = vmlimits_use_scope();
	if (!scope && l->vm_memory_overhead_mib > 0)
		cfg.rlimit_as_mib = vm->spec.memory_mib +
		    l->vm_memory_overhead_mib;
	/* Tasks of its uid: each VM has its own only as root. */
	if (!scope && vm->uid != 0)
		cfg.rlimit_nproc = l->vm_tasks_max;
	if ((vm->ident = vmtemplate_key(vm, &cfg)) == NULL ||
	    (named = vmstart_agent_args_named(vm, cfg.agent_args)) == NULL) {
		free((char *)cfg.agent_args);
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		vm_abort_start(vm, &err);
		return;
	}
	free((char *)cfg.agent_args);
	cfg.agent_args = named;
	/* The writable disk: the sandbox's, a saved VM's copy, or new and
	 * empty for every run of an ephemeral VM. */
	if (vm->spec.sandbox != NULL) {
		struct sandbox *sb = sandbox_by_id(vm->spec.sandbox);

		disk = sb != NULL ? sandbox_open_disk(sb, &err) :
		    cap_err_set(&err, ENOENT, E_NOT_FOUND, "the VM's sandbox "
		    "is gone");
	} else if (vm->restore_src != NULL) {
		if ((r = vmstate_prepare(vm, &cfg, &disk, &err)) < 0)
			disk = r;
		/* Its caller's until the start is over; not needed again. */
		vm->restore_src = NULL;
	} else if ((r = vmtemplate_prepare(vm, &cfg, &disk, &err)) < 0)
		disk = r;
	else if (disk < 0)
		disk = disk_make(f->private_fd, DISK_FILE, vm->spec.disk_mib,
		    &err);
	if (disk < 0) {
		free((char *)cfg.agent_args);
		vm_abort_start(vm, &err);
		return;
	}
	cfg.disk_fd = disk;
	r = vm_core.env.hv->start(vm_core.env.base, &cfg, &vm_hv_cbs, vm,
	    &vm->hv, &ch, &err);
	free((char *)cfg.agent_args);
	close(disk);
	if (r < 0) {
		vm_abort_start(vm, &err);
		return;
	}

	vm->t_spawn = util_now_ms();
	/* QEMU holds the images and ports now (and a template's state). */
	if (vm->tmpl_phase == VMT_RESTORING)
		closep(&vm->tmpl_state);
	closep(&f->kernel);
	closep(&f->initrd);
	closep(&f->rootfs);
	for (unsigned i = 0; i < CTL_MAX_SERIAL_PORTS; i++)
		closep(&f->ports[i]);
	for (unsigned i = 0; i < VOLUME_MAX; i++)
		closep(&f->volumes[i]);
	/* Its identity for the record: the uid is the one it runs as once
	 * it has dropped root (-runas), moments from now. */
	if (procid_read(vm_core.env.hv->pid(vm->hv), &vm->proc) < 0)
		vm->proc.pid = vm_core.env.hv->pid(vm->hv);
	vm->proc.uid = vm->uid != 0 ? vm->uid : geteuid();
	snprintf(what, sizeof(what), "vm %.8s console log", vm->id);
	caller_ident_at(f->console, "", &vm->console_id, NULL);
	vm->console = sink_new(vm_core.env.base, ch.console,
	    TAKE_FD(f->console), vm->spec.console_max, what);
	vm->agent = agent_new(vm_core.env.base, ch.agent, &vm_agent_cbs, vm);
	log_info("vm %s: starting (pid %d, %u vCPU, %llu MiB, %s)", vm->id,
	    (int)vm->proc.pid, vm->spec.vcpus,
	    (unsigned long long)vm->spec.memory_mib,
	    hv_accel_name(vm_core.env.caps.accel));
	vm_event(vm, EV_STARTED, json_pack("{s:i}", J_PID, (int)vm->proc.pid));
	if (vm->console == NULL || vm->agent == NULL) {
		if (vm->agent == NULL)
			close(ch.agent);
		close(ch.log);
		vm_fail_start(vm, E_INTERNAL, "out of memory");
		return;
	}
	if (vmstart_hvlog(vm, ch.log, &err) < 0 ||
	    vm_write_record(vm, &err) < 0) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	/* Limits the admin asked for are not optional. */
	if (scope && (l->vm_memory_overhead_mib > 0 || l->vm_cpu_quota > 0 ||
	    l->vm_tasks_max > 0) && vmlimits_scope(vm_core.env.hv->pid(vm->hv),
	    vm->id, l->vm_memory_overhead_mib > 0 ? vm->spec.memory_mib +
	    l->vm_memory_overhead_mib : 0, l->vm_cpu_quota, l->vm_tasks_max,
	    &err) < 0) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	/* A template's restore is up in well under a second, or not at all
	 * (the start boots then); a full one reads all the RAM first. */
	vm_arm_timer(vm, vm->tmpl_phase == VMT_RESTORING &&
	    strcmp(vm->start_how, "restored") == 0 ? VMT_RESTORE_S :
	    vm->spec.launch_seconds);
}

/* The root file system is the image's, opened by capsuled itself (the
 * store is its own); execs get the image's defaults. */
static int
vmstart_use_image(struct vm *vm, const char *ref, struct cap_err *err)
{
	struct image_use u;
	int r;

	/* A sandbox keeps its image by digest, names or not. */
	if ((r = vm->spec.sandbox != NULL ? image_use_digest(ref, &u, err) :
	    image_resolve(vm->who.uid, ref, &u, err)) < 0)
		return r;
	free(vm->spec.rootfs);
	vm->spec.rootfs = TAKE_PTR(u.rootfs);
	vm->spec.rootfs_named = 0;
	vm->spec.image = strdup(u.digest);
	vm->image_cfg = u.config;
	memset(&u.config, 0, sizeof(u.config));
	image_use_free(&u);
	if (vm->spec.image == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

int
vmstart(const struct ctl_start *req, const char *sandbox, uint64_t owner,
    const struct caller *who, uint64_t pool, const struct vmstate_src *src,
    vm_start_cb cb, void *arg, struct vm **out, struct cap_err *err)
{
	struct vmspec_env se = { vm_core.env.state_dir, vm_core.env.image_dir,
	    vm_core.limits.console_max };
	struct vm *vm;
	int r;

	if (vm_core.shutting_down)
		return cap_err_set(err, ESHUTDOWN, E_UNAVAILABLE,
		    "capsuled is shutting down");
	if ((r = vm_check_arch(req, err)) < 0 ||
	    (r = vm_check_quota(who, 1, req->vcpus, req->memory_mib,
	    err)) < 0 ||
	    (sandbox == NULL && (r = vm_check_disk(who, req->disk_mib,
	    err)) < 0))
		return r;
	if (sandbox != NULL && vm_of_sandbox(sandbox, NULL) != NULL)
		return cap_err_set(err, EBUSY, E_CONFLICT, "the sandbox is "
		    "already running (vm %s)", vm_of_sandbox(sandbox, NULL));
	if ((vm = vm_alloc()) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	util_uuid(vm->id);
	vm->state = VM_STARTING;
	vm->owner = owner;
	vm->who = *who;
	vm->created_at = (long long)time(NULL);
	vm->t0 = util_now_ms();
	vm->timer = evtimer_new(vm_core.env.base, vm_timer_cb, vm);
	if (vm->timer == NULL) {
		vm_free(vm);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if ((r = vmspec_resolve(req, &se, vm->id, &vm->spec, err)) < 0) {
		vm_free(vm);
		return r;
	}
	vm->pool = pool;
	vm->spec.pooled = pool != 0;
	vm->restore_src = src;
	if (sandbox != NULL && (vm->spec.sandbox = strdup(sandbox)) == NULL) {
		vm_free(vm);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if ((req->image != NULL && (r = vmstart_use_image(vm, req->image,
	    err)) < 0) ||
	    (r = vm_net_open(vm, err)) < 0) {
		vm_free(vm);
		return r;
	}
	if ((r = vmfiles_open(&vm->files, vm_core.env.base, &vm->spec, who,
	    vm_core.env.hv, vmstart_files_done, vm, err)) < 0) {
		vm_free(vm);
		return r;
	}
	vm->files_busy = 1;
	vm->start_cb = cb;
	vm->start_arg = arg;
	TAILQ_INSERT_TAIL(&vm_core.vms, vm, entry);
	vm_event(vm, EV_CREATED, json_pack("{s:i, s:I}", J_VCPUS,
	    (int)vm->spec.vcpus, J_MEMORY_MIB,
	    (json_int_t)vm->spec.memory_mib));
	*out = vm;
	return 0;
}
