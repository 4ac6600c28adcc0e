/*
 * test_record.c — the persisted VM record (daemon/record.c): what capsuled
 * writes it reads back exactly, and anything else it refuses, field by
 * field, so that a forged or damaged record can point capsuled at nothing.
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
#include <jansson.h>

#include "record.h"
#include "rmtree.h"

#define ID	"0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
#define BOOT	"8f3df041-4a1c-4373-b29b-6c3454f0decd"

static void
sample(struct record *r)
{
	memset(r, 0, sizeof(*r));
	strcpy(r->vm_id, ID);
	strcpy(r->backend, "qemu");
	strcpy(r->boot_id, BOOT);
	r->proc.pid = 4242;
	r->proc.start = 0xfedcba9876543210ULL;	/* all 64 bits survive */
	r->proc.uid = 1879048193;
	r->owner_uid = 1000;
	r->created_at = 1795947924;
	r->made[0].dir = "/home/u/run";
	r->made[0].dir_dev = 0x803;
	r->made[0].dir_ino = 0x8000000000000001ULL;
	r->made[0].name = "proxy.sock";
	r->made[0].dev = 0x803;
	r->made[0].ino = 77;
	r->made[0].type = S_IFSOCK;
	r->made[1].dir = "/home/u";
	r->made[1].name = "run";
	r->made[1].type = S_IFDIR;
	r->made[2].dir = "/home/u/run";
	r->made[2].name = "console.log";
	r->made[2].type = S_IFREG;
	r->nmade = 3;
}

static void
test_round_trip(void **state)
{
	struct record in, out;
	struct cap_err err;
	char *s;

	(void)state;
	sample(&in);
	s = record_encode(&in);
	assert_non_null(s);
	assert_int_equal(record_decode(s, strlen(s), &out, &err), 0);
	free(s);
	assert_string_equal(out.vm_id, ID);
	assert_string_equal(out.backend, "qemu");
	assert_string_equal(out.boot_id, BOOT);
	assert_int_equal(out.proc.pid, 4242);
	assert_true(out.proc.start == 0xfedcba9876543210ULL);
	assert_int_equal(out.proc.uid, 1879048193);
	assert_int_equal(out.owner_uid, 1000);
	assert_int_equal(out.nmade, 3);
	assert_string_equal(out.made[0].dir, "/home/u/run");
	assert_true(out.made[0].dir_ino == 0x8000000000000001ULL);
	assert_string_equal(out.made[0].name, "proxy.sock");
	assert_int_equal(out.made[0].type, S_IFSOCK);
	assert_int_equal(out.made[1].type, S_IFDIR);
	assert_int_equal(out.made[2].type, S_IFREG);
	record_free(&out);
}

/* The sample with a spec (format 2) that decodes. */
static void
sample_spec(struct record *r)
{
	sample(r);
	r->have_spec = 1;
	r->spec.kernel = "/k";
	r->spec.initrd = "/i";
	r->spec.rootfs = "/r";
	r->spec.run_dir = "/run/x";
	r->spec.proxy_path = "/run/x/proxy.sock";
	r->spec.console_path = "/run/x/console.log";
	r->spec.vcpus = 1;
	r->spec.memory_mib = 256;
	r->spec.launch_seconds = 30;
	r->spec.guest_port = 10700;
	r->spec.console_max = 1 << 20;
	r->spec.disk_mib = 8192;
}

/* Each of bad[] (JSON text) as the spec's field in the record s: refused.
 * Frees s. */
static void
refuse_spec_values(char *s, const char *field, const char *const *bad,
    size_t n)
{
	struct record out;
	struct cap_err err;
	json_t *o;

	for (size_t i = 0; i < n; i++) {
		o = json_loads(s, 0, NULL);
		assert_non_null(o);
		json_object_set_new(json_object_get(o, "spec"), field,
		    json_loads(bad[i], JSON_DECODE_ANY, NULL));
		free(s);
		s = json_dumps(o, 0);
		json_decref(o);
		if (record_decode(s, strlen(s), &out, &err) == 0)
			fail_msg("record with %s %s was accepted", field,
			    bad[i]);
	}
	free(s);
}

#define DIGEST "sha256:" \
	"0f12a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e"

/* A format 2 record (with the spec a VM is taken over by) of a VM booted
 * from an image: the image's digest comes back; anything else in its
 * place (a path, a name) is refused, so a taken-over VM never points the
 * store at a file. */
static void
test_spec_image(void **state)
{
	static const char *const bad[] = { "\"../../etc/passwd\"",
	    "\"debian\"", "\"sha256:xyz\"", "7", "\"\"" };
	struct record in, out;
	struct cap_err err;
	char *s;

	(void)state;
	sample_spec(&in);
	in.spec.rootfs = "/var/lib/capsule/images/x/rootfs.ext4";
	in.spec.image = DIGEST;
	s = record_encode(&in);
	assert_non_null(s);
	if (record_decode(s, strlen(s), &out, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.have_spec, 1);
	assert_non_null(out.spec.image);
	assert_string_equal(out.spec.image, DIGEST);
	record_free(&out);
	/* Without an image (a rootfs_path VM): none comes back. */
	in.spec.image = NULL;
	free(s);
	s = record_encode(&in);
	assert_int_equal(record_decode(s, strlen(s), &out, &err), 0);
	assert_null(out.spec.image);
	record_free(&out);
	refuse_spec_values(s, "image", bad, sizeof(bad) / sizeof(bad[0]));
}

/* Shared folders come back as they went; a record's volumes are checked
 * like a request's, so a forged one cannot name a guest path the agent
 * would mount over its own /proc, or a relative host path. */
static void
test_spec_volumes(void **state)
{
	static const char *const bad[] = {
	    "[{\"host\": \"rel\", \"guest\": \"/w\"}]",
	    "[{\"host\": \"/a\", \"guest\": \"/proc\"}]",
	    "[{\"host\": \"/a\", \"guest\": \"/w x\"}]",
	    "[{\"host\": \"/a\", \"guest\": \"/w\", \"x\": 1}]",
	    "{}" };
	struct record in, out;
	struct cap_err err;
	char *s;

	(void)state;
	sample_spec(&in);
	in.spec.volumes[0].host = "/home/u/src";
	in.spec.volumes[0].guest = "/work";
	in.spec.volumes[1].host = "/data";
	in.spec.volumes[1].guest = "/mnt/data";
	in.spec.volumes[1].ro = 1;
	in.spec.nvolumes = 2;
	s = record_encode(&in);
	assert_non_null(s);
	if (record_decode(s, strlen(s), &out, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.spec.nvolumes, 2);
	assert_string_equal(out.spec.volumes[0].host, "/home/u/src");
	assert_string_equal(out.spec.volumes[0].guest, "/work");
	assert_int_equal(out.spec.volumes[0].ro, 0);
	assert_string_equal(out.spec.volumes[1].host, "/data");
	assert_int_equal(out.spec.volumes[1].ro, 1);
	record_free(&out);
	refuse_spec_values(s, "volumes", bad, sizeof(bad) / sizeof(bad[0]));
}

/* The guest's architecture comes back; a record from before guests had
 * one is the host's; anything but an architecture's name is refused. */
static void
test_spec_arch(void **state)
{
	static const char *const bad[] = { "\"arm64\"", "\"\"", "2",
	    "null", "\"x86_64 \"" };
	struct record in, out;
	struct cap_err err;
	json_t *o;
	char *s;

	(void)state;
	sample_spec(&in);
	in.spec.arch = CTL_ARCH_AARCH64;
	s = record_encode(&in);
	assert_non_null(s);
	if (record_decode(s, strlen(s), &out, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.spec.arch, CTL_ARCH_AARCH64);
	record_free(&out);
	o = json_loads(s, 0, NULL);
	assert_non_null(o);
	assert_int_equal(json_object_del(json_object_get(o, "spec"), "arch"),
	    0);
	free(s);
	s = json_dumps(o, 0);
	json_decref(o);
	if (record_decode(s, strlen(s), &out, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(out.spec.arch, ctl_arch_host());
	record_free(&out);
	refuse_spec_values(s, "arch", bad, sizeof(bad) / sizeof(bad[0]));
}

/* Encodes the sample, sets path (a top-level key, or "made.KEY" in the
 * first made entry) to the JSON value text (NULL: delete it), decodes. */
static int
decode_with(const char *path, const char *value, struct cap_err *err)
{
	struct record in, out;
	json_t *o, *target;
	const char *key = path;
	char *s;
	int r;

	sample(&in);
	s = record_encode(&in);
	o = json_loads(s, 0, NULL);
	free(s);
	assert_non_null(o);
	target = o;
	if (strncmp(path, "made.", 5) == 0) {
		target = json_array_get(json_object_get(o, "made"), 0);
		key = path + 5;
	}
	if (value == NULL)
		json_object_del(target, key);
	else
		assert_int_equal(json_object_set_new(target, key, json_loads(
		    value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)), 0);
	s = json_dumps(o, 0);
	json_decref(o);
	r = record_decode(s, strlen(s), &out, err);
	free(s);
	if (r == 0)
		record_free(&out);
	return r;
}

static void
test_every_field_is_checked(void **state)
{
	static const struct { const char *path, *value; } bad[] = {
		{ "format", "2" }, { "format", NULL }, { "format", "\"1\"" },
		{ "vm_id", "\"../../etc\"" }, { "vm_id", "\"\"" },
		{ "vm_id", "\"0F1E2D3C-4B5A-4978-8A6B-5C4D3E2F1A0B\"" },
		{ "vm_id", "7" }, { "vm_id", NULL },
		{ "boot_id", "\"x\"" }, { "boot_id", NULL },
		{ "backend", "[]" }, { "backend", NULL },
		{ "pid", "0" }, { "pid", "1" }, { "pid", "-5" },
		{ "pid", "2147483648" }, { "pid", "\"42\"" }, { "pid", NULL },
		{ "pid_start", "\"9\"" }, { "pid_start", NULL },
		{ "pid_uid", "-1" }, { "pid_uid", "4294967295" },
		{ "owner_uid", "-2" }, { "owner_uid", NULL },
		{ "created_at", "-1" }, { "created_at", "1.5" },
		{ "made", "{}" }, { "made", NULL }, { "made", "[1]" },
		{ "made.dir", "\"relative/dir\"" }, { "made.dir", "\"\"" },
		{ "made.dir", NULL }, { "made.dir", "\"/a\\u0000b\"" },
		{ "made.name", "\"a/b\"" }, { "made.name", "\"..\"" },
		{ "made.name", "\".\"" }, { "made.name", "\"\"" },
		{ "made.name", NULL }, { "made.type", "\"fifo\"" },
		{ "made.type", NULL }, { "made.dev", "\"1\"" },
		{ "made.ino", NULL }, { "made.dir_dev", "null" },
		{ "made.btime", "null" }, { "made.dir_btime", "\"0\"" },
		{ "made.dir_ino", "true" },
	};
	struct cap_err err;

	(void)state;
	assert_int_equal(decode_with("format", "1", &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode_with(bad[i].path, bad[i].value, &err) == 0)
			fail_msg("record with %s = %s was accepted",
			    bad[i].path, bad[i].value ? bad[i].value :
			    "(missing)");
	}
}

static void
test_not_json_and_too_big(void **state)
{
	struct record r;
	struct cap_err err;
	char *big;

	(void)state;
	assert_true(record_decode("", 0, &r, &err) < 0);
	assert_true(record_decode("[]", 2, &r, &err) < 0);
	assert_true(record_decode("{\"format\":1", 11, &r, &err) < 0);
	assert_true(record_decode("{\"format\":1,\"format\":1}", 23, &r,
	    &err) < 0);
	big = calloc(1, RECORD_MAX_BYTES + 2);
	memset(big, ' ', RECORD_MAX_BYTES + 1);
	assert_true(record_decode(big, RECORD_MAX_BYTES + 1, &r, &err) < 0);
	free(big);
}

static void
test_too_many_made_entries(void **state)
{
	struct record in, out;
	struct cap_err err;
	json_t *o, *made;
	char *s;

	(void)state;
	sample(&in);
	s = record_encode(&in);
	o = json_loads(s, 0, NULL);
	free(s);
	made = json_object_get(o, "made");
	while (json_array_size(made) <= VMFILES_MAX)
		json_array_append(made, json_array_get(made, 0));
	s = json_dumps(o, 0);
	json_decref(o);
	assert_true(record_decode(s, strlen(s), &out, &err) < 0);
	free(s);
}

static void
test_write_and_read_back(void **state)
{
	char dir[] = "/tmp/capsule-test-record.XXXXXX";
	struct record in, out;
	struct cap_err err;
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	sample(&in);
	/* A stale tmp of ours from a crash is simply replaced. */
	assert_int_equal(close(openat(fd, RECORD_NAME ".tmp", O_CREAT | O_WRONLY,
	    0600)), 0);
	assert_int_equal(record_write(fd, &in, &err), 0);
	assert_int_equal(fstatat(fd, RECORD_NAME, &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(fstatat(fd, RECORD_NAME ".tmp", &st, 0), -1);
	assert_int_equal(record_read(fd, &out, &err), 0);
	assert_string_equal(out.vm_id, ID);
	record_free(&out);
	/* A link in the record's place is not read through. */
	assert_int_equal(unlinkat(fd, RECORD_NAME, 0), 0);
	assert_int_equal(symlinkat("/etc/passwd", fd, RECORD_NAME), 0);
	assert_true(record_read(fd, &out, &err) < 0);
	close(fd);
	assert_int_equal(rmtree(dir), 0);
}

static void
test_ids(void **state)
{
	(void)state;
	assert_true(record_id_ok(ID));
	assert_false(record_id_ok("0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0"));
	assert_false(record_id_ok("0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0bb"));
	assert_false(record_id_ok("0f1e2d3c_4b5a-4978-8a6b-5c4d3e2f1a0b"));
	assert_false(record_id_ok("0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0g"));
	assert_false(record_id_ok("../1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"));
	assert_false(record_id_ok(""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_spec_image),
		cmocka_unit_test(test_spec_volumes),
		cmocka_unit_test(test_spec_arch),
		cmocka_unit_test(test_every_field_is_checked),
		cmocka_unit_test(test_not_json_and_too_big),
		cmocka_unit_test(test_too_many_made_entries),
		cmocka_unit_test(test_write_and_read_back),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
