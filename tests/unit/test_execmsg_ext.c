/*
 * test_execmsg_ext.c — capsule's extensions of the vsockexec JSON lines:
 * user, timeout, detach, stdin_credit and copy in requests, credit lines
 * and the detached exit line in output; and that a request without them
 * stays cleanroom's.
 *
 * Field names, types and error codes are spelled out rather than taken from
 * proto.h: cleanroom's names on the wire are the contract under test.
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
#include <jansson.h>

#include "execmsg.h"
#include "proto.h"

#include "execmsg_check.h"

/* ---- capsule's request extensions ---- */

static void
test_request_defaults_no_extensions(void **state)
{
	struct exec_req r;
	struct cap_err e;

	(void)state;
	/* A cleanroom request: every extension at its default. */
	assert_int_equal(parse_req("{\"command\":[\"true\"]}", &r, &e), 0);
	assert_null(r.user);
	assert_int_equal(r.timeout_ms, 0);
	assert_int_equal(r.detach, 0);
	assert_int_equal(r.stdin_credit, 0);
	assert_int_equal(r.copy, EXEC_COPY_NONE);
	assert_null(r.path);
	exec_req_free(&r);

	/* null is absent, for each of them. */
	assert_int_equal(parse_req("{\"command\":[\"true\"],\"user\":null,"
	    "\"timeout\":null,\"detach\":null,\"stdin_credit\":null,"
	    "\"copy\":null}", &r, &e), 0);
	assert_int_equal(r.argc, 1);
	assert_null(r.user);
	assert_int_equal(r.timeout_ms, 0);
	assert_int_equal(r.detach, 0);
	assert_int_equal(r.stdin_credit, 0);
	assert_int_equal(r.copy, EXEC_COPY_NONE);
	exec_req_free(&r);
}

static void
test_request_user(void **state)
{
	static const char *const ok[] = { "root", "0", "1000:1000",
	    "capsule", "capsule:capsule", "nobody:0", "4294967294",
	    "h\xc3\xa9" };
	char line[1024], big[300];
	struct exec_req r;
	struct cap_err e;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(line, sizeof(line), "{\"command\":[\"id\"],"
		    "\"user\":\"%s\"}", ok[i]);
		assert_int_equal(parse_req(line, &r, &e), 0);
		assert_non_null(r.user);
		assert_string_equal(r.user, ok[i]);
		exec_req_free(&r);
		assert_null(r.user);
	}

	/* 256 bytes is the most. */
	memset(big, 'u', 256);
	big[256] = '\0';
	snprintf(line, sizeof(line), "{\"command\":[\"id\"],\"user\":\"%s\"}",
	    big);
	assert_int_equal(parse_req(line, &r, &e), 0);
	assert_int_equal(strlen(r.user), 256);
	exec_req_free(&r);
	big[256] = 'u';
	big[257] = '\0';
	snprintf(line, sizeof(line), "{\"command\":[\"id\"],\"user\":\"%s\"}",
	    big);
	req_fails(line, EINVAL, "invalid_argument", "\"user\"");

	req_fails("{\"command\":[\"id\"],\"user\":\"\"}", EINVAL,
	    "invalid_argument", "\"user\"");
	req_fails("{\"command\":[\"id\"],\"user\":0}", EINVAL,
	    "invalid_argument", "\"user\"");
	req_fails("{\"command\":[\"id\"],\"user\":[\"root\"]}", EINVAL,
	    "invalid_argument", "\"user\"");
	req_fails("{\"command\":[\"id\"],\"user\":true}", EINVAL,
	    "invalid_argument", "\"user\"");
	req_fails("{\"command\":[\"id\"],\"user\":\"ro\\u0000ot\"}", EINVAL,
	    "invalid_argument", "\"user\"");
}

static uint32_t
timeout_of(const char *json_number)
{
	char line[256];
	struct exec_req r;
	struct cap_err e;
	uint32_t ms;

	snprintf(line, sizeof(line), "{\"command\":[\"x\"],\"timeout\":%s}",
	    json_number);
	if (parse_req(line, &r, &e) != 0)
		fail_msg("%s: refused: %s", line, e.msg);
	ms = r.timeout_ms;
	exec_req_free(&r);
	return ms;
}

static void
test_request_timeout(void **state)
{
	(void)state;
	/* Seconds in, milliseconds out, rounded up, never 0. */
	assert_int_equal(timeout_of("5"), 5000);
	assert_int_equal(timeout_of("1.5"), 1500);
	assert_int_equal(timeout_of("0.25"), 250);
	assert_int_equal(timeout_of("0.001"), 1);
	assert_int_equal(timeout_of("0.0015"), 2);
	assert_int_equal(timeout_of("0.0001"), 1);
	assert_int_equal(timeout_of("1e-9"), 1);
	assert_int_equal(timeout_of("1.0001"), 1001);
	assert_int_equal(timeout_of("2.5e1"), 25000);
	assert_int_equal(timeout_of("3600"), 3600000);
	/* The most, 30 days, still fits in 32 bits of milliseconds. */
	assert_int_equal(timeout_of("2592000"), 2592000000u);
	assert_int_equal(timeout_of("2592000.0"), 2592000000u);

	req_fails("{\"command\":[\"x\"],\"timeout\":0}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":0.0}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":-1}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":-0.5}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":2592000.001}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":2592001}", EINVAL,
	    "invalid_argument", "2592000");
	req_fails("{\"command\":[\"x\"],\"timeout\":1e300}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":\"5\"}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":true}", EINVAL,
	    "invalid_argument", "\"timeout\"");
	req_fails("{\"command\":[\"x\"],\"timeout\":[5]}", EINVAL,
	    "invalid_argument", "\"timeout\"");
}

static void
test_request_detach_credit(void **state)
{
	struct exec_req r;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"detach\":true,"
	    "\"stdin_credit\":true}", &r, &e), 0);
	assert_int_equal(r.detach, 1);
	assert_int_equal(r.stdin_credit, 1);
	assert_int_equal(r.tty, 0);
	exec_req_free(&r);
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"detach\":false,"
	    "\"stdin_credit\":false,\"tty\":true}", &r, &e), 0);
	assert_int_equal(r.detach, 0);
	assert_int_equal(r.stdin_credit, 0);
	assert_int_equal(r.tty, 1);
	exec_req_free(&r);
	/* detach with tty false is fine; with tty true it is not. */
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"detach\":true,"
	    "\"tty\":false}", &r, &e), 0);
	assert_int_equal(r.detach, 1);
	exec_req_free(&r);
	req_fails("{\"command\":[\"x\"],\"detach\":true,\"tty\":true}", EINVAL,
	    "invalid_argument", "cannot be combined");
	req_fails("{\"tty\":true,\"command\":[\"x\"],\"detach\":true}", EINVAL,
	    "invalid_argument", "\"detach\"");

	req_fails("{\"command\":[\"x\"],\"detach\":1}", EINVAL,
	    "invalid_argument", "\"detach\"");
	req_fails("{\"command\":[\"x\"],\"detach\":\"true\"}", EINVAL,
	    "invalid_argument", "\"detach\"");
	req_fails("{\"command\":[\"x\"],\"stdin_credit\":1}", EINVAL,
	    "invalid_argument", "\"stdin_credit\"");
	req_fails("{\"command\":[\"x\"],\"stdin_credit\":\"yes\"}", EINVAL,
	    "invalid_argument", "\"stdin_credit\"");
	/* A bad stdin_credit fails a copy request too. */
	req_fails("{\"copy\":\"in\",\"path\":\"/x\",\"stdin_credit\":0}", EINVAL,
	    "invalid_argument", "\"stdin_credit\"");
}

static void
test_request_entropy_seed(void **state)
{
	struct exec_req r;
	struct cap_err e;
	char big[1024];

	(void)state;
	/* cleanroom's 64 bytes, as Go's []byte encodes them. */
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"entropy_seed\":"
	    "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss"
	    "LS4vMDEyMzQ1Njc4OTo7PD0+Pw==\"}", &r, &e), 0);
	assert_int_equal(r.seed_len, 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(r.seed[i], i);
	exec_req_free(&r);
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"entropy_seed\":"
	    "null}", &r, &e), 0);
	assert_null(r.seed);
	exec_req_free(&r);
	req_fails("{\"command\":[\"x\"],\"entropy_seed\":\"@@@@\"}", EINVAL,
	    "invalid_argument", "\"entropy_seed\"");
	req_fails("{\"command\":[\"x\"],\"entropy_seed\":64}", EINVAL,
	    "invalid_argument", "\"entropy_seed\"");
	memset(big, 'A', sizeof(big));
	snprintf(big, sizeof(big), "{\"command\":[\"x\"],\"entropy_seed\":"
	    "\"%.*s\"}", 700, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	req_fails(big, EINVAL, "invalid_argument", "at most 512 bytes");
}

static void
test_request_copy(void **state)
{
	char line[4200 + 64], *p;
	struct exec_req r;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_req("{\"copy\":\"in\",\"path\":\"/tmp/dst\"}", &r,
	    &e), 0);
	assert_int_equal(r.copy, EXEC_COPY_IN);
	assert_string_equal(r.path, "/tmp/dst");
	assert_null(r.argv);
	assert_int_equal(r.argc, 0);
	assert_int_equal(r.stdin_credit, 0);
	exec_req_free(&r);
	assert_null(r.path);

	assert_int_equal(parse_req("{\"path\":\"/\",\"copy\":\"out\","
	    "\"stdin_credit\":true}", &r, &e), 0);
	assert_int_equal(r.copy, EXEC_COPY_OUT);
	assert_string_equal(r.path, "/");
	assert_int_equal(r.stdin_credit, 1);
	assert_null(r.argv);
	exec_req_free(&r);

	/* Spaces, UTF-8 and a trailing slash are the caller's business. */
	assert_int_equal(parse_req("{\"copy\":\"out\",\"path\":"
	    "\"/srv/my dir/caf\\u00e9/\"}", &r, &e), 0);
	assert_string_equal(r.path, "/srv/my dir/caf\xc3\xa9/");
	exec_req_free(&r);

	/* copy: null is no copy at all. */
	assert_int_equal(parse_req("{\"copy\":null,\"command\":[\"ls\"]}", &r,
	    &e), 0);
	assert_int_equal(r.copy, EXEC_COPY_NONE);
	assert_int_equal(r.argc, 1);
	exec_req_free(&r);

	/* The longest path: 4096 bytes. */
	p = line + snprintf(line, sizeof(line), "{\"copy\":\"in\",\"path\":\"");
	memset(p, 'a', 4096);
	p[0] = '/';
	snprintf(p + 4096, 8, "\"}");
	assert_int_equal(parse_req(line, &r, &e), 0);
	assert_int_equal(strlen(r.path), 4096);
	exec_req_free(&r);
	p[4096] = 'a';
	snprintf(p + 4097, 8, "\"}");
	req_fails(line, EINVAL, "invalid_argument", "\"path\"");

	req_fails("{\"copy\":\"in\",\"path\":\"/x\",\"command\":[\"ls\"]}",
	    EINVAL, "invalid_argument", "not both");
	req_fails("{\"copy\":\"sideways\",\"path\":\"/x\"}", EINVAL,
	    "invalid_argument", "\"copy\"");
	req_fails("{\"copy\":\"IN\",\"path\":\"/x\"}", EINVAL,
	    "invalid_argument", "\"copy\"");
	req_fails("{\"copy\":\"\",\"path\":\"/x\"}", EINVAL,
	    "invalid_argument", "\"copy\"");
	req_fails("{\"copy\":1,\"path\":\"/x\"}", EINVAL, "invalid_argument",
	    "\"copy\"");
	req_fails("{\"copy\":true,\"path\":\"/x\"}", EINVAL,
	    "invalid_argument", "\"copy\"");
	req_fails("{\"copy\":\"in\"}", EINVAL, "invalid_argument", "\"path\"");
	req_fails("{\"copy\":\"in\",\"path\":null}", EINVAL,
	    "invalid_argument", "\"path\"");
	req_fails("{\"copy\":\"in\",\"path\":\"\"}", EINVAL,
	    "invalid_argument", "\"path\"");
	req_fails("{\"copy\":\"in\",\"path\":\"tmp/x\"}", EINVAL,
	    "invalid_argument", "absolute");
	req_fails("{\"copy\":\"out\",\"path\":7}", EINVAL, "invalid_argument",
	    "\"path\"");
	req_fails("{\"copy\":\"out\",\"path\":[\"/x\"]}", EINVAL,
	    "invalid_argument", "\"path\"");
	req_fails("{\"copy\":\"in\",\"path\":\"/a\\u0000b\"}", EINVAL,
	    "invalid_argument", "\"path\"");
	/* A repeated key could hide where the files go. */
	req_fails("{\"copy\":\"in\",\"path\":\"/a\",\"path\":\"/b\"}", EINVAL,
	    "invalid_json", "JSON");
}

/* The members of a JSON line, as a sorted comma-separated list. */
static void
keys_of(const char *line, size_t len, char *out, size_t cap)
{
	const char *names[32];
	json_error_t jerr;
	const char *k;
	json_t *o, *v;
	size_t n = 0, off = 0;

	o = json_loadb(line, len, 0, &jerr);
	assert_non_null(o);
	json_object_foreach(o, k, v) {
		assert_true(n < 32);
		names[n++] = k;
	}
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0;
		    j--) {
			k = names[j];
			names[j] = names[j - 1];
			names[j - 1] = k;
		}
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(out + off, cap - off, "%s%s",
		    i ? "," : "", names[i]);
	json_decref(o);
}

static void
test_encode_request_extensions(void **state)
{
	char *argv[] = { "sleep", "1", NULL };
	struct exec_req r = { .argv = argv, .argc = 2 }, out;
	struct cap_err e;
	char keys[256];
	size_t len = 0;
	char *line;

	(void)state;
	/* Only what is asked for: cleanroom's agent sees its own fields. */
	line = execmsg_encode_request(&r, &len);
	check_line(line, len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "command,tty");
	free(line);

	r.user = "capsule:capsule";
	r.timeout_ms = 1500;
	r.detach = 1;
	r.stdin_credit = 1;
	line = execmsg_encode_request(&r, &len);
	check_line(line, len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "command,detach,stdin_credit,timeout,tty,"
	    "user");
	assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
	assert_int_equal(out.argc, 2);
	assert_string_equal(out.argv[1], "1");
	assert_string_equal(out.user, "capsule:capsule");
	assert_int_equal(out.timeout_ms, 1500);
	assert_int_equal(out.detach, 1);
	assert_int_equal(out.stdin_credit, 1);
	assert_int_equal(out.copy, EXEC_COPY_NONE);
	exec_req_free(&out);
	free(line);

	/* Each on its own. */
	r.user = NULL;
	r.detach = 0;
	r.stdin_credit = 0;
	line = execmsg_encode_request(&r, &len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "command,timeout,tty");
	free(line);
	r.timeout_ms = 0;
	r.stdin_credit = 1;
	line = execmsg_encode_request(&r, &len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "command,stdin_credit,tty");
	free(line);

	/* A user that is not UTF-8 fails to encode rather than vanish. */
	r.user = "caf\xe9";
	assert_null(execmsg_encode_request(&r, &len));
}

static void
test_encode_request_timeout_round_trip(void **state)
{
	static const uint32_t big[] = { 999999, 1000000, 1000001, 86400000,
	    2591999999u, 2592000000u };
	char *argv[] = { "x", NULL };
	struct exec_req r = { .argv = argv, .argc = 1 }, out;
	struct cap_err e;
	size_t len = 0;
	char *line;

	(void)state;
	/* Milliseconds go out as seconds and must come back exactly. */
	for (uint32_t ms = 1; ms <= 100000 + sizeof(big) / sizeof(big[0]);
	    ms++) {
		r.timeout_ms = ms <= 100000 ? ms : big[ms - 100001];
		line = execmsg_encode_request(&r, &len);
		assert_non_null(line);
		assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
		if (out.timeout_ms != r.timeout_ms)
			fail_msg("timeout_ms %u came back as %u (%s)",
			    r.timeout_ms, out.timeout_ms, line);
		exec_req_free(&out);
		free(line);
	}
}

static void
test_encode_request_copy(void **state)
{
	char *argv[] = { "ignored", NULL };
	struct exec_req r = { .copy = EXEC_COPY_IN, .path = "/tmp/my dir/x",
	    .argv = argv, .argc = 1, .user = "ignored", .timeout_ms = 5,
	    .detach = 1, .tty = 1 }, out;
	struct cap_err e;
	char keys[256];
	size_t len = 0;
	char *line;

	(void)state;
	/* A copy is its path, and stdin_credit if asked: nothing else. */
	line = execmsg_encode_request(&r, &len);
	check_line(line, len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "copy,path");
	assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
	assert_int_equal(out.copy, EXEC_COPY_IN);
	assert_string_equal(out.path, "/tmp/my dir/x");
	assert_null(out.argv);
	assert_null(out.user);
	assert_int_equal(out.timeout_ms, 0);
	assert_int_equal(out.detach, 0);
	assert_int_equal(out.tty, 0);
	exec_req_free(&out);
	free(line);

	r.copy = EXEC_COPY_OUT;
	r.stdin_credit = 1;
	r.path = "/caf\xc3\xa9";
	line = execmsg_encode_request(&r, &len);
	check_line(line, len);
	keys_of(line, len, keys, sizeof(keys));
	assert_string_equal(keys, "copy,path,stdin_credit");
	assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
	assert_int_equal(out.copy, EXEC_COPY_OUT);
	assert_string_equal(out.path, "/caf\xc3\xa9");
	assert_int_equal(out.stdin_credit, 1);
	exec_req_free(&out);
	free(line);

	/* A path that is not UTF-8 fails to encode; it must not become a
	 * copy of something else. */
	r.path = "/caf\xe9";
	line = execmsg_encode_request(&r, &len);
	if (line != NULL) {
		assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
		assert_non_null(out.path);
		exec_req_free(&out);
		free(line);
	}
}

/* ---- capsule's output extensions ---- */

static void
test_encode_credit(void **state)
{
	static const uint32_t values[] = { 0, 1, 65536, 262144, UINT32_MAX };
	struct exec_msg m;
	struct cap_err e;
	json_error_t jerr;
	size_t len = 0;
	char *line;
	json_t *o;

	(void)state;
	line = execmsg_encode_credit(262144, &len);
	check_line(line, len);
	assert_string_equal(line, "{\"type\":\"credit\",\"bytes\":262144}\n");
	free(line);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		line = execmsg_encode_credit(values[i], &len);
		check_line(line, len);
		o = json_loadb(line, len, 0, &jerr);
		assert_non_null(o);
		assert_int_equal(json_object_size(o), 2);
		assert_string_equal(json_string_value(json_object_get(o,
		    "type")), "credit");
		assert_true(json_is_integer(json_object_get(o, "bytes")));
		assert_int_equal(json_integer_value(json_object_get(o, "bytes")),
		    values[i]);
		json_decref(o);
		assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
		assert_int_equal(m.type, EXEC_OUT_CREDIT);
		assert_int_equal(m.bytes, values[i]);
		assert_null(m.data);
		exec_msg_free(&m);
		free(line);
	}

	/* The client side reads what a server may send. */
	assert_int_equal(parse_out("{\"bytes\":5,\"type\":\"credit\"}", &m, &e),
	    0);
	assert_int_equal(m.type, EXEC_OUT_CREDIT);
	assert_int_equal(m.bytes, 5);
	exec_msg_free(&m);
	out_fails("{\"type\":\"credit\",\"bytes\":-1}", "\"bytes\"");
	out_fails("{\"type\":\"credit\",\"bytes\":4294967296}", "\"bytes\"");
	out_fails("{\"type\":\"credit\",\"bytes\":1.5}", "\"bytes\"");
	out_fails("{\"type\":\"credit\",\"bytes\":\"5\"}", "\"bytes\"");
	/* And a client never takes a credit line as input. */
	assert_int_equal(parse_in("{\"type\":\"credit\",\"bytes\":5}", &m, &e),
	    0);
	assert_int_equal(m.type, EXEC_IN_UNKNOWN);
	exec_msg_free(&m);
}

static void
test_encode_started(void **state)
{
	static const char log[] = "/var/log/capsule/exec-123.logXXXX";
	struct exec_msg m;
	struct cap_err e;
	size_t len = 0;
	char *line;
	json_t *o;

	(void)state;
	/* The detached exit line: an exit line (code 0, no error, no
	 * signal) plus pid and log_path, log_len bytes of it. */
	line = execmsg_encode_started(123, log, sizeof(log) - 5, &len);
	o = exit_object(line, len);
	assert_int_equal(json_object_size(o), 5);
	assert_int_equal(json_integer_value(json_object_get(o, "exit_code")),
	    0);
	assert_string_equal(json_string_value(json_object_get(o, "error")), "");
	assert_true(json_is_integer(json_object_get(o, "pid")));
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), 123);
	assert_string_equal(json_string_value(json_object_get(o, "log_path")),
	    "/var/log/capsule/exec-123.log");
	assert_null(json_object_get(o, "signal"));
	json_decref(o);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_EXIT);
	assert_int_equal(m.exit_code, 0);
	assert_int_equal(m.signal, 0);
	assert_string_equal(m.error, "");
	assert_int_equal(m.pid, 123);
	assert_non_null(m.log_path);
	assert_string_equal(m.log_path, "/var/log/capsule/exec-123.log");
	exec_msg_free(&m);
	assert_null(m.log_path);
	free(line);

	/* The largest pid. */
	line = execmsg_encode_started(UINT32_MAX, "/l", 2, &len);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.pid, UINT32_MAX);
	assert_string_equal(m.log_path, "/l");
	exec_msg_free(&m);
	free(line);

	/* A path that is not UTF-8 still gives a line, a parseable one. */
	line = execmsg_encode_started(7, "/var/log/caf\xe9", 13, &len);
	assert_non_null(line);
	check_line(line, len);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.pid, 7);
	assert_non_null(m.log_path);
	assert_memory_equal(m.log_path, "/var/log/caf", 12);
	exec_msg_free(&m);
	free(line);

	/* A plain exit line has neither. */
	line = execmsg_encode_exit(0, 0, NULL, 0, &len);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.pid, 0);
	assert_null(m.log_path);
	exec_msg_free(&m);
	free(line);

	/* What a client accepts. */
	assert_int_equal(parse_out("{\"type\":\"exit\",\"exit_code\":0,"
	    "\"pid\":4294967295,\"log_path\":\"/x\"}", &m, &e), 0);
	assert_int_equal(m.pid, UINT32_MAX);
	assert_string_equal(m.log_path, "/x");
	exec_msg_free(&m);
	assert_int_equal(parse_out("{\"type\":\"exit\",\"log_path\":5}", &m, &e),
	    0);
	assert_null(m.log_path);
	exec_msg_free(&m);
	out_fails("{\"type\":\"exit\",\"pid\":-1}", "\"pid\"");
	out_fails("{\"type\":\"exit\",\"pid\":4294967296}", "\"pid\"");
	out_fails("{\"type\":\"exit\",\"pid\":\"12\"}", "\"pid\"");
	out_fails("{\"type\":\"exit\",\"pid\":1.5}", "\"pid\"");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_defaults_no_extensions),
		cmocka_unit_test(test_request_user),
		cmocka_unit_test(test_request_timeout),
		cmocka_unit_test(test_request_detach_credit),
		cmocka_unit_test(test_request_copy),
		cmocka_unit_test(test_request_entropy_seed),
		cmocka_unit_test(test_encode_request_extensions),
		cmocka_unit_test(test_encode_request_timeout_round_trip),
		cmocka_unit_test(test_encode_request_copy),
		cmocka_unit_test(test_encode_credit),
		cmocka_unit_test(test_encode_started),
	};

	return cmocka_run_group_tests_name("execmsg_ext", tests, NULL, NULL);
}
