/*
 * test_oci.c — an OCI layout's index, manifest and config as capsule reads
 * them: what a good image gives, and a clear error naming the part for
 * each way an untrusted image can be wrong.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oci.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static void
has(const char *msg, const char *needle)
{
	if (strstr(msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

static void
test_digest_ok(void **state)
{
	(void)state;
	assert_true(oci_digest_ok(D1));
	assert_false(oci_digest_ok(NULL));
	assert_false(oci_digest_ok(""));
	assert_false(oci_digest_ok("sha256:"));
	assert_false(oci_digest_ok("sha512:1111111111111111111111111111111111"
	    "111111111111111111111111111111"));
	/* Upper case, short, long, a path. */
	assert_false(oci_digest_ok("sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
	assert_false(oci_digest_ok(D1 "1"));
	assert_false(oci_digest_ok("sha256:111111111111111111111111111111111111"
	    "111111111111111111111111111"));
	assert_false(oci_digest_ok("sha256:../../../../../../../../../../etc/"
	    "passwd11111111111111111111111"));
}

static void
test_index(void **state)
{
	char d[OCI_DIGEST_LEN + 1];
	struct cap_err err;
	const char *good = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
	    "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
	    "\",\"size\":7}]}";

	(void)state;
	assert_int_equal(oci_parse_index(good, strlen(good), d, &err), 0);
	assert_string_equal(d, D1);
	assert_int_equal(oci_parse_index("{", 1, d, &err), -EINVAL);
	has(err.msg, "index.json is not valid JSON");
	assert_int_equal(oci_parse_index("[]", 2, d, &err), -EINVAL);
	has(err.msg, "not a JSON object");
	assert_int_equal(oci_parse_index("{\"manifests\":[]}", 16, d, &err),
	    -EINVAL);
	has(err.msg, "exactly one manifest");
	{
		const char *two = "{\"manifests\":[{\"digest\":\"" D1 "\"},"
		    "{\"digest\":\"" D2 "\"}]}";

		assert_int_equal(oci_parse_index(two, strlen(two), d, &err),
		    -EINVAL);
		has(err.msg, "exactly one manifest");
	}
	{
		const char *list = "{\"manifests\":[{\"mediaType\":\"application/"
		    "vnd.oci.image.index.v1+json\",\"digest\":\"" D1 "\"}]}";

		assert_int_equal(oci_parse_index(list, strlen(list), d, &err),
		    -EINVAL);
		has(err.msg, "not an image manifest");
	}
	{
		const char *bad = "{\"manifests\":[{\"digest\":\"sha256:../x\"}]}";

		assert_int_equal(oci_parse_index(bad, strlen(bad), d, &err),
		    -EINVAL);
		has(err.msg, "sha256:<64 hex>");
	}
}

static void
test_manifest(void **state)
{
	struct oci_manifest m;
	struct cap_err err;
	const char *good = "{\"config\":{\"digest\":\"" D1 "\"},\"layers\":["
	    "{\"digest\":\"" D2 "\"},{\"digest\":\"" D3 "\"}]}";
	char *big;
	size_t n;

	(void)state;
	assert_int_equal(oci_parse_manifest(good, strlen(good), &m, &err), 0);
	assert_string_equal(m.config, D1);
	assert_int_equal(m.nlayers, 2);
	assert_string_equal(m.layers[0], D2);
	assert_string_equal(m.layers[1], D3);

	assert_int_equal(oci_parse_manifest("{\"layers\":[]}", 13, &m, &err),
	    -EINVAL);
	has(err.msg, "config has no digest");
	{
		const char *nolayers = "{\"config\":{\"digest\":\"" D1 "\"}}";

		assert_int_equal(oci_parse_manifest(nolayers,
		    strlen(nolayers), &m, &err), -EINVAL);
		has(err.msg, "no list of layers");
	}
	{
		const char *badlayer = "{\"config\":{\"digest\":\"" D1 "\"},"
		    "\"layers\":[{\"digest\":\"" D2 "\"},{\"digest\":7}]}";

		assert_int_equal(oci_parse_manifest(badlayer,
		    strlen(badlayer), &m, &err), -EINVAL);
		has(err.msg, "layer 2 has no digest");
	}
	/* More layers than capsule takes. */
	big = malloc(64 + (OCI_MAX_LAYERS + 1) * 90);
	assert_non_null(big);
	n = (size_t)sprintf(big, "{\"config\":{\"digest\":\"" D1 "\"},"
	    "\"layers\":[");
	for (int i = 0; i <= OCI_MAX_LAYERS; i++)
		n += (size_t)sprintf(big + n, "%s{\"digest\":\"" D2 "\"}",
		    i ? "," : "");
	n += (size_t)sprintf(big + n, "]}");
	assert_int_equal(oci_parse_manifest(big, n, &m, &err), -E2BIG);
	has(err.msg, "layers; capsule takes at most 256");
	free(big);
}

static void
test_config(void **state)
{
	struct oci_config c;
	struct cap_err err;
	json_t *j;
	const char *good = "{\"architecture\":\"amd64\",\"config\":{"
	    "\"Env\":[\"PATH=/usr/bin\",\"A=b=c\"],\"Entrypoint\":[\"/e\"],"
	    "\"Cmd\":[\"x\",\"y\"],\"WorkingDir\":\"/w\",\"User\":\"1000:1000\"},"
	    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D2 "\",\"" D3
	    "\"]}}";

	(void)state;
	assert_int_equal(oci_parse_config(good, strlen(good), &c, &err), 0);
	assert_int_equal(c.envc, 2);
	assert_string_equal(c.env[1], "A=b=c");
	assert_int_equal(c.entrypointc, 1);
	assert_int_equal(c.cmdc, 2);
	assert_string_equal(c.cmd[1], "y");
	assert_string_equal(c.working_dir, "/w");
	assert_string_equal(c.user, "1000:1000");
	assert_int_equal(c.ndiff_ids, 2);
	assert_string_equal(c.diff_ids[1], D3);

	/* What capsule keeps reads back the same (without diff_ids). */
	j = oci_config_json(&c);
	oci_config_free(&c);
	assert_int_equal(oci_config_from_json(j, &c, &err), 0);
	assert_int_equal(c.envc, 2);
	assert_string_equal(c.cmd[0], "x");
	assert_string_equal(c.user, "1000:1000");
	assert_int_equal(c.ndiff_ids, 0);
	oci_config_free(&c);
	json_decref(j);

	/* No runtime config at all is fine: nothing to default. */
	{
		const char *bare = "{\"rootfs\":{\"diff_ids\":[]}}";

		assert_int_equal(oci_parse_config(bare, strlen(bare), &c,
		    &err), 0);
		assert_null(c.env);
		assert_null(c.cmd);
		assert_null(c.working_dir);
		oci_config_free(&c);
	}
}

static void
bad_config(const char *runtime, const char *needle)
{
	struct oci_config c;
	struct cap_err err;
	char buf[8192];

	snprintf(buf, sizeof(buf), "{\"config\":%s,\"rootfs\":{\"diff_ids\":"
	    "[]}}", runtime);
	if (oci_parse_config(buf, strlen(buf), &c, &err) == 0)
		fail_msg("config %s was taken", runtime);
	has(err.msg, needle);
	assert_null(c.env);
}

static void
test_config_bad(void **state)
{
	struct oci_config c;
	struct cap_err err;
	char *big;

	(void)state;
	bad_config("[]", "config is not an object");
	bad_config("{\"Env\":\"A=b\"}", "Env is not a list");
	bad_config("{\"Env\":[\"novalue\"]}", "Env entry 1 is not K=V");
	bad_config("{\"Env\":[\"=x\"]}", "Env entry 1 is not K=V");
	bad_config("{\"Env\":[7]}", "Env is not a string");
	/* jansson refuses \u0000 itself; either way it is an error. */
	bad_config("{\"Cmd\":[\"a\\u0000b\"]}", "not valid JSON");
	bad_config("{\"WorkingDir\":\"relative\"}", "not an absolute path");
	bad_config("{\"User\":{}}", "User is not a string");
	/* No diff_ids: capsule cannot tell what the layers are. */
	assert_int_equal(oci_parse_config("{}", 2, &c, &err), -EINVAL);
	has(err.msg, "diff_ids");
	{
		const char *bad = "{\"rootfs\":{\"diff_ids\":[\"md5:x\"]}}";

		assert_int_equal(oci_parse_config(bad, strlen(bad), &c, &err),
		    -EINVAL);
		has(err.msg, "diff_id 1");
	}
	/* A config larger than capsule reads. */
	big = malloc(OCI_MAX_JSON + 2);
	assert_non_null(big);
	memset(big, ' ', OCI_MAX_JSON + 1);
	big[0] = '{';
	big[OCI_MAX_JSON] = '}';
	assert_int_equal(oci_parse_config(big, OCI_MAX_JSON + 1, &c, &err),
	    -EFBIG);
	has(err.msg, "larger than");
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_ok),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_manifest),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
