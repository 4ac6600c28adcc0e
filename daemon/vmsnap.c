/*
 * vmsnap.c — named snapshots of running VMs (see vmsnap.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "rmtree.h"
#include "sandbox.h"
#include "util.h"
#include "vmpriv.h"
#include "vmsnap.h"
#include "vmstate.h"

#define VMSNAP_META		"meta.json"
#define VMSNAP_STATE		"state"
#define VMSNAP_DISK		"disk.img"
#define VMSNAP_TAKING		".taking-"
#define VMSNAP_REMOVING		".removing-"
#define VMSNAP_META_MAX		(1024 * 1024)

static struct {
	int	fd;			/* <state>/snapshots */
	char	dir[PATH_MAX];
} S = { -1, "" };

/* A snapshot being taken. */
struct vmsnap_taking {
	uid_t		 uid;
	int		 dir_fd;	/* <uid>/ */
	int		 tmp_fd;	/* <uid>/.taking-<name>/ */
	char		 name[SANDBOX_MAX_NAME + 1];
	char		 tmp[SANDBOX_MAX_NAME + 16];
	int		 state_fd, disk_fd;
	off_t		 disk_size;
	json_t		*meta;
	vmsnap_cb	 cb;
	void		*arg;
};

/* A VM starting from a snapshot: what it needs until its start is over. */
struct vmsnap_starting {
	struct vmstate_src src;
	char		*key;
	vm_start_cb	 cb;
	void		*arg;
};

/* <uid>/, made if asked for; -errno. */
static int
vmsnap_uid_dir(uid_t uid, int make)
{
	char name[16];
	int fd;

	snprintf(name, sizeof(name), "%u", (unsigned)uid);
	if (make && mkdirat(S.fd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	if ((fd = openat(S.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return -errno;
	return fd;
}

/* The names in a uid dir (without the ones being taken or removed), as
 * a NULL-terminated list (NULL: cannot list); sweep: remove those
 * instead; taking: list the ones being taken too (as .taking-NAME). */
static char **
vmsnap_names(int dir_fd, int sweep, int taking)
{
	struct dirent *d;
	char **v = NULL, **nv;
	size_t n = 0;
	DIR *dir;
	int fd;

	/* A new open: a dup would share the offset of earlier walks. */
	if ((fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		closedir(dir);
		return NULL;
	}
	while ((d = readdir(dir)) != NULL) {
		int is_taking = strncmp(d->d_name, VMSNAP_TAKING,
		    strlen(VMSNAP_TAKING)) == 0;

		if (sweep && (is_taking || strncmp(d->d_name, VMSNAP_REMOVING,
		    strlen(VMSNAP_REMOVING)) == 0)) {
			log_info("snapshots: removing %s (left over)",
			    d->d_name);
			rmtree_at(dir_fd, d->d_name);
			continue;
		}
		if (sweep || !(sandbox_name_ok(d->d_name) ||
		    (taking && is_taking)))
			continue;
		if ((nv = realloc(v, (n + 2) * sizeof(*v))) == NULL)
			break;
		v = nv;
		if ((v[n] = strdup(d->d_name)) == NULL)
			break;
		v[++n] = NULL;
	}
	closedir(dir);
	return v;
}

static void
vmsnap_names_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

int
vmsnap_init(const char *state_dir, struct cap_err *err)
{
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int fd;

	if (snprintf(S.dir, sizeof(S.dir), "%s/%s", state_dir, VMSNAP_DIR) >=
	    (int)sizeof(S.dir))
		return cap_err_set(err, ENAMETOOLONG, E_INTERNAL, "state dir "
		    "path too long");
	if (mkdir(S.dir, 0700) < 0 && errno != EEXIST)
		return cap_err_set(err, errno, E_INTERNAL, "cannot make %s: %s",
		    S.dir, strerror(errno));
	if ((S.fd = open(S.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open %s: %s",
		    S.dir, strerror(errno));
	if (fstat(S.fd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0)
		return cap_err_set(err, EPERM, E_INTERNAL, "%s must belong to "
		    "capsuled's uid and be mode 0700", S.dir);
	/* What an earlier capsuled left half-way. */
	if ((fd = openat(S.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return cap_err_set(err, errno, E_INTERNAL, "cannot list %s: %s",
		    S.dir, strerror(errno));
	}
	while ((d = readdir(dir)) != NULL) {
		int ufd;

		if (d->d_name[0] == '.' || (ufd = openat(S.fd, d->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			continue;
		vmsnap_names_free(vmsnap_names(ufd, 1, 0));
		close(ufd);
	}
	closedir(dir);
	return 0;
}

void
vmsnap_shutdown(void)
{
	closep(&S.fd);
}

/* meta.json of name in dir_fd: checked, as anything read back is. */
static json_t *
vmsnap_meta(int dir_fd, const char *name, struct cap_err *err)
{
	char path[SANDBOX_MAX_NAME + 32];
	json_error_t je;
	struct stat st;
	json_t *m, *v;
	char *text;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", name, VMSNAP_META);
	if (!sandbox_name_ok(name) ||
	    (fd = openat(dir_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		cap_err_set(err, ENOENT, E_NOT_FOUND, "no snapshot %.80s",
		    name);
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > VMSNAP_META_MAX || (text = malloc((size_t)st.st_size +
	    1)) == NULL) {
		close(fd);
		cap_err_set(err, EINVAL, E_INTERNAL, "snapshot %s: bad %s",
		    name, VMSNAP_META);
		return NULL;
	}
	n = read(fd, text, (size_t)st.st_size);
	close(fd);
	m = n == st.st_size ? json_loadb(text, (size_t)n, 0, &je) : NULL;
	free(text);
	if (m == NULL || !json_is_object(m) ||
	    json_integer_value(json_object_get(m, "format")) != VMSNAP_FORMAT ||
	    !json_is_object(json_object_get(m, J_REQUEST)) ||
	    !json_is_string(json_object_get(m, "ident")) ||
	    !json_is_string(json_object_get(m, J_NAME)) ||
	    strcmp(json_string_value(json_object_get(m, J_NAME)), name) != 0 ||
	    !json_is_integer(v = json_object_get(m, "disk_bytes")) ||
	    json_integer_value(v) < 0) {
		json_decref(m);
		cap_err_set(err, EINVAL, E_INTERNAL, "snapshot %s: its %s does "
		    "not validate", name, VMSNAP_META);
		return NULL;
	}
	return m;
}

/* As ListSnapshots shows it. */
static json_t *
vmsnap_json(const json_t *m, uid_t uid)
{
	json_t *req = json_object_get(m, J_REQUEST);
	json_t *o = json_pack("{s:O, s:I, s:O, s:O, s:O, s:O, s:O}", J_NAME,
	    json_object_get(m, J_NAME), J_OWNER_UID, (json_int_t)uid,
	    J_CREATED_AT, json_object_get(m, J_CREATED_AT), J_VM_ID,
	    json_object_get(m, J_VM_ID), J_MEMORY_MIB, json_object_get(req,
	    J_MEMORY_MIB), J_DISK_SIZE_MIB, json_object_get(req,
	    J_DISK_SIZE_MIB), J_BYTES, json_object_get(m, J_BYTES));

	if (o != NULL && json_object_get(req, J_IMAGE) != NULL)
		json_object_set(o, J_IMAGE, json_object_get(req, J_IMAGE));
	return o;
}

static void
vmsnap_taking_free(struct vmsnap_taking *t)
{
	closep(&t->state_fd);
	closep(&t->disk_fd);
	closep(&t->tmp_fd);
	closep(&t->dir_fd);
	json_decref(t->meta);
	free(t);
}

static int
vmsnap_sync(int fd, const char *what, struct cap_err *err)
{
	if (osdep_fdatasync(fd) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot write the "
		    "snapshot's %s: %s", what, strerror(errno));
	return 0;
}

/* On the disk for good, then in place under its name. */
static int
vmsnap_commit(struct vmsnap_taking *t, struct cap_err *err)
{
	struct stat st;
	char *text;
	int r;

	if ((r = vmsnap_sync(t->state_fd, "state", err)) < 0 ||
	    (r = vmsnap_sync(t->disk_fd, "disk", err)) < 0)
		return r;
	if (fstat(t->state_fd, &st) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "snapshot state: %s",
		    strerror(errno));
	json_object_set_new(t->meta, "disk_bytes",
	    json_integer((json_int_t)t->disk_size));
	json_object_set_new(t->meta, J_BYTES, json_integer((json_int_t)
	    (st.st_blocks * 512 + disk_used(t->disk_fd))));
	if ((text = json_dumps(t->meta, JSON_COMPACT)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	r = util_write_atomic(t->tmp_fd, VMSNAP_META, text, strlen(text));
	free(text);
	if (r < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot write the "
		    "snapshot's %s: %s", VMSNAP_META, strerror(-r));
	if (osdep_rename_noreplace(t->dir_fd, t->tmp, t->dir_fd, t->name) < 0)
		return cap_err_set(err, errno, errno == EEXIST ? E_CONFLICT :
		    E_INTERNAL, "cannot name the snapshot %s: %s", t->name,
		    strerror(errno));
	fsync(t->dir_fd);
	return 0;
}

/* The uid's dir goes again if a failed take left it empty. */
static void
vmsnap_tidy_uid(const struct vmsnap_taking *t)
{
	char name[16];

	snprintf(name, sizeof(name), "%u", (unsigned)t->uid);
	unlinkat(S.fd, name, AT_REMOVEDIR);	/* ENOTEMPTY: it stays */
}

static void
vmsnap_saved(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct vmsnap_taking *t = arg;
	struct cap_err e;
	json_t *out;

	(void)vm;
	if (err == NULL && vmsnap_commit(t, &e) < 0)
		err = &e;
	if (err != NULL) {
		rmtree_at(t->dir_fd, t->tmp);
		vmsnap_tidy_uid(t);
		log_warn("snapshot %s of uid %u not taken: %s", t->name,
		    (unsigned)t->uid, err->msg);
		t->cb(NULL, err, t->arg);
	} else {
		log_info("snapshot %s of uid %u taken", t->name,
		    (unsigned)t->uid);
		out = vmsnap_json(t->meta, t->uid);
		if (out == NULL) {
			cap_err_set(&e, ENOMEM, E_INTERNAL, "out of memory");
			t->cb(NULL, &e, t->arg);
		} else
			t->cb(out, NULL, t->arg);
	}
	vmsnap_taking_free(t);
}

int
vmsnap_take(struct vm *vm, const struct caller *who, const char *name,
    vmsnap_cb cb, void *arg, struct cap_err *err)
{
	struct vmsnap_taking *t;
	char **names;
	size_t n = 0;
	int r;

	if (!sandbox_name_ok(name))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "a snapshot "
		    "name is 1-64 of A-Z a-z 0-9 . _ -, not starting with . "
		    "or -");
	if (who->uid != vm->who.uid)
		return cap_err_set(err, EPERM, E_PERMISSION_DENIED, "VM %s is "
		    "uid %u's: only its owner takes snapshots of it", vm->id,
		    (unsigned)vm->who.uid);
	/* A snapshot keeps at most its RAM and its disk: the owner's disk
	 * limit and the file system must have room for that. */
	if ((r = vm_check_disk(who, vm->spec.memory_mib + vm->spec.disk_mib,
	    err)) < 0 || (r = vmstate_room(vm, 1, err)) < 0)
		return r;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	t->state_fd = t->disk_fd = t->tmp_fd = -1;
	t->uid = who->uid;
	t->cb = cb;
	t->arg = arg;
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->tmp, sizeof(t->tmp), "%s%s", VMSNAP_TAKING, name);
	if ((t->dir_fd = vmsnap_uid_dir(who->uid, 1)) < 0) {
		r = cap_err_set(err, -t->dir_fd, E_INTERNAL, "cannot make the "
		    "snapshot directory: %s", strerror(-t->dir_fd));
		goto fail;
	}
	/* Those being taken count: they are on their way. */
	if ((names = vmsnap_names(t->dir_fd, 0, 1)) == NULL) {
		r = cap_err_set(err, EIO, E_INTERNAL, "cannot list the "
		    "snapshots of uid %u", (unsigned)who->uid);
		goto fail;
	}
	for (; names[n] != NULL; n++)
		;
	vmsnap_names_free(names);
	if (n >= VMSNAP_MAX_PER_UID) {
		r = cap_err_set(err, EDQUOT, E_LIMIT, "uid %u has %zu "
		    "snapshots; the limit is %d", (unsigned)who->uid, n,
		    VMSNAP_MAX_PER_UID);
		goto fail;
	}
	if (faccessat(t->dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		r = cap_err_set(err, EEXIST, E_CONFLICT, "a snapshot named %s "
		    "exists already", name);
		goto fail;
	}
	if (mkdirat(t->dir_fd, t->tmp, 0700) < 0) {
		r = cap_err_set(err, errno, errno == EEXIST ? E_CONFLICT :
		    E_INTERNAL, errno == EEXIST ? "a snapshot named %s is being "
		    "taken" : "cannot make the snapshot %s: %s", name,
		    strerror(errno));
		goto fail;
	}
	if ((t->tmp_fd = openat(t->dir_fd, t->tmp, O_RDONLY | O_DIRECTORY |
	    O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	    (t->state_fd = openat(t->tmp_fd, VMSNAP_STATE, O_RDWR | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0 ||
	    (t->disk_fd = openat(t->tmp_fd, VMSNAP_DISK, O_RDWR | O_CREAT |
	    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot make the "
		    "snapshot's files: %s", strerror(errno));
		rmtree_at(t->dir_fd, t->tmp);
		goto fail;
	}
	t->meta = json_pack("{s:i, s:s, s:I, s:s, s:s, s:o}", "format",
	    VMSNAP_FORMAT, J_NAME, name, J_CREATED_AT, (json_int_t)time(NULL),
	    J_VM_ID, vm->id, "ident", vm->ident, J_REQUEST,
	    vmstate_request(vm));
	if (t->meta == NULL) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		rmtree_at(t->dir_fd, t->tmp);
		goto fail;
	}
	if ((r = vmstate_capture(vm, t->state_fd, t->disk_fd, &t->disk_size,
	    vmsnap_saved, t, err)) < 0) {
		rmtree_at(t->dir_fd, t->tmp);
		goto fail;
	}
	log_info("vm %s: taking snapshot %s for uid %u", vm->id, name,
	    (unsigned)who->uid);
	return 0;
fail:
	if (t->dir_fd >= 0)
		vmsnap_tidy_uid(t);
	vmsnap_taking_free(t);
	return r;
}

uint64_t
vmsnap_mib(uid_t uid)
{
	struct cap_err err;
	uint64_t total = 0;
	char **names;
	json_t *m;
	int fd;

	if ((fd = vmsnap_uid_dir(uid, 0)) < 0)
		return 0;
	names = vmsnap_names(fd, 0, 0);
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		if ((m = vmsnap_meta(fd, names[i], &err)) != NULL) {
			total += (uint64_t)json_integer_value(json_object_get(m,
			    J_BYTES)) >> 20;
			json_decref(m);
		}
	vmsnap_names_free(names);
	close(fd);
	return total;
}

json_t *
vmsnap_list_json(uid_t uid)
{
	json_t *a = json_array(), *m;
	struct dirent *d;
	struct cap_err err;
	char **names;
	DIR *dir;
	int fd, ufd;

	if (a == NULL || S.fd < 0 ||
	    (fd = openat(S.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return a;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return a;
	}
	while ((d = readdir(dir)) != NULL) {
		char *end;
		unsigned long u = strtoul(d->d_name, &end, 10);

		if (d->d_name[0] < '0' || d->d_name[0] > '9' || *end != '\0' ||
		    (uid != 0 && u != uid) ||
		    (ufd = openat(S.fd, d->d_name, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC)) < 0)
			continue;
		names = vmsnap_names(ufd, 0, 0);
		for (size_t i = 0; names != NULL && names[i] != NULL; i++)
			if ((m = vmsnap_meta(ufd, names[i], &err)) != NULL) {
				json_array_append_new(a, vmsnap_json(m,
				    (uid_t)u));
				json_decref(m);
			}
		vmsnap_names_free(names);
		close(ufd);
	}
	closedir(dir);
	return a;
}

int
vmsnap_remove(uid_t uid, const char *name, struct cap_err *err)
{
	char tmp[SANDBOX_MAX_NAME + 48];
	json_t *m;
	int dir_fd, r;

	if ((dir_fd = vmsnap_uid_dir(uid, 0)) < 0)
		return cap_err_set(err, ENOENT, E_NOT_FOUND, "no snapshot %.80s",
		    name);
	if ((m = vmsnap_meta(dir_fd, name, err)) == NULL &&
	    err->errnum == ENOENT) {
		close(dir_fd);
		return -ENOENT;
	}
	json_decref(m);
	/* Out of sight first: a later capsuled removes what is left. */
	snprintf(tmp, sizeof(tmp), "%s%s-%llu", VMSNAP_REMOVING, name,
	    (unsigned long long)util_now_ms());
	if (renameat(dir_fd, name, dir_fd, tmp) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot remove snapshot "
		    "%s: %s", name, strerror(errno));
		close(dir_fd);
		return r;
	}
	if ((r = rmtree_at(dir_fd, tmp)) < 0)
		log_warn("snapshots: cannot remove %s/%u/%s: %s", S.dir,
		    (unsigned)uid, tmp, strerror(-r));
	close(dir_fd);
	log_info("snapshot %s of uid %u removed", name, (unsigned)uid);
	return 0;
}

static void
vmsnap_starting_free(struct vmsnap_starting *s)
{
	closep(&s->src.state_fd);
	closep(&s->src.disk_fd);
	free(s->key);
	free(s);
}

static void
vmsnap_started(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct vmsnap_starting *s = arg;

	s->cb(vm, err, s->arg);
	vmsnap_starting_free(s);
}

int
vmsnap_start(const struct caller *who, const char *name, uint64_t owner,
    int stop_on_disconnect, vm_start_cb cb, void *arg, struct cap_err *err)
{
	char path[SANDBOX_MAX_NAME + 32];
	struct vmsnap_starting *s;
	struct ctl_limits lim;
	struct ctl_start req;
	struct stat st;
	struct vm *vm;
	json_t *m = NULL, *j;
	int dir_fd = -1, r;

	if ((dir_fd = vmsnap_uid_dir(who->uid, 0)) < 0)
		return cap_err_set(err, ENOENT, E_NOT_FOUND, "no snapshot %.80s",
		    name);
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(dir_fd);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	s->src.state_fd = s->src.disk_fd = -1;
	s->cb = cb;
	s->arg = arg;
	if ((m = vmsnap_meta(dir_fd, name, err)) == NULL) {
		r = -err->errnum;
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", name, VMSNAP_STATE);
	s->src.state_fd = openat(dir_fd, path, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/%s", name, VMSNAP_DISK);
	s->src.disk_fd = openat(dir_fd, path, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (s->src.state_fd < 0 || s->src.disk_fd < 0 ||
	    fstat(s->src.disk_fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size != json_integer_value(json_object_get(m,
	    "disk_bytes"))) {
		r = cap_err_set(err, EINVAL, E_INTERNAL, "snapshot %s: its "
		    "files are missing or damaged", name);
		goto fail;
	}
	s->src.disk_size = st.st_size;
	s->src.how = "snapshot";
	snprintf(s->src.note, sizeof(s->src.note), "from snapshot %s (of vm "
	    "%.36s)", name, json_string_value(json_object_get(m, J_VM_ID)) ?
	    json_string_value(json_object_get(m, J_VM_ID)) : "?");
	if ((s->key = strdup(json_string_value(json_object_get(m,
	    "ident")))) == NULL) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto fail;
	}
	s->src.key = s->key;
	j = json_object_get(m, J_REQUEST);
	json_object_set_new(j, J_STOP_ON_DISCONNECT,
	    json_boolean(stop_on_disconnect));
	vm_ctl_limits(&lim);
	if ((r = ctl_parse_start(j, &lim, &req, err)) < 0) {
		cap_err_wrap(err, "the snapshot's configuration");
		goto fail;
	}
	r = vm_start_restored(&req, who, owner, &s->src, vmsnap_started, s,
	    &vm, err);
	ctl_start_free(&req);
	if (r < 0)
		goto fail;
	json_decref(m);
	close(dir_fd);
	return 0;
fail:
	json_decref(m);
	close(dir_fd);
	vmsnap_starting_free(s);
	return r;
}
