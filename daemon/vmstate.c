/*
 * vmstate.c — a running VM's whole state, taken and given (vmstate.h).
 *
 * Taking it: the VM is quiesced (its agent has read everything we sent,
 * and the heartbeat is off: agent_sync), saved whole, RAM and devices
 * (hv save, full), and its writable disk copied while it is stopped; then
 * it goes on, none the wiser. Meanwhile new execs on it and connections
 * its guest opens are refused (try again), and so is PauseVM.
 *
 * Giving it: a new VM of the saved one's configuration starts from the
 * save instead of booting (HV_RAM_RESTORE), on its own copy of the disk,
 * and is refreshed like a template's copy (vmtemplate.c: the host's clock,
 * fresh randomness, a new channel).
 *
 * What cannot be captured: VMs with shared folders (their file servers'
 * state is not part of a save), raw serial ports or published ports (one
 * host end each), and VMs with exec sessions or connections open (a copy
 * could not go on with them, and their bytes half-way through the channel
 * at the save would reach it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "proto.h"
#include "sandbox.h"
#include "util.h"
#include "vmpriv.h"
#include "vmstate.h"

struct vmcapture {
	struct vm	*vm;
	int		 state_fd, disk_fd;	/* the caller's */
	off_t		*disk_size;
	struct event	*timer;
	uint64_t	 t0;
	vmstate_cb	 cb;
	void		*arg;
};

/* Why vm cannot be captured now, "" if it can (buf holds what needs
 * formatting). */
static const char *
vmstate_why_not(const struct vm *vm, char *buf, size_t len)
{
	size_t n;

	if (vm->state != VM_RUNNING || !vm->agent_ready || vm->agent == NULL) {
		snprintf(buf, len, "VM %s is %s; only a running VM with its "
		    "guest agent ready can be saved", vm->id,
		    vm_state_name(vm->state));
		return buf;
	}
	if (vm->capture != NULL)
		return "the VM is being saved already";
	if (vm->ident == NULL)
		return "the VM was taken over from an earlier capsuled, which "
		    "did not say what it runs";
	if (vm_core.env.hv->save == NULL)
		return "the hypervisor backend cannot save a VM";
	if ((agent_features(vm->agent) & (CHAN_FEAT_REFRESH |
	    CHAN_FEAT_HOSTNAME)) != (CHAN_FEAT_REFRESH | CHAN_FEAT_HOSTNAME))
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
		    "try again when they have ended", n, n == 1 ? "" : "s",
		    n == 1 ? "" : "s");
		return buf;
	}
	return "";
}

json_t *
vmstate_request(const struct vm *vm)
{
	const struct vm_spec *s = &vm->spec;
	json_t *r = json_pack("{s:s, s:i, s:I, s:I, s:i, s:i}", J_OP,
	    OP_START_VM, J_VCPUS, (int)s->vcpus, J_MEMORY_MIB,
	    (json_int_t)s->memory_mib, J_DISK_SIZE_MIB, (json_int_t)s->disk_mib,
	    J_LAUNCH_SECONDS, (int)s->launch_seconds, J_IDLE_TIMEOUT,
	    (int)s->idle_seconds);

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
	json_object_set_new(r, J_ARCH, json_string(ctl_arch_name(s->arch)));
	if (s->network.mode != NETPOL_NONE)
		json_object_set_new(r, J_NETWORK,
		    ctl_network_json(&s->network));
	return r;
}

/* How long a save and its disk copy may take: a minute, and a second for
 * each 32 MiB of RAM. */
static unsigned
vmstate_limit_s(const struct vm *vm)
{
	return VMSTATE_SAVE_S + (unsigned)(vm->spec.memory_mib / 32);
}

static void
vmstate_done(struct vmcapture *c, const struct cap_err *err)
{
	struct vm *vm = c->vm;

	if (vm != NULL)
		vm->capture = NULL;
	event_free(c->timer);
	c->cb(vm, err, c->arg);
	free(c);
}

/* The VM goes on, as if nothing happened; then the outcome. */
static void
vmstate_resume(struct vmcapture *c, const struct cap_err *err)
{
	struct vm *vm = c->vm;
	struct cap_err e;

	if (vm->hv != NULL && vm_core.env.hv->pause(vm->hv, 0, &e) < 0) {
		log_warn("vm %s: cannot resume it after its save: %s", vm->id,
		    e.msg);
		vm->capture = NULL;
		vm_fail_running(vm, "it could not be resumed after being "
		    "saved");
		if (err == NULL)
			err = &e;
	} else if (vm->agent != NULL)
		agent_heartbeat(vm->agent, 1);
	vmstate_done(c, err);
}

/* The VM's writable disk: its sandbox's, or its own. */
static int
vmstate_open_disk(const struct vm *vm, struct cap_err *err)
{
	struct sandbox *sb;
	int fd;

	if (vm->spec.sandbox != NULL)
		return (sb = sandbox_by_id(vm->spec.sandbox)) != NULL ?
		    sandbox_open_disk(sb, err) : cap_err_set(err, ENOENT,
		    E_NOT_FOUND, "the VM's sandbox is gone");
	if ((fd = openat(vm->files.private_fd, DISK_FILE, O_RDONLY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open the "
		    "VM's disk: %s", strerror(errno));
	return fd;
}

int
vmstate_room(const struct vm *vm, unsigned disks, struct cap_err *err)
{
	struct sandbox *sb;
	struct statvfs sv;
	uint64_t need, have, used = 0;
	int fd;

	/* Its size only: a running VM's disk is locked by its QEMU. */
	if (vm->spec.sandbox != NULL) {
		if ((sb = sandbox_by_id(vm->spec.sandbox)) != NULL)
			used = sandbox_disk_used(sb);
	} else if ((fd = openat(vm->files.private_fd, DISK_FILE, O_RDONLY |
	    O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		used = disk_used(fd);
		close(fd);
	}
	/* The save is at most the RAM; each disk copy what it holds. */
	need = (vm->spec.memory_mib << 20) + disks * used + DISK_FREE_MIN;
	if (fstatvfs(vm->files.private_fd, &sv) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "statvfs: %s",
		    strerror(errno));
	have = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (have < need)
		return cap_err_set(err, ENOSPC, E_LIMIT, "the file system of "
		    "capsule's state has %llu MiB free; saving VM %s needs "
		    "about %llu MiB", (unsigned long long)(have >> 20), vm->id,
		    (unsigned long long)(need >> 20));
	return 0;
}

/* The writable disk as it is now (the VM is stopped), into c->disk_fd. */
static int
vmstate_copy_disk(struct vmcapture *c, struct cap_err *err)
{
	struct stat st;
	int in, r;

	if ((in = vmstate_open_disk(c->vm, err)) < 0)
		return in;
	if (fstat(in, &st) < 0)
		r = -errno;
	else
		r = disk_copy(in, c->disk_fd, st.st_size);
	close(in);
	if (r < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot copy the VM's "
		    "disk: %s", strerror(-r));
	*c->disk_size = st.st_size;
	return 0;
}

/* The VM's agent has read everything we sent: save it. */
static void
vmstate_synced(struct agent *a, void *arg)
{
	struct vm *vm = arg;
	struct vmcapture *c = vm->capture;
	struct cap_err err;

	(void)a;
	if (c == NULL)
		return;
	/* What changed while we waited: a StopVM, a stream the guest
	 * opened before it was refused. */
	if (vm->state != VM_RUNNING || agent_nstreams(vm->agent) > 0) {
		cap_err_set(&err, EBUSY, E_CONFLICT, "cannot save VM %s: it "
		    "is %s%s", vm->id, vm->state != VM_RUNNING ?
		    vm_state_name(vm->state) : "running with a stream",
		    vm->state != VM_RUNNING ? "" : " that opened meanwhile; "
		    "try again");
		vmstate_resume(c, &err);
		return;
	}
	if (vm_core.env.hv->save(vm->hv, c->state_fd, 1, &err) < 0)
		vmstate_resume(c, &err);
}

static void
vmstate_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct vmcapture *c = arg;
	struct cap_err err;

	(void)fd;
	(void)what;
	cap_err_set(&err, ETIMEDOUT, E_TIMEOUT, "saving the VM took more "
	    "than %u s", vmstate_limit_s(c->vm));
	if (vm_core.env.hv->save_cancel != NULL)
		vm_core.env.hv->save_cancel(c->vm->hv);
	vmstate_resume(c, &err);
}

int
vmstate_capture(struct vm *vm, int state_fd, int disk_fd, off_t *disk_size,
    vmstate_cb cb, void *arg, struct cap_err *err)
{
	struct timeval tv = { (time_t)vmstate_limit_s(vm), 0 };
	struct vmcapture *c;
	const char *why;
	char buf[256];

	if (*(why = vmstate_why_not(vm, buf, sizeof(buf))) != '\0')
		return cap_err_set(err, EBUSY, E_CONFLICT, "cannot save VM %s: "
		    "%s", vm->id, why);
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(vm_core.env.base, vmstate_timeout,
	    c)) == NULL) {
		free(c);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	c->vm = vm;
	c->state_fd = state_fd;
	c->disk_fd = disk_fd;
	c->disk_size = disk_size;
	c->cb = cb;
	c->arg = arg;
	c->t0 = util_now_ms();
	vm->capture = c;
	event_add(c->timer, &tv);
	agent_sync(vm->agent, vmstate_synced, vm);
	return 0;
}

int
vmstate_hv_event(struct vm *vm, enum hv_event ev)
{
	struct vmcapture *c = vm->capture;
	struct cap_err err;
	uint64_t t;

	if (c == NULL || (ev != HV_EV_SAVED && ev != HV_EV_SAVE_FAILED))
		return 0;
	if (ev == HV_EV_SAVE_FAILED) {
		cap_err_set(&err, EIO, E_VM_FAILED, "%s could not save the VM",
		    vm_core.env.hv->name);
		vmstate_resume(c, &err);
		return 1;
	}
	t = util_now_ms();
	if (vmstate_copy_disk(c, &err) < 0) {
		vmstate_resume(c, &err);
		return 1;
	}
	log_info("vm %s: saved whole (stopped %llu ms, of which the disk "
	    "%llu ms)", vm->id, (unsigned long long)(util_now_ms() - c->t0),
	    (unsigned long long)(util_now_ms() - t));
	vmstate_resume(c, NULL);
	return 1;
}

void
vmstate_gone(struct vm *vm)
{
	struct vmcapture *c = vm->capture;
	struct cap_err err;

	if (c == NULL)
		return;
	c->vm = NULL;
	vm->capture = NULL;
	cap_err_set(&err, ECANCELED, E_VM_FAILED, "the VM went away while "
	    "it was being saved");
	vmstate_done(c, &err);
}

int
vmstate_prepare(struct vm *vm, struct hv_vm_config *cfg, int *disk,
    struct cap_err *err)
{
	const struct vmstate_src *src = vm->restore_src;
	char path[64];
	int r;

	*disk = -1;
	if (src->key != NULL && strcmp(src->key, vm->ident) != 0)
		return cap_err_set(err, EINVAL, E_CONFLICT, "the saved VM "
		    "cannot go on here: its kernel, initramfs, base image, "
		    "settings or capsule's hypervisor (%s %s) differ from "
		    "when it was saved", vm_core.env.hv->name,
		    vm_core.env.caps.version);
	if ((*disk = openat(vm->files.private_fd, DISK_FILE, O_RDWR | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot create the "
		    "VM's disk: %s", strerror(errno));
	if ((r = disk_copy(src->disk_fd, *disk, src->disk_size)) < 0) {
		r = cap_err_set(err, -r, E_INTERNAL, "cannot copy the saved "
		    "VM's disk: %s", strerror(-r));
		goto fail;
	}
	/* Its own open file: QEMU reads it from the start. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", src->state_fd);
	if ((vm->tmpl_state = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot open the saved "
		    "VM's state: %s", strerror(errno));
		goto fail;
	}
	cfg->ram = HV_RAM_RESTORE;
	cfg->restore_fd = vm->tmpl_state;
	vm->tmpl_phase = VMT_RESTORING;
	vm->start_how = src->how;
	snprintf(vm->start_note, sizeof(vm->start_note), "%s", src->note);
	return 0;
fail:
	closep(disk);
	unlinkat(vm->files.private_fd, DISK_FILE, 0);
	return r;
}
