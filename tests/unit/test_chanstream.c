/*
 * test_chanstream.c — the agent channel's stream messages (version 5):
 * OPEN of each type, RESET/NET_DONE status, NET, and host names.
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

/* ---- OPEN ---- */

/* The fixed part of an OPEN, by hand: type, reserved, then four bytes. */
static size_t
raw_open(uint8_t *buf, uint16_t type, uint16_t w1, uint8_t b6, uint8_t b7,
    const char *tail, size_t tlen)
{
	put_le16(buf, type);
	put_le16(buf + 2, 0);
	put_le16(buf + 4, w1);
	buf[6] = b6;
	buf[7] = b7;
	memcpy(buf + 8, tail, tlen);
	return 8 + tlen;
}

static int
open_decode(const uint8_t *p, size_t len)
{
	struct chan_open o;

	memset(&o, 0xee, sizeof(o));
	return chan_open_decode(p, len, &o);
}

static void
test_open_connect(void **state)
{
	static const uint8_t want_name[] = {
		1, 0, 0, 0, 0xbb, 0x01, CHAN_ADDR_NAME, 0,
		'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
	};
	static const uint8_t want_ipv4[] = {
		1, 0, 0, 0, 0x16, 0, CHAN_ADDR_IPV4, 0,
		203, 0, 113, 7,
	};
	struct chan_open in = { .type = CHAN_OPEN_CONNECT, .port = 443,
	    .addr_kind = CHAN_ADDR_NAME, .name = "example.com",
	    .name_len = 11 };
	struct chan_open out;
	uint8_t buf[300];
	long n;

	(void)state;
	memset(buf, 0xaa, sizeof(buf));
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, sizeof(want_name));
	assert_memory_equal(buf, want_name, sizeof(want_name));
	assert_int_equal(buf[n], 0xaa);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.type, CHAN_OPEN_CONNECT);
	assert_int_equal(out.port, 443);
	assert_int_equal(out.addr_kind, CHAN_ADDR_NAME);
	assert_int_equal(out.name_len, 11);
	assert_ptr_equal(out.name, (const char *)buf + 8);
	assert_int_equal(out.unknown, 0);
	assert_int_equal(out.qtype, 0);
	assert_int_equal(chan_open_encode(buf, (size_t)n, &in), n);
	assert_int_equal(chan_open_encode(buf, (size_t)n - 1, &in),
	    -EMSGSIZE);

	in = (struct chan_open){ .type = CHAN_OPEN_CONNECT, .port = 22,
	    .addr_kind = CHAN_ADDR_IPV4, .ipv4 = { 203, 0, 113, 7 } };
	memset(buf, 0xaa, sizeof(buf));
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 12);
	assert_memory_equal(buf, want_ipv4, sizeof(want_ipv4));
	assert_int_equal(buf[12], 0xaa);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_open_decode(buf, 12, &out), 0);
	assert_int_equal(out.type, CHAN_OPEN_CONNECT);
	assert_int_equal(out.port, 22);
	assert_int_equal(out.addr_kind, CHAN_ADDR_IPV4);
	assert_memory_equal(out.ipv4, in.ipv4, 4);
	assert_null(out.name);
	assert_int_equal(out.name_len, 0);
	assert_int_equal(out.unknown, 0);
	assert_int_equal(chan_open_encode(buf, 11, &in), -EMSGSIZE);

	/* Port extremes. */
	in.port = 65535;
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.port, 65535);
	in.port = 1;
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.port, 1);
}

static void
test_open_dns_forward(void **state)
{
	static const uint8_t want_dns[] = {
		2, 0, 0, 0, 28, 0, 0, 0, 'a', '.', 'b',
	};
	static const uint8_t want_fwd[] = { 3, 0, 0, 0, 0x90, 0x1f, 0, 0 };
	struct chan_open in = { .type = CHAN_OPEN_DNS, .qtype = 28,
	    .name = "a.b", .name_len = 3 };
	struct chan_open out;
	uint8_t buf[300];
	long n;

	(void)state;
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, sizeof(want_dns));
	assert_memory_equal(buf, want_dns, sizeof(want_dns));
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.type, CHAN_OPEN_DNS);
	assert_int_equal(out.qtype, 28);
	assert_int_equal(out.addr_kind, CHAN_ADDR_NAME);
	assert_int_equal(out.port, 0);
	assert_int_equal(out.name_len, 3);
	assert_memory_equal(out.name, "a.b", 3);
	assert_int_equal(out.unknown, 0);
	/* A DNS open's addr_kind is ignored: it always carries a name. */
	in.addr_kind = CHAN_ADDR_IPV4;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &in), n);
	assert_memory_equal(buf, want_dns, sizeof(want_dns));
	assert_int_equal(chan_open_encode(buf, (size_t)n - 1, &in),
	    -EMSGSIZE);
	in.qtype = 0xffff;
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.qtype, 0xffff);

	in = (struct chan_open){ .type = CHAN_OPEN_FORWARD, .port = 8080 };
	n = chan_open_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 8);
	assert_memory_equal(buf, want_fwd, sizeof(want_fwd));
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_open_decode(buf, 8, &out), 0);
	assert_int_equal(out.type, CHAN_OPEN_FORWARD);
	assert_int_equal(out.port, 8080);
	assert_null(out.name);
	assert_int_equal(out.unknown, 0);
	assert_int_equal(chan_open_encode(buf, 7, &in), -EMSGSIZE);
}

static void
test_open_unknown(void **state)
{
	static const uint16_t types[] = { 0, 4, 5, 255, 0x1234, 0xffff };
	struct chan_open out;
	uint8_t buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		/* Whatever the body, even none: only the type is read. */
		for (size_t len = 4; len < 24; len += 5) {
			memset(buf, 0xff, sizeof(buf));
			put_le16(buf, types[i]);
			put_le16(buf + 2, 0);
			memset(&out, 0xee, sizeof(out));
			assert_int_equal(chan_open_decode(buf, len, &out), 0);
			assert_int_equal(out.unknown, 1);
			assert_int_equal(out.type, types[i]);
			assert_int_equal(out.port, 0);
			assert_int_equal(out.qtype, 0);
			assert_int_equal(out.addr_kind, 0);
			assert_null(out.name);
			assert_int_equal(out.name_len, 0);
		}
		/* The reserved word still has to be zero. */
		put_le16(buf + 2, 1);
		assert_int_equal(open_decode(buf, 8), -EBADMSG);
	}
	/* Not even a type and the reserved word. */
	memset(buf, 0, sizeof(buf));
	for (size_t len = 0; len < 4; len++)
		assert_int_equal(open_decode(buf, len), -EBADMSG);
	/* An unknown type is no valid OPEN to send. */
	out = (struct chan_open){ .type = 4, .port = 1 };
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &out), -EINVAL);
	out.type = 0;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &out), -EINVAL);
}

static void
test_open_decode_rejects(void **state)
{
	char name254[255], label64[70];
	uint8_t buf[400];
	size_t n;

	(void)state;
	/* The baselines decode. */
	n = raw_open(buf, CHAN_OPEN_CONNECT, 443, CHAN_ADDR_NAME, 0, "a.b", 3);
	assert_int_equal(open_decode(buf, n), 0);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 443, CHAN_ADDR_IPV4, 0,
	    "\1\2\3\4", 4);
	assert_int_equal(open_decode(buf, n), 0);

	/* CONNECT: short, reserved bytes, port 0, address kinds. */
	for (size_t l = 4; l < 8; l++)
		assert_int_equal(open_decode(buf, l), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 443, CHAN_ADDR_NAME, 0, "a.b", 3);
	buf[2] = 1;
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	buf[2] = 0;
	buf[3] = 0x80;
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 443, CHAN_ADDR_NAME, 1, "a.b", 3);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 0, CHAN_ADDR_NAME, 0, "a.b", 3);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 0, CHAN_ADDR_IPV4, 0, "\1\2\3\4",
	    4);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	for (unsigned k = 1; k < 256; k++) {
		if (k == CHAN_ADDR_IPV4)
			continue;
		n = raw_open(buf, CHAN_OPEN_CONNECT, 80, (uint8_t)k, 0,
		    "\1\2\3\4", 4);
		assert_int_equal(open_decode(buf, n), -EBADMSG);
	}
	/* IPv4: exactly four bytes. */
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_IPV4, 0,
	    "\1\2\3\4\5", 5);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	assert_int_equal(open_decode(buf, 11), -EBADMSG);
	assert_int_equal(open_decode(buf, 8), -EBADMSG);
	/* A name: none at all, or one chan_name_check refuses. */
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, "", 0);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0,
	    "Example.com", 11);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0,
	    "a.b\0", 4);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	memset(name254, 'a', sizeof(name254));
	for (size_t i = 1; i < 254; i += 2)
		name254[i] = '.';
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, name254,
	    253);
	assert_int_equal(open_decode(buf, n), 0);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, name254,
	    254);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	memset(label64, 'x', sizeof(label64));
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, label64,
	    63);
	assert_int_equal(open_decode(buf, n), 0);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, label64,
	    64);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_CONNECT, 80, CHAN_ADDR_NAME, 0, ".a", 2);
	assert_int_equal(open_decode(buf, n), -EBADMSG);

	/* DNS: qtype 0, reserved word, bad name. */
	n = raw_open(buf, CHAN_OPEN_DNS, 1, 0, 0, "a.b", 3);
	assert_int_equal(open_decode(buf, n), 0);
	n = raw_open(buf, CHAN_OPEN_DNS, 0, 0, 0, "a.b", 3);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_DNS, 1, 1, 0, "a.b", 3);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_DNS, 1, 0, 1, "a.b", 3);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_DNS, 1, 0, 0, "", 0);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_DNS, 1, 0, 0, "a..b", 4);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	for (size_t l = 4; l < 8; l++)
		assert_int_equal(open_decode(buf, l), -EBADMSG);

	/* FORWARD: exactly eight bytes, a port, a zero reserved word. */
	n = raw_open(buf, CHAN_OPEN_FORWARD, 80, 0, 0, "", 0);
	assert_int_equal(open_decode(buf, n), 0);
	for (size_t l = 4; l < 8; l++)
		assert_int_equal(open_decode(buf, l), -EBADMSG);
	assert_int_equal(open_decode(buf, 9), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_FORWARD, 0, 0, 0, "", 0);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_FORWARD, 80, 1, 0, "", 0);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
	n = raw_open(buf, CHAN_OPEN_FORWARD, 80, 0, 1, "", 0);
	assert_int_equal(open_decode(buf, n), -EBADMSG);
}

static void
test_open_encode_rejects(void **state)
{
	struct chan_open o;
	uint8_t buf[300];
	char big[300];

	(void)state;
	o = (struct chan_open){ .type = CHAN_OPEN_CONNECT, .port = 0,
	    .addr_kind = CHAN_ADDR_NAME, .name = "a.b", .name_len = 3 };
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
	o.port = 80;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), 11);
	o.addr_kind = 5;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
	o.addr_kind = CHAN_ADDR_NAME;
	o.name = "A.b";
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
	o.name = "";
	o.name_len = 0;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
	memset(big, 'a', sizeof(big));
	for (size_t i = 1; i < sizeof(big); i += 2)
		big[i] = '.';
	o.name = big;
	o.name_len = CHAN_MAX_NAME;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o),
	    8 + CHAN_MAX_NAME);
	o.name_len = CHAN_MAX_NAME + 1;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);

	/* What the decoder refuses is not sent either. */
	o = (struct chan_open){ .type = CHAN_OPEN_DNS, .qtype = 0,
	    .name = "a.b", .name_len = 3 };
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
	o.qtype = 1;		/* A */
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), 11);
	o.name = "a-";
	o.name_len = 2;
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);

	o = (struct chan_open){ .type = CHAN_OPEN_FORWARD, .port = 0 };
	assert_int_equal(chan_open_encode(buf, sizeof(buf), &o), -EINVAL);
}

/* Everything encoded decodes to the same, for random valid opens. */
static void
test_open_round_trip_random(void **state)
{
	static const char alpha[] = "abcxyz0189-_.";
	char name[CHAN_MAX_NAME];
	uint8_t buf[300];
	int nok = 0;

	(void)state;
	rng_state = 0x0b5e55ed;
	for (int i = 0; i < 50000; i++) {
		struct chan_open in = { .type = (uint16_t)(1 + rng() % 3),
		    .port = (uint16_t)rng(), .qtype = (uint16_t)rng(),
		    .addr_kind = rng() % 2 ? CHAN_ADDR_IPV4 : CHAN_ADDR_NAME };
		struct chan_open out;
		uint32_t v = rng();
		long n;

		memcpy(in.ipv4, &v, 4);
		in.name_len = 1 + rng() % 20;
		for (uint32_t j = 0; j < in.name_len; j++)
			name[j] = alpha[rng() % (sizeof(alpha) - 1)];
		in.name = name;
		n = chan_open_encode(buf, sizeof(buf), &in);
		if (n < 0) {
			/* Only for the reasons the decoder would refuse. */
			assert_int_equal(n, -EINVAL);
			assert_true(chan_name_check(name, in.name_len) < 0 ||
			    in.port == 0 || in.qtype == 0);
			continue;
		}
		nok++;
		assert_int_equal(chan_open_decode(buf, (size_t)n, &out), 0);
		assert_int_equal(out.type, in.type);
		assert_int_equal(out.unknown, 0);
		switch (in.type) {
		case CHAN_OPEN_CONNECT:
			assert_int_equal(out.port, in.port);
			assert_int_equal(out.addr_kind, in.addr_kind);
			if (in.addr_kind == CHAN_ADDR_IPV4) {
				assert_memory_equal(out.ipv4, in.ipv4, 4);
				break;
			}
			/* FALLTHROUGH */
		case CHAN_OPEN_DNS:
			if (in.type == CHAN_OPEN_DNS)
				assert_int_equal(out.qtype, in.qtype);
			assert_int_equal(out.name_len, in.name_len);
			assert_memory_equal(out.name, name, in.name_len);
			break;
		case CHAN_OPEN_FORWARD:
			assert_int_equal(out.port, in.port);
			break;
		}
	}
	assert_true(nok > 10000);
}

static void
test_name_check(void **state)
{
	static const char *const good[] = {
		"a", "example.com", "a-b.c", "0.1.2.3", "xn--bcher-kva.de",
		"a_b.example",		/* SRV-style labels pass */
		"1a-2b.3c",
	};
	static const char *const badv[] = {
		"Example.com", "EXAMPLE", ".a", "a.", "a..b", "-a", "a-",
		"a.-b", "a-.b", "a b", "a*b", "a/b", "a:b", "*.a",
		"caf\xc3\xa9", "a\tb", "..", ".",
	};
	char buf[300];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (chan_name_check(good[i], strlen(good[i])) != 0)
			fail_msg("\"%s\" refused", good[i]);
	for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
		if (chan_name_check(badv[i], strlen(badv[i])) != -EBADMSG)
			fail_msg("\"%s\" accepted", badv[i]);
	assert_int_equal(chan_name_check("", 0), -EBADMSG);
	/* Only len bytes count: what follows does not spoil the name, a NUL
	 * inside it does. */
	assert_int_equal(chan_name_check("ab.c!!", 4), 0);
	assert_int_equal(chan_name_check("ab\0c", 4), -EBADMSG);
	/* Label of 63, name of 253; one more of either is too many. */
	memset(buf, 'a', 64);
	assert_int_equal(chan_name_check(buf, 63), 0);
	assert_int_equal(chan_name_check(buf, 64), -EBADMSG);
	memcpy(buf + 63, ".b", 2);
	assert_int_equal(chan_name_check(buf, 65), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = i % 2 ? '.' : 'z';
	assert_int_equal(chan_name_check(buf, 253), 0);
	assert_int_equal(chan_name_check(buf, 255), -EBADMSG);
	assert_int_equal(chan_name_check(buf, 254), -EBADMSG);
}

/* ---- RESET and NET_DONE ---- */

static void
test_status(void **state)
{
	static const uint8_t want[] = { 111, 0, 0, 0, 'n', 'o', 'p', 'e' };
	static char big[CHAN_MAX_MSG + 50];
	static uint8_t buf[8 + CHAN_MAX_MSG + 64];
	struct chan_status in = { .code = 111, .msg = "nope", .msg_len = 4 };
	struct chan_status out;
	int n;

	(void)state;
	memset(buf, 0xaa, 16);
	n = chan_status_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(buf[n], 0xaa);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_status_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.code, 111);
	assert_int_equal(out.msg_len, 4);
	assert_ptr_equal(out.msg, (const char *)buf + 4);
	assert_int_equal(chan_status_encode(buf, 7, &in), -EMSGSIZE);
	assert_int_equal(chan_status_encode(buf, 8, &in), 8);

	/* Success, no message; msg may then be NULL. */
	in = (struct chan_status){ .code = 0 };
	assert_int_equal(chan_status_encode(buf, 4, &in), 4);
	assert_int_equal(chan_status_encode(buf, 3, &in), -EMSGSIZE);
	assert_int_equal(chan_status_decode(buf, 4, &out), 0);
	assert_int_equal(out.code, 0);
	assert_int_equal(out.msg_len, 0);

	/* Codes are 0 or an errno value: 4095 at most, both ways. */
	in.code = 4095;
	assert_int_equal(chan_status_encode(buf, sizeof(buf), &in), 4);
	assert_int_equal(chan_status_decode(buf, 4, &out), 0);
	assert_int_equal(out.code, 4095);
	put_le32(buf, 4096);
	assert_int_equal(chan_status_decode(buf, 4, &out), -EBADMSG);
	put_le32(buf, (uint32_t)-ECONNREFUSED);
	assert_int_equal(chan_status_decode(buf, 4, &out), -EBADMSG);
	in.code = 4096;
	assert_int_equal(chan_status_encode(buf, sizeof(buf), &in), -EINVAL);
	in.code = (uint32_t)-ECONNREFUSED;
	assert_int_equal(chan_status_encode(buf, sizeof(buf), &in), -EINVAL);

	/* Too short for a code. */
	for (size_t l = 0; l < 4; l++)
		assert_int_equal(chan_status_decode(buf, l, &out), -EBADMSG);

	/* The message is cut to CHAN_MAX_MSG; no more is accepted. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	in = (struct chan_status){ .code = 13, .msg = big,
	    .msg_len = sizeof(big) };
	n = chan_status_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, 4 + CHAN_MAX_MSG);
	assert_int_equal(chan_status_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.msg_len, CHAN_MAX_MSG);
	assert_memory_equal(out.msg, big, CHAN_MAX_MSG);
	assert_int_equal(chan_status_encode(buf, 4 + CHAN_MAX_MSG, &in),
	    4 + CHAN_MAX_MSG);
	assert_int_equal(chan_status_encode(buf, 3 + CHAN_MAX_MSG, &in),
	    -EMSGSIZE);
	assert_int_equal(chan_status_decode(buf, 5 + CHAN_MAX_MSG, &out),
	    -EBADMSG);
}

/* ---- NET ---- */

static uint32_t
be32(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint32_t v;
	uint8_t p[4] = { a, b, c, d };

	memcpy(&v, p, 4);	/* network order, as struct chan_net holds */
	return v;
}

static void
test_net_modes(void **state)
{
	static const uint8_t want_nat[] = {
		CHAN_NET_NAT, 24, 0, 0,
		10, 0, 2, 15, 10, 0, 2, 2, 10, 0, 2, 3,
	};
	static const uint8_t want_allow[] = {
		CHAN_NET_ALLOW, 0, 2, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		203, 0, 113, 0, 24, 0, 0, 0,
		198, 51, 100, 7, 32, 0, 0, 0,
	};
	static struct chan_net in, out;
	uint8_t buf[CHAN_NET_FIXED + 8 * CHAN_NET_MAX_ROUTES + 8];
	long n;

	(void)state;
	/* none: sixteen bytes, mostly zero. */
	memset(&in, 0, sizeof(in));
	memset(buf, 0xaa, sizeof(buf));
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, CHAN_NET_FIXED);
	for (int i = 0; i < CHAN_NET_FIXED; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[CHAN_NET_FIXED], 0xaa);
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.mode, CHAN_NET_NONE);
	assert_int_equal(out.nroutes, 0);

	/* nat: the NIC's address, gateway and resolver. */
	in.mode = CHAN_NET_NAT;
	in.prefix = 24;
	in.addr = be32(10, 0, 2, 15);
	in.gateway = be32(10, 0, 2, 2);
	in.dns = be32(10, 0, 2, 3);
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, sizeof(want_nat));
	assert_memory_equal(buf, want_nat, sizeof(want_nat));
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.mode, CHAN_NET_NAT);
	assert_int_equal(out.prefix, 24);
	assert_int_equal(out.addr, in.addr);
	assert_int_equal(out.gateway, in.gateway);
	assert_int_equal(out.dns, in.dns);
	assert_int_equal(out.nroutes, 0);
	assert_int_equal(chan_net_encode(buf, CHAN_NET_FIXED - 1, &in),
	    -EMSGSIZE);

	/* allow: the policy's ranges as routes. */
	memset(&in, 0, sizeof(in));
	in.mode = CHAN_NET_ALLOW;
	in.nroutes = 2;
	in.routes[0] = (struct chan_route){ be32(203, 0, 113, 0), 24 };
	in.routes[1] = (struct chan_route){ be32(198, 51, 100, 7), 32 };
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, sizeof(want_allow));
	assert_memory_equal(buf, want_allow, sizeof(want_allow));
	memset(&out, 0xee, sizeof(out));
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.mode, CHAN_NET_ALLOW);
	assert_int_equal(out.nroutes, 2);
	assert_int_equal(out.routes[0].net, in.routes[0].net);
	assert_int_equal(out.routes[0].prefix, 24);
	assert_int_equal(out.routes[1].net, in.routes[1].net);
	assert_int_equal(out.routes[1].prefix, 32);
	assert_int_equal(chan_net_encode(buf, sizeof(want_allow) - 1, &in),
	    -EMSGSIZE);

	/* /0 is the whole space, and all the routes there may be. */
	in.nroutes = CHAN_NET_MAX_ROUTES;
	for (int i = 0; i < CHAN_NET_MAX_ROUTES; i++)
		in.routes[i] = (struct chan_route){ be32(10, (uint8_t)i, 0, 0),
		    16 };
	in.routes[0] = (struct chan_route){ 0, 0 };
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, CHAN_NET_FIXED + 8 * CHAN_NET_MAX_ROUTES);
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.nroutes, CHAN_NET_MAX_ROUTES);
	assert_int_equal(out.routes[0].prefix, 0);
	assert_int_equal(out.routes[255].net, be32(10, 255, 0, 0));
	in.nroutes = CHAN_NET_MAX_ROUTES + 1;
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
}

static void
test_net_rejects(void **state)
{
	static struct chan_net in, out;
	uint8_t buf[CHAN_NET_FIXED + 8 * 4];
	long n;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.mode = CHAN_NET_ALLOW;
	in.nroutes = 1;
	in.routes[0] = (struct chan_route){ be32(203, 0, 113, 0), 24 };
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(n, CHAN_NET_FIXED + 8);
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);

	/* Bits past the prefix, either way. */
	buf[CHAN_NET_FIXED + 3] = 5;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[CHAN_NET_FIXED + 3] = 0;
	buf[CHAN_NET_FIXED + 4] = 23;	/* 203.0.113.0/23: bit 8 set */
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[CHAN_NET_FIXED + 4] = 33;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[CHAN_NET_FIXED + 4] = 0;	/* /0 with a network */
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[CHAN_NET_FIXED + 4] = 24;
	in.routes[0] = (struct chan_route){ be32(203, 0, 113, 5), 24 };
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
	in.routes[0] = (struct chan_route){ be32(203, 0, 113, 0), 33 };
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
	in.routes[0] = (struct chan_route){ be32(0, 0, 0, 1), 0 };
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
	in.routes[0] = (struct chan_route){ be32(203, 0, 113, 0), 24 };
	n = chan_net_encode(buf, sizeof(buf), &in);

	/* A route's reserved bytes. */
	for (int i = 5; i < 8; i++) {
		buf[CHAN_NET_FIXED + i] = 1;
		assert_int_equal(chan_net_decode(buf, (size_t)n, &out),
		    -EBADMSG);
		buf[CHAN_NET_FIXED + i] = 0;
	}
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);

	/* nroutes and the length must agree. */
	assert_int_equal(chan_net_decode(buf, (size_t)n - 1, &out), -EBADMSG);
	assert_int_equal(chan_net_decode(buf, (size_t)n + 1, &out), -EBADMSG);
	assert_int_equal(chan_net_decode(buf, CHAN_NET_FIXED, &out),
	    -EBADMSG);
	buf[2] = 2;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[2] = 0;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[2] = 0;
	buf[3] = 1;		/* 256: within the limit, not the length */
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[2] = 1;		/* 257 */
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[2] = 0xff;
	buf[3] = 0xff;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[2] = 1;
	buf[3] = 0;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);

	/* Routes only with "allow". */
	buf[0] = CHAN_NET_NONE;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[0] = CHAN_NET_NAT;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);
	buf[0] = CHAN_NET_ALLOW;
	in.mode = CHAN_NET_NAT;
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
	in.mode = CHAN_NET_NONE;
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);

	/* Unknown modes; an interface prefix past 32. */
	in.nroutes = 0;
	for (unsigned m = 3; m < 256; m += 50) {
		in.mode = (uint8_t)m;
		assert_int_equal(chan_net_encode(buf, sizeof(buf), &in),
		    -EINVAL);
		buf[0] = (uint8_t)m;
		buf[2] = 0;
		assert_int_equal(chan_net_decode(buf, CHAN_NET_FIXED, &out),
		    -EBADMSG);
	}
	in.mode = CHAN_NET_NAT;
	in.prefix = 33;
	assert_int_equal(chan_net_encode(buf, sizeof(buf), &in), -EINVAL);
	in.prefix = 32;
	n = chan_net_encode(buf, sizeof(buf), &in);
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), 0);
	buf[1] = 33;
	assert_int_equal(chan_net_decode(buf, (size_t)n, &out), -EBADMSG);

	/* Too short for the fixed part. */
	for (size_t l = 0; l < CHAN_NET_FIXED; l++)
		assert_int_equal(chan_net_decode(buf, l, &out), -EBADMSG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_connect),
		cmocka_unit_test(test_open_dns_forward),
		cmocka_unit_test(test_open_unknown),
		cmocka_unit_test(test_open_decode_rejects),
		cmocka_unit_test(test_open_encode_rejects),
		cmocka_unit_test(test_open_round_trip_random),
		cmocka_unit_test(test_name_check),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_net_modes),
		cmocka_unit_test(test_net_rejects),
	};

	return cmocka_run_group_tests_name("chanstream", tests, NULL, NULL);
}
