/*
 * capsuled.c — the daemon: flags, start-up, signals, the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef __linux__
#include <systemd/sd-daemon.h>
#endif

#include "control.h"
#include "ctl.h"
#include "hv.h"
#include "log.h"
#include "paths.h"
#include "peer.h"
#include "proto.h"
#include "util.h"
#include "vm.h"

#define CONSOLE_DEFAULT_MIB	10	/* each VM's console log cap */
#define CONSOLE_MAX_MIB		65536

static struct event_base *base;
static int stopping;
static int ready_fd = -1;	/* daemonized: tell the parent we listen */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: capsuled [--socket PATH] [--state-dir DIR] [--image-dir DIR]\n"
"                [--accel auto|kvm|tcg] [--log-level error|warn|info|debug]\n"
"                [--console-log-max MiB] [--request-timeout S]\n"
"                [--client-input-max MiB] [--foreground]\n"
"\n"
"Runs commands in hardware-isolated Linux microVMs, driven over a Unix\n"
"socket speaking newline-delimited JSON.\n"
"\n"
"  --socket PATH     control socket (default /run/capsule/capsuled.sock as\n"
"                    root, else $XDG_RUNTIME_DIR/capsule/capsuled.sock)\n"
"  --state-dir DIR   VMs' private dirs live in DIR/vms (default\n"
"                    /var/lib/capsule as root, else $XDG_STATE_HOME/capsule);\n"
"                    it must be writable by capsuled's uid alone\n"
"  --image-dir DIR   where vmlinuz, initramfs.img, rootfs.ext4 are\n"
"  --accel A         auto (default): kvm when it can really run a guest,\n"
"                    else tcg\n"
"  --console-log-max MiB  keep each VM's console log under this size\n"
"                    (default %d; older output is dropped first)\n"
"  --request-timeout S  close a client whose request line stays\n"
"                    unfinished this long (default 30)\n"
"  --client-input-max MiB  unfinished input held for all clients\n"
"                    together (default 64); past it the client sending\n"
"                    more is closed\n"
"  --foreground      stay in the foreground, log to stderr (for systemd,\n"
"                    launchd and tests); otherwise capsuled detaches once\n"
"                    it is listening and logs to DIR/capsuled.log\n",
	    CONSOLE_DEFAULT_MIB);
}

static void
all_gone(const char *vm_id, void *arg)
{
	if (vm_count() == 0) {
		log_info("all VMs stopped; exiting");
		event_base_loopexit(base, NULL);
	}
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (stopping) {
		log_warn("second %s: exiting now", strsignal((int)sig));
		event_base_loopbreak(base);
		return;
	}
	stopping = 1;
	log_info("%s: stopping %d VM(s)", strsignal((int)sig), vm_count());
#ifdef __linux__
	sd_notify(0, "STOPPING=1");
#endif
	if (vm_stop_all(all_gone, NULL) == 0)
		event_base_loopexit(base, NULL);
}

/* Forks; the parent waits until the child listens, then exits with its
 * verdict, so `capsuled && capsule ping` works without races. */
static int
daemonize(const char *logpath)
{
	int pfd[2], fd;
	char ok = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		perror("capsuled: fork");
		return -1;
	}
	if (pid > 0) {
		close(pfd[1]);
		if (read(pfd[0], &ok, 1) != 1 || ok != 1) {
			fprintf(stderr, "capsuled: failed to start; see %s\n",
			    logpath);
			_exit(1);
		}
		_exit(0);
	}
	close(pfd[0]);
	setsid();
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		close(fd);
	}
	if ((fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) >= 0) {
		dup2(fd, 2);
		close(fd);
	}
	ready_fd = pfd[1];
	return 0;
}

/* Every exec session holds a socket; the default soft limit of 1024 would
 * cap a busy daemon long before the hard limit does. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open file limit: %s",
			    strerror(errno));
	}
}

/* VM records and private dirs live here: nobody else may be able to
 * write to it, or they could plant records and files for us to act on. */
static int
check_state_dir(const char *dir, struct cap_err *err)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return cap_err_set(err, errno, E_INVALID_ARGUMENT,
		    "state directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cap_err_set(err, ENOTDIR, E_INVALID_ARGUMENT,
		    "state directory %s is not a directory", dir);
	if (st.st_uid != geteuid() || (st.st_mode & 0022) != 0)
		return cap_err_set(err, EPERM, E_INVALID_ARGUMENT,
		    "state directory %s must belong to uid %u and be writable "
		    "by it alone (it is uid %u, mode %04o)", dir,
		    (unsigned)geteuid(), (unsigned)st.st_uid,
		    (unsigned)(st.st_mode & 07777));
	return 0;
}

static int
parse_uint(const char *s, unsigned long lo, unsigned long hi,
    unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' ||
	    v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int
lock_state_dir(const char *dir)
{
	char path[PATH_MAX + 16];
	int fd;

	snprintf(path, sizeof(path), "%s/capsuled.lock", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600)) < 0) {
		log_error("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		log_error("another capsuled is already using the state "
		    "directory %s", dir);
		close(fd);
		return -1;
	}
	return fd;	/* kept open: the lock lives as long as we do */
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "image-dir", required_argument, NULL, 'i' },
		{ "accel", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "console-log-max", required_argument, NULL, 'c' },
		{ "request-timeout", required_argument, NULL, 'r' },
		{ "client-input-max", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char sock[PATH_MAX] = "", logpath[PATH_MAX + 16], sockdir[PATH_MAX];
	const char *sock_arg = NULL, *state_arg = NULL, *image_arg = NULL;
	enum log_level level = LOG_LVL_INFO;
	enum hv_accel want = HV_ACCEL_AUTO;
	struct event *sigs[3];
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct vm_env env;
	struct cap_err err;
	uint64_t console_max = CONSOLE_DEFAULT_MIB * 1024 * 1024;
	size_t input_max = PEER_INPUT_MAX;
	unsigned partial_ms = PEER_PARTIAL_MS;
	unsigned long v;
	int c, foreground = 0;

	while ((c = getopt_long(argc, argv, "s:d:i:a:l:fc:r:b:hV", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'r':
			if (parse_uint(optarg, 1, 3600, &v) < 0) {
				fprintf(stderr, "capsuled: --request-timeout "
				    "takes seconds from 1 to 3600, not \"%s\"\n",
				    optarg);
				return 2;
			}
			partial_ms = (unsigned)v * 1000;
			break;
		case 'b':
			if (parse_uint(optarg, 1, 65536, &v) < 0) {
				fprintf(stderr, "capsuled: --client-input-max "
				    "takes MiB from 1 to 65536, not \"%s\"\n",
				    optarg);
				return 2;
			}
			input_max = (size_t)v * 1024 * 1024;
			break;
		case 'c':
			if (parse_uint(optarg, 1, CONSOLE_MAX_MIB, &v) < 0) {
				fprintf(stderr, "capsuled: --console-log-max "
				    "takes a size in MiB from 1 to %d, not "
				    "\"%s\"\n", CONSOLE_MAX_MIB, optarg);
				return 2;
			}
			console_max = (uint64_t)v * 1024 * 1024;
			break;
		case 's': sock_arg = optarg; break;
		case 'd': state_arg = optarg; break;
		case 'i': image_arg = optarg; break;
		case 'f': foreground = 1; break;
		case 'a':
			if (hv_accel_parse(optarg, &want) < 0) {
				fprintf(stderr, "capsuled: --accel takes auto, "
				    "kvm or tcg, not \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'l':
			if (log_parse_level(optarg, &level) < 0) {
				fprintf(stderr, "capsuled: --log-level takes "
				    "error, warn, info or debug\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("capsuled %s\n", CAPSULE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init(level);
	peer_set_limits(input_max, partial_ms);

	memset(&env, 0, sizeof(env));
	if (sock_arg != NULL)
		snprintf(sock, sizeof(sock), "%s", sock_arg);
	else if (ctl_default_socket(sock, sizeof(sock), &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	if (state_arg != NULL) {
		if (realpath(state_arg, env.state_dir) == NULL &&
		    snprintf(env.state_dir, sizeof(env.state_dir), "%s",
		    state_arg) < 0)
			return 1;
	} else if (paths_default_state_dir(env.state_dir,
	    sizeof(env.state_dir), &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	if (env.state_dir[0] != '/') {
		fprintf(stderr, "capsuled: --state-dir must be absolute\n");
		return 2;
	}
	env.image_dir = image_arg;
	env.console_max = console_max;
	if (util_mkdir_p(env.state_dir, 0700, &err) < 0 ||
	    check_state_dir(env.state_dir, &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	snprintf(logpath, sizeof(logpath), "%s/capsuled.log", env.state_dir);
	if (!foreground && daemonize(logpath) < 0)
		return 1;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if ((env.hv = hv_default()) == NULL) {
		log_error("no hypervisor backend is available on this platform");
		return 1;
	}
	if (env.hv->probe(want, &env.caps, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	log_info("capsuled %s: backend %s (%s), accel %s%s%s", CAPSULE_VERSION,
	    env.hv->name, env.caps.version, hv_accel_name(env.caps.accel),
	    env.caps.accel_why[0] ? " — " : "", env.caps.accel_why);

	if ((base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		return 1;
	}
	env.base = base;
	if (vm_init(&env, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	/* One daemon per state dir: the lock is held for the process's
	 * life, so a second capsuled can never reap a live one's VMs. */
	if (lock_state_dir(env.state_dir) < 0)
		return 1;
	vm_reap_orphans();

	snprintf(sockdir, sizeof(sockdir), "%s", sock);
	if (strrchr(sockdir, '/') != NULL && strrchr(sockdir, '/') != sockdir) {
		*strrchr(sockdir, '/') = '\0';
		if (util_mkdir_p(sockdir, 0755, &err) < 0) {
			log_error("%s", err.msg);
			return 1;
		}
	}
	if (control_listen(base, sock, env.hv, &env.caps, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(base, signums[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}
	log_info("listening on %s (state in %s)", sock, env.state_dir);
#ifdef __linux__
	sd_notify(0, "READY=1");
#endif
	if (ready_fd >= 0) {
		char ok = 1;

		if (write(ready_fd, &ok, 1) != 1)
			log_warn("cannot tell the parent we are ready");
		close(ready_fd);
	}

	event_base_dispatch(base);

	control_close(sock);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_base_free(base);
	return 0;
}
