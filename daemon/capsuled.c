/*
 * capsuled.c — the daemon: settings, start-up, signals, the event loop.
 *
 * Signals: SIGTERM (systemctl stop or restart, an upgrade) lets go of the
 * VMs and exits; they keep running and the next capsuled takes them over.
 * SIGINT (Ctrl-C, cleanroom stopping its helper) stops every VM, then
 * exits. SIGHUP reads the configuration file again.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef __linux__
#include <systemd/sd-daemon.h>
#endif

#include "image.h"
#include "sandbox.h"
#include "imgimport.h"
#include "config.h"
#include "control.h"
#include "ctl.h"
#include "doctor.h"
#include "egress.h"
#include "hv.h"
#include "log.h"
#include "metrics.h"
#include "osdep.h"
#include "paths.h"
#include "peer.h"
#include "proto.h"
#include "util.h"
#include "vm.h"
#include "vmpool.h"
#include "vmsnap.h"
#include "vmadopt.h"

#define STATUS_EVERY_S	5

static struct {
	struct event_base	*base;
	int			 stopping;	/* SIGINT: VMs are stopping */
	int			 ready_fd;	/* --daemon: tell the parent */
	char			 config_path[PATH_MAX];
	int			 config_named;	/* --config: must exist */
	struct config		 flags;		/* what the command line set */
	struct config		 cur;		/* in force */
	char			 sock[PATH_MAX];
	int			 activated;	/* systemd handed us the socket */
	uint64_t		 watchdog_us;
	char			 status[128];
} d = { .ready_fd = -1 };

static void
usage(FILE *f)
{
	fprintf(f,
"usage: capsuled [--config FILE] [--socket PATH] [--socket-group GROUP]\n"
"                [--state-dir DIR] [--image-dir DIR] [--accel auto|kvm|tcg]\n"
"                [--log-level error|warn|info|debug] [--console-log-max MiB]\n"
"                [--request-timeout S] [--client-input-max MiB]\n"
"                [--metrics-listen ADDR] [--dns-server ADDR[:PORT]]\n"
"                [--daemon]\n"
"\n"
"Runs commands in hardware-isolated Linux microVMs, driven over a Unix\n"
"socket speaking newline-delimited JSON. Stays in the foreground (systemd,\n"
"launchd and cleanroom expect that) unless --daemon.\n"
"\n"
"  --config FILE     settings (default /etc/capsule/capsuled.conf as root,\n"
"                    else $XDG_CONFIG_HOME/capsule/capsuled.conf); flags win\n"
"  --socket PATH     control socket (default /run/capsule/capsuled.sock as\n"
"                    root, else $XDG_RUNTIME_DIR/capsule/capsuled.sock)\n"
"  --socket-group G  as root: the socket is mode 0660 and group G, whose\n"
"                    members may each use their own VMs\n"
"  --state-dir DIR   VMs' private dirs live in DIR/vms (default\n"
"                    /var/lib/capsule as root, else $XDG_STATE_HOME/capsule;\n"
"                    with only --socket, a dir of that socket's own in it);\n"
"                    it must be writable by capsuled's uid alone\n"
"  --image-dir DIR   where vmlinuz, initramfs.img, rootfs.ext4 are\n"
"  --accel A         auto (default): kvm when it can really run a guest,\n"
"                    else tcg\n"
"  --console-log-max MiB  keep each VM's console log under this size\n"
"                    (default 10; older output is dropped first)\n"
"  --request-timeout S  close a client whose request line stays\n"
"                    unfinished this long (default 30)\n"
"  --client-input-max MiB  unfinished input held for all clients\n"
"                    together (default 64); past it the client sending\n"
"                    more is closed\n"
"  --metrics-listen ADDR  serve Prometheus metrics at http://ADDR/metrics\n"
"                    (HOST:PORT, or unix:/PATH)\n"
"  --dns-server ADDR[:PORT]  resolve names for VMs in network mode allow\n"
"                    there (default: the host's resolver)\n"
"  --daemon          detach once listening, logging to DIR/capsuled.log\n"
"\n"
"SIGTERM leaves the VMs running for the next capsuled to take over;\n"
"SIGINT stops them first; SIGHUP re-reads the configuration file.\n");
}

/* Forks; the parent waits until the child listens, then exits with its
 * verdict, so `capsuled --daemon && capsule ping` works without races. */
static int
daemonize(const char *logpath)
{
	int pfd[2], fd;
	char ok = 0;
	pid_t pid;

	if (osdep_pipe(pfd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
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
	d.ready_fd = pfd[1];
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

/* A VM's owner passes through the state dir to the VM's run dir
 * (<state>/run/<id>), so it is searchable by all (0711), listable by
 * none but capsuled. Done once the rest of it has checked out. */
static int
open_state_dir(const char *dir, struct cap_err *err)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "%s: %s", dir,
		    strerror(errno));
	if ((st.st_mode & 0011) == 0011)
		return 0;
	if (chmod(dir, (st.st_mode & 07777) | 0011) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "chmod %s: %s", dir,
		    strerror(errno));
	log_info("state directory %s: VMs' owners may now pass through it to "
	    "their own run dirs (mode %04o)", dir,
	    (unsigned)((st.st_mode & 07777) | 0011));
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

static void
notify(const char *what)
{
#ifdef __linux__
	sd_notify(0, what);
#else
	(void)what;
#endif
}

static void
update_status(void)
{
	char s[128];

	snprintf(s, sizeof(s), "STATUS=%d VM(s): %d running, %d unresponsive",
	    vm_count(), vm_count_state(VM_RUNNING),
	    vm_count_state(VM_UNRESPONSIVE));
	if (strcmp(s, d.status) != 0) {
		snprintf(d.status, sizeof(d.status), "%s", s);
		notify(s);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	if (d.watchdog_us > 0)
		notify("WATCHDOG=1");
	update_status();
}

/* What can change without a restart takes effect; the rest is named. */
static void
apply(const struct config *c, int reloading)
{
	struct vm_limits l = {
		.default_vcpus = c->default_vcpus,
		.default_memory_mib = c->default_memory_mib,
		.console_max = c->console_log_max_mib * 1024 * 1024,
		.user_max_vms = c->user_max_vms,
		.user_max_vcpus = c->user_max_vcpus,
		.user_max_memory_mib = c->user_max_memory_mib,
		.user_max_disk_mib = c->user_max_disk_mib,
		.vm_cpu_quota = c->vm_cpu_quota,
		.vm_tasks_max = c->vm_tasks_max,
		.vm_memory_overhead_mib = c->vm_memory_overhead_mib,
		.templates = strcmp(c->templates, "on") == 0,
	};
	enum log_level level = LOG_LVL_INFO;
	static const struct { enum config_key k; size_t off, len; } fixed[] = {
#define F(k, f) { k, offsetof(struct config, f), \
	    sizeof(((struct config *)0)->f) }
		F(CK_SOCKET, socket), F(CK_SOCKET_GROUP, socket_group),
		F(CK_STATE_DIR, state_dir), F(CK_IMAGE_DIR, image_dir),
		F(CK_ACCEL, accel), F(CK_METRICS_LISTEN, metrics_listen),
		F(CK_DNS_SERVER, dns_server),
#undef F
	};

	log_parse_level(c->log_level, &level);
	log_init(level);
	peer_set_limits(c->client_input_max_mib * 1024 * 1024,
	    c->request_timeout * 1000);
	vm_set_limits(&l);
	if (!reloading)
		return;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (memcmp((const char *)c + fixed[i].off,
		    (const char *)&d.cur + fixed[i].off, fixed[i].len) != 0)
			log_warn("%s changed: it takes effect when capsuled "
			    "restarts", config_key_name(fixed[i].k));
}

/* The file, then the flags over it. */
static int
load_config(struct config *c, struct cap_err *err)
{
	int r;

	config_defaults(c);
	if ((r = config_load(d.config_path, d.config_named, c, err)) < 0)
		return r;
	config_merge(c, &d.flags);
	return 0;
}

static void
reload(void)
{
	struct config c;
	struct cap_err err;

	notify("RELOADING=1");
	if (load_config(&c, &err) < 0) {
		log_error("reload: %s; keeping the settings in force", err.msg);
	} else {
		apply(&c, 1);
		/* Bad lines are logged; the good ones apply. */
		vmpool_configure(c.pools, c.npools, d.config_path, 0, &err);
		/* Where things are stays as it was until a restart. */
		memcpy(c.socket, d.cur.socket, sizeof(c.socket));
		memcpy(c.state_dir, d.cur.state_dir, sizeof(c.state_dir));
		d.cur = c;
		log_info("reloaded %s", d.config_path);
	}
	notify("READY=1");
}

static void
all_gone(const char *vm_id, void *arg)
{
	if (vm_count() == 0) {
		log_info("all VMs stopped; exiting");
		event_base_loopexit(d.base, NULL);
	}
}

/* After detaching, the last words to exec clients get this long to go. */
static const struct timeval flush_tv = { 0, 200 * 1000 };

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGHUP) {
		reload();
		return;
	}
	notify("STOPPING=1");
	if (sig == SIGTERM) {
		/* Restart or upgrade: the VMs stay, the next daemon takes
		 * them over (a VM still starting is ended). */
		log_info("%s: leaving %d VM(s) running for the next capsuled",
		    strsignal((int)sig), vm_count());
		vmadopt_detach_all();
		event_base_loopexit(d.base, &flush_tv);
		return;
	}
	if (d.stopping) {
		log_warn("second %s: leaving the VMs still stopping as they "
		    "are", strsignal((int)sig));
		vmadopt_detach_all();
		event_base_loopbreak(d.base);
		return;
	}
	d.stopping = 1;
	log_info("%s: stopping %d VM(s)", strsignal((int)sig), vm_count());
	if (vm_stop_all(all_gone, NULL) == 0)
		event_base_loopexit(d.base, NULL);
}

/* The socket systemd handed us, if it did (and it is the right kind). */
static int
activated_socket(void)
{
#ifdef __linux__
	int n = sd_listen_fds(1);

	if (n < 1)
		return -1;
	if (n > 1 || sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1,
	    NULL, 0) <= 0) {
		log_error("socket activation: expected one listening Unix "
		    "stream socket, got %d fd(s)", n);
		return -2;
	}
	return SD_LISTEN_FDS_START;
#else
	return -1;
#endif
}

/* Where the state lives: the setting, else the default; a daemon on a
 * socket of its own (cleanroom starts one per sandbox) gets a state dir
 * of its own below the default one, so that they never meet. */
static int
state_dir_for(const struct config *c, char *out, size_t len,
    struct cap_err *err)
{
	char def[PATH_MAX], defsock[PATH_MAX];
	uint64_t h = UINT64_C(1469598103934665603);
	int r;

	if (c->state_dir[0] != '\0') {
		if (realpath(c->state_dir, out) == NULL)
			snprintf(out, len, "%s", c->state_dir);
		return 0;
	}
	if ((r = paths_default_state_dir(def, sizeof(def), err)) < 0)
		return r;
	if (c->socket[0] == '\0' || (ctl_default_socket(defsock,
	    sizeof(defsock), NULL) == 0 && strcmp(defsock, d.sock) == 0)) {
		snprintf(out, len, "%s", def);
		return 0;
	}
	for (const char *p = d.sock; *p; p++)	/* FNV-1a */
		h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
	if (util_mkdir_p(def, 0700, err) < 0)
		return -1;
	if (snprintf(out, len, "%s/sockets", def) >= (int)len ||
	    util_mkdir_p(out, 0700, err) < 0)
		return -1;
	snprintf(out, len, "%s/sockets/%016llx", def, (unsigned long long)h);
	return 0;
}

static int
parse_flags(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'C' },
		{ "socket", required_argument, NULL, 's' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "image-dir", required_argument, NULL, 'i' },
		{ "accel", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "console-log-max", required_argument, NULL, 'c' },
		{ "request-timeout", required_argument, NULL, 'r' },
		{ "client-input-max", required_argument, NULL, 'b' },
		{ "metrics-listen", required_argument, NULL, 'm' },
		{ "dns-server", required_argument, NULL, 'n' },
		{ "daemon", no_argument, NULL, 'D' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct { int opt; enum config_key k; const char *flag; }
	    map[] = {
		{ 's', CK_SOCKET, "--socket" },
		{ 'g', CK_SOCKET_GROUP, "--socket-group" },
		{ 'd', CK_STATE_DIR, "--state-dir" },
		{ 'i', CK_IMAGE_DIR, "--image-dir" },
		{ 'a', CK_ACCEL, "--accel" },
		{ 'l', CK_LOG_LEVEL, "--log-level" },
		{ 'c', CK_CONSOLE_LOG_MAX_MIB, "--console-log-max" },
		{ 'r', CK_REQUEST_TIMEOUT, "--request-timeout" },
		{ 'b', CK_CLIENT_INPUT_MAX_MIB, "--client-input-max" },
		{ 'm', CK_METRICS_LISTEN, "--metrics-listen" },
		{ 'n', CK_DNS_SERVER, "--dns-server" },
	};
	struct cap_err err;
	char abs[PATH_MAX];
	int c, detach = 0;

	config_defaults(&d.flags);
	d.flags.set = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const char *v = optarg;

		switch (c) {
		case 'C':
			snprintf(d.config_path, sizeof(d.config_path), "%s",
			    optarg);
			d.config_named = 1;
			continue;
		case 'D': detach = 1; continue;
		case 'f': continue;	/* the default; kept for old scripts */
		case 'h': usage(stdout); exit(0);
		case 'V': printf("capsuled %s\n", CAPSULE_VERSION); exit(0);
		case '?': usage(stderr); exit(2);
		}
		/* Relative paths on the command line mean the working dir. */
		if ((c == 's' || c == 'd' || c == 'i') && v[0] != '/' &&
		    getcwd(abs, sizeof(abs)) != NULL) {
			size_t n = strlen(abs);

			snprintf(abs + n, sizeof(abs) - n, "/%s", v);
			v = abs;
		}
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (map[i].opt == c && config_set(&d.flags, map[i].k,
			    v, map[i].flag, &err) < 0) {
				fprintf(stderr, "capsuled: %s\n", err.msg);
				exit(2);
			}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	return detach;
}

/* An image is kept while a running VM or a sandbox uses it. */
static int
image_in_use(const char *digest, uid_t uid)
{
	return vm_image_in_use(digest, uid) || sandbox_image_in_use(digest, uid);
}

/* The digest of the image a new sandbox is created with. */
static int
sandbox_image(uid_t uid, const char *ref, char digest[OCI_DIGEST_LEN + 1],
    struct cap_err *err)
{
	struct image_use u;
	int r;

	if ((r = image_resolve(uid, ref, &u, err)) < 0)
		return r;
	memcpy(digest, u.digest, OCI_DIGEST_LEN + 1);
	image_use_free(&u);
	return 0;
}

int
main(int argc, char *argv[])
{
	char logpath[PATH_MAX + 16];
	struct event *sigs[3], *tick;
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct control_cfg ccfg;
	struct doctor_env denv;
	enum hv_accel want = HV_ACCEL_AUTO;
	struct vm_env env;
	struct cap_err err;
	gid_t group = (gid_t)-1;
	int detach, afd;

	detach = parse_flags(argc, argv);
	if (!d.config_named && config_default_path(d.config_path,
	    sizeof(d.config_path), &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	if (load_config(&d.cur, &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	apply(&d.cur, 0);

	memset(&env, 0, sizeof(env));
	if (d.cur.socket[0] != '\0')
		snprintf(d.sock, sizeof(d.sock), "%s", d.cur.socket);
	else if (ctl_default_socket(d.sock, sizeof(d.sock), &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	if (state_dir_for(&d.cur, env.state_dir, sizeof(env.state_dir),
	    &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	if (d.cur.socket_group[0] != '\0') {
		struct group *g = getgrnam(d.cur.socket_group);

		if (geteuid() != 0) {
			fprintf(stderr, "capsuled: socket_group is for a "
			    "capsuled run by root\n");
			return 1;
		}
		if (g == NULL) {
			fprintf(stderr, "capsuled: socket_group: no group "
			    "\"%s\"\n", d.cur.socket_group);
			return 1;
		}
		group = g->gr_gid;
	}
	hv_accel_parse(d.cur.accel, &want);
	env.image_dir = d.cur.image_dir[0] ? d.cur.image_dir : NULL;
	if (util_mkdir_p(env.state_dir, 0711, &err) < 0 ||
	    check_state_dir(env.state_dir, &err) < 0) {
		fprintf(stderr, "capsuled: %s\n", err.msg);
		return 1;
	}
	snprintf(logpath, sizeof(logpath), "%s/capsuled.log", env.state_dir);
	if (detach && daemonize(logpath) < 0)
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

	if ((d.base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		return 1;
	}
	env.base = d.base;
	if (vm_init(&env, &err) < 0 || open_state_dir(env.state_dir,
	    &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	/* One daemon per state dir: the lock is held for the process's
	 * life, so a second capsuled can never touch a live one's VMs. */
	if (lock_state_dir(env.state_dir) < 0)
		return 1;
	/* Before the VMs are taken over: they need their images' defaults. */
	if (image_init(env.state_dir, image_in_use, &err) < 0 ||
	    sandbox_init(env.state_dir, vm_of_sandbox, sandbox_image, &err) < 0 ||
	    vmsnap_init(env.state_dir, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	imgimport_init(d.base);
	/* Before the VMs are taken over, so a bad address changes nothing. */
	if (egress_init(d.base, d.cur.dns_server, &err) < 0) {
		log_error("%s", err.msg);
		return 1;
	}
	if (d.cur.metrics_listen[0] != '\0' &&
	    metrics_listen(d.base, d.cur.metrics_listen, &err) < 0) {
		log_error("%s", err.msg);
		egress_fini();
		return 1;
	}
	vmadopt_all();
	if (vmpool_configure(d.cur.pools, d.cur.npools, d.config_path, 1,
	    &err) < 0) {
		log_error("%s", err.msg);
		metrics_close();
		egress_fini();
		return 1;
	}

	ccfg = (struct control_cfg){ d.base, env.hv, &env.caps,
	    doctor_report };
	if ((afd = activated_socket()) == -2) {
		metrics_close();
		egress_fini();
		return 1;
	}
	if (afd >= 0) {
		d.activated = 1;
		if (control_listen_fd(&ccfg, afd, &err) < 0) {
			log_error("%s", err.msg);
			metrics_close();
			egress_fini();
			return 1;
		}
	} else {
		char dir[PATH_MAX], *slash;

		snprintf(dir, sizeof(dir), "%s", d.sock);
		if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
			*slash = '\0';
			if (util_mkdir_p(dir, 0755, &err) < 0) {
				log_error("%s", err.msg);
				metrics_close();
				egress_fini();
				return 1;
			}
		}
		if (control_listen(&ccfg, d.sock, group, &err) < 0) {
			log_error("%s", err.msg);
			metrics_close();
			egress_fini();
			return 1;
		}
	}
	denv = (struct doctor_env){ env.hv, &env.caps, env.state_dir,
	    env.image_dir, d.activated ? NULL : d.sock };
	doctor_init(&denv);
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(d.base, signums[i], on_signal, NULL);
		event_add(sigs[i], NULL);
	}
#ifdef __linux__
	if (sd_watchdog_enabled(0, &d.watchdog_us) <= 0)
		d.watchdog_us = 0;
#endif
	{
		/* Twice per watchdog period, or now and then for STATUS=. */
		uint64_t us = d.watchdog_us > 0 ? d.watchdog_us / 2 :
		    STATUS_EVERY_S * 1000000ULL;
		struct timeval tv = { (time_t)(us / 1000000),
		    (suseconds_t)(us % 1000000) };

		tick = event_new(d.base, -1, EV_PERSIST, tick_cb, NULL);
		event_add(tick, &tv);
	}
	log_info("listening on %s (state in %s)", d.activated ?
	    "a socket systemd handed over" : d.sock, env.state_dir);
	notify("READY=1");
	update_status();
	if (d.ready_fd >= 0) {
		char ok = 1;

		if (write(d.ready_fd, &ok, 1) != 1)
			log_warn("cannot tell the parent we are ready");
		close(d.ready_fd);
	}

	event_base_dispatch(d.base);

	metrics_close();
	/* Imports in progress end first: their replies go nowhere now. */
	imgimport_shutdown();
	control_close(d.activated ? NULL : d.sock);
	image_shutdown();
	sandbox_shutdown();
	vmsnap_shutdown();
	vmpool_clear();
	egress_fini();
	event_free(tick);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_base_free(d.base);
	return 0;
}
