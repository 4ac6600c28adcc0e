/*
 * init.c — bringing the guest up as PID 1 of the initramfs: early mounts,
 * kernel modules, switching to the ext4 root, late mounts and finding the
 * agent's virtio-serial port.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "proto.h"

#define INIT_HOSTNAME	"capsule"
#define INIT_CMDLINE_MAX 4096
#define INIT_PARAMS_MAX	1024

static void
init_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int
init_mount(const char *src, const char *dst, const char *type,
    unsigned long flags, const char *opts)
{
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		agent_log("mkdir %s: %s", dst, strerror(errno));
	if (mount(src, dst, type, flags, opts) < 0) {
		int r = -errno;

		agent_log("mount %s on %s: %s", type ? type : src, dst,
		    strerror(-r));
		return r;
	}
	return 0;
}

/* The kernel started us without fds 0-2 (the initramfs has no
 * /dev/console node), so the first open() lands on fd 0. */
static int
init_console(void)
{
	int fd, i;

	if ((fd = open("/dev/console", O_RDWR | O_NOCTTY)) < 0 &&
	    (fd = open("/dev/null", O_RDWR)) < 0)
		return -errno;
	for (i = 0; i < 3; i++)
		if (fd != i && dup2(fd, i) < 0)
			return -errno;
	if (fd > 2)
		close(fd);
	return 0;
}

int
init_early(void)
{
	int r;

	if (mkdir("/dev", 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 &&
	    errno != EBUSY)
		return -errno;
	if ((r = init_console()) < 0)
		return r;
	if ((r = init_mount("proc", "/proc", "proc",
	    MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
		return r;
	if ((r = init_mount("sysfs", "/sys", "sysfs",
	    MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
		return r;
	return 0;
}

int
init_read_file(const char *path, char *buf, size_t cap)
{
	size_t len = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	while (len + 1 < cap) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (int)len;
}

/* Value of `key=` on the kernel command line, or -ENOENT. */
int
init_cmdline(const char *key, char *out, size_t cap)
{
	char buf[INIT_CMDLINE_MAX], *tok, *save = NULL;
	size_t k = strlen(key);

	if (init_read_file("/proc/cmdline", buf, sizeof(buf)) < 0)
		return -ENOENT;
	for (tok = strtok_r(buf, " \t\n", &save); tok;
	    tok = strtok_r(NULL, " \t\n", &save)) {
		if (strncmp(tok, key, k) == 0 && tok[k] == '=') {
			if (strlen(tok + k + 1) >= cap)
				return -ENAMETOOLONG;
			strcpy(out, tok + k + 1);
			return 0;
		}
	}
	return -ENOENT;
}

/* Module options given as `module.param=value` on the kernel command line,
 * which the kernel leaves to modprobe for loadable modules. */
static void
init_module_params(const char *path, char *out, size_t cap)
{
	char buf[INIT_CMDLINE_MAX], name[64], *tok, *save = NULL;
	const char *base = strrchr(path, '/');
	size_t n = 0, i;

	out[0] = '\0';
	base = base ? base + 1 : path;
	for (i = 0; base[i] && base[i] != '.' && i + 1 < sizeof(name); i++)
		name[i] = base[i] == '-' ? '_' : base[i];
	name[i] = '\0';
	if (init_read_file("/proc/cmdline", buf, sizeof(buf)) < 0)
		return;
	for (tok = strtok_r(buf, " \t\n", &save); tok;
	    tok = strtok_r(NULL, " \t\n", &save)) {
		size_t tl;

		for (i = 0; name[i] && (tok[i] == name[i] ||
		    (tok[i] == '-' && name[i] == '_')); i++)
			;
		if (name[i] != '\0' || tok[i] != '.' || tok[i + 1] == '\0')
			continue;
		tl = strlen(tok + i + 1);
		if (n + tl + 2 > cap)
			break;
		if (n > 0)
			out[n++] = ' ';
		memcpy(out + n, tok + i + 1, tl + 1);
		n += tl;
	}
}

/* Loads the modules named in `list`, in order. A module that fails is
 * logged and skipped: the kernel may have the driver built in. */
int
init_modules(const char *list)
{
	char buf[8192], path[512], params[INIT_PARAMS_MAX];
	char *line, *save = NULL;
	int r;

	if ((r = init_read_file(list, buf, sizeof(buf))) < 0) {
		if (r != -ENOENT)
			agent_log("read %s: %s", list, strerror(-r));
		return r;
	}
	for (line = strtok_r(buf, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save)) {
		size_t n;
		int fd;

		while (*line == ' ' || *line == '\t' || *line == '/')
			line++;
		n = strlen(line);
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' ||
		    line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (snprintf(path, sizeof(path), "/%s", line) >=
		    (int)sizeof(path)) {
			agent_log("module path too long: %.64s...", line);
			continue;
		}
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			agent_log("open %s: %s", path, strerror(errno));
			continue;
		}
		init_module_params(path, params, sizeof(params));
		if (syscall(SYS_finit_module, fd, params, 0) < 0 &&
		    errno != EEXIST)
			agent_log("load %s: %s", path, strerror(errno));
		close(fd);
	}
	return 0;
}

/* The virtio disk whose serial is `serial`: "/dev/vdX" into dev. */
static int
init_find_disk(const char *serial, char *dev, size_t cap)
{
	char path[300], buf[64];
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int r = -ENOENT;

	if ((dir = opendir("/sys/block")) == NULL)
		return -errno;
	while ((d = readdir(dir)) != NULL) {
		if (strncmp(d->d_name, "vd", 2) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/serial", d->d_name);
		if (init_read_file(path, buf, sizeof(buf)) < 0)
			continue;
		buf[strcspn(buf, "\n")] = '\0';
		if (snprintf(dev, cap, "/dev/%s", d->d_name) >= (int)cap)
			continue;
		if (strcmp(buf, serial) == 0 && stat(dev, &st) == 0 &&
		    S_ISBLK(st.st_mode)) {
			r = 0;
			break;
		}
	}
	closedir(dir);
	return r;
}

static int
init_wait_disk(const char *serial, char *dev, size_t cap, long deadline)
{
	int r;

	while ((r = init_find_disk(serial, dev, cap)) < 0) {
		if (agent_now_ms() >= deadline) {
			agent_log("no disk %s within the boot's time limit",
			    serial);
			return r;
		}
		init_sleep_ms(5);
	}
	return 0;
}

/* The root: an overlay of the VM's writable disk (upper) on the base
 * image (lower, read-only), mounted on /newroot; then /dev /proc /sys are
 * moved there and it becomes /. The initramfs stays in memory underneath
 * (a few hundred KiB), and so do /lower and /upper, which the overlay
 * holds. The upper's root/ is the guest's changes, work/ overlayfs's. */
int
init_switch_root(int timeout_ms)
{
	static const char *const moved[] = { "/dev", "/proc", "/sys" };
	long deadline = agent_now_ms() + timeout_ms;
	char base[64], disk[64], dst[64];
	size_t i;
	int r;

	if ((r = init_wait_disk(DISK_SERIAL_BASE, base, sizeof(base),
	    deadline)) < 0 ||
	    (r = init_wait_disk(DISK_SERIAL_DISK, disk, sizeof(disk),
	    deadline)) < 0)
		return r;
	if ((mkdir("/lower", 0755) < 0 && errno != EEXIST) ||
	    (mkdir("/upper", 0755) < 0 && errno != EEXIST) ||
	    (mkdir("/newroot", 0755) < 0 && errno != EEXIST))
		return -errno;
	if (mount(base, "/lower", "ext4", MS_RDONLY, "noload") < 0) {
		r = -errno;
		agent_log("mount %s (the base image) on /lower: %s", base,
		    strerror(errno));
		return r;
	}
	if (mount(disk, "/upper", "ext4", MS_NOATIME, NULL) < 0) {
		r = -errno;
		agent_log("mount %s (the VM's disk) on /upper: %s", disk,
		    strerror(errno));
		return r;
	}
	if ((mkdir("/upper/root", 0755) < 0 && errno != EEXIST) ||
	    (mkdir("/upper/work", 0700) < 0 && errno != EEXIST)) {
		r = -errno;
		agent_log("the VM's disk: mkdir: %s", strerror(errno));
		return r;
	}
	if (mount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,"
	    "upperdir=/upper/root,workdir=/upper/work") < 0) {
		r = -errno;
		agent_log("mount the overlay root: %s", strerror(errno));
		return r;
	}
	for (i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		snprintf(dst, sizeof(dst), "/newroot%s", moved[i]);
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			agent_log("mkdir %s: %s", dst, strerror(errno));
		if (mount(moved[i], dst, NULL, MS_MOVE, NULL) < 0) {
			r = -errno;
			agent_log("move %s: %s", moved[i], strerror(errno));
			return r;
		}
	}
	if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 ||
	    chroot(".") < 0 || chdir("/") < 0) {
		r = -errno;
		agent_log("switch root: %s", strerror(errno));
		return r;
	}
	return 0;
}

/* Mounts that belong to the new root, and the hostname. Failures are
 * logged: a command that needs none of these can still run. */
int
init_late(void)
{
	char host[CHAN_MAX_HOSTNAME + 1];
	int r = 0;

	if (init_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
	    "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
		r = -EIO;
	/* devtmpfs provides /dev/ptmx, which since Linux 4.7 opens the devpts
	 * mounted at /dev/pts; fall back to that mount's own ptmx. */
	if (access("/dev/ptmx", F_OK) < 0 &&
	    symlink("pts/ptmx", "/dev/ptmx") < 0)
		agent_log("symlink /dev/ptmx: %s", strerror(errno));
	if (init_mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
	    "mode=1777") < 0)
		r = -EIO;
	if (init_mount("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV,
	    "mode=0755") < 0)
		r = -EIO;
	if (init_mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
	    "mode=1777") < 0)
		r = -EIO;
	/* capsule.hostname= names this VM; without it (an older capsuled)
	 * every VM is "capsule". */
	if (init_cmdline("capsule.hostname", host, sizeof(host)) < 0 ||
	    !chan_hostname_check(host, strlen(host)))
		snprintf(host, sizeof(host), "%s", INIT_HOSTNAME);
	if (sethostname(host, strlen(host)) < 0) {
		agent_log("sethostname: %s", strerror(errno));
		r = -errno;
	}
	return r;
}

static int
init_find_port(const char *name, char *dev, size_t cap)
{
	char path[300], buf[128];
	struct dirent *d;
	DIR *dir;
	int r = -ENOENT;

	if ((dir = opendir("/sys/class/virtio-ports")) == NULL)
		return -errno;
	while ((d = readdir(dir)) != NULL) {
		size_t n;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name",
		    d->d_name);
		if (init_read_file(path, buf, sizeof(buf)) < 0)
			continue;
		n = strcspn(buf, "\n");
		buf[n] = '\0';
		if (strcmp(buf, name) == 0) {
			snprintf(dev, cap, "/dev/%s", d->d_name);
			r = 0;
			break;
		}
	}
	closedir(dir);
	return r;
}

/* Opens the virtio-serial port called `name`, waiting for the driver to
 * create it and for devtmpfs to make its node. Returns the fd. */
int
init_open_port(const char *name, int timeout_ms)
{
	long deadline = agent_now_ms() + timeout_ms;
	char dev[300];
	int fd, r;

	for (;;) {
		r = init_find_port(name, dev, sizeof(dev));
		if (r == 0) {
			fd = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC |
			    O_NOCTTY);
			if (fd >= 0)
				return fd;
			r = -errno;
		}
		if (agent_now_ms() >= deadline) {
			agent_log("virtio-serial port %s: %s", name,
			    r == -ENOENT ? "not found" : strerror(-r));
			return r;
		}
		init_sleep_ms(5);
	}
}
