/*
 * test_caller.c — daemon/caller.c on real files: what capsule creates is
 * new, private and never reached through a link; a failed step undoes the
 * ones before it; a child acting as another uid gets exactly that uid's
 * rights; and a later removal touches only what capsule made.
 *
 * The identity cases need root (to become uid 65534); without it they are
 * skipped, saying so.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <event2/event.h>

#include "caller.h"
#include "log.h"
#include "proto.h"
#include "rmtree.h"
#include "testfs.h"

#define NOBODY	65534

static void
assert_content(const char *rel, const char *text)
{
	char buf[256] = "";
	int fd = open(P(rel), O_RDONLY);

	assert_true(fd >= 0);
	assert_true(read(fd, buf, sizeof(buf) - 1) >= 0);
	close(fd);
	assert_string_equal(buf, text);
}

static int
setup(void **state)
{
	(void)state;
	umask(022);
	strcpy(tfs_base, "/tmp/capsule-test-caller.XXXXXX");
	assert_non_null(mkdtemp(tfs_base));
	assert_int_equal(chmod(tfs_base, 0755), 0);
	tfs_put("secret", "root only\n", 0600);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return rmtree(tfs_base);
}

static void
close_all(struct caller_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		caller_op_close(&ops[i]);
}

/* ---- here, with the daemon's rights ---- */

static void
test_create_is_new_private_and_exclusive(void **state)
{
	struct caller_op op;
	struct cap_err err;
	struct stat st;

	(void)state;
	caller_op_init(&op, CALLER_CREATE, "console_log_path", P("new.log"),
	    -1);
	assert_int_equal(caller_run_here(&op, 1, &err), 0);
	assert_true(op.fd >= 0 && op.dir_fd >= 0);
	assert_int_equal(fstat(op.fd, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_true(st.st_ino == op.id.ino && st.st_dev == op.id.dev);
	caller_op_close(&op);

	/* An existing file is a conflict, and stays as it was. */
	caller_op_init(&op, CALLER_CREATE, "console_log_path", P("secret"),
	    -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_string_equal(err.code, E_CONFLICT);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(op.fd, -1);
	assert_content("secret", "root only\n");
}

static void
test_links_are_never_followed_when_creating(void **state)
{
	struct caller_op op;
	struct cap_err err;
	struct stat st;

	(void)state;
	assert_int_equal(symlink(P("secret"), P("log-link")), 0);
	caller_op_init(&op, CALLER_CREATE, "console_log_path", P("log-link"),
	    -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_string_equal(err.code, E_CONFLICT);
	assert_non_null(strstr(err.msg, "symbolic link"));
	/* A dangling link too: O_CREAT must not create its target. */
	assert_int_equal(symlink(P("made-through-link"), P("dangling")), 0);
	caller_op_init(&op, CALLER_CREATE, "console_log_path", P("dangling"),
	    -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_int_equal(lstat(P("made-through-link"), &st), -1);
	/* A hard link is an existing name. */
	assert_int_equal(link(P("secret"), P("hard")), 0);
	caller_op_init(&op, CALLER_CREATE, "console_log_path", P("hard"), -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_string_equal(err.code, E_CONFLICT);
	/* A socket is bound new as well. */
	caller_op_init(&op, CALLER_BIND, "proxy_socket_path", P("log-link"),
	    -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_string_equal(err.code, E_CONFLICT);
	assert_content("secret", "root only\n");
	assert_int_equal(stat(P("secret"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_nlink, 2);
}

static void
test_run_dir_rules(void **state)
{
	struct caller_op ops[2];
	struct cap_err err;
	struct stat st;

	(void)state;
	/* Only the last component is created. */
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("no/such/rd"), -1);
	assert_true(caller_run_here(ops, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "parent directory does not exist"));
	assert_int_equal(lstat(P("no"), &st), -1);
	/* A link is not a directory of its own. */
	assert_int_equal(mkdir(P("real"), 0755), 0);
	assert_int_equal(symlink(P("real"), P("rd-link")), 0);
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd-link"), -1);
	assert_true(caller_run_here(ops, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "symbolic link"));
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("secret"), -1);
	assert_true(caller_run_here(ops, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "not a directory"));
	/* New: made 0700, said so; existing: opened, not "created". */
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd"), -1);
	caller_op_init(&ops[1], CALLER_DIR, "run_dir", P("real"), -1);
	assert_int_equal(caller_run_here(ops, 2, &err), 0);
	assert_true(ops[0].created);
	assert_false(ops[1].created);
	assert_int_equal(stat(P("rd"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	close_all(ops, 2);
}

static void
test_failure_undoes_every_step(void **state)
{
	struct caller_op ops[4];
	struct cap_err err;
	struct stat st;

	(void)state;
	assert_int_equal(mkdir(P("pre"), 0755), 0);
	tfs_put("pre/console.log", "someone's\n", 0644);
	/* New run dir, then a socket and a file in it, then a clash. */
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd"), -1);
	caller_op_init(&ops[1], CALLER_BIND, "proxy_socket_path", "proxy.sock",
	    0);
	caller_op_init(&ops[2], CALLER_CREATE, "console_log_path", "c.log", 0);
	caller_op_init(&ops[3], CALLER_CREATE, "console_log_path",
	    P("pre/console.log"), -1);
	assert_true(caller_run_here(ops, 4, &err) < 0);
	assert_non_null(strstr(err.msg, "pre/console.log"));
	assert_int_equal(lstat(P("rd"), &st), -1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ops[i].fd, -1);
	assert_content("pre/console.log", "someone's\n");
}

static void
test_made_is_removed_only_while_it_is_the_same(void **state)
{
	struct caller_op ops[2];
	struct caller_made m;
	struct cap_err err;
	struct stat st;

	(void)state;
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd"), -1);
	caller_op_init(&ops[1], CALLER_CREATE, "console_log_path",
	    "console.log", 0);
	assert_int_equal(caller_run_here(ops, 2, &err), 0);
	assert_int_equal(caller_made_take(&m, ops, 1), 0);
	assert_string_equal(m.name, "console.log");
	assert_string_equal(m.dir_path, P("rd"));
	/* Someone swaps the file: the name is left alone. */
	assert_int_equal(rename(P("rd/console.log"), P("rd/moved")), 0);
	tfs_put("rd/console.log", "not capsule's\n", 0600);
	assert_int_equal(caller_made_remove(&m), -ESTALE);
	assert_content("rd/console.log", "not capsule's\n");
	/* The run dir: removed only while it is empty and the same. */
	assert_int_equal(caller_made_take(&m, ops, 0), 0);
	assert_int_equal(caller_made_remove(&m), -ENOTEMPTY);
	assert_int_equal(unlink(P("rd/console.log")), 0);
	assert_int_equal(unlink(P("rd/moved")), 0);
	close_all(ops, 2);
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd"), -1);
	assert_int_equal(caller_run_here(ops, 1, &err), 0);
	ops[0].created = 1;
	assert_int_equal(caller_made_take(&m, ops, 0), 0);
	assert_int_equal(rmdir(P("rd")), 0);
	assert_int_equal(mkdir(P("rd"), 0700), 0);	/* a new inode */
	assert_int_equal(caller_made_remove(&m), -ESTALE);
	assert_int_equal(stat(P("rd"), &st), 0);
	caller_op_close(&ops[0]);
}

static void
test_reopen_checks_the_directory(void **state)
{
	struct caller_op op;
	struct caller_made m;
	struct cap_err err;

	(void)state;
	assert_int_equal(mkdir(P("d"), 0755), 0);
	caller_op_init(&op, CALLER_BIND, "proxy_socket_path", P("d/s.sock"),
	    -1);
	assert_int_equal(caller_run_here(&op, 1, &err), 0);
	assert_int_equal(caller_made_take(&m, &op, 0), 0);
	caller_op_close(&op);
	/* The same path, another directory: nothing there is capsule's. */
	assert_int_equal(rename(P("d"), P("d-old")), 0);
	assert_int_equal(mkdir(P("d"), 0755), 0);
	assert_int_equal(caller_made_reopen(&m), -ESTALE);
	/* Back where it was: removable again. */
	assert_int_equal(rmdir(P("d")), 0);
	assert_int_equal(rename(P("d-old"), P("d")), 0);
	assert_int_equal(caller_made_reopen(&m), 0);
	assert_int_equal(caller_made_remove(&m), 0);
	assert_int_equal(access(P("d/s.sock"), F_OK), -1);
}

static void
test_read_hands_back_head_and_size(void **state)
{
	struct caller_op op;
	struct cap_err err;

	(void)state;
	caller_op_init(&op, CALLER_READ, "kernel_path", P("secret"), -1);
	assert_int_equal(caller_run_here(&op, 1, &err), 0);
	assert_int_equal(op.size, 10);
	assert_int_equal(op.head_len, 10);
	assert_memory_equal(op.head, "root only\n", 10);
	caller_op_close(&op);
	caller_op_init(&op, CALLER_READ, "kernel_path", tfs_base, -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "not a regular file"));
	caller_op_init(&op, CALLER_READ, "kernel_path", P("none"), -1);
	assert_true(caller_run_here(&op, 1, &err) < 0);
	assert_non_null(strstr(err.msg, "does not exist"));
}

/* ---- as another user, in a child ---- */

struct result {
	int		 done;
	struct cap_err	 err;
	int		 failed;
};

static void
on_done(struct caller_op *ops, size_t n, const struct cap_err *err,
    void *arg)
{
	struct result *r = arg;

	r->done = 1;
	r->failed = err != NULL;
	if (err != NULL)
		r->err = *err;
}

static void
run_as(uid_t uid, struct caller_op *ops, size_t n, struct result *r)
{
	struct event_base *base_ev = event_base_new();
	struct caller who = { .uid = uid, .gid = uid, .ngroups = 0 };
	struct cap_err err;
	struct caller_job *j;

	memset(r, 0, sizeof(*r));
	j = caller_run(base_ev, &who, ops, n, on_done, r, &err);
	assert_non_null(j);
	assert_false(r->done);		/* never from inside the call */
	for (int i = 0; i < 500 && !r->done; i++)
		event_base_loop(base_ev, EVLOOP_ONCE);
	/* The job lives on until it has reaped its child; then nothing is
	 * left on the loop (1: no events). */
	for (int i = 0; i < 500; i++) {
		if (event_base_loop(base_ev, EVLOOP_NONBLOCK) == 1)
			break;
		usleep(10000);
	}
	assert_int_equal(event_base_loop(base_ev, EVLOOP_NONBLOCK), 1);
	event_base_free(base_ev);
	assert_true(r->done);
}

static void
test_child_has_the_callers_rights_only(void **state)
{
	struct caller_op ops[2];
	struct result r;
	struct stat st;

	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	/* Root-only file: not for uid 65534, directly or through its link. */
	caller_op_init(&ops[0], CALLER_READ, "rootfs_path", P("secret"), -1);
	run_as(NOBODY, ops, 1, &r);
	assert_true(r.failed);
	assert_string_equal(r.err.code, E_PERMISSION_DENIED);
	assert_non_null(strstr(r.err.msg, "uid 65534"));
	assert_int_equal(symlink(P("secret"), P("mine")), 0);
	caller_op_init(&ops[0], CALLER_READ, "rootfs_path", P("mine"), -1);
	run_as(NOBODY, ops, 1, &r);
	assert_true(r.failed);
	assert_string_equal(r.err.code, E_PERMISSION_DENIED);
	/* Nothing may be created where the caller may not write. */
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("rd"), -1);
	run_as(NOBODY, ops, 1, &r);
	assert_true(r.failed);
	assert_string_equal(r.err.code, E_PERMISSION_DENIED);
	assert_int_equal(lstat(P("rd"), &st), -1);
	/* Where it may, what is made is the caller's, and private. */
	assert_int_equal(mkdir(P("pub"), 0777), 0);
	assert_int_equal(chmod(P("pub"), 0777), 0);
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("pub/rd"), -1);
	caller_op_init(&ops[1], CALLER_CREATE, "console_log_path",
	    "console.log", 0);
	run_as(NOBODY, ops, 2, &r);
	assert_false(r.failed);
	assert_true(ops[0].created);
	assert_int_equal(fstat(ops[1].fd, &st), 0);
	assert_int_equal(st.st_uid, NOBODY);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(P("pub/rd"), &st), 0);
	assert_int_equal(st.st_uid, NOBODY);
	assert_int_equal(st.st_mode & 07777, 0700);
	close_all(ops, 2);
}

static void
test_child_failure_leaves_nothing(void **state)
{
	struct caller_op ops[3];
	struct result r;
	struct stat st;

	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	assert_int_equal(mkdir(P("pub"), 0777), 0);
	assert_int_equal(chmod(P("pub"), 0777), 0);
	caller_op_init(&ops[0], CALLER_DIR, "run_dir", P("pub/rd"), -1);
	caller_op_init(&ops[1], CALLER_BIND, "proxy_socket_path", "proxy.sock",
	    0);
	caller_op_init(&ops[2], CALLER_READ, "kernel_path", P("secret"), -1);
	run_as(NOBODY, ops, 3, &r);
	assert_true(r.failed);
	assert_non_null(strstr(r.err.msg, "kernel_path"));
	assert_int_equal(lstat(P("pub/rd"), &st), -1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ops[i].fd, -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_create_is_new_private_and_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_links_are_never_followed_when_creating, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_run_dir_rules, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_failure_undoes_every_step,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_made_is_removed_only_while_it_is_the_same, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_reopen_checks_the_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_read_hands_back_head_and_size, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_child_has_the_callers_rights_only, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_child_failure_leaves_nothing, setup, teardown),
	};

	log_init(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
