/*
 * doctor.c — host checks and capabilities (see doctor.h).
 *
 * A capability is true only for what works here today: a feature that is
 * not built, or not available on this host, is false.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifdef __linux__
#include <systemd/sd-daemon.h>
#endif

#include "doctor.h"
#include "paths.h"
#include "proto.h"
#include "vm.h"
#include "vmlimits.h"

#define DOCTOR_MIN_FREE_MIB	2048

static struct doctor_env denv;

void
doctor_init(const struct doctor_env *e)
{
	denv = *e;
}

static void
check(json_t *a, const char *name, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
check(json_t *a, const char *name, const char *status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_array_append_new(a, json_pack("{s:s, s:s, s:s}", J_CHECK_NAME,
	    name, J_CHECK_STATUS, status, J_CHECK_MESSAGE, msg));
}

static void
check_disk(json_t *a)
{
	struct statvfs sv;
	unsigned long long free_mib;

	if (statvfs(denv.state_dir, &sv) < 0) {
		check(a, "state_dir", CHECK_FAIL, "%s: %s", denv.state_dir,
		    strerror(errno));
		return;
	}
	free_mib = (unsigned long long)sv.f_bavail * sv.f_frsize >> 20;
	check(a, "state_dir", free_mib < DOCTOR_MIN_FREE_MIB ? CHECK_WARN :
	    CHECK_PASS, "%s: %llu MiB free (VMs' writable layers grow here)%s",
	    denv.state_dir, free_mib, free_mib < DOCTOR_MIN_FREE_MIB ?
	    "; little room: a full disk ends the VMs writing to it" : "");
}

static void
check_socket(json_t *a)
{
	struct stat st;
	struct group *g;

	if (denv.socket == NULL) {
		check(a, "control_socket", CHECK_PASS, "handed over by systemd "
		    "(socket activation)");
		return;
	}
	if (stat(denv.socket, &st) < 0) {
		check(a, "control_socket", CHECK_FAIL, "%s: %s", denv.socket,
		    strerror(errno));
		return;
	}
	g = (st.st_mode & 0060) ? getgrgid(st.st_gid) : NULL;
	check(a, "control_socket", (st.st_mode & 0007) ? CHECK_FAIL :
	    CHECK_PASS, "%s, mode %04o%s%s%s", denv.socket,
	    (unsigned)(st.st_mode & 07777), g != NULL ? ", group " : "",
	    g != NULL ? g->gr_name : "", (st.st_mode & 0060) ?
	    " (its members may use capsule, each seeing only their own VMs)" :
	    " (only its owner and root may use it)");
}

/* Guests of other architectures than the host's: optional. */
static void
check_arches(json_t *a)
{
	char imgdir[PATH_MAX], name[32];
	struct cap_err err;

	for (enum ctl_arch ar = CTL_ARCH_X86_64; ar <= CTL_ARCH_MAX; ar++) {
		if (ar == ctl_arch_host())
			continue;
		snprintf(name, sizeof(name), "guests_%s", ctl_arch_name(ar));
		if (denv.caps->arch_accel[ar] == HV_ACCEL_AUTO)
			check(a, name, CHECK_WARN, "cannot run: %s",
			    denv.caps->arch_why[ar]);
		else if (paths_find_image_dir(denv.image_dir, ar, imgdir,
		    sizeof(imgdir), &err) < 0)
			check(a, name, CHECK_WARN, "%s (%s) could run, but %s",
			    denv.hv->name, hv_accel_name(
			    denv.caps->arch_accel[ar]), err.msg);
		else
			check(a, name, CHECK_PASS, "%s (%s), image in %s",
			    denv.hv->name, hv_accel_name(
			    denv.caps->arch_accel[ar]), imgdir);
	}
}

json_t *
doctor_report(uid_t uid)
{
	json_t *r = json_object(), *a = json_array(), *caps = json_object();
	char imgdir[PATH_MAX];
	struct cap_err err;
	int booted = 0;

#ifdef __linux__
	booted = sd_booted() > 0;
#endif
	check(a, "hypervisor", CHECK_PASS, "backend %s: %s", denv.hv->name,
	    denv.caps->version);
	if (denv.caps->accel == HV_ACCEL_TCG)
		check(a, "acceleration", CHECK_WARN, "tcg (software emulation, "
		    "slow): %s", denv.caps->accel_why);
	else if (denv.caps->accel_why[0])
		/* A backend with something to say of itself (vz: untried). */
		check(a, "acceleration", CHECK_WARN, "%s: %s",
		    hv_accel_name(denv.caps->accel), denv.caps->accel_why);
	else
		check(a, "acceleration", CHECK_PASS, "%s",
		    hv_accel_name(denv.caps->accel));
	if (paths_find_image_dir(denv.image_dir, CTL_ARCH_DEFAULT, imgdir,
	    sizeof(imgdir), &err) < 0)
		check(a, "guest_image", CHECK_FAIL, "%s", err.msg);
	else
		check(a, "guest_image", CHECK_PASS, "%s", imgdir);
	check_arches(a);
	check_disk(a);
	check_socket(a);
	if (denv.caps->shares_why[0])
		check(a, "shared_folders", CHECK_WARN, "%s",
		    denv.caps->shares_why);
	else
		check(a, "shared_folders", CHECK_PASS, "virtiofsd, one per "
		    "share (docs/volumes.md)");
	check(a, "resource_limits", vmlimits_use_scope() ? CHECK_PASS :
	    CHECK_WARN, "%s", vmlimits_how());
	check(a, "cgroups", CHECK_PASS, "%s",
	    access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ?
	    "cgroup v2" : "cgroup v1 or hybrid");
	check(a, "systemd", booted ? CHECK_PASS : CHECK_WARN, "%s", booted ?
	    "running: socket activation, notify, watchdog and scopes work" :
	    "not running on this host: capsuled runs as a plain daemon");
	/* Only the caller's VMs (root: all), as ListVMs shows them. */
	check(a, "vms", CHECK_PASS, "%d (%d running, %d unresponsive, %d "
	    "crashed)", vm_count_visible(uid, -1),
	    vm_count_visible(uid, VM_RUNNING),
	    vm_count_visible(uid, VM_UNRESPONSIVE),
	    vm_count_visible(uid, VM_CRASHED));
	json_object_set_new(caps, CAP_EXEC_STREAMING, json_true());
	json_object_set_new(caps, CAP_FILE_DOWNLOAD, json_true());
	json_object_set_new(caps, CAP_FILE_UPLOAD, json_true());
	/* Named sandboxes keep their disk (sandbox.c). */
	json_object_set_new(caps, CAP_SANDBOX_PERSISTENT, json_true());
	/* SnapshotVM keeps a running VM's (a sandbox's too) memory, devices
	 * and disk (vmsnap.c), where the backend can save a VM. */
	json_object_set_new(caps, CAP_SANDBOX_SNAPSHOT,
	    json_boolean(denv.hv->save != NULL));
	/*
	 * docs/network.md: "none" (no NIC) by default, "allow" (egress only
	 * through capsuled, DNS answered by the agent's stub) and "nat" (a
	 * NIC on QEMU's user network).
	 */
	json_object_set_new(caps, CAP_NET_DEFAULT_DENY, json_true());
	json_object_set_new(caps, CAP_NET_ALLOWLIST, json_true());
	json_object_set_new(caps, CAP_NET_GUEST_IF, json_true());
	json_object_set_new(caps, CAP_DNS_CONTROL, json_true());
	json_object_set_new(r, J_CHECKS, a);
	json_object_set_new(r, J_CAPABILITIES, caps);
	return r;
}
