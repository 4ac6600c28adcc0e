/*
 * sandbox.c — the store of named sandboxes (sandbox.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "disk.h"
#include "image.h"
#include "log.h"
#include "oci.h"
#include "osdep.h"
#include "proto.h"
#include "record.h"
#include "rmtree.h"
#include "sandbox.h"
#include "util.h"

#define SANDBOX_RECORD_MAX	(1 << 20)
/* A sandbox being made or removed: <prefix><id>, renamed into or out of
 * place in one step; what start-up finds under these names goes. */
#define SANDBOX_CREATING	".creating-"
#define SANDBOX_REMOVING	".removing-"

struct sandbox {
	char		 id[37];
	char		 name[SANDBOX_MAX_NAME + 1];
	uid_t		 owner;
	long long	 created_at;
	uint64_t	 disk_mib;
	char		 image[OCI_DIGEST_LEN + 1];	/* "" if none */
	json_t		*start;		/* StartVM's other fields */
};

static struct {
	char		  dir[PATH_MAX];	/* <state>/sandboxes */
	int		  fd;
	struct sandbox	**v;
	size_t		  n, cap;
	sandbox_vm_fn	 *vm_of;
	sandbox_image_fn *image_of;
} sb = { .fd = -1 };

/* Fields a sandbox keeps apart from its start request, and fields that
 * belong to one run, not to the sandbox. */
static const char *const own_fields[] = { J_OP, J_ID, J_NAME, J_IMAGE,
    J_DISK_SIZE_MIB, NULL };
static const char *const run_fields[] = { J_RUN_DIR, J_PROXY_SOCKET_PATH,
    J_CONSOLE_LOG_PATH, J_STOP_ON_DISCONNECT, NULL };

int
sandbox_name_ok(const char *s)
{
	size_t n = strlen(s);
	int idlike = 1;

	if (n == 0 || n > SANDBOX_MAX_NAME || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || strchr("._-", *s) != NULL))
			return 0;
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
		    *s == '-'))
			idlike = 0;
	}
	/* Never something that reads as a VM id or a prefix of one. */
	return !idlike;
}

/* Is another process's lock on the disk (a QEMU capsuled did not take
 * over, still writing it)? QEMU locks the images it has open. */
static int
disk_locked(int dfd)
{
	int fd = openat(dfd, DISK_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int locked;

	if (fd < 0)
		return 0;
	locked = osdep_write_locked(fd);
	close(fd);
	return locked;
}

static void
sandbox_free(struct sandbox *s)
{
	if (s != NULL)
		json_decref(s->start);
	free(s);
}

static int
sandbox_add(struct sandbox *s)
{
	if (sb.n == sb.cap) {
		size_t cap = sb.cap ? sb.cap * 2 : 16;
		struct sandbox **v;

		/* reallocarray(), which macOS lacks. */
		if (cap > SIZE_MAX / sizeof(*v) ||
		    (v = realloc(sb.v, cap * sizeof(*v))) == NULL)
			return -ENOMEM;
		sb.v = v;
		sb.cap = cap;
	}
	sb.v[sb.n++] = s;
	return 0;
}

static struct sandbox *
by_name(uid_t owner, const char *name)
{
	for (size_t i = 0; i < sb.n; i++)
		if (sb.v[i]->owner == owner && strcmp(sb.v[i]->name, name) == 0)
			return sb.v[i];
	return NULL;
}

struct sandbox *
sandbox_by_id(const char *id)
{
	for (size_t i = 0; i < sb.n; i++)
		if (strcmp(sb.v[i]->id, id) == 0)
			return sb.v[i];
	return NULL;
}

struct sandbox *
sandbox_find(uid_t uid, const char *ref)
{
	struct sandbox *s = by_name(uid, ref);

	if (s == NULL && (s = sandbox_by_id(ref)) != NULL && uid != 0 &&
	    s->owner != uid)
		s = NULL;
	return s;
}

const char *
sandbox_id(const struct sandbox *s)
{
	return s->id;
}

const char *
sandbox_name(const struct sandbox *s)
{
	return s->name;
}

uid_t
sandbox_owner(const struct sandbox *s)
{
	return s->owner;
}

/* ---- the record ---- */

static json_t *
record_json(const struct sandbox *s)
{
	json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:O}",
	    "format", SANDBOX_FORMAT, J_ID, s->id, J_NAME, s->name,
	    J_OWNER_UID, (json_int_t)s->owner, J_CREATED_AT,
	    (json_int_t)s->created_at, J_DISK_SIZE_MIB,
	    (json_int_t)s->disk_mib, "start", s->start);

	if (o != NULL && s->image[0])
		json_object_set_new(o, J_IMAGE, json_string(s->image));
	return o;
}

static int
record_save(int dfd, const struct sandbox *s, struct cap_err *err)
{
	json_t *o = record_json(s);
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	int r;

	json_decref(o);
	if (text == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	r = util_write_atomic(dfd, SANDBOX_RECORD, text, strlen(text));
	free(text);
	if (r < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot write the "
		    "sandbox's record: %s", strerror(-r));
	return 0;
}

/* The StartVM fields of a record or a request: every one StartVM takes,
 * none that belong to one run. */
static int
start_ok(json_t *start, const char *what, struct cap_err *err)
{
	struct ctl_limits lim = { UINT32_MAX, UINT64_MAX, 0, 0 };
	struct ctl_start parsed;
	json_t *req;
	int r;

	for (size_t i = 0; run_fields[i] != NULL; i++)
		if (json_object_get(start, run_fields[i]) != NULL)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s: \"%s\" belongs to one run, not to a sandbox "
			    "(give it to StartVM)", what, run_fields[i]);
	for (size_t i = 0; own_fields[i] != NULL; i++)
		if (json_object_get(start, own_fields[i]) != NULL)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s: \"%s\" is misplaced", what, own_fields[i]);
	if ((req = json_deep_copy(start)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	json_object_set_new(req, J_OP, json_string(OP_START_VM));
	r = ctl_parse_start(req, &lim, &parsed, err);
	json_decref(req);
	if (r < 0)
		return cap_err_wrap(err, "%s", what);
	ctl_start_free(&parsed);
	return 0;
}

static int
bad_record(const char *id, const char *why, struct cap_err *err)
{
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "sandbox %s: its "
	    "record %s", id, why);
}

/* Reads and checks <id>/sandbox.json. */
static int
record_load(int dfd, const char *id, struct sandbox **out,
    struct cap_err *err)
{
	char *buf = NULL;
	struct sandbox *s = NULL;
	json_t *o = NULL, *v;
	json_error_t je;
	struct stat st;
	ssize_t n;
	int fd, r;

	fd = openat(dfd, SANDBOX_RECORD, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		cap_err_set(err, -r, E_INVALID_ARGUMENT, "sandbox %s: its record "
		    "cannot be opened: %s", id, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > SANDBOX_RECORD_MAX || st.st_uid != geteuid()) {
		close(fd);
		return bad_record(id, "is not a file of capsuled's", err);
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return bad_record(id, "cannot be read", err);
	}
	o = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!json_is_object(o)) {
		r = bad_record(id, "is not JSON", err);
		goto done;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto done;
	}
	r = bad_record(id, "has a bad or missing field", err);
	if (json_integer_value(json_object_get(o, "format")) !=
	    SANDBOX_FORMAT ||
	    !json_is_string(v = json_object_get(o, J_ID)) ||
	    strcmp(json_string_value(v), id) != 0)
		goto done;
	snprintf(s->id, sizeof(s->id), "%s", id);
	if (!json_is_string(v = json_object_get(o, J_NAME)) ||
	    !sandbox_name_ok(json_string_value(v)))
		goto done;
	snprintf(s->name, sizeof(s->name), "%s", json_string_value(v));
	if (!json_is_integer(v = json_object_get(o, J_OWNER_UID)) ||
	    json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX - 1)
		goto done;
	s->owner = (uid_t)json_integer_value(v);
	if (!json_is_integer(v = json_object_get(o, J_CREATED_AT)))
		goto done;
	s->created_at = json_integer_value(v);
	if (!json_is_integer(v = json_object_get(o, J_DISK_SIZE_MIB)) ||
	    json_integer_value(v) < CTL_MIN_DISK_MIB ||
	    (uint64_t)json_integer_value(v) > CTL_MAX_DISK_MIB)
		goto done;
	s->disk_mib = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(o, J_IMAGE)) != NULL) {
		if (!json_is_string(v) || !oci_digest_ok(json_string_value(v)))
			goto done;
		snprintf(s->image, sizeof(s->image), "%s",
		    json_string_value(v));
	}
	if (!json_is_object(v = json_object_get(o, "start")))
		goto done;
	if ((r = start_ok(v, "its record", err)) < 0) {
		cap_err_wrap(err, "sandbox %s", id);
		goto done;
	}
	s->start = json_incref(v);
	*out = TAKE_PTR(s);
	r = 0;
done:
	json_decref(o);
	sandbox_free(s);
	return r;
}

/* ---- start-up ---- */

static void
load_one(const char *id)
{
	struct sandbox *s = NULL;
	struct cap_err err;
	struct stat st;
	int dfd, r;

	if ((dfd = openat(sb.fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0) {
		log_warn("sandboxes: %s/%s: %s; left alone", sb.dir, id,
		    strerror(errno));
		return;
	}
	r = record_load(dfd, id, &s, &err);
	if (r == 0 && (fstatat(dfd, DISK_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISREG(st.st_mode) || st.st_uid != geteuid()))
		r = bad_record(id, "has no disk of capsuled's", &err);
	if (r == 0 && by_name(s->owner, s->name) != NULL)
		r = cap_err_set(&err, EEXIST, E_CONFLICT, "sandbox %s: uid %u "
		    "has another sandbox called %s", id, (unsigned)s->owner,
		    s->name);
	close(dfd);
	/* Nothing is removed here: a sandbox that does not load may still
	 * hold someone's data. */
	if (r < 0) {
		log_warn("sandboxes: %s; left as it is in %s/%s", err.msg,
		    sb.dir, id);
		sandbox_free(s);
		return;
	}
	if (sandbox_add(s) < 0) {
		log_warn("sandboxes: out of memory loading %s", id);
		sandbox_free(s);
	}
}

/* A create that never finished (nobody was told of it) or a removal that
 * did not: either way the directory goes. */
static void
sweep_one(const char *name)
{
	int r;

	log_info("sandboxes: removing %s/%s (%s did not finish)", sb.dir, name,
	    name[1] == 'c' ? "its creation" : "its removal");
	if ((r = rmtree_at(sb.fd, name)) < 0)
		log_warn("sandboxes: cannot remove %s/%s: %s", sb.dir, name,
		    strerror(-r));
}

int
sandbox_init(const char *state_dir, sandbox_vm_fn *vm_of,
    sandbox_image_fn *image_of, struct cap_err *err)
{
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int fd;

	sb.vm_of = vm_of;
	sb.image_of = image_of;
	if (snprintf(sb.dir, sizeof(sb.dir), "%s/%s", state_dir,
	    SANDBOX_DIR) >= (int)sizeof(sb.dir))
		return cap_err_set(err, ENAMETOOLONG, E_INTERNAL, "state dir "
		    "path too long");
	if (mkdir(sb.dir, 0700) < 0 && errno != EEXIST)
		return cap_err_set(err, errno, E_INTERNAL, "cannot make %s: %s",
		    sb.dir, strerror(errno));
	sb.fd = open(sb.dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sb.fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot open %s: %s",
		    sb.dir, strerror(errno));
	if (fstat(sb.fd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0)
		return cap_err_set(err, EPERM, E_INTERNAL, "%s must belong to "
		    "capsuled's uid and be mode 0700", sb.dir);
	if ((fd = dup(sb.fd)) < 0 || (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return cap_err_set(err, errno, E_INTERNAL, "cannot list %s: %s",
		    sb.dir, strerror(errno));
	}
	while ((d = readdir(dir)) != NULL) {
		const char *n = d->d_name;

		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if ((strncmp(n, SANDBOX_CREATING, strlen(SANDBOX_CREATING)) ==
		    0 && record_id_ok(n + strlen(SANDBOX_CREATING))) ||
		    (strncmp(n, SANDBOX_REMOVING, strlen(SANDBOX_REMOVING)) ==
		    0 && record_id_ok(n + strlen(SANDBOX_REMOVING)))) {
			sweep_one(n);
			continue;
		}
		if (!record_id_ok(d->d_name)) {
			log_warn("sandboxes: %s/%s is not capsule's; left alone",
			    sb.dir, d->d_name);
			continue;
		}
		load_one(d->d_name);
	}
	closedir(dir);
	if (sb.n > 0)
		log_info("sandboxes: %zu in %s", sb.n, sb.dir);
	return 0;
}

void
sandbox_shutdown(void)
{
	for (size_t i = 0; i < sb.n; i++)
		sandbox_free(sb.v[i]);
	free(sb.v);
	sb.v = NULL;
	sb.n = sb.cap = 0;
	closep(&sb.fd);
}

/* ---- requests ---- */

static size_t
count_of(uid_t uid)
{
	size_t n = 0;

	for (size_t i = 0; i < sb.n; i++)
		n += sb.v[i]->owner == uid;
	return n;
}

int
sandbox_create(const struct caller *who, json_t *req, json_t **out,
    struct cap_err *err)
{
	struct sandbox *s;
	const char *name, *image = NULL;
	char tmp[64];
	json_t *v, *disk;
	const char *key;
	int dfd = -1, fd, r;

	if ((r = ctl_get_string(req, J_NAME, 1, &name, err)) < 0 ||
	    (r = ctl_get_string(req, J_IMAGE, 0, &image, err)) < 0)
		return r;
	if (!sandbox_name_ok(name))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "sandbox "
		    "name \"%.80s\" must be 1-%d of A-Z a-z 0-9 . _ -, not "
		    "start with . or -, and not be made only of hex digits "
		    "and dashes (it would read as a VM id)", name,
		    SANDBOX_MAX_NAME);
	if (by_name(who->uid, name) != NULL)
		return cap_err_set(err, EEXIST, E_CONFLICT, "you already have a "
		    "sandbox called %s", name);
	if (who->uid != 0 && (sb.n >= SANDBOX_MAX ||
	    count_of(who->uid) >= SANDBOX_MAX_PER_UID))
		return cap_err_set(err, ENOSPC, E_LIMIT, "too many sandboxes "
		    "(%d per user, %d in all)", SANDBOX_MAX_PER_UID,
		    SANDBOX_MAX);
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->start = json_object()) == NULL) {
		sandbox_free(s);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	json_object_foreach(req, key, v) {
		int own = 0;

		for (size_t i = 0; own_fields[i] != NULL; i++)
			own |= strcmp(key, own_fields[i]) == 0;
		if (!own)
			json_object_set(s->start, key, v);
	}
	if ((r = start_ok(s->start, "CreateSandbox", err)) < 0)
		goto fail;
	if (image != NULL && (r = sb.image_of(who->uid, image, s->image,
	    err)) < 0)
		goto fail;
	disk = json_object_get(req, J_DISK_SIZE_MIB);
	s->disk_mib = json_is_integer(disk) ?
	    (uint64_t)json_integer_value(disk) : CTL_DEFAULT_DISK_MIB;
	util_uuid(s->id);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->owner = who->uid;
	s->created_at = (long long)time(NULL);

	/* Made under a temporary name and renamed into place whole: a
	 * sandbox exists once it has its name, disk and record. */
	snprintf(tmp, sizeof(tmp), SANDBOX_CREATING "%s", s->id);
	if (mkdirat(sb.fd, tmp, 0700) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot make %s/%s: %s",
		    sb.dir, tmp, strerror(errno));
		goto fail;
	}
	if ((dfd = openat(sb.fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot open %s/%s: %s",
		    sb.dir, tmp, strerror(errno));
		goto undo;
	}
	if ((fd = disk_make(dfd, DISK_FILE, s->disk_mib, err)) < 0) {
		r = fd;
		goto undo;
	}
	close(fd);
	if ((r = record_save(dfd, s, err)) < 0)
		goto undo;
	if (sandbox_add(s) < 0) {
		r = cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		goto undo;
	}
	if (renameat(sb.fd, tmp, sb.fd, s->id) < 0) {
		r = cap_err_set(err, errno, E_INTERNAL, "cannot rename %s/%s: %s",
		    sb.dir, tmp, strerror(errno));
		sb.n--;
		goto undo;
	}
	fsync(sb.fd);
	close(dfd);
	log_info("sandbox %s (%s) created for uid %u, disk %llu MiB", s->name,
	    s->id, (unsigned)s->owner, (unsigned long long)s->disk_mib);
	*out = sandbox_json(s);
	return 0;
undo:
	closep(&dfd);
	rmtree_at(sb.fd, tmp);
fail:
	sandbox_free(s);
	return r;
}

json_t *
sandbox_start_request(const struct sandbox *s)
{
	json_t *req = json_deep_copy(s->start);

	if (req == NULL)
		return NULL;
	json_object_set_new(req, J_OP, json_string(OP_START_VM));
	json_object_set_new(req, J_DISK_SIZE_MIB,
	    json_integer((json_int_t)s->disk_mib));
	if (s->image[0])
		json_object_set_new(req, J_IMAGE, json_string(s->image));
	return req;
}

int
sandbox_open_disk(const struct sandbox *s, struct cap_err *err)
{
	int dfd, fd;

	dfd = openat(sb.fd, s->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "sandbox %s: cannot "
		    "open its directory: %s", s->name, strerror(errno));
	if (disk_locked(dfd)) {
		close(dfd);
		return cap_err_set(err, EBUSY, E_CONFLICT, "sandbox %s: its disk "
		    "is in use by another process (a VM capsuled could not "
		    "take over?)", s->name);
	}
	fd = disk_open(dfd, DISK_FILE, err);
	close(dfd);
	if (fd < 0)
		cap_err_wrap(err, "sandbox %s", s->name);
	return fd;
}

int
sandbox_remove(uid_t uid, const char *ref, json_t **out, struct cap_err *err)
{
	struct sandbox *s = sandbox_find(uid, ref);
	char image[OCI_DIGEST_LEN + 1], tmp[64];
	const char *vm;
	int r;

	if (s == NULL)
		return cap_err_set(err, ENOENT, E_NOT_FOUND, "no sandbox %.80s",
		    ref);
	if ((vm = sb.vm_of(s->id, NULL)) != NULL)
		return cap_err_set(err, EBUSY, E_CONFLICT, "sandbox %s is "
		    "running (vm %s); stop it first", s->name, vm);
	{
		int dfd = openat(sb.fd, s->id, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC);
		int busy = dfd >= 0 && disk_locked(dfd);

		if (dfd >= 0)
			close(dfd);
		if (busy)
			return cap_err_set(err, EBUSY, E_CONFLICT, "sandbox %s: "
			    "its disk is in use by another process (a VM "
			    "capsuled could not take over?)", s->name);
	}
	/* Out of place in one step, then away: a removal cut short is a
	 * leftover the next start-up removes, never a half sandbox. */
	snprintf(tmp, sizeof(tmp), SANDBOX_REMOVING "%s", s->id);
	if (renameat(sb.fd, s->id, sb.fd, tmp) < 0) {
		r = -errno;
		return cap_err_set(err, -r, E_INTERNAL, "cannot remove sandbox "
		    "%s: %s", s->name, strerror(-r));
	}
	fsync(sb.fd);
	if ((r = rmtree_at(sb.fd, tmp)) < 0)
		log_warn("sandboxes: cannot remove %s/%s: %s (it goes at the "
		    "next start)", sb.dir, tmp, strerror(-r));
	log_info("sandbox %s (%s) removed", s->name, s->id);
	*out = json_pack("{s:s, s:s}", J_ID, s->id, J_NAME, s->name);
	for (size_t i = 0; i < sb.n; i++)
		if (sb.v[i] == s) {
			sb.v[i] = sb.v[--sb.n];
			break;
		}
	memcpy(image, s->image, sizeof(image));
	sandbox_free(s);
	/* Its image goes too if only this sandbox kept it. */
	if (image[0])
		image_release(image);
	return 0;
}

uint64_t
sandbox_disk_used(const struct sandbox *s)
{
	uint64_t used = 0;
	int dfd, fd;

	/* Only its size: no lock asked for, the VM may be running. */
	if ((dfd = openat(sb.fd, s->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) >= 0) {
		if ((fd = openat(dfd, DISK_FILE, O_RDONLY | O_NOFOLLOW |
		    O_CLOEXEC)) >= 0) {
			used = disk_used(fd);
			close(fd);
		}
		close(dfd);
	}
	return used;
}

json_t *
sandbox_json(const struct sandbox *s)
{
	const char *state = "stopped";
	const char *vm = sb.vm_of(s->id, &state);
	uint64_t used = sandbox_disk_used(s);
	json_t *o;

	o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:O}", J_ID, s->id,
	    J_NAME, s->name, J_OWNER_UID, (json_int_t)s->owner, J_CREATED_AT,
	    (json_int_t)s->created_at, J_STATE, vm != NULL ? state :
	    "stopped", J_DISK_SIZE_MIB, (json_int_t)s->disk_mib,
	    J_DISK_USED, (json_int_t)used, J_CONFIG, s->start);
	if (o == NULL)
		return NULL;
	if (s->image[0])
		json_object_set_new(o, J_IMAGE, json_string(s->image));
	if (vm != NULL)
		json_object_set_new(o, J_VM_ID, json_string(vm));
	return o;
}

json_t *
sandbox_list_json(uid_t uid)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < sb.n; i++)
		if (uid == 0 || sb.v[i]->owner == uid)
			json_array_append_new(a, sandbox_json(sb.v[i]));
	return a;
}

uint64_t
sandbox_disk_total(uid_t uid)
{
	uint64_t n = 0;

	for (size_t i = 0; i < sb.n; i++)
		if (sb.v[i]->owner == uid)
			n += sb.v[i]->disk_mib;
	return n;
}

int
sandbox_image_in_use(const char *digest, uid_t uid)
{
	for (size_t i = 0; i < sb.n; i++)
		if ((uid == 0 || sb.v[i]->owner == uid) &&
		    strcmp(sb.v[i]->image, digest) == 0)
			return 1;
	return 0;
}
