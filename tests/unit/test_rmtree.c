/*
 * test_rmtree.c — common/rmtree.c on real trees: everything inside goes,
 * nothing outside is touched, however the tree tries to lead out (links to
 * files and directories outside, to /, directories without permissions).
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

#include "rmtree.h"
#include "testfs.h"

static int
setup(void **state)
{
	(void)state;
	strcpy(tfs_base, "/tmp/capsule-test-rmtree.XXXXXX");
	assert_non_null(mkdtemp(tfs_base));
	assert_int_equal(mkdir(P("outside"), 0755), 0);
	tfs_put("outside/keep", "precious\n", 0640);
	assert_int_equal(mkdir(P("tree"), 0755), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	chmod(P("outside"), 0755);
	unlink(P("outside/keep"));
	rmdir(P("outside"));
	rmtree(P("tree"));
	return rmdir(tfs_base);
}

static void
assert_outside_intact(void)
{
	struct stat st;
	char buf[32] = "";
	int fd;

	assert_int_equal(lstat(P("outside"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(lstat(P("outside/keep"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	fd = open(P("outside/keep"), O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 9);
	close(fd);
	assert_string_equal(buf, "precious\n");
	assert_int_equal(lstat("/", &st), 0);
	assert_int_equal(st.st_mode & 0700, 0700);
}

static void
test_removes_tree_and_follows_no_link(void **state)
{
	(void)state;
	assert_int_equal(mkdir(P("tree/a"), 0755), 0);
	assert_int_equal(mkdir(P("tree/a/b"), 0755), 0);
	tfs_put("tree/a/b/f", "x", 0600);
	assert_int_equal(symlink(P("outside"), P("tree/a/to-dir")), 0);
	assert_int_equal(symlink(P("outside/keep"), P("tree/a/to-file")), 0);
	assert_int_equal(symlink("/", P("tree/root")), 0);
	assert_int_equal(symlink("../../outside", P("tree/a/b/rel")), 0);
	/* Locked directories: the walk opens them up through their fds. */
	assert_int_equal(mkdir(P("tree/locked"), 0755), 0);
	tfs_put("tree/locked/f", "y", 0000);
	assert_int_equal(chmod(P("tree/locked"), 0000), 0);
	assert_int_equal(chmod(P("tree/a"), 0500), 0);

	assert_int_equal(rmtree(P("tree")), 0);
	assert_int_equal(access(P("tree"), F_OK), -1);
	assert_outside_intact();
}

static void
test_top_level_link_is_removed_not_followed(void **state)
{
	(void)state;
	assert_int_equal(symlink(P("outside"), P("tree/link")), 0);
	assert_int_equal(rmtree(P("tree/link")), 0);
	assert_int_equal(access(P("tree/link"), F_OK), -1);
	assert_outside_intact();
}

static void
test_missing_is_success_and_bad_names_fail(void **state)
{
	(void)state;
	assert_int_equal(rmtree(P("tree/nothing-here")), 0);
	assert_int_equal(rmtree_at(AT_FDCWD, "/tmp/."), -EINVAL);
	assert_int_equal(rmtree_at(AT_FDCWD, "/tmp/.."), -EINVAL);
	assert_int_equal(rmtree_at(AT_FDCWD, "/tmp/"), -EINVAL);
	assert_outside_intact();
}

static void
test_contents_only(void **state)
{
	int fd;

	(void)state;
	tfs_put("tree/f", "z", 0644);
	assert_int_equal(symlink(P("outside/keep"), P("tree/l")), 0);
	fd = open(P("tree"), O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(rmtree_contents(fd), 0);
	close(fd);
	assert_int_equal(access(P("tree"), F_OK), 0);
	assert_int_equal(access(P("tree/f"), F_OK), -1);
	assert_outside_intact();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_removes_tree_and_follows_no_link, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_top_level_link_is_removed_not_followed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_missing_is_success_and_bad_names_fail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_contents_only, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
