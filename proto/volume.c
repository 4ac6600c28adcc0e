/*
 * volume.c — shared folder descriptions: parsing and checking (volume.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "volume.h"

static int
under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' ||
	    path[n] == '/');
}

const char *
volume_guest_problem(const char *path)
{
	const char *p, *c;

	if (path[0] != '/')
		return "is not absolute";
	if (strlen(path) > VOLUME_MAX_GUEST)
		return "is too long (the limit is 200 bytes)";
	if (strcmp(path, "/") == 0)
		return "is the guest's root";
	for (p = path; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ',' || *p == ':' ||
		    *p == '\\' || *p == '"')
			return "holds a space, a control character or one of "
			    ", : \\ \" (not allowed in a guest path)";
	for (c = path + 1; *c; ) {
		size_t n = strcspn(c, "/");

		if (n == 0)
			return "has an empty component or a trailing '/'";
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' &&
		    c[1] == '.'))
			return "has a . or .. component";
		c += n;
		if (*c == '/' && *++c == '\0')
			return "has an empty component or a trailing '/'";
	}
	if (under(path, "/proc") || under(path, "/sys") || under(path, "/dev"))
		return "is under /proc, /sys or /dev";
	return NULL;
}

static int
check_host(const char *path, const char **why)
{
	if (path[0] != '/') {
		*why = "is not absolute";
		return -1;
	}
	for (const char *p = path; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f) {
			*why = "holds a control character";
			return -1;
		}
	if (strlen(path) >= PATH_MAX) {
		*why = "is too long";
		return -1;
	}
	return 0;
}

/* Checks v[i] against the entries before it; fills err naming `what`. */
static int
check_one(const struct volume *v, unsigned i, const char *what,
    struct cap_err *err)
{
	const char *why = NULL;

	if (check_host(v[i].host, &why) < 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "%s: "
		    "host directory %.200s %s", what, v[i].host, why);
	if ((why = volume_guest_problem(v[i].guest)) != NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "%s: "
		    "guest path %.210s %s", what, v[i].guest, why);
	for (unsigned j = 0; j < i; j++)
		if (strcmp(v[j].guest, v[i].guest) == 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s: guest path %s is used twice", what,
			    v[i].guest);
	return 0;
}

int
volume_parse_json(json_t *v, struct volume *out, unsigned *n,
    struct cap_err *err)
{
	char what[32];
	json_t *e, *h, *g, *ro;
	const char *key;
	json_t *val;
	size_t i;
	int r;

	*n = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" "
		    "must be an array like [{\"%s\": \"/src\", \"%s\": "
		    "\"/work\"}]", J_VOLUMES, J_HOST, J_GUEST);
	if (json_array_size(v) > VOLUME_MAX)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "\"%s\" "
		    "has %zu entries; the limit is %d", J_VOLUMES,
		    json_array_size(v), VOLUME_MAX);
	json_array_foreach(v, i, e) {
		snprintf(what, sizeof(what), "\"%s\"[%zu]", J_VOLUMES, i);
		if (!json_is_object(e)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s must be an object with \"%s\" and \"%s\"",
			    what, J_HOST, J_GUEST);
			goto fail;
		}
		json_object_foreach(e, key, val)
			if (strcmp(key, J_HOST) != 0 &&
			    strcmp(key, J_GUEST) != 0 &&
			    strcmp(key, J_READ_ONLY) != 0) {
				char shown[64];

				cap_show(key, strlen(key), shown,
				    sizeof(shown));
				r = cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "%s: unknown field "
				    "\"%s\"", what, shown);
				goto fail;
			}
		h = json_object_get(e, J_HOST);
		g = json_object_get(e, J_GUEST);
		ro = json_object_get(e, J_READ_ONLY);
		if (!json_is_string(h) || !json_is_string(g) ||
		    strlen(json_string_value(h)) != json_string_length(h) ||
		    strlen(json_string_value(g)) != json_string_length(g)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s needs string \"%s\" and \"%s\"", what, J_HOST,
			    J_GUEST);
			goto fail;
		}
		if (ro != NULL && !json_is_null(ro) && !json_is_boolean(ro)) {
			r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s: \"%s\" must be true or false", what,
			    J_READ_ONLY);
			goto fail;
		}
		out[i].host = strdup(json_string_value(h));
		out[i].guest = strdup(json_string_value(g));
		out[i].ro = json_is_true(ro);
		*n = (unsigned)i + 1;
		if (out[i].host == NULL || out[i].guest == NULL) {
			r = cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
			goto fail;
		}
		if ((r = check_one(out, (unsigned)i, what, err)) < 0)
			goto fail;
	}
	return 0;
fail:
	volume_free(out, *n);
	*n = 0;
	return r;
}

json_t *
volume_json(const struct volume *v, unsigned n)
{
	json_t *a = json_array();

	for (unsigned i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:b}", J_HOST,
		    v[i].host, J_GUEST, v[i].guest, J_READ_ONLY, v[i].ro));
	return a;
}

int
volume_parse_arg(const char *s, struct volume *out, struct cap_err *err)
{
	const char *colon, *guest, *end;
	int r;

	memset(out, 0, sizeof(*out));
	/* HOST:GUEST, HOST:GUEST:ro or HOST:GUEST:rw. A guest path has no
	 * ':', so the mode is what follows a last ':' after GUEST. */
	if ((colon = strchr(s, ':')) == NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "volume "
		    "\"%.200s\" is not HOSTDIR:GUESTDIR[:ro]", s);
	guest = colon + 1;
	end = strrchr(guest, ':');
	if (end != NULL) {
		if (strcmp(end + 1, "ro") == 0)
			out->ro = 1;
		else if (strcmp(end + 1, "rw") != 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "volume \"%.200s\": the mode after the guest path "
			    "must be ro or rw", s);
	} else
		end = guest + strlen(guest);
	if ((out->host = strndup(s, (size_t)(colon - s))) == NULL ||
	    (out->guest = strndup(guest, (size_t)(end - guest))) == NULL) {
		volume_free(out, 1);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	if ((r = check_one(out, 0, "volume", err)) < 0)
		volume_free(out, 1);
	return r;
}

void
volume_free(struct volume *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(v[i].host);
		free(v[i].guest);
		v[i].host = v[i].guest = NULL;
	}
}
