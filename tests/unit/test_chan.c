/*
 * test_chan.c — the agent channel codec: frames, HELLO, exec messages,
 * and its credit accounting (the v5 stream messages: test_chanstream.c).
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

#include "testle.h"
#include "testrng.h"

#include "chan.h"

static const unsigned all_kinds[] = {
	CHAN_HELLO, CHAN_ERROR, CHAN_SHUTDOWN, CHAN_EXEC, CHAN_STDIN,
	CHAN_EOF, CHAN_RESIZE, CHAN_SIGNAL, CHAN_CLOSE, CHAN_STDOUT,
	CHAN_STDERR, CHAN_EXIT, CHAN_CREDIT, CHAN_COPY_IN, CHAN_COPY_OUT,
	CHAN_STARTED, CHAN_PING, CHAN_PONG, CHAN_NET, CHAN_NET_DONE,
	CHAN_OPEN, CHAN_OPENED, CHAN_RESET, CHAN_DATA, CHAN_REFRESH,
};
#define NKINDS (sizeof(all_kinds) / sizeof(all_kinds[0]))

static int
is_data_kind(unsigned k)
{
	return k == CHAN_STDIN || k == CHAN_STDOUT || k == CHAN_STDERR ||
	    k == CHAN_DATA;
}

static void
hdr(uint8_t out[CHAN_HDR_LEN], unsigned kind, uint32_t stream, uint32_t len)
{
	struct chan_hdr h = { .kind = (uint8_t)kind, .stream = stream,
	    .len = len };

	chan_hdr_encode(out, &h);
}

/* ---- header ---- */

static void
test_hdr_layout(void **state)
{
	/* The wire layout is fixed little-endian, whatever the host. */
	static const uint8_t want[CHAN_HDR_LEN] = {
		0x75, 0xCA, CHAN_EXEC, 0x00,
		0x04, 0x03, 0x02, 0x01,
		0x0d, 0x0c, 0x0b, 0x00,
	};
	uint8_t buf[CHAN_HDR_LEN];

	(void)state;
	hdr(buf, CHAN_EXEC, 0x01020304, 0x000b0c0d);
	assert_memory_equal(buf, want, CHAN_HDR_LEN);
}

static void
test_hdr_round_trip(void **state)
{
	static const uint32_t streams[] = { 0, 1, 2, 0x7fffffff, 0xffffffff };
	uint8_t buf[CHAN_HDR_LEN];
	struct chan_hdr h;
	size_t k, s;

	(void)state;
	for (k = 0; k < NKINDS; k++) {
		uint32_t max = is_data_kind(all_kinds[k]) ? CHAN_MAX_DATA :
		    CHAN_MAX_PAYLOAD;
		uint32_t lens[] = { 0, 1, 4095, max - 1, max };

		for (s = 0; s < sizeof(streams) / sizeof(streams[0]); s++) {
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]);
			    l++) {
				hdr(buf, all_kinds[k], streams[s], lens[l]);
				memset(&h, 0xee, sizeof(h));
				assert_int_equal(chan_hdr_decode(buf, &h), 0);
				assert_int_equal(h.kind, all_kinds[k]);
				assert_int_equal(h.flags, 0);
				assert_int_equal(h.stream, streams[s]);
				assert_int_equal(h.len, lens[l]);
			}
		}
	}
}

static void
test_hdr_bad_magic(void **state)
{
	uint8_t buf[CHAN_HDR_LEN];
	struct chan_hdr h;

	(void)state;
	hdr(buf, CHAN_HELLO, 0, 8);
	buf[0] ^= 1;
	assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
	hdr(buf, CHAN_HELLO, 0, 8);
	buf[1] ^= 0x80;
	assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
	/* Byte-swapped magic: a big-endian writer. */
	hdr(buf, CHAN_HELLO, 0, 8);
	buf[0] = 0xCA;
	buf[1] = 0x75;
	assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
}

/* REFRESH: the time in 64 bits and the seed, exactly; nothing else. */
static void
test_refresh(void **state)
{
	struct chan_refresh in, out;
	uint8_t buf[CHAN_REFRESH_LEN + 1];

	(void)state;
	memset(&in, 0, sizeof(in));
	in.realtime_ns = 0x0123456789abcdefULL;
	for (unsigned i = 0; i < CHAN_REFRESH_SEED; i++)
		in.seed[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(chan_refresh_encode(buf, CHAN_REFRESH_LEN - 1, &in),
	    -EMSGSIZE);
	assert_int_equal(chan_refresh_encode(buf, sizeof(buf), &in),
	    CHAN_REFRESH_LEN);
	assert_int_equal(buf[0], 0xef);		/* little-endian */
	assert_int_equal(buf[7], 0x01);
	assert_int_equal(chan_refresh_decode(buf, CHAN_REFRESH_LEN, &out), 0);
	assert_true(out.realtime_ns == in.realtime_ns);
	assert_memory_equal(out.seed, in.seed, CHAN_REFRESH_SEED);
	assert_int_equal(chan_refresh_decode(buf, CHAN_REFRESH_LEN - 1, &out),
	    -EBADMSG);
	assert_int_equal(chan_refresh_decode(buf, CHAN_REFRESH_LEN + 1, &out),
	    -EBADMSG);
	assert_string_equal(chan_kind_name(CHAN_REFRESH), "REFRESH");
}

static void
test_refresh_hostname(void **state)
{
	static const char *const bad[] = { "-a", "a-", "A", "a.b", "a_b",
	    "a b", "" };
	struct chan_refresh in, out;
	uint8_t buf[CHAN_REFRESH_MAX + 8];
	char long_name[CHAN_MAX_HOSTNAME + 2];
	int n;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.realtime_ns = 42;
	snprintf(in.hostname, sizeof(in.hostname), "capsule-1a2b3c4d");
	n = chan_refresh_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, CHAN_REFRESH_LEN + 1 + 16);
	assert_int_equal(buf[CHAN_REFRESH_LEN], 16);
	assert_int_equal(chan_refresh_encode(buf, (size_t)n - 1, &in),
	    -EMSGSIZE);
	assert_int_equal(chan_refresh_decode(buf, (size_t)n, &out), 0);
	assert_string_equal(out.hostname, "capsule-1a2b3c4d");
	assert_true(out.realtime_ns == 42);
	/* The length byte must say what follows, exactly. */
	assert_int_equal(chan_refresh_decode(buf, (size_t)n - 1, &out),
	    -EBADMSG);
	buf[CHAN_REFRESH_LEN] = 15;
	assert_int_equal(chan_refresh_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[CHAN_REFRESH_LEN] = 16;
	buf[CHAN_REFRESH_LEN + 1] = '/';
	assert_int_equal(chan_refresh_decode(buf, (size_t)n, &out), -EBADMSG);
	/* Only names capsule gives, both ways. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(chan_hostname_check(bad[i], strlen(bad[i])));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(chan_hostname_check(long_name, strlen(long_name)));
	assert_true(chan_hostname_check(long_name, CHAN_MAX_HOSTNAME));
	snprintf(in.hostname, sizeof(in.hostname), "Bad");
	assert_int_equal(chan_refresh_encode(buf, sizeof(buf), &in), -EINVAL);
}

static void
test_hdr_kinds(void **state)
{
	uint8_t buf[CHAN_HDR_LEN];
	struct chan_hdr h;
	unsigned k, nvalid = 0;

	(void)state;
	for (k = 0; k < 256; k++) {
		int known = 0;

		for (size_t i = 0; i < NKINDS; i++)
			known |= all_kinds[i] == k;
		assert_int_equal(chan_kind_valid(k), known);
		if (known) {
			nvalid++;
			assert_string_not_equal(chan_kind_name(k), "unknown");
		} else {
			assert_string_equal(chan_kind_name(k), "unknown");
		}
		/* On the control stream an unknown kind ends the channel;
		 * on any other it decodes, so that only that stream is
		 * refused (RESET, EPROTONOSUPPORT). */
		hdr(buf, k, 0, 0);
		assert_int_equal(chan_hdr_decode(buf, &h),
		    known ? 0 : -EBADMSG);
		hdr(buf, k, 1, 0);
		memset(&h, 0, sizeof(h));
		assert_int_equal(chan_hdr_decode(buf, &h), 0);
		assert_int_equal(h.kind, k);
		hdr(buf, k, 5 | CHAN_STREAM_GUEST, 7);
		assert_int_equal(chan_hdr_decode(buf, &h), 0);
		assert_int_equal(h.stream, 5 | CHAN_STREAM_GUEST);
		assert_int_equal(h.len, 7);
	}
	assert_int_equal(nvalid, NKINDS);
	assert_int_equal(chan_kind_valid(256 + CHAN_HELLO), 0);
	assert_string_equal(chan_kind_name(CHAN_EXEC), "EXEC");
	assert_string_equal(chan_kind_name(CHAN_CREDIT), "CREDIT");
	assert_string_equal(chan_kind_name(CHAN_NET), "NET");
	assert_string_equal(chan_kind_name(CHAN_NET_DONE), "NET_DONE");
	assert_string_equal(chan_kind_name(CHAN_OPEN), "OPEN");
	assert_string_equal(chan_kind_name(CHAN_OPENED), "OPENED");
	assert_string_equal(chan_kind_name(CHAN_RESET), "RESET");
	assert_string_equal(chan_kind_name(CHAN_DATA), "DATA");
	/* The kind numbers are the wire; they never move. */
	assert_int_equal(CHAN_NET, 6);
	assert_int_equal(CHAN_NET_DONE, 7);
	assert_int_equal(CHAN_OPEN, 24);
	assert_int_equal(CHAN_OPENED, 25);
	assert_int_equal(CHAN_RESET, 26);
	assert_int_equal(CHAN_DATA, 36);
}

static void
test_hdr_unknown_kind(void **state)
{
	uint8_t buf[CHAN_HDR_LEN + 16];
	struct chan_hdr h;

	(void)state;
	/* Stream 0: the channel is unusable. */
	hdr(buf, 200, 0, 0);
	assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN, &h), -EBADMSG);
	/* Stream 5: a whole frame the receiver can skip and refuse. */
	hdr(buf, 200, 5, 16);
	memset(&h, 0, sizeof(h));
	assert_int_equal(chan_hdr_decode(buf, &h), 0);
	assert_int_equal(h.kind, 200);
	assert_int_equal(h.stream, 5);
	assert_false(chan_kind_valid(h.kind));
	assert_string_equal(chan_kind_name(h.kind), "unknown");
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN + 15, &h), 0);
	assert_int_equal(chan_frame_ready(buf, sizeof(buf), &h),
	    CHAN_HDR_LEN + 16);
	/* ... but not an unbounded one, and not with flags. */
	hdr(buf, 200, 5, CHAN_MAX_PAYLOAD + 1);
	assert_int_equal(chan_hdr_decode(buf, &h), -EMSGSIZE);
	hdr(buf, 200, 5, 0);
	buf[3] = 1;
	assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
	/* An unknown kind past CHAN_MAX_DATA is fine: not a data kind. */
	hdr(buf, 200, 5, CHAN_MAX_DATA + 1);
	assert_int_equal(chan_hdr_decode(buf, &h), 0);

	/* DATA is a data kind, on any stream. */
	hdr(buf, CHAN_DATA, 3 | CHAN_STREAM_GUEST, CHAN_MAX_DATA);
	assert_int_equal(chan_hdr_decode(buf, &h), 0);
	hdr(buf, CHAN_DATA, 3 | CHAN_STREAM_GUEST, CHAN_MAX_DATA + 1);
	assert_int_equal(chan_hdr_decode(buf, &h), -EMSGSIZE);
	hdr(buf, CHAN_DATA, 3, 0xffffffff);
	assert_int_equal(chan_hdr_decode(buf, &h), -EMSGSIZE);
}

static void
test_hdr_flags(void **state)
{
	uint8_t buf[CHAN_HDR_LEN];
	struct chan_hdr h = { .kind = CHAN_EOF, .stream = 3 };
	unsigned f;

	(void)state;
	for (f = 1; f < 256; f <<= 1) {
		h.flags = (uint8_t)f;
		chan_hdr_encode(buf, &h);
		assert_int_equal(buf[3], f);
		assert_int_equal(chan_hdr_decode(buf, &h), -EBADMSG);
	}
}

static void
test_hdr_sizes(void **state)
{
	uint8_t buf[CHAN_HDR_LEN];
	struct chan_hdr h;
	size_t k;

	(void)state;
	for (k = 0; k < NKINDS; k++) {
		unsigned kind = all_kinds[k];

		hdr(buf, kind, 1, CHAN_MAX_PAYLOAD + 1);
		assert_int_equal(chan_hdr_decode(buf, &h), -EMSGSIZE);
		hdr(buf, kind, 1, 0xffffffff);
		assert_int_equal(chan_hdr_decode(buf, &h), -EMSGSIZE);
		hdr(buf, kind, 1, CHAN_MAX_DATA + 1);
		assert_int_equal(chan_hdr_decode(buf, &h),
		    is_data_kind(kind) ? -EMSGSIZE : 0);
		hdr(buf, kind, 1, CHAN_MAX_PAYLOAD);
		assert_int_equal(chan_hdr_decode(buf, &h),
		    is_data_kind(kind) ? -EMSGSIZE : 0);
	}
}

/* ---- frame splitter ---- */

static void
test_frame_partial_header(void **state)
{
	uint8_t buf[CHAN_HDR_LEN + 8];
	struct chan_hdr h;
	size_t n;

	(void)state;
	hdr(buf, CHAN_HELLO, 0, 0);
	for (n = 0; n < CHAN_HDR_LEN; n++)
		assert_int_equal(chan_frame_ready(buf, n, &h), 0);
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN, &h),
	    CHAN_HDR_LEN);

	/* Even a garbage prefix is only judged once a whole header is in. */
	memset(buf, 0xff, sizeof(buf));
	for (n = 0; n < CHAN_HDR_LEN; n++)
		assert_int_equal(chan_frame_ready(buf, n, &h), 0);
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN, &h), -EBADMSG);
}

static void
test_frame_partial_payload(void **state)
{
	uint8_t buf[CHAN_HDR_LEN + 100];
	struct chan_hdr h;
	size_t n;

	(void)state;
	memset(buf, 0x5a, sizeof(buf));
	hdr(buf, CHAN_STDOUT, 7, 100);
	for (n = CHAN_HDR_LEN; n < CHAN_HDR_LEN + 100; n++) {
		memset(&h, 0, sizeof(h));
		assert_int_equal(chan_frame_ready(buf, n, &h), 0);
	}
	memset(&h, 0, sizeof(h));
	assert_int_equal(chan_frame_ready(buf, sizeof(buf), &h),
	    CHAN_HDR_LEN + 100);
	assert_int_equal(h.kind, CHAN_STDOUT);
	assert_int_equal(h.stream, 7);
	assert_int_equal(h.len, 100);
}

static void
test_frame_back_to_back(void **state)
{
	uint8_t buf[2 * CHAN_HDR_LEN + 8 + 4 + 5];
	struct chan_hdr h;
	size_t off = 0;
	long r;

	(void)state;
	hdr(buf, CHAN_HELLO, 0, 8);
	memset(buf + CHAN_HDR_LEN, 1, 8);
	hdr(buf + CHAN_HDR_LEN + 8, CHAN_CREDIT, 9, 4);
	memset(buf + 2 * CHAN_HDR_LEN + 8, 2, 4);
	memset(buf + 2 * CHAN_HDR_LEN + 12, 0xff, 5);	/* next, partial */

	/* Exactly one frame. */
	r = chan_frame_ready(buf, CHAN_HDR_LEN + 8, &h);
	assert_int_equal(r, CHAN_HDR_LEN + 8);
	assert_int_equal(h.kind, CHAN_HELLO);

	/* Two frames: the splitter reports only the first, then the second. */
	r = chan_frame_ready(buf, sizeof(buf), &h);
	assert_int_equal(r, CHAN_HDR_LEN + 8);
	assert_int_equal(h.kind, CHAN_HELLO);
	assert_int_equal(h.len, 8);
	off += (size_t)r;
	r = chan_frame_ready(buf + off, sizeof(buf) - off, &h);
	assert_int_equal(r, CHAN_HDR_LEN + 4);
	assert_int_equal(h.kind, CHAN_CREDIT);
	assert_int_equal(h.stream, 9);
	off += (size_t)r;
	/* Five bytes of something are not a header yet. */
	assert_int_equal(chan_frame_ready(buf + off, sizeof(buf) - off, &h),
	    0);
}

static void
test_frame_garbage(void **state)
{
	uint8_t buf[64];
	struct chan_hdr h;
	int i;

	(void)state;
	rng_state = 0x1234567;
	memcpy(buf, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	assert_int_equal(chan_frame_ready(buf, 27, &h), -EBADMSG);

	/* Good magic, bad kind. */
	hdr(buf, CHAN_HELLO, 0, 0);
	buf[2] = 0;
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN, &h), -EBADMSG);

	/* Good header, oversized: no reading of a 4 GiB "payload". */
	hdr(buf, CHAN_STDIN, 1, CHAN_MAX_DATA + 1);
	assert_int_equal(chan_frame_ready(buf, CHAN_HDR_LEN, &h), -EMSGSIZE);

	/* Random bytes are judged by their header, never crash or over-read. */
	for (i = 0; i < 10000; i++) {
		long r;

		for (size_t j = 0; j < sizeof(buf); j++)
			buf[j] = (uint8_t)rng();
		if (i & 1) {
			buf[0] = 0x75;
			buf[1] = 0xCA;
		}
		r = chan_frame_ready(buf, sizeof(buf), &h);
		if (r > 0) {
			assert_true(chan_kind_valid(h.kind) || h.stream != 0);
			assert_int_equal(h.flags, 0);
			assert_int_equal(r, CHAN_HDR_LEN + h.len);
			assert_true((size_t)r <= sizeof(buf));
		} else {
			assert_true(r == 0 || r == -EBADMSG || r == -EMSGSIZE);
		}
	}
}

/* ---- HELLO, u32, RESIZE ---- */

static void
test_hello(void **state)
{
	struct chan_hello in = { .version = CHAN_VERSION, .boot_ms = 123456 };
	struct chan_hello out;
	uint8_t buf[16];

	(void)state;
	assert_int_equal(chan_hello_encode(buf, CHAN_HELLO_LEN - 1, &in),
	    -EMSGSIZE);
	assert_int_equal(chan_hello_encode(buf, sizeof(buf), &in),
	    CHAN_HELLO_LEN);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, CHAN_HELLO_LEN, &out), 0);
	assert_int_equal(out.version, CHAN_VERSION);
	assert_int_equal(out.boot_ms, 123456);

	/* Too short to even carry a version. */
	for (size_t n = 0; n < 4; n++)
		assert_int_equal(chan_hello_decode(buf, n, &out), -EBADMSG);

	/* A peer of another version with a shorter layout: the version
	 * must still come through so the caller can name it. */
	in.version = 7;
	chan_hello_encode(buf, sizeof(buf), &in);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, 4, &out), 0);
	assert_int_equal(out.version, 7);
	assert_int_equal(out.boot_ms, 0);
	/* ... or a longer one. */
	memset(buf + 8, 0xab, 8);
	assert_int_equal(chan_hello_decode(buf, 16, &out), 0);
	assert_int_equal(out.version, 7);
	assert_int_equal(out.boot_ms, 123456);
}

static void
test_u32(void **state)
{
	uint8_t buf[8];
	uint32_t v;

	(void)state;
	assert_int_equal(chan_u32_encode(buf, 3, 1), -EMSGSIZE);
	assert_int_equal(chan_u32_encode(buf, sizeof(buf), 0xdeadbeef), 4);
	assert_int_equal(buf[0], 0xef);
	assert_int_equal(buf[3], 0xde);
	assert_int_equal(chan_u32_decode(buf, 4, &v), 0);
	assert_int_equal(v, 0xdeadbeef);
	v = 42;
	assert_int_equal(chan_u32_decode(buf, 0, &v), -EBADMSG);
	assert_int_equal(chan_u32_decode(buf, 3, &v), -EBADMSG);
	assert_int_equal(chan_u32_decode(buf, 5, &v), -EBADMSG);
	assert_int_equal(chan_u32_decode(buf, 8, &v), -EBADMSG);
	assert_int_equal(v, 42);
}

static void
test_resize(void **state)
{
	uint8_t buf[8];
	uint16_t c = 1, r = 2;

	(void)state;
	assert_int_equal(chan_resize_encode(buf, 3, 80, 24), -EMSGSIZE);
	assert_int_equal(chan_resize_encode(buf, sizeof(buf), 65535, 258), 4);
	assert_int_equal(chan_resize_decode(buf, 4, &c, &r), 0);
	assert_int_equal(c, 65535);
	assert_int_equal(r, 258);
	assert_int_equal(buf[2], 2);
	assert_int_equal(buf[3], 1);
	c = 1;
	r = 2;
	assert_int_equal(chan_resize_decode(buf, 2, &c, &r), -EBADMSG);
	assert_int_equal(chan_resize_decode(buf, 3, &c, &r), -EBADMSG);
	assert_int_equal(chan_resize_decode(buf, 6, &c, &r), -EBADMSG);
	assert_int_equal(c, 1);
	assert_int_equal(r, 2);
}

/* ---- HELLO with feature bits (version 5) ---- */

static void
test_hello_v5(void **state)
{
	static const uint8_t want[] = {
		5, 0, 0, 0, 0x40, 0xe2, 0x01, 0,
		0x0f, 0, 0, 0x80,	/* STREAMS, NET, REFRESH, HOSTNAME; and an
				 * unknown bit */
	};
	struct chan_hello in = { .version = 5, .boot_ms = 123456,
	    .features = CHAN_FEATURES | 0x80000000u };
	struct chan_hello out;
	uint8_t buf[16];

	(void)state;
	assert_int_equal(CHAN_VERSION, 5);
	assert_int_equal(CHAN_HELLO_LEN, 12);
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(chan_hello_encode(buf, sizeof(buf), &in), 12);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(buf[12], 0xaa);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, 12, &out), 0);
	assert_int_equal(out.version, 5);
	assert_int_equal(out.boot_ms, 123456);
	assert_int_equal(out.features, CHAN_FEATURES | 0x80000000u);
	assert_int_equal(chan_hello_encode(buf, 12, &in), 12);
	assert_int_equal(chan_hello_encode(buf, 11, &in), -EMSGSIZE);
	assert_int_equal(chan_hello_encode(buf, 8, &in), -EMSGSIZE);

	/* A version 5 HELLO cut to 8 bytes has no features. */
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, 8, &out), 0);
	assert_int_equal(out.version, 5);
	assert_int_equal(out.boot_ms, 123456);
	assert_int_equal(out.features, 0);
	/* Longer layouts of later versions keep their first three words. */
	in.version = 6;
	assert_int_equal(chan_hello_encode(buf, sizeof(buf), &in), 12);
	memset(buf + 12, 0x55, 4);
	assert_int_equal(chan_hello_decode(buf, 16, &out), 0);
	assert_int_equal(out.version, 6);
	assert_int_equal(out.features, CHAN_FEATURES | 0x80000000u);
	/* The feature bits are the wire; they never move. */
	assert_int_equal(CHAN_FEAT_STREAMS, 1);
	assert_int_equal(CHAN_FEAT_NET, 2);
}

static void
test_hello_v4(void **state)
{
	static const uint8_t want[] = { 4, 0, 0, 0, 9, 0, 0, 0 };
	struct chan_hello in = { .version = CHAN_VERSION_MIN, .boot_ms = 9,
	    .features = CHAN_FEATURES };
	struct chan_hello out;
	uint8_t buf[16];

	(void)state;
	assert_int_equal(CHAN_VERSION_MIN, 4);
	/* A version 4 peer's layout: 8 bytes, no features, which also
	 * fits a buffer of just 8. */
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(chan_hello_encode(buf, sizeof(buf), &in),
	    CHAN_HELLO_V4_LEN);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(buf[8], 0xaa);
	assert_int_equal(chan_hello_encode(buf, CHAN_HELLO_V4_LEN, &in),
	    CHAN_HELLO_V4_LEN);
	assert_int_equal(chan_hello_encode(buf, CHAN_HELLO_V4_LEN - 1, &in),
	    -EMSGSIZE);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, CHAN_HELLO_V4_LEN, &out), 0);
	assert_int_equal(out.version, 4);
	assert_int_equal(out.boot_ms, 9);
	assert_int_equal(out.features, 0);
	/* Bytes past a version 4 layout are not features. */
	memset(buf + 8, 0xff, 4);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_hello_decode(buf, 12, &out), 0);
	assert_int_equal(out.version, 4);
	assert_int_equal(out.features, 0);
	/* Older still: the same short layout, so the caller can name it. */
	in.version = 3;
	assert_int_equal(chan_hello_encode(buf, sizeof(buf), &in), 8);
	assert_int_equal(chan_hello_decode(buf, 8, &out), 0);
	assert_int_equal(out.version, 3);
	assert_int_equal(out.features, 0);
}

/* ---- EXEC ---- */

#define MAXA 64

static void
exec_equal(const struct chan_exec *a, const struct chan_exec *b)
{
	assert_int_equal(!!a->tty, !!b->tty);
	assert_int_equal(a->cols, b->cols);
	assert_int_equal(a->rows, b->rows);
	assert_int_equal(!!a->detach, !!b->detach);
	assert_int_equal(a->timeout_ms, b->timeout_ms);
	assert_string_equal(a->dir ? a->dir : "", b->dir ? b->dir : "");
	assert_string_equal(a->user ? a->user : "", b->user ? b->user : "");
	assert_int_equal(a->argc, b->argc);
	assert_int_equal(a->envc, b->envc);
	for (uint32_t i = 0; i < a->argc; i++)
		assert_string_equal(a->argv[i], b->argv[i]);
	for (uint32_t i = 0; i < a->envc; i++)
		assert_string_equal(a->envp[i], b->envp[i]);
}

static void
exec_round_trip(const struct chan_exec *in, size_t want_len)
{
	static uint8_t buf[65536];
	const char *argv[MAXA], *envp[MAXA];
	struct chan_exec out = { .argv = argv, .envp = envp };
	long n;

	n = chan_exec_encode(buf, sizeof(buf), in);
	assert_int_equal(n, want_len);
	assert_int_equal(chan_exec_decode(buf, (size_t)n, &out, MAXA, MAXA),
	    0);
	exec_equal(in, &out);
	/* Decoding points into the payload rather than copying. */
	assert_ptr_equal(out.dir, (const char *)buf + CHAN_EXEC_FIXED);
	/* One byte short anywhere at the end is a truncated frame. */
	assert_int_equal(chan_exec_decode(buf, (size_t)n - 1, &out, MAXA,
	    MAXA), -EBADMSG);
}

static void
test_exec_round_trip(void **state)
{
	const char *argv1[] = { "sh", "-c", "echo hi" };
	const char *env1[] = { "PATH=/usr/bin:/bin", "EMPTY=", "A=b=c" };
	struct chan_exec x = {
		.tty = 1, .cols = 132, .rows = 43, .dir = "/tmp",
		.user = "1000:100", .timeout_ms = 0xfedcba98, .detach = 1,
		.argc = 3, .argv = argv1, .envc = 3, .envp = env1,
	};
	const char *many[MAXA];
	char words[MAXA][8];
	size_t want;

	(void)state;
	want = CHAN_EXEC_FIXED + 5 + 9 + 3 + 3 + 8 + 19 + 7 + 6;
	exec_round_trip(&x, want);

	/* No tty, env with the default (empty) dir and user. */
	x.user = "";
	x.detach = 0;
	x.timeout_ms = 0;
	x.tty = 0;
	x.cols = x.rows = 0;
	x.dir = "";
	x.argc = 1;
	exec_round_trip(&x, CHAN_EXEC_FIXED + 1 + 1 + 3 + 19 + 7 + 6);

	/* No env; a NULL dir or user encodes as "". */
	x.envc = 0;
	x.dir = NULL;
	x.user = NULL;
	exec_round_trip(&x, CHAN_EXEC_FIXED + 1 + 1 + 3);

	/* Many args, including empty ones after argv[0]. */
	want = CHAN_EXEC_FIXED + 1 + 1;
	for (int i = 0; i < MAXA; i++) {
		if (i % 5 == 4)
			words[i][0] = '\0';
		else
			snprintf(words[i], sizeof(words[i]), "a%d", i);
		many[i] = words[i];
		want += strlen(words[i]) + 1;
	}
	x.argc = MAXA;
	x.argv = many;
	x.cols = 65535;
	x.rows = 65535;
	exec_round_trip(&x, want);
}

static void
test_exec_layout(void **state)
{
	const char *argv[] = { "ls" };
	const char *env[] = { "K=V" };
	struct chan_exec x = { .tty = 5, .detach = 7, .cols = 0x0102,
	    .rows = 0x0304, .timeout_ms = 0x0a0b0c0d, .dir = "/", .user = "u",
	    .argc = 1, .argv = argv, .envc = 1, .envp = env };
	static const uint8_t want[] = {
		1, 1, 0x02, 0x01, 0x04, 0x03, 0, 0,
		1, 0, 0, 0, 1, 0, 0, 0,
		0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 0, 0,
		'/', 0, 'u', 0, 'l', 's', 0, 'K', '=', 'V', 0,
	};
	uint8_t buf[64];

	(void)state;
	assert_int_equal(chan_exec_encode(buf, sizeof(buf), &x),
	    sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/* Builds a raw EXEC payload: fixed part, then `strs` (NULs included). */
static size_t
raw_exec(uint8_t *buf, uint8_t tty, uint32_t argc, uint32_t envc,
    const char *strs, size_t slen)
{
	memset(buf, 0, CHAN_EXEC_FIXED);
	buf[0] = tty;
	buf[8] = argc & 0xff;
	buf[9] = (argc >> 8) & 0xff;
	buf[10] = (argc >> 16) & 0xff;
	buf[11] = argc >> 24;
	buf[12] = envc & 0xff;
	buf[13] = (envc >> 8) & 0xff;
	buf[14] = (envc >> 16) & 0xff;
	buf[15] = envc >> 24;
	memcpy(buf + CHAN_EXEC_FIXED, strs, slen);
	return CHAN_EXEC_FIXED + slen;
}

#define RAW(buf, tty, argc, envc, lit) \
	raw_exec(buf, tty, argc, envc, lit, sizeof(lit) - 1)

static int
decode(const uint8_t *buf, size_t len, uint32_t max_args, uint32_t max_env)
{
	const char *argv[MAXA], *envp[MAXA];
	struct chan_exec x = { .argv = argv, .envp = envp };

	assert_true(max_args <= MAXA && max_env <= MAXA);
	/* Plausible leftovers, so nothing passes by reading stale slots. */
	for (int i = 0; i < MAXA; i++)
		argv[i] = envp[i] = "stale=1";
	return chan_exec_decode(buf, len, &x, max_args, max_env);
}

static void
test_exec_seed(void **state)
{
	static const uint8_t seed[64] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	const char *argv[] = { "true" }, *dargv[4], *denv[4];
	struct chan_exec in = { .argc = 1, .argv = argv, .dir = "",
	    .user = "", .seed = seed, .seed_len = sizeof(seed) };
	struct chan_exec out = { .argv = dargv, .envp = denv };
	uint8_t buf[512];
	long n;

	(void)state;
	n = chan_exec_encode(buf, sizeof(buf), &in);
	assert_true(n > 0);
	assert_int_equal(chan_exec_decode(buf, (size_t)n, &out, 4, 4), 0);
	assert_int_equal(out.seed_len, 64);
	assert_memory_equal(out.seed, seed, 64);
	/* The seed is counted exactly: one byte more or less is a lie. */
	assert_int_equal(chan_exec_decode(buf, (size_t)n - 1, &out, 4, 4),
	    -EBADMSG);
	buf[20] = 65;
	assert_int_equal(chan_exec_decode(buf, (size_t)n, &out, 4, 4),
	    -EBADMSG);
	/* Past the limit, neither side takes it. */
	in.seed_len = CHAN_MAX_SEED + 1;
	assert_int_equal(chan_exec_encode(buf, sizeof(buf), &in), -EMSGSIZE);
	buf[20] = (CHAN_MAX_SEED + 1) & 0xff;
	buf[21] = (CHAN_MAX_SEED + 1) >> 8;
	assert_int_equal(chan_exec_decode(buf, (size_t)n, &out, 4, 4),
	    -EBADMSG);
}

static void
test_exec_decode_rejects(void **state)
{
	uint8_t buf[256];
	size_t n;

	(void)state;
	/* The baseline is good, so each case below fails for its reason. */
	n = RAW(buf, 0, 2, 1, "/\0\0ls\0-l\0K=V\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), 0);
	n = RAW(buf, 1, 1, 0, "\0\0x\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), 0);

	/* argc 0. */
	n = RAW(buf, 0, 0, 0, "/\0\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	/* argc and envc over the caller's limits. */
	n = RAW(buf, 0, 3, 0, "/\0\0a\0b\0c\0");
	assert_int_equal(decode(buf, n, 3, 0), 0);
	assert_int_equal(decode(buf, n, 2, 0), -E2BIG);
	n = RAW(buf, 0, 0xffffffff, 0, "/\0\0a\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -E2BIG);
	n = RAW(buf, 0, 1, 2, "/\0\0a\0A=1\0B=2\0");
	assert_int_equal(decode(buf, n, 1, 2), 0);
	assert_int_equal(decode(buf, n, 1, 1), -E2BIG);
	/* Missing NULs: dir, an arg, an env entry cut short. */
	n = RAW(buf, 0, 1, 0, "/tmp");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 1, 0, "/\0\0ls");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 1, 1, "/\0\0ls\0K=V");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	/* Fewer strings than argc says. */
	n = RAW(buf, 0, 3, 0, "/\0\0a\0b\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	/* Trailing bytes after the last string. */
	n = RAW(buf, 0, 1, 0, "/\0\0ls\0x");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 1, 0, "/\0\0ls\0\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	/* env without '=' or with an empty key. */
	n = RAW(buf, 0, 1, 1, "/\0\0ls\0NOEQUALS\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 1, 1, "/\0\0ls\0=V\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 1, 1, "/\0\0ls\0\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	/* Empty argv[0]; an empty later arg is fine. */
	n = RAW(buf, 0, 2, 0, "/\0\0\0x\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	n = RAW(buf, 0, 2, 0, "/\0\0x\0\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), 0);
	/* tty other than 0/1, non-zero reserved bytes. */
	n = RAW(buf, 2, 1, 0, "/\0\0ls\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	buf[0] = 0;
	buf[1] = 1;		/* detach is the only flag */
	assert_int_equal(decode(buf, n, MAXA, MAXA), 0);
	buf[1] = 2;
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	buf[1] = 0;
	for (int i = 20; i < 24; i++) {
		buf[i] = 1;
		assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
		buf[i] = 0;
	}
	buf[7] = 1;
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	buf[7] = 0;
	buf[6] = 1;
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
	buf[6] = 0;
	assert_int_equal(decode(buf, n, MAXA, MAXA), 0);
	/* Truncated fixed part, including no payload at all. */
	for (size_t l = 0; l < CHAN_EXEC_FIXED; l++)
		assert_int_equal(decode(buf, l, MAXA, MAXA), -EBADMSG);
	/* Fixed part only: no dir string. */
	assert_int_equal(decode(buf, CHAN_EXEC_FIXED, MAXA, MAXA), -EBADMSG);
	/* A dir but no user string. */
	n = RAW(buf, 0, 1, 0, "/\0");
	assert_int_equal(decode(buf, n, MAXA, MAXA), -EBADMSG);
}

static void
test_exec_encode_cap(void **state)
{
	const char *argv[] = { "echo", "hello" };
	const char *env[] = { "K=V" };
	struct chan_exec x = { .dir = "/d", .argc = 2, .argv = argv,
	    .envc = 1, .envp = env };
	uint8_t buf[64];
	size_t need = CHAN_EXEC_FIXED + 3 + 1 + 5 + 6 + 4, cap;

	(void)state;
	assert_int_equal(chan_exec_encode(buf, need, &x), need);
	/* Every smaller cap fails, whichever string it falls in. */
	for (cap = 0; cap < need; cap++) {
		memset(buf, 0xaa, sizeof(buf));
		assert_int_equal(chan_exec_encode(buf, cap, &x), -EMSGSIZE);
		/* ... and writes nothing past cap. */
		for (size_t i = cap; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 0xaa);
	}
}

/* ---- EXIT ---- */

static void
test_exit_round_trip(void **state)
{
	static const char msg[] = "exec: no such file or directory";
	struct chan_exit in = { .exit_code = 127, .signal = 0, .msg = msg,
	    .msg_len = sizeof(msg) - 1 };
	struct chan_exit out;
	uint8_t buf[8 + CHAN_MAX_MSG + 16];
	int n;

	(void)state;
	n = chan_exit_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 8 + sizeof(msg) - 1);
	assert_int_equal(chan_exit_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.exit_code, 127);
	assert_int_equal(out.signal, 0);
	assert_int_equal(out.msg_len, sizeof(msg) - 1);
	assert_memory_equal(out.msg, msg, sizeof(msg) - 1);

	/* Killed by a signal, no message; msg may then be NULL. */
	in = (struct chan_exit){ .exit_code = 128 + 9, .signal = 9 };
	n = chan_exit_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 8);
	assert_int_equal(chan_exit_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.exit_code, 137);
	assert_int_equal(out.signal, 9);
	assert_int_equal(out.msg_len, 0);

	/* Range ends. */
	in = (struct chan_exit){ .exit_code = 255, .signal = 64 };
	n = chan_exit_encode(buf, sizeof(buf), &in);
	assert_int_equal(chan_exit_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.exit_code, 255);
	assert_int_equal(out.signal, 64);

	/* cap too small. */
	in = (struct chan_exit){ .exit_code = 1, .msg = msg, .msg_len = 4 };
	assert_int_equal(chan_exit_encode(buf, 11, &in), -EMSGSIZE);
	assert_int_equal(chan_exit_encode(buf, 12, &in), 12);
}

static void
test_exit_truncates(void **state)
{
	static char big[CHAN_MAX_MSG + 100];
	static uint8_t buf[8 + CHAN_MAX_MSG + 200];
	struct chan_exit in = { .exit_code = 1, .msg = big,
	    .msg_len = sizeof(big) };
	struct chan_exit out;
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	n = chan_exit_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 8 + CHAN_MAX_MSG);
	assert_int_equal(chan_exit_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.msg_len, CHAN_MAX_MSG);
	assert_memory_equal(out.msg, big, CHAN_MAX_MSG);
	/* The truncated size is what has to fit, not the original. */
	assert_int_equal(chan_exit_encode(buf, 8 + CHAN_MAX_MSG, &in),
	    8 + CHAN_MAX_MSG);
	assert_int_equal(chan_exit_encode(buf, 8 + CHAN_MAX_MSG - 1, &in),
	    -EMSGSIZE);
	/* A decoder does not accept more than an encoder writes. */
	assert_int_equal(chan_exit_decode(buf, 8 + CHAN_MAX_MSG + 1, &out),
	    -EBADMSG);
}

static int
exit_decode_raw(int32_t code, int32_t sig)
{
	uint8_t buf[8];
	struct chan_exit e;

	put_le32(buf, (uint32_t)code);
	put_le32(buf + 4, (uint32_t)sig);
	return chan_exit_decode(buf, sizeof(buf), &e);
}

static void
test_exit_decode_rejects(void **state)
{
	uint8_t buf[8] = { 0 };
	struct chan_exit e;

	(void)state;
	assert_int_equal(exit_decode_raw(0, 0), 0);
	assert_int_equal(exit_decode_raw(255, 64), 0);
	assert_int_equal(exit_decode_raw(-1, 0), -EBADMSG);
	assert_int_equal(exit_decode_raw(256, 0), -EBADMSG);
	assert_int_equal(exit_decode_raw(INT32_MIN, 0), -EBADMSG);
	assert_int_equal(exit_decode_raw(0, -1), -EBADMSG);
	assert_int_equal(exit_decode_raw(0, 65), -EBADMSG);
	assert_int_equal(exit_decode_raw(0, INT32_MAX), -EBADMSG);
	for (size_t n = 0; n < 8; n++)
		assert_int_equal(chan_exit_decode(buf, n, &e), -EBADMSG);
}

/* ---- STARTED and COPY paths ---- */

static void
test_started(void **state)
{
	static const uint8_t want[] = { 0x39, 0x30, 0, 0, '/', 'l' };
	struct chan_started in = { .pid = 12345, .log = "/l", .log_len = 2 };
	struct chan_started out;
	uint8_t buf[8 + CHAN_MAX_PATH];

	(void)state;
	assert_int_equal(chan_started_encode(buf, sizeof(buf), &in), 6);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(chan_started_decode(buf, 6, &out), 0);
	assert_int_equal(out.pid, 12345);
	assert_int_equal(out.log_len, 2);
	assert_memory_equal(out.log, "/l", 2);
	assert_int_equal(chan_started_encode(buf, 5, &in), -EMSGSIZE);
	/* pid 0, a NUL in the path, too short, too long. */
	memset(buf, 0, 4);
	assert_int_equal(chan_started_decode(buf, 6, &out), -EBADMSG);
	buf[0] = 1;
	buf[5] = 0;
	assert_int_equal(chan_started_decode(buf, 6, &out), -EBADMSG);
	assert_int_equal(chan_started_decode(buf, 3, &out), -EBADMSG);
	memset(buf + 4, 'a', CHAN_MAX_PATH + 1);
	assert_int_equal(chan_started_decode(buf, 4 + CHAN_MAX_PATH, &out), 0);
	assert_int_equal(chan_started_decode(buf, 5 + CHAN_MAX_PATH, &out),
	    -EBADMSG);
}

static void
test_path_check(void **state)
{
	static uint8_t big[CHAN_MAX_PATH + 1];

	(void)state;
	assert_int_equal(chan_path_check((const uint8_t *)"/a b", 4), 0);
	assert_int_equal(chan_path_check((const uint8_t *)"/", 1), 0);
	assert_int_equal(chan_path_check((const uint8_t *)"", 0), -EBADMSG);
	assert_int_equal(chan_path_check((const uint8_t *)"rel", 3), -EBADMSG);
	assert_int_equal(chan_path_check((const uint8_t *)"/a\0b", 4),
	    -EBADMSG);
	memset(big, 'x', sizeof(big));
	big[0] = '/';
	assert_int_equal(chan_path_check(big, CHAN_MAX_PATH), 0);
	assert_int_equal(chan_path_check(big, CHAN_MAX_PATH + 1), -EBADMSG);
}

/* ---- credit accounting ---- */

static void
test_tx_window(void **state)
{
	struct chan_tx_window w;

	(void)state;
	memset(&w, 0xff, sizeof(w));
	chan_tx_init(&w);
	assert_int_equal(w.credit, CHAN_WINDOW);
	assert_int_equal(chan_tx_allow(&w, 100), 100);
	assert_int_equal(chan_tx_allow(&w, CHAN_WINDOW), CHAN_WINDOW);
	assert_int_equal(chan_tx_allow(&w, CHAN_WINDOW + 1), CHAN_WINDOW);
	assert_int_equal(chan_tx_allow(&w, UINT32_MAX), CHAN_WINDOW);
	assert_int_equal(chan_tx_allow(&w, 0), 0);

	chan_tx_consume(&w, CHAN_WINDOW - 10);
	assert_int_equal(chan_tx_allow(&w, 100), 10);
	/* Consuming more than the credit clamps at zero, never wraps. */
	chan_tx_consume(&w, 11);
	assert_int_equal(w.credit, 0);
	assert_int_equal(chan_tx_allow(&w, 1), 0);
	chan_tx_consume(&w, 1);
	assert_int_equal(w.credit, 0);

	/* Grants reopen the window up to, not past, CHAN_WINDOW. */
	assert_int_equal(chan_tx_grant(&w, 1000), 0);
	assert_int_equal(chan_tx_allow(&w, 5000), 1000);
	assert_int_equal(chan_tx_grant(&w, CHAN_WINDOW - 1000 + 1), -EPROTO);
	assert_int_equal(w.credit, 1000);	/* bad grants change nothing */
	assert_int_equal(chan_tx_grant(&w, UINT32_MAX), -EPROTO);
	assert_int_equal(w.credit, 1000);
	assert_int_equal(chan_tx_grant(&w, CHAN_WINDOW - 1000), 0);
	assert_int_equal(w.credit, CHAN_WINDOW);
	assert_int_equal(chan_tx_grant(&w, 1), -EPROTO);
	assert_int_equal(chan_tx_grant(&w, 0), 0);
	assert_int_equal(w.credit, CHAN_WINDOW);
}

static void
test_rx_window(void **state)
{
	struct chan_rx_window w;

	(void)state;
	memset(&w, 0xff, sizeof(w));
	chan_rx_init(&w);
	assert_int_equal(w.held, 0);
	assert_int_equal(w.released, 0);

	assert_int_equal(chan_rx_receive(&w, CHAN_WINDOW - 1), 0);
	assert_int_equal(chan_rx_receive(&w, 2), -EPROTO);
	assert_int_equal(w.held, CHAN_WINDOW - 1);	/* unchanged */
	assert_int_equal(chan_rx_receive(&w, 1), 0);
	assert_int_equal(chan_rx_receive(&w, 1), -EPROTO);
	assert_int_equal(chan_rx_receive(&w, UINT32_MAX), -EPROTO);
	assert_int_equal(chan_rx_receive(&w, 0), 0);

	/* Releasing without granting does not reopen the window: the peer
	 * cannot know about credit it has not been sent. */
	assert_int_equal(chan_rx_release(&w, 1000), 0);
	assert_int_equal(w.held, CHAN_WINDOW - 1000);
	assert_int_equal(w.released, 1000);
	assert_int_equal(chan_rx_receive(&w, 1), -EPROTO);

	/* Once granted, exactly that much may come in again. */
	assert_int_equal(chan_rx_release(&w, CHAN_WINDOW), CHAN_WINDOW);
	assert_int_equal(w.held, 0);
	assert_int_equal(w.released, 0);
	assert_int_equal(chan_rx_receive(&w, CHAN_WINDOW + 1), -EPROTO);
	assert_int_equal(chan_rx_receive(&w, CHAN_WINDOW), 0);
}

static void
test_rx_release_batching(void **state)
{
	struct chan_rx_window w;
	uint32_t q = CHAN_WINDOW / 4, rest;

	(void)state;
	chan_rx_init(&w);
	assert_int_equal(chan_rx_receive(&w, CHAN_WINDOW), 0);

	/* Small releases while bytes are still held are batched. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(chan_rx_release(&w, 10), 0);
	assert_int_equal(w.released, 1000);
	assert_int_equal(chan_rx_release(&w, q - 1000 - 1), 0);
	assert_int_equal(w.released, q - 1);
	/* Reaching a quarter window grants the whole batch. */
	assert_int_equal(chan_rx_release(&w, 1), q);
	assert_int_equal(w.released, 0);
	assert_int_equal(w.held, CHAN_WINDOW - q);

	/* A large release grants at once. */
	assert_int_equal(chan_rx_release(&w, q + 5), q + 5);

	/* A pending batch goes back with the release that fills it. */
	assert_int_equal(chan_rx_release(&w, 3), 0);
	rest = w.held;
	assert_int_equal(chan_rx_release(&w, rest - 1), rest - 1 + 3);
	assert_int_equal(w.held, 1);
	assert_int_equal(w.released, 0);
	/* The last held byte goes back alone: nothing else will come. */
	assert_int_equal(chan_rx_release(&w, 1), 1);
	assert_int_equal(w.held, 0);
	assert_int_equal(w.released, 0);

	/* Once nothing is held, everything released is granted, however
	 * little, so a trickle is never left waiting. */
	chan_rx_init(&w);
	assert_int_equal(chan_rx_receive(&w, 100), 0);
	assert_int_equal(chan_rx_release(&w, 60), 0);
	assert_int_equal(chan_rx_release(&w, 39), 0);
	assert_int_equal(w.released, 99);
	assert_int_equal(chan_rx_release(&w, 1), 100);
	assert_int_equal(w.held, 0);
	assert_int_equal(w.released, 0);

	/* Releasing more than is held clamps. */
	assert_int_equal(chan_rx_receive(&w, 7), 0);
	assert_int_equal(chan_rx_release(&w, 1000), 7);
	assert_int_equal(chan_rx_release(&w, 1000), 0);
	assert_int_equal(w.held, 0);
	assert_int_equal(w.released, 0);

	/* A single small frame, released in full, is granted at once. */
	assert_int_equal(chan_rx_receive(&w, 1), 0);
	assert_int_equal(chan_rx_release(&w, 1), 1);
}

/*
 * A sender and a receiver joined by two FIFOs (data one way, CREDIT the
 * other), delivering and releasing in random order and amounts. At every
 * step the bytes in flight are conserved, no side goes past the window, and
 * whenever the sender is blocked something is still able to unblock it.
 */
#define SIM_Q 4096

struct sim {
	struct chan_tx_window tx;
	struct chan_rx_window rx;
	uint32_t data_q[SIM_Q], credit_q[SIM_Q];
	size_t dh, dt, ch, ct;
	uint64_t in_data, in_credit;	/* bytes in each FIFO */
	uint64_t sent, received, released, granted, credited;
};

static void
sim_check(const struct sim *s)
{
	/* Conservation: every window byte is in exactly one place. */
	assert_int_equal((uint64_t)s->tx.credit + s->in_data + s->rx.held +
	    s->rx.released + s->in_credit, CHAN_WINDOW);
	assert_true(s->rx.held + s->rx.released <= CHAN_WINDOW);
	assert_true(s->tx.credit <= CHAN_WINDOW);
	assert_true(s->received <= s->sent);
	/* No deadlock: a blocked sender has something on its way back. */
	if (s->tx.credit == 0)
		assert_true(s->in_data > 0 || s->rx.held > 0 ||
		    s->in_credit > 0);
	/* Nothing released sits ungranted once nothing is held. */
	if (s->rx.held == 0)
		assert_int_equal(s->rx.released, 0);
}

static void
test_flow_simulation(void **state)
{
	static struct sim s;
	uint64_t want_total = 0;
	int round;

	(void)state;
	rng_state = 0xC0FFEE;
	memset(&s, 0, sizeof(s));
	chan_tx_init(&s.tx);
	chan_rx_init(&s.rx);

	for (round = 0; round < 200000; round++) {
		uint32_t action = rng() % 8;

		if (action < 3) {
			/* Sender: try to write a random chunk. */
			uint32_t want = 1 + rng() % CHAN_MAX_DATA;
			uint32_t n = chan_tx_allow(&s.tx, want);

			want_total += want;
			assert_true(n <= want);
			if (n > 0 && s.dt - s.dh < SIM_Q) {
				chan_tx_consume(&s.tx, n);
				s.data_q[s.dt++ % SIM_Q] = n;
				s.in_data += n;
				s.sent += n;
			}
		} else if (action < 5) {
			/* Receiver: take a data frame off the wire. */
			if (s.dh < s.dt) {
				uint32_t n = s.data_q[s.dh++ % SIM_Q];

				assert_int_equal(chan_rx_receive(&s.rx, n), 0);
				s.in_data -= n;
				s.received += n;
			}
		} else if (action < 7) {
			/* Receiver: some held bytes leave it; maybe grant. */
			uint32_t n = rng() % 3 == 0 ? s.rx.held :
			    rng() % (s.rx.held + 1);
			uint32_t g;

			s.released += n;
			g = chan_rx_release(&s.rx, n);
			if (g > 0) {
				assert_true(s.ct - s.ch < SIM_Q);
				s.credit_q[s.ct++ % SIM_Q] = g;
				s.in_credit += g;
				s.granted += g;
			}
		} else {
			/* Sender: a CREDIT frame arrives. */
			if (s.ch < s.ct) {
				uint32_t g = s.credit_q[s.ch++ % SIM_Q];

				assert_int_equal(chan_tx_grant(&s.tx, g), 0);
				s.in_credit -= g;
				s.credited += g;
			}
		}
		sim_check(&s);
	}

	/* Drain: deliver everything, release everything, grant everything. */
	while (s.dh < s.dt) {
		uint32_t n = s.data_q[s.dh++ % SIM_Q];

		assert_int_equal(chan_rx_receive(&s.rx, n), 0);
		s.in_data -= n;
		s.received += n;
	}
	if (s.rx.held > 0 || s.rx.released > 0) {
		uint32_t g;

		s.released += s.rx.held;
		g = chan_rx_release(&s.rx, s.rx.held);
		s.credit_q[s.ct++ % SIM_Q] = g;
		s.in_credit += g;
		s.granted += g;
	}
	while (s.ch < s.ct) {
		uint32_t g = s.credit_q[s.ch++ % SIM_Q];

		assert_int_equal(chan_tx_grant(&s.tx, g), 0);
		s.in_credit -= g;
		s.credited += g;
	}
	sim_check(&s);
	assert_int_equal(s.sent, s.received);
	assert_int_equal(s.received, s.released);
	assert_int_equal(s.granted, s.released);
	assert_int_equal(s.credited, s.granted);
	assert_int_equal(s.tx.credit, CHAN_WINDOW);
	/* The run did move a lot of data through many window turns. */
	assert_true(s.sent > 100ULL * CHAN_WINDOW);
	assert_true(want_total >= s.sent);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_round_trip),
		cmocka_unit_test(test_hdr_bad_magic),
		cmocka_unit_test(test_hdr_kinds),
		cmocka_unit_test(test_refresh),
		cmocka_unit_test(test_refresh_hostname),
		cmocka_unit_test(test_hdr_flags),
		cmocka_unit_test(test_hdr_sizes),
		cmocka_unit_test(test_frame_partial_header),
		cmocka_unit_test(test_frame_partial_payload),
		cmocka_unit_test(test_frame_back_to_back),
		cmocka_unit_test(test_frame_garbage),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_u32),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_hdr_unknown_kind),
		cmocka_unit_test(test_hello_v5),
		cmocka_unit_test(test_hello_v4),
		cmocka_unit_test(test_exec_round_trip),
		cmocka_unit_test(test_exec_layout),
		cmocka_unit_test(test_exec_decode_rejects),
		cmocka_unit_test(test_exec_seed),
		cmocka_unit_test(test_exec_encode_cap),
		cmocka_unit_test(test_exit_round_trip),
		cmocka_unit_test(test_exit_truncates),
		cmocka_unit_test(test_exit_decode_rejects),
		cmocka_unit_test(test_started),
		cmocka_unit_test(test_path_check),
		cmocka_unit_test(test_tx_window),
		cmocka_unit_test(test_rx_window),
		cmocka_unit_test(test_rx_release_batching),
		cmocka_unit_test(test_flow_simulation),
	};

	return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
