/*
 * test_procid.c — daemon/procid-*.c on the system it was built for: a
 * process's identity, the descriptor that watches it (a pidfd on Linux, a
 * kqueue on macOS) turning readable when it ends, reaping through it, and
 * a recorded identity that no longer matches being refused.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "procid.h"

static int
readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void
test_identity(void **state)
{
	char a[PROCID_BOOT_ID_LEN + 1], b[PROCID_BOOT_ID_LEN + 1];
	struct procid me, again;

	(void)state;
	assert_int_equal(procid_read(getpid(), &me), 0);
	assert_int_equal(me.pid, getpid());
	assert_int_equal(me.uid, getuid());
	assert_true(me.start > 0);
	assert_int_equal(procid_read(getpid(), &again), 0);
	assert_true(again.start == me.start);
	assert_int_equal(procid_read(1, &again), -ESRCH);
	assert_int_equal(procid_boot_id(a), 0);
	assert_int_equal(strlen(a), PROCID_BOOT_ID_LEN);
	assert_int_equal(procid_boot_id(b), 0);
	assert_string_equal(a, b);
}

/* A child: watched, readable once it has exited, reaped through it. */
static void
test_child(void **state)
{
	int fd, st = -1;
	pid_t pid;

	(void)state;
	if ((pid = fork()) == 0) {
		pause();
		_exit(0);
	}
	assert_true(pid > 0);
	fd = procid_open_child(pid);
	assert_true(fd >= 0);
	assert_false(readable(fd, 50));
	assert_int_equal(procid_exited(fd), 0);
	assert_int_equal(procid_reap(fd, &st), 0);
	assert_int_equal(procid_signal(fd, SIGTERM), 0);
	assert_true(readable(fd, 5000));
	/* The exit may be posted a moment before it can be reaped. */
	for (int i = 0; i < 500 && procid_exited(fd) == 0; i++)
		usleep(1000);
	assert_int_equal(procid_exited(fd), 1);
	assert_int_equal(procid_reap(fd, &st), 1);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGTERM);
	close(fd);
}

/* A child that is already gone when it is watched: readable at once. */
static void
test_child_gone(void **state)
{
	int fd, st = -1;
	pid_t pid;

	(void)state;
	if ((pid = fork()) == 0)
		_exit(7);
	assert_true(pid > 0);
	usleep(100 * 1000);
	fd = procid_open_child(pid);
	assert_true(fd >= 0);
	assert_true(readable(fd, 5000));
	for (int i = 0; i < 500 && procid_reap(fd, &st) == 0; i++)
		usleep(1000);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 7);
	close(fd);
}

/* A recorded process: opened if it still is the one recorded, refused
 * if its start time differs, signalled through what was opened. */
static void
test_recorded(void **state)
{
	struct procid want;
	pid_t pid;
	int fd;

	(void)state;
	if ((pid = fork()) == 0) {
		pause();
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(procid_read(pid, &want), 0);
	want.start++;
	assert_int_equal(procid_open(&want), -ESTALE);
	want.start--;
	fd = procid_open(&want);
	assert_true(fd >= 0);
	assert_int_equal(procid_signal(fd, SIGKILL), 0);
	assert_true(readable(fd, 5000));
	procid_wait(fd);
	assert_int_equal(procid_read(pid, &want), -ESRCH);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_child),
		cmocka_unit_test(test_child_gone),
		cmocka_unit_test(test_recorded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
