/*
 * ctl.h — control socket requests and replies: parsing and validation.
 *
 * Pure (jansson, no I/O): the daemon hands in host limits and gets back a
 * validated struct or an error naming what was wrong. Whether paths exist is
 * checked by the daemon, which can look at the file system.
 */
#ifndef CAPSULE_CTL_H
#define CAPSULE_CTL_H

#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "netpolicy.h"
#include "volume.h"

#define CTL_DEFAULT_VCPUS		1
#define CTL_DEFAULT_MEMORY_MIB		512
#define CTL_MIN_MEMORY_MIB		64
#define CTL_DEFAULT_LAUNCH_SECONDS	30
#define CTL_MAX_LAUNCH_SECONDS		3600
/* The VM's writable disk (sparse): what the guest can add to its root. */
#define CTL_DEFAULT_DISK_MIB		8192
#define CTL_MIN_DISK_MIB		64
#define CTL_MAX_DISK_MIB		(2ULL << 20)	/* 2 TiB */
#define CTL_MAX_IDLE_SECONDS		(30 * 86400)
#define CTL_MAX_BOOT_ARGS		2048
#define CTL_MAX_SOCKET_PATH		107	/* sun_path minus the NUL */
#define CTL_MAX_SERIAL_PORTS		4
#define CTL_MAX_PORT_NAME		64	/* 1-64 of [a-z0-9._-] */

struct ctl_limits {
	unsigned	max_vcpus;
	uint64_t	max_memory_mib;
	/* Defaults for a request that says nothing (0: the built-in ones,
	 * CTL_DEFAULT_*); capped at the maxima. */
	unsigned	default_vcpus;
	uint64_t	default_memory_mib;
};

/* Guest CPU architectures (StartVM "arch"). */
enum ctl_arch {
	CTL_ARCH_DEFAULT = 0,	/* not given: the host's */
	CTL_ARCH_X86_64,
	CTL_ARCH_AARCH64,
};
#define CTL_ARCH_MAX	CTL_ARCH_AARCH64

/* "x86_64", "aarch64"; the host's for CTL_ARCH_DEFAULT. */
const char	*ctl_arch_name(enum ctl_arch a);
/* 0, or -EINVAL for a name that is none of them. */
int		 ctl_arch_parse(const char *s, enum ctl_arch *a);
/* The architecture capsule itself was built for (CTL_ARCH_DEFAULT on a
 * host that is neither). */
enum ctl_arch	 ctl_arch_host(void);

/* StartVM, every field validated; NULL strings mean "use the default". */
struct ctl_start {
	char		*kernel_path;
	char		*rootfs_path;
	char		*image;		/* a name or digest; NULL: none */
	enum ctl_arch	 arch;		/* DEFAULT: not given */
	char		*initrd_path;
	char		*boot_args;
	char		*run_dir;
	char		*proxy_socket_path;
	char		*console_log_path;
	unsigned	vcpus;
	uint64_t	memory_mib;
	uint32_t	guest_port;
	unsigned	launch_seconds;
	uint64_t	disk_mib;
	unsigned	idle_seconds;	/* 0: never */
	int		stop_on_disconnect;
	/* Raw virtio-serial ports: valid, unique names, none the agent's. */
	char		*serial_ports[CTL_MAX_SERIAL_PORTS];
	unsigned	nserial_ports;
	/* Network mode and "allow" entries; ports to publish, host ports
	 * unique. */
	struct netpol	network;
	struct netpub	publish[NETPOL_MAX_PUBLISH];
	unsigned	npublish;
	/* Shared folders: checked, guest paths unique. */
	struct volume	volumes[VOLUME_MAX];
	unsigned	nvolumes;
};

/* Parses one request line: a JSON object with a string "op". On success
 * *req owns the object and *op points into it. Errors: invalid_json,
 * invalid_argument. */
int	ctl_parse_request(const char *line, size_t len, json_t **req,
	    const char **op, struct cap_err *err);
int	ctl_parse_start(json_t *req, const struct ctl_limits *lim,
	    struct ctl_start *out, struct cap_err *err);
void	ctl_start_free(struct ctl_start *s);
/* StopVM: *vm_id is NULL when absent; then *all says stop every VM the
 * caller may see, else this connection's VMs. */
int	ctl_parse_stop(json_t *req, const char **vm_id, int *all,
	    struct cap_err *err);
/* "network" (absent or null: none) into p, which the caller frees with
 * netpol_free; errors name the entry. */
int	ctl_parse_network(json_t *v, struct netpol *p, struct cap_err *err);
json_t	*ctl_network_json(const struct netpol *p);
/* "publish" (absent or null: none). */
int	ctl_parse_publish(json_t *v, struct netpub *out, unsigned *n,
	    struct cap_err *err);
json_t	*ctl_publish_json(const struct netpub *p, unsigned n);
/* Is s[0..len) a raw serial port name: 1-64 of a-z 0-9 . _ - ? */
int	ctl_port_name_ok(const char *s, size_t len);
/* A string field, pointing into req (NULL if absent and not required). */
int	ctl_get_string(json_t *req, const char *field, int required,
	    const char **out, struct cap_err *err);
/* A boolean field; absent leaves *out as it was. */
int	ctl_get_bool(json_t *req, const char *field, int *out,
	    struct cap_err *err);
/* Rejects any field of req other than op, id and the NULL-terminated list. */
int	ctl_check_fields(json_t *req, const char *op, const char *const *known,
	    struct cap_err *err);

/* Where capsuled listens unless told otherwise: /run/capsule/capsuled.sock
 * for root, $XDG_RUNTIME_DIR/capsule/capsuled.sock for everyone else. The
 * daemon and the CLI must agree, so it lives here. */
int	ctl_default_socket(char *buf, size_t len, struct cap_err *err);

/* A VM as ListVMs and StartVM's reply describe it. */
struct ctl_vm {
	const char	*vm_id;
	const char	*state;
	int		 pid;
	unsigned	 owner_uid;
	unsigned	 vcpus;
	uint64_t	 memory_mib;
	long long	 created_at;	/* seconds since the epoch */
	const char	*accel, *backend;
	const char	*arch;
	const char	*kernel_path, *rootfs_path;
	const char	*image;			/* its digest, or NULL */
	const char	*sandbox;		/* its name, or NULL */
	uint64_t	 disk_mib;
	unsigned	 idle_seconds;		/* 0: none */
	const char	*run_dir, *proxy_socket_path, *console_log_path;
	uint32_t	 guest_port;
	const char	*const *port_names;	/* nports of them */
	const char	*const *port_paths;
	unsigned	 nports;
	int		 have_exit_status;
	int		 exit_status;
	const char	*error;			/* NULL: nothing to say */
	const struct netpol *network;		/* NULL: none */
	const struct netpub *publish;		/* npublish of them */
	unsigned	 npublish;
	const struct volume *volumes;		/* nvolumes of them */
	unsigned	 nvolumes;
	/* What an "allow" VM's egress did (have_egress). */
	int		 have_egress;
	uint64_t	 eg_dns_allowed, eg_dns_denied;
	uint64_t	 eg_allowed, eg_denied, eg_failed, eg_open;
	uint64_t	 eg_bytes_out, eg_bytes_in;
	/* StartVM: milliseconds from the request */
	uint64_t	 ms_ready, ms_spawn, ms_guest_boot;
	const char	*start;		/* "cold" or "restored" */
	const char	*start_note;	/* more on that, or "" */
	int		 pooled;	/* in a warm pool, nobody's yet */
};

/* A ListVMs entry. */
json_t	*ctl_vm_json(const struct ctl_vm *v);
/* StartVM's reply fields (to merge into ctl_reply_ok). */
json_t	*ctl_started_json(const struct ctl_vm *v);

/* Replies: {"ok":true} or {"ok":false,"error":...,"code":...}, with the
 * request's "id" echoed when it had one. */
json_t	*ctl_reply_ok(json_t *req);
json_t	*ctl_reply_error(json_t *req, const struct cap_err *err);

#endif /* CAPSULE_CTL_H */
