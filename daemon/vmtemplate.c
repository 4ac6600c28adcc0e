/*
 * vmtemplate.c — how a VM start uses templates (template.h): restored
 * from one when its spec has one; else booted with its RAM in a file the
 * daemon holds, so that at ready one can be taken from it.
 *
 * A VM that may use templates is ephemeral (a sandbox's disk is its own),
 * has no shared folders or raw serial ports (their far ends are not part
 * of a saved state) and boots capsule's own kernel and initramfs without
 * boot_args (so only capsule's code has run before ready). Templates are
 * per owner. Phases, all before StartVM is answered:
 *
 *   cold:      boot ... HELLO [NET] -> CAPTURING (a PING answered, then
 *              hv save) -> SAVED: commit, resume, REFRESH -> REFRESHING
 *              -> HELLO -> running
 *   restored:  hv restore -> RESTORED: REFRESH -> REFRESHING -> HELLO ->
 *              running (NET was done in the template)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "osdep.h"
#include "proto.h"
#include "template.h"
#include "util.h"
#include "vmpriv.h"

/* The network as the guest sees it: the mode and the routes NET gives. */
static char *
vmtemplate_net(const struct netpol *p)
{
	char *s = strdup(netpol_mode_name(p->mode)), *more;

	for (size_t i = 0; s != NULL && i < p->nentries; i++) {
		if (p->entries[i].kind != NETPOL_CIDR)
			continue;
		more = util_strdup_printf("%s %08x/%u", s, p->entries[i].net,
		    (unsigned)p->entries[i].prefix);
		free(s);
		s = more;
	}
	return s;
}

/* Why this start cannot use a template ("" if it can). */
static const char *
vmtemplate_why_not(const struct vm *vm)
{
	if (!vm_core.limits.templates)
		return "templates are off (capsuled.conf)";
	if (vm_core.env.hv->save == NULL)
		return "the hypervisor backend cannot save a VM";
	if (vm->spec.sandbox != NULL)
		return "a sandbox boots from its own disk";
	/* What runs before ready is capsule's own kernel and agent only, so
	 * a template holds (and costs) what they touch, nothing a caller
	 * chose to put in memory. */
	if (vm->spec.kernel_named || vm->spec.initrd_named)
		return "a kernel or initramfs of the caller's boots";
	if (vm->spec.boot_args != NULL)
		return "boot_args boot";
	if (vm->spec.nvolumes > 0)
		return "shared folders are not part of a template";
	if (vm->spec.nports > 0)
		return "raw serial ports are not part of a template";
	return "";
}

char *
vmtemplate_key(const struct vm *vm, const struct hv_vm_config *cfg)
{
	struct template_spec ts;
	char hv[160], arch[32] = "", *net, *key;

	/* Per owner: a copy shares its template's boot-time secrets (kernel
	 * layout, stack canaries, network hash keys), which must not cross
	 * from one user to another. */
	/* Another architecture than the host's is named (the host's is not,
	 * which keeps keys, and so snapshots, from before guests had one). */
	if (vm->spec.arch != ctl_arch_host())
		snprintf(arch, sizeof(arch), "arch %s\n",
		    ctl_arch_name(vm->spec.arch));
	snprintf(hv, sizeof(hv), "%s %s %s\n%sowner %u", vm_core.env.hv->name,
	    hv_accel_name(vm_core.env.caps.arch_accel[vm->spec.arch]),
	    vm_core.env.caps.version, arch, (unsigned)vm->who.uid);
	if ((net = vmtemplate_net(&vm->spec.network)) == NULL)
		return NULL;
	memset(&ts, 0, sizeof(ts));
	ts.hv = hv;
	ts.kernel_fd = cfg->kernel_fd;
	ts.initrd_fd = cfg->initrd_fd;
	ts.rootfs_fd = cfg->rootfs_fd;
	ts.vcpus = cfg->vcpus;
	ts.memory_mib = cfg->memory_mib;
	ts.disk_mib = vm->spec.disk_mib;
	ts.agent_args = cfg->agent_args;
	ts.boot_args = cfg->boot_args;
	ts.net = net;
	key = template_key(&ts);
	free(net);
	return key;
}

int
vmtemplate_prepare(struct vm *vm, struct hv_vm_config *cfg, int *disk,
    struct cap_err *err)
{
	struct template *t;
	const char *why = vmtemplate_why_not(vm);
	int fd;

	*disk = -1;
	vm->start_how = "cold";
	if (*why) {
		snprintf(vm->start_note, sizeof(vm->start_note), "%s", why);
		return 0;
	}
	if ((vm->tmpl_key = strdup(vm->ident)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");

	if ((t = template_get(vm->tmpl_key)) != NULL) {
		if ((vm->tmpl_state = template_state(t, err)) < 0 ||
		    (*disk = template_copy_disk(t, vm->files.private_fd,
		    DISK_FILE, err)) < 0) {
			/* Not usable: it goes, and this start boots. */
			log_warn("vm %s: template unusable (%s); booting cold",
			    vm->id, err->msg);
			closep(&vm->tmpl_state);
			template_drop(vm->tmpl_key);
			snprintf(vm->start_note, sizeof(vm->start_note),
			    "the template could not be used: %.200s",
			    err->msg);
		} else {
			vm->tmpl_phase = VMT_RESTORING;
			vm->start_how = "restored";
			cfg->ram = HV_RAM_TEMPLATE;
			cfg->ram_fd = template_ram(t);
			cfg->restore_fd = vm->tmpl_state;
			return 0;
		}
	}
	/* Cold, with RAM a template can be copied from. */
	if ((fd = osdep_memfd("capsule-guest-ram", 0)) < 0 ||
	    ftruncate(fd, (off_t)(cfg->memory_mib << 20)) < 0) {
		if (fd >= 0)
			close(fd);
		return cap_err_set(err, errno, E_INTERNAL, "guest RAM: %s",
		    strerror(errno));
	}
	vm->tmpl_ram = fd;
	cfg->ram = HV_RAM_SHARED;
	cfg->ram_fd = fd;
	if (vm->start_note[0] == '\0')
		snprintf(vm->start_note, sizeof(vm->start_note), "%s",
		    "no template for this spec yet");
	return 0;
}

static void	vmtemplate_saved(struct vm *, int);

/* The agent has read all we sent: save. */
static void
vmtemplate_synced(struct agent *a, void *arg)
{
	struct vm *vm = arg;
	struct cap_err err;

	if (vm->tmpl_phase != VMT_CAPTURING || vm->state != VM_STARTING ||
	    vm->failing)
		return;
	if (vm_core.env.hv->save(vm->hv, vm->tmpl_state, 0, &err) < 0) {
		log_warn("vm %s: cannot save a template: %s", vm->id, err.msg);
		vmtemplate_saved(vm, 0);
	}
}

/* The guest is ready after a cold boot: take a template now if its spec
 * has none. 1: taking one (vm_running comes later), 0: go on. */
int
vmtemplate_capture(struct vm *vm)
{
	struct cap_err err;
	int fd;

	if (vm->tmpl_key == NULL || vm->tmpl_ram < 0 ||
	    vm->tmpl_phase != VMT_NONE ||
	    (agent_features(vm->agent) & (CHAN_FEAT_REFRESH |
	    CHAN_FEAT_HOSTNAME)) != (CHAN_FEAT_REFRESH | CHAN_FEAT_HOSTNAME)) {
		closep(&vm->tmpl_ram);
		return 0;
	}
	if ((fd = template_begin(vm->tmpl_key, &err)) < 0) {
		if (fd != -EEXIST && fd != -EBUSY)
			log_warn("vm %s: %s", vm->id, err.msg);
		closep(&vm->tmpl_ram);
		return 0;
	}
	vm->tmpl_state = fd;
	vm->tmpl_phase = VMT_CAPTURING;
	/* Nothing may be on its way to the guest when it is saved (half a
	 * frame in a copy would break its channel): first a PING answered,
	 * and no heartbeat until the copy's HELLO. */
	agent_sync(vm->agent, vmtemplate_synced, vm);
	vm_arm_timer(vm, VMT_SAVE_S);
	return 1;
}

/* A HELLO during starting: the answer to REFRESH? */
int
vmtemplate_hello(struct vm *vm)
{
	/* Not asked for yet: REFRESH will bring the one that counts. */
	if (vm->tmpl_phase == VMT_RESTORING)
		return 1;
	if (vm->tmpl_phase != VMT_REFRESHING)
		return 0;
	vm->tmpl_phase = VMT_NONE;
	vm_running(vm);
	return 1;
}

static void
vmtemplate_refresh(struct vm *vm)
{
	char host[CHAN_MAX_HOSTNAME + 1];
	struct cap_err err;

	vm_hostname(vm, host, sizeof(host));
	if (agent_refresh(vm->agent, host, &err) < 0) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	vm->tmpl_phase = VMT_REFRESHING;
	vm_arm_timer(vm, VMT_RESTORE_S);
}

static void
vmtemplate_saved(struct vm *vm, int ok)
{
	struct cap_err err;
	uint64_t t0 = util_now_ms();
	int disk = -1, committed = 0;

	closep(&vm->tmpl_state);
	vm->tmpl_phase = VMT_NONE;
	if (ok && (disk = openat(vm->files.private_fd, DISK_FILE, O_RDONLY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0)
		cap_err_set(&err, errno, E_INTERNAL, "cannot open the VM's "
		    "disk: %s", strerror(errno));
	else if (ok && template_commit(vm->tmpl_key, vm->tmpl_ram,
	    vm->spec.memory_mib << 20, disk, &err) == 0)
		committed = 1;
	else if (!ok)
		cap_err_set(&err, EIO, E_INTERNAL, "%s", "QEMU could not save "
		    "the VM");
	closep(&disk);
	if (!committed) {
		template_abort(vm->tmpl_key);
		log_warn("vm %s: no template taken: %s", vm->id, err.msg);
	} else {
		log_info("vm %s: template taken (%llu ms)", vm->id,
		    (unsigned long long)(util_now_ms() - t0));
		snprintf(vm->start_note, sizeof(vm->start_note), "%s",
		    "booted; later starts of this spec restore its template");
	}
	/* The file held our copy's memory: no more use for it. */
	closep(&vm->tmpl_ram);
	if (vm_core.env.hv->pause(vm->hv, 0, &err) < 0) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	if (committed)
		/* It is a copy's original: as new as the copies. */
		vmtemplate_refresh(vm);
	else {
		agent_heartbeat(vm->agent, 1);
		vm_running(vm);
	}
}

void
vmtemplate_hv_event(struct vm *vm, enum hv_event ev)
{
	if (vm->state != VM_STARTING || vm->failing)
		return;
	switch (ev) {
	case HV_EV_SAVED: case HV_EV_SAVE_FAILED:
		if (vm->tmpl_phase == VMT_CAPTURING)
			vmtemplate_saved(vm, ev == HV_EV_SAVED);
		break;
	case HV_EV_RESTORED:
		if (vm->tmpl_phase == VMT_RESTORING) {
			closep(&vm->tmpl_state);
			vmtemplate_refresh(vm);
		}
		break;
	case HV_EV_RESTORE_FAILED:
		if (vm->tmpl_phase != VMT_RESTORING)
			break;
		if (vmtemplate_lost(vm, 1))
			vm_fail_start(vm, E_VM_FAILED, "restoring the VM from "
			    "its start template failed; the template was "
			    "removed, and the next start of this spec boots");
		else {
			/* A fork's copy or a snapshot's VM (vmstate.c): no
			 * boot to fall back on. */
			vm->tmpl_phase = VMT_NONE;
			vm_fail_start(vm, E_VM_FAILED, "QEMU could not restore "
			    "the VM from its saved state");
		}
		break;
	default:
		break;
	}
}

/* The restore did not work (QEMU said so, or ended): the template goes,
 * so the next start of this spec boots. */
int
vmtemplate_lost(struct vm *vm, int drop)
{
	if (vm->state != VM_STARTING || vm->tmpl_key == NULL ||
	    vm->start_how == NULL || strcmp(vm->start_how, "restored") != 0 ||
	    vm->tmpl_lost)
		return 0;
	log_warn("vm %s: restoring its template failed", vm->id);
	if (drop)
		template_drop(vm->tmpl_key);
	vm->tmpl_phase = VMT_NONE;
	vm->tmpl_lost = 1;
	return 1;
}

/* The VM's timer, while starting. 1 if it was about a template. */
int
vmtemplate_timeout(struct vm *vm)
{
	if (vm->tmpl_phase == VMT_CAPTURING) {
		log_warn("vm %s: saving a template took more than %d s",
		    vm->id, VMT_SAVE_S);
		/* Or it would go on and stop the guest when it is done. */
		if (vm_core.env.hv->save_cancel != NULL)
			vm_core.env.hv->save_cancel(vm->hv);
		vmtemplate_saved(vm, 0);
		return 1;
	}
	/* A restore that does not answer: boot instead. The template stays:
	 * a busy host is no reason to think it broken. */
	if (vmtemplate_lost(vm, 0)) {
		vm_fail_start(vm, E_TIMEOUT, "the VM restored from its start "
		    "template did not answer");
		return 1;
	}
	/* A fork's copy or a snapshot's VM (vmstate.c): nothing to boot. */
	if ((vm->tmpl_phase == VMT_RESTORING ||
	    vm->tmpl_phase == VMT_REFRESHING) && vm->start_how != NULL &&
	    strcmp(vm->start_how, "cold") != 0) {
		char msg[160];

		snprintf(msg, sizeof(msg), "the VM started from a saved state "
		    "(%s) did not answer in time", vm->start_how);
		vm->tmpl_phase = VMT_NONE;
		vm_fail_start(vm, E_TIMEOUT, msg);
		return 1;
	}
	return 0;
}

void
vmtemplate_release(struct vm *vm)
{
	if (vm->tmpl_phase == VMT_CAPTURING && vm->tmpl_key != NULL)
		template_abort(vm->tmpl_key);
	vm->tmpl_phase = VMT_NONE;
	closep(&vm->tmpl_ram);
	closep(&vm->tmpl_state);
	free(vm->tmpl_key);
	vm->tmpl_key = NULL;
}
