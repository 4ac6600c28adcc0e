/*
 * test_execmsg.c — the vsockexec JSON lines, both the server's and the
 * client's side; capsule's extensions are in test_execmsg_ext.c.
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

/* ---- requests ---- */

static void
test_request_valid(void **state)
{
	struct exec_req r;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_req("{\"command\":"
	    "[\"sh\",\"-c\",\"echo \\\"hi\\\"\"],\"dir\":\"/tmp\","
	    "\"env\":[\"A=1\",\"B=\",\"C=x=y\"],\"tty\":true}", &r, &e), 0);
	assert_int_equal(r.argc, 3);
	assert_string_equal(r.argv[0], "sh");
	assert_string_equal(r.argv[1], "-c");
	assert_string_equal(r.argv[2], "echo \"hi\"");
	assert_null(r.argv[3]);
	assert_int_equal(r.envc, 3);
	assert_string_equal(r.env[0], "A=1");
	assert_string_equal(r.env[1], "B=");
	assert_string_equal(r.env[2], "C=x=y");
	assert_null(r.env[3]);
	assert_string_equal(r.dir, "/tmp");
	assert_int_equal(r.tty, 1);
	exec_req_free(&r);
	assert_null(r.argv);

	/* The minimum: defaults everywhere. */
	assert_int_equal(parse_req("{\"command\":[\"true\"]}", &r, &e), 0);
	assert_int_equal(r.argc, 1);
	assert_string_equal(r.argv[0], "true");
	assert_null(r.argv[1]);
	assert_null(r.env);
	assert_int_equal(r.envc, 0);
	assert_null(r.dir);
	assert_int_equal(r.tty, 0);
	exec_req_free(&r);

	/* null is absent; "" dir is the guest's default; tty false. */
	assert_int_equal(parse_req("{\"command\":[\"x\",\"\"],\"dir\":null,"
	    "\"env\":null,\"tty\":null}", &r, &e), 0);
	assert_int_equal(r.argc, 2);
	assert_string_equal(r.argv[1], "");
	assert_null(r.dir);
	assert_null(r.env);
	exec_req_free(&r);
	assert_int_equal(parse_req("{\"command\":[\"x\"],\"dir\":\"\","
	    "\"env\":[],\"tty\":false}", &r, &e), 0);
	assert_non_null(r.dir);
	assert_string_equal(r.dir, "");
	assert_int_equal(r.envc, 0);
	assert_int_equal(r.tty, 0);
	exec_req_free(&r);

	/* Non-ASCII survives. */
	assert_int_equal(parse_req("{\"command\":"
	    "[\"echo\",\"h\\u00e9\\u2603\"]}", &r, &e), 0);
	assert_string_equal(r.argv[1], "h\xc3\xa9\xe2\x98\x83");
	exec_req_free(&r);

	/* Only `len` bytes are the line. */
	{
		static const char two[] =
		    "{\"command\":[\"a\"]}{\"command\":1}";

		assert_int_equal(execmsg_parse_request(two, 17, &r, &e), 0);
		assert_string_equal(r.argv[0], "a");
		exec_req_free(&r);
	}
}

static void
test_request_unknown_fields(void **state)
{
	struct exec_req r;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_req("{\"future\":{\"a\":[1,2]},"
	    "\"command\":[\"ls\"],\"timeout\":5,\"user\":\"root\"}", &r, &e),
	    0);
	assert_int_equal(r.argc, 1);
	assert_string_equal(r.argv[0], "ls");
	exec_req_free(&r);
}

static void
test_request_missing_command(void **state)
{
	(void)state;
	req_fails("{\"command\":null}", EINVAL, "invalid_argument",
	    "missing command");
	req_fails("{}", EINVAL, "invalid_argument", "missing command");
	req_fails("{\"dir\":\"/\"}", EINVAL, "invalid_argument",
	    "missing command");
	req_fails("{\"command\":[]}", EINVAL, "invalid_argument",
	    "missing command");
}

/* For a VM booted from an image, no command means the image's: the lax
 * parse leaves argv empty, and still refuses a command that is wrong. */
static void
test_request_lax(void **state)
{
	struct exec_req req;
	struct cap_err err;
	const char *cases[] = { "{}", "{\"command\":null}",
	    "{\"command\":[],\"dir\":\"/w\"}" };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(execmsg_parse_request_lax(cases[i],
		    strlen(cases[i]), &req, &err), 0);
		assert_int_equal(req.argc, 0);
		assert_null(req.argv);
		exec_req_free(&req);
	}
	assert_int_equal(execmsg_parse_request_lax("{\"command\":\"ls\"}",
	    16, &req, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "must be an array"));
	assert_int_equal(execmsg_parse_request_lax("{\"command\":[\"\"]}",
	    16, &req, &err), -EINVAL);
	assert_int_equal(execmsg_parse_request_lax("{\"command\":[\"ls\"]}",
	    18, &req, &err), 0);
	assert_int_equal(req.argc, 1);
	exec_req_free(&req);
}

static void
test_request_bad_fields(void **state)
{
	(void)state;
	req_fails("{\"command\":\"ls -l\"}", EINVAL, "invalid_argument",
	    "\"command\" must be an array");
	req_fails("{\"command\":{\"0\":\"ls\"}}", EINVAL, "invalid_argument",
	    "\"command\"");
	req_fails("{\"command\":[\"ls\",1]}", EINVAL, "invalid_argument",
	    "\"command\"[1]");
	req_fails("{\"command\":[null]}", EINVAL, "invalid_argument",
	    "\"command\"[0]");
	req_fails("{\"command\":[\"ls\",\"a\",[\"b\"]]}", EINVAL,
	    "invalid_argument", "\"command\"[2]");
	req_fails("{\"command\":[\"ls\",\"a\\u0000b\"]}", EINVAL,
	    "invalid_argument", "\"command\"[1]");
	req_fails("{\"command\":[\"\"]}", EINVAL, "invalid_argument",
	    "\"command\"[0] must not be empty");

	req_fails("{\"command\":[\"x\"],\"env\":[\"A=1\",\"NOEQUALS\"]}",
	    EINVAL, "invalid_argument", "\"env\"[1]");
	req_fails("{\"command\":[\"x\"],\"env\":[\"=V\"]}", EINVAL,
	    "invalid_argument", "\"env\"[0]");
	req_fails("{\"command\":[\"x\"],\"env\":[\"\"]}", EINVAL,
	    "invalid_argument", "\"env\"[0]");
	req_fails("{\"command\":[\"x\"],\"env\":[3]}", EINVAL,
	    "invalid_argument", "\"env\"[0]");
	req_fails("{\"command\":[\"x\"],\"env\":[\"A=\\u0000\"]}", EINVAL,
	    "invalid_argument", "\"env\"[0]");
	req_fails("{\"command\":[\"x\"],\"env\":\"A=1\"}", EINVAL,
	    "invalid_argument", "\"env\"");
	req_fails("{\"command\":[\"x\"],\"env\":{\"A\":\"1\"}}", EINVAL,
	    "invalid_argument", "\"env\"");

	req_fails("{\"command\":[\"x\"],\"dir\":\"tmp\"}", EINVAL,
	    "invalid_argument", "absolute");
	req_fails("{\"command\":[\"x\"],\"dir\":\"./tmp\"}", EINVAL,
	    "invalid_argument", "\"dir\"");
	req_fails("{\"command\":[\"x\"],\"dir\":5}", EINVAL,
	    "invalid_argument", "\"dir\"");
	req_fails("{\"command\":[\"x\"],\"dir\":\"/a\\u0000b\"}", EINVAL,
	    "invalid_argument", "\"dir\"");

	req_fails("{\"command\":[\"x\"],\"tty\":1}", EINVAL,
	    "invalid_argument", "\"tty\"");
	req_fails("{\"command\":[\"x\"],\"tty\":\"true\"}", EINVAL,
	    "invalid_argument", "\"tty\"");
}

static void
scalar_fails(const char *line)
{
	struct exec_req r;
	struct cap_err e;

	assert_int_equal(parse_req(line, &r, &e), -EINVAL);
	if (strcmp(e.code, "invalid_json") != 0 &&
	    strcmp(e.code, "invalid_argument") != 0)
		fail_msg("%s: code %s", line, e.code);
	assert_null(r.argv);
}

static void
test_request_not_json(void **state)
{
	(void)state;
	req_fails("", EINVAL, "invalid_json", "not valid JSON");
	req_fails("command: ls", EINVAL, "invalid_json", "not valid JSON");
	req_fails("{\"command\":[\"x\"]", EINVAL, "invalid_json", "JSON");
	req_fails("{\"command\":[\"x\"]} trailing", EINVAL, "invalid_json",
	    "JSON");
	/* A repeated key could hide what the daemon will run. */
	req_fails("{\"command\":[\"ls\"],\"command\":[\"rm\"]}", EINVAL,
	    "invalid_json", "JSON");

	req_fails("[\"ls\"]", EINVAL, "invalid_argument", "object");
	req_fails("[{\"command\":[\"ls\"]}]", EINVAL, "invalid_argument",
	    "object");
	/* jansson refuses a bare scalar as a document, so these are
	 * invalid_json rather than "not an object"; either way, refused. */
	scalar_fails("\"ls\"");
	scalar_fails("42");
	scalar_fails("null");
	scalar_fails("true");
}

/* {"<field>":[<n> strings]} plus a command if field is env. */
static char *
big_request(const char *field, size_t n)
{
	size_t cap = 64 + n * 6, o;
	char *s = malloc(cap);

	assert_non_null(s);
	o = (size_t)snprintf(s, cap, "{%s\"%s\":[",
	    strcmp(field, "env") == 0 ? "\"command\":[\"x\"]," : "", field);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "%s\"A=1\"",
		    i ? "," : "");
	snprintf(s + o, cap - o, "]}");
	return s;
}

static void
test_request_too_large(void **state)
{
	struct exec_req r;
	struct cap_err e;
	char *s;

	(void)state;
	s = big_request("command", PROTO_MAX_ARGS);
	assert_int_equal(parse_req(s, &r, &e), 0);
	assert_int_equal(r.argc, PROTO_MAX_ARGS);
	assert_null(r.argv[PROTO_MAX_ARGS]);
	exec_req_free(&r);
	free(s);

	s = big_request("command", PROTO_MAX_ARGS + 1);
	req_fails(s, E2BIG, "too_large", "\"command\"");
	free(s);

	s = big_request("env", PROTO_MAX_ENV);
	assert_int_equal(parse_req(s, &r, &e), 0);
	assert_int_equal(r.envc, PROTO_MAX_ENV);
	exec_req_free(&r);
	free(s);

	s = big_request("env", PROTO_MAX_ENV + 1);
	req_fails(s, E2BIG, "too_large", "\"env\"");
	free(s);
}

/* ---- input lines ---- */

static void
test_input_stdin(void **state)
{
	struct exec_msg m;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_in("{\"type\":\"stdin\",\"data\":\"aGVsbG8K\"}",
	    &m, &e), 0);
	assert_int_equal(m.type, EXEC_IN_STDIN);
	assert_int_equal(m.len, 6);
	assert_memory_equal(m.data, "hello\n", 6);
	exec_msg_free(&m);
	assert_null(m.data);

	assert_int_equal(parse_in("{\"data\":\"AP8A\",\"type\":\"stdin\"}", &m,
	    &e), 0);
	assert_int_equal(m.type, EXEC_IN_STDIN);
	assert_int_equal(m.len, 3);
	assert_memory_equal(m.data, "\0\xff\0", 3);
	exec_msg_free(&m);

	/* Empty and absent data are zero bytes. */
	assert_int_equal(parse_in("{\"type\":\"stdin\",\"data\":\"\"}", &m, &e),
	    0);
	assert_int_equal(m.type, EXEC_IN_STDIN);
	assert_int_equal(m.len, 0);
	exec_msg_free(&m);
	assert_int_equal(parse_in("{\"type\":\"stdin\"}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_IN_STDIN);
	assert_int_equal(m.len, 0);
	exec_msg_free(&m);
}

static void
in_fails(const char *line, const char *code, const char *needle)
{
	struct exec_msg m;
	struct cap_err e;
	int rc;

	memset(&m, 0x5a, sizeof(m));
	rc = parse_in(line, &m, &e);
	if (rc != -EINVAL)
		fail_msg("%s: got %d, want -EINVAL", line, rc);
	assert_string_equal(e.code, code);
	if (strstr(e.msg, needle) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", line, e.msg,
		    needle);
	/* Freed and cleared: a second free is harmless. */
	assert_null(m.data);
	assert_null(m.error);
	exec_msg_free(&m);
}

static void
test_input_bad(void **state)
{
	(void)state;
	in_fails("{\"type\":\"stdin\",\"data\":\"aGVsbG8\"}",
	    "invalid_argument", "base64");
	in_fails("{\"type\":\"stdin\",\"data\":\"aGVs!G8K\"}",
	    "invalid_argument", "base64");
	in_fails("{\"type\":\"stdin\",\"data\":\"hello\"}", "invalid_argument",
	    "base64");
	in_fails("{\"type\":\"stdin\",\"data\":[104]}", "invalid_argument",
	    "\"data\"");
	in_fails("{\"type\":\"stdin\",\"data\":\"aGVs\\u0000G8K\"}",
	    "invalid_argument", "base64");
	in_fails("{\"data\":\"aGk=\"}", "invalid_argument", "\"type\"");
	in_fails("{\"type\":1}", "invalid_argument", "\"type\"");
	in_fails("{\"type\":null}", "invalid_argument", "\"type\"");
	in_fails("not json", "invalid_json", "JSON");
	in_fails("[\"stdin\"]", "invalid_argument", "object");
}

static void
test_input_eof_unknown(void **state)
{
	struct exec_msg m;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_in("{\"type\":\"eof\"}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_IN_EOF);
	assert_null(m.data);
	exec_msg_free(&m);

	/* Unknown types are ignored, not errors: newer clients work. */
	assert_int_equal(parse_in("{\"type\":\"telepathy\",\"level\":9000}", &m,
	    &e), 0);
	assert_int_equal(m.type, EXEC_IN_UNKNOWN);
	exec_msg_free(&m);
	/* Output types are not input. */
	assert_int_equal(parse_in("{\"type\":\"stdout\",\"data\":\"aGk=\"}", &m,
	    &e), 0);
	assert_int_equal(m.type, EXEC_IN_UNKNOWN);
	assert_null(m.data);
	exec_msg_free(&m);
}

static void
test_input_resize(void **state)
{
	struct exec_msg m;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_in("{\"type\":\"resize\",\"cols\":132,"
	    "\"rows\":43}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_IN_RESIZE);
	assert_int_equal(m.cols, 132);
	assert_int_equal(m.rows, 43);
	exec_msg_free(&m);
	assert_int_equal(parse_in("{\"type\":\"resize\",\"cols\":65535,"
	    "\"rows\":0}", &m, &e), 0);
	assert_int_equal(m.cols, 65535);
	assert_int_equal(m.rows, 0);
	exec_msg_free(&m);
	assert_int_equal(parse_in("{\"type\":\"resize\",\"rows\":7}", &m, &e),
	    0);
	assert_int_equal(m.cols, 0);
	assert_int_equal(m.rows, 7);
	exec_msg_free(&m);

	in_fails("{\"type\":\"resize\",\"cols\":65536,\"rows\":1}",
	    "invalid_argument", "\"cols\"");
	in_fails("{\"type\":\"resize\",\"cols\":1,\"rows\":-1}",
	    "invalid_argument", "\"rows\"");
	in_fails("{\"type\":\"resize\",\"cols\":80.5,\"rows\":1}",
	    "invalid_argument", "\"cols\"");
	in_fails("{\"type\":\"resize\",\"cols\":\"80\",\"rows\":1}",
	    "invalid_argument", "\"cols\"");
}

static void
test_input_signal(void **state)
{
	struct exec_msg m;
	struct cap_err e;

	(void)state;
	assert_int_equal(parse_in("{\"type\":\"signal\",\"signal\":15}", &m,
	    &e), 0);
	assert_int_equal(m.type, EXEC_IN_SIGNAL);
	assert_int_equal(m.signal, 15);
	exec_msg_free(&m);
	assert_int_equal(parse_in("{\"type\":\"signal\",\"signal\":1}", &m, &e),
	    0);
	assert_int_equal(m.signal, 1);
	exec_msg_free(&m);
	assert_int_equal(parse_in("{\"type\":\"signal\",\"signal\":64}", &m,
	    &e), 0);
	assert_int_equal(m.signal, 64);
	exec_msg_free(&m);

	in_fails("{\"type\":\"signal\",\"signal\":0}", "invalid_argument",
	    "\"signal\"");
	in_fails("{\"type\":\"signal\",\"signal\":65}", "invalid_argument",
	    "\"signal\"");
	in_fails("{\"type\":\"signal\",\"signal\":-9}", "invalid_argument",
	    "\"signal\"");
	in_fails("{\"type\":\"signal\"}", "invalid_argument", "\"signal\"");
	in_fails("{\"type\":\"signal\",\"signal\":null}", "invalid_argument",
	    "\"signal\"");
	in_fails("{\"type\":\"signal\",\"signal\":\"KILL\"}",
	    "invalid_argument", "\"signal\"");
}

/* ---- output lines ---- */

static void
test_encode_data(void **state)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 32767, 32768 };
	static uint8_t buf[32768];
	uint32_t x = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245 + 12345;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (int t = 0; t < 2; t++) {
		int type = t ? EXEC_OUT_STDERR : EXEC_OUT_STDOUT;

		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			struct exec_msg m;
			struct cap_err e;
			json_error_t jerr;
			json_t *o;
			size_t len = 0;
			char *line;

			line = execmsg_encode_data(type, buf, sizes[k], &len);
			check_line(line, len);

			/* Well-formed JSON with just the two members. */
			o = json_loadb(line, len, 0, &jerr);
			assert_non_null(o);
			assert_int_equal(json_object_size(o), 2);
			assert_string_equal(json_string_value(json_object_get(o,
			    "type")), t ? "stderr" : "stdout");
			assert_true(json_is_string(json_object_get(o, "data")));
			json_decref(o);

			assert_int_equal(execmsg_parse_output(line, len, &m,
			    &e), 0);
			assert_int_equal(m.type, type);
			assert_int_equal(m.len, sizes[k]);
			if (sizes[k] > 0)
				assert_memory_equal(m.data, buf, sizes[k]);
			exec_msg_free(&m);
			free(line);
		}
	}
}

static void
test_encode_data_exact(void **state)
{
	size_t len = 0;
	char *line;

	(void)state;
	/* cleanroom's clients read exactly this; keep it byte-stable. */
	line = execmsg_encode_data(EXEC_OUT_STDOUT, (const uint8_t *)"hi\n", 3,
	    &len);
	assert_string_equal(line, "{\"type\":\"stdout\",\"data\":\"aGkK\"}\n");
	assert_int_equal(len, strlen(line));
	free(line);
	line = execmsg_encode_data(EXEC_OUT_STDERR, NULL, 0, &len);
	assert_string_equal(line, "{\"type\":\"stderr\",\"data\":\"\"}\n");
	free(line);
}

static void
test_encode_exit(void **state)
{
	struct exec_msg m;
	struct cap_err e;
	size_t len = 0;
	char *line;
	json_t *o;

	(void)state;
	/* Plain exit: no signal member at all. */
	line = execmsg_encode_exit(0, 0, NULL, 0, &len);
	o = exit_object(line, len);
	assert_int_equal(json_integer_value(json_object_get(o, "exit_code")),
	    0);
	assert_string_equal(json_string_value(json_object_get(o, "error")), "");
	assert_null(json_object_get(o, "signal"));
	assert_int_equal(json_object_size(o), 3);
	json_decref(o);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_EXIT);
	assert_int_equal(m.exit_code, 0);
	assert_int_equal(m.signal, 0);
	assert_string_equal(m.error, "");
	exec_msg_free(&m);
	free(line);

	/* Killed: signal present. */
	line = execmsg_encode_exit(137, 9, "", 0, &len);
	o = exit_object(line, len);
	assert_int_equal(json_integer_value(json_object_get(o, "signal")), 9);
	json_decref(o);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.exit_code, 137);
	assert_int_equal(m.signal, 9);
	exec_msg_free(&m);
	free(line);

	/* A negative signal is "none" too. */
	line = execmsg_encode_exit(1, -1, NULL, 0, &len);
	o = exit_object(line, len);
	assert_null(json_object_get(o, "signal"));
	json_decref(o);
	free(line);

	/* The error is error_len bytes, JSON-escaped. */
	line = execmsg_encode_exit(127, 0, "exec \"nope\": not found\nXXXX", 22,
	    &len);
	o = exit_object(line, len);
	assert_string_equal(json_string_value(json_object_get(o, "error")),
	    "exec \"nope\": not found");
	json_decref(o);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.exit_code, 127);
	assert_string_equal(m.error, "exec \"nope\": not found");
	exec_msg_free(&m);
	free(line);
}

static void
test_parse_output(void **state)
{
	struct exec_msg m;
	struct cap_err e;

	(void)state;
	/* cleanroom's legacy one-shot reply has no type: it is an exit. */
	assert_int_equal(parse_out("{\"exit_code\":1,\"error\":"
	    "\"missing command\"}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_EXIT);
	assert_int_equal(m.exit_code, 1);
	assert_string_equal(m.error, "missing command");
	assert_int_equal(m.signal, 0);
	exec_msg_free(&m);

	assert_int_equal(parse_out("{\"type\":\"exit\"}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_EXIT);
	assert_int_equal(m.exit_code, 0);
	assert_non_null(m.error);
	assert_string_equal(m.error, "");
	exec_msg_free(&m);

	assert_int_equal(parse_out("{\"type\":\"exit\",\"exit_code\":255,"
	    "\"signal\":64,\"error\":null}", &m, &e), 0);
	assert_int_equal(m.exit_code, 255);
	assert_int_equal(m.signal, 64);
	assert_string_equal(m.error, "");
	exec_msg_free(&m);

	assert_int_equal(parse_out("{\"type\":\"progress\",\"pct\":50}", &m,
	    &e), 0);
	assert_int_equal(m.type, EXEC_OUT_UNKNOWN);
	exec_msg_free(&m);

	assert_int_equal(parse_out("{\"type\":\"stderr\","
	    "\"data\":\"b29wcw==\"}", &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_STDERR);
	assert_int_equal(m.len, 4);
	assert_memory_equal(m.data, "oops", 4);
	exec_msg_free(&m);

	out_fails("{\"type\":\"exit\",\"exit_code\":256}", "\"exit_code\"");
	out_fails("{\"type\":\"exit\",\"exit_code\":-1}", "\"exit_code\"");
	out_fails("{\"exit_code\":\"1\"}", "\"exit_code\"");
	out_fails("{\"type\":\"exit\",\"signal\":65}", "\"signal\"");
	out_fails("{\"type\":\"stdout\",\"data\":\"x\"}", "base64");
	out_fails("{\"type\":\"stdout\",\"data\":7}", "\"data\"");
	out_fails("{\"type\":\"exit\"", "JSON");
	out_fails("[]", "object");
}

/* ---- client side round trips ---- */

static void
request_round_trip(const struct exec_req *in)
{
	struct exec_req out;
	struct cap_err e;
	size_t len = 0;
	char *line;

	line = execmsg_encode_request(in, &len);
	check_line(line, len);
	assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
	assert_int_equal(out.argc, in->argc);
	for (size_t i = 0; i < in->argc; i++)
		assert_string_equal(out.argv[i], in->argv[i]);
	assert_int_equal(out.envc, in->envc);
	for (size_t i = 0; i < in->envc; i++)
		assert_string_equal(out.env[i], in->env[i]);
	if (in->dir == NULL)
		assert_null(out.dir);
	else
		assert_string_equal(out.dir, in->dir);
	assert_int_equal(out.tty, !!in->tty);
	exec_req_free(&out);
	free(line);
}

static void
test_request_round_trip(void **state)
{
	char *argv[] = { "sh", "-c", "printf '%s\\n' \"$X\"\ttab\x01",
	    "\xc3\xa9\xe2\x98\x83", "", NULL };
	char *env[] = { "X=a \"quoted\" \\ value", "EMPTY=", "LF=a\nb", NULL };
	struct exec_req r = { .argv = argv, .argc = 5, .env = env, .envc = 3,
	    .dir = "/srv/my dir", .tty = 1 };

	(void)state;
	request_round_trip(&r);
	r.envc = 1;
	request_round_trip(&r);
	r.env = NULL;
	r.envc = 0;
	r.dir = NULL;
	r.tty = 0;
	request_round_trip(&r);
	r.argc = 1;
	r.dir = "";
	request_round_trip(&r);
}

static void
input_round_trip(const struct exec_msg *in)
{
	struct exec_msg out;
	struct cap_err e;
	size_t len = 0;
	char *line;

	line = execmsg_encode_input(in, &len);
	check_line(line, len);
	assert_int_equal(execmsg_parse_input(line, len, &out, &e), 0);
	assert_int_equal(out.type, in->type);
	switch (in->type) {
	case EXEC_IN_STDIN:
		assert_int_equal(out.len, in->len);
		if (in->len > 0)
			assert_memory_equal(out.data, in->data, in->len);
		break;
	case EXEC_IN_RESIZE:
		assert_int_equal(out.cols, in->cols);
		assert_int_equal(out.rows, in->rows);
		break;
	case EXEC_IN_SIGNAL:
		assert_int_equal(out.signal, in->signal);
		break;
	}
	exec_msg_free(&out);
	free(line);
}

static void
test_input_round_trip(void **state)
{
	static uint8_t bytes[4099];
	struct exec_msg m;
	size_t len = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 7 + (i >> 8));
	memset(&m, 0, sizeof(m));
	m.type = EXEC_IN_STDIN;
	m.data = bytes;
	for (size_t n = 0; n < 8; n++) {
		m.len = n;
		input_round_trip(&m);
	}
	m.len = sizeof(bytes);
	input_round_trip(&m);

	memset(&m, 0, sizeof(m));
	m.type = EXEC_IN_EOF;
	input_round_trip(&m);
	m.type = EXEC_IN_RESIZE;
	m.cols = 65535;
	m.rows = 0;
	input_round_trip(&m);
	m.cols = 80;
	m.rows = 24;
	input_round_trip(&m);
	m.type = EXEC_IN_SIGNAL;
	m.signal = 2;
	input_round_trip(&m);
	m.signal = 64;
	input_round_trip(&m);

	/* Nothing to say for an unknown type. */
	m.type = EXEC_IN_UNKNOWN;
	assert_null(execmsg_encode_input(&m, &len));
}

/* Regression tests for non-UTF-8 text (found by these tests). */
/* A non-UTF-8 argument (a Latin-1 file name, say) must not vanish from
 * the command: either the request fails to encode or it keeps every arg. */
static void
test_bug_request_drops_non_utf8(void **state)
{
	char *argv[] = { "rm", "--", "caf\xe9", "keep", NULL };
	struct exec_req r = { .argv = argv, .argc = 4, .dir = "/srv/\xff" };
	struct exec_req out;
	struct cap_err e;
	size_t len = 0;
	char *line;

	(void)state;
	line = execmsg_encode_request(&r, &len);
	if (line == NULL)
		return;
	assert_int_equal(execmsg_parse_request(line, len, &out, &e), 0);
	free(line);
	assert_int_equal(out.argc, r.argc);
	assert_non_null(out.dir);
	exec_req_free(&out);
}

/* The exit line is the end of the stream: it must be produced whatever
 * bytes the agent's message holds (it is cut at CHAN_MAX_MSG bytes, which
 * can split a UTF-8 sequence). */
static void
test_bug_exit_non_utf8(void **state)
{
	struct exec_msg m;
	struct cap_err e;
	size_t len = 0;
	char *line;

	(void)state;
	line = execmsg_encode_exit(126, 0, "caf\xc3\xa9 \xc3", 8, &len);
	assert_non_null(line);
	assert_int_equal(execmsg_parse_output(line, len, &m, &e), 0);
	assert_int_equal(m.type, EXEC_OUT_EXIT);
	assert_int_equal(m.exit_code, 126);
	exec_msg_free(&m);
	free(line);
}

/*
 * Data lines take a fast path when spelled exactly as the encoders write
 * them; every other spelling of the same JSON must mean the same thing.
 */
static void
check_input_same(const char *line, const uint8_t *want, size_t wantlen)
{
	struct exec_msg m;
	struct cap_err err;

	assert_int_equal(execmsg_parse_input(line, strlen(line), &m, &err), 0);
	assert_int_equal(m.type, EXEC_IN_STDIN);
	assert_int_equal(m.len, wantlen);
	if (wantlen > 0)
		assert_memory_equal(m.data, want, wantlen);
	exec_msg_free(&m);
}

static void
test_data_line_spellings(void **state)
{
	uint8_t data[1000];
	struct exec_msg in = { .type = EXEC_IN_STDIN, .data = data }, m;
	struct cap_err err;
	char *line;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	/* Every length mod 3, through the encoder and back. */
	for (size_t len = 0; len < 40; len++) {
		in.len = len;
		line = execmsg_encode_input(&in, &n);
		assert_non_null(line);
		assert_int_equal(line[n - 1], '\n');
		line[n - 1] = '\0';
		check_input_same(line, data, len);
		free(line);
		line = execmsg_encode_data(EXEC_OUT_STDERR, data, len, &n);
		assert_int_equal(execmsg_parse_output(line, n - 1, &m, &err),
		    0);
		assert_int_equal(m.type, EXEC_OUT_STDERR);
		assert_int_equal(m.len, len);
		if (len > 0)
			assert_memory_equal(m.data, data, len);
		exec_msg_free(&m);
		free(line);
	}
	/* "/+8=" is 0xff 0xef; the same through jansson's spellings. */
	static const uint8_t ffef[] = { 0xff, 0xef };
	check_input_same("{\"type\":\"stdin\",\"data\":\"/+8=\"}", ffef, 2);
	check_input_same("{\"data\":\"/+8=\",\"type\":\"stdin\"}", ffef, 2);
	check_input_same("{ \"type\" : \"stdin\", \"data\" : \"/+8=\" }", ffef,
	    2);
	check_input_same("{\"type\":\"stdin\",\"data\":\"\\/+8=\"}", ffef, 2);
	check_input_same("{\"type\":\"stdin\",\"data\":\"/+8=\",\"x\":1}",
	    ffef, 2);
	/* Bad base64 or a broken line is an error either way. */
#define LIT(x) x, sizeof(x) - 1
	assert_int_equal(execmsg_parse_input(LIT("{\"type\":\"stdin\","
	    "\"data\":\"/+8\"}"), &m, &err), -EINVAL);
	assert_int_equal(execmsg_parse_input(LIT("{\"type\":\"stdin\","
	    "\"data\":\"/+8=\""), &m, &err), -EINVAL);
	/* A stdout line is not input, and the reverse. */
	assert_int_equal(execmsg_parse_input(LIT("{\"type\":\"stdout\","
	    "\"data\":\"/+8=\"}"), &m, &err), 0);
	assert_int_equal(m.type, EXEC_IN_UNKNOWN);
	exec_msg_free(&m);
	assert_int_equal(execmsg_parse_output(LIT("{\"type\":\"stdin\","
	    "\"data\":\"/+8=\"}"), &m, &err), 0);
	assert_int_equal(m.type, EXEC_OUT_UNKNOWN);
	exec_msg_free(&m);
#undef LIT
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_valid),
		cmocka_unit_test(test_request_unknown_fields),
		cmocka_unit_test(test_request_missing_command),
		cmocka_unit_test(test_request_lax),
		cmocka_unit_test(test_request_bad_fields),
		cmocka_unit_test(test_request_not_json),
		cmocka_unit_test(test_request_too_large),
		cmocka_unit_test(test_input_stdin),
		cmocka_unit_test(test_input_bad),
		cmocka_unit_test(test_input_eof_unknown),
		cmocka_unit_test(test_input_resize),
		cmocka_unit_test(test_input_signal),
		cmocka_unit_test(test_encode_data),
		cmocka_unit_test(test_encode_data_exact),
		cmocka_unit_test(test_encode_exit),
		cmocka_unit_test(test_parse_output),
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_input_round_trip),
		cmocka_unit_test(test_bug_request_drops_non_utf8),
		cmocka_unit_test(test_bug_exit_non_utf8),
		cmocka_unit_test(test_data_line_spellings),
	};

	return cmocka_run_group_tests_name("execmsg", tests, NULL, NULL);
}
