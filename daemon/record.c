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
#include "ctl.h"
#include "oci.h"

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
#define R_OWNER_GID	"owner_gid"
#define R_OWNER_GROUPS	"owner_groups"
#define R_HV_EXE	"hv_exe"
#define R_CONSOLE	"console"
#define R_SPEC		"spec"
/* spec */
#define S_KERNEL	"kernel_path"
#define S_INITRD	"initrd_path"
#define S_ROOTFS	"rootfs_path"
#define S_KERNEL_NAMED	"kernel_named"
#define S_INITRD_NAMED	"initrd_named"
#define S_ROOTFS_NAMED	"rootfs_named"
#define S_IMAGE		"image"
#define S_BOOT_ARGS	"boot_args"
#define S_ARCH		"arch"
#define S_VCPUS		"vcpus"
#define S_MEMORY_MIB	"memory_mib"
#define S_GUEST_PORT	"guest_port"
#define S_LAUNCH	"launch_seconds"
#define S_DISK_MIB	"disk_mib"
#define S_IDLE		"idle_seconds"
#define S_POOLED	"pooled"
#define S_STOP_ON_DISC	"stop_on_disconnect"
#define S_RUN_DIR	"run_dir"
#define S_RUN_DIR_NAMED	"run_dir_named"
#define S_PROXY		"proxy_socket_path"
#define S_PROXY_NAMED	"proxy_named"
#define S_CONSOLE	"console_log_path"
#define S_CONSOLE_NAMED	"console_named"
#define S_CONSOLE_MAX	"console_max"
#define S_PORTS		"serial_ports"
#define S_PORT_NAME	"name"
#define S_PORT_PATH	"path"
#define S_NETWORK	"network"	/* absent: none (older records) */
#define S_PUBLISH	"publish"
#define S_VOLUMES	"volumes"
#define S_SANDBOX	"sandbox"

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

static json_t *
ident_json(const struct caller_ident *id)
{
	return json_pack("{s:o, s:o, s:o}", R_DEV, u64(id->dev), R_INO,
	    u64(id->ino), R_BTIME, u64(id->btime));
}

static json_t *
spec_json(const struct vm_spec *s)
{
	json_t *o, *ports = json_array();

	for (unsigned i = 0; ports != NULL && i < s->nports; i++)
		json_array_append_new(ports, json_pack("{s:s, s:s}",
		    S_PORT_NAME, s->port_names[i], S_PORT_PATH,
		    s->port_paths[i]));
	o = json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:I, s:I, s:I, s:I, "
	    "s:b, s:s, s:b, s:s, s:b, s:s, s:b, s:o, s:o}",
	    S_KERNEL, s->kernel, S_INITRD, s->initrd, S_ROOTFS, s->rootfs,
	    S_KERNEL_NAMED, s->kernel_named, S_INITRD_NAMED, s->initrd_named,
	    S_ROOTFS_NAMED, s->rootfs_named, S_VCPUS, (json_int_t)s->vcpus,
	    S_MEMORY_MIB, (json_int_t)s->memory_mib, S_GUEST_PORT,
	    (json_int_t)s->guest_port, S_LAUNCH, (json_int_t)s->launch_seconds,
	    S_STOP_ON_DISC, s->stop_on_disconnect, S_RUN_DIR, s->run_dir,
	    S_RUN_DIR_NAMED, s->run_dir_named, S_PROXY, s->proxy_path,
	    S_PROXY_NAMED, s->proxy_place == VM_PLACE_NAMED, S_CONSOLE,
	    s->console_path, S_CONSOLE_NAMED,
	    s->console_place == VM_PLACE_NAMED, S_CONSOLE_MAX,
	    u64(s->console_max), S_PORTS, ports);
	if (o != NULL && s->boot_args != NULL)
		json_object_set_new(o, S_BOOT_ARGS, json_string(s->boot_args));
	if (o != NULL)
		json_object_set_new(o, S_ARCH,
		    json_string(ctl_arch_name(s->arch)));
	if (o != NULL)
		json_object_set_new(o, S_DISK_MIB, u64(s->disk_mib));
	if (o != NULL && s->idle_seconds > 0)
		json_object_set_new(o, S_IDLE,
		    json_integer((json_int_t)s->idle_seconds));
	if (o != NULL && s->pooled)
		json_object_set_new(o, S_POOLED, json_true());
	if (o != NULL && s->image != NULL)
		json_object_set_new(o, S_IMAGE, json_string(s->image));
	if (o != NULL && s->sandbox != NULL)
		json_object_set_new(o, S_SANDBOX, json_string(s->sandbox));
	if (o != NULL) {
		json_object_set_new(o, S_NETWORK,
		    ctl_network_json(&s->network));
		json_object_set_new(o, S_PUBLISH, ctl_publish_json(s->publish,
		    s->npublish));
		json_object_set_new(o, S_VOLUMES, volume_json(s->volumes,
		    s->nvolumes));
	}
	return o;
}

static int
encode_v2(json_t *o, const struct record *r)
{
	json_t *groups = json_array();

	for (size_t i = 0; groups != NULL && i < r->owner_ngroups; i++)
		json_array_append_new(groups,
		    json_integer((json_int_t)r->owner_groups[i]));
	if (json_object_set_new(o, R_OWNER_GID,
	    json_integer((json_int_t)r->owner_gid)) < 0 ||
	    json_object_set_new(o, R_OWNER_GROUPS, groups) < 0 ||
	    json_object_set_new(o, R_HV_EXE, ident_json(&r->hv_exe)) < 0 ||
	    json_object_set_new(o, R_CONSOLE, ident_json(&r->console)) < 0 ||
	    json_object_set_new(o, R_SPEC, spec_json(&r->spec)) < 0)
		return -ENOMEM;
	return 0;
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
	    R_FORMAT, r->have_spec ? RECORD_FORMAT : 1, R_VM_ID, r->vm_id,
	    R_BACKEND, r->backend,
	    R_BOOT_ID, r->boot_id, R_PID, (int)r->proc.pid,
	    R_PID_START, u64(r->proc.start), R_PID_UID,
	    (json_int_t)r->proc.uid, R_OWNER_UID, (json_int_t)r->owner_uid,
	    R_CREATED_AT, (json_int_t)r->created_at, R_MADE, made);
	if (o == NULL)
		return NULL;
	if (r->have_spec && encode_v2(o, r) < 0) {
		json_decref(o);
		return NULL;
	}
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

static int
get_bool(json_t *o, const char *key, int *out, struct cap_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_boolean(v))
		return bad(err, key, "is missing or not true/false");
	*out = json_is_true(v);
	return 0;
}

static int
get_path(json_t *o, const char *key, size_t max, char **out,
    struct cap_err *err)
{
	const char *s;
	int r;

	if ((r = get_str(o, key, max, &s, err)) < 0)
		return r;
	if (s[0] != '/')
		return bad(err, key, "is not an absolute path");
	if ((*out = strdup(s)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

static int
decode_ident(json_t *o, const char *key, struct caller_ident *id,
    struct cap_err *err)
{
	json_t *v = json_object_get(o, key);
	uint64_t dev, ino;
	int r;

	if (!json_is_object(v))
		return bad(err, key, "is missing or not an object");
	if ((r = get_u64(v, R_DEV, &dev, err)) < 0 ||
	    (r = get_u64(v, R_INO, &ino, err)) < 0 ||
	    (r = opt_u64(v, R_BTIME, &id->btime, err)) < 0)
		return r;
	id->dev = (dev_t)dev;
	id->ino = (ino_t)ino;
	return 0;
}

static int
decode_spec(json_t *o, struct vm_spec *s, struct cap_err *err)
{
	json_t *ports, *e, *v;
	long long n;
	int b, r;
	size_t i;

	if (!json_is_object(o))
		return bad(err, R_SPEC, "is not an object");
	if ((r = get_path(o, S_KERNEL, PATH_MAX - 1, &s->kernel, err)) < 0 ||
	    (r = get_path(o, S_INITRD, PATH_MAX - 1, &s->initrd, err)) < 0 ||
	    (r = get_path(o, S_ROOTFS, PATH_MAX - 1, &s->rootfs, err)) < 0 ||
	    (r = get_path(o, S_RUN_DIR, PATH_MAX - 1, &s->run_dir, err)) < 0 ||
	    (r = get_path(o, S_PROXY, CTL_MAX_SOCKET_PATH, &s->proxy_path,
	    err)) < 0 ||
	    (r = get_path(o, S_CONSOLE, PATH_MAX - 1, &s->console_path,
	    err)) < 0 ||
	    (r = get_bool(o, S_KERNEL_NAMED, &s->kernel_named, err)) < 0 ||
	    (r = get_bool(o, S_INITRD_NAMED, &s->initrd_named, err)) < 0 ||
	    (r = get_bool(o, S_ROOTFS_NAMED, &s->rootfs_named, err)) < 0 ||
	    (r = get_bool(o, S_STOP_ON_DISC, &s->stop_on_disconnect,
	    err)) < 0 ||
	    (r = get_bool(o, S_RUN_DIR_NAMED, &s->run_dir_named, err)) < 0)
		return r;
	if ((r = get_bool(o, S_PROXY_NAMED, &b, err)) < 0)
		return r;
	s->proxy_place = b ? VM_PLACE_NAMED : VM_PLACE_RUN_DIR;
	if ((r = get_bool(o, S_CONSOLE_NAMED, &b, err)) < 0)
		return r;
	s->console_place = b ? VM_PLACE_NAMED : VM_PLACE_RUN_DIR;
	/* Records from before guests had an architecture are the host's. */
	s->arch = ctl_arch_host();
	if (json_object_get(o, S_ARCH) != NULL) {
		const char *arch;

		if ((r = get_str(o, S_ARCH, 16, &arch, err)) < 0)
			return r;
		if (ctl_arch_parse(arch, &s->arch) < 0)
			return bad(err, S_ARCH, "is not an architecture");
	}
	if (json_object_get(o, S_IMAGE) != NULL) {
		const char *img;

		if ((r = get_str(o, S_IMAGE, OCI_DIGEST_LEN, &img, err)) < 0)
			return r;
		if (!oci_digest_ok(img))
			return bad(err, S_IMAGE, "is not an image digest");
		if ((s->image = strdup(img)) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
	}
	if (json_object_get(o, S_SANDBOX) != NULL) {
		const char *sb;

		if ((r = get_str(o, S_SANDBOX, 36, &sb, err)) < 0)
			return r;
		if (!record_id_ok(sb))
			return bad(err, S_SANDBOX, "is not a sandbox id");
		if ((s->sandbox = strdup(sb)) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
	}
	if ((r = get_int(o, S_VCPUS, 1, 4096, &n, err)) < 0)
		return r;
	s->vcpus = (unsigned)n;
	if ((r = get_int(o, S_MEMORY_MIB, CTL_MIN_MEMORY_MIB, 1LL << 40, &n,
	    err)) < 0)
		return r;
	s->memory_mib = (uint64_t)n;
	if ((r = get_int(o, S_GUEST_PORT, 1, UINT32_MAX, &n, err)) < 0)
		return r;
	s->guest_port = (uint32_t)n;
	if ((r = get_int(o, S_LAUNCH, 1, CTL_MAX_LAUNCH_SECONDS, &n, err)) < 0)
		return r;
	s->launch_seconds = (unsigned)n;
	/* Records from before disks had a size: the default. */
	s->disk_mib = CTL_DEFAULT_DISK_MIB;
	if (json_object_get(o, S_DISK_MIB) != NULL) {
		if ((r = get_int(o, S_DISK_MIB, CTL_MIN_DISK_MIB,
		    (long long)CTL_MAX_DISK_MIB, &n, err)) < 0)
			return r;
		s->disk_mib = (uint64_t)n;
	}
	if (json_object_get(o, S_POOLED) != NULL &&
	    (r = get_bool(o, S_POOLED, &s->pooled, err)) < 0)
		return r;
	if (json_object_get(o, S_IDLE) != NULL) {
		if ((r = get_int(o, S_IDLE, 1, CTL_MAX_IDLE_SECONDS, &n,
		    err)) < 0)
			return r;
		s->idle_seconds = (unsigned)n;
	}
	if ((r = get_u64(o, S_CONSOLE_MAX, &s->console_max, err)) < 0)
		return r;
	if ((v = json_object_get(o, S_BOOT_ARGS)) != NULL) {
		const char *ba;

		if ((r = get_str(o, S_BOOT_ARGS, CTL_MAX_BOOT_ARGS, &ba,
		    err)) < 0)
			return r;
		if (strpbrk(ba, "\r\n") != NULL)
			return bad(err, S_BOOT_ARGS, "is not one line");
		if ((s->boot_args = strdup(ba)) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
	}
	ports = json_object_get(o, S_PORTS);
	if (!json_is_array(ports) ||
	    json_array_size(ports) > CTL_MAX_SERIAL_PORTS)
		return bad(err, S_PORTS, "is not a short array");
	json_array_foreach(ports, i, e) {
		const char *name;

		if (!json_is_object(e) ||
		    (r = get_str(e, S_PORT_NAME, CTL_MAX_PORT_NAME, &name,
		    err)) < 0)
			return r < 0 ? r : bad(err, S_PORTS, "holds a non-object");
		if (!ctl_port_name_ok(name, strlen(name)))
			return bad(err, S_PORT_NAME, "is not a port name");
		if ((s->port_names[i] = strdup(name)) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		s->nports = (unsigned)i + 1;
		if ((r = get_path(e, S_PORT_PATH, CTL_MAX_SOCKET_PATH,
		    &s->port_paths[i], err)) < 0)
			return r;
	}
	/* The same checks as a request's: the record is read as untrusted. */
	if ((r = ctl_parse_network(json_object_get(o, S_NETWORK), &s->network,
	    err)) < 0 ||
	    (r = ctl_parse_publish(json_object_get(o, S_PUBLISH), s->publish,
	    &s->npublish, err)) < 0 ||
	    (r = volume_parse_json(json_object_get(o, S_VOLUMES), s->volumes,
	    &s->nvolumes, err)) < 0)
		return cap_err_wrap(err, "%s", R_SPEC);
	return 0;
}

static int
decode_v2(json_t *o, struct record *r, struct cap_err *err)
{
	json_t *groups, *g;
	long long n;
	size_t i;
	int rc;

	if ((rc = get_int(o, R_OWNER_GID, 0, UINT32_MAX - 1, &n, err)) < 0)
		return rc;
	r->owner_gid = (gid_t)n;
	groups = json_object_get(o, R_OWNER_GROUPS);
	if (!json_is_array(groups) ||
	    json_array_size(groups) > CALLER_MAX_GROUPS)
		return bad(err, R_OWNER_GROUPS, "is not an array of groups");
	json_array_foreach(groups, i, g) {
		if (!json_is_integer(g) || json_integer_value(g) < 0 ||
		    json_integer_value(g) >= UINT32_MAX)
			return bad(err, R_OWNER_GROUPS, "holds a bad gid");
		r->owner_groups[i] = (gid_t)json_integer_value(g);
		r->owner_ngroups = i + 1;
	}
	if ((rc = decode_ident(o, R_HV_EXE, &r->hv_exe, err)) < 0 ||
	    (rc = decode_ident(o, R_CONSOLE, &r->console, err)) < 0)
		return rc;
	r->have_spec = 1;	/* so that record_free frees what it got */
	return decode_spec(json_object_get(o, R_SPEC), &r->spec, err);
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
	if ((rc = get_int(o, R_FORMAT, 1, RECORD_FORMAT, &n, err)) < 0)
		goto out;
	r->format = (int)n;
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
	if (r->format >= 2 && (rc = decode_v2(o, r, err)) < 0)
		goto out;
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
	if (r->have_spec)
		vmspec_free(&r->spec);
	r->have_spec = 0;
}

int
record_write(int dfd, const struct record *r, struct cap_err *err)
{
	_cleanup_free_ char *s = record_encode(r);
	int e;

	if (s == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	if ((e = util_write_atomic(dfd, RECORD_NAME, s, strlen(s))) < 0)
		return cap_err_set(err, -e, E_INTERNAL, "cannot write the VM's "
		    "state record: %s", strerror(-e));
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
