/*
 * test_volume.c — shared folder descriptions: the wire form, the CLI's
 * HOST:GUEST[:ro], and the guest path rules (proto/volume.h). The messages
 * are what a user reads, so they are spelled out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "volume.h"

static void
has(const char *msg, const char *needle)
{
	if (strstr(msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

static void
test_guest_paths(void **state)
{
	char longp[VOLUME_MAX_GUEST + 2];
	const char *ok[] = { "/w", "/mnt/rw", "/a.b/c-d_e/+f@g", "/procfs",
	    "/device", "/system/x", "/..a", "/a./b" };
	const struct { const char *p, *why; } bad[] = {
		{ "w", "is not absolute" },
		{ "", "is not absolute" },
		{ "/", "is the guest's root" },
		{ "/a b", "holds a space" },
		{ "/a\tb", "holds a space" },
		{ "/a,b", "holds a space" },
		{ "/a:b", "holds a space" },
		{ "/a\\b", "holds a space" },
		{ "/a\"b", "holds a space" },
		{ "/a\x7f", "holds a space" },
		{ "/\xc3\xa9", "holds a space" },
		{ "//a", "empty component" },
		{ "/a//b", "empty component" },
		{ "/a/", "empty component" },
		{ "/.", "has a . or .. component" },
		{ "/a/./b", "has a . or .. component" },
		{ "/a/..", "has a . or .. component" },
		{ "/proc", "is under /proc, /sys or /dev" },
		{ "/proc/1", "is under /proc, /sys or /dev" },
		{ "/sys/fs", "is under /proc, /sys or /dev" },
		{ "/dev", "is under /proc, /sys or /dev" },
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (volume_guest_problem(ok[i]) != NULL)
			fail_msg("%s refused: %s", ok[i],
			    volume_guest_problem(ok[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = volume_guest_problem(bad[i].p);

		if (why == NULL)
			fail_msg("\"%s\" accepted", bad[i].p);
		has(why, bad[i].why);
	}
	longp[0] = '/';
	memset(longp + 1, 'a', VOLUME_MAX_GUEST);
	longp[VOLUME_MAX_GUEST + 1] = '\0';
	has(volume_guest_problem(longp), "is too long");
	longp[VOLUME_MAX_GUEST] = '\0';
	assert_null(volume_guest_problem(longp));
}

static void
arg_ok(const char *s, const char *host, const char *guest, int ro)
{
	struct volume v;
	struct cap_err err;

	if (volume_parse_arg(s, &v, &err) < 0)
		fail_msg("\"%s\" refused: %s", s, err.msg);
	assert_string_equal(v.host, host);
	assert_string_equal(v.guest, guest);
	assert_int_equal(v.ro, ro);
	volume_free(&v, 1);
}

static void
arg_bad(const char *s, const char *needle)
{
	struct volume v;
	struct cap_err err;

	if (volume_parse_arg(s, &v, &err) == 0)
		fail_msg("\"%s\" accepted", s);
	has(err.msg, needle);
}

static void
test_arg(void **state)
{
	arg_ok("/src:/work", "/src", "/work", 0);
	arg_ok("/src:/work:ro", "/src", "/work", 1);
	arg_ok("/src:/work:rw", "/src", "/work", 0);
	arg_ok("/a b/c:/w", "/a b/c", "/w", 0);
	arg_bad("/src", "is not HOSTDIR:GUESTDIR[:ro]");
	arg_bad("/src:/w:rx", "the mode after the guest path must be ro or "
	    "rw");
	arg_bad("/src:/w:", "must be ro or rw");
	arg_bad("src:/w", "host directory src is not absolute");
	arg_bad("/s\x1b[0m:/w", "holds a control character");
	arg_bad("/s\x7f:/w", "holds a control character");
	arg_bad("/src:w", "guest path w is not absolute");
	arg_bad("/src:/proc/x:ro", "is under /proc");
	arg_bad("/src:", "guest path  is not absolute");
}

static json_t *
parse_ok(const char *text, struct volume *v, unsigned *n)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	struct cap_err err;

	assert_non_null(j);
	if (volume_parse_json(j, v, n, &err) < 0)
		fail_msg("%s refused: %s", text, err.msg);
	return j;
}

static void
json_bad(const char *text, const char *needle)
{
	struct volume v[VOLUME_MAX];
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	struct cap_err err;
	unsigned n = 99;

	assert_non_null(j);
	if (volume_parse_json(j, v, &n, &err) == 0)
		fail_msg("%s accepted", text);
	assert_int_equal(n, 0);
	has(err.msg, needle);
	json_decref(j);
}

static void
test_json(void **state)
{
	struct volume v[VOLUME_MAX];
	unsigned n = 99;
	json_t *j, *back;
	char *text;

	j = parse_ok("[{\"host\": \"/a\", \"guest\": \"/x\"}, {\"host\": "
	    "\"/b\", \"guest\": \"/y\", \"read_only\": true}, {\"host\": "
	    "\"/c\", \"guest\": \"/z\", \"read_only\": null}]", v, &n);
	assert_int_equal(n, 3);
	assert_string_equal(v[1].host, "/b");
	assert_int_equal(v[0].ro, 0);
	assert_int_equal(v[1].ro, 1);
	assert_int_equal(v[2].ro, 0);
	back = volume_json(v, n);
	text = json_dumps(back, JSON_COMPACT);
	assert_string_equal(text, "[{\"host\":\"/a\",\"guest\":\"/x\","
	    "\"read_only\":false},{\"host\":\"/b\",\"guest\":\"/y\","
	    "\"read_only\":true},{\"host\":\"/c\",\"guest\":\"/z\","
	    "\"read_only\":false}]");
	free(text);
	json_decref(back);
	json_decref(j);
	volume_free(v, n);

	n = 99;
	assert_int_equal(volume_parse_json(NULL, v, &n, NULL), 0);
	assert_int_equal(n, 0);
	j = json_null();
	assert_int_equal(volume_parse_json(j, v, &n, NULL), 0);
	json_decref(j);

	json_bad("{}", "\"volumes\" must be an array");
	json_bad("[1]", "\"volumes\"[0] must be an object");
	json_bad("[{\"host\": \"/a\"}]", "\"volumes\"[0] needs string "
	    "\"host\" and \"guest\"");
	json_bad("[{\"host\": \"/a\", \"guest\": 3}]", "needs string");
	json_bad("[{\"host\": \"/a\\u0000b\", \"guest\": \"/x\"}]",
	    "needs string");
	json_bad("[{\"host\": \"/a\", \"guest\": \"/x\", \"ro\": true}]",
	    "\"volumes\"[0]: unknown field \"ro\"");
	json_bad("[{\"host\": \"/a\", \"guest\": \"/x\", \"read_only\": 1}]",
	    "\"read_only\" must be true or false");
	json_bad("[{\"host\": \"/a\", \"guest\": \"/x\"}, {\"host\": \"/b\", "
	    "\"guest\": \"/x\"}]", "\"volumes\"[1]: guest path /x is used "
	    "twice");
	json_bad("[{\"host\": \"/a\", \"guest\": \"/x\"}, {\"host\": \"b\", "
	    "\"guest\": \"/y\"}]", "\"volumes\"[1]: host directory b is not "
	    "absolute");
	json_bad("[{\"host\": \"/a\", \"guest\": \"/dev/x\"}]",
	    "\"volumes\"[0]: guest path /dev/x is under /proc, /sys or /dev");
	json_bad("[{\"host\":\"/a\",\"guest\":\"/1\"},{\"host\":\"/a\",\"guest\":"
	    "\"/2\"},{\"host\":\"/a\",\"guest\":\"/3\"},{\"host\":\"/a\",\"guest\":"
	    "\"/4\"},{\"host\":\"/a\",\"guest\":\"/5\"},{\"host\":\"/a\",\"guest\":"
	    "\"/6\"},{\"host\":\"/a\",\"guest\":\"/7\"},{\"host\":\"/a\",\"guest\":"
	    "\"/8\"},{\"host\":\"/a\",\"guest\":\"/9\"}]", "has 9 entries; the "
	    "limit is 8");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_paths),
		cmocka_unit_test(test_arg),
		cmocka_unit_test(test_json),
	};

	return cmocka_run_group_tests_name("volume", tests, NULL, NULL);
}
