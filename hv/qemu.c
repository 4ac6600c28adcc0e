/*
 * qemu.c — the QEMU backend: qemu-system-x86_64 with the microvm machine,
 * and qemu-system-aarch64 with the virt machine (qemuarch.h says what
 * differs) for aarch64 guests.
 *
 * What it makes in the VM's private directory (the daemon's, mode 0700):
 *   agent.sock    listening socket QEMU serves the agent's virtio-serial
 *                 port on (capsuled connects to it; so could a successor)
 *   console.sock  the same for the guest's serial console
 *   qmp.sock      QMP monitor, listening
 *   share<N>.sock vhost-user socket of shared folder N's virtiofsd
 *                 (vfsd.h); gone once QEMU is connected to it
 *
 * QEMU is given file descriptors, never a path it would open itself: the
 * sockets (capsuled binds them and connects first, so no byte the guest
 * sends is lost to a race), the kernel and initrd as /dev/fd/N, and both
 * disks (the read-only base, the VM's writable one: the daemon's files)
 * through -add-fd fd sets. It then drops to the VM's own uid
 * (-runas) under a seccomp filter. QMP is read for as long as QEMU runs:
 * its SHUTDOWN reason tells a power-off from a reboot or a panic (a pvpanic
 * device reports panics), and STOP/BLOCK_IO_ERROR report a guest QEMU
 * paused because the host could not write its disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv.h"
#include "log.h"
#include "procid.h"
#include "proto.h"
#include "qemuarch.h"
#include "qmp.h"
#include "util.h"
#include "vfsd.h"

#define QEMU_ARGS_MAX	(88 + 4 * HV_MAX_SERIAL_PORTS + 4 * HV_MAX_SHARES)
/* The fds QEMU gets, at fixed numbers (macros: they go into strings). */
#define QFD_AGENT	3	/* listening sockets */
#define QFD_QMP		4
#define QFD_CONSOLE	5
#define QFD_KERNEL	6	/* files */
#define QFD_INITRD	7
#define QFD_BASE	8
#define QFD_DISK	9
#define QFD_PORT0	10	/* one per raw serial port */
/* Then one per share, at QFD_PORT0 + nports + i. */
/* then one per shared folder's connection, then RAM and state files */
#define QEMU_NFDS	(QFD_PORT0 - 3 + HV_MAX_SERIAL_PORTS + HV_MAX_SHARES + 2)
#define QEMU_CMDLINE_MAX 2048	/* COMMAND_LINE_SIZE (x86, arm64), with its
				 * NUL */
#define QEMU_SOCK_AGENT	"agent.sock"
#define QEMU_SOCK_QMP	"qmp.sock"
#define QEMU_SOCK_CON	"console.sock"
#define QEMU_SOCK_SHARE	"share%u.sock"
/* QMP's words (events and SHUTDOWN reasons) that capsule acts on. */
#define QMP_EV_SHUTDOWN		"SHUTDOWN"
#define QMP_EV_STOP		"STOP"
#define QMP_EV_RESUME		"RESUME"
#define QMP_EV_PANICKED		"GUEST_PANICKED"
#define QMP_EV_IO_ERROR		"BLOCK_IO_ERROR"
#define QMP_EV_MIGRATION	"MIGRATION"
#define QMP_STATE_FDNAME	"capsule-state"

/* A shared folder's server (its keeper, vfsd.c): our child. It may
 * outlive the hv_vm (vm NULL then) until it is reaped: capsuled never
 * waits for one. */
struct qemu_fsd {
	struct hv_vm	*vm;
	unsigned	 index;
	pid_t		 pid;
	int		 pidfd;
	struct event	*ev;
};

struct hv_vm {
	struct hv_cbs	 cbs;
	void		*arg;
	pid_t		 pid;
	int		 pidfd;
	struct event	*exit_ev;
	struct qmp	*qmp;
	enum hv_end	 end;		/* from QMP's SHUTDOWN, if it came */
	int		 quitting;	/* we asked: a STOP is expected */
	unsigned	 stops_asked;	/* our "stop"s whose STOP is to come:
					 * those pauses are not QEMU's own */
	int		 ram_shared;	/* HV_RAM_SHARED: save() can work */
	int		 saving;	/* save() runs: MIGRATION says how */
	int		 restoring;	/* HV_RAM_TEMPLATE, not running yet */
	int		 exited;
	dev_t		 exe_dev;	/* the binary it runs */
	ino_t		 exe_ino;
	char		 what[48];	/* "vm 1234abcd" for the log */
	struct qemu_fsd	*fsd[HV_MAX_SHARES];
	unsigned	 nfsd;
};

/* Per guest architecture: its QEMU, and that binary's identity as probed
 * ("" if this host has none). */
static char qemu_bin[CTL_ARCH_MAX + 1][PATH_MAX];
static dev_t qemu_exe_dev[CTL_ARCH_MAX + 1];
static ino_t qemu_exe_ino[CTL_ARCH_MAX + 1];
static char qemu_vfsd[PATH_MAX];
static struct hv_caps qemu_caps;

/* Looks a program up in $PATH (or takes $CAPSULE_QEMU for QEMU itself). */
static int
find_program(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char cand[PATH_MAX];

	if (path == NULL || *path == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)n,
		    path, name) < (int)sizeof(cand) &&
		    access(cand, X_OK) == 0) {
			snprintf(out, len, "%s", cand);
			return 0;
		}
		path += n + (path[n] == ':');
	}
	return -ENOENT;
}

static uint32_t
host_tsc_khz(void)
{
	char line[256];
	double mhz = 0;
	FILE *f;

	/* With constant_tsc the reported clock is the TSC rate; TCG's guest
	 * TSC runs at the host's, and telling the guest skips a calibration
	 * that hangs now and then under emulation. */
	if ((f = fopen("/proc/cpuinfo", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			break;
	fclose(f);
	return mhz > 0 ? (uint32_t)(mhz * 1000) : 0;
}

/* Finds arch's QEMU (env: a path to take instead), and its identity. */
static int
qemu_find(enum ctl_arch arch, const char *env, struct cap_err *err)
{
	const struct qemu_arch *qa = qemuarch_get(arch);
	struct stat st;

	if (env != NULL && env[0] == '/')
		snprintf(qemu_bin[arch], sizeof(qemu_bin[arch]), "%s", env);
	else if (find_program(qa->binary, qemu_bin[arch],
	    sizeof(qemu_bin[arch])) < 0) {
		qemu_bin[arch][0] = '\0';
		return cap_err_set(err, ENOENT, E_UNAVAILABLE, "%s not found in "
		    "PATH; install %s", qa->binary, qa->package);
	}
	if (stat(qemu_bin[arch], &st) == 0) {
		qemu_exe_dev[arch] = st.st_dev;
		qemu_exe_ino[arch] = st.st_ino;
	}
	return 0;
}

/* The host's architecture needs its QEMU (with KVM where it works;
 * $CAPSULE_QEMU names another binary for it); other architectures run
 * under TCG where their QEMU is installed. */
static int
qemu_probe(enum hv_accel want, struct hv_caps *caps, struct cap_err *err)
{
	enum ctl_arch host = ctl_arch_host(), a;
	char out[512], *argv[] = { NULL, "--version", NULL };
	struct cap_err kerr;
	int r;

	memset(caps, 0, sizeof(*caps));
	if (qemuarch_get(host) == NULL)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "the QEMU "
		    "backend knows no guest of this host's architecture");
	if ((r = qemu_find(host, getenv("CAPSULE_QEMU"), err)) < 0)
		return r;
	argv[0] = qemu_bin[host];
	if ((r = util_run(argv, -1, out, sizeof(out), err)) < 0)
		return r;
	out[strcspn(out, "\n")] = '\0';
	if (strncmp(out, "QEMU emulator version ", 22) == 0)
		snprintf(caps->version, sizeof(caps->version), "QEMU %.50s",
		    out + 22);
	else
		snprintf(caps->version, sizeof(caps->version), "%.63s", out);
	caps->tsc_khz = host_tsc_khz();
	if (geteuid() != 0)
		snprintf(caps->shares_why, sizeof(caps->shares_why), "shared "
		    "folders need capsuled to run as root");
	else if (vfsd_find(qemu_vfsd, sizeof(qemu_vfsd), &kerr) < 0)
		snprintf(caps->shares_why, sizeof(caps->shares_why), "%.250s",
		    kerr.msg);

	if (want == HV_ACCEL_HVF)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE,
		    "accel hvf is for macOS; this backend offers kvm and tcg");
	if (want == HV_ACCEL_TCG) {
		caps->accel = HV_ACCEL_TCG;
		snprintf(caps->accel_why, sizeof(caps->accel_why),
		    "tcg was requested");
	} else if ((r = kvmprobe_run("/dev/kvm", &kerr)) == 0) {
		caps->accel = HV_ACCEL_KVM;
	} else if (want == HV_ACCEL_KVM) {
		return cap_err_set(err, -r, E_UNAVAILABLE,
		    "accel kvm was requested but %s", kerr.msg);
	} else {
		caps->accel = HV_ACCEL_TCG;
		snprintf(caps->accel_why, sizeof(caps->accel_why),
		    "using tcg (software emulation): %.400s", kerr.msg);
	}
	caps->arch_accel[host] = caps->accel;
	for (a = CTL_ARCH_X86_64; a <= CTL_ARCH_MAX; a++) {
		if (a == host)
			continue;
		if (qemuarch_get(a) == NULL)
			snprintf(caps->arch_why[a], sizeof(caps->arch_why[a]),
			    "the QEMU backend knows no %s guest",
			    ctl_arch_name(a));
		else if (qemu_find(a, NULL, &kerr) < 0)
			snprintf(caps->arch_why[a], sizeof(caps->arch_why[a]),
			    "%.150s", kerr.msg);
		else
			/* Another architecture is always emulated. */
			caps->arch_accel[a] = HV_ACCEL_TCG;
	}
	qemu_caps = *caps;
	return 0;
}

/* The kernel command line: the console on the first serial port, an
 * immediate reset on panic (QEMU then ends the VM and says why), the
 * machine's own words (qemuarch.c), the TSC rate under TCG; a caller's
 * boot_args last, so they win where they overlap. */
static char *
qemu_cmdline(const struct hv_vm_config *cfg, const struct qemu_arch *qa)
{
	const char *ours = cfg->agent_args != NULL && cfg->agent_args[0] ?
	    cfg->agent_args : NULL;
	char tsc[48] = "";

	if (qa->tsc_hint && qemu_caps.arch_accel[cfg->arch] == HV_ACCEL_TCG &&
	    qemu_caps.tsc_khz > 0)
		snprintf(tsc, sizeof(tsc), " tsc_early_khz=%u",
		    qemu_caps.tsc_khz);
	return util_strdup_printf("console=%s quiet panic=-1%s%s%s%s%s%s%s",
	    qa->console, qa->boot_args[0] ? " " : "", qa->boot_args, tsc,
	    ours ? " " : "", ours ? ours : "", cfg->boot_args ? " " : "",
	    cfg->boot_args ? cfg->boot_args : "");
}

/* fds[i] becomes QEMU's fd 3 + i; out is its stdout and stderr. */
static void
child_exec(char *const argv[], const int *fds, int nfds, int out,
    const struct hv_vm_config *cfg)
{
	int fd, moved[QEMU_NFDS];
	struct rlimit rl;
	sigset_t none;

	/* Without a systemd scope these are what caps a runaway VM. */
	if (cfg->rlimit_as_mib > 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)cfg->rlimit_as_mib << 20;
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(126);
	}
	if (cfg->rlimit_nproc > 0) {
		rl.rlim_cur = rl.rlim_max = cfg->rlimit_nproc;
		if (setrlimit(RLIMIT_NPROC, &rl) < 0)
			_exit(126);
	}

	/* Its own session: a Ctrl-C meant for capsuled must not reach QEMU;
	 * capsuled decides how its VMs end. */
	setsid();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd != 0) {
		dup2(fd, 0);
		close(fd);
	}
	if (dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(126);
	/* Move the fds to fixed numbers (out of the way first, so that none
	 * overwrites another), then drop everything else. */
	for (int i = 0; i < nfds; i++)
		if ((moved[i] = fcntl(fds[i], F_DUPFD, 3 + nfds)) < 0)
			_exit(126);
	for (int i = 0; i < nfds; i++)
		if (dup2(moved[i], 3 + i) < 0)
			_exit(126);
	/* The sockets were made non-blocking for us; QEMU wants its own. */
	for (int i = QFD_AGENT; i <= QFD_CONSOLE; i++)
		fcntl(i, F_SETFL, 0);
	for (int i = QFD_PORT0; i < 3 + nfds; i++)
		fcntl(i, F_SETFL, 0);
	if (close_range(3 + nfds, ~0U, 0) < 0)
		for (fd = 3 + nfds; fd < 65536; fd++)
			close(fd);
	execv(argv[0], argv);
	dprintf(2, "capsuled: cannot execute %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

static void
qemu_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hv_vm *vm = arg;
	struct hv_exit ex = { .end = vm->end };
	int st, r;

	if ((r = procid_reap(vm->pidfd, &st)) == 0)
		return;
	event_del(vm->exit_ev);
	vm->exited = 1;
	if (r == 1) {
		ex.have_status = 1;
		ex.wstatus = st;
	}
	if (ex.end == HV_END_UNKNOWN && r == 1 && WIFSIGNALED(st))
		ex.end = HV_END_SIGNAL;
	vm->cbs.exited(vm->arg, &ex);	/* may free vm */
}

static enum hv_end
qemu_end_of(const char *reason)
{
	static const struct { const char *qmp; enum hv_end end; } ends[] = {
		{ "guest-shutdown", HV_END_POWEROFF },
		{ "guest-reset", HV_END_REBOOT },
		{ "guest-panic", HV_END_PANIC },
		{ "host-qmp-quit", HV_END_QUIT },
		{ "host-signal", HV_END_SIGNAL },
	};

	for (size_t i = 0; reason != NULL && i < sizeof(ends) /
	    sizeof(ends[0]); i++)
		if (strcmp(reason, ends[i].qmp) == 0)
			return ends[i].end;
	return HV_END_UNKNOWN;
}

static const char *
jstr(json_t *o, const char *key)
{
	json_t *v = o != NULL ? json_object_get(o, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Saving a template or restoring one: QEMU's word on how it went. */
static void
qemu_migration(struct hv_vm *vm, const char *status)
{
	int done, failed;

	if (status == NULL)
		return;
	done = strcmp(status, "completed") == 0;
	failed = strcmp(status, "failed") == 0 ||
	    strcmp(status, "cancelled") == 0;
	if (!done && !failed)
		return;
	if (vm->saving) {
		vm->saving = 0;
		vm->cbs.event(vm->arg, done ? HV_EV_SAVED : HV_EV_SAVE_FAILED,
		    done ? "QEMU saved the guest's state" : "QEMU could not "
		    "save the guest's state");
	} else if (vm->restoring) {
		vm->restoring = 0;
		if (done)
			qmp_execute(vm->qmp, "cont");
		vm->cbs.event(vm->arg, done ? HV_EV_RESTORED :
		    HV_EV_RESTORE_FAILED, done ? "QEMU restored the guest" :
		    "QEMU could not restore the guest from its saved state");
	}
}

/* ignore_shared: RAM that is a shared file goes by reference (the file),
 * not in the state stream; else all of it is in the stream. MIGRATION
 * events tell how it ends. */
static json_t *
qemu_migrate_caps(int ignore_shared)
{
	return json_pack("{s:[{s:s,s:b},{s:s,s:b}]}", "capabilities",
	    "capability", "x-ignore-shared", "state", ignore_shared,
	    "capability", "events", "state", 1);
}

static void
qemu_qmp_event(void *arg, const char *name, json_t *data)
{
	struct hv_vm *vm = arg;
	char detail[320];

	if (strcmp(name, QMP_EV_SHUTDOWN) == 0) {
		if (vm->end == HV_END_UNKNOWN || vm->end == HV_END_QUIT)
			vm->end = qemu_end_of(jstr(data, "reason"));
	} else if (strcmp(name, QMP_EV_PANICKED) == 0) {
		vm->end = HV_END_PANIC;
		vm->cbs.event(vm->arg, HV_EV_PANIC,
		    "the guest kernel panicked");
	} else if (strcmp(name, QMP_EV_STOP) == 0 && vm->stops_asked > 0) {
		vm->stops_asked--;
	} else if (strcmp(name, QMP_EV_STOP) == 0 && !vm->quitting) {
		vm->cbs.event(vm->arg, HV_EV_PAUSED, "QEMU paused the guest");
	} else if (strcmp(name, QMP_EV_MIGRATION) == 0) {
		qemu_migration(vm, jstr(data, "status"));
	} else if (strcmp(name, QMP_EV_RESUME) == 0) {
		/* QEMU runs commands in order: a STOP of ours came before
		 * this, or never will (the guest was stopped already). */
		vm->stops_asked = 0;
		vm->cbs.event(vm->arg, HV_EV_RESUMED, "QEMU resumed the guest");
	} else if (strcmp(name, QMP_EV_IO_ERROR) == 0) {
		const char *op = jstr(data, "operation");
		const char *why = jstr(data, "reason");
		const char *action = jstr(data, "action");
		json_t *nospace = json_object_get(data, "nospace");

		snprintf(detail, sizeof(detail), "the host could not %.16s "
		    "the VM's disk layer: %.200s%s%s",
		    op != NULL ? op : "access", why != NULL ? why :
		    "I/O error", json_is_true(nospace) ? " (the host file "
		    "system holding capsule's state directory is full)" : "",
		    action != NULL && strcmp(action, "stop") == 0 ?
		    "; QEMU paused the guest" : "");
		vm->cbs.event(vm->arg, HV_EV_IO_ERROR, detail);
	}
}

static void
qemu_qmp_closed(void *arg, const char *why)
{
	struct hv_vm *vm = arg;

	if (!vm->exited)
		log_debug("%s: %s", vm->what, why);
}

/* A command of a save or a restore failed: no MIGRATION event will say
 * so, so this does (and a save already under way is cancelled). */
static void
qemu_qmp_error(void *arg, const char *cmd, const char *desc)
{
	struct hv_vm *vm = arg;
	char detail[320];

	if (strncmp(cmd, "migrate", 7) != 0 && strcmp(cmd, "getfd") != 0)
		return;
	snprintf(detail, sizeof(detail), "QEMU refused %s: %.200s", cmd, desc);
	if (vm->saving) {
		vm->saving = 0;
		qmp_execute(vm->qmp, "migrate_cancel");
		vm->cbs.event(vm->arg, HV_EV_SAVE_FAILED, detail);
	} else if (vm->restoring) {
		vm->restoring = 0;
		vm->cbs.event(vm->arg, HV_EV_RESTORE_FAILED, detail);
	}
}

static const struct qmp_cbs qemu_qmp_cbs = {
	.event = qemu_qmp_event,
	.closed = qemu_qmp_closed,
	.error = qemu_qmp_error,
};

/* Listening sockets QEMU serves, and our connections to them, queued in
 * their backlogs before QEMU runs. */
struct qemu_socks {
	int	listen[3];	/* agent, qmp, console */
	int	conn[3];
};

static void
socks_close(struct qemu_socks *s, int dir_fd, int unlink_too)
{
	static const char *const names[3] = { QEMU_SOCK_AGENT, QEMU_SOCK_QMP,
	    QEMU_SOCK_CON };

	for (int i = 0; i < 3; i++) {
		if (s->listen[i] >= 0 && unlink_too)
			unlinkat(dir_fd, names[i], 0);
		closep(&s->listen[i]);
		closep(&s->conn[i]);
	}
}

static int
socks_open(struct qemu_socks *s, int dir_fd, struct cap_err *err)
{
	static const char *const names[3] = { QEMU_SOCK_AGENT, QEMU_SOCK_QMP,
	    QEMU_SOCK_CON };
	int r;

	for (int i = 0; i < 3; i++)
		s->listen[i] = s->conn[i] = -1;
	for (int i = 0; i < 3; i++) {
		if ((r = util_listen_unix_at(dir_fd, names[i], 0600, err)) < 0)
			goto fail;
		s->listen[i] = r;
		if ((r = util_connect_unix_at(dir_fd, names[i], err)) < 0)
			goto fail;
		s->conn[i] = r;
	}
	return 0;
fail:
	socks_close(s, dir_fd, 1);
	return r;
}

/* A shared folder's server ended: reap it. While QEMU runs that is news:
 * the guest gets I/O errors from that share from now on. */
static void
fsd_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qemu_fsd *f = arg;
	struct hv_vm *vm = f->vm;
	int st, r;

	if ((r = procid_reap(f->pidfd, &st)) == 0)
		return;
	/* Status 0: QEMU closed its socket, so the VM is ending anyway. */
	if (vm == NULL || (r == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
		log_debug("%s: the server of shared folder %u ended",
		    vm != NULL ? vm->what : "a VM", f->index);
	else if (!vm->exited && !vm->quitting)
		log_warn("%s: the server of shared folder %u ended (%s %d); "
		    "the guest can no longer use it", vm->what, f->index,
		    r == 1 && WIFSIGNALED(st) ? "signal" : "status",
		    r == 1 ? (WIFSIGNALED(st) ? WTERMSIG(st) :
		    WEXITSTATUS(st)) : -1);
	event_free(f->ev);
	close(f->pidfd);
	if (vm != NULL)
		for (unsigned i = 0; i < vm->nfsd; i++)
			if (vm->fsd[i] == f)
				vm->fsd[i] = NULL;
	free(f);
}

/* Lets go of the servers. `end`: the VM is over, so each gets SIGKILL
 * and is reaped from the loop when it has gone (a server stuck in a
 * file system must not stop capsuled); else (the VM lives on for the
 * next capsuled) they are left alone and end with QEMU. */
static void
fsd_release(struct hv_vm *vm, int end)
{
	for (unsigned i = 0; i < vm->nfsd; i++) {
		struct qemu_fsd *f = vm->fsd[i];

		vm->fsd[i] = NULL;
		if (f == NULL)
			continue;
		f->vm = NULL;
		if (end) {
			procid_signal(f->pidfd, SIGKILL);
			continue;
		}
		event_free(f->ev);
		close(f->pidfd);
		free(f);
	}
	vm->nfsd = 0;
}

/* Starts share i's server; *conn is QEMU's end of its socket. */
static int
fsd_start(struct event_base *base, struct hv_vm *vm,
    const struct hv_vm_config *cfg, unsigned i, int log_fd, int *conn,
    struct cap_err *err)
{
	const struct hv_share *sh = &cfg->shares[i];
	struct vfsd_owner who = { cfg->share_uid, cfg->share_gid,
	    cfg->share_groups, cfg->share_ngroups };
	struct qemu_fsd *f;
	char name[32];
	int lfd, r;

	snprintf(name, sizeof(name), QEMU_SOCK_SHARE, i);
	if ((lfd = util_listen_unix_at(cfg->dir_fd, name, 0600, err)) < 0)
		return lfd;
	if ((r = util_connect_unix_at(cfg->dir_fd, name, err)) < 0) {
		unlinkat(cfg->dir_fd, name, 0);
		close(lfd);
		return r;
	}
	*conn = r;
	/* Both ends exist now; the name is of no more use. */
	unlinkat(cfg->dir_fd, name, 0);
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		close(lfd);
		closep(conn);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	f->vm = vm;
	f->index = i;
	f->pid = vfsd_spawn(qemu_vfsd, sh->dir_fd, sh->ro, &who, lfd, log_fd,
	    err);
	close(lfd);
	if (f->pid < 0) {
		r = (int)f->pid;
		free(f);
		closep(conn);
		return r;
	}
	if ((f->pidfd = procid_open_child(f->pid)) < 0) {
		/* Cannot watch it: end it; a keeper stuck in a file system
		 * stays a zombie rather than stop capsuled. */
		kill(f->pid, SIGKILL);
		if (waitpid(f->pid, NULL, WNOHANG) <= 0)
			log_warn("%s: shared folder %u: could not reap its "
			    "server (pid %d)", vm->what, i, (int)f->pid);
		free(f);
		closep(conn);
		return cap_err_set(err, EMFILE, E_INTERNAL, "cannot watch the "
		    "server of shared folder %u", i);
	}
	if ((f->ev = event_new(base, f->pidfd, EV_READ | EV_PERSIST,
	    fsd_exit_cb, f)) == NULL || event_add(f->ev, NULL) < 0) {
		procid_signal(f->pidfd, SIGKILL);
		if (waitpid(f->pid, NULL, WNOHANG) <= 0)
			log_warn("%s: shared folder %u: could not reap its "
			    "server (pid %d)", vm->what, i, (int)f->pid);
		if (f->ev != NULL)
			event_free(f->ev);
		close(f->pidfd);
		free(f);
		closep(conn);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "cannot watch the "
		    "server of shared folder %u", i);
	}
	vm->fsd[vm->nfsd++] = f;
	return 0;
}

static int
qemu_start(struct event_base *base, const struct hv_vm_config *cfg,
    const struct hv_cbs *cbs, void *arg, struct hv_vm **out,
    struct hv_chans *chans, struct cap_err *err)
{
	char mem[32], smp[16], runas[32], fdarg[2][40], memobj[96];
	char machine[48], dev[6][96];
	const struct qemu_arch *qa = qemuarch_get(cfg->arch);
	char port_chr[HV_MAX_SERIAL_PORTS][64];
	char port_dev[HV_MAX_SERIAL_PORTS][128];
	char fs_chr[HV_MAX_SHARES][64], fs_dev[HV_MAX_SHARES][96];
	int fs_conn[HV_MAX_SHARES];
	char *cmdline = NULL, *argv[QEMU_ARGS_MAX], incoming[32];
	int qfd_ram, qfd_state, file_ram, restore;
	struct qemu_socks socks;
	int fds[QEMU_NFDS], nfds = 0, n = 0, logp[2] = { -1, -1 };
	struct hv_vm *vm = NULL;
	unsigned i;
	pid_t pid;
	int r;

	for (i = 0; i < HV_MAX_SHARES; i++)
		fs_conn[i] = -1;
	if (qa == NULL || qemu_bin[cfg->arch][0] == '\0')
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "no QEMU for "
		    "%s guests here", ctl_arch_name(cfg->arch));
	if (cfg->nports > HV_MAX_SERIAL_PORTS)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "%u serial ports; the limit is %d", cfg->nports,
		    HV_MAX_SERIAL_PORTS);
	if (cfg->nshares > HV_MAX_SHARES)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "%u shared folders; the limit is %d", cfg->nshares,
		    HV_MAX_SHARES);
	if (cfg->nshares > 0 && (r = vfsd_find(qemu_vfsd, sizeof(qemu_vfsd),
	    err)) < 0)
		return r;
	for (i = 0; i < cfg->nshares; i++) {
		if (strlen(cfg->shares[i].tag) > 32 ||
		    strchr(cfg->shares[i].tag, ',') != NULL)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "share tag %.40s cannot go to QEMU",
			    cfg->shares[i].tag);
		snprintf(fs_chr[i], sizeof(fs_chr[i]),
		    "socket,id=fs%u,fd=%u", i,
		    QFD_PORT0 + cfg->nports + i);
		snprintf(fs_dev[i], sizeof(fs_dev[i]),
		    "vhost-user-fs-%s,chardev=fs%u,tag=%s", qa->virtio, i,
		    cfg->shares[i].tag);
	}
	for (i = 0; i < cfg->nports; i++) {
		if (snprintf(port_dev[i], sizeof(port_dev[i]),
		    "virtserialport,chardev=port%u,name=%s", i,
		    cfg->ports[i].name) >= (int)sizeof(port_dev[i]) ||
		    strchr(cfg->ports[i].name, ',') != NULL)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "serial port name %.80s cannot go to QEMU",
			    cfg->ports[i].name);
		snprintf(port_chr[i], sizeof(port_chr[i]),
		    "socket,id=port%u,fd=%d,server=on,wait=off", i,
		    QFD_PORT0 + (int)i);
	}
	if ((vm = calloc(1, sizeof(*vm))) == NULL ||
	    (cmdline = qemu_cmdline(cfg, qa)) == NULL) {
		free(vm);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if (strlen(cmdline) >= QEMU_CMDLINE_MAX) {
		r = cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "the kernel "
		    "command line would be %zu bytes; the limit is %d "
		    "(shorten boot_args or the guest paths of volumes)",
		    strlen(cmdline), QEMU_CMDLINE_MAX - 1);
		free(cmdline);
		free(vm);
		return r;
	}
	vm->cbs = *cbs;
	vm->arg = arg;
	vm->pidfd = -1;
	vm->exe_dev = qemu_exe_dev[cfg->arch];
	vm->exe_ino = qemu_exe_ino[cfg->arch];
	snprintf(vm->what, sizeof(vm->what), "vm %.8s", cfg->vm_id);
	if ((r = socks_open(&socks, cfg->dir_fd, err)) < 0)
		goto fail_early;
	if (pipe2(logp, O_CLOEXEC) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "pipe: %s",
		    strerror(errno));
		goto fail;
	}
	for (i = 0; i < cfg->nshares; i++)
		if ((r = fsd_start(base, vm, cfg, i, logp[1], &fs_conn[i],
		    err)) < 0) {
			cap_err_wrap(err, "shared folder %u", i);
			goto fail;
		}
	fds[nfds++] = socks.listen[0];		/* QFD_AGENT */
	fds[nfds++] = socks.listen[1];		/* QFD_QMP */
	fds[nfds++] = socks.listen[2];		/* QFD_CONSOLE */
	fds[nfds++] = cfg->kernel_fd;		/* QFD_KERNEL */
	fds[nfds++] = cfg->initrd_fd;		/* QFD_INITRD */
	fds[nfds++] = cfg->rootfs_fd;		/* QFD_BASE */
	fds[nfds++] = cfg->disk_fd;		/* QFD_DISK */
	for (i = 0; i < cfg->nports; i++)
		fds[nfds++] = cfg->ports[i].fd;
	for (i = 0; i < cfg->nshares; i++)
		fds[nfds++] = fs_conn[i];	/* QFD_PORT0 + nports + i */
	qfd_ram = 3 + nfds;
	qfd_state = qfd_ram + 1;
	file_ram = cfg->ram == HV_RAM_SHARED || cfg->ram == HV_RAM_TEMPLATE;
	restore = cfg->ram == HV_RAM_TEMPLATE || cfg->ram == HV_RAM_RESTORE;
	if (file_ram)
		fds[nfds++] = cfg->ram_fd;
	if (restore)
		fds[nfds++] = cfg->restore_fd;
	snprintf(incoming, sizeof(incoming), "fd:%d", file_ram ? qfd_state :
	    qfd_ram);
	snprintf(mem, sizeof(mem), "%llu",
	    (unsigned long long)cfg->memory_mib);
	if (file_ram)
		/* The daemon's file: shared to be copied into a template, or
		 * a template's, privately, so a copy's writes stay its own
		 * (the file is sealed against writes anyway). */
		snprintf(memobj, sizeof(memobj), "memory-backend-file,id=mem,"
		    "size=%lluM,mem-path=/dev/fd/%d,share=%s",
		    (unsigned long long)cfg->memory_mib, qfd_ram,
		    cfg->ram == HV_RAM_SHARED ? "on" : "off");
	else if (cfg->nshares > 0)
		/* vhost-user servers map the guest's memory: it must be
		 * shared. */
		snprintf(memobj, sizeof(memobj), "memory-backend-memfd,id=mem,"
		    "size=%lluM,share=on",
		    (unsigned long long)cfg->memory_mib);
	else
		/* Plain RAM, but named "mem" as every other kind is: a full
		 * save of any VM restores into any other of its config. */
		snprintf(memobj, sizeof(memobj), "memory-backend-ram,id=mem,"
		    "size=%lluM", (unsigned long long)cfg->memory_mib);
	snprintf(smp, sizeof(smp), "%u", cfg->vcpus);
	snprintf(machine, sizeof(machine), "%s,memory-backend=mem",
	    qa->machine);
	snprintf(dev[0], sizeof(dev[0]), "virtio-serial-%s", qa->virtio);
	snprintf(dev[1], sizeof(dev[1]), "virtio-blk-%s,drive=base,serial="
	    DISK_SERIAL_BASE, qa->virtio);
	snprintf(dev[2], sizeof(dev[2]), "virtio-blk-%s,drive=disk,serial="
	    DISK_SERIAL_DISK, qa->virtio);
	snprintf(dev[3], sizeof(dev[3]), "virtio-rng-%s", qa->virtio);
	snprintf(dev[4], sizeof(dev[4]), "virtio-net-%s,netdev=net0",
	    qa->virtio);
	snprintf(fdarg[0], sizeof(fdarg[0]), "fd=%d,set=1,opaque=base",
	    QFD_BASE);
	snprintf(fdarg[1], sizeof(fdarg[1]), "fd=%d,set=2,opaque=disk",
	    QFD_DISK);

#define ARG(s)	(argv[n++] = (char *)(s))
	ARG(qemu_bin[cfg->arch]);
	ARG("-name"); ARG("capsule");
	ARG("-machine"); ARG(machine);
	ARG("-object"); ARG(memobj);
	if (restore) {
		/* The state comes once QMP has set the same capabilities the
		 * save had. */
		ARG("-incoming"); ARG("defer");
	}
	if (cfg->nshares > 0 && qa->legacy_mmio) {
		/* libvhost-user (virtiofsd) serves modern virtio only, and
		 * microvm's virtio-mmio defaults to legacy. */
		ARG("-global"); ARG("virtio-mmio.force-legacy=false");
	}
	if (qemu_caps.arch_accel[cfg->arch] == HV_ACCEL_KVM) {
		ARG("-accel"); ARG("kvm");
		ARG("-cpu"); ARG("host");
	} else {
		ARG("-accel"); ARG("tcg");
		if (qa->tcg_cpu != NULL) {
			ARG("-cpu"); ARG(qa->tcg_cpu);
		}
	}
	ARG("-nodefaults"); ARG("-no-user-config"); ARG("-display"); ARG("none");
	/* A reset or a panic ends the VM, and QMP says which it was. */
	ARG("-action"); ARG("reboot=shutdown,shutdown=poweroff,panic=shutdown");
	ARG("-m"); ARG(mem);
	ARG("-smp"); ARG(smp);
	ARG("-kernel"); ARG("/dev/fd/" STRINGIFY(QFD_KERNEL));
	ARG("-initrd"); ARG("/dev/fd/" STRINGIFY(QFD_INITRD));
	ARG("-append"); ARG(cmdline);
	ARG("-chardev");
	ARG("socket,id=con,fd=" STRINGIFY(QFD_CONSOLE) ",server=on,wait=on");
	ARG("-serial"); ARG("chardev:con");
	ARG("-chardev");
	ARG("socket,id=agent,fd=" STRINGIFY(QFD_AGENT) ",server=on,wait=on");
	ARG("-device"); ARG(dev[0]);
	ARG("-device"); ARG("virtserialport,chardev=agent,name=" AGENT_PORT_NAME);
	/* Raw ports: QEMU accepts a new connection whenever the last one
	 * closes; the guest reads EOF while nobody is connected. */
	for (i = 0; i < cfg->nports; i++) {
		ARG("-chardev"); ARG(port_chr[i]);
		ARG("-device"); ARG(port_dev[i]);
	}
	ARG("-chardev");
	ARG("socket,id=qmp,fd=" STRINGIFY(QFD_QMP) ",server=on,wait=off");
	ARG("-mon"); ARG("chardev=qmp,mode=control");
	ARG("-add-fd"); ARG(fdarg[0]);
	ARG("-add-fd"); ARG(fdarg[1]);
	ARG("-blockdev");
	ARG("driver=file,node-name=base-file,filename=/dev/fdset/1,"
	    "read-only=on");
	ARG("-blockdev"); ARG("driver=raw,node-name=base,file=base-file,"
	    "read-only=on");
	ARG("-device"); ARG(dev[1]);
	ARG("-blockdev"); ARG("driver=file,node-name=disk-file,"
	    "filename=/dev/fdset/2,discard=unmap");
	ARG("-blockdev"); ARG("driver=raw,node-name=disk,file=disk-file,"
	    "discard=unmap");
	ARG("-device"); ARG(dev[2]);
	for (i = 0; i < cfg->nshares; i++) {
		ARG("-chardev"); ARG(fs_chr[i]);
		ARG("-device"); ARG(fs_dev[i]);
	}
	ARG("-device"); ARG(dev[3]);
	if (qa->panic_dev != NULL) {
		ARG("-device"); ARG(qa->panic_dev);
	}
	if (cfg->nat) {
		/* QEMU's own user-mode NAT (slirp): the guest's connections
		 * leave as QEMU's, from the host. No IPv6. */
		ARG("-netdev"); ARG("user,id=net0,ipv6=off");
		ARG("-device"); ARG(dev[4]);
	}
	/* Confine QEMU itself: no new processes, and (unless it has to drop
	 * root itself, which the filter would otherwise forbid) no privilege
	 * changes. With -runas QEMU opens every file and device first, then
	 * becomes the VM's own unprivileged uid for the rest of its life. */
	ARG("-sandbox");
	if (cfg->uid != 0) {
		snprintf(runas, sizeof(runas), "%u:%u", (unsigned)cfg->uid,
		    (unsigned)cfg->gid);
		ARG("on,obsolete=deny,elevateprivileges=allow,spawn=deny,"
		    "resourcecontrol=deny");
		ARG("-runas"); ARG(runas);
	} else {
		ARG("on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
		    "resourcecontrol=deny");
	}
	argv[n] = NULL;
#undef ARG

	if ((pid = fork()) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child_exec(argv, fds, nfds, logp[1], cfg);
	vm->pid = pid;
	closep(&logp[1]);
	for (i = 0; i < cfg->nshares; i++)
		closep(&fs_conn[i]);
	vm->pidfd = procid_open_child(pid);
	if (vm->pidfd >= 0)
		vm->exit_ev = event_new(base, vm->pidfd, EV_READ | EV_PERSIST,
		    qemu_exit_cb, vm);
	if (vm->exit_ev == NULL || event_add(vm->exit_ev, NULL) < 0) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "cannot watch QEMU "
		    "(pid %d)", (int)pid);
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto fail;
	}
	vm->qmp = qmp_new(base, TAKE_FD(socks.conn[1]), &qemu_qmp_cbs, vm,
	    vm->what);
	vm->ram_shared = cfg->ram == HV_RAM_SHARED;
	if (restore) {
		vm->restoring = 1;
		if (vm->qmp == NULL ||
		    qmp_execute_args(vm->qmp, "migrate-set-capabilities",
		    qemu_migrate_caps(cfg->ram == HV_RAM_TEMPLATE)) < 0 ||
		    qmp_execute_args(vm->qmp, "migrate-incoming",
		    json_pack("{s:s}", "uri", incoming)) < 0) {
			r = cap_err_set(err, EIO, E_INTERNAL, "cannot tell QEMU "
			    "to restore the template");
			qmp_free(vm->qmp);
			vm->qmp = NULL;
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			goto fail;
		}
	} else if (vm->qmp == NULL)
		log_warn("%s: cannot read QMP; reboots and panics will be "
		    "reported as plain exits", vm->what);
	fcntl(logp[0], F_SETFL, O_NONBLOCK);
	chans->agent = TAKE_FD(socks.conn[0]);
	chans->console = TAKE_FD(socks.conn[2]);
	chans->log = TAKE_FD(logp[0]);
	socks_close(&socks, cfg->dir_fd, 0);
	free(cmdline);
	*out = vm;
	return 0;
fail:
	fsd_release(vm, 1);
	for (i = 0; i < HV_MAX_SHARES; i++)
		closep(&fs_conn[i]);
	closep(&logp[0]);
	closep(&logp[1]);
	socks_close(&socks, cfg->dir_fd, 1);
fail_early:
	if (vm->exit_ev != NULL)
		event_free(vm->exit_ev);
	closep(&vm->pidfd);
	free(cmdline);
	free(vm);
	return r;
}

static int
qemu_adopt(struct event_base *base, const struct hv_adopt *a,
    const struct hv_cbs *cbs, void *arg, struct hv_vm **out,
    struct hv_chans *chans, struct cap_err *err)
{
	struct procid want = { a->pid, a->start, a->uid };
	static const char *const names[3] = { QEMU_SOCK_AGENT, QEMU_SOCK_QMP,
	    QEMU_SOCK_CON };
	int conn[3] = { -1, -1, -1 }, r;
	char exe[64];
	struct hv_vm *vm;
	struct stat st;

	if ((vm = calloc(1, sizeof(*vm))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	vm->cbs = *cbs;
	vm->arg = arg;
	vm->pid = a->pid;
	vm->exe_dev = a->exe_dev;
	vm->exe_ino = a->exe_ino;
	snprintf(vm->what, sizeof(vm->what), "vm %.8s", a->vm_id);
	if ((vm->pidfd = procid_open(&want)) < 0) {
		r = vm->pidfd;
		cap_err_set(err, -r, E_VM_FAILED, r == -ESRCH ? "QEMU (pid %d) "
		    "is gone" : "pid %d is no longer the QEMU recorded",
		    (int)a->pid);
		goto fail;
	}
	/* The very binary it was started from (the process's own link
	 * names it even if the file was replaced since). */
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)a->pid);
	if (stat(exe, &st) < 0 || st.st_dev != a->exe_dev ||
	    st.st_ino != a->exe_ino) {
		r = cap_err_set(err, ESTALE, E_VM_FAILED, "pid %d does not run "
		    "the QEMU binary recorded for it", (int)a->pid);
		goto fail;
	}
	for (int i = 0; i < 3; i++)
		if ((conn[i] = util_connect_unix_at(a->dir_fd, names[i],
		    err)) < 0) {
			r = conn[i];
			cap_err_wrap(err, "cannot reach the running QEMU");
			goto fail;
		}
	vm->exit_ev = event_new(base, vm->pidfd, EV_READ | EV_PERSIST,
	    qemu_exit_cb, vm);
	if (vm->exit_ev == NULL || event_add(vm->exit_ev, NULL) < 0) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto fail;
	}
	vm->qmp = qmp_new(base, TAKE_FD(conn[1]), &qemu_qmp_cbs, vm,
	    vm->what);
	/* A VM paused when its daemon went runs again: nobody here knows
	 * why it was paused, and a paused guest looks unresponsive. */
	if (vm->qmp != NULL)
		qmp_execute(vm->qmp, "cont");
	chans->agent = TAKE_FD(conn[0]);
	chans->console = TAKE_FD(conn[2]);
	chans->log = -1;	/* QEMU's stderr went with the old daemon */
	*out = vm;
	return 0;
fail:
	for (int i = 0; i < 3; i++)
		closep(&conn[i]);
	if (vm->exit_ev != NULL)
		event_free(vm->exit_ev);
	closep(&vm->pidfd);
	free(vm);
	return r;
}

static int
qemu_quit(struct hv_vm *vm, struct cap_err *err)
{
	int r;

	vm->quitting = 1;
	if ((r = qmp_execute(vm->qmp, "quit")) < 0)
		return cap_err_set(err, -r, E_INTERNAL, "QMP is not connected");
	return 0;
}

static int
qemu_pause(struct hv_vm *vm, int pause, struct cap_err *err)
{
	int r;

	if ((r = qmp_execute(vm->qmp, pause ? "stop" : "cont")) < 0)
		return cap_err_set(err, -r, E_INTERNAL, "QMP is not connected");
	/* Its STOP may come after a "cont" sent right behind it: counted,
	 * not a flag, or that STOP would look like QEMU's own pause. */
	if (pause)
		vm->stops_asked++;
	return 0;
}

static int
qemu_save(struct hv_vm *vm, int state_fd, int full, struct cap_err *err)
{
	int r;

	if (!full && !vm->ram_shared)
		return cap_err_set(err, ENOTSUP, E_INTERNAL, "the VM's RAM is "
		    "not a shared file");
	if (vm->saving || vm->restoring)
		return cap_err_set(err, EBUSY, E_CONFLICT, "a save or restore "
		    "is under way");
	/* The file first, then commands QMP runs in order; it is QEMU's
	 * once getfd ran. */
	if ((r = qmp_send_fd(vm->qmp, state_fd)) < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot hand QEMU the "
		    "state file: %s", strerror(-r));
	if (qmp_execute(vm->qmp, "stop") < 0)
		return cap_err_set(err, EPIPE, E_INTERNAL, "QMP is not "
		    "connected");
	vm->stops_asked++;
	/* The guest is stopped: no reason to pace the copy (QEMU's default
	 * is 128 MiB/s). */
	if (qmp_execute_args(vm->qmp, "migrate-set-capabilities",
	    qemu_migrate_caps(!full)) < 0 ||
	    qmp_execute_args(vm->qmp, "migrate-set-parameters",
	    json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40)) < 0 ||
	    qmp_execute_args(vm->qmp, "getfd", json_pack("{s:s}", "fdname",
	    QMP_STATE_FDNAME)) < 0 ||
	    qmp_execute_args(vm->qmp, "migrate", json_pack("{s:s}", "uri",
	    "fd:" QMP_STATE_FDNAME)) < 0) {
		/* Whatever got queued: the guest must not stay stopped. */
		qmp_execute(vm->qmp, "cont");
		return cap_err_set(err, EPIPE, E_INTERNAL, "QMP is not "
		    "connected");
	}
	vm->saving = 1;
	return 0;
}

static void
qemu_save_cancel(struct hv_vm *vm)
{
	if (!vm->saving)
		return;
	/* Before anything the caller sends next (a "cont"): a save left
	 * running would stop the guest when it completes. */
	vm->saving = 0;
	qmp_execute(vm->qmp, "migrate_cancel");
}

static void
qemu_kill(struct hv_vm *vm)
{
	vm->quitting = 1;
	if (!vm->exited && vm->pidfd >= 0)
		procid_signal(vm->pidfd, SIGKILL);
}

static pid_t
qemu_pid(const struct hv_vm *vm)
{
	return vm->pid;
}

static void
qemu_exe(const struct hv_vm *vm, dev_t *dev, ino_t *ino)
{
	*dev = vm->exe_dev;
	*ino = vm->exe_ino;
}

static void
qemu_detach(struct hv_vm *vm)
{
	if (vm == NULL)
		return;
	if (vm->exit_ev != NULL)
		event_free(vm->exit_ev);
	closep(&vm->pidfd);
	qmp_free(vm->qmp);
	/* The servers stay with QEMU and end when it does. */
	fsd_release(vm, 0);
	free(vm);
}

static void
qemu_free(struct hv_vm *vm)
{
	if (vm == NULL)
		return;
	if (!vm->exited && vm->pidfd >= 0) {
		/* Nobody will watch it any more: end it and reap it now. */
		procid_signal(vm->pidfd, SIGKILL);
		procid_wait(vm->pidfd);
	}
	vm->exited = 1;
	fsd_release(vm, 1);
	if (vm->exit_ev != NULL)
		event_free(vm->exit_ev);
	closep(&vm->pidfd);
	qmp_free(vm->qmp);
	free(vm);
}

const struct hv_ops qemu_ops = {
	.name = "qemu",
	.probe = qemu_probe,
	.check_kernel = qemuarch_check_kernel,
	.start = qemu_start,
	.adopt = qemu_adopt,
	.pause = qemu_pause,
	.save = qemu_save,
	.save_cancel = qemu_save_cancel,
	.quit = qemu_quit,
	.kill = qemu_kill,
	.pid = qemu_pid,
	.exe = qemu_exe,
	.free = qemu_free,
	.detach = qemu_detach,
};
