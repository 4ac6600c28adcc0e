/*
 * vz.c — the macOS backend: Apple's Virtualization.framework (VZ), driven
 * through capsule-vz (macos/capsule-vz.m), one helper process per VM.
 *
 * VZ is an Objective-C API; this file stays plain C (POSIX and macOS
 * calls, libevent, jansson) and talks to the helper over descriptors it
 * hands it at fixed numbers (VZ_FD_*, the same as capsule-vz.m's CVZ_FD_*):
 * a control socket (commands out, JSON status lines in), a socket for the
 * agent's port, a pipe for the console, the kernel, initrd and both disks,
 * the listening sockets of the extra ports and the shared directories.
 * Its stdout and stderr are the hypervisor log capsuled keeps, where the
 * helper also writes every error in VZ's own words: that is how they reach
 * a person when a start fails after start() has returned.
 *
 * The helper's end is watched with a kqueue (EVFILT_PROC, NOTE_EXIT) that
 * libevent watches in turn: there are no pidfds here, and the kqueue is
 * readable once the process has gone. What the helper said last ("stopped
 * by the guest", "stopped by the host", an error) is read before the
 * daemon hears of the exit.
 *
 * A VZ VM lives as long as its helper, and the helper as long as the
 * capsuled that started it: there is nothing a later capsuled could
 * connect to again, so adopt() says no, and detach() lets the helper see
 * capsuled go (EOF), whereupon it stops the VM. save() is NULL: VZ saves a
 * VM only to a path of its own (macOS 14, Apple silicon), in a format
 * capsule cannot split into RAM and devices as templates need.
 *
 * Nothing here changes uid or sets resource limits (hv_vm_config.uid,
 * rlimit_*): capsuled on macOS runs as its user (a launchd agent), and the
 * VM itself runs in VZ's sandboxed XPC service, which limits on the
 * helper would not bound.
 */
#include <sys/types.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mach-o/dyld.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "hv.h"
#include "log.h"
#include "proto.h"
#include "util.h"

#define VZ_HELPER	"capsule-vz"
#define VZ_FD_CONTROL	3
#define VZ_FD_AGENT	4
#define VZ_FD_CONSOLE	5
#define VZ_FD_KERNEL	6
#define VZ_FD_INITRD	7
#define VZ_FD_BASE	8
#define VZ_FD_DISK	9
#define VZ_FD_PORT0	10	/* then one per port, then one per share */
#define VZ_NFDS		(VZ_FD_PORT0 - 3 + HV_MAX_SERIAL_PORTS + HV_MAX_SHARES)
#define VZ_ARGS_MAX	(12 + 2 * HV_MAX_SERIAL_PORTS + 2 * HV_MAX_SHARES)
#define VZ_LINE_MAX	4096	/* a status line, newline included */
#define VZ_CMDLINE_MAX	2048	/* COMMAND_LINE_SIZE, with its NUL */
#define VZ_NAME_MAX	127	/* a port's name */
#define VZ_TAG_MAX	35	/* VZ: a tag is under 36 bytes */

struct hv_vm {
	struct hv_cbs	 cbs;
	void		*arg;
	pid_t		 pid;
	int		 kq;		/* EVFILT_PROC for pid */
	int		 gone;		/* it had ended before kq watched it */
	int		 ctl;		/* commands out, status in */
	struct event	*exit_ev;
	struct event	*ctl_ev;
	enum hv_end	 end;		/* from its "stopped" line */
	int		 exited;	/* reaped */
	int		 broken;	/* it broke the protocol: killed */
	char		 buf[VZ_LINE_MAX];
	size_t		 len;
	char		 what[48];	/* "vm 1234abcd" for the log */
};

static char vz_bin[PATH_MAX];
static dev_t vz_exe_dev;
static ino_t vz_exe_ino;

/* A socket pair (stream) or a pipe (type 0): both ends close-on-exec,
 * ours (sv[0], a pipe's read end) non-blocking. No pipe2() here. */
static int
vz_pair(int type, int sv[2], struct cap_err *err)
{
	int one = 1, r;

	r = type != 0 ? socketpair(AF_UNIX, type, 0, sv) : pipe(sv);
	if (r == 0 && (fcntl(sv[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(sv[1], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)) {
		closep(&sv[0]);
		closep(&sv[1]);
		r = -1;
	}
	if (r < 0)
		return cap_err_set(err, errno, E_INTERNAL, "%s: %s", type != 0 ?
		    "socketpair" : "pipe", strerror(errno));
	/* A write to a gone peer fails with EPIPE, not a signal. */
	if (type != 0)
		setsockopt(sv[0], SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
	return 0;
}

/* Starts the helper: fds[i] becomes its descriptor 3 + i, out its stdout
 * and stderr, /dev/null its stdin; it inherits nothing else
 * (POSIX_SPAWN_CLOEXEC_DEFAULT), in a process group of its own so that a
 * Ctrl-C meant for capsuled does not reach it. */
static int
vz_spawn(char *const argv[], const int *fds, int nfds, int out, pid_t *pid,
    struct cap_err *err)
{
	static char *envp[] = { "PATH=/usr/bin:/bin:/usr/sbin:/sbin", NULL };
	int tmp[VZ_NFDS + 1], ntmp = 0, r = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t sa;
	sigset_t none, all;

	/* Copies above every target number first, so that a descriptor
	 * already sitting on a target is not overwritten before it moves. */
	for (int i = 0; i <= nfds && r == 0; i++)
		if ((tmp[ntmp] = fcntl(i < nfds ? fds[i] : out,
		    F_DUPFD_CLOEXEC, 3 + nfds)) < 0)
			r = errno;
		else
			ntmp++;
	if (r != 0) {
		while (ntmp > 0)
			close(tmp[--ntmp]);
		return cap_err_set(err, r, E_INTERNAL, "fcntl: %s",
		    strerror(r));
	}
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&sa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, tmp[nfds], 1);
	posix_spawn_file_actions_adddup2(&fa, tmp[nfds], 2);
	for (int i = 0; i < nfds; i++)
		posix_spawn_file_actions_adddup2(&fa, tmp[i], 3 + i);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &all);
	posix_spawnattr_setpgroup(&sa, 0);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_CLOEXEC_DEFAULT |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
	    POSIX_SPAWN_SETPGROUP);
	r = posix_spawn(pid, argv[0], &fa, &sa, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&sa);
	while (ntmp > 0)
		close(tmp[--ntmp]);
	if (r != 0)
		return cap_err_set(err, r, E_UNAVAILABLE, "cannot run %s: %s",
		    argv[0], strerror(r));
	return 0;
}

/* 1 and *st once our child pid has been reaped (waiting for it). */
static int
vz_reap(pid_t pid, int *st)
{
	pid_t r;

	while ((r = waitpid(pid, st, 0)) < 0 && errno == EINTR)
		;
	return r == pid;
}

/* $CAPSULE_VZ, or beside capsuled's own binary (build tree or bin/). */
static int
vz_find(struct cap_err *err)
{
	const char *env = getenv("CAPSULE_VZ");
	char self[PATH_MAX], real[PATH_MAX], *slash;
	uint32_t n = sizeof(self);
	struct stat st;

	if (env != NULL && env[0] != '\0') {
		if (env[0] != '/' || strlen(env) >= sizeof(vz_bin))
			return cap_err_set(err, EINVAL, E_UNAVAILABLE,
			    "CAPSULE_VZ must be an absolute path");
		snprintf(vz_bin, sizeof(vz_bin), "%s", env);
	} else if (_NSGetExecutablePath(self, &n) != 0 ||
	    realpath(self, real) == NULL ||
	    (slash = strrchr(real, '/')) == NULL)
		return cap_err_set(err, ENOENT, E_UNAVAILABLE, "cannot tell "
		    "where capsuled's binary is, to find " VZ_HELPER " beside "
		    "it; set CAPSULE_VZ");
	else
		snprintf(vz_bin, sizeof(vz_bin), "%.*s/" VZ_HELPER,
		    (int)(slash - real), real);
	if (access(vz_bin, X_OK) < 0 || stat(vz_bin, &st) < 0)
		return cap_err_set(err, ENOENT, E_UNAVAILABLE, "%s: %s (build "
		    "capsule-vz with CMake on macOS, or set CAPSULE_VZ)",
		    vz_bin, strerror(errno));
	vz_exe_dev = st.st_dev;
	vz_exe_ino = st.st_ino;
	return 0;
}

/* Asks the helper itself: it loads VZ, which says whether this Mac can
 * run VMs. Synchronous, at start-up: it takes milliseconds. */
static int
vz_probe(enum hv_accel want, struct hv_caps *caps, struct cap_err *err)
{
	char *argv[] = { vz_bin, "--probe", NULL }, out[256];
	int p[2], st = 0, r, translated = 0;
	size_t tlen = sizeof(translated);
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	memset(caps, 0, sizeof(*caps));
	/* An x86_64 capsuled under Rosetta on Apple silicon would offer
	 * x86_64 guests, which VZ cannot run there (sysctl: macOS 11). */
	if (sysctlbyname("sysctl.proc_translated", &translated, &tlen, NULL,
	    0) == 0 && translated == 1)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "capsuled runs "
		    "under Rosetta; build it for arm64 to run VMs on this Mac");
	if (want == HV_ACCEL_KVM || want == HV_ACCEL_TCG)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "accel %s is "
		    "for Linux; on macOS VMs run on Apple's hypervisor (hvf)",
		    hv_accel_name(want));
	if ((r = vz_find(err)) < 0 || (r = vz_pair(0, p, err)) < 0)
		return r;
	fcntl(p[0], F_SETFL, 0);
	r = vz_spawn(argv, NULL, 0, p[1], &pid, err);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	while (got < sizeof(out) - 1 && ((n = read(p[0], out + got,
	    sizeof(out) - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	close(p[0]);	/* more output would only be more of the same */
	vz_reap(pid, &st);
	out[got] = '\0';
	out[strcspn(out, "\n")] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "%s --probe "
		    "failed: %.400s", vz_bin, out[0] ? out : "no output");
	caps->accel = HV_ACCEL_HVF;
	snprintf(caps->accel_why, sizeof(caps->accel_why), "the vz backend "
	    "(Virtualization.framework) was written against Apple's "
	    "documentation and has not been tested by capsule's developers; "
	    "see macos/README.md");
	snprintf(caps->version, sizeof(caps->version), "%.63s", out);
	for (enum ctl_arch a = CTL_ARCH_X86_64; a <= CTL_ARCH_MAX; a++)
		if (a == ctl_arch_host())
			caps->arch_accel[a] = HV_ACCEL_HVF;
		else
			snprintf(caps->arch_why[a], sizeof(caps->arch_why[a]),
			    "Virtualization.framework runs guests of the Mac's "
			    "own architecture (%s)",
			    ctl_arch_name(ctl_arch_host()));
	return 0;
}

/* VZLinuxBootLoader loads the kernel as it is, and only for the Mac's own
 * architecture: on Apple silicon an uncompressed arm64 Image ("ARM\x64"
 * at 0x38; a distribution's vmlinuz is often gzip or an EFI zboot image
 * and must be unpacked first), on an Intel Mac a bzImage. */
static int
vz_check_kernel(enum ctl_arch arch, const uint8_t *b, size_t len,
    struct cap_err *err)
{
	if (arch != ctl_arch_host())
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "is for "
		    "%s guests; Virtualization.framework runs the Mac's own "
		    "(%s)", ctl_arch_name(arch),
		    ctl_arch_name(ctl_arch_host()));
	if (arch == CTL_ARCH_X86_64)
		return len >= 0x206 && memcmp(b + 0x202, "HdrS", 4) == 0 ? 0 :
		    cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "is not a "
		    "bzImage, which VZ needs on an Intel Mac");
	if (len >= 0x3c && memcmp(b + 0x38, "ARM\x64", 4) == 0)
		return 0;
	if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "is gzip "
		    "compressed; VZ boots only an uncompressed arm64 Image "
		    "(gunzip it first)");
	if (len >= 8 && memcmp(b, "MZ", 2) == 0 &&
	    memcmp(b + 4, "zimg", 4) == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "is an EFI "
		    "zboot image; VZ boots only an uncompressed arm64 Image "
		    "(arch/arm64/boot/Image)");
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "is not an arm64 "
	    "Image (no \"ARM\\x64\" at offset 0x38), which VZ needs on Apple "
	    "silicon");
}

static int
vz_word(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~')
			return 0;
	return 1;
}

static int
vz_check_config(const struct hv_vm_config *cfg, struct cap_err *err)
{
	if (cfg->ram != HV_RAM_ANON)
		return cap_err_set(err, ENOTSUP, E_UNSUPPORTED_OP, "the vz "
		    "backend cannot start a VM from saved state");
	if (cfg->arch != ctl_arch_host())
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "the vz backend "
		    "runs %s guests only", ctl_arch_name(ctl_arch_host()));
	/* VZ's NAT hands the guest its address by DHCP; the agent sets the
	 * static addresses of QEMU's user network (hv.h) and has no DHCP
	 * client yet. Refused rather than a NIC that never works. */
	if (cfg->nat)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "network mode "
		    "nat is not there yet on the vz backend: the guest agent "
		    "has no DHCP client for VZ's NAT");
	if (cfg->nports > HV_MAX_SERIAL_PORTS || cfg->nshares > HV_MAX_SHARES)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "%u serial "
		    "ports and %u shared folders; the limits are %d and %d",
		    cfg->nports, cfg->nshares, HV_MAX_SERIAL_PORTS,
		    HV_MAX_SHARES);
	if (cfg->kernel_fd < 0 || cfg->initrd_fd < 0 || cfg->rootfs_fd < 0 ||
	    cfg->disk_fd < 0)
		return cap_err_set(err, EINVAL, E_INTERNAL, "the vz backend "
		    "needs a kernel, an initrd and both disks");
	for (unsigned i = 0; i < cfg->nports; i++)
		if (!vz_word(cfg->ports[i].name, VZ_NAME_MAX))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "serial port name %.40s cannot go to VZ",
			    cfg->ports[i].name);
	for (unsigned i = 0; i < cfg->nshares; i++)
		if (!vz_word(cfg->shares[i].tag, VZ_TAG_MAX))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "share tag %.40s cannot go to VZ",
			    cfg->shares[i].tag);
	return 0;
}

/* The console on hvc0 (VZ has no UART a kernel finds on its own), and
 * panic=-1: a panic reboots, and VZ ends a VM whose guest reboots. A
 * caller's boot_args last, so they win where they overlap. */
static int
vz_cmdline(const struct hv_vm_config *cfg, char **out, struct cap_err *err)
{
	const char *ours = cfg->agent_args != NULL ? cfg->agent_args : "";
	const char *theirs = cfg->boot_args != NULL ? cfg->boot_args : "";
	size_t len;
	char *s;

	if (asprintf(&s, "console=hvc0 panic=-1 quiet%s%s%s%s", ours[0] ?
	    " " : "", ours, theirs[0] ? " " : "", theirs) < 0)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((len = strlen(s)) >= VZ_CMDLINE_MAX) {
		free(s);
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "the kernel "
		    "command line would be %zu bytes; the limit is %d (shorten "
		    "boot_args or the guest paths of volumes)", len,
		    VZ_CMDLINE_MAX - 1);
	}
	*out = s;
	return 0;
}

/* ---- what the helper says ---- */

/* It broke the protocol: nothing it says can be trusted any more,
 * including how the VM ended. */
static void
vz_broken(struct hv_vm *vm, const char *why)
{
	log_warn("%s: %s %s; killing it", vm->what, VZ_HELPER, why);
	vm->broken = 1;
	event_del(vm->ctl_ev);
	if (!vm->exited)
		kill(vm->pid, SIGKILL);
}

static const char *
vz_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void
vz_line(struct hv_vm *vm, const char *line, size_t len)
{
	const char *ev, *msg, *by;
	char shown[600];
	json_t *o;

	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o) || (ev = vz_str(o, "event")) == NULL) {
		json_decref(o);
		vz_broken(vm, "sent a status line that is not JSON");
		return;
	}
	msg = vz_str(o, "message");
	if (msg != NULL)
		cap_show(msg, strlen(msg), shown, sizeof(shown));
	if (strcmp(ev, "stopped") == 0) {
		by = vz_str(o, "by");
		if (by != NULL && strcmp(by, "guest") == 0)
			/* or rebooted, or panicked: VZ does not say */
			vm->end = HV_END_POWEROFF;
		else if (by != NULL && strcmp(by, "host") == 0)
			vm->end = HV_END_QUIT;
		else
			vz_broken(vm, "sent a \"stopped\" line without \"by\"");
	} else if (strcmp(ev, "error") == 0 || strcmp(ev, "warning") == 0) {
		if (msg != NULL)
			log_warn("%s: %s: %s", vm->what, VZ_HELPER, shown);
		else
			vz_broken(vm, "sent an error without a message");
	} else {
		/* started, paused, resumed; and words of a newer helper */
		log_debug("%s: %s: %s", vm->what, VZ_HELPER, ev);
	}
	json_decref(o);
}

/* Reads what has come; at EOF stops reading (the kqueue tells when the
 * process has gone). */
static void
vz_read(struct hv_vm *vm)
{
	char *nl;
	ssize_t n;

	while (vm->ctl >= 0 && !vm->broken) {
		n = read(vm->ctl, vm->buf + vm->len, sizeof(vm->buf) - vm->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			event_del(vm->ctl_ev);
			return;
		}
		vm->len += (size_t)n;
		while (!vm->broken &&
		    (nl = memchr(vm->buf, '\n', vm->len)) != NULL) {
			vz_line(vm, vm->buf, (size_t)(nl - vm->buf));
			vm->len -= (size_t)(nl + 1 - vm->buf);
			memmove(vm->buf, nl + 1, vm->len);
		}
		if (vm->len == sizeof(vm->buf))
			vz_broken(vm, "sent an overlong status line");
	}
}

static void
vz_ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	vz_read(arg);
}

static void
vz_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hv_vm *vm = arg;
	struct timespec zero = { 0, 0 };
	struct hv_exit ex = { .end = HV_END_UNKNOWN };
	struct kevent kev;
	int st = 0, ended = vm->gone;

	while (kevent(vm->kq, NULL, 0, &kev, 1, &zero) > 0)
		if (kev.filter == EVFILT_PROC && (kev.fflags & NOTE_EXIT))
			ended = 1;
	if (!ended)
		return;
	/* It has exited: this wait is for the kernel's bookkeeping only. */
	ex.have_status = vz_reap(vm->pid, &st);
	ex.wstatus = st;
	event_del(vm->exit_ev);
	vm->exited = 1;
	vz_read(vm);	/* its last words: how the VM ended */
	if (!vm->broken)
		ex.end = vm->end;
	if (ex.end == HV_END_UNKNOWN && ex.have_status && WIFSIGNALED(st))
		ex.end = HV_END_SIGNAL;
	vm->cbs.exited(vm->arg, &ex);	/* may free vm */
}

static int
vz_watch(struct event_base *base, struct hv_vm *vm, struct cap_err *err)
{
	struct kevent kev;

	if ((vm->kq = kqueue()) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "kqueue: %s",
		    strerror(errno));
	EV_SET(&kev, vm->pid, EVFILT_PROC, EV_ADD | EV_ONESHOT, NOTE_EXIT, 0,
	    NULL);
	if (kevent(vm->kq, &kev, 1, NULL, 0, NULL) < 0) {
		if (errno != ESRCH)
			return cap_err_set(err, errno, E_INTERNAL, "cannot "
			    "watch %s (pid %d): %s", VZ_HELPER, (int)vm->pid,
			    strerror(errno));
		vm->gone = 1;	/* already over: reap it from the loop */
	}
	vm->exit_ev = event_new(base, vm->kq, EV_READ | EV_PERSIST,
	    vz_exit_cb, vm);
	vm->ctl_ev = event_new(base, vm->ctl, EV_READ | EV_PERSIST, vz_ctl_cb,
	    vm);
	if (vm->exit_ev == NULL || vm->ctl_ev == NULL ||
	    event_add(vm->exit_ev, NULL) < 0 || event_add(vm->ctl_ev, NULL) < 0)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if (vm->gone)
		event_active(vm->exit_ev, EV_READ, 0);
	return 0;
}

/* ---- the table ---- */

static void
vz_release(struct hv_vm *vm)
{
	if (vm->exit_ev != NULL)
		event_free(vm->exit_ev);
	if (vm->ctl_ev != NULL)
		event_free(vm->ctl_ev);
	closep(&vm->kq);
	closep(&vm->ctl);
	free(vm);
}

static int
vz_start(struct event_base *base, const struct hv_vm_config *cfg,
    const struct hv_cbs *cbs, void *arg, struct hv_vm **out,
    struct hv_chans *chans, struct cap_err *err)
{
	char cpus[16], mib[24], *argv[VZ_ARGS_MAX], *cmdline;
	int ctl[2] = { -1, -1 }, agent[2] = { -1, -1 };
	int con[2] = { -1, -1 }, logp[2] = { -1, -1 };
	int fds[VZ_NFDS], nfds = 0, n = 0, r;
	struct hv_vm *vm;
	unsigned i;

	if ((r = vz_check_config(cfg, err)) < 0 ||
	    (r = vz_cmdline(cfg, &cmdline, err)) < 0)
		return r;
	if ((vm = calloc(1, sizeof(*vm))) == NULL) {
		free(cmdline);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	vm->cbs = *cbs;
	vm->arg = arg;
	vm->kq = vm->ctl = -1;
	snprintf(vm->what, sizeof(vm->what), "vm %.8s", cfg->vm_id);
	if ((r = vz_pair(SOCK_STREAM, ctl, err)) < 0 ||
	    (r = vz_pair(SOCK_STREAM, agent, err)) < 0 ||
	    (r = vz_pair(0, con, err)) < 0 || (r = vz_pair(0, logp, err)) < 0)
		goto fail;

	fds[nfds++] = ctl[1];			/* VZ_FD_CONTROL */
	fds[nfds++] = agent[1];			/* VZ_FD_AGENT */
	fds[nfds++] = con[1];			/* VZ_FD_CONSOLE */
	fds[nfds++] = cfg->kernel_fd;		/* VZ_FD_KERNEL */
	fds[nfds++] = cfg->initrd_fd;		/* VZ_FD_INITRD */
	fds[nfds++] = cfg->rootfs_fd;		/* VZ_FD_BASE */
	fds[nfds++] = cfg->disk_fd;		/* VZ_FD_DISK */
	for (i = 0; i < cfg->nports; i++)
		fds[nfds++] = cfg->ports[i].fd;	/* VZ_FD_PORT0 + i */
	for (i = 0; i < cfg->nshares; i++)
		fds[nfds++] = cfg->shares[i].dir_fd;
	snprintf(cpus, sizeof(cpus), "%u", cfg->vcpus);
	snprintf(mib, sizeof(mib), "%llu", (unsigned long long)cfg->memory_mib);

#define ARG(s)	(argv[n++] = (char *)(s))
	ARG(vz_bin);
	ARG("--cpus"); ARG(cpus);
	ARG("--memory-mib"); ARG(mib);
	ARG("--cmdline"); ARG(cmdline);
	for (i = 0; i < cfg->nports; i++) {
		ARG("--port"); ARG(cfg->ports[i].name);
	}
	for (i = 0; i < cfg->nshares; i++) {
		ARG(cfg->shares[i].ro ? "--share-ro" : "--share-rw");
		ARG(cfg->shares[i].tag);
	}
	argv[n] = NULL;
#undef ARG

	if ((r = vz_spawn(argv, fds, nfds, logp[1], &vm->pid, err)) < 0)
		goto fail;
	vm->ctl = TAKE_FD(ctl[0]);
	if ((r = vz_watch(base, vm, err)) < 0) {
		kill(vm->pid, SIGKILL);
		vz_reap(vm->pid, NULL);
		goto fail;
	}
	closep(&ctl[1]);
	closep(&agent[1]);
	closep(&con[1]);
	closep(&logp[1]);
	chans->agent = TAKE_FD(agent[0]);
	chans->console = TAKE_FD(con[0]);
	chans->log = TAKE_FD(logp[0]);
	free(cmdline);
	*out = vm;
	return 0;
fail:
	for (i = 0; i < 2; i++) {
		closep(&ctl[i]);
		closep(&agent[i]);
		closep(&con[i]);
		closep(&logp[i]);
	}
	vz_release(vm);
	free(cmdline);
	return r;
}

static int
vz_adopt(struct event_base *base, const struct hv_adopt *a,
    const struct hv_cbs *cbs, void *arg, struct hv_vm **vm,
    struct hv_chans *chans, struct cap_err *err)
{
	return cap_err_set(err, ESRCH, E_VM_FAILED, "a vz VM lives only as "
	    "long as the capsuled that started it (%s stops it when that "
	    "capsuled goes), so there is none to take over", VZ_HELPER);
}

static int
vz_send(struct hv_vm *vm, const char *cmd, struct cap_err *err)
{
	char line[32];
	int len = snprintf(line, sizeof(line), "%s\n", cmd);
	ssize_t w;

	if (vm->exited || vm->ctl < 0)
		return cap_err_set(err, ESRCH, E_VM_FAILED, "%s has ended",
		    VZ_HELPER);
	while ((w = write(vm->ctl, line, (size_t)len)) < 0 && errno == EINTR)
		;
	/* A few bytes into an empty socket buffer: short means stuck. */
	if (w != len)
		return cap_err_set(err, w < 0 ? errno : EAGAIN, E_INTERNAL,
		    "cannot tell %s to %s: %s", VZ_HELPER, cmd, w < 0 ?
		    strerror(errno) : "it is not reading");
	return 0;
}

/* "stop", not "request-stop": hv.h's quit ends the guest now, as QEMU's
 * does. capsuled has asked the guest to power off through its agent
 * already, and a request through VZ (the power button) is one the agent
 * does not act on. */
static int
vz_quit(struct hv_vm *vm, struct cap_err *err)
{
	return vz_send(vm, "stop", err);
}

/* VZ's pause and resume; the helper reports failures to the log. */
static int
vz_pause(struct hv_vm *vm, int pause, struct cap_err *err)
{
	return vz_send(vm, pause ? "pause" : "resume", err);
}

/* The helper's end takes the VM with it (VZ's XPC service ends a VM
 * whose client has gone). */
static void
vz_kill(struct hv_vm *vm)
{
	if (vm->exited)
		return;
	vz_send(vm, "stop", NULL);
	kill(vm->pid, SIGKILL);		/* our child, not reaped: still it */
}

static pid_t
vz_pid(const struct hv_vm *vm)
{
	return vm->pid;
}

static void
vz_exe(const struct hv_vm *vm, dev_t *dev, ino_t *ino)
{
	*dev = vz_exe_dev;
	*ino = vz_exe_ino;
}

static void
vz_free(struct hv_vm *vm)
{
	if (vm == NULL)
		return;
	if (!vm->exited) {
		/* Nobody will watch it any more: end it and reap it now. */
		kill(vm->pid, SIGKILL);
		vz_reap(vm->pid, NULL);
	}
	vz_release(vm);
}

/* Cannot leave the VM running for a later capsuled (see the top): closing
 * the control socket tells the helper capsuled has gone, and it stops the
 * VM and exits. Not reaped here: capsuled is on its way out. */
static void
vz_detach(struct hv_vm *vm)
{
	if (vm == NULL)
		return;
	log_info("%s: a vz VM cannot outlive its capsuled; it stops now",
	    vm->what);
	vz_release(vm);
}

const struct hv_ops vz_ops = {
	.name = "vz",
	.probe = vz_probe,
	.check_kernel = vz_check_kernel,
	.start = vz_start,
	.adopt = vz_adopt,
	.pause = vz_pause,
	.save = NULL,		/* see the top: VZ's saves are not ours */
	.save_cancel = NULL,
	.quit = vz_quit,
	.kill = vz_kill,
	.pid = vz_pid,
	.exe = vz_exe,
	.free = vz_free,
	.detach = vz_detach,
};
