/*
 * fuzz_oci.c — libFuzzer harness for the parts of an OCI layout capsule
 * reads from an untrusted image: any bytes, as an index, a manifest or a
 * config, parse or fail with a message; what parses is bounded and
 * well-formed (digests, K=V env, absolute WorkingDir), and a config that
 * parses survives capsule's own JSON form unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci.h"

static void
check_strv(char **v, size_t n, size_t max)
{
	if (n > max || (n > 0 && v == NULL) || (v != NULL && v[n] != NULL))
		abort();
	for (size_t i = 0; i < n; i++)
		if (v[i] == NULL || strlen(v[i]) > OCI_MAX_STR)
			abort();
}

static void
check_config(const struct oci_config *c)
{
	check_strv(c->env, c->envc, 4096);
	check_strv(c->cmd, c->cmdc, 4096);
	check_strv(c->entrypoint, c->entrypointc, 4096);
	for (size_t i = 0; i < c->envc; i++)
		if (c->env[i][0] == '=' || strchr(c->env[i], '=') == NULL)
			abort();
	if (c->working_dir != NULL && c->working_dir[0] != '/')
		abort();
	if (c->ndiff_ids > OCI_MAX_LAYERS)
		abort();
	for (size_t i = 0; i < c->ndiff_ids; i++)
		if (!oci_digest_ok(c->diff_ids[i]))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char digest[OCI_DIGEST_LEN + 1];
	struct oci_manifest *m = malloc(sizeof(*m));
	struct oci_config c, back;
	struct cap_err err;
	json_t *j;

	if (m == NULL)
		return 0;
	cap_err_clear(&err);
	if (oci_parse_index(buf, size, digest, &err) == 0) {
		if (!oci_digest_ok(digest))
			abort();
	} else if (err.msg[0] == '\0')
		abort();
	cap_err_clear(&err);
	if (oci_parse_manifest(buf, size, m, &err) == 0) {
		if (!oci_digest_ok(m->config) || m->nlayers > OCI_MAX_LAYERS)
			abort();
		for (size_t i = 0; i < m->nlayers; i++)
			if (!oci_digest_ok(m->layers[i]))
				abort();
	} else if (err.msg[0] == '\0')
		abort();
	free(m);
	cap_err_clear(&err);
	if (oci_parse_config(buf, size, &c, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();
		return 0;
	}
	check_config(&c);
	j = oci_config_json(&c);
	if (oci_config_from_json(j, &back, &err) != 0 ||
	    back.envc != c.envc || back.cmdc != c.cmdc ||
	    back.entrypointc != c.entrypointc ||
	    (c.working_dir == NULL) != (back.working_dir == NULL) ||
	    (c.user == NULL) != (back.user == NULL))
		abort();
	for (size_t i = 0; i < c.envc; i++)
		if (strcmp(c.env[i], back.env[i]) != 0)
			abort();
	json_decref(j);
	oci_config_free(&back);
	oci_config_free(&c);
	return 0;
}
