/*
 * vm.c — VM lifecycle (see vm.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "paths.h"
#include "proto.h"
#include "proxy.h"
#include "util.h"
#include "vm.h"

#define VM_SHUTDOWN_GRACE_S	10	/* agent syncs and powers off */
#define VM_QUIT_GRACE_S		5	/* QMP quit, then SIGKILL */
#define VM_CHAN_LOST_GRACE_S	2	/* channel gone: is QEMU exiting? */
#define VM_CONSOLE_TAIL		1536
/* As root, each VM's hypervisor runs as its own uid/gid from this range;
 * no passwd entry is needed, and nothing else on a normal system uses it. */
#define VM_UID_BASE		1879048192u	/* 0x70000000 */
#define VM_UID_SLOTS		65536u

_Static_assert(CTL_MAX_SERIAL_PORTS <= HV_MAX_SERIAL_PORTS,
    "every backend must take as many serial ports as StartVM allows");

struct vm_waiter {
	vm_gone_cb	 cb;
	void		*arg;
};

struct vm {
	TAILQ_ENTRY(vm)	 entry;
	char		 id[37];
	enum vm_state	 state;
	uint64_t	 owner;
	int		 stop_on_disconnect;

	char		*kernel, *initrd, *rootfs, *cmdline;
	char		*run_dir, *proxy_path, *console_log;
	int		 run_dir_owned;
	char		*link;		/* <state>/vms/<id> -> a caller's run_dir */
	unsigned	 vcpus;
	uint64_t	 memory_mib;
	uint32_t	 guest_port;
	unsigned	 launch_seconds;
	/* Raw serial ports: name -> host socket path (in the run dir). */
	struct hv_serial_port ports[CTL_MAX_SERIAL_PORTS];
	unsigned	 nports;

	struct hv_vm	*hv;
	uid_t		 uid;		/* the hypervisor's, 0 if unchanged */
	pid_t		 pid;
	int		 exited;
	int		 wstatus;
	long long	 created_at;
	uint64_t	 t0, t_spawn, t_ready;
	uint32_t	 guest_boot_ms;

	struct agent	*agent;
	struct proxy	*proxy;
	struct event	*timer;
	int		 stop_phase;	/* 0 shutdown sent, 1 quit sent */
	char		 chan_error[512]; /* agent channel failed while running */
	int		 failing;	/* will end as crashed / failed start */

	vm_start_cb	 start_cb;
	void		*start_arg;
	struct cap_err	 start_err;
	struct vm_waiter *waiters;
	size_t		 nwaiters;
	char		 error[1024];	/* why it crashed, for ListVMs */
};

static struct vm_env env;
static TAILQ_HEAD(, vm) vms = TAILQ_HEAD_INITIALIZER(vms);
static int shutting_down;	/* no new VMs once the daemon is stopping */

static void	vm_timer_cb(evutil_socket_t, short, void *);

int
vm_init(const struct vm_env *e, struct cap_err *err)
{
	char dir[PATH_MAX];

	env = *e;
	if (snprintf(dir, sizeof(dir), "%s/vms", env.state_dir) >=
	    (int)sizeof(dir))
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "state directory path is too long");
	return util_mkdir_p(dir, 0700, err);
}

const char *
vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_STARTING:	return VMSTATE_STARTING;
	case VM_RUNNING:	return VMSTATE_RUNNING;
	case VM_STOPPING:	return VMSTATE_STOPPING;
	case VM_STOPPED:	return VMSTATE_STOPPED;
	case VM_CRASHED:	return VMSTATE_CRASHED;
	}
	return "unknown";
}

const char *
vm_id(const struct vm *vm)
{
	return vm->id;
}

enum vm_state
vm_state(const struct vm *vm)
{
	return vm->state;
}

struct agent *
vm_agent(const struct vm *vm)
{
	return vm->state == VM_RUNNING ? vm->agent : NULL;
}

struct vm *
vm_find(const char *id)
{
	struct vm *vm;

	TAILQ_FOREACH(vm, &vms, entry)
		if (strcmp(vm->id, id) == 0)
			return vm;
	return NULL;
}

int
vm_count(void)
{
	struct vm *vm;
	int n = 0;

	TAILQ_FOREACH(vm, &vms, entry)
		n++;
	return n;
}

/* Is `path` inside directory `dir` (textually, as capsuled made both)? */
static int
path_is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static void
vm_free(struct vm *vm)
{
	if (vm->timer != NULL)
		event_free(vm->timer);
	free(vm->kernel);
	free(vm->initrd);
	free(vm->rootfs);
	free(vm->cmdline);
	free(vm->run_dir);
	free(vm->proxy_path);
	free(vm->console_log);
	free(vm->link);
	for (unsigned i = 0; i < vm->nports; i++) {
		free((char *)vm->ports[i].name);
		free((char *)vm->ports[i].path);
	}
	free(vm->waiters);
	free(vm);
}

static void
vm_exit_text(int wstatus, char *buf, size_t len)
{
	if (WIFEXITED(wstatus))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "was killed by signal %d (%s)",
		    WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
	else
		snprintf(buf, len, "ended (status 0x%x)", wstatus);
}

/* "<what>; QEMU said: ...; guest console: ..." for error messages. */
static void
vm_describe_failure(struct vm *vm, const char *what, char *buf, size_t len)
{
	char qlog[512] = "", con[VM_CONSOLE_TAIL] = "";
	int n;

	if (vm->hv != NULL)
		env.hv->log_tail(vm->hv, qlog, sizeof(qlog));
	util_file_tail(vm->console_log, con, sizeof(con));
	n = snprintf(buf, len, "%s", what);
	if (qlog[0] && n >= 0 && (size_t)n < len)
		n += snprintf(buf + n, len - (size_t)n, "; %s said: %s",
		    env.hv->name, qlog);
	if (n >= 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "; guest console (%s) "
		    "ends with: %s", vm->console_log, con[0] ? con :
		    "(nothing)");
}

/* Releases processes' leftovers: channel, proxy socket, backend files, run
 * dir. The record itself stays until vm_remove. */
static void
vm_release(struct vm *vm, const char *why)
{
	char state[PATH_MAX];

	if (vm->timer != NULL)
		event_del(vm->timer);
	if (vm->agent != NULL) {
		agent_free(vm->agent, why);
		vm->agent = NULL;
	}
	if (vm->proxy != NULL) {
		proxy_free(vm->proxy);
		vm->proxy = NULL;
	}
	if (vm->hv != NULL) {
		env.hv->cleanup(vm->hv);
		vm->hv = NULL;
	}
	if (vm->run_dir == NULL)
		return;
	snprintf(state, sizeof(state), "%s/vm.json", vm->run_dir);
	unlink(state);
	if (vm->run_dir_owned)
		paths_remove_tree(vm->run_dir);
	else if (path_is_under(vm->console_log, vm->run_dir))
		unlink(vm->console_log);
	if (vm->link != NULL)
		unlink(vm->link);
}

static void
vm_remove(struct vm *vm)
{
	struct vm_waiter *w = vm->waiters;
	size_t n = vm->nwaiters;
	char id[37];

	TAILQ_REMOVE(&vms, vm, entry);
	memcpy(id, vm->id, sizeof(id));
	vm->waiters = NULL;
	vm_free(vm);
	for (size_t i = 0; i < n; i++)
		w[i].cb(id, w[i].arg);
	free(w);
}

static void
vm_add_waiter(struct vm *vm, vm_gone_cb cb, void *arg)
{
	struct vm_waiter *w;

	if (cb == NULL)
		return;
	w = realloc(vm->waiters, (vm->nwaiters + 1) * sizeof(*w));
	if (w == NULL) {
		log_error("%s: out of memory", __func__);
		return;
	}
	vm->waiters = w;
	w[vm->nwaiters].cb = cb;
	w[vm->nwaiters].arg = arg;
	vm->nwaiters++;
}

static void
vm_arm_timer(struct vm *vm, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	evtimer_add(vm->timer, &tv);
}

/* The start failed: remember why, make the process go, and report once it
 * has been reaped and everything is released. */
static void
vm_fail_start(struct vm *vm, const char *code, const char *what)
{
	char msg[sizeof(vm->start_err.msg)];

	if (vm->failing)
		return;
	vm->failing = 1;
	vm_describe_failure(vm, what, msg, sizeof(msg));
	cap_err_set(&vm->start_err, EIO, code, "%s", msg);
	log_warn("vm %s: start failed: %s", vm->id, msg);
	vm->state = VM_STOPPING;
	if (vm->exited)
		return;
	env.hv->kill(vm->hv);
}

static void
vm_agent_ready(struct agent *a, uint32_t guest_boot_ms, void *arg)
{
	struct vm *vm = arg;
	struct cap_err err;

	if (vm->state != VM_STARTING || vm->failing)
		return;
	vm->guest_boot_ms = guest_boot_ms;
	vm->proxy = proxy_new(env.base, vm, vm->proxy_path, &err);
	if (vm->proxy == NULL) {
		vm_fail_start(vm, err.code, err.msg);
		return;
	}
	event_del(vm->timer);
	vm->t_ready = util_now_ms();
	vm->state = VM_RUNNING;
	log_info("vm %s: running (pid %d, %s, ready in %llu ms)", vm->id,
	    (int)vm->pid, hv_accel_name(env.caps.accel),
	    (unsigned long long)(vm->t_ready - vm->t0));
	if (vm->start_cb != NULL) {
		vm_start_cb cb = vm->start_cb;

		vm->start_cb = NULL;
		cb(vm, NULL, vm->start_arg);
	}
}

static void
vm_agent_failed(struct agent *a, const char *why, void *arg)
{
	struct vm *vm = arg;

	if (vm->state == VM_STARTING) {
		vm_fail_start(vm, E_VM_FAILED, why);
		return;
	}
	if (vm->state != VM_RUNNING)
		return;
	/* Usually the channel closes because QEMU is exiting; give the exit
	 * a moment to arrive so the VM's error names the real cause. */
	snprintf(vm->chan_error, sizeof(vm->chan_error), "%s", why);
	vm_arm_timer(vm, VM_CHAN_LOST_GRACE_S);
}

/* The channel is unusable and QEMU lives on: an unusable VM, fail closed. */
static void
vm_chan_lost(struct vm *vm)
{
	snprintf(vm->error, sizeof(vm->error), "agent channel failed: %s",
	    vm->chan_error);
	log_error("vm %s: %s; stopping it", vm->id, vm->error);
	vm->failing = 1;
	vm->state = VM_STOPPING;
	vm->stop_phase = 1;
	env.hv->quit(vm->hv, NULL);
	vm_arm_timer(vm, VM_QUIT_GRACE_S);
}

static void
vm_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	char msg[128];

	if (vm->state == VM_RUNNING && vm->chan_error[0]) {
		vm_chan_lost(vm);
		return;
	}
	if (vm->state == VM_STARTING) {
		snprintf(msg, sizeof(msg), "the guest agent was not ready "
		    "within launch_seconds=%u", vm->launch_seconds);
		vm_fail_start(vm, E_TIMEOUT, msg);
		return;
	}
	if (vm->state != VM_STOPPING || vm->exited)
		return;
	if (vm->stop_phase == 0) {
		log_warn("vm %s: guest did not power off within %d s; "
		    "asking %s to quit", vm->id, VM_SHUTDOWN_GRACE_S,
		    env.hv->name);
		vm->stop_phase = 1;
		env.hv->quit(vm->hv, NULL);
		vm_arm_timer(vm, VM_QUIT_GRACE_S);
	} else {
		log_warn("vm %s: %s did not quit within %d s; killing pid %d",
		    vm->id, env.hv->name, VM_QUIT_GRACE_S, (int)vm->pid);
		env.hv->kill(vm->hv);
	}
}

static int
check_file(const char *field, const char *path, struct cap_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return cap_err_set(err, errno, E_INVALID_ARGUMENT,
		    "%s %s: %s", field, path, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s %s is not a regular file", field, path);
	if (access(path, R_OK) != 0)
		return cap_err_set(err, errno, E_INVALID_ARGUMENT,
		    "%s %s is not readable: %s", field, path, strerror(errno));
	return 0;
}

/* Reads len bytes at off of an image file for a look at its magic;
 * returns how many it got (short at the end of the file). */
static int
read_head(const char *field, const char *path, off_t off, uint8_t *buf,
    size_t len, struct cap_err *err)
{
	int fd, r;

	if ((r = check_file(field, path, err)) < 0)
		return r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INVALID_ARGUMENT, "%s %s: %s",
		    field, path, strerror(errno));
	r = (int)pread(fd, buf, len, off);
	close(fd);
	return r < 0 ? 0 : r;
}

/* Image files cross a trust boundary too: look before handing them on. */
static int
check_kernel(const char *path, struct cap_err *err)
{
	uint8_t b[0x206];
	int r;

	if ((r = read_head(J_KERNEL_PATH, path, 0, b, sizeof(b), err)) < 0)
		return r;
	if (r >= 4 && memcmp(b, "\177ELF", 4) == 0)
		return 0;
	if (r == (int)sizeof(b) && memcmp(b + 0x202, "HdrS", 4) == 0)
		return 0;
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "%s %s is neither a bzImage nor an ELF kernel", J_KERNEL_PATH,
	    path);
}

static int
check_rootfs(const char *path, struct cap_err *err)
{
	uint8_t magic[2];
	int r;

	/* ext2/3/4 superblock magic 0xEF53 at byte 1080. */
	if ((r = read_head(J_ROOTFS_PATH, path, 1080, magic, 2, err)) < 0)
		return r;
	if (r != 2 || magic[0] != 0x53 || magic[1] != 0xef)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s %s is not an ext4 file system image", J_ROOTFS_PATH,
		    path);
	return 0;
}

static int
check_initrd(const char *path, struct cap_err *err)
{
	static const struct { const char *magic; size_t len; } kinds[] = {
		{ "\x1f\x8b", 2 },			/* gzip */
		{ "\x28\xb5\x2f\xfd", 4 },		/* zstd */
		{ "\xfd" "7zXZ", 5 },			/* xz */
		{ "\x02\x21\x4c\x18", 4 },		/* lz4 (legacy) */
		{ "BZh", 3 },				/* bzip2 */
		{ "\x5d\x00\x00", 3 },		/* lzma */
		{ "0707", 4 },				/* plain cpio */
	};
	uint8_t b[8];
	int r;

	if ((r = read_head(J_INITRD_PATH, path, 0, b, sizeof(b), err)) < 0)
		return r;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (r >= (int)kinds[i].len &&
		    memcmp(b, kinds[i].magic, kinds[i].len) == 0)
			return 0;
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "%s %s is not an initramfs (cpio, possibly compressed)",
	    J_INITRD_PATH, path);
}

static char *
xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *
xstrdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Two live VMs must never share a run dir, exec socket or console log:
 * one's cleanup would pull the other's files away. */
static int
check_unshared(const struct vm *vm, struct cap_err *err)
{
	const struct vm *o;

	TAILQ_FOREACH(o, &vms, entry) {
		if (strcmp(o->run_dir, vm->run_dir) == 0)
			return cap_err_set(err, EBUSY, E_CONFLICT, "%s %s is "
			    "in use by VM %s", J_RUN_DIR, vm->run_dir, o->id);
		if (strcmp(o->proxy_path, vm->proxy_path) == 0)
			return cap_err_set(err, EBUSY, E_CONFLICT, "%s %s is "
			    "in use by VM %s", J_PROXY_SOCKET_PATH,
			    vm->proxy_path, o->id);
		if (strcmp(o->console_log, vm->console_log) == 0)
			return cap_err_set(err, EBUSY, E_CONFLICT, "%s %s is "
			    "in use by VM %s", J_CONSOLE_LOG_PATH,
			    vm->console_log, o->id);
	}
	return 0;
}

/* A file capsuled will create needs an existing directory to go in
 * (except inside a run dir capsuled creates itself). */
static int
check_parent(const char *field, const char *path, struct cap_err *err)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		return 0;
	*(slash == dir ? slash + 1 : slash) = '\0';
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return cap_err_set(err, ENOENT, E_INVALID_ARGUMENT,
	    "%s %s: directory %s does not exist", field, path, dir);
}

/* The lowest VM uid no live VM has (0 if all are taken). */
static uid_t
vm_free_uid(void)
{
	const struct vm *o;

	for (uid_t u = VM_UID_BASE; u < VM_UID_BASE + VM_UID_SLOTS; u++) {
		int taken = 0;

		TAILQ_FOREACH(o, &vms, entry)
			if (o->uid == u)
				taken = 1;
		if (!taken)
			return u;
	}
	return 0;
}

/* Each raw serial port listens at <run_dir>/port-<name>.sock. */
static int
vm_resolve_ports(struct vm *vm, const struct ctl_start *req,
    struct cap_err *err)
{
	struct stat st;

	for (unsigned i = 0; i < req->nserial_ports; i++) {
		struct hv_serial_port *p = &vm->ports[i];
		const char *path;

		p->name = strdup(req->serial_ports[i]);
		p->path = xstrdup_printf("%s/port-%s.sock", vm->run_dir,
		    req->serial_ports[i]);
		if (p->name == NULL || p->path == NULL) {
			free((char *)p->name);
			free((char *)p->path);
			p->name = p->path = NULL;
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		}
		vm->nports++;
		path = p->path;
		if (strlen(path) > CTL_MAX_SOCKET_PATH)
			return cap_err_set(err, ENAMETOOLONG,
			    E_INVALID_ARGUMENT, "%s \"%s\": its socket %s "
			    "would be %zu bytes long, over the limit of %d; "
			    "use a shorter name or %s", J_SERIAL_PORTS,
			    p->name, path, strlen(path), CTL_MAX_SOCKET_PATH,
			    J_RUN_DIR);
		/* Only a caller's run dir can hold one already. */
		if (lstat(path, &st) < 0)
			continue;
		if (!S_ISSOCK(st.st_mode))
			return cap_err_set(err, EEXIST, E_INVALID_ARGUMENT,
			    "%s \"%s\": %s exists and is not a socket",
			    J_SERIAL_PORTS, p->name, path);
		if (util_unix_alive(path))
			return cap_err_set(err, EADDRINUSE, E_CONFLICT,
			    "%s \"%s\": %s is in use by another process",
			    J_SERIAL_PORTS, p->name, path);
	}
	return 0;
}

/* Fills in defaults and checks everything against the file system. */
static int
vm_resolve(struct vm *vm, const struct ctl_start *req, struct cap_err *err)
{
	char imgdir[PATH_MAX], tsc[48] = "";
	struct stat st;
	int r;

	if (req->kernel_path == NULL || req->rootfs_path == NULL ||
	    req->initrd_path == NULL) {
		if ((r = paths_find_image_dir(env.image_dir, imgdir,
		    sizeof(imgdir), err)) < 0)
			return r;
	}
	vm->kernel = req->kernel_path ? strdup(req->kernel_path) :
	    xstrdup_printf("%s/%s", imgdir, IMAGE_KERNEL);
	vm->initrd = req->initrd_path ? strdup(req->initrd_path) :
	    xstrdup_printf("%s/%s", imgdir, IMAGE_INITRD);
	vm->rootfs = req->rootfs_path ? strdup(req->rootfs_path) :
	    xstrdup_printf("%s/%s", imgdir, IMAGE_ROOTFS);
	if (vm->kernel == NULL || vm->initrd == NULL || vm->rootfs == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((r = check_kernel(vm->kernel, err)) < 0 ||
	    (r = check_initrd(vm->initrd, err)) < 0 ||
	    (r = check_rootfs(vm->rootfs, err)) < 0)
		return r;

	if (req->run_dir != NULL) {
		vm->run_dir = strdup(req->run_dir);
		/* A caller's existing dir stays; one we create goes with us. */
		vm->run_dir_owned = stat(req->run_dir, &st) != 0;
		if (!vm->run_dir_owned && !S_ISDIR(st.st_mode))
			return cap_err_set(err, ENOTDIR, E_INVALID_ARGUMENT,
			    "%s %s is not a directory", J_RUN_DIR,
			    req->run_dir);
	} else {
		vm->run_dir = xstrdup_printf("%s/vms/%s", env.state_dir, vm->id);
		vm->run_dir_owned = 1;
	}
	vm->proxy_path = req->proxy_socket_path ?
	    strdup(req->proxy_socket_path) :
	    xstrdup_printf("%s/proxy.sock", vm->run_dir);
	vm->console_log = req->console_log_path ?
	    strdup(req->console_log_path) :
	    xstrdup_printf("%s/console.log", vm->run_dir);
	if (vm->run_dir == NULL || vm->proxy_path == NULL ||
	    vm->console_log == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if (strlen(vm->proxy_path) > CTL_MAX_SOCKET_PATH ||
	    strlen(vm->run_dir) + 16 > CTL_MAX_SOCKET_PATH)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "socket paths under %s would exceed %d bytes; use a "
		    "shorter %s or --state-dir", vm->run_dir,
		    CTL_MAX_SOCKET_PATH, J_RUN_DIR);
	if ((r = check_unshared(vm, err)) < 0)
		return r;
	if (!(vm->run_dir_owned && path_is_under(vm->proxy_path,
	    vm->run_dir)) && (r = check_parent(J_PROXY_SOCKET_PATH,
	    vm->proxy_path, err)) < 0)
		return r;
	if (!(vm->run_dir_owned && path_is_under(vm->console_log,
	    vm->run_dir)) && (r = check_parent(J_CONSOLE_LOG_PATH,
	    vm->console_log, err)) < 0)
		return r;
	if (lstat(vm->proxy_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return cap_err_set(err, EEXIST, E_INVALID_ARGUMENT,
			    "%s %s exists and is not a socket",
			    J_PROXY_SOCKET_PATH, vm->proxy_path);
		if (util_unix_alive(vm->proxy_path))
			return cap_err_set(err, EADDRINUSE, E_CONFLICT,
			    "%s %s is in use by another process",
			    J_PROXY_SOCKET_PATH, vm->proxy_path);
	}
	if ((r = vm_resolve_ports(vm, req, err)) < 0)
		return r;
	if (env.caps.accel == HV_ACCEL_TCG && env.caps.tsc_khz > 0)
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%u",
		    env.caps.tsc_khz);
	/* capsule's arguments first: a caller's boot_args (cleanroom sends
	 * a whole command line) come last and win where they overlap.
	 * guest_port names a vsock port in cleanroom; capsule's channel is a
	 * named virtio-serial port, so the value is only reported back. */
	vm->cmdline = xstrdup_printf("console=ttyS0 quiet panic=-1%s%s%s",
	    tsc, req->boot_args ? " " : "",
	    req->boot_args ? req->boot_args : "");
	if (vm->cmdline == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

/* {"name": "/run/dir/port-name.sock", ...} */
static json_t *
vm_ports_json(const struct vm *vm)
{
	json_t *o = json_object();

	for (unsigned i = 0; o != NULL && i < vm->nports; i++)
		json_object_set_new(o, vm->ports[i].name,
		    json_string(vm->ports[i].path));
	return o;
}

static void
vm_write_state(struct vm *vm)
{
	char path[PATH_MAX], *s;
	struct cap_err err;
	json_t *o;

	o = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:I, s:s, s:o}",
	    J_VM_ID, vm->id, J_PID, (int)vm->pid, J_RUN_DIR, vm->run_dir,
	    J_PROXY_SOCKET_PATH, vm->proxy_path, J_CONSOLE_LOG_PATH,
	    vm->console_log, J_BACKEND, env.hv->name, J_CREATED_AT,
	    (json_int_t)vm->created_at, J_ACCEL,
	    hv_accel_name(env.caps.accel), J_SERIAL_PORTS, vm_ports_json(vm));
	if (o == NULL || (s = json_dumps(o, JSON_INDENT(2))) == NULL) {
		json_decref(o);
		return;
	}
	json_decref(o);
	snprintf(path, sizeof(path), "%s/vm.json", vm->run_dir);
	if (util_write_file(path, s, strlen(s), &err) < 0)
		log_warn("vm %s: %s", vm->id, err.msg);
	free(s);
}

int
vm_start(const struct ctl_start *req, uint64_t owner, vm_start_cb cb,
    void *arg, struct cap_err *err)
{
	static const struct agent_cbs acbs = {
		.ready = vm_agent_ready,
		.failed = vm_agent_failed,
	};
	struct hv_vm_config cfg;
	struct vm *vm;
	int r, agent_fd = -1;

	if (shutting_down)
		return cap_err_set(err, ESHUTDOWN, E_UNAVAILABLE,
		    "capsuled is shutting down");
	if ((vm = calloc(1, sizeof(*vm))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	util_uuid(vm->id);
	vm->state = VM_STARTING;
	vm->owner = owner;
	vm->stop_on_disconnect = req->stop_on_disconnect;
	vm->vcpus = req->vcpus;
	vm->memory_mib = req->memory_mib;
	vm->guest_port = req->guest_port;
	vm->launch_seconds = req->launch_seconds;
	vm->created_at = (long long)time(NULL);
	vm->t0 = util_now_ms();
	vm->timer = evtimer_new(env.base, vm_timer_cb, vm);
	if (vm->timer == NULL) {
		vm_free(vm);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if ((r = vm_resolve(vm, req, err)) < 0) {
		vm_free(vm);
		return r;
	}
	if (vm->run_dir_owned && (r = util_mkdir_p(vm->run_dir, 0700,
	    err)) < 0) {
		vm_free(vm);
		return r;
	}
	/* A run dir outside the state dir gets a link from inside it, so a
	 * later capsuled finds the VM even if this one dies. */
	if (req->run_dir != NULL) {
		vm->link = xstrdup_printf("%s/vms/%s", env.state_dir, vm->id);
		if (vm->link == NULL || symlink(vm->run_dir, vm->link) < 0) {
			r = cap_err_set(err, errno ? errno : ENOMEM, E_INTERNAL,
			    "cannot link %s into the state dir: %s",
			    vm->run_dir, strerror(errno ? errno : ENOMEM));
			if (vm->run_dir_owned)
				paths_remove_tree(vm->run_dir);
			free(vm->link);
			vm->link = NULL;
			vm_free(vm);
			return r;
		}
	}

	memset(&cfg, 0, sizeof(cfg));
	if (geteuid() == 0 && (vm->uid = vm_free_uid()) == 0) {
		vm_release(vm, "no free uid");
		vm_free(vm);
		return cap_err_set(err, EAGAIN, E_UNAVAILABLE,
		    "no unprivileged uid left for another VM");
	}
	cfg.uid = vm->uid;
	cfg.gid = (gid_t)vm->uid;
	cfg.vm_id = vm->id;
	cfg.run_dir = vm->run_dir;
	cfg.kernel = vm->kernel;
	cfg.initrd = vm->initrd;
	cfg.rootfs = vm->rootfs;
	cfg.cmdline = vm->cmdline;
	cfg.console_log = vm->console_log;
	cfg.vcpus = vm->vcpus;
	cfg.memory_mib = vm->memory_mib;
	cfg.accel = env.caps.accel;
	cfg.ports = vm->ports;
	cfg.nports = vm->nports;
	if ((r = env.hv->start(&cfg, &vm->hv, &vm->pid, &agent_fd, err)) < 0) {
		vm_release(vm, "the VM failed to start");
		vm_free(vm);
		return r;
	}
	vm->t_spawn = util_now_ms();
	vm->agent = agent_new(env.base, agent_fd, &acbs, vm);
	vm->start_cb = cb;
	vm->start_arg = arg;
	TAILQ_INSERT_TAIL(&vms, vm, entry);
	vm_write_state(vm);
	log_info("vm %s: starting (pid %d, %u vCPU, %llu MiB, %s)", vm->id,
	    (int)vm->pid, vm->vcpus, (unsigned long long)vm->memory_mib,
	    hv_accel_name(env.caps.accel));
	if (vm->agent == NULL) {
		close(agent_fd);
		vm_fail_start(vm, E_INTERNAL, "out of memory");
		return 0;
	}
	vm_arm_timer(vm, vm->launch_seconds);
	return 0;
}

/* The hypervisor process is gone: settle the VM's fate. */
static void
vm_on_exit(struct vm *vm)
{
	char how[128], msg[sizeof(vm->error)];

	vm_exit_text(vm->wstatus, how, sizeof(how));
	if (vm->state == VM_STARTING && !vm->failing) {
		snprintf(msg, sizeof(msg), "%s %s before the guest agent was "
		    "ready", env.hv->name, how);
		vm_fail_start(vm, E_VM_FAILED, msg);
	}
	if (vm->start_cb != NULL) {
		vm_start_cb cb = vm->start_cb;

		vm_release(vm, "the VM failed to start");
		vm->start_cb = NULL;
		cb(NULL, &vm->start_err, vm->start_arg);
		vm_remove(vm);
		return;
	}
	if (vm->state == VM_STOPPING && !vm->failing) {
		log_info("vm %s: stopped", vm->id);
		vm->state = VM_STOPPED;
		vm_release(vm, "the VM was stopped");
		vm_remove(vm);
		return;
	}
	/* It ended on its own (or failed while running). */
	if (vm->failing || !WIFEXITED(vm->wstatus) ||
	    WEXITSTATUS(vm->wstatus) != 0) {
		vm->state = VM_CRASHED;
		if (vm->error[0] == '\0') {
			snprintf(msg, sizeof(msg), "%s %s unexpectedly",
			    env.hv->name, how);
			vm_describe_failure(vm, msg, vm->error,
			    sizeof(vm->error));
		}
		log_warn("vm %s: crashed: %s", vm->id, vm->error);
	} else {
		vm->state = VM_STOPPED;
		snprintf(vm->error, sizeof(vm->error), "the guest powered off");
		log_info("vm %s: the guest powered off", vm->id);
	}
	vm_release(vm, vm->state == VM_CRASHED ? "the VM crashed" :
	    "the guest powered off");
	if (vm->nwaiters > 0)
		vm_remove(vm);
}

void
vm_sigchld(void)
{
	struct vm *vm, *next;
	int st;

	TAILQ_FOREACH_SAFE(vm, &vms, entry, next) {
		if (vm->pid <= 0 || vm->exited)
			continue;
		if (waitpid(vm->pid, &st, WNOHANG) != vm->pid)
			continue;
		vm->exited = 1;
		vm->wstatus = st;
		vm_on_exit(vm);
	}
}

void
vm_stop(struct vm *vm, vm_gone_cb cb, void *arg)
{
	switch (vm->state) {
	case VM_STOPPED:
	case VM_CRASHED:
		vm_add_waiter(vm, cb, arg);
		vm_remove(vm);
		return;
	case VM_STARTING:
		vm_add_waiter(vm, cb, arg);
		vm_fail_start(vm, E_VM_FAILED,
		    "StopVM was requested while the VM was starting");
		return;
	case VM_STOPPING:
		vm_add_waiter(vm, cb, arg);
		return;
	case VM_RUNNING:
		break;
	}
	vm_add_waiter(vm, cb, arg);
	vm->state = VM_STOPPING;
	log_info("vm %s: stopping", vm->id);
	if (vm->agent != NULL && agent_shutdown(vm->agent) == 0) {
		vm->stop_phase = 0;
		vm_arm_timer(vm, VM_SHUTDOWN_GRACE_S);
	} else {
		vm->stop_phase = 1;
		env.hv->quit(vm->hv, NULL);
		vm_arm_timer(vm, VM_QUIT_GRACE_S);
	}
}

int
vm_stop_owned(uint64_t owner, vm_gone_cb cb, void *arg)
{
	struct vm *vm, *next;
	int n = 0;

	/* Count first: a VM that is already gone calls back at once. */
	TAILQ_FOREACH(vm, &vms, entry)
		if (vm->owner == owner)
			n++;
	TAILQ_FOREACH_SAFE(vm, &vms, entry, next)
		if (vm->owner == owner)
			vm_stop(vm, cb, arg);
	return n;
}

int
vm_stop_all(vm_gone_cb cb, void *arg)
{
	struct vm *vm, *next;
	int n = vm_count();

	shutting_down = 1;
	TAILQ_FOREACH_SAFE(vm, &vms, entry, next)
		vm_stop(vm, cb, arg);
	return n;
}

void
vm_owner_gone(uint64_t owner)
{
	struct vm *vm, *next;

	TAILQ_FOREACH_SAFE(vm, &vms, entry, next) {
		if (vm->owner != owner)
			continue;
		vm->owner = 0;
		if (vm->stop_on_disconnect) {
			log_info("vm %s: its client went away; stopping it "
			    "(stop_on_disconnect)", vm->id);
			vm_stop(vm, NULL, NULL);
		}
	}
}

json_t *
vm_json(const struct vm *vm)
{
	char created[32];
	json_t *o;

	util_rfc3339(vm->created_at, created);
	o = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s, s:s, s:s, "
	    "s:s, s:s, s:I}",
	    J_VM_ID, vm->id, J_STATE, vm_state_name(vm->state),
	    J_PID, (int)vm->pid, J_VCPUS, (int)vm->vcpus,
	    J_MEMORY_MIB, (json_int_t)vm->memory_mib,
	    J_CREATED_AT, created, J_ACCEL, hv_accel_name(env.caps.accel),
	    J_BACKEND, env.hv->name, J_KERNEL_PATH, vm->kernel,
	    J_ROOTFS_PATH, vm->rootfs, J_RUN_DIR, vm->run_dir,
	    J_PROXY_SOCKET_PATH, vm->proxy_path,
	    J_GUEST_PORT, (json_int_t)vm->guest_port);
	if (o == NULL)
		return NULL;
	json_object_set_new(o, J_CONSOLE_LOG_PATH,
	    json_string(vm->console_log));
	json_object_set_new(o, J_SERIAL_PORTS, vm_ports_json(vm));
	if (vm->exited) {
		json_object_set_new(o, J_EXIT_STATUS,
		    json_integer(WIFEXITED(vm->wstatus) ?
		    WEXITSTATUS(vm->wstatus) : 128 + WTERMSIG(vm->wstatus)));
		json_object_set_new(o, J_ERROR, json_string(vm->error));
	}
	return o;
}

json_t *
vm_list_json(void)
{
	json_t *a = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vms, entry)
		json_array_append_new(a, vm_json(vm));
	return a;
}

json_t *
vm_started_json(const struct vm *vm)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:o, "
	    "s:{s:I, s:I, s:I}}",
	    J_VM_ID, vm->id, J_PROXY_SOCKET_PATH, vm->proxy_path,
	    J_RUN_DIR, vm->run_dir, J_CONSOLE_LOG_PATH, vm->console_log,
	    J_ACCEL, hv_accel_name(env.caps.accel), J_PID, (int)vm->pid,
	    J_SERIAL_PORTS, vm_ports_json(vm),
	    J_TIMING_MS,
	    T_VM_READY, (json_int_t)(vm->t_ready - vm->t0),
	    T_SPAWN, (json_int_t)(vm->t_spawn - vm->t0),
	    T_GUEST_BOOT, (json_int_t)vm->guest_boot_ms);
}

/* Is `pid` a hypervisor process that belongs to run dir `dir`? */
static int
pid_owns_dir(pid_t pid, const char *dir)
{
	char path[64], buf[8192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, dir) != NULL;
}

/* What a run dir's state file (vm.json) says; pid 0 if it says nothing. */
struct orphan {
	pid_t	pid;
	char	proxy[PATH_MAX];
	char	console[PATH_MAX];
	char	ports[CTL_MAX_SERIAL_PORTS][PATH_MAX];
};

static void
read_orphan(const char *dir, struct orphan *o)
{
	char path[PATH_MAX + 16];
	json_t *j, *v;

	memset(o, 0, sizeof(*o));
	snprintf(path, sizeof(path), "%s/vm.json", dir);
	if ((j = json_load_file(path, 0, NULL)) == NULL)
		return;
	v = json_object_get(j, J_PID);
	if (json_is_integer(v) && json_integer_value(v) > 1 &&
	    json_integer_value(v) < INT_MAX)
		o->pid = (pid_t)json_integer_value(v);
	if (json_is_string(v = json_object_get(j, J_PROXY_SOCKET_PATH)))
		snprintf(o->proxy, sizeof(o->proxy), "%s",
		    json_string_value(v));
	if (json_is_string(v = json_object_get(j, J_CONSOLE_LOG_PATH)))
		snprintf(o->console, sizeof(o->console), "%s",
		    json_string_value(v));
	if (json_is_object(v = json_object_get(j, J_SERIAL_PORTS))) {
		const char *name;
		json_t *p;
		size_t i = 0;

		json_object_foreach(v, name, p)
			if (json_is_string(p) && i < CTL_MAX_SERIAL_PORTS)
				snprintf(o->ports[i++], sizeof(o->ports[0]),
				    "%s", json_string_value(p));
	}
	json_decref(j);
}

void
vm_reap_orphans(void)
{
	char dir[PATH_MAX], sub[PATH_MAX], target[PATH_MAX];
	const char *run;
	struct dirent *de;
	struct stat st;
	ssize_t n;
	DIR *d;

	if (snprintf(dir, sizeof(dir), "%s/vms", env.state_dir) >=
	    (int)sizeof(dir) || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		struct orphan o;

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%.64s", dir, de->d_name) >=
		    (int)sizeof(sub))
			continue;
		/* A link stands for a caller's run dir elsewhere. */
		n = readlink(sub, target, sizeof(target) - 1);
		run = n > 0 ? target : sub;
		if (n > 0)
			target[n] = '\0';
		/* Re-adopting running VMs is future work; until then a VM
		 * nobody manages is a leak, so it goes. */
		read_orphan(run, &o);
		if (o.pid > 0 && pid_owns_dir(o.pid, run)) {
			log_warn("killing VM process %d left behind in %s by "
			    "a previous capsuled", (int)o.pid, run);
			kill(o.pid, SIGKILL);
		}
		log_info("removing stale run dir %s", run);
		if (n > 0) {
			/* Not ours to delete: only capsuled's files in it. */
			env.hv->forget(run);
			if (path_is_under(o.proxy, run))
				unlink(o.proxy);
			if (path_is_under(o.console, run))
				unlink(o.console);
			for (size_t i = 0; i < CTL_MAX_SERIAL_PORTS; i++)
				if (path_is_under(o.ports[i], run) &&
				    strstr(o.ports[i], "/..") == NULL &&
				    lstat(o.ports[i], &st) == 0 &&
				    S_ISSOCK(st.st_mode))
					unlink(o.ports[i]);
			snprintf(target + n, sizeof(target) - (size_t)n,
			    "/vm.json");
			unlink(target);
			unlink(sub);
		} else
			paths_remove_tree(sub);
	}
	closedir(d);
}
