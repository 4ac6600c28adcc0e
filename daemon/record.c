/*
 * record.c — the persisted VM record (see record.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "proto.h"
#include "record.h"
#include "util.h"

/* The record's own keys (a file format of capsuled's, not a wire format:
 * nobody else reads it). */
#define R_FORMAT	"format"
#define R_VM_ID		"vm_id"
#define R_BACKEND	"backend"
#define R_BOOT_ID	"boot_id"
#define R_PID		"pid"
#define R_PID_START	"pid_start"
#define R_PID_UID	"pid_uid"
#define R_OWNER_UID	"owner_uid"
#define R_CREATED_AT	"created_at"
#define R_MADE		"made"
#define R_DIR		"dir"
#define R_DIR_DEV	"dir_dev"
#define R_DIR_INO	"dir_ino"
#define R_NAME		"name"
#define R_DEV		"dev"
#define R_INO		"ino"
#define R_BTIME		"btime"
#define R_DIR_BTIME	"dir_btime"
#define R_TYPE		"type"
#define R_TYPE_SOCKET	"socket"
#define R_TYPE_FILE	"file"
#define R_TYPE_DIR	"dir"

int
record_id_ok(const char *s)
{
	if (strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

static int
boot_id_ok(const char *s)
{
	return record_id_ok(s);	/* the kernel prints it the same way */
}

static const char *
type_name(mode_t t)
{
	return t == S_IFSOCK ? R_TYPE_SOCKET : t == S_IFDIR ? R_TYPE_DIR :
	    R_TYPE_FILE;
}

/* 64-bit values (dev, ino, start time) travel as JSON integers bit for
 * bit: whatever the sign, they come back as they went. */
static json_t *
u64(uint64_t v)
{
	return json_integer((json_int_t)(int64_t)v);
}

char *
record_encode(const struct record *r)
{
	json_t *o, *made = json_array();
	char *s;

	for (size_t i = 0; made != NULL && i < r->nmade; i++) {
		const struct record_made *m = &r->made[i];

		json_array_append_new(made, json_pack(
		    "{s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:s}",
		    R_DIR, m->dir, R_DIR_DEV, u64(m->dir_dev),
		    R_DIR_INO, u64(m->dir_ino), R_DIR_BTIME, u64(m->dir_btime),
		    R_NAME, m->name, R_DEV, u64(m->dev), R_INO, u64(m->ino),
		    R_BTIME, u64(m->btime), R_TYPE, type_name(m->type)));
	}
	o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:o, s:I, s:I, s:I, s:o}",
	    R_FORMAT, RECORD_FORMAT, R_VM_ID, r->vm_id, R_BACKEND, r->backend,
	    R_BOOT_ID, r->boot_id, R_PID, (int)r->proc.pid,
	    R_PID_START, u64(r->proc.start), R_PID_UID,
	    (json_int_t)r->proc.uid, R_OWNER_UID, (json_int_t)r->owner_uid,
	    R_CREATED_AT, (json_int_t)r->created_at, R_MADE, made);
	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

static int
bad(struct cap_err *err, const char *field, const char *why)
{
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "record field \"%s\" %s", field, why);
}

static int
get_str(json_t *o, const char *key, size_t max, const char **out,
    struct cap_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		return bad(err, key, "is missing or not a string");
	if (json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return bad(err, key, "is too long or holds a NUL byte");
	*out = json_string_value(v);
	return 0;
}

static int
get_int(json_t *o, const char *key, long long lo, long long hi,
    long long *out, struct cap_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return bad(err, key, "is missing or out of range");
	*out = json_integer_value(v);
	return 0;
}

static int
get_u64(json_t *o, const char *key, uint64_t *out, struct cap_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		return bad(err, key, "is missing or not an integer");
	*out = (uint64_t)(int64_t)json_integer_value(v);
	return 0;
}

/* Absent: 0 (birth times are not known on every file system). */
static int
opt_u64(json_t *o, const char *key, uint64_t *out, struct cap_err *err)
{
	*out = 0;
	if (json_object_get(o, key) == NULL)
		return 0;
	return get_u64(o, key, out, err);
}

static int
decode_made(json_t *e, struct record_made *m, struct cap_err *err)
{
	const char *dir, *name, *type;
	uint64_t v[6];
	int r;

	if (!json_is_object(e))
		return bad(err, R_MADE, "holds something that is not an object");
	if ((r = get_str(e, R_DIR, PATH_MAX - 1, &dir, err)) < 0 ||
	    (r = get_str(e, R_NAME, NAME_MAX, &name, err)) < 0 ||
	    (r = get_str(e, R_TYPE, 16, &type, err)) < 0 ||
	    (r = get_u64(e, R_DIR_DEV, &v[0], err)) < 0 ||
	    (r = get_u64(e, R_DIR_INO, &v[1], err)) < 0 ||
	    (r = get_u64(e, R_DEV, &v[2], err)) < 0 ||
	    (r = get_u64(e, R_INO, &v[3], err)) < 0 ||
	    (r = opt_u64(e, R_DIR_BTIME, &v[4], err)) < 0 ||
	    (r = opt_u64(e, R_BTIME, &v[5], err)) < 0)
		return r;
	if (dir[0] != '/')
		return bad(err, R_DIR, "is not an absolute path");
	if (name[0] == '\0' || strchr(name, '/') != NULL ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return bad(err, R_NAME, "is not a single file name");
	if (strcmp(type, R_TYPE_SOCKET) == 0)
		m->type = S_IFSOCK;
	else if (strcmp(type, R_TYPE_DIR) == 0)
		m->type = S_IFDIR;
	else if (strcmp(type, R_TYPE_FILE) == 0)
		m->type = S_IFREG;
	else
		return bad(err, R_TYPE, "is not socket, file or dir");
	m->dir = strdup(dir);
	m->name = strdup(name);
	if (m->dir == NULL || m->name == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	m->dir_dev = (dev_t)v[0];
	m->dir_ino = (ino_t)v[1];
	m->dev = (dev_t)v[2];
	m->ino = (ino_t)v[3];
	m->dir_btime = v[4];
	m->btime = v[5];
	return 0;
}

int
record_decode(const char *buf, size_t len, struct record *r,
    struct cap_err *err)
{
	const char *s;
	long long n;
	json_t *o, *made, *e;
	size_t i;
	int rc;

	memset(r, 0, sizeof(*r));
	if (len > RECORD_MAX_BYTES)
		return cap_err_set(err, EFBIG, E_INVALID_ARGUMENT,
		    "record is larger than %d bytes", RECORD_MAX_BYTES);
	o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "record is not a JSON object");
	}
	if ((rc = get_int(o, R_FORMAT, RECORD_FORMAT, RECORD_FORMAT, &n,
	    err)) < 0)
		goto out;
	if ((rc = get_str(o, R_VM_ID, 36, &s, err)) < 0)
		goto out;
	if (!record_id_ok(s)) {
		rc = bad(err, R_VM_ID, "is not a vm_id");
		goto out;
	}
	memcpy(r->vm_id, s, 37);
	if ((rc = get_str(o, R_BACKEND, sizeof(r->backend) - 1, &s, err)) < 0)
		goto out;
	snprintf(r->backend, sizeof(r->backend), "%s", s);
	if ((rc = get_str(o, R_BOOT_ID, PROCID_BOOT_ID_LEN, &s, err)) < 0)
		goto out;
	if (!boot_id_ok(s)) {
		rc = bad(err, R_BOOT_ID, "is not a boot id");
		goto out;
	}
	memcpy(r->boot_id, s, PROCID_BOOT_ID_LEN + 1);
	if ((rc = get_int(o, R_PID, 2, INT_MAX, &n, err)) < 0)
		goto out;
	r->proc.pid = (pid_t)n;
	if ((rc = get_u64(o, R_PID_START, &r->proc.start, err)) < 0)
		goto out;
	if ((rc = get_int(o, R_PID_UID, 0, UINT32_MAX - 1, &n, err)) < 0)
		goto out;
	r->proc.uid = (uid_t)n;
	if ((rc = get_int(o, R_OWNER_UID, 0, UINT32_MAX - 1, &n, err)) < 0)
		goto out;
	r->owner_uid = (uid_t)n;
	if ((rc = get_int(o, R_CREATED_AT, 0, LLONG_MAX, &r->created_at,
	    err)) < 0)
		goto out;
	made = json_object_get(o, R_MADE);
	if (!json_is_array(made) || json_array_size(made) > VMFILES_MAX) {
		rc = bad(err, R_MADE, "is not an array of at most a few "
		    "entries");
		goto out;
	}
	json_array_foreach(made, i, e) {
		if ((rc = decode_made(e, &r->made[i], err)) < 0) {
			r->nmade = i + 1;	/* free what it holds */
			goto out;
		}
		r->nmade = i + 1;
	}
	rc = 0;
out:
	json_decref(o);
	if (rc < 0)
		record_free(r);
	return rc;
}

void
record_free(struct record *r)
{
	for (size_t i = 0; i < r->nmade; i++) {
		free(r->made[i].dir);
		free(r->made[i].name);
	}
	r->nmade = 0;
}

int
record_write(int dfd, const struct record *r, struct cap_err *err)
{
	_cleanup_free_ char *s = record_encode(r);
	size_t len, off = 0;
	int fd, e = 0;

	if (s == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	len = strlen(s);
	/* Only capsuled writes here, so a leftover tmp is its own. */
	unlinkat(dfd, RECORD_TMP, 0);
	fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "cannot write the "
		    "VM's state record: %s", strerror(errno));
	while (off < len && e == 0) {
		ssize_t n = write(fd, s + off, len - off);

		if (n < 0 && errno != EINTR)
			e = errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (e == 0 && fsync(fd) < 0)
		e = errno;
	if (close(fd) < 0 && e == 0)
		e = errno;
	if (e == 0 && renameat(dfd, RECORD_TMP, dfd, RECORD_NAME) < 0)
		e = errno;
	if (e != 0) {
		unlinkat(dfd, RECORD_TMP, 0);
		return cap_err_set(err, e, E_INTERNAL, "cannot write the VM's "
		    "state record: %s", strerror(e));
	}
	return 0;
}

int
record_read(int dfd, struct record *r, struct cap_err *err)
{
	char *buf;
	struct stat st;
	ssize_t n;
	int fd, rc;

	memset(r, 0, sizeof(*r));
	fd = openat(dfd, RECORD_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd < 0)
		return cap_err_set(err, errno, E_INVALID_ARGUMENT, "cannot open "
		    "the record: %s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > RECORD_MAX_BYTES) {
		close(fd);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "the record "
		    "is not a regular file of at most %d bytes",
		    RECORD_MAX_BYTES);
	}
	if ((buf = malloc(RECORD_MAX_BYTES + 1)) == NULL) {
		close(fd);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	n = read(fd, buf, RECORD_MAX_BYTES + 1);
	close(fd);
	if (n < 0)
		rc = cap_err_set(err, errno, E_INVALID_ARGUMENT, "cannot read "
		    "the record: %s", strerror(errno));
	else
		rc = record_decode(buf, (size_t)n, r, err);
	free(buf);
	return rc;
}
