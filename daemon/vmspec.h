/*
 * vmspec.h — one VM's configuration, resolved and validated once.
 *
 * A StartVM request (proto/ctl.h, already checked for types and ranges)
 * plus the daemon's defaults becomes a struct vm_spec: every path filled
 * in, and for each one whether the caller named it (then capsuled acts on
 * it with the caller's rights, see caller.h) or capsuled chose it. The VM
 * keeps its spec for its whole life; the state record and ListVMs are
 * written from it, and the backend's configuration is derived from it.
 */
#ifndef CAPSULE_VMSPEC_H
#define CAPSULE_VMSPEC_H

#include <stdint.h>

#include "ctl.h"
#include "err.h"

#define VMSPEC_PRIVATE		"vms"	/* <state>/vms/<id>: capsuled's */
#define VMSPEC_PUBLIC		"run"	/* <state>/run/<id>: the owner's */
#define VMSPEC_PROXY		"proxy.sock"
#define VMSPEC_CONSOLE		"console.log"
#define VMSPEC_PORT_FMT		"port-%s.sock"

/* Where a caller-facing file goes; either way it is made with the
 * caller's rights. */
enum vm_place {
	VM_PLACE_RUN_DIR,	/* in the run dir */
	VM_PLACE_NAMED,		/* at a path the caller named */
};

struct vm_spec {
	/* Guest image; *_named: the caller named it (else the default). */
	char		*kernel, *initrd, *rootfs;
	int		 kernel_named, initrd_named, rootfs_named;
	/* The image the root file system is (its digest; rootfs is then
	 * the store's file), or NULL. */
	char		*image;
	/* The sandbox it runs from (its id; its disk is the sandbox's), or
	 * NULL: an ephemeral VM with a disk of its own. */
	char		*sandbox;
	char		*boot_args;		/* may be NULL */
	enum ctl_arch	 arch;		/* the guest's, never DEFAULT */
	unsigned	 vcpus;
	uint64_t	 memory_mib;
	uint32_t	 guest_port;
	unsigned	 launch_seconds;
	uint64_t	 disk_mib;	/* the writable disk's size */
	unsigned	 idle_seconds;	/* stop when idle this long; 0: never */
	int		 stop_on_disconnect;
	/* Started for a warm pool (vmpool.c) and not handed out yet: it
	 * stops with the daemon that pooled it, never adopted. */
	int		 pooled;
	/* The VM's private dir, <state>/vms/<id>: capsuled's own. */
	char		*private_dir;
	/* The run dir: the caller's run_dir, or (run_dir_named 0) the
	 * public dir <state>/run/<id> capsuled makes for the VM's owner. */
	char		*run_dir;
	int		 run_dir_named;
	char		*proxy_path;
	enum vm_place	 proxy_place;
	char		*console_path;
	enum vm_place	 console_place;	/* NAMED: the caller's, kept */
	uint64_t	 console_max;	/* bytes */
	/* Raw serial ports: names, and their sockets in the run dir. */
	char		*port_names[CTL_MAX_SERIAL_PORTS];
	char		*port_paths[CTL_MAX_SERIAL_PORTS];
	unsigned	 nports;
	/* Network mode and policy; published ports (docs/network.md). */
	struct netpol	 network;
	struct netpub	 publish[NETPOL_MAX_PUBLISH];
	unsigned	 npublish;
	/* Shared folders; each host dir is opened as the caller. */
	struct volume	 volumes[VOLUME_MAX];
	unsigned	 nvolumes;
};

struct vmspec_env {
	const char	*state_dir;
	const char	*image_dir;	/* --image-dir, may be NULL */
	uint64_t	 console_max;	/* default console log cap, bytes */
};

/* Fills spec from req and the defaults; only the image dir search looks at
 * the file system. */
int	vmspec_resolve(const struct ctl_start *req, const struct vmspec_env *e,
	    const char *vm_id, struct vm_spec *spec, struct cap_err *err);
void	vmspec_free(struct vm_spec *spec);

#endif /* CAPSULE_VMSPEC_H */
