/*
 * oci.c — index, manifest and config of an OCI image layout (oci.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "oci.h"
#include "proto.h"

/* The OCI names: they belong to the image spec, not to capsule. */
#define OCI_MANIFESTS	"manifests"
#define OCI_DIGEST	"digest"
#define OCI_MEDIATYPE	"mediaType"
#define OCI_CONFIG	"config"
#define OCI_LAYERS	"layers"
#define OCI_ENV		"Env"
#define OCI_ENTRYPOINT	"Entrypoint"
#define OCI_CMD		"Cmd"
#define OCI_WORKDIR	"WorkingDir"
#define OCI_USER	"User"
#define OCI_ROOTFS	"rootfs"
#define OCI_ANNOTATIONS	"annotations"
#define OCI_REF_NAME	"org.opencontainers.image.ref.name"
#define OCI_DIFF_IDS	"diff_ids"
#define OCI_MT_MANIFEST	"application/vnd.oci.image.manifest.v1+json"

int
oci_digest_ok(const char *s)
{
	if (s == NULL || strncmp(s, "sha256:", 7) != 0 ||
	    strlen(s) != OCI_DIGEST_LEN)
		return 0;
	for (s += 7; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static int
load(const char *buf, size_t len, const char *what, json_t **out,
    struct cap_err *err)
{
	json_error_t je;

	if (len > OCI_MAX_JSON)
		return cap_err_set(err, EFBIG, E_INVALID_ARGUMENT,
		    "the image's %s is larger than %d bytes", what,
		    OCI_MAX_JSON);
	*out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (*out == NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image's %s is not valid JSON: %.200s", what, je.text);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image's %s is not a JSON object", what);
	}
	return 0;
}

/* A digest (s may be NULL) into out. */
static int
digest_into(const char *s, const char *what, char out[OCI_DIGEST_LEN + 1],
    struct cap_err *err)
{
	char shown[80];

	if (s == NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s has no digest", what);
	if (!oci_digest_ok(s)) {
		cap_show(s, strlen(s), shown, sizeof(shown));
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s has digest \"%s\"; capsule takes sha256:<64 hex>", what,
		    shown);
	}
	memcpy(out, s, OCI_DIGEST_LEN + 1);
	return 0;
}

/* A descriptor's digest into out. */
static int
desc_digest(json_t *d, const char *what, char out[OCI_DIGEST_LEN + 1],
    struct cap_err *err)
{
	return digest_into(json_string_value(json_object_get(d, OCI_DIGEST)),
	    what, out, err);
}

int
oci_parse_index(const char *buf, size_t len, char out[OCI_DIGEST_LEN + 1],
    struct cap_err *err)
{
	json_t *o, *ms, *m;
	const char *mt;
	int r;

	if ((r = load(buf, len, "index.json", &o, err)) < 0)
		return r;
	ms = json_object_get(o, OCI_MANIFESTS);
	if (!json_is_array(ms) || json_array_size(ms) != 1) {
		json_decref(o);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image's index.json must list exactly one manifest");
	}
	m = json_array_get(ms, 0);
	mt = json_string_value(json_object_get(m, OCI_MEDIATYPE));
	if (mt != NULL && strcmp(mt, OCI_MT_MANIFEST) != 0) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image's index lists a %.100s, not an image manifest",
		    mt);
		json_decref(o);
		return r;
	}
	r = desc_digest(m, "the image's index entry", out, err);
	json_decref(o);
	return r;
}

int
oci_index_ref_name(const char *buf, size_t len, char *out, size_t outlen)
{
	json_t *o = len <= OCI_MAX_JSON ? json_loadb(buf, len, 0, NULL) : NULL;
	const char *s = json_string_value(json_object_get(json_object_get(
	    json_array_get(json_object_get(o, OCI_MANIFESTS), 0),
	    OCI_ANNOTATIONS), OCI_REF_NAME));
	int r = -1;

	if (s != NULL && strlen(s) > 0 && strlen(s) < outlen) {
		memcpy(out, s, strlen(s) + 1);
		r = 0;
	}
	json_decref(o);
	return r;
}

int
oci_parse_manifest(const char *buf, size_t len, struct oci_manifest *m,
    struct cap_err *err)
{
	json_t *o, *layers, *l;
	char what[64];
	size_t i;
	int r;

	memset(m, 0, sizeof(*m));
	if ((r = load(buf, len, "manifest", &o, err)) < 0)
		return r;
	if ((r = desc_digest(json_object_get(o, OCI_CONFIG),
	    "the image manifest's config", m->config, err)) < 0)
		goto out;
	layers = json_object_get(o, OCI_LAYERS);
	if (!json_is_array(layers)) {
		r = cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image manifest has no list of layers");
		goto out;
	}
	if (json_array_size(layers) > OCI_MAX_LAYERS) {
		r = cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "the image has %zu layers; capsule takes at most %d",
		    json_array_size(layers), OCI_MAX_LAYERS);
		goto out;
	}
	json_array_foreach(layers, i, l) {
		snprintf(what, sizeof(what), "the image's layer %zu", i + 1);
		if ((r = desc_digest(l, what, m->layers[i], err)) < 0)
			goto out;
	}
	m->nlayers = json_array_size(layers);
out:
	json_decref(o);
	return r;
}

/* A string from the image: no NUL (jansson allows \u0000), bounded. */
static int
str_ok(json_t *v, const char *what, struct cap_err *err)
{
	if (!json_is_string(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config's %s is not a string", what);
	if (json_string_length(v) > OCI_MAX_STR ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config's %s is longer than %d bytes or holds "
		    "a NUL byte", what, OCI_MAX_STR);
	return 0;
}

static int
strv(json_t *a, const char *what, size_t max, char ***out, size_t *n,
    struct cap_err *err)
{
	json_t *v;
	size_t i;
	int r;

	*out = NULL;
	*n = 0;
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config's %s is not a list", what);
	if (json_array_size(a) > max)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "the image config's %s has %zu entries; at most %zu", what,
		    json_array_size(a), max);
	json_array_foreach(a, i, v)
		if ((r = str_ok(v, what, err)) < 0)
			return r;
	if ((*out = calloc(json_array_size(a) + 1, sizeof(char *))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	json_array_foreach(a, i, v) {
		if (((*out)[i] = strdup(json_string_value(v))) == NULL)
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		(*n)++;
	}
	return 0;
}

static int
str(json_t *v, const char *what, char **out, struct cap_err *err)
{
	int r;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if ((r = str_ok(v, what, err)) < 0)
		return r;
	if (json_string_length(v) == 0)
		return 0;
	if ((*out = strdup(json_string_value(v))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	return 0;
}

/* Keys as the OCI config names them (kind 0) or as capsule does (1). */
static int
config_from(json_t *cfg, int ours, struct oci_config *c, struct cap_err *err)
{
	int r;

	memset(c, 0, sizeof(*c));
	if (cfg == NULL || json_is_null(cfg))
		return 0;
	if (!json_is_object(cfg))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config's config is not an object");
	if ((r = strv(json_object_get(cfg, ours ? J_ENV : OCI_ENV), "Env",
	    PROTO_MAX_ENV, &c->env, &c->envc, err)) < 0 ||
	    (r = strv(json_object_get(cfg, ours ? J_ENTRYPOINT :
	    OCI_ENTRYPOINT), "Entrypoint", PROTO_MAX_ARGS, &c->entrypoint,
	    &c->entrypointc, err)) < 0 ||
	    (r = strv(json_object_get(cfg, ours ? J_CMD : OCI_CMD), "Cmd",
	    PROTO_MAX_ARGS, &c->cmd, &c->cmdc, err)) < 0 ||
	    (r = str(json_object_get(cfg, ours ? J_WORKING_DIR : OCI_WORKDIR),
	    "WorkingDir", &c->working_dir, err)) < 0 ||
	    (r = str(json_object_get(cfg, ours ? J_USER : OCI_USER), "User",
	    &c->user, err)) < 0) {
		oci_config_free(c);
		return r;
	}
	for (size_t i = 0; i < c->envc; i++)
		if (strchr(c->env[i], '=') == NULL || c->env[i][0] == '=') {
			oci_config_free(c);
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "the image config's Env entry %zu is not K=V",
			    i + 1);
		}
	if (c->working_dir != NULL && c->working_dir[0] != '/') {
		oci_config_free(c);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config's WorkingDir is not an absolute path");
	}
	return 0;
}

static int
diff_ids(json_t *o, struct oci_config *c, struct cap_err *err)
{
	json_t *ids = json_object_get(json_object_get(o, OCI_ROOTFS),
	    OCI_DIFF_IDS), *v;
	char what[64];
	size_t i;
	int r;

	if (!json_is_array(ids))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the image config has no rootfs.diff_ids list");
	if (json_array_size(ids) > OCI_MAX_LAYERS)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "the image config lists %zu layers; at most %d",
		    json_array_size(ids), OCI_MAX_LAYERS);
	c->diff_ids = calloc(json_array_size(ids) + 1, sizeof(*c->diff_ids));
	if (c->diff_ids == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	json_array_foreach(ids, i, v) {
		snprintf(what, sizeof(what), "the image config's diff_id %zu",
		    i + 1);
		if ((r = digest_into(json_string_value(v), what,
		    c->diff_ids[i], err)) < 0)
			return r;
	}
	c->ndiff_ids = json_array_size(ids);
	return 0;
}

int
oci_parse_config(const char *buf, size_t len, struct oci_config *c,
    struct cap_err *err)
{
	json_t *o;
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = load(buf, len, "config", &o, err)) < 0)
		return r;
	/* The runtime part is "config"; an image may have none. */
	if ((r = config_from(json_object_get(o, OCI_CONFIG), 0, c, err)) == 0 &&
	    (r = diff_ids(o, c, err)) < 0)
		oci_config_free(c);
	json_decref(o);
	return r;
}

int
oci_config_from_json(json_t *o, struct oci_config *c, struct cap_err *err)
{
	return config_from(o, 1, c, err);
}

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

void
oci_config_free(struct oci_config *c)
{
	strv_free(c->env, c->envc);
	strv_free(c->entrypoint, c->entrypointc);
	strv_free(c->cmd, c->cmdc);
	free(c->working_dir);
	free(c->user);
	free(c->diff_ids);
	memset(c, 0, sizeof(*c));
}

static json_t *
strv_json(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

json_t *
oci_config_json(const struct oci_config *c)
{
	json_t *o = json_object();

	if (c->env != NULL)
		json_object_set_new(o, J_ENV, strv_json(c->env, c->envc));
	if (c->entrypoint != NULL)
		json_object_set_new(o, J_ENTRYPOINT,
		    strv_json(c->entrypoint, c->entrypointc));
	if (c->cmd != NULL)
		json_object_set_new(o, J_CMD, strv_json(c->cmd, c->cmdc));
	if (c->working_dir != NULL)
		json_object_set_new(o, J_WORKING_DIR,
		    json_string(c->working_dir));
	if (c->user != NULL)
		json_object_set_new(o, J_USER, json_string(c->user));
	return o;
}
