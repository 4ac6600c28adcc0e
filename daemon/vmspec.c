/*
 * vmspec.c — resolving a StartVM request (see vmspec.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "caller.h"
#include "paths.h"
#include "proto.h"
#include "util.h"
#include "vmspec.h"

static int
oom(struct cap_err *err)
{
	return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
}

/* The caller's path, or dir/name. */
static char *
path_or(const char *named, const char *dir, const char *name)
{
	return named != NULL ? strdup(named) :
	    util_strdup_printf("%s/%s", dir, name);
}

static int
check_socket_path(const char *field, const char *path, struct cap_err *err)
{
	if (strlen(path) > CTL_MAX_SOCKET_PATH)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "%s %s is %zu bytes long; a Unix socket path may have at "
		    "most %d: use a shorter %s or --state-dir", field, path,
		    strlen(path), CTL_MAX_SOCKET_PATH, J_RUN_DIR);
	return 0;
}

/* Something capsule creates needs a last component it can create. */
static int
check_creatable(const char *field, const char *path, struct cap_err *err)
{
	if (caller_basename(path) == NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s \"%s\" does not end in a file name", field, path);
	return 0;
}

int
vmspec_resolve(const struct ctl_start *req, const struct vmspec_env *e,
    const char *vm_id, struct vm_spec *s, struct cap_err *err)
{
	char imgdir[PATH_MAX], name[CTL_MAX_PORT_NAME + 16];
	int r;

	memset(s, 0, sizeof(*s));
	/* vm_check_arch has made sure it is one that runs here. */
	s->arch = req->arch != CTL_ARCH_DEFAULT ? req->arch : ctl_arch_host();
	if (req->kernel_path == NULL || req->rootfs_path == NULL ||
	    req->initrd_path == NULL) {
		if ((r = paths_find_image_dir(e->image_dir, s->arch, imgdir,
		    sizeof(imgdir), err)) < 0)
			return r;
	}
	s->kernel = path_or(req->kernel_path, imgdir, IMAGE_KERNEL);
	s->initrd = path_or(req->initrd_path, imgdir, IMAGE_INITRD);
	s->rootfs = path_or(req->rootfs_path, imgdir, IMAGE_ROOTFS);
	s->kernel_named = req->kernel_path != NULL;
	s->initrd_named = req->initrd_path != NULL;
	s->rootfs_named = req->rootfs_path != NULL;
	s->boot_args = req->boot_args ? strdup(req->boot_args) : NULL;
	s->vcpus = req->vcpus;
	s->memory_mib = req->memory_mib;
	s->guest_port = req->guest_port;
	s->launch_seconds = req->launch_seconds;
	s->disk_mib = req->disk_mib;
	s->idle_seconds = req->idle_seconds;
	s->stop_on_disconnect = req->stop_on_disconnect;
	s->console_max = e->console_max;
	s->private_dir = util_strdup_printf("%s/%s/%s", e->state_dir,
	    VMSPEC_PRIVATE, vm_id);
	if (s->kernel == NULL || s->initrd == NULL || s->rootfs == NULL ||
	    (req->boot_args != NULL && s->boot_args == NULL) ||
	    s->private_dir == NULL)
		goto nomem;

	s->run_dir_named = req->run_dir != NULL;
	s->run_dir = req->run_dir ? strdup(req->run_dir) :
	    util_strdup_printf("%s/%s/%s", e->state_dir, VMSPEC_PUBLIC, vm_id);
	if (s->run_dir == NULL)
		goto nomem;
	if (s->run_dir_named && (r = check_creatable(J_RUN_DIR, s->run_dir,
	    err)) < 0)
		goto fail;
	s->proxy_place = req->proxy_socket_path ? VM_PLACE_NAMED :
	    VM_PLACE_RUN_DIR;
	s->console_place = req->console_log_path ? VM_PLACE_NAMED :
	    VM_PLACE_RUN_DIR;
	s->proxy_path = path_or(req->proxy_socket_path, s->run_dir,
	    VMSPEC_PROXY);
	s->console_path = path_or(req->console_log_path, s->run_dir,
	    VMSPEC_CONSOLE);
	if (s->proxy_path == NULL || s->console_path == NULL)
		goto nomem;
	if ((r = check_socket_path(J_PROXY_SOCKET_PATH, s->proxy_path,
	    err)) < 0 ||
	    (r = check_creatable(J_PROXY_SOCKET_PATH, s->proxy_path, err)) < 0 ||
	    (r = check_creatable(J_CONSOLE_LOG_PATH, s->console_path, err)) < 0)
		goto fail;
	for (unsigned i = 0; i < req->nserial_ports; i++) {
		snprintf(name, sizeof(name), VMSPEC_PORT_FMT,
		    req->serial_ports[i]);
		s->port_names[i] = strdup(req->serial_ports[i]);
		s->port_paths[i] = util_strdup_printf("%s/%s", s->run_dir,
		    name);
		s->nports++;
		if (s->port_names[i] == NULL || s->port_paths[i] == NULL)
			goto nomem;
		if ((r = check_socket_path(J_SERIAL_PORTS, s->port_paths[i],
		    err)) < 0)
			goto fail;
	}
	s->network.mode = req->network.mode;
	if (req->network.nentries > 0) {
		s->network.entries = calloc(req->network.nentries,
		    sizeof(*s->network.entries));
		if (s->network.entries == NULL)
			goto nomem;
		memcpy(s->network.entries, req->network.entries,
		    req->network.nentries * sizeof(*s->network.entries));
		s->network.nentries = req->network.nentries;
	}
	memcpy(s->publish, req->publish, req->npublish * sizeof(s->publish[0]));
	s->npublish = req->npublish;
	for (unsigned i = 0; i < req->nvolumes; i++) {
		s->volumes[i].ro = req->volumes[i].ro;
		s->volumes[i].host = strdup(req->volumes[i].host);
		s->volumes[i].guest = strdup(req->volumes[i].guest);
		s->nvolumes = i + 1;
		if (s->volumes[i].host == NULL || s->volumes[i].guest == NULL)
			goto nomem;
	}
	return 0;
nomem:
	r = oom(err);
fail:
	vmspec_free(s);
	return r;
}

void
vmspec_free(struct vm_spec *s)
{
	free(s->kernel);
	free(s->initrd);
	free(s->rootfs);
	free(s->image);
	free(s->sandbox);
	free(s->boot_args);
	free(s->private_dir);
	free(s->run_dir);
	free(s->proxy_path);
	free(s->console_path);
	for (unsigned i = 0; i < s->nports; i++) {
		free(s->port_names[i]);
		free(s->port_paths[i]);
	}
	netpol_free(&s->network);
	volume_free(s->volumes, s->nvolumes);
	memset(s, 0, sizeof(*s));
}
