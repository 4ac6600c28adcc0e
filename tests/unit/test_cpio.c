/*
 * test_cpio.c — the newc cpio header codec.
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

#include "testrng.h"

#include "cpio.h"

/* A file header as GNU `cpio -o -H newc` writes it: "f", 0100644, 3 bytes,
 * mtime 1700000000, uid 1000, gid 1000, ino 0xa72163, nlink 1. */
static const char gnu_hdr[] =
    "070701" "00A72163" "000081A4" "000003E8" "000003E8" "00000001"
    "6553F100" "00000003" "000000FE" "00000000" "00000000" "00000000"
    "00000002" "00000000" "f\0";

static const char trailer[] =
    "070701" "00000000" "00000000" "00000000" "00000000" "00000001"
    "00000000" "00000000" "00000000" "00000000" "00000000" "00000000"
    "0000000B" "00000000" "TRAILER!!!\0\0\0";

static void
test_pad4(void **state)
{
	(void)state;
	assert_int_equal(cpio_pad4(0), 0);
	assert_int_equal(cpio_pad4(1), 3);
	assert_int_equal(cpio_pad4(2), 2);
	assert_int_equal(cpio_pad4(3), 1);
	assert_int_equal(cpio_pad4(4), 0);
	assert_int_equal(cpio_pad4(4097), 3);
	assert_int_equal(cpio_header_len(2), 112);	/* 110 + "f\0" */
	assert_int_equal(cpio_header_len(3), 116);
	assert_int_equal(cpio_header_len(6), 116);
	assert_int_equal(cpio_header_len(11), 124);
}

static void
test_decode_gnu(void **state)
{
	struct cpio_entry e;
	const char *name;
	long n;

	(void)state;
	assert_int_equal(sizeof(gnu_hdr) - 1, 112);
	n = cpio_header_decode((const uint8_t *)gnu_hdr, 112, &e, &name);
	assert_int_equal(n, 112);
	assert_int_equal(e.ino, 0xa72163);
	assert_int_equal(e.mode, 0100644);
	assert_int_equal(e.uid, 1000);
	assert_int_equal(e.gid, 1000);
	assert_int_equal(e.nlink, 1);
	assert_int_equal(e.mtime, 1700000000);
	assert_int_equal(e.size, 3);
	assert_int_equal(e.namesize, 2);
	assert_ptr_equal(name, gnu_hdr + 110);
	assert_string_equal(name, "f");
}

static void
test_encode_layout(void **state)
{
	struct cpio_entry e = { .ino = 0xa72163, .mode = 0100644,
	    .uid = 1000, .gid = 1000, .nlink = 1, .mtime = 1700000000,
	    .size = 3, .namesize = 999 };
	uint8_t buf[200];
	long n;

	(void)state;
	memset(buf, 0xee, sizeof(buf));
	n = cpio_header_encode(buf, sizeof(buf), &e, "f");
	assert_int_equal(n, 112);
	/* GNU cpio also puts the device in; ours is always 0. */
	assert_memory_equal(buf, gnu_hdr, 62);
	assert_memory_equal(buf + 62, "00000000", 8);
	assert_memory_equal(buf + 70, gnu_hdr + 70, 112 - 70);
	assert_int_equal(buf[112], 0xee);	/* nothing past the end */

	n = cpio_trailer_encode(buf, sizeof(buf));
	assert_int_equal(n, 124);
	assert_memory_equal(buf, trailer, 124);
}

static void
test_round_trip(void **state)
{
	char name[CPIO_NAME_MAX];
	uint8_t buf[CPIO_HDR_MAX + 8];
	struct cpio_entry in, out;
	const char *got;
	size_t len, i;
	long n;

	(void)state;
	rng_state = 7;
	for (len = 1; len < CPIO_NAME_MAX; len += len < 20 ? 1 : 97) {
		for (i = 0; i < len; i++)
			name[i] = (char)('a' + rng() % 26);
		name[len] = '\0';
		in = (struct cpio_entry){ .ino = rng(), .mode = rng(),
		    .uid = rng(), .gid = rng(), .nlink = rng(),
		    .mtime = rng(), .size = rng() };
		memset(buf, 0xee, sizeof(buf));
		n = cpio_header_encode(buf, sizeof(buf), &in, name);
		assert_int_equal(n, cpio_header_len((uint32_t)len + 1));
		assert_int_equal(n % 4, 0);
		assert_true((size_t)n >= CPIO_HDR_LEN + len + 1);
		assert_true((size_t)n < CPIO_HDR_LEN + len + 1 + 4);
		for (i = CPIO_HDR_LEN + len; i < (size_t)n; i++)
			assert_int_equal(buf[i], 0);
		assert_int_equal(buf[n], 0xee);

		memset(&out, 0, sizeof(out));
		assert_int_equal(cpio_header_decode(buf, (size_t)n, &out,
		    &got), n);
		assert_int_equal(out.ino, in.ino);
		assert_int_equal(out.mode, in.mode);
		assert_int_equal(out.uid, in.uid);
		assert_int_equal(out.gid, in.gid);
		assert_int_equal(out.nlink, in.nlink);
		assert_int_equal(out.mtime, in.mtime);
		assert_int_equal(out.size, in.size);
		assert_int_equal(out.namesize, len + 1);
		assert_string_equal(got, name);
		/* Extra bytes after the header are not its business. */
		assert_int_equal(cpio_header_decode(buf, sizeof(buf), &out,
		    &got), n);
	}
}

static void
test_decode_partial(void **state)
{
	uint8_t buf[CPIO_HDR_MAX];
	struct cpio_entry e;
	const char *name;
	size_t have;
	long n;

	(void)state;
	n = cpio_header_encode(buf, sizeof(buf), &(struct cpio_entry){
	    .mode = 040755, .size = 0 }, "top/sub");
	assert_int_equal(n, 120);
	for (have = 0; have < (size_t)n; have++) {
		memset(&e, 0, sizeof(e));
		name = "x";
		assert_int_equal(cpio_header_decode(buf, have, &e, &name), 0);
		assert_null(name);
		/* Once the fixed part is in, the caller learns the length. */
		if (have >= CPIO_HDR_LEN) {
			assert_int_equal(e.namesize, 8);
			assert_int_equal(e.mode, 040755);
		}
	}
	assert_int_equal(cpio_header_decode(buf, have, &e, &name), n);
}

static void
test_encode_errors(void **state)
{
	static char name[CPIO_NAME_MAX + 1];
	uint8_t buf[CPIO_HDR_MAX + 8];
	struct cpio_entry e = { .mode = 0100644 };

	(void)state;
	assert_int_equal(cpio_header_encode(buf, sizeof(buf), &e, ""),
	    -EINVAL);
	memset(name, 'n', CPIO_NAME_MAX);
	assert_int_equal(cpio_header_encode(buf, sizeof(buf), &e, name),
	    -EINVAL);
	name[CPIO_NAME_MAX - 1] = '\0';		/* namesize CPIO_NAME_MAX */
	assert_int_equal(cpio_header_encode(buf, sizeof(buf), &e, name),
	    (long)cpio_header_len(CPIO_NAME_MAX));
	assert_int_equal(cpio_header_encode(buf, cpio_header_len(CPIO_NAME_MAX)
	    - 1, &e, name), -EMSGSIZE);
	assert_int_equal(cpio_header_encode(buf, 111, &e, "f"), -EMSGSIZE);
	assert_int_equal(cpio_header_encode(buf, 112, &e, "f"), 112);
	assert_int_equal(cpio_trailer_encode(buf, 123), -EMSGSIZE);
}

/* Decodes a copy of gnu_hdr changed by `edit` at `off` (len bytes). */
static long
decode_edited(size_t off, const char *edit, size_t len)
{
	uint8_t buf[200];
	struct cpio_entry e;
	const char *name;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, gnu_hdr, 112);
	memcpy(buf + off, edit, len);
	return cpio_header_decode(buf, sizeof(buf), &e, &name);
}

static void
test_decode_malformed(void **state)
{
	static const char bad_digits[] = "gG -xz:@`/\xff";
	uint8_t buf[CPIO_HDR_MAX + 8];
	struct cpio_entry e;
	const char *name;
	size_t i, f;

	(void)state;
	/* Magic: each byte, the CRC variant and the old binary format. */
	for (i = 0; i < 6; i++)
		assert_int_equal(decode_edited(i, "9", 1), -EBADMSG);
	assert_int_equal(decode_edited(0, "070702", 6), -EBADMSG);
	assert_int_equal(decode_edited(0, "\xc7\x71", 2), -EBADMSG);
	/* A bad magic is caught before the whole header is in. */
	assert_int_equal(cpio_header_decode((const uint8_t *)"0707", 4, &e,
	    &name), 0);
	assert_int_equal(cpio_header_decode((const uint8_t *)"0708", 4, &e,
	    &name), -EBADMSG);
	assert_int_equal(cpio_header_decode((const uint8_t *)"PK", 2, &e,
	    &name), -EBADMSG);

	/* A non-hex digit anywhere in any of the 13 fields. */
	for (f = 0; f < 13; f++)
		for (i = 0; i < 8; i++)
			assert_int_equal(decode_edited(6 + 8 * f + i,
			    &bad_digits[(f + i) % (sizeof(bad_digits) - 1)],
			    1), -EBADMSG);
	/* Lower case is hex too. */
	assert_int_equal(decode_edited(14, "000081a4", 8), 112);

	/* namesize 0, 1 (empty name) and over the limit. */
	assert_int_equal(decode_edited(94, "00000000", 8), -EBADMSG);
	assert_int_equal(decode_edited(94, "00000001", 8), -EBADMSG);
	assert_int_equal(decode_edited(94, "00001001", 8), -EBADMSG);
	assert_int_equal(decode_edited(94, "FFFFFFFF", 8), -EBADMSG);
	/* namesize 3 for "f\0": the name is not terminated where it says. */
	assert_int_equal(decode_edited(94, "00000003", 8), -EBADMSG);
	/* Not terminated at all. */
	assert_int_equal(decode_edited(110, "fg", 2), -EBADMSG);

	/* An embedded NUL: "a\0b" with namesize 4. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, gnu_hdr, 110);
	memcpy(buf + 94, "00000004", 8);
	memcpy(buf + 110, "a\0b\0", 4);
	assert_int_equal(cpio_header_decode(buf, 116, &e, &name), -EBADMSG);
	memcpy(buf + 110, "abc\0", 4);
	assert_int_equal(cpio_header_decode(buf, 116, &e, &name), 116);
	assert_string_equal(name, "abc");

	/* The largest name allowed decodes. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, gnu_hdr, 110);
	memcpy(buf + 94, "00001000", 8);
	memset(buf + 110, 'n', CPIO_NAME_MAX - 1);
	assert_int_equal(cpio_header_decode(buf, sizeof(buf), &e, &name),
	    (long)cpio_header_len(CPIO_NAME_MAX));
	assert_int_equal(strlen(name), CPIO_NAME_MAX - 1);
}

static void
test_trailer(void **state)
{
	struct cpio_entry e;
	const char *name;

	(void)state;
	assert_int_equal(cpio_header_decode((const uint8_t *)trailer, 124, &e,
	    &name), 124);
	assert_true(cpio_is_trailer(name));
	assert_int_equal(e.size, 0);
	assert_false(cpio_is_trailer("TRAILER!!"));
	assert_false(cpio_is_trailer("top/TRAILER!!!"));
	assert_false(cpio_is_trailer("TRAILER!!!x"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pad4),
		cmocka_unit_test(test_decode_gnu),
		cmocka_unit_test(test_encode_layout),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_partial),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_trailer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
