/*
 * qemu.c — the QEMU backend: qemu-system-<arch> with the microvm machine.
 *
 * Run dir layout (what a restarted daemon would need to re-adopt a VM):
 *   agent.sock    listening socket QEMU serves the agent's virtio-serial
 *                 port on (capsuled connects to it; so could a successor)
 *   qmp.sock      QMP monitor, listening
 *   qemu.pid      QEMU's pid file
 *   qemu.log      QEMU's own stderr
 *   rootfs.qcow2  the VM's writable layer over the read-only base image
 * plus, where the daemon says (in the run dir too), a listening socket for
 * each raw serial port the caller asked for.
 *
 * Every socket is created by capsuled and handed to QEMU as a file
 * descriptor, and capsuled connects to the agent socket before QEMU even
 * runs, so no byte the guest sends can be lost to a connection race.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv.h"
#include "proto.h"
#include "util.h"

#define QEMU_ARGS_MAX	(64 + 4 * HV_MAX_SERIAL_PORTS)
/* QEMU's fds for the sockets capsuled hands it: the agent's, QMP's, then
 * one per raw serial port. */
#define QEMU_AGENT_FD	3
#define QEMU_QMP_FD	4
#define QEMU_PORT_FD(i)	(5 + (i))
#define QEMU_NFDS	(2 + HV_MAX_SERIAL_PORTS)

struct hv_vm {
	pid_t	pid;
	int	qmp_fd;		/* connected once quit is asked for */
	char	run_dir[PATH_MAX];
	char	*ports[HV_MAX_SERIAL_PORTS];	/* socket paths to remove */
	unsigned nports;
};

static char qemu_bin[PATH_MAX];
static char qemu_img[PATH_MAX];

static int
run_path(const char *dir, const char *name, char *out, size_t len)
{
	if (snprintf(out, len, "%s/%s", dir, name) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

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

/* Runs argv to completion; the start of its output goes into out (may be
 * NULL) and into the error message if it fails.
 * Synchronous: used at start-up and for qemu-img, which takes milliseconds. */
static int
run_sync(char *const argv[], char *out, size_t outlen, struct cap_err *err)
{
	char buf[1024], sink[4096];
	int pfd[2], st;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "pipe: %s",
		    strerror(errno));
	if ((pid = fork()) < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return cap_err_set(err, errno, E_INTERNAL, "fork: %s",
		    strerror(errno));
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	/* Read to the end (a full pipe would block the child), keeping what
	 * fits: that is the text an error message needs. */
	while ((n = read(pfd[0], got < sizeof(buf) - 1 ? buf + got : sink,
	    got < sizeof(buf) - 1 ? sizeof(buf) - 1 - got : sizeof(sink))) > 0 ||
	    (n < 0 && errno == EINTR))
		if (n > 0 && got < sizeof(buf) - 1)
			got += (size_t)n;
	close(pfd[0]);
	while (got > 0 && buf[got - 1] == '\n')
		got--;
	buf[got] = '\0';
	if (out != NULL)
		snprintf(out, outlen, "%s", buf);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cap_err_set(err, EIO, E_INTERNAL, "%s failed%s%.400s",
		    argv[0], buf[0] ? ": " : "", buf);
	return 0;
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

static int
qemu_probe(enum hv_accel want, struct hv_caps *caps, struct cap_err *err)
{
	char out[512], *argv[] = { qemu_bin, "--version", NULL };
	const char *env = getenv("CAPSULE_QEMU");
	struct cap_err kerr;
	int r;

	memset(caps, 0, sizeof(*caps));
	if (env != NULL && env[0] == '/')
		snprintf(qemu_bin, sizeof(qemu_bin), "%s", env);
	else if (find_program("qemu-system-x86_64", qemu_bin,
	    sizeof(qemu_bin)) < 0)
		return cap_err_set(err, ENOENT, E_UNAVAILABLE,
		    "qemu-system-x86_64 not found in PATH; install "
		    "qemu-system-x86");
	if (find_program("qemu-img", qemu_img, sizeof(qemu_img)) < 0)
		return cap_err_set(err, ENOENT, E_UNAVAILABLE,
		    "qemu-img not found in PATH; install qemu-utils");
	if ((r = run_sync(argv, out, sizeof(out), err)) < 0)
		return r;
	out[strcspn(out, "\n")] = '\0';
	if (strncmp(out, "QEMU emulator version ", 22) == 0)
		snprintf(caps->version, sizeof(caps->version), "QEMU %.50s",
		    out + 22);
	else
		snprintf(caps->version, sizeof(caps->version), "%.63s", out);
	caps->tsc_khz = host_tsc_khz();

	if (want == HV_ACCEL_HVF)
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE,
		    "accel hvf is for macOS; this backend offers kvm and tcg");
	if (want == HV_ACCEL_TCG) {
		caps->accel = HV_ACCEL_TCG;
		snprintf(caps->accel_why, sizeof(caps->accel_why),
		    "tcg was requested");
		return 0;
	}
	r = kvmprobe_run("/dev/kvm", &kerr);
	if (r == 0) {
		caps->accel = HV_ACCEL_KVM;
		return 0;
	}
	if (want == HV_ACCEL_KVM)
		return cap_err_set(err, -r, E_UNAVAILABLE,
		    "accel kvm was requested but %s", kerr.msg);
	caps->accel = HV_ACCEL_TCG;
	snprintf(caps->accel_why, sizeof(caps->accel_why),
	    "using tcg (software emulation): %.400s", kerr.msg);
	return 0;
}

/* QEMU option values escape ',' by doubling it. */
static char *
qemu_opt_path(const char *prefix, const char *path)
{
	size_t n = strlen(prefix), m = strlen(path);
	char *s = malloc(n + 2 * m + 1), *p;

	if (s == NULL)
		return NULL;
	memcpy(s, prefix, n);
	p = s + n;
	for (size_t i = 0; i < m; i++) {
		*p++ = path[i];
		if (path[i] == ',')
			*p++ = ',';
	}
	*p = '\0';
	return s;
}

static int
make_overlay(const struct hv_vm_config *cfg, const char *overlay,
    struct cap_err *err)
{
	char *argv[] = { qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw",
	    "-b", (char *)cfg->rootfs, (char *)overlay, NULL };
	int r;

	if ((r = run_sync(argv, NULL, 0, err)) < 0)
		return cap_err_wrap(err, "cannot create the VM's disk layer");
	return 0;
}

/* fds[i] becomes QEMU's fd 3 + i. */
static void
child_exec(char *const argv[], const int *fds, int nfds, const char *log)
{
	int fd, moved[QEMU_NFDS];
	sigset_t none;

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
	if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	/* Move the sockets to fixed numbers (out of the way first, so that
	 * none overwrites another), then drop everything else. */
	for (int i = 0; i < nfds; i++)
		if ((moved[i] = fcntl(fds[i], F_DUPFD, 3 + nfds)) < 0)
			_exit(126);
	for (int i = 0; i < nfds; i++) {
		if (dup2(moved[i], 3 + i) < 0)
			_exit(126);
		fcntl(3 + i, F_SETFL, 0);
	}
	if (close_range(3 + nfds, ~0U, 0) < 0)
		for (fd = 3 + nfds; fd < 65536; fd++)
			close(fd);
	execv(argv[0], argv);
	dprintf(2, "capsuled: cannot execute %s: %s\n", argv[0],
	    strerror(errno));
	_exit(127);
}

/* Removes the raw serial ports' sockets (ours alone: QEMU was handed them
 * as fds) and frees the VM. */
static void
qemu_free(struct hv_vm *vm)
{
	for (unsigned i = 0; i < vm->nports; i++) {
		unlink(vm->ports[i]);
		free(vm->ports[i]);
	}
	free(vm);
}

static int
qemu_start(const struct hv_vm_config *cfg, struct hv_vm **out, pid_t *pidp,
    int *agent_out, struct cap_err *err)
{
	char overlay[PATH_MAX], agent_sock[PATH_MAX], qmp_sock[PATH_MAX];
	char pidfile[PATH_MAX], log[PATH_MAX], mem[32], smp[16], runas[32];
	char *con = NULL, *drive = NULL, *argv[QEMU_ARGS_MAX];
	char port_chr[HV_MAX_SERIAL_PORTS][64];
	char port_dev[HV_MAX_SERIAL_PORTS][128];
	int agent_l = -1, qmp_l = -1, agent_c = -1, n = 0, r;
	int fds[QEMU_NFDS], nfds = 0, made_overlay = 0;
	struct hv_vm *vm;
	unsigned i;
	pid_t pid;

	if (run_path(cfg->run_dir, "rootfs.qcow2", overlay, sizeof(overlay)) ||
	    run_path(cfg->run_dir, "agent.sock", agent_sock,
	    sizeof(agent_sock)) ||
	    run_path(cfg->run_dir, "qmp.sock", qmp_sock, sizeof(qmp_sock)) ||
	    run_path(cfg->run_dir, "qemu.pid", pidfile, sizeof(pidfile)) ||
	    run_path(cfg->run_dir, "qemu.log", log, sizeof(log)))
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "run dir path %s is too long", cfg->run_dir);
	if (cfg->nports > HV_MAX_SERIAL_PORTS)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "%u serial ports; the limit is %d", cfg->nports,
		    HV_MAX_SERIAL_PORTS);
	for (i = 0; i < cfg->nports; i++)
		if (snprintf(port_dev[i], sizeof(port_dev[i]),
		    "virtserialport,chardev=port%u,name=%s", i,
		    cfg->ports[i].name) >= (int)sizeof(port_dev[i]) ||
		    strchr(cfg->ports[i].name, ',') != NULL)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "serial port name %.80s cannot go to QEMU",
			    cfg->ports[i].name);
	if ((vm = calloc(1, sizeof(*vm))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	vm->qmp_fd = -1;
	snprintf(vm->run_dir, sizeof(vm->run_dir), "%s", cfg->run_dir);

	if ((r = make_overlay(cfg, overlay, err)) < 0)
		goto fail;
	made_overlay = 1;
	if ((agent_l = util_listen_unix(agent_sock, 0600, err)) < 0 ||
	    (qmp_l = util_listen_unix(qmp_sock, 0600, err)) < 0) {
		r = agent_l < 0 ? agent_l : qmp_l;
		goto fail;
	}
	fds[0] = agent_l;
	fds[1] = qmp_l;
	nfds = 2;
	/* A leftover socket of a VM that is gone: vm.c made sure nothing
	 * answers there any more. */
	for (i = 0; i < cfg->nports; i++) {
		unlink(cfg->ports[i].path);
		if ((r = util_listen_unix(cfg->ports[i].path, 0600, err)) < 0)
			goto fail;
		fds[nfds++] = r;
		if ((vm->ports[i] = strdup(cfg->ports[i].path)) == NULL) {
			unlink(cfg->ports[i].path);
			r = cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
			goto fail;
		}
		vm->nports++;
		snprintf(port_chr[i], sizeof(port_chr[i]),
		    "socket,id=port%u,fd=%d,server=on,wait=off", i,
		    QEMU_PORT_FD(i));
	}
	/* Queued in the backlog now; QEMU accepts it at start-up (wait=on). */
	if ((agent_c = util_connect_unix(agent_sock, err)) < 0) {
		r = agent_c;
		goto fail;
	}
	con = qemu_opt_path("file,id=con,path=", cfg->console_log);
	drive = qemu_opt_path("if=none,id=root,format=qcow2,discard=unmap,"
	    "file=", overlay);
	if (con == NULL || drive == NULL) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto fail;
	}
	snprintf(mem, sizeof(mem), "%llu",
	    (unsigned long long)cfg->memory_mib);
	snprintf(smp, sizeof(smp), "%u", cfg->vcpus);

#define ARG(s)	(argv[n++] = (char *)(s))
	ARG(qemu_bin);
	ARG("-name"); ARG("capsule");
	ARG("-machine"); ARG("microvm");
	if (cfg->accel == HV_ACCEL_KVM) {
		ARG("-accel"); ARG("kvm");
		ARG("-cpu"); ARG("host");
	} else {
		ARG("-accel"); ARG("tcg");
	}
	ARG("-nodefaults"); ARG("-no-user-config"); ARG("-display"); ARG("none");
	ARG("-no-reboot");
	ARG("-m"); ARG(mem);
	ARG("-smp"); ARG(smp);
	ARG("-kernel"); ARG(cfg->kernel);
	ARG("-initrd"); ARG(cfg->initrd);
	ARG("-append"); ARG(cfg->cmdline);
	ARG("-chardev"); ARG(con);
	ARG("-serial"); ARG("chardev:con");
	ARG("-chardev"); ARG("socket,id=agent,fd=3,server=on,wait=on");
	ARG("-device"); ARG("virtio-serial-device");
	ARG("-device"); ARG("virtserialport,chardev=agent,name=" AGENT_PORT_NAME);
	/* Raw ports: QEMU accepts a new connection whenever the last one
	 * closes; the guest reads EOF while nobody is connected. */
	for (i = 0; i < cfg->nports; i++) {
		ARG("-chardev"); ARG(port_chr[i]);
		ARG("-device"); ARG(port_dev[i]);
	}
	ARG("-chardev"); ARG("socket,id=qmp,fd=4,server=on,wait=off");
	ARG("-mon"); ARG("chardev=qmp,mode=control");
	ARG("-drive"); ARG(drive);
	ARG("-device"); ARG("virtio-blk-device,drive=root");
	ARG("-device"); ARG("virtio-rng-device");
	ARG("-pidfile"); ARG(pidfile);
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
		child_exec(argv, fds, nfds, log);
	for (int k = 0; k < nfds; k++)
		close(fds[k]);
	free(con);
	free(drive);
	vm->pid = pid;
	*out = vm;
	*pidp = pid;
	*agent_out = agent_c;
	return 0;
fail:
	if (agent_c >= 0)
		close(agent_c);
	if (agent_l >= 0)
		close(agent_l);
	if (qmp_l >= 0)
		close(qmp_l);
	for (int k = 2; k < nfds; k++)
		close(fds[k]);
	free(con);
	free(drive);
	/* Only what this call made: the run dir may hold others' files. */
	if (made_overlay)
		unlink(overlay);
	if (agent_l >= 0)
		unlink(agent_sock);
	if (qmp_l >= 0)
		unlink(qmp_sock);
	qemu_free(vm);
	return r;
}

static int
qemu_quit(struct hv_vm *vm, struct cap_err *err)
{
	static const char cmds[] = "{\"execute\":\"qmp_capabilities\"}\n"
	    "{\"execute\":\"quit\"}\n";
	char path[PATH_MAX];

	if (vm->qmp_fd >= 0)
		return 0;
	if (run_path(vm->run_dir, "qmp.sock", path, sizeof(path)) < 0)
		return cap_err_set(err, ENAMETOOLONG, E_INTERNAL, "path");
	if ((vm->qmp_fd = util_connect_unix(path, err)) < 0)
		return vm->qmp_fd;
	/* QMP reads commands in order after its greeting, so there is no
	 * need to wait for the greeting or the replies: QEMU is leaving. */
	if (write(vm->qmp_fd, cmds, sizeof(cmds) - 1) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "QMP: %s",
		    strerror(errno));
	return 0;
}

static void
qemu_kill(struct hv_vm *vm)
{
	if (vm->pid > 0)
		kill(vm->pid, SIGKILL);
}

static void
qemu_forget(const char *run_dir)
{
	static const char *const files[] = { "rootfs.qcow2", "agent.sock",
	    "qmp.sock", "qemu.pid", "qemu.log" };
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (run_path(run_dir, files[i], path, sizeof(path)) == 0)
			unlink(path);
}

static void
qemu_cleanup(struct hv_vm *vm)
{
	if (vm->qmp_fd >= 0)
		close(vm->qmp_fd);
	qemu_forget(vm->run_dir);
	qemu_free(vm);
}

static void
qemu_log_tail(struct hv_vm *vm, char *buf, size_t len)
{
	char path[PATH_MAX];

	char *p, *q, *line;

	buf[0] = '\0';
	if (run_path(vm->run_dir, "qemu.log", path, sizeof(path)) == 0)
		util_file_tail(path, buf, len);
	/* Keep QEMU's errors, drop its "info:" chatter; one line. */
	for (p = q = buf; (line = strsep(&p, "\n")) != NULL;) {
		size_t n = strlen(line);

		if (n == 0 || strstr(line, ": info: ") != NULL)
			continue;
		if (q != buf)
			*q++ = ' ';
		memmove(q, line, n);
		q += n;
	}
	*q = '\0';
}

const struct hv_ops qemu_ops = {
	.name = "qemu",
	.probe = qemu_probe,
	.start = qemu_start,
	.quit = qemu_quit,
	.kill = qemu_kill,
	.cleanup = qemu_cleanup,
	.forget = qemu_forget,
	.log_tail = qemu_log_tail,
};
