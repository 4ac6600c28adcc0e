/*
 * test_config.c — capsuled.conf (daemon/config.c): every key takes what it
 * should, and every mistake is refused naming the file, the line and why.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static int
parse(const char *text, struct config *c, struct cap_err *err)
{
	config_defaults(c);
	return config_parse(text, strlen(text), "capsuled.conf", c, err);
}

static void
test_defaults(void **state)
{
	struct config c;

	(void)state;
	config_defaults(&c);
	assert_string_equal(c.accel, "auto");
	assert_int_equal(c.default_vcpus, 1);
	assert_int_equal(c.default_memory_mib, 512);
	assert_int_equal(c.console_log_max_mib, 10);
	assert_int_equal(c.request_timeout, 30);
	assert_int_equal(c.user_max_vms, 0);
	assert_int_equal(c.set, 0);
}

static void
test_every_key(void **state)
{
	static const char text[] =
	    "# a comment\n"
	    "\n"
	    "socket = /run/x/c.sock\n"
	    "socket_group=capsule\n"
	    "  state_dir   =   /var/lib/x  \n"
	    "image_dir = \"/usr/share/capsule images\"\n"
	    "accel = tcg\n"
	    "metrics_listen = 127.0.0.1:9464\n"
	    "log_level = debug\r\n"
	    "default_vcpus = 2\n"
	    "default_memory_mib = 1024\n"
	    "console_log_max_mib = 5\n"
	    "request_timeout = 7\n"
	    "client_input_max_mib = 16\n"
	    "user_max_vms = 3\n"
	    "user_max_vcpus = 4\n"
	    "user_max_memory_mib = 4096\n"
	    "vm_cpu_quota = 150\n"
	    "vm_tasks_max = 256\n"
	    "vm_memory_overhead_mib = 2048\n";
	struct config c;
	struct cap_err err;

	(void)state;
	assert_int_equal(parse(text, &c, &err), 0);
	assert_string_equal(c.socket, "/run/x/c.sock");
	assert_string_equal(c.socket_group, "capsule");
	assert_string_equal(c.state_dir, "/var/lib/x");
	assert_string_equal(c.image_dir, "/usr/share/capsule images");
	assert_string_equal(c.accel, "tcg");
	assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
	assert_string_equal(c.log_level, "debug");
	assert_int_equal(c.default_vcpus, 2);
	assert_int_equal(c.default_memory_mib, 1024);
	assert_int_equal(c.console_log_max_mib, 5);
	assert_int_equal(c.request_timeout, 7);
	assert_int_equal(c.client_input_max_mib, 16);
	assert_int_equal(c.user_max_vms, 3);
	assert_int_equal(c.user_max_vcpus, 4);
	assert_int_equal(c.user_max_memory_mib, 4096);
	assert_int_equal(c.vm_cpu_quota, 150);
	assert_int_equal(c.vm_tasks_max, 256);
	assert_int_equal(c.vm_memory_overhead_mib, 2048);
	assert_true(config_was_set(&c, CK_USER_MAX_VMS));
	assert_true(config_was_set(&c, CK_SOCKET));
}

static void
test_errors_name_line_and_reason(void **state)
{
	static const struct { const char *text, *want; } bad[] = {
		{ "user_max_vms = 3\nfrobnicate = 1\n",
		    "capsuled.conf:2: unknown key \"frobnicate\"" },
		{ "\n\ndefault_vcpus = 0\n",
		    "capsuled.conf:3: default_vcpus takes a whole number from 1" },
		{ "default_vcpus = two\n", ":1: default_vcpus takes a whole" },
		{ "default_vcpus = -1\n", ":1: default_vcpus takes" },
		{ "default_vcpus = 1x\n", ":1: default_vcpus takes" },
		{ "default_vcpus =\n", ":1: default_vcpus takes" },
		{ "request_timeout = 99999999999999999999\n",
		    ":1: request_timeout takes" },
		{ "accel = hvf\n", ":1: accel takes one of auto|kvm|tcg" },
		{ "state_dir = relative/dir\n",
		    ":1: state_dir must be an absolute path" },
		{ "just some words\n", ":1: expected key = value" },
		{ "user_max_vms = 1\nuser_max_vms = 2\n",
		    ":2: user_max_vms is set twice" },
		{ "socket_group = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		    ":1: socket_group is too long" },
	};
	struct config c;
	struct cap_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse(bad[i].text, &c, &err) < 0);
		if (strstr(err.msg, bad[i].want) == NULL)
			fail_msg("for %s: got \"%s\", want \"%s\"", bad[i].text,
			    err.msg, bad[i].want);
	}
}

static void
test_pools(void **state)
{
	static const char text[] =
	    "pool = root 2\n"
	    "user_max_vms = 4\n"
	    "pool =  ci-runner\t16   {\"memory_mib\": 256, \"network\": \"nat\"}\n"
	    "pool = 1000 1 {}\n";
	static const struct { const char *text, *want; } bad[] = {
		{ "pool = root\n", ":1: pool: the size must be a whole" },
		{ "pool = root 0\n", ":1: pool: the size must be a whole" },
		{ "pool = root 17\n", ":1: pool: the size must be a whole" },
		{ "pool = root two\n", ":1: pool: the size must be a whole" },
		{ "pool =\n", ":1: pool takes USER SIZE" },
		{ "pool = r;m 1\n", ":1: pool takes USER SIZE [STARTVM-FIELDS]; "
		    "\"r;m\" is not a user" },
		{ "pool = -u 1\n", "is not a user" },
		{ "\npool = root 1 [1]\n", ":2: pool: the StartVM fields must "
		    "be one JSON object" },
		{ "pool = root 1 {\"a\": 1, \"a\": 2}\n", "one JSON object" },
		{ "pool = root 1 {\n", "one JSON object" },
	};
	struct config c;
	struct cap_err err;
	char many[4096] = "";

	(void)state;
	assert_int_equal(parse(text, &c, &err), 0);
	assert_int_equal(c.npools, 3);
	assert_string_equal(c.pools[0].user, "root");
	assert_int_equal(c.pools[0].size, 2);
	assert_string_equal(c.pools[0].request, "{}");
	assert_int_equal(c.pools[0].line, 1);
	assert_string_equal(c.pools[1].user, "ci-runner");
	assert_int_equal(c.pools[1].size, 16);
	assert_string_equal(c.pools[1].request,
	    "{\"memory_mib\": 256, \"network\": \"nat\"}");
	assert_int_equal(c.pools[1].line, 3);
	assert_string_equal(c.pools[2].user, "1000");
	assert_int_equal(c.user_max_vms, 4);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse(bad[i].text, &c, &err) < 0);
		if (strstr(err.msg, bad[i].want) == NULL)
			fail_msg("for %s: got \"%s\", want \"%s\"", bad[i].text,
			    err.msg, bad[i].want);
	}
	/* At most CONFIG_MAX_POOLS lines. */
	for (int i = 0; i <= CONFIG_MAX_POOLS; i++)
		strcat(many, "pool = root 1\n");
	assert_true(parse(many, &c, &err) < 0);
	assert_non_null(strstr(err.msg, ":17: more than 16 pool lines"));
}

static void
test_nul_and_long_lines(void **state)
{
	char text[2048];
	struct config c;
	struct cap_err err;

	(void)state;
	config_defaults(&c);
	assert_true(config_parse("accel = tcg\0x\n", 14, "f", &c, &err) < 0);
	assert_non_null(strstr(err.msg, "f:1: NUL byte"));
	memset(text, 'x', sizeof(text));
	assert_true(config_parse(text, sizeof(text), "f", &c, &err) < 0);
	assert_non_null(strstr(err.msg, "f:1: line longer than"));
}

static void
test_load_refuses_files_others_can_change(void **state)
{
	char path[] = "/tmp/capsule-test-config.XXXXXX";
	struct config c;
	struct cap_err err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "user_max_vms = 2\n", 17), 17);
	close(fd);
	config_defaults(&c);
	assert_int_equal(config_load(path, 1, &c, &err), 0);
	assert_int_equal(c.user_max_vms, 2);
	assert_int_equal(chmod(path, 0666), 0);
	config_defaults(&c);
	assert_true(config_load(path, 1, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "writable by others"));
	assert_int_equal(unlink(path), 0);
	config_defaults(&c);
	assert_int_equal(config_load(path, 0, &c, &err), 0);
	assert_true(config_load(path, 1, &c, &err) < 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_errors_name_line_and_reason),
		cmocka_unit_test(test_pools),
		cmocka_unit_test(test_nul_and_long_lines),
		cmocka_unit_test(test_load_refuses_files_others_can_change),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
