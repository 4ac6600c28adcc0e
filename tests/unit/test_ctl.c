/*
 * test_ctl.c — control requests: parsing, StartVM/StopVM validation, replies.
 *
 * Field names, ops and error codes are spelled out rather than taken from
 * proto.h: the names on the wire are the contract under test, and a test
 * that used the macros would pass whatever they were renamed or respelled to.
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

#include "ctl.h"

static const struct ctl_limits big_host = { .max_vcpus = 8,
    .max_memory_mib = 16384 };
static const struct ctl_limits small_host = { .max_vcpus = 2,
    .max_memory_mib = 256 };

static json_t *
load(const char *s)
{
	json_error_t jerr;
	json_t *o = json_loads(s, 0, &jerr);

	if (o == NULL)
		fail_msg("test JSON %s: %s", s, jerr.text);
	return o;
}

static void
has(const char *msg, const char *needle)
{
	if (strstr(msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

/* ---- ctl_parse_request ---- */

static int
parse(const char *s, json_t **req, const char **op, struct cap_err *e)
{
	cap_err_clear(e);
	return ctl_parse_request(s, strlen(s), req, op, e);
}

static void
test_request_ok(void **state)
{
	struct cap_err e;
	const char *op = NULL;
	json_t *req = NULL;

	(void)state;
	assert_int_equal(parse("{\"op\":\"Ping\",\"id\":7}", &req, &op, &e), 0);
	assert_non_null(req);
	assert_string_equal(op, "Ping");
	/* op points into the object it came from. */
	assert_ptr_equal(op, json_string_value(json_object_get(req, "op")));
	json_decref(req);

	/* Only len bytes count. */
	assert_int_equal(ctl_parse_request("{\"op\":\"ListVMs\"}garbage", 16,
	    &req, &op, &e), 0);
	assert_string_equal(op, "ListVMs");
	json_decref(req);
}

static void
test_request_errors(void **state)
{
	struct cap_err e;
	const char *op = NULL;
	json_t *req = (json_t *)&e;	/* must be reset to NULL */

	(void)state;
	assert_int_equal(parse("{\"op\":", &req, &op, &e), -EINVAL);
	assert_string_equal(e.code, "invalid_json");
	has(e.msg, "not valid JSON");
	assert_null(req);

	req = (json_t *)&e;
	assert_int_equal(parse("", &req, &op, &e), -EINVAL);
	assert_string_equal(e.code, "invalid_json");
	assert_null(req);

	/* A repeated key is ambiguous, not last-one-wins. */
	assert_int_equal(parse("{\"op\":\"Ping\",\"op\":\"StopVM\"}", &req,
	    &op, &e), -EINVAL);
	assert_string_equal(e.code, "invalid_json");
	assert_null(req);

	req = (json_t *)&e;
	assert_int_equal(parse("[{\"op\":\"Ping\"}]", &req, &op, &e), -EINVAL);
	assert_string_equal(e.code, "invalid_argument");
	has(e.msg, "object");
	assert_null(req);
}

static void
test_request_missing_op(void **state)
{
	static const char *const lines[] = {
		"{\"id\":\"abc\"}",
		"{\"id\":\"abc\",\"op\":5}",
		"{\"id\":\"abc\",\"op\":null}",
		"{\"op\":[\"Ping\"],\"id\":\"abc\"}",
	};
	struct cap_err e;
	const char *op;
	json_t *req, *reply;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		req = NULL;
		assert_int_equal(parse(lines[i], &req, &op, &e), -EINVAL);
		assert_string_equal(e.code, "invalid_argument");
		has(e.msg, "\"op\"");
		/* Kept, so that the error reply can carry the id. */
		assert_non_null(req);
		reply = ctl_reply_error(req, &e);
		assert_string_equal(json_string_value(json_object_get(reply,
		    "id")), "abc");
		json_decref(reply);
		json_decref(req);
	}
}

/* ---- StartVM ---- */

static int
start(const char *s, const struct ctl_limits *lim, struct ctl_start *out,
    struct cap_err *e)
{
	json_t *req = load(s);
	int r;

	cap_err_clear(e);
	memset(out, 0x5a, sizeof(*out));
	r = ctl_parse_start(req, lim, out, e);
	json_decref(req);
	return r;
}

static void
check_defaults(const struct ctl_start *s, uint64_t mem)
{
	assert_null(s->kernel_path);
	assert_null(s->rootfs_path);
	assert_null(s->initrd_path);
	assert_null(s->boot_args);
	assert_null(s->run_dir);
	assert_null(s->proxy_socket_path);
	assert_null(s->console_log_path);
	assert_int_equal(s->vcpus, 1);
	assert_int_equal(s->memory_mib, mem);
	assert_int_equal(s->guest_port, 10700);
	assert_int_equal(s->launch_seconds, 30);
	assert_int_equal(s->stop_on_disconnect, 0);
	assert_int_equal(s->nserial_ports, 0);
	assert_null(s->serial_ports[0]);
}

static void
test_start_defaults(void **state)
{
	struct ctl_start s;
	struct cap_err e;

	(void)state;
	assert_int_equal(start("{\"op\":\"StartVM\"}", &big_host, &s, &e), 0);
	check_defaults(&s, 512);
	ctl_start_free(&s);

	/* A host with less memory than the default gets all it has. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"id\":1}", &small_host,
	    &s, &e), 0);
	check_defaults(&s, 256);
	ctl_start_free(&s);

	/* null is absent, field by field. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"kernel_path\":null,"
	    "\"rootfs_path\":null,\"initrd_path\":null,\"boot_args\":null,"
	    "\"run_dir\":null,\"proxy_socket_path\":null,"
	    "\"console_log_path\":null,\"vcpus\":null,\"memory_mib\":null,"
	    "\"guest_port\":null,\"launch_seconds\":null,"
	    "\"stop_on_disconnect\":null,\"serial_ports\":null}", &big_host,
	    &s, &e), 0);
	check_defaults(&s, 512);
	ctl_start_free(&s);
}

static void
test_start_all_fields(void **state)
{
	struct ctl_start s;
	struct cap_err e;

	(void)state;
	assert_int_equal(start("{\"op\":\"StartVM\",\"id\":\"x\","
	    "\"kernel_path\":\"/k/vmlinuz\",\"rootfs_path\":\"/r/root.ext4\","
	    "\"initrd_path\":\"/k/initrd\","
	    "\"boot_args\":\"console=ttyS0 quiet\","
	    "\"run_dir\":\"/run/vm\",\"proxy_socket_path\":\"/run/vm/p.sock\","
	    "\"console_log_path\":\"/var/log/c.log\",\"vcpus\":8,"
	    "\"memory_mib\":16384,\"guest_port\":4294967294,"
	    "\"launch_seconds\":3600,\"stop_on_disconnect\":true}", &big_host,
	    &s, &e), 0);
	assert_string_equal(s.kernel_path, "/k/vmlinuz");
	assert_string_equal(s.rootfs_path, "/r/root.ext4");
	assert_string_equal(s.initrd_path, "/k/initrd");
	assert_string_equal(s.boot_args, "console=ttyS0 quiet");
	assert_string_equal(s.run_dir, "/run/vm");
	assert_string_equal(s.proxy_socket_path, "/run/vm/p.sock");
	assert_string_equal(s.console_log_path, "/var/log/c.log");
	assert_int_equal(s.vcpus, 8);
	assert_int_equal(s.memory_mib, 16384);
	assert_int_equal(s.guest_port, UINT32_MAX - 1);
	assert_int_equal(s.launch_seconds, 3600);
	assert_int_equal(s.stop_on_disconnect, 1);
	ctl_start_free(&s);
	assert_null(s.kernel_path);

	/* The low ends of each range. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"vcpus\":1,"
	    "\"memory_mib\":64,\"guest_port\":1,\"launch_seconds\":1,"
	    "\"stop_on_disconnect\":false}", &big_host, &s, &e), 0);
	assert_int_equal(s.vcpus, 1);
	assert_int_equal(s.memory_mib, 64);
	assert_int_equal(s.guest_port, 1);
	assert_int_equal(s.launch_seconds, 1);
	assert_int_equal(s.stop_on_disconnect, 0);
	ctl_start_free(&s);
}

/* StartVM `fields` fails with invalid_argument naming `needle`, and the
 * output holds nothing left to free. */
static void
start_fails(const struct ctl_limits *lim, const char *fields,
    const char *needle)
{
	char line[4096];
	struct ctl_start s;
	struct cap_err e;

	snprintf(line, sizeof(line), "{\"op\":\"StartVM\",%s}", fields);
	if (start(line, lim, &s, &e) >= 0)
		fail_msg("%s: accepted", line);
	assert_string_equal(e.code, "invalid_argument");
	assert_true(e.errnum > 0);
	has(e.msg, needle);
	assert_null(s.kernel_path);
	assert_null(s.rootfs_path);
	assert_null(s.initrd_path);
	assert_null(s.boot_args);
	assert_null(s.run_dir);
	assert_null(s.proxy_socket_path);
	assert_null(s.console_log_path);
	assert_int_equal(s.nserial_ports, 0);
	for (size_t i = 0; i < CTL_MAX_SERIAL_PORTS; i++)
		assert_null(s.serial_ports[i]);
}

static void
test_start_numbers(void **state)
{
	(void)state;
	start_fails(&big_host, "\"vcpus\":0", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":9", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":9", "8 CPUs");
	start_fails(&small_host, "\"vcpus\":3", "2 CPUs");
	start_fails(&big_host, "\"vcpus\":-1", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":2.0", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":\"2\"", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":true", "\"vcpus\"");
	/* Would wrap to a small number if cast before the check. */
	start_fails(&big_host, "\"vcpus\":4294967297", "\"vcpus\"");
	start_fails(&big_host, "\"vcpus\":-9223372036854775807", "\"vcpus\"");

	start_fails(&big_host, "\"memory_mib\":63", "\"memory_mib\"");
	start_fails(&big_host, "\"memory_mib\":63", "from 64");
	start_fails(&big_host, "\"memory_mib\":16385", "16384 MiB");
	start_fails(&small_host, "\"memory_mib\":512", "\"memory_mib\"");
	start_fails(&big_host, "\"memory_mib\":-512", "\"memory_mib\"");
	start_fails(&big_host, "\"memory_mib\":512.5", "\"memory_mib\"");
	start_fails(&big_host, "\"memory_mib\":0", "\"memory_mib\"");

	start_fails(&big_host, "\"launch_seconds\":0", "\"launch_seconds\"");
	start_fails(&big_host, "\"launch_seconds\":3601", "\"launch_seconds\"");
	start_fails(&big_host, "\"launch_seconds\":-30", "\"launch_seconds\"");
	start_fails(&big_host, "\"launch_seconds\":1e1", "\"launch_seconds\"");

	start_fails(&big_host, "\"guest_port\":0", "\"guest_port\"");
	start_fails(&big_host, "\"guest_port\":-1", "\"guest_port\"");
	start_fails(&big_host, "\"guest_port\":4294967296", "\"guest_port\"");
	start_fails(&big_host, "\"guest_port\":10700.0", "\"guest_port\"");
	start_fails(&big_host, "\"guest_port\":\"10700\"", "\"guest_port\"");

	start_fails(&big_host, "\"stop_on_disconnect\":1",
	    "\"stop_on_disconnect\"");
	start_fails(&big_host, "\"stop_on_disconnect\":\"yes\"",
	    "\"stop_on_disconnect\"");
}

static void
test_start_paths(void **state)
{
	static const char *const paths[] = {
		"kernel_path", "rootfs_path", "initrd_path", "run_dir",
		"proxy_socket_path", "console_log_path",
	};
	char f[256], needle[64];

	(void)state;
	start_fails(&big_host, "\"kernel_path\":\"vmlinuz\"", "kernel_path");
	start_fails(&big_host, "\"kernel_path\":\"vmlinuz\"", "absolute");
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		snprintf(needle, sizeof(needle), "\"%s\"", paths[i]);
		snprintf(f, sizeof(f), "\"%s\":\"rel/x\"", paths[i]);
		start_fails(&big_host, f, needle);
		snprintf(f, sizeof(f), "\"%s\":\"\"", paths[i]);
		start_fails(&big_host, f, needle);
		snprintf(f, sizeof(f), "\"%s\":42", paths[i]);
		start_fails(&big_host, f, needle);
		snprintf(f, sizeof(f), "\"%s\":[\"/x\"]", paths[i]);
		start_fails(&big_host, f, needle);
		/* A later field failing frees the earlier, good ones. */
		snprintf(f, sizeof(f), "\"kernel_path\":\"/k\",\"rootfs_path\":"
		    "\"/r\",\"%s\":\"rel\"", paths[i]);
		start_fails(&big_host, f, needle);
	}
	start_fails(&big_host, "\"kernel_path\":\"/k\",\"vcpus\":0",
	    "\"vcpus\"");
	start_fails(&big_host, "\"kernel_path\":\"/k\",\"boot_args\":\"a\\nb\","
	    "\"console_log_path\":\"/c\"", "\"boot_args\"");
}

static void
test_start_socket_path(void **state)
{
	char path[200], line[400];
	struct ctl_start s;
	struct cap_err e;

	(void)state;
	/* 107 bytes fit sun_path with its NUL; 108 do not. */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	snprintf(line, sizeof(line), "{\"op\":\"StartVM\","
	    "\"proxy_socket_path\":\"%s\"}", path);
	assert_int_equal(start(line, &big_host, &s, &e), 0);
	assert_int_equal(strlen(s.proxy_socket_path), 107);
	ctl_start_free(&s);

	path[107] = 'a';
	path[108] = '\0';
	snprintf(line, sizeof(line), "\"proxy_socket_path\":\"%s\"", path);
	start_fails(&big_host, line, "\"proxy_socket_path\"");
	start_fails(&big_host, line, "107");

	/* The same length is fine for a path that is not a socket. */
	snprintf(line, sizeof(line), "{\"op\":\"StartVM\",\"run_dir\":\"%s\"}",
	    path);
	assert_int_equal(start(line, &big_host, &s, &e), 0);
	assert_int_equal(strlen(s.run_dir), 108);
	ctl_start_free(&s);
}

static void
test_start_boot_args(void **state)
{
	struct ctl_start s;
	struct cap_err e;
	char *line, *field;
	json_t *req;

	(void)state;
	start_fails(&big_host, "\"boot_args\":\"console=ttyS0\\nquiet\"",
	    "\"boot_args\"");
	start_fails(&big_host, "\"boot_args\":\"quiet\\r\"", "\"boot_args\"");
	start_fails(&big_host, "\"boot_args\":\"\\n\"", "one line");
	start_fails(&big_host, "\"boot_args\":7", "\"boot_args\"");

	/* Relative-looking is fine: it is not a path. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"boot_args\":"
	    "\"init=/sbin/init\\tfoo\"}", &big_host, &s, &e), 0);
	assert_string_equal(s.boot_args, "init=/sbin/init\tfoo");
	ctl_start_free(&s);

	/* CTL_MAX_BOOT_ARGS, and one more. */
	field = malloc(CTL_MAX_BOOT_ARGS + 2);
	line = malloc(CTL_MAX_BOOT_ARGS + 64);
	assert_non_null(field);
	assert_non_null(line);
	memset(field, 'q', CTL_MAX_BOOT_ARGS + 1);
	field[CTL_MAX_BOOT_ARGS] = '\0';
	snprintf(line, CTL_MAX_BOOT_ARGS + 64,
	    "{\"op\":\"StartVM\",\"boot_args\":\"%s\"}", field);
	assert_int_equal(start(line, &big_host, &s, &e), 0);
	ctl_start_free(&s);
	field[CTL_MAX_BOOT_ARGS] = 'q';
	field[CTL_MAX_BOOT_ARGS + 1] = '\0';
	snprintf(line, CTL_MAX_BOOT_ARGS + 64, "{\"op\":\"StartVM\","
	    "\"boot_args\":\"%s\"}", field);
	assert_int_equal(start(line, &big_host, &s, &e), -ENAMETOOLONG);
	has(e.msg, "\"boot_args\"");
	free(field);
	free(line);

	/* A NUL can't reach here from ctl_parse_request (jansson refuses
	 * \u0000 without JSON_ALLOW_NUL), but the check must hold alone. */
	req = json_pack("{s:s, s:s%}", "op", "StartVM", "boot_args",
	    "quiet\0init=/bin/sh", (size_t)18);
	assert_non_null(req);
	cap_err_clear(&e);
	assert_int_equal(ctl_parse_start(req, &big_host, &s, &e), -EINVAL);
	has(e.msg, "\"boot_args\"");
	assert_null(s.boot_args);
	json_decref(req);
	req = json_pack("{s:s, s:s%}", "op", "StartVM", "kernel_path",
	    "/k\0../x", (size_t)7);
	assert_int_equal(ctl_parse_start(req, &big_host, &s, &e), -EINVAL);
	has(e.msg, "\"kernel_path\"");
	assert_null(s.kernel_path);
	json_decref(req);
}

static void
test_start_serial_ports(void **state)
{
	char name[80], line[256];
	struct ctl_start s;
	struct cap_err e;
	json_t *req;

	(void)state;
	assert_int_equal(start("{\"op\":\"StartVM\",\"serial_ports\":[]}",
	    &big_host, &s, &e), 0);
	assert_int_equal(s.nserial_ports, 0);
	ctl_start_free(&s);

	/* Four, in order, using the whole alphabet. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"serial_ports\":"
	    "[\"bench.raw\",\"a\",\"0-9_z\",\"..\"]}", &big_host, &s, &e),
	    0);
	assert_int_equal(s.nserial_ports, 4);
	assert_string_equal(s.serial_ports[0], "bench.raw");
	assert_string_equal(s.serial_ports[1], "a");
	assert_string_equal(s.serial_ports[2], "0-9_z");
	assert_string_equal(s.serial_ports[3], "..");
	ctl_start_free(&s);
	assert_null(s.serial_ports[0]);
	assert_int_equal(s.nserial_ports, 0);

	/* 64 characters, and 65. */
	memset(name, 'p', 65);
	name[64] = '\0';
	snprintf(line, sizeof(line), "{\"op\":\"StartVM\","
	    "\"serial_ports\":[\"%s\"]}", name);
	assert_int_equal(start(line, &big_host, &s, &e), 0);
	assert_int_equal(strlen(s.serial_ports[0]), 64);
	ctl_start_free(&s);
	name[64] = 'p';
	name[65] = '\0';
	snprintf(line, sizeof(line), "\"serial_ports\":[\"%s\"]", name);
	start_fails(&big_host, line, "\"serial_ports\"[0]");
	start_fails(&big_host, line, name);

	start_fails(&big_host, "\"serial_ports\":\"a\"", "\"serial_ports\"");
	start_fails(&big_host, "\"serial_ports\":\"a\"", "array");
	start_fails(&big_host, "\"serial_ports\":{\"a\":1}", "array");
	start_fails(&big_host, "\"serial_ports\":true", "\"serial_ports\"");
	start_fails(&big_host, "\"serial_ports\":[\"a\",\"b\",\"c\",\"d\","
	    "\"e\"]", "limit is 4");
	start_fails(&big_host, "\"serial_ports\":[\"a\",7]",
	    "\"serial_ports\"[1] must be a string");
	start_fails(&big_host, "\"serial_ports\":[null]",
	    "\"serial_ports\"[0]");
	start_fails(&big_host, "\"serial_ports\":[[\"a\"]]",
	    "\"serial_ports\"[0]");
	start_fails(&big_host, "\"serial_ports\":[\"\"]",
	    "\"serial_ports\"[0] \"\" is not a valid port name");
	start_fails(&big_host, "\"serial_ports\":[\"ok\",\"Upper\"]",
	    "\"serial_ports\"[1] \"Upper\"");
	start_fails(&big_host, "\"serial_ports\":[\"a,b\"]", "\"a,b\"");
	start_fails(&big_host, "\"serial_ports\":[\"../x\"]", "\"../x\"");
	start_fails(&big_host, "\"serial_ports\":[\"a b\"]", "\"a b\"");
	start_fails(&big_host, "\"serial_ports\":[\"a=b\"]", "\"a=b\"");
	/* What cannot be printed is shown escaped. */
	start_fails(&big_host, "\"serial_ports\":[\"a\\nb\"]", "\"a\\x0ab\"");
	start_fails(&big_host, "\"serial_ports\":[\"\\u00e9\"]",
	    "\"\\xc3\\xa9\"");
	start_fails(&big_host, "\"serial_ports\":[\"org.capsule.agent\"]",
	    "agent");
	start_fails(&big_host, "\"serial_ports\":[\"org.capsule.agent\"]",
	    "\"serial_ports\"[0]");
	start_fails(&big_host, "\"serial_ports\":[\"x\",\"y\",\"x\"]",
	    "\"x\" twice");
	/* The names taken before the bad one are freed (start_fails checks). */
	start_fails(&big_host, "\"serial_ports\":[\"x\",\"y\",\"-Z\"]",
	    "\"-Z\"");

	/* A NUL inside a name, which jansson can carry with a length. */
	req = json_pack("{s:s, s:[s%]}", "op", "StartVM", "serial_ports",
	    "ab\0c", (size_t)4);
	assert_non_null(req);
	cap_err_clear(&e);
	assert_int_equal(ctl_parse_start(req, &big_host, &s, &e), -EINVAL);
	has(e.msg, "\"ab\\x00c\"");
	assert_int_equal(s.nserial_ports, 0);
	json_decref(req);
}

static void
test_start_unknown_fields(void **state)
{
	struct ctl_start s;
	struct cap_err e;

	(void)state;
	start_fails(&big_host, "\"memory\":1024", "\"memory\"");
	start_fails(&big_host, "\"memory\":1024", "StartVM");
	start_fails(&big_host, "\"kernel\":\"/k\",\"cpus\":2,\"vcpus\":2",
	    "unknown fields");
	start_fails(&big_host, "\"kernel\":\"/k\",\"cpus\":2", "\"kernel\"");
	start_fails(&big_host, "\"kernel\":\"/k\",\"cpus\":2", "\"cpus\"");
	/* Even null-valued, an unknown field is a typo worth reporting. */
	start_fails(&big_host, "\"vcpu\":null", "\"vcpu\"");
	/* op and id are the envelope, not unknown. */
	assert_int_equal(start("{\"op\":\"StartVM\",\"id\":{\"n\":1}}",
	    &big_host, &s, &e), 0);
	ctl_start_free(&s);
}

static void
test_check_fields(void **state)
{
	static const char *const known[] = { "a", "b", NULL };
	static const char *const none[] = { NULL };
	struct cap_err e;
	json_t *req;
	char key[128];

	(void)state;
	req = load("{\"op\":\"X\",\"id\":1,\"a\":1,\"b\":null}");
	assert_int_equal(ctl_check_fields(req, "X", known, &e), 0);
	assert_int_equal(ctl_check_fields(req, "X", none, &e), -EINVAL);
	has(e.msg, "unknown fields");
	has(e.msg, "\"a\"");
	has(e.msg, "\"b\"");
	has(e.msg, " in X");
	json_decref(req);

	/* One unknown: singular. */
	req = load("{\"op\":\"X\",\"c\":1}");
	assert_int_equal(ctl_check_fields(req, "X", known, &e), -EINVAL);
	has(e.msg, "unknown field \"c\" in X");
	json_decref(req);

	/* Hundreds of long names: the message is cut, not overrun. */
	req = load("{\"op\":\"X\"}");
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "%0100d", i);
		json_object_set_new(req, key, json_true());
	}
	assert_int_equal(ctl_check_fields(req, "X", known, &e), -EINVAL);
	has(e.msg, "unknown fields");
	assert_true(strlen(e.msg) < sizeof(e.msg));
	json_decref(req);
}

/* ---- StopVM ---- */

static int stop_all;

static int
stop(const char *s, const char **vm_id, struct cap_err *e, json_t **keep)
{
	json_t *req = load(s);

	cap_err_clear(e);
	*vm_id = (const char *)e;	/* must be reset */
	stop_all = -1;
	*keep = req;
	return ctl_parse_stop(req, vm_id, &stop_all, e);
}

static void
test_stop(void **state)
{
	struct cap_err e;
	const char *id;
	json_t *req;

	(void)state;
	assert_int_equal(stop("{\"op\":\"StopVM\"}", &id, &e, &req), 0);
	assert_null(id);
	assert_int_equal(stop_all, 0);
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"all\":true}", &id, &e,
	    &req), 0);
	assert_null(id);
	assert_int_equal(stop_all, 1);
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"all\":1}", &id, &e,
	    &req), -EINVAL);
	has(e.msg, "\"all\"");
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"all\":true,"
	    "\"vm_id\":\"x\"}", &id, &e, &req), -EINVAL);
	has(e.msg, "do not go together");
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"vm_id\":null,\"id\":2}",
	    &id, &e, &req), 0);
	assert_null(id);
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"vm_id\":\"vm-3f2a\"}", &id,
	    &e, &req), 0);
	assert_string_equal(id, "vm-3f2a");
	json_decref(req);

	assert_int_equal(stop("{\"op\":\"StopVM\",\"vm_id\":\"\"}", &id, &e,
	    &req), -EINVAL);
	has(e.msg, "\"vm_id\"");
	assert_string_equal(e.code, "invalid_argument");
	assert_null(id);
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"vm_id\":5}", &id, &e,
	    &req), -EINVAL);
	has(e.msg, "\"vm_id\"");
	json_decref(req);
	assert_int_equal(stop("{\"op\":\"StopVM\",\"vmid\":\"x\"}", &id, &e,
	    &req), -EINVAL);
	has(e.msg, "\"vmid\"");
	has(e.msg, "StopVM");
	assert_null(id);
	json_decref(req);
}

/* ---- replies ---- */

static void
check_error_reply(json_t *reply, const char *code, const char *msg)
{
	assert_non_null(reply);
	assert_true(json_is_false(json_object_get(reply, "ok")));
	assert_string_equal(json_string_value(json_object_get(reply, "code")),
	    code);
	assert_string_equal(json_string_value(json_object_get(reply, "error")),
	    msg);
}

static void
test_reply_error_id(void **state)
{
	static const char *const ids[] = {
		"\"req-1\"", "42", "-1.5", "{\"trace\":[1,2,{\"x\":null}]}",
		"[]", "null", "false",
	};
	struct cap_err e;
	json_t *req, *reply, *copy;
	char line[256];

	(void)state;
	cap_err_set(&e, ENOENT, "not_found", "no VM \"%s\"", "vm-1");
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(line, sizeof(line), "{\"op\":\"StopVM\",\"id\":%s}",
		    ids[i]);
		req = load(line);
		copy = json_deep_copy(json_object_get(req, "id"));
		reply = ctl_reply_error(req, &e);
		check_error_reply(reply, "not_found", "no VM \"vm-1\"");
		assert_int_equal(json_object_size(reply), 4);
		/* The reply outlives the request, id and all. */
		json_decref(req);
		assert_non_null(json_object_get(reply, "id"));
		assert_true(json_equal(json_object_get(reply, "id"), copy));
		json_decref(copy);
		json_decref(reply);
	}
	/* The two simplest ids, by value. */
	req = load("{\"op\":\"Ping\",\"id\":\"abc\"}");
	reply = ctl_reply_error(req, &e);
	assert_string_equal(json_string_value(json_object_get(reply, "id")),
	    "abc");
	json_decref(reply);
	json_decref(req);
	req = load("{\"op\":\"Ping\",\"id\":99}");
	reply = ctl_reply_error(req, &e);
	assert_int_equal(json_integer_value(json_object_get(reply, "id")), 99);
	json_decref(reply);
	json_decref(req);
}

static void
test_reply_error_no_id(void **state)
{
	struct cap_err e;
	json_t *req, *reply;

	(void)state;
	cap_err_set(&e, EINVAL, "invalid_json", "bad");
	reply = ctl_reply_error(NULL, &e);
	check_error_reply(reply, "invalid_json", "bad");
	assert_null(json_object_get(reply, "id"));
	assert_int_equal(json_object_size(reply), 3);
	json_decref(reply);

	req = load("{\"op\":\"Ping\"}");
	reply = ctl_reply_error(req, &e);
	assert_null(json_object_get(reply, "id"));
	json_decref(reply);
	json_decref(req);

	/* An empty error still says something. */
	cap_err_clear(&e);
	reply = ctl_reply_error(NULL, &e);
	check_error_reply(reply, "internal", "unknown error");
	json_decref(reply);
}

static void
test_reply_ok(void **state)
{
	json_t *req, *reply;

	(void)state;
	reply = ctl_reply_ok(NULL);
	assert_true(json_is_true(json_object_get(reply, "ok")));
	assert_int_equal(json_object_size(reply), 1);
	json_decref(reply);

	req = load("{\"op\":\"Ping\"}");
	reply = ctl_reply_ok(req);
	assert_true(json_is_true(json_object_get(reply, "ok")));
	assert_null(json_object_get(reply, "id"));
	assert_null(json_object_get(reply, "error"));
	assert_null(json_object_get(reply, "code"));
	assert_int_equal(json_object_size(reply), 1);
	json_decref(reply);
	json_decref(req);

	req = load("{\"op\":\"Ping\",\"id\":[7]}");
	reply = ctl_reply_ok(req);
	assert_true(json_equal(json_object_get(reply, "id"),
	    json_object_get(req, "id")));
	assert_int_equal(json_object_size(reply), 2);
	json_decref(reply);
	json_decref(req);
}

/* ---- err.c, through the convention ctl relies on ---- */

static void
test_err(void **state)
{
	struct cap_err e;
	char big[2000];

	(void)state;
	assert_int_equal(cap_err_set(&e, ENOENT, "not_found", "x %d", 5),
	    -ENOENT);
	assert_int_equal(e.errnum, ENOENT);
	assert_string_equal(e.code, "not_found");
	assert_string_equal(e.msg, "x 5");
	/* A zero or negative errno still reads as a failure. */
	assert_int_equal(cap_err_set(&e, 0, "internal", "y"), -EIO);
	assert_int_equal(cap_err_set(NULL, EPERM, "internal", "z"), -EPERM);

	cap_err_set(&e, EACCES, "unavailable", "permission denied");
	assert_int_equal(cap_err_wrap(&e, "open %s", "/dev/kvm"), -EACCES);
	assert_string_equal(e.msg, "open /dev/kvm: permission denied");
	assert_string_equal(e.code, "unavailable");

	/* Over-long messages are cut, still terminated. */
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cap_err_set(&e, EINVAL, "invalid_argument", "%s", big);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	cap_err_wrap(&e, "%s", big);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);

	cap_err_clear(&e);
	assert_int_equal(e.errnum, 0);
	assert_string_equal(e.code, "");
	assert_string_equal(e.msg, "");
	cap_err_clear(NULL);
	assert_int_equal(cap_err_wrap(NULL, "x"), -EIO);
}

/* Regression tests for non-UTF-8 text (found by these tests). */
/* An unknown key is cut to 64 bytes in the message, which can split a
 * UTF-8 sequence; the error reply must still say what was wrong. */
static void
test_bug_reply_error_split_utf8(void **state)
{
	struct ctl_start s;
	struct cap_err e;
	char key[80];
	json_t *req, *reply;

	(void)state;
	memset(key, 'k', 63);
	strcpy(key + 63, "\xc3\xa9");	/* 63 bytes, then a 2-byte 'é' */
	req = json_pack("{s:s, s:i}", "op", "StartVM", key, 1);
	assert_non_null(req);
	cap_err_clear(&e);
	assert_int_equal(ctl_parse_start(req, &big_host, &s, &e), -EINVAL);
	reply = ctl_reply_error(req, &e);
	json_decref(req);
	assert_non_null(reply);
	assert_true(json_is_string(json_object_get(reply, "error")));
	has(json_string_value(json_object_get(reply, "error")),
	    "unknown field");
	json_decref(reply);
}

/* "arch": the two names, nothing else; absent is the default (the host's). */
static void
test_start_arch(void **state)
{
	struct ctl_start s;
	struct cap_err e;
	enum ctl_arch a;

	(void)state;
	assert_int_equal(start("{\"op\":\"StartVM\",\"arch\":\"aarch64\"}",
	    &big_host, &s, &e), 0);
	assert_int_equal(s.arch, CTL_ARCH_AARCH64);
	ctl_start_free(&s);
	assert_int_equal(start("{\"op\":\"StartVM\",\"arch\":\"x86_64\"}",
	    &big_host, &s, &e), 0);
	assert_int_equal(s.arch, CTL_ARCH_X86_64);
	ctl_start_free(&s);
	assert_int_equal(start("{\"op\":\"StartVM\"}", &big_host, &s, &e), 0);
	assert_int_equal(s.arch, CTL_ARCH_DEFAULT);
	ctl_start_free(&s);
	start_fails(&big_host, "\"arch\":\"arm64\"", "not \"arm64\"");
	start_fails(&big_host, "\"arch\":\"\"", "\"arch\" must be");
	start_fails(&big_host, "\"arch\":64", "\"arch\" must be");
	start_fails(&big_host, "\"arch\":[\"aarch64\"]", "\"arch\" must be");
	assert_int_equal(ctl_arch_parse("AARCH64", &a), -EINVAL);
	assert_string_equal(ctl_arch_name(CTL_ARCH_AARCH64), "aarch64");
	assert_string_equal(ctl_arch_name(CTL_ARCH_DEFAULT),
	    ctl_arch_name(ctl_arch_host()));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_arch),
		cmocka_unit_test(test_request_ok),
		cmocka_unit_test(test_request_errors),
		cmocka_unit_test(test_request_missing_op),
		cmocka_unit_test(test_start_defaults),
		cmocka_unit_test(test_start_all_fields),
		cmocka_unit_test(test_start_numbers),
		cmocka_unit_test(test_start_paths),
		cmocka_unit_test(test_start_socket_path),
		cmocka_unit_test(test_start_boot_args),
		cmocka_unit_test(test_start_serial_ports),
		cmocka_unit_test(test_start_unknown_fields),
		cmocka_unit_test(test_check_fields),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_reply_error_id),
		cmocka_unit_test(test_reply_error_no_id),
		cmocka_unit_test(test_reply_ok),
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_bug_reply_error_split_utf8),
	};

	return cmocka_run_group_tests_name("ctl", tests, NULL, NULL);
}
