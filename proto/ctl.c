/*
 * ctl.c — control request parsing and validation (see ctl.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "proto.h"

int
ctl_parse_request(const char *line, size_t len, json_t **req, const char **op,
    struct cap_err *err)
{
	json_error_t jerr;
	json_t *o, *v;

	*req = NULL;
	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL)
		return cap_err_set(err, EINVAL, E_INVALID_JSON,
		    "request is not valid JSON: %s (line %d, column %d)",
		    jerr.text, jerr.line, jerr.column);
	if (!json_is_object(o)) {
		json_decref(o);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "request must be a JSON object with an \"%s\"", J_OP);
	}
	v = json_object_get(o, J_OP);
	if (!json_is_string(v)) {
		/* Keep the object so the error reply can echo its id. */
		*req = o;
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "request needs an \"%s\" string, e.g. {\"%s\":\"%s\"}",
		    J_OP, J_OP, OP_PING);
	}
	*req = o;
	*op = json_string_value(v);
	return 0;
}

int
ctl_check_fields(json_t *req, const char *op, const char *const *known,
    struct cap_err *err)
{
	char names[512] = "";
	const char *key;
	json_t *v;
	size_t n = 0, used = 0;

	json_object_foreach(req, key, v) {
		const char *const *k;
		int ok = strcmp(key, J_OP) == 0 || strcmp(key, J_ID) == 0;

		for (k = known; !ok && *k != NULL; k++)
			ok = strcmp(key, *k) == 0;
		if (ok)
			continue;
		n++;
		if (used < sizeof(names) - 1) {
			int w = snprintf(names + used, sizeof(names) - used,
			    "%s\"%.64s\"", used ? ", " : "", key);
			if (w > 0)
				used += (size_t)w;
		}
	}
	if (n == 0)
		return 0;
	return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
	    "unknown field%s %s in %s", n > 1 ? "s" : "", names, op);
}

/* An optional string field; absent or null leaves *out NULL. */
static int
opt_string(json_t *req, const char *field, size_t max, char **out,
    struct cap_err *err)
{
	json_t *v = json_object_get(req, field);
	const char *s;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be a string", field);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must not contain NUL bytes", field);
	if (json_string_length(v) > max)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "\"%s\" is %zu bytes long; the limit is %zu", field,
		    json_string_length(v), max);
	if ((*out = strdup(s)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

static int
opt_path(json_t *req, const char *field, size_t max, char **out,
    struct cap_err *err)
{
	int r;

	if ((r = opt_string(req, field, max, out, err)) < 0 || *out == NULL)
		return r;
	if ((*out)[0] != '/')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be an absolute path, not \"%s\"", field, *out);
	return 0;
}

static int
opt_uint(json_t *req, const char *field, uint64_t lo, uint64_t hi,
    uint64_t def, uint64_t *out, const char *unit, struct cap_err *err)
{
	json_t *v = json_object_get(req, field);

	*out = def;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < lo ||
	    (uint64_t)json_integer_value(v) > hi)
		return cap_err_set(err, ERANGE, E_INVALID_ARGUMENT,
		    "\"%s\" must be an integer from %llu to %llu%s", field,
		    (unsigned long long)lo, (unsigned long long)hi, unit);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int
ctl_get_string(json_t *req, const char *field, int required,
    const char **out, struct cap_err *err)
{
	json_t *v = json_object_get(req, field);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" is missing", field);
		return 0;
	}
	if (!json_is_string(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be a string", field);
	if (strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) == 0 || json_string_length(v) > PATH_MAX)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be 1 to %d bytes without NUL", field,
		    PATH_MAX);
	*out = json_string_value(v);
	return 0;
}

int
ctl_get_bool(json_t *req, const char *field, int *out, struct cap_err *err)
{
	json_t *v = json_object_get(req, field);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be true or false", field);
	*out = json_is_true(v);
	return 0;
}

/* cap_show, in double quotes. */
static void
show_quoted(const char *s, size_t len, char *out, size_t cap)
{
	out[0] = '"';
	cap_show(s, len, out + 1, cap - 2);
	strcat(out, "\"");
}

int
ctl_port_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > CTL_MAX_PORT_NAME)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		    s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

/* "serial_ports": ["name", ...]. Each name becomes a guest device and a
 * file name on the host, so the alphabet is small on purpose. */
static int
parse_serial_ports(json_t *req, struct ctl_start *s, struct cap_err *err)
{
	json_t *v = json_object_get(req, J_SERIAL_PORTS), *e;
	char shown[CTL_MAX_PORT_NAME + 16];
	size_t i;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be an array of port names, e.g. "
		    "[\"my.port\"]", J_SERIAL_PORTS);
	if (json_array_size(v) > CTL_MAX_SERIAL_PORTS)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "\"%s\" has %zu names; the limit is %d", J_SERIAL_PORTS,
		    json_array_size(v), CTL_MAX_SERIAL_PORTS);
	json_array_foreach(v, i, e) {
		const char *name = json_string_value(e);
		size_t len = json_string_length(e);

		if (!json_is_string(e))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\"[%zu] must be a string (a port name)",
			    J_SERIAL_PORTS, i);
		cap_show(name, len, shown, sizeof(shown));
		if (!ctl_port_name_ok(name, len))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\"[%zu] \"%s\" is not a valid port name: "
			    "use 1 to %d of a-z, 0-9, '.', '_' and '-'",
			    J_SERIAL_PORTS, i, shown, CTL_MAX_PORT_NAME);
		if (strcmp(name, AGENT_PORT_NAME) == 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\"[%zu] \"%s\" is capsule's own agent port",
			    J_SERIAL_PORTS, i, shown);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->serial_ports[j], name) == 0)
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" names \"%s\" "
				    "twice", J_SERIAL_PORTS, shown);
		if ((s->serial_ports[i] = strdup(name)) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		s->nserial_ports++;
	}
	return 0;
}

int
ctl_parse_network(json_t *v, struct netpol *p, struct cap_err *err)
{
	char shown[NETPOL_MAX_ENTRY_LEN + 16];
	const char *key;
	json_t *e, *list = NULL;
	size_t i;
	int mode, r;

	memset(p, 0, sizeof(*p));
	if (v == NULL || json_is_null(v))
		return 0;
	strcpy(shown, "a non-string");
	if (json_is_string(v)) {
		show_quoted(json_string_value(v), json_string_length(v), shown,
		    sizeof(shown));
		mode = netpol_mode_parse(json_string_value(v));
	} else if (json_is_object(v)) {
		json_object_foreach(v, key, e)
			if (strcmp(key, J_NET_MODE) != 0 &&
			    strcmp(key, J_NET_ALLOW) != 0) {
				cap_show(key, strlen(key), shown,
				    sizeof(shown));
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" has an unknown "
				    "field \"%s\" (known: %s, %s)", J_NETWORK,
				    shown, J_NET_MODE, J_NET_ALLOW);
			}
		e = json_object_get(v, J_NET_MODE);
		if (json_is_string(e))
			show_quoted(json_string_value(e), json_string_length(e),
			    shown, sizeof(shown));
		mode = json_is_string(e) ? netpol_mode_parse(
		    json_string_value(e)) : -1;
		list = json_object_get(v, J_NET_ALLOW);
	} else {
		mode = -1;
	}
	if (mode < 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" "
		    "mode %s is not one of \"%s\", \"%s\" or {\"%s\":\"%s\","
		    "\"%s\":[...]}", J_NETWORK, shown, NETMODE_NONE,
		    NETMODE_NAT, J_NET_MODE, NETMODE_ALLOW, J_NET_ALLOW);
	p->mode = (enum netpol_mode)mode;
	if (list == NULL || json_is_null(list))
		return 0;
	if (mode != NETPOL_ALLOW)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\": "
		    "\"%s\" goes with mode \"%s\" only", J_NETWORK,
		    J_NET_ALLOW, NETMODE_ALLOW);
	if (!json_is_array(list))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\".%s "
		    "must be an array of strings, e.g. [\"pypi.org\", "
		    "\"*.github.com:22\"]", J_NETWORK, J_NET_ALLOW);
	if (json_array_size(list) > NETPOL_MAX_ENTRIES)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "\"%s\".%s "
		    "has %zu entries; the limit is %d", J_NETWORK, J_NET_ALLOW,
		    json_array_size(list), NETPOL_MAX_ENTRIES);
	json_array_foreach(list, i, e) {
		if (!json_is_string(e)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\".%s[%zu] must be a string", J_NETWORK,
			    J_NET_ALLOW, i);
			goto fail;
		}
		cap_show(json_string_value(e), json_string_length(e), shown,
		    sizeof(shown));
		if (strlen(json_string_value(e)) != json_string_length(e) ||
		    (r = netpol_add(p, json_string_value(e), err)) < 0) {
			if (strlen(json_string_value(e)) !=
			    json_string_length(e))
				r = cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "it holds a NUL byte");
			cap_err_wrap(err, "\"%s\".%s[%zu] \"%s\"", J_NETWORK,
			    J_NET_ALLOW, i, shown);
			goto fail;
		}
	}
	return 0;
fail:
	netpol_free(p);
	return r;
}

json_t *
ctl_network_json(const struct netpol *p)
{
	char text[NETPOL_MAX_ENTRY_LEN + 1];
	json_t *o, *list;

	o = json_pack("{s:s}", J_NET_MODE, netpol_mode_name(p->mode));
	if (o == NULL || p->mode != NETPOL_ALLOW)
		return o;
	list = json_array();
	for (size_t i = 0; i < p->nentries; i++)
		if (netpol_entry_format(&p->entries[i], text,
		    sizeof(text)) > 0)
			json_array_append_new(list, json_string(text));
	json_object_set_new(o, J_NET_ALLOW, list);
	return o;
}

int
ctl_parse_publish(json_t *v, struct netpub *out, unsigned *n,
    struct cap_err *err)
{
	char shown[80];
	json_t *e;
	size_t i;
	int r;

	*n = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" "
		    "must be an array like [\"8080:80\", "
		    "\"127.0.0.1:8443:443\"]", J_PUBLISH);
	if (json_array_size(v) > NETPOL_MAX_PUBLISH)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "\"%s\" "
		    "has %zu entries; the limit is %d", J_PUBLISH,
		    json_array_size(v), NETPOL_MAX_PUBLISH);
	json_array_foreach(v, i, e) {
		if (!json_is_string(e) || strlen(json_string_value(e)) !=
		    json_string_length(e))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\"[%zu] must be a string "
			    "\"[HOSTADDR:]HOSTPORT:GUESTPORT\"", J_PUBLISH, i);
		cap_show(json_string_value(e), json_string_length(e), shown,
		    sizeof(shown));
		if ((r = netpub_parse(json_string_value(e), &out[i],
		    err)) < 0) {
			cap_err_wrap(err, "\"%s\"[%zu] \"%s\"", J_PUBLISH, i,
			    shown);
			return r;
		}
		for (size_t j = 0; j < i; j++)
			if (out[j].host_port == out[i].host_port &&
			    (out[j].host_addr == out[i].host_addr ||
			    out[j].host_addr == 0 || out[i].host_addr == 0))
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\"[%zu] \"%s\" "
				    "uses host port %u again", J_PUBLISH, i,
				    shown, (unsigned)out[i].host_port);
		(*n)++;
	}
	return 0;
}

json_t *
ctl_publish_json(const struct netpub *p, unsigned n)
{
	json_t *a = json_array();
	char text[64];

	for (unsigned i = 0; a != NULL && i < n; i++)
		if (netpub_format(&p[i], text, sizeof(text)) > 0)
			json_array_append_new(a, json_string(text));
	return a;
}

int
ctl_parse_start(json_t *req, const struct ctl_limits *lim,
    struct ctl_start *s, struct cap_err *err)
{
	static const char *const known[] = {
		J_KERNEL_PATH, J_ROOTFS_PATH, J_BOOT_ARGS, J_VCPUS,
		J_MEMORY_MIB, J_GUEST_PORT, J_LAUNCH_SECONDS, J_RUN_DIR,
		J_PROXY_SOCKET_PATH, J_CONSOLE_LOG_PATH, J_INITRD_PATH,
		J_STOP_ON_DISCONNECT, J_SERIAL_PORTS, J_NETWORK, J_PUBLISH, J_IMAGE,
		J_VOLUMES, J_DISK_SIZE_MIB, J_IDLE_TIMEOUT, J_ARCH, NULL,
	};
	const char *arch = NULL;
	char unit[64];
	uint64_t n, dm;
	unsigned dv;
	json_t *v;
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = ctl_check_fields(req, OP_START_VM, known, err)) < 0)
		return r;
	if ((r = opt_path(req, J_KERNEL_PATH, PATH_MAX - 1, &s->kernel_path,
	    err)) < 0 ||
	    (r = opt_path(req, J_ROOTFS_PATH, PATH_MAX - 1, &s->rootfs_path,
	    err)) < 0 ||
	    (r = opt_path(req, J_INITRD_PATH, PATH_MAX - 1, &s->initrd_path,
	    err)) < 0 ||
	    (r = opt_path(req, J_RUN_DIR, PATH_MAX - 1, &s->run_dir, err)) < 0 ||
	    (r = opt_path(req, J_PROXY_SOCKET_PATH, CTL_MAX_SOCKET_PATH,
	    &s->proxy_socket_path, err)) < 0 ||
	    (r = opt_path(req, J_CONSOLE_LOG_PATH, PATH_MAX - 1,
	    &s->console_log_path, err)) < 0 ||
	    (r = opt_string(req, J_BOOT_ARGS, CTL_MAX_BOOT_ARGS, &s->boot_args,
	    err)) < 0 ||
	    (r = opt_string(req, J_IMAGE, 512, &s->image, err)) < 0)
		goto fail;
	v = json_object_get(req, J_ARCH);
	if (v != NULL && !json_is_null(v) && ((arch = json_string_value(v)) ==
	    NULL || ctl_arch_parse(arch, &s->arch) < 0)) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" must "
		    "be \"%s\" or \"%s\"%s%.20s%s", J_ARCH,
		    ctl_arch_name(CTL_ARCH_X86_64),
		    ctl_arch_name(CTL_ARCH_AARCH64), arch ? ", not \"" : "",
		    arch ? arch : "", arch ? "\"" : "");
		goto fail;
	}
	if (s->image != NULL && s->rootfs_path != NULL) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" and "
		    "\"%s\" both name a root file system; give one",
		    J_IMAGE, J_ROOTFS_PATH);
		goto fail;
	}
	if (s->boot_args != NULL && strpbrk(s->boot_args, "\n\r") != NULL) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be one line", J_BOOT_ARGS);
		goto fail;
	}

	dv = lim->default_vcpus ? lim->default_vcpus : CTL_DEFAULT_VCPUS;
	dm = lim->default_memory_mib ? lim->default_memory_mib :
	    CTL_DEFAULT_MEMORY_MIB;
	snprintf(unit, sizeof(unit), " (this host has %u CPUs)",
	    lim->max_vcpus);
	if ((r = opt_uint(req, J_VCPUS, 1, lim->max_vcpus, dv <
	    lim->max_vcpus ? dv : lim->max_vcpus, &n, unit, err)) < 0)
		goto fail;
	s->vcpus = (unsigned)n;
	snprintf(unit, sizeof(unit), " MiB (this host has %llu MiB)",
	    (unsigned long long)lim->max_memory_mib);
	if ((r = opt_uint(req, J_MEMORY_MIB, CTL_MIN_MEMORY_MIB,
	    lim->max_memory_mib, dm < lim->max_memory_mib ? dm :
	    lim->max_memory_mib, &s->memory_mib, unit, err)) < 0)
		goto fail;
	if ((r = opt_uint(req, J_GUEST_PORT, 1, UINT32_MAX,
	    AGENT_DEFAULT_GUEST_PORT, &n, "", err)) < 0)
		goto fail;
	s->guest_port = (uint32_t)n;
	if ((r = opt_uint(req, J_LAUNCH_SECONDS, 1, CTL_MAX_LAUNCH_SECONDS,
	    CTL_DEFAULT_LAUNCH_SECONDS, &n, " seconds", err)) < 0)
		goto fail;
	s->launch_seconds = (unsigned)n;
	if ((r = opt_uint(req, J_DISK_SIZE_MIB, CTL_MIN_DISK_MIB,
	    CTL_MAX_DISK_MIB, CTL_DEFAULT_DISK_MIB, &s->disk_mib, " MiB",
	    err)) < 0 ||
	    (r = opt_uint(req, J_IDLE_TIMEOUT, 0, CTL_MAX_IDLE_SECONDS, 0, &n,
	    " seconds", err)) < 0)
		goto fail;
	s->idle_seconds = (unsigned)n;

	v = json_object_get(req, J_STOP_ON_DISCONNECT);
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be true or false",
			    J_STOP_ON_DISCONNECT);
			goto fail;
		}
		s->stop_on_disconnect = json_is_true(v);
	}
	if ((r = parse_serial_ports(req, s, err)) < 0 ||
	    (r = ctl_parse_network(json_object_get(req, J_NETWORK),
	    &s->network, err)) < 0 ||
	    (r = ctl_parse_publish(json_object_get(req, J_PUBLISH),
	    s->publish, &s->npublish, err)) < 0 ||
	    (r = volume_parse_json(json_object_get(req, J_VOLUMES),
	    s->volumes, &s->nvolumes, err)) < 0)
		goto fail;
	return 0;
fail:
	ctl_start_free(s);
	return r;
}

void
ctl_start_free(struct ctl_start *s)
{
	free(s->kernel_path);
	free(s->rootfs_path);
	free(s->image);
	free(s->initrd_path);
	free(s->boot_args);
	free(s->run_dir);
	free(s->proxy_socket_path);
	free(s->console_log_path);
	for (unsigned i = 0; i < s->nserial_ports; i++)
		free(s->serial_ports[i]);
	netpol_free(&s->network);
	volume_free(s->volumes, s->nvolumes);
	memset(s, 0, sizeof(*s));
}

int
ctl_parse_stop(json_t *req, const char **vm_id, int *all, struct cap_err *err)
{
	static const char *const known[] = { J_VM_ID, J_ALL, NULL };
	json_t *v;
	int r;

	*vm_id = NULL;
	*all = 0;
	if ((r = ctl_check_fields(req, OP_STOP_VM, known, err)) < 0)
		return r;
	v = json_object_get(req, J_ALL);
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" must be true or false", J_ALL);
		*all = json_is_true(v);
	}
	v = json_object_get(req, J_VM_ID);
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" must be a non-empty string", J_VM_ID);
	if (*all)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" and \"%s\" do not go together", J_VM_ID, J_ALL);
	*vm_id = json_string_value(v);
	return 0;
}

static json_t *
ports_json(const struct ctl_vm *v)
{
	json_t *o = json_object();

	for (unsigned i = 0; o != NULL && i < v->nports; i++)
		json_object_set_new(o, v->port_names[i],
		    json_string(v->port_paths[i]));
	return o;
}

json_t *
ctl_vm_json(const struct ctl_vm *v)
{
	time_t t = (time_t)v->created_at;
	char created[32];
	struct tm tm;
	json_t *o;

	gmtime_r(&t, &tm);
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	o = json_pack("{s:s, s:s, s:i, s:I, s:i, s:I, s:s, s:s, s:s, s:s, "
	    "s:s, s:s, s:s, s:s, s:I, s:o}",
	    J_VM_ID, v->vm_id, J_STATE, v->state, J_PID, v->pid,
	    J_OWNER_UID, (json_int_t)v->owner_uid, J_VCPUS, (int)v->vcpus,
	    J_MEMORY_MIB, (json_int_t)v->memory_mib, J_CREATED_AT, created,
	    J_ACCEL, v->accel, J_BACKEND, v->backend,
	    J_KERNEL_PATH, v->kernel_path, J_ROOTFS_PATH, v->rootfs_path,
	    J_RUN_DIR, v->run_dir, J_PROXY_SOCKET_PATH, v->proxy_socket_path,
	    J_CONSOLE_LOG_PATH, v->console_log_path,
	    J_GUEST_PORT, (json_int_t)v->guest_port,
	    J_SERIAL_PORTS, ports_json(v));
	if (o == NULL)
		return NULL;
	if (v->have_exit_status)
		json_object_set_new(o, J_EXIT_STATUS,
		    json_integer(v->exit_status));
	if (v->error != NULL)
		json_object_set_new(o, J_ERROR, json_string(v->error));
	if (v->image != NULL)
		json_object_set_new(o, J_IMAGE, json_string(v->image));
	if (v->arch != NULL)
		json_object_set_new(o, J_ARCH, json_string(v->arch));
	if (v->sandbox != NULL)
		json_object_set_new(o, J_SANDBOX, json_string(v->sandbox));
	if (v->disk_mib > 0)
		json_object_set_new(o, J_DISK_SIZE_MIB,
		    json_integer((json_int_t)v->disk_mib));
	if (v->pooled)
		json_object_set_new(o, J_POOLED, json_true());
	if (v->idle_seconds > 0)
		json_object_set_new(o, J_IDLE_TIMEOUT,
		    json_integer((json_int_t)v->idle_seconds));
	if (v->network != NULL)
		json_object_set_new(o, J_NETWORK,
		    ctl_network_json(v->network));
	json_object_set_new(o, J_PUBLISH, ctl_publish_json(v->publish,
	    v->npublish));
	json_object_set_new(o, J_VOLUMES, volume_json(v->volumes,
	    v->nvolumes));
	if (v->have_egress)
		json_object_set_new(o, J_EGRESS, json_pack("{s:I, s:I, s:I, "
		    "s:I, s:I, s:I, s:I, s:I}",
		    J_EG_DNS_ALLOWED, (json_int_t)v->eg_dns_allowed,
		    J_EG_DNS_DENIED, (json_int_t)v->eg_dns_denied,
		    J_EG_ALLOWED, (json_int_t)v->eg_allowed,
		    J_EG_DENIED, (json_int_t)v->eg_denied,
		    J_EG_FAILED, (json_int_t)v->eg_failed,
		    J_EG_OPEN, (json_int_t)v->eg_open,
		    J_EG_BYTES_OUT, (json_int_t)v->eg_bytes_out,
		    J_EG_BYTES_IN, (json_int_t)v->eg_bytes_in));
	return o;
}

json_t *
ctl_started_json(const struct ctl_vm *v)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:o, "
	    "s:{s:I, s:I, s:I, s:s, s:s}}",
	    J_VM_ID, v->vm_id, J_PROXY_SOCKET_PATH, v->proxy_socket_path,
	    J_RUN_DIR, v->run_dir, J_CONSOLE_LOG_PATH, v->console_log_path,
	    J_ACCEL, v->accel, J_PID, v->pid, J_SERIAL_PORTS, ports_json(v),
	    J_TIMING_MS, T_VM_READY, (json_int_t)v->ms_ready,
	    T_SPAWN, (json_int_t)v->ms_spawn,
	    T_GUEST_BOOT, (json_int_t)v->ms_guest_boot,
	    T_START, v->start ? v->start : "cold",
	    T_START_NOTE, v->start_note ? v->start_note : "");
}

static json_t *
reply_new(json_t *req, int ok)
{
	json_t *r = json_object(), *id;

	if (r == NULL)
		return NULL;
	json_object_set_new(r, J_OK, json_boolean(ok));
	if (req != NULL && (id = json_object_get(req, J_ID)) != NULL)
		json_object_set(r, J_ID, id);
	return r;
}

json_t *
ctl_reply_ok(json_t *req)
{
	return reply_new(req, 1);
}

json_t *
ctl_reply_error(json_t *req, const struct cap_err *err)
{
	json_t *r = reply_new(req, 0);

	if (r == NULL)
		return NULL;
	json_object_set_new(r, J_ERROR, json_string(err->msg[0] ? err->msg :
	    "unknown error"));
	json_object_set_new(r, J_CODE, json_string(err->code[0] ? err->code :
	    E_INTERNAL));
	return r;
}

const char *
ctl_arch_name(enum ctl_arch a)
{
	switch (a == CTL_ARCH_DEFAULT ? ctl_arch_host() : a) {
	case CTL_ARCH_X86_64:
		return "x86_64";
	case CTL_ARCH_AARCH64:
		return "aarch64";
	default:
		return "unknown";
	}
}

int
ctl_arch_parse(const char *s, enum ctl_arch *a)
{
	if (strcmp(s, "x86_64") == 0)
		*a = CTL_ARCH_X86_64;
	else if (strcmp(s, "aarch64") == 0)
		*a = CTL_ARCH_AARCH64;
	else
		return -EINVAL;
	return 0;
}

enum ctl_arch
ctl_arch_host(void)
{
#if defined(__x86_64__)
	return CTL_ARCH_X86_64;
#elif defined(__aarch64__)
	return CTL_ARCH_AARCH64;
#else
	return CTL_ARCH_DEFAULT;
#endif
}

int
ctl_default_socket(char *buf, size_t len, struct cap_err *err)
{
	const char *rt = getenv("XDG_RUNTIME_DIR"), *home = getenv("HOME");

#ifdef __APPLE__
	if (geteuid() == 0)
		rt = "/var/run";
	/* A Mac has no XDG_RUNTIME_DIR; a user's daemons keep their
	 * sockets in their Application Support folder. */
	if ((rt == NULL || rt[0] != '/') && home != NULL && home[0] == '/') {
		if (snprintf(buf, len, "%s/Library/Application Support/capsule/"
		    "capsuled.sock", home) >= (int)len)
			return cap_err_set(err, ENAMETOOLONG,
			    E_INVALID_ARGUMENT, "socket path under %s is too "
			    "long", home);
		return 0;
	}
#else
	(void)home;
	if (geteuid() == 0)
		rt = "/run";
#endif
	if (rt == NULL || rt[0] != '/')
		return cap_err_set(err, ENOENT, E_INVALID_ARGUMENT,
		    "XDG_RUNTIME_DIR is not set; pass --socket PATH");
	if (snprintf(buf, len, "%s/capsule/capsuled.sock", rt) >= (int)len)
		return cap_err_set(err, ENAMETOOLONG, E_INVALID_ARGUMENT,
		    "socket path under %s is too long", rt);
	return 0;
}
