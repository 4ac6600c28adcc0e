/*
 * config.h — capsuled's configuration file.
 *
 *   /etc/capsule/capsuled.conf                      (capsuled as root)
 *   $XDG_CONFIG_HOME/capsule/capsuled.conf          (anyone else; default
 *                                                     ~/.config/capsule/...)
 *
 * One setting per line, `key = value`; `#` starts a comment line; blank
 * lines are ignored; a value may be quoted ("..."). Unknown keys, values
 * out of range and repeated keys (`pool` aside) are errors naming the file
 * and line. The
 * command line wins over the file. SIGHUP re-reads the file: what can
 * change in a running daemon (limits, defaults, timeouts, log level) does,
 * at once for new VMs and requests; the rest waits for a restart and
 * capsuled says so.
 *
 * The parser is pure (text in, struct out) so it is easy to test.
 */
#ifndef CAPSULE_CONFIG_H
#define CAPSULE_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CONFIG_SYSTEM_PATH	"/etc/capsule/capsuled.conf"
#define CONFIG_MAX_BYTES	(64 * 1024)
#define CONFIG_MAX_POOLS	16	/* `pool` lines */
#define CONFIG_POOL_MAX_SIZE	16	/* VMs in one (VMPOOL_MAX_SIZE) */

/* `pool = USER SIZE [STARTVM-FIELDS]`: keep SIZE VMs of that StartVM
 * request (a JSON object; {} if left out) ready for USER (a name or a
 * uid), as SetPool would. The only key that may repeat. */
struct config_pool {
	char		user[64];
	unsigned	size;
	char		request[1024];	/* JSON object text */
	unsigned	line;		/* in the file, for messages */
};

struct config {
	/* Where things are (restart to change). */
	char		socket[PATH_MAX];	/* "" = the default */
	char		socket_group[64];	/* "" = none: mode 0600 */
	char		state_dir[PATH_MAX];
	char		image_dir[PATH_MAX];
	char		accel[8];		/* auto, kvm, tcg */
	char		metrics_listen[128];	/* "" = no metrics */
	char		dns_server[64];		/* "" = the host's resolver */
	/* Reloadable. */
	char		log_level[8];
	unsigned	default_vcpus;
	uint64_t	default_memory_mib;
	uint64_t	console_log_max_mib;
	unsigned	request_timeout;	/* seconds */
	uint64_t	client_input_max_mib;
	/* Per user (owner uid), over all their VMs; 0: no limit. */
	unsigned	user_max_vms;
	unsigned	user_max_vcpus;
	uint64_t	user_max_memory_mib;
	/* The sizes of their sandboxes' disks and their running VMs'. */
	uint64_t	user_max_disk_mib;
	/* Per VM, for its hypervisor process; 0: no limit. */
	unsigned	vm_cpu_quota;		/* percent of one CPU */
	unsigned	vm_tasks_max;
	uint64_t	vm_memory_overhead_mib;	/* allowed above its RAM */
	char		templates[4];		/* on, off */
	struct config_pool pools[CONFIG_MAX_POOLS];
	unsigned	npools;
	/* Which keys the file set (so the command line can tell). */
	uint64_t	set;
};

/* Keys, for messages and for config_was_set. */
enum config_key {
	CK_SOCKET, CK_SOCKET_GROUP, CK_STATE_DIR, CK_IMAGE_DIR, CK_ACCEL,
	CK_METRICS_LISTEN, CK_LOG_LEVEL, CK_DEFAULT_VCPUS,
	CK_DEFAULT_MEMORY_MIB, CK_CONSOLE_LOG_MAX_MIB, CK_REQUEST_TIMEOUT,
	CK_CLIENT_INPUT_MAX_MIB, CK_USER_MAX_VMS, CK_USER_MAX_VCPUS,
	CK_USER_MAX_MEMORY_MIB, CK_VM_CPU_QUOTA, CK_VM_TASKS_MAX,
	CK_VM_MEMORY_OVERHEAD_MIB, CK_DNS_SERVER, CK_USER_MAX_DISK_MIB, CK_TEMPLATES,
};

void	config_defaults(struct config *c);
/* Parses text into c (on top of what c holds). `file` names it in errors:
 * "FILE:LINE: reason". */
int	config_parse(const char *text, size_t len, const char *file,
	    struct config *c, struct cap_err *err);
/* The default path for this user, into buf. */
int	config_default_path(char *buf, size_t len, struct cap_err *err);
/* Reads and parses path; a missing file is fine unless must_exist. */
int	config_load(const char *path, int must_exist, struct config *c,
	    struct cap_err *err);
int	config_was_set(const struct config *c, enum config_key k);
/* Copies into dst every setting src has set (the command line over the
 * file). */
void	config_merge(struct config *dst, const struct config *src);
/* Sets key k from text (a command-line flag), as the file would; `what`
 * names it in the error ("--socket-group"). */
int	config_set(struct config *c, enum config_key k, const char *value,
	    const char *what, struct cap_err *err);
/* The name of a key, e.g. "socket_group". */
const char *config_key_name(enum config_key k);

#endif /* CAPSULE_CONFIG_H */
