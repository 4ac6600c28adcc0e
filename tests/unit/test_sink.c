/*
 * test_sink.c — daemon/sink.c: a stream into a file that keeps under its
 * cap whatever is written (the guest console), keeps the newest output,
 * and goes on reading when the file cannot be written.
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
#include <event2/event.h>

#include "log.h"
#include "sink.h"

struct fixture {
	struct event_base	*base;
	int			 w;		/* the writer's end */
	char			 path[64];
	int			 file;		/* our own view of it */
};

static int
setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.base = event_base_new();
	strcpy(f.path, "/tmp/capsule-test-sink.XXXXXX");
	f.file = mkstemp(f.path);
	assert_true(f.file >= 0);
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	close(f->file);
	unlink(f->path);
	if (f->w >= 0)
		close(f->w);
	event_base_free(f->base);
	return 0;
}

static struct sink *
make(struct fixture *f, uint64_t max, int out_flags)
{
	int p[2], out;

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	out = open(f->path, out_flags);
	assert_true(out >= 0);
	f->w = p[1];
	return sink_new(f->base, p[0], out, max, "test log");
}

#define LINE_LEN	62	/* "line NNNNNN " + 49 x + "\n" */

/* Writes lines "line NNNNNN xxx...\n" and lets the sink read. */
static void
feed(struct fixture *f, struct sink *s, unsigned from, unsigned lines)
{
	char line[80];

	for (unsigned i = from; i < from + lines; i++) {
		int n = snprintf(line, sizeof(line), "line %06u %.49s\n", i,
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");

		int tries = 0;

		/* A sink that stopped reading would leave the writer stuck:
		 * that is the failure to catch, in bounded time. */
		while (write(f->w, line, (size_t)n) != n) {
			assert_int_equal(errno, EAGAIN);
			assert_true(++tries < 100);
			sink_drain(s);
		}
	}
	sink_drain(s);
}

static size_t
file_size(struct fixture *f)
{
	struct stat st;

	assert_int_equal(fstat(f->file, &st), 0);
	return (size_t)st.st_size;
}

static void
test_small_output_is_kept_whole(void **state)
{
	struct fixture *f = *state;
	struct sink *s = make(f, 1024 * 1024, O_RDWR);
	char buf[128] = "";

	feed(f, s, 0, 3);
	assert_int_equal(file_size(f), 3 * LINE_LEN);
	assert_int_equal(pread(f->file, buf, LINE_LEN, 0), LINE_LEN);
	assert_memory_equal(buf, "line 000000 ", 12);
	sink_free(s);
}

static void
test_flood_stays_under_the_cap_and_keeps_the_newest(void **state)
{
	struct fixture *f = *state;
	struct sink *s = make(f, SINK_MIN_MAX, O_RDWR);
	char head[160] = "", tail[80] = "", mem[200];
	size_t size;

	/* About 6 MiB through a 256 KiB cap. */
	feed(f, s, 0, 100000);
	size = file_size(f);
	assert_true(size <= SINK_MIN_MAX);
	assert_true(size >= SINK_MIN_MAX / 2);
	assert_true(pread(f->file, head, sizeof(head) - 1, 0) > 0);
	assert_non_null(strstr(head, "older output was dropped"));
	/* The note is followed by whole lines. */
	assert_non_null(strstr(head, "]\nline "));
	assert_int_equal(pread(f->file, tail, LINE_LEN, (off_t)size - LINE_LEN),
	    LINE_LEN);
	assert_memory_equal(tail, "line 099999 ", 12);
	/* The tail kept in memory is the newest output too. */
	sink_tail(s, mem, sizeof(mem));
	assert_non_null(strstr(mem, "line 099999 "));
	assert_int_equal(sink_error(s), 0);
	sink_free(s);
}

static void
test_tail_is_printable(void **state)
{
	struct fixture *f = *state;
	struct sink *s = make(f, SINK_MIN_MAX, O_RDWR);
	static const char junk[] = "ok\033[2J\x01\x7f\r\xff\xfe end\n";
	char mem[64];

	assert_int_equal(write(f->w, junk, sizeof(junk) - 1),
	    (ssize_t)sizeof(junk) - 1);
	sink_drain(s);
	sink_tail(s, mem, sizeof(mem));
	for (size_t i = 0; mem[i] != '\0'; i++) {
		unsigned char c = (unsigned char)mem[i];

		assert_true(c == '\n' || (c >= 0x20 && c != 0x7f));
	}
	assert_non_null(strstr(mem, "end"));
	sink_free(s);
}

static void
test_unwritable_file_never_stops_the_reading(void **state)
{
	struct fixture *f = *state;
	/* Opened read-only: every write fails, like a full disk. */
	struct sink *s = make(f, SINK_MIN_MAX, O_RDONLY);

	feed(f, s, 0, 20000);		/* would get stuck if not read */
	assert_int_equal(sink_error(s), EBADF);
	assert_true(sink_dropped(s) >= 20000 * LINE_LEN);
	assert_int_equal(file_size(f), 0);
	sink_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_small_output_is_kept_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_flood_stays_under_the_cap_and_keeps_the_newest, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tail_is_printable, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_unwritable_file_never_stops_the_reading, setup,
		    teardown),
	};

	log_init(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
