/*
 * template.c — start templates (template.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"
#include "osdep.h"
#include "proto.h"
#include "template.h"
#include "util.h"

#define TEMPLATE_MEM_MAX	4	/* RAM copies kept in memory */
#define TEMPLATE_BUILDING	".building-"
#define TEMPLATE_KEY_MAX	(64 * 1024)

static const char *const template_files[] = { "key", "ram", "state",
    "disk.img" };

struct template {
	char		 id[17];
	char		*key;
	int		 ram;		/* sealed memfd */
	uint64_t	 used;		/* util_now_ms() of its last use */
};

static struct {
	int		 dir_fd;
	struct template	*mem[TEMPLATE_MEM_MAX];
	char		 building[8][17];
} T = { .dir_fd = -1 };

/* FNV-1a, 64 bits: names a directory; the key file inside decides. */
void
template_id(const char *key, char out[17])
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Removes dir (one of ours: flat, known names). */
static void
template_rmdir(const char *name)
{
	int fd = openat(T.dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);

	if (fd >= 0) {
		for (size_t i = 0; i < sizeof(template_files) /
		    sizeof(template_files[0]); i++)
			unlinkat(fd, template_files[i], 0);
		close(fd);
	}
	if (unlinkat(T.dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		log_warn("templates: cannot remove %s: %s", name,
		    strerror(errno));
}

void
template_init(int dir_fd)
{
	struct dirent *d;
	DIR *dir;
	int fd;

	T.dir_fd = dir_fd;
	/* What a daemon that died while taking one left. */
	/* A new open of the dir (a dup would share, and leave at its end,
	 * the offset every later listing starts from). */
	if ((fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0 || (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((d = readdir(dir)) != NULL)
		if (strncmp(d->d_name, TEMPLATE_BUILDING,
		    strlen(TEMPLATE_BUILDING)) == 0)
			template_rmdir(d->d_name);
	closedir(dir);
}

static char *
template_ident(int fd, const char *what)
{
	struct timespec m, c;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	m = osdep_mtime(&st);
	c = osdep_ctime(&st);
	return util_strdup_printf("%s %ju:%ju %jd %lld.%09ld %lld.%09ld\n",
	    what, (uintmax_t)st.st_dev, (uintmax_t)st.st_ino,
	    (intmax_t)st.st_size, (long long)m.tv_sec, m.tv_nsec,
	    (long long)c.tv_sec, c.tv_nsec);
}

char *
template_key(const struct template_spec *s)
{
	char *k = NULL, *f[3];

	f[0] = template_ident(s->kernel_fd, "kernel");
	f[1] = template_ident(s->initrd_fd, "initrd");
	f[2] = template_ident(s->rootfs_fd, "base");
	if (f[0] != NULL && f[1] != NULL && f[2] != NULL)
		k = util_strdup_printf("capsule template 1\nhv %s\n%s%s%s"
		    "vcpus %u\nmemory %llu\ndisk %llu\nagent %s\nboot %s\n"
		    "net %s\n", s->hv, f[0], f[1], f[2], s->vcpus,
		    (unsigned long long)s->memory_mib,
		    (unsigned long long)s->disk_mib,
		    s->agent_args ? s->agent_args : "",
		    s->boot_args ? s->boot_args : "", s->net);
	for (int i = 0; i < 3; i++)
		free(f[i]);
	return k;
}

/* A sealed memfd with a copy of in's size bytes. */
static int
template_seal(int in, off_t size)
{
	int fd, r;

	if ((fd = osdep_memfd("capsule-template", 1)) < 0)
		return -errno;
	if ((r = disk_copy(in, fd, size)) < 0 ||
	    (osdep_memfd_seal(fd) < 0 && (r = -errno))) {
		close(fd);
		return r;
	}
	return fd;
}

static void
template_free(struct template *t)
{
	if (t == NULL)
		return;
	closep(&t->ram);
	free(t->key);
	free(t);
}

/* Keeps t in memory, letting the least recently used go if full. */
static void
template_keep(struct template *t)
{
	size_t i, old = 0;

	for (i = 0; i < TEMPLATE_MEM_MAX; i++) {
		if (T.mem[i] == NULL)
			break;
		if (T.mem[i]->used < T.mem[old]->used)
			old = i;
	}
	if (i == TEMPLATE_MEM_MAX) {
		template_free(T.mem[old]);
		i = old;
	}
	T.mem[i] = t;
}

static char *
template_read_key(int dir)
{
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = openat(dir, "key", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return NULL;
	if ((buf = malloc(TEMPLATE_KEY_MAX + 1)) != NULL &&
	    (n = read(fd, buf, TEMPLATE_KEY_MAX)) >= 0)
		buf[n] = '\0';
	else {
		free(buf);
		buf = NULL;
	}
	close(fd);
	return buf;
}

/* From disk into memory. */
static struct template *
template_load(const char *key, const char *id)
{
	struct template *t;
	struct stat st;
	char *disk_key;
	int dir, ram;

	if ((dir = openat(T.dir_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return NULL;
	if ((disk_key = template_read_key(dir)) == NULL ||
	    strcmp(disk_key, key) != 0) {
		/* Another key with the same hash, or half of one. */
		free(disk_key);
		close(dir);
		return NULL;
	}
	free(disk_key);
	t = calloc(1, sizeof(*t));
	ram = openat(dir, "ram", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	close(dir);
	if (t == NULL || ram < 0 || fstat(ram, &st) < 0 ||
	    !S_ISREG(st.st_mode) || (t->key = strdup(key)) == NULL ||
	    (t->ram = template_seal(ram, st.st_size)) < 0) {
		log_warn("templates: %s cannot be loaded; removing it", id);
		if (ram >= 0)
			close(ram);
		if (t != NULL)
			t->ram = -1;
		template_free(t);
		template_rmdir(id);
		return NULL;
	}
	close(ram);
	snprintf(t->id, sizeof(t->id), "%s", id);
	return t;
}

struct template *
template_get(const char *key)
{
	struct template *t;
	char id[17];

	if (T.dir_fd < 0 || key == NULL)
		return NULL;
	for (size_t i = 0; i < TEMPLATE_MEM_MAX; i++)
		if (T.mem[i] != NULL && strcmp(T.mem[i]->key, key) == 0) {
			T.mem[i]->used = util_now_ms();
			utimensat(T.dir_fd, T.mem[i]->id, NULL,
			    AT_SYMLINK_NOFOLLOW);
			return T.mem[i];
		}
	template_id(key, id);
	if ((t = template_load(key, id)) == NULL)
		return NULL;
	t->used = util_now_ms();
	/* Its mtime says when it was last used, for pruning. */
	utimensat(T.dir_fd, id, NULL, AT_SYMLINK_NOFOLLOW);
	template_keep(t);
	return t;
}

int
template_ram(const struct template *t)
{
	return t->ram;
}

static int
template_open(const struct template *t, const char *name, struct cap_err *err)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t->id, name);
	if ((fd = openat(T.dir_fd, path, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "template %s: "
		    "cannot open %s: %s", t->id, name, strerror(errno));
	return fd;
}

int
template_state(const struct template *t, struct cap_err *err)
{
	return template_open(t, "state", err);
}

int
template_copy_disk(const struct template *t, int dir_fd, const char *name,
    struct cap_err *err)
{
	struct stat st;
	int in, out, r;

	if ((in = template_open(t, "disk.img", err)) < 0)
		return in;
	if ((out = openat(dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot create the "
		    "VM's disk: %s", strerror(errno));
		close(in);
		return r;
	}
	if (fstat(in, &st) < 0)
		r = -errno;
	else
		r = disk_copy(in, out, st.st_size);
	close(in);
	if (r < 0) {
		close(out);
		unlinkat(dir_fd, name, 0);
		return cap_err_set(err, -r, E_INTERNAL, "cannot copy the "
		    "template's disk: %s", strerror(-r));
	}
	return out;
}

void
template_drop(const char *key)
{
	char id[17];

	template_id(key, id);
	for (size_t i = 0; i < TEMPLATE_MEM_MAX; i++)
		if (T.mem[i] != NULL && strcmp(T.mem[i]->key, key) == 0) {
			template_free(T.mem[i]);
			T.mem[i] = NULL;
		}
	log_warn("templates: removing %s", id);
	template_rmdir(id);
}

static int
template_building(const char *id, int add)
{
	for (size_t i = 0; i < sizeof(T.building) / sizeof(T.building[0]);
	    i++) {
		if (add < 0 && strcmp(T.building[i], id) == 0) {
			T.building[i][0] = '\0';
			return 0;
		}
		if (add == 0 && strcmp(T.building[i], id) == 0)
			return 1;
		if (add > 0 && T.building[i][0] == '\0') {
			snprintf(T.building[i], sizeof(T.building[i]), "%s",
			    id);
			return 0;
		}
	}
	return add > 0 ? -1 : 0;
}

int
template_begin(const char *key, struct cap_err *err)
{
	char id[17], name[32], path[64];
	struct stat st;
	int dir, fd;
	size_t len = strlen(key);

	if (T.dir_fd < 0)
		return cap_err_set(err, ENOTSUP, E_INTERNAL, "no templates");
	template_id(key, id);
	if (template_building(id, 0) || fstatat(T.dir_fd, id, &st,
	    AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	if (len > TEMPLATE_KEY_MAX || template_building(id, 1) < 0)
		return -EBUSY;
	snprintf(name, sizeof(name), TEMPLATE_BUILDING "%s", id);
	template_rmdir(name);
	if (mkdirat(T.dir_fd, name, 0700) < 0 ||
	    (dir = openat(T.dir_fd, name, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0) {
		template_building(id, -1);
		return cap_err_set(err, errno, E_INTERNAL, "templates: cannot "
		    "make %s: %s", name, strerror(errno));
	}
	fd = openat(dir, "key", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, key, len) != (ssize_t)len) {
		if (fd >= 0)
			close(fd);
		close(dir);
		template_abort(key);
		return cap_err_set(err, EIO, E_INTERNAL, "templates: cannot "
		    "write a key");
	}
	close(fd);
	snprintf(path, sizeof(path), "state");
	fd = openat(dir, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	close(dir);
	if (fd < 0) {
		template_abort(key);
		return cap_err_set(err, errno, E_INTERNAL, "templates: cannot "
		    "make a state file: %s", strerror(errno));
	}
	return fd;
}

/* Keeps TEMPLATE_DISK_MAX on disk: the least recently used go. */
static void
template_prune(void)
{
	char victim[64];
	struct timespec oldest = { 0, 0 }, mtime;
	struct dirent *d;
	struct stat st;
	size_t n = 0;
	DIR *dir;
	int fd;

	if ((fd = openat(T.dir_fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0 || (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	victim[0] = '\0';
	while ((d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.' || strlen(d->d_name) != 16 ||
		    fstatat(T.dir_fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		n++;
		mtime = osdep_mtime(&st);
		if (victim[0] == '\0' || mtime.tv_sec < oldest.tv_sec ||
		    (mtime.tv_sec == oldest.tv_sec &&
		    mtime.tv_nsec < oldest.tv_nsec)) {
			oldest = mtime;
			snprintf(victim, sizeof(victim), "%.16s", d->d_name);
		}
	}
	closedir(dir);
	if (n <= TEMPLATE_DISK_MAX || victim[0] == '\0')
		return;
	for (size_t i = 0; i < TEMPLATE_MEM_MAX; i++)
		if (T.mem[i] != NULL && strcmp(T.mem[i]->id, victim) == 0) {
			template_free(T.mem[i]);
			T.mem[i] = NULL;
		}
	log_info("templates: removing %s, the least recently used", victim);
	template_rmdir(victim);
}

int
template_commit(const char *key, int ram_fd, uint64_t ram_bytes,
    int disk_fd, struct cap_err *err)
{
	char id[17], name[32];
	struct template *t = NULL;
	struct stat st;
	int dir = -1, fd = -1, r;

	template_id(key, id);
	snprintf(name, sizeof(name), TEMPLATE_BUILDING "%s", id);
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->key = strdup(key)) == NULL) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto fail;
	}
	t->ram = -1;
	/* The guest is stopped: its RAM and disk hold still. */
	if ((t->ram = template_seal(ram_fd, (off_t)ram_bytes)) < 0) {
		r = cap_err_set(err, -t->ram, E_INTERNAL, "templates: cannot "
		    "copy the VM's memory: %s", strerror(-t->ram));
		t->ram = -1;
		goto fail;
	}
	if ((dir = openat(T.dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0 ||
	    (fd = openat(dir, "ram", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0 ||
	    ((r = disk_copy(t->ram, fd, (off_t)ram_bytes)) < 0 &&
	    (errno = -r)) ||
	    (closep(&fd), fd = openat(dir, "disk.img", O_WRONLY | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0 ||
	    fstat(disk_fd, &st) < 0 ||
	    ((r = disk_copy(disk_fd, fd, st.st_size)) < 0 &&
	    (errno = -r)) ||
	    renameat(T.dir_fd, name, T.dir_fd, id) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "templates: cannot "
		    "write %s: %s", name, strerror(errno));
		goto fail;
	}
	closep(&fd);
	closep(&dir);
	template_building(id, -1);
	snprintf(t->id, sizeof(t->id), "%s", id);
	t->used = util_now_ms();
	template_keep(t);
	template_prune();
	return 0;
fail:
	closep(&fd);
	closep(&dir);
	template_free(t);
	template_abort(key);
	return r;
}

void
template_abort(const char *key)
{
	char id[17], name[32];

	template_id(key, id);
	snprintf(name, sizeof(name), TEMPLATE_BUILDING "%s", id);
	template_rmdir(name);
	template_building(id, -1);
}
