/*
 * test_dnsmsg.c — the DNS queries the agent's resolver stub reads and the
 * answers it writes. Queries are built byte by byte here, or are real ones
 * captured from busybox nslookup and glibc; answers are taken apart again
 * field by field.
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

#include "dnsmsg.h"

/* busybox 1.35 nslookup example.com: the A question (id 0x2741, RD). */
static const uint8_t busybox_a[] = {
	0x27, 0x41, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x07, 'e', 'x', 'a',
	'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm',
	0x00, 0x00, 0x01, 0x00, 0x01,
};
/* ... and its AAAA question, sent at the same time. */
static const uint8_t busybox_aaaa[] = {
	0x40, 0x48, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x07, 'e', 'x', 'a',
	'm', 'p', 'l', 'e', 0x03, 'c', 'o', 'm',
	0x00, 0x00, 0x1c, 0x00, 0x01,
};
/* glibc 2.36 getent ahostsv4 WWW.Example.com with "options edns0": the
 * name as typed, and an OPT record (UDP size 1200) after the question. */
static const uint8_t glibc_edns[] = {
	0x44, 0x28, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x01, 0x03, 'W', 'W', 'W',
	0x07, 'E', 'x', 'a', 'm', 'p', 'l', 'e',
	0x03, 'c', 'o', 'm', 0x00, 0x00, 0x01, 0x00,
	0x01, 0x00, 0x00, 0x29, 0x04, 0xb0, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00,
};
#define GLIBC_QLEN	(1 + 3 + 1 + 7 + 1 + 3 + 1 + 4)

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A header: id, flags, and the four counts. */
static size_t
hdr(uint8_t *buf, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
    uint16_t ns, uint16_t ar)
{
	wr16(buf, id);
	wr16(buf + 2, flags);
	wr16(buf + 4, qd);
	wr16(buf + 6, an);
	wr16(buf + 8, ns);
	wr16(buf + 10, ar);
	return DNS_HDR_LEN;
}

/* A dotted name in wire form ("" is the root). */
static size_t
wire_name(uint8_t *out, const char *name)
{
	size_t o = 0;

	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		out[o++] = (uint8_t)l;
		memcpy(out + o, name, l);
		o += l;
		name += l + (dot != NULL);
	}
	out[o++] = 0;
	return o;
}

/* A query for name with flags RD and the given ARCOUNT, no OPT bytes. */
static size_t
query(uint8_t *buf, uint16_t id, const char *name, uint16_t qtype,
    uint16_t qclass)
{
	size_t n = hdr(buf, id, 0x0100, 1, 0, 0, 0);

	n += wire_name(buf + n, name);
	wr16(buf + n, qtype);
	wr16(buf + n + 2, qclass);
	return n + 4;
}

static void
parse_ok(const uint8_t *p, size_t len, struct dns_query *q)
{
	int r;

	memset(q, 0xee, sizeof(*q));
	if ((r = dnsmsg_parse_query(p, len, q)) != 0)
		fail_msg("query of %zu bytes refused: %d", len, r);
}

/* ---- reading queries ---- */

static void
test_parse_built(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n;

	(void)state;
	n = query(buf, 0xbeef, "example.com", DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);
	assert_int_equal(q.id, 0xbeef);
	assert_int_equal(q.rd, 1);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_string_equal(q.name, "example.com");
	/* The question points into the message, name through class. */
	assert_ptr_equal(q.question, buf + DNS_HDR_LEN);
	assert_int_equal(q.question_len, 13 + 4);
	assert_int_equal(n, DNS_HDR_LEN + q.question_len);

	/* Without RD; another type and class go through as they are. */
	n = query(buf, 1, "a.b.c", DNS_TYPE_AAAA, 3);
	buf[2] = 0;
	parse_ok(buf, n, &q);
	assert_int_equal(q.rd, 0);
	assert_int_equal(q.qtype, DNS_TYPE_AAAA);
	assert_int_equal(q.qclass, 3);
	assert_string_equal(q.name, "a.b.c");

	/* Mixed case reads lower case; the question keeps what came. */
	n = query(buf, 2, "WwW.ExAmPlE.CoM", DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, "www.example.com");
	assert_memory_equal(q.question, "\3WwW\7ExAmPlE\3CoM", 16);

	/* The root. */
	n = query(buf, 3, "", DNS_TYPE_A, DNS_CLASS_IN);
	assert_int_equal(n, DNS_HDR_LEN + 5);
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, "");
	assert_int_equal(q.question_len, 5);

	/* Flags that do not matter to the stub: AA, TC, Z, AD, CD, and an
	 * rcode in a query. */
	n = query(buf, 4, "x.y", DNS_TYPE_A, DNS_CLASS_IN);
	wr16(buf + 2, 0x0100 | 0x0400 | 0x0200 | 0x0040 | 0x0020 | 0x0010 |
	    0x0005);
	parse_ok(buf, n, &q);
	assert_int_equal(q.rd, 1);
	assert_string_equal(q.name, "x.y");
}

static void
test_parse_captured(void **state)
{
	struct dns_query q;

	(void)state;
	parse_ok(busybox_a, sizeof(busybox_a), &q);
	assert_int_equal(q.id, 0x2741);
	assert_int_equal(q.rd, 1);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_string_equal(q.name, "example.com");
	assert_int_equal(q.question_len, sizeof(busybox_a) - DNS_HDR_LEN);

	parse_ok(busybox_aaaa, sizeof(busybox_aaaa), &q);
	assert_int_equal(q.id, 0x4048);
	assert_int_equal(q.qtype, DNS_TYPE_AAAA);
	assert_string_equal(q.name, "example.com");

	parse_ok(glibc_edns, sizeof(glibc_edns), &q);
	assert_int_equal(q.id, 0x4428);
	assert_int_equal(q.rd, 1);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_string_equal(q.name, "www.example.com");
	/* The question ends before the OPT record. */
	assert_int_equal(q.question_len, GLIBC_QLEN);
	assert_ptr_equal(q.question, glibc_edns + DNS_HDR_LEN);
}

/* Every prefix of a good query: too short is -EBADMSG, never an over-read
 * (ASan watches), and from the end of the question on it reads. */
static void
truncations(const uint8_t *msg, size_t len, size_t qend)
{
	struct dns_query q;
	uint16_t id;
	uint8_t *copy;

	for (size_t n = 0; n <= len; n++) {
		/* An exact-size heap copy, so a read past n is caught. */
		copy = malloc(n > 0 ? n : 1);
		assert_non_null(copy);
		memcpy(copy, msg, n);
		if (n < qend) {
			if (dnsmsg_parse_query(copy, n, &q) != -EBADMSG)
				fail_msg("prefix of %zu (< %zu) read", n, qend);
		} else {
			assert_int_equal(dnsmsg_parse_query(copy, n, &q), 0);
		}
		if (n < DNS_HDR_LEN) {
			assert_int_equal(dnsmsg_header_id(copy, n, &id),
			    -EBADMSG);
		} else {
			assert_int_equal(dnsmsg_header_id(copy, n, &id), 0);
			assert_int_equal(id, rd16(msg));
		}
		free(copy);
	}
}

static void
test_parse_truncated(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	uint16_t id;
	size_t n;

	(void)state;
	truncations(busybox_a, sizeof(busybox_a), sizeof(busybox_a));
	truncations(glibc_edns, sizeof(glibc_edns),
	    DNS_HDR_LEN + GLIBC_QLEN);
	n = query(buf, 9, "", DNS_TYPE_A, DNS_CLASS_IN);
	truncations(buf, n, n);
	n = query(buf, 9, "a.bb.ccc.dddd", DNS_TYPE_A, DNS_CLASS_IN);
	truncations(buf, n, n);
	assert_int_equal(dnsmsg_parse_query(NULL, 0, &q), -EBADMSG);
	assert_int_equal(dnsmsg_header_id(NULL, 0, &id), -EBADMSG);
}

static void
test_parse_header(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n;

	(void)state;
	n = query(buf, 0x1234, "example.com", DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);

	/* A response is not a query; the id and RD are still read, for a
	 * FORMERR answer. */
	wr16(buf + 2, 0x8100);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	assert_int_equal(q.id, 0x1234);
	assert_int_equal(q.rd, 1);
	/* Another opcode: IQUERY, STATUS, NOTIFY, UPDATE, 15. */
	for (unsigned op = 1; op < 16; op++) {
		wr16(buf + 2, (uint16_t)(op << 11 | 0x0100));
		assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EOPNOTSUPP);
		assert_int_equal(q.id, 0x1234);
	}
	/* A response with another opcode is still not a query. */
	wr16(buf + 2, 0x8000 | 5 << 11);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 2, 0x0100);
	parse_ok(buf, n, &q);

	/* Counts: one question, no answers or authority, at most one
	 * additional record. */
	wr16(buf + 4, 0);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 4, 2);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 4, 0xffff);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 4, 1);
	wr16(buf + 6, 1);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 6, 0);
	wr16(buf + 8, 1);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 8, 0);
	wr16(buf + 10, 2);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	wr16(buf + 10, 0x100);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	/* A refused query leaves no name or question behind. */
	assert_string_equal(q.name, "");
	assert_null(q.question);
	wr16(buf + 10, 1);
	parse_ok(buf, n, &q);
	wr16(buf + 10, 0);
	parse_ok(buf, n, &q);
}

static void
test_parse_pointers(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n;

	(void)state;
	/* The whole name a pointer to the header. */
	n = hdr(buf, 1, 0x0100, 1, 0, 0, 0);
	buf[n++] = 0xc0;
	buf[n++] = 0x0c;
	wr16(buf + n, DNS_TYPE_A);
	wr16(buf + n + 2, DNS_CLASS_IN);
	n += 4;
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);

	/* A label, then a pointer back to it (a loop if followed). */
	n = hdr(buf, 1, 0x0100, 1, 0, 0, 0);
	buf[n++] = 1;
	buf[n++] = 'a';
	buf[n++] = 0xc0;
	buf[n++] = 0x0c;
	wr16(buf + n, DNS_TYPE_A);
	wr16(buf + n + 2, DNS_CLASS_IN);
	n += 4;
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	assert_string_equal(q.name, "");

	/* A pointer with any offset, and the extended label types 01 and
	 * 10 (RFC 6891 retired them). */
	for (unsigned b = 0x40; b < 0x100; b++) {
		n = hdr(buf, 1, 0x0100, 1, 0, 0, 0);
		buf[n++] = (uint8_t)b;
		memset(buf + n, 'a', 300);
		buf[n + 255] = 0;
		wr16(buf + n + 256, DNS_TYPE_A);
		wr16(buf + n + 258, DNS_CLASS_IN);
		n += 260;
		assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	}
}

static void
test_parse_labels(void **state)
{
	char name[300], label[64];
	uint8_t buf[600];
	struct dns_query q;
	size_t n;

	(void)state;
	/* 63 is the longest label. */
	memset(label, 'x', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.com", label);
	n = query(buf, 1, name, DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, name);

	/* 253 in dotted form (255 bytes on the wire, RFC 1035's limit):
	 * three labels of 63 and one of 61; then 254. */
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label, label, label,
	    label);
	assert_int_equal(strlen(name), 253);
	n = query(buf, 1, name, DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, name);
	assert_int_equal(q.question_len, 255 + 4);
	snprintf(name, sizeof(name), "%s.%s.%s.%.62s", label, label, label,
	    label);
	assert_int_equal(strlen(name), 254);
	n = query(buf, 1, name, DNS_TYPE_A, DNS_CLASS_IN);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	/* ... and many short labels past the limit. */
	for (size_t i = 0; i < 255; i++)
		name[i] = i % 2 ? '.' : 'a';
	name[255] = '\0';
	n = query(buf, 1, name, DNS_TYPE_A, DNS_CLASS_IN);
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	name[253] = '\0';
	n = query(buf, 1, name, DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(buf, n, &q);
	assert_int_equal(strlen(q.name), 253);

	/* A '.' or a NUL inside a label would change the dotted name. */
	n = query(buf, 1, "abc.com", DNS_TYPE_A, DNS_CLASS_IN);
	buf[DNS_HDR_LEN + 2] = '.';
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	buf[DNS_HDR_LEN + 2] = '\0';
	assert_int_equal(dnsmsg_parse_query(buf, n, &q), -EBADMSG);
	/* Other bytes pass as they are (the caller checks the name). */
	buf[DNS_HDR_LEN + 2] = ' ';
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, "a c.com");
	buf[DNS_HDR_LEN + 2] = (uint8_t)0xc0;
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, "a\xc0" "c.com");

	/* A label running past the end, a name with no end. */
	n = hdr(buf, 1, 0x0100, 1, 0, 0, 0);
	buf[n++] = 10;
	memcpy(buf + n, "abc", 3);
	assert_int_equal(dnsmsg_parse_query(buf, n + 3, &q), -EBADMSG);
	n = hdr(buf, 1, 0x0100, 1, 0, 0, 0);
	buf[n++] = 3;
	memcpy(buf + n, "abc", 3);
	assert_int_equal(dnsmsg_parse_query(buf, n + 3, &q), -EBADMSG);
	/* The name ends, type and class do not fit. */
	n = query(buf, 1, "abc", DNS_TYPE_A, DNS_CLASS_IN);
	for (size_t k = 1; k <= 4; k++)
		assert_int_equal(dnsmsg_parse_query(buf, n - k, &q), -EBADMSG);
}

static void
test_parse_edns(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n, qend;

	(void)state;
	/* A query with an OPT record, as dig sends it (DO bit, a cookie
	 * option). */
	qend = query(buf, 77, "example.org", DNS_TYPE_A, DNS_CLASS_IN);
	wr16(buf + 10, 1);
	n = qend;
	buf[n++] = 0;			/* root */
	wr16(buf + n, 41);		/* OPT */
	wr16(buf + n + 2, 1232);	/* UDP payload size */
	buf[n + 4] = 0;			/* extended rcode */
	buf[n + 5] = 0;			/* version */
	wr16(buf + n + 6, 0x8000);	/* DO */
	wr16(buf + n + 8, 12);		/* rdlength */
	n += 10;
	wr16(buf + n, 10);		/* COOKIE */
	wr16(buf + n + 2, 8);
	memcpy(buf + n + 4, "\1\2\3\4\5\6\7\10", 8);
	n += 12;
	parse_ok(buf, n, &q);
	assert_string_equal(q.name, "example.org");
	assert_int_equal(q.question_len, qend - DNS_HDR_LEN);

	/* Nothing after the question is read: an OPT record cut short, or
	 * not an OPT record, or nothing at all although ARCOUNT says 1. */
	for (size_t k = qend; k <= n; k++)
		parse_ok(buf, k, &q);
	memset(buf + qend, 0xff, n - qend);
	parse_ok(buf, n, &q);
	/* Stray bytes after the question without an additional record. */
	wr16(buf + 10, 0);
	parse_ok(buf, n, &q);
	assert_int_equal(q.question_len, qend - DNS_HDR_LEN);
}

/* Random bytes and random damage to good queries: any outcome but a
 * crash or an over-read, and what parses is self-consistent. */
static void
test_parse_random(void **state)
{
	uint8_t buf[300];
	struct dns_query q;
	int nok = 0;

	(void)state;
	rng_state = 0xd15ea5e;
	for (int i = 0; i < 200000; i++) {
		size_t n;
		int r;

		if (i % 2) {
			n = rng() % sizeof(buf);
			for (size_t j = 0; j < n; j++)
				buf[j] = (uint8_t)rng();
			/* Mostly plausible headers, so the name gets read. */
			if (n >= DNS_HDR_LEN && i % 4 == 1)
				hdr(buf, 1, 0x0100, 1, 0, 0, 0);
		} else {
			n = query(buf, (uint16_t)i, "www.example.com",
			    DNS_TYPE_A, DNS_CLASS_IN);
			for (int k = 0; k < 3; k++)
				buf[rng() % n] = (uint8_t)rng();
			n -= rng() % 4 == 0 ? rng() % n : 0;
		}
		r = dnsmsg_parse_query(buf, n, &q);
		assert_true(r == 0 || r == -EBADMSG || r == -EOPNOTSUPP);
		if (r != 0)
			continue;
		nok++;
		assert_ptr_equal(q.question, buf + DNS_HDR_LEN);
		assert_true(DNS_HDR_LEN + q.question_len <= n);
		assert_true(strlen(q.name) <= DNS_MAX_NAME);
		/* Lower case, and dots only between labels. */
		for (const char *c = q.name; *c != '\0'; c++) {
			assert_false(*c >= 'A' && *c <= 'Z');
			if (*c == '.')
				assert_true(c > q.name && c[-1] != '.' &&
				    c[1] != '\0');
		}
	}
	assert_true(nok > 1000);
}

/* ---- writing answers ---- */

/* Takes an answer apart and checks its header. */
static void
check_header(const uint8_t *a, uint16_t id, int rd, int rcode,
    uint16_t qd, uint16_t an)
{
	uint16_t flags = rd16(a + 2);

	assert_int_equal(rd16(a), id);
	assert_int_equal(flags >> 15, 1);		/* QR */
	assert_int_equal((flags >> 11) & 0xf, 0);	/* opcode */
	assert_int_equal((flags >> 10) & 1, 0);		/* AA */
	assert_int_equal((flags >> 9) & 1, 0);		/* TC */
	assert_int_equal((flags >> 8) & 1, rd);		/* RD */
	assert_int_equal((flags >> 7) & 1, 1);		/* RA */
	assert_int_equal((flags >> 4) & 7, 0);		/* Z, AD, CD */
	assert_int_equal(flags & 0xf, rcode);
	assert_int_equal(rd16(a + 4), qd);
	assert_int_equal(rd16(a + 6), an);
	assert_int_equal(rd16(a + 8), 0);
	assert_int_equal(rd16(a + 10), 0);
}

static void
test_answer_a(void **state)
{
	static const uint8_t addr[4] = { 127, 64, 0, 9 };
	uint8_t out[DNS_MAX_UDP];
	struct dns_query q;
	const uint8_t *rr;
	long n;

	(void)state;
	parse_ok(busybox_a, sizeof(busybox_a), &q);
	memset(out, 0xaa, sizeof(out));
	n = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_NOERROR, addr, 5);
	assert_int_equal(n, sizeof(busybox_a) + 16);
	check_header(out, 0x2741, 1, DNS_RCODE_NOERROR, 1, 1);
	assert_int_equal(rd16(out + 2), 0x8180);
	/* The question as it came. */
	assert_memory_equal(out + DNS_HDR_LEN, busybox_a + DNS_HDR_LEN,
	    q.question_len);
	/* One A record naming the question's name by a pointer to it. */
	rr = out + DNS_HDR_LEN + q.question_len;
	assert_int_equal(rd16(rr), 0xc00c);
	assert_int_equal(rd16(rr + 2), DNS_TYPE_A);
	assert_int_equal(rd16(rr + 4), DNS_CLASS_IN);
	assert_int_equal(rd32(rr + 6), 5);
	assert_int_equal(rd16(rr + 10), 4);
	assert_memory_equal(rr + 12, addr, 4);
	assert_int_equal(out[n], 0xaa);		/* nothing past the end */

	/* The answer reads back: it is not a query, but its header is. */
	{
		struct dns_query back;
		uint16_t id;

		assert_int_equal(dnsmsg_header_id(out, (size_t)n, &id), 0);
		assert_int_equal(id, 0x2741);
		assert_int_equal(dnsmsg_parse_query(out, (size_t)n, &back),
		    -EBADMSG);
	}

	/* glibc's: mixed case echoed, no OPT record in the answer, RD
	 * echoed as 0 when not asked. */
	parse_ok(glibc_edns, sizeof(glibc_edns), &q);
	q.rd = 0;
	n = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_NOERROR, addr,
	    0xffffffff);
	assert_int_equal(n, DNS_HDR_LEN + GLIBC_QLEN + 16);
	check_header(out, 0x4428, 0, 0, 1, 1);
	assert_int_equal(rd16(out + 2), 0x8080);
	assert_memory_equal(out + DNS_HDR_LEN, "\3WWW\7Example\3com", 17);
	rr = out + DNS_HDR_LEN + GLIBC_QLEN;
	assert_int_equal(rd16(rr), 0xc00c);
	/* RFC 2181: a TTL has its top bit clear. */
	assert_int_equal(rd32(rr + 6), 0x7fffffff);
	n = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 0);
	assert_int_equal(rd32(out + DNS_HDR_LEN + GLIBC_QLEN + 6), 0);
	n = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 0x7fffffff);
	assert_int_equal(rd32(out + DNS_HDR_LEN + GLIBC_QLEN + 6),
	    0x7fffffff);
}

/* Follows the answer's A record name back to the question: what a
 * resolver does with the 0xc00c pointer. */
static void
test_answer_pointer_resolves(void **state)
{
	static const uint8_t addr[4] = { 203, 0, 113, 9 };
	uint8_t in[512], out[DNS_MAX_UDP];
	struct dns_query q;
	char name[DNS_MAX_NAME + 2] = "";
	size_t n, off, o = 0;
	long len;

	(void)state;
	n = query(in, 5, "Mail.Example.NET", DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(in, n, &q);
	len = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 60);
	assert_true(len > 0);
	off = DNS_HDR_LEN + q.question_len;
	assert_int_equal(out[off] & 0xc0, 0xc0);
	off = (size_t)(rd16(out + off) & 0x3fff);
	while (out[off] != 0) {
		assert_true((out[off] & 0xc0) == 0);
		if (o > 0)
			name[o++] = '.';
		memcpy(name + o, out + off + 1, out[off]);
		o += out[off];
		off += 1 + out[off];
	}
	name[o] = '\0';
	assert_string_equal(name, "Mail.Example.NET");
}

static void
test_answer_no_record(void **state)
{
	static const uint8_t addr[4] = { 127, 64, 0, 1 };
	uint8_t in[512], out[DNS_MAX_UDP];
	struct dns_query q;
	size_t n;
	long len;

	(void)state;
	/* An address for an AAAA question: no record, NOERROR (no data). */
	parse_ok(busybox_aaaa, sizeof(busybox_aaaa), &q);
	len = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_NOERROR, addr,
	    30);
	assert_int_equal(len, sizeof(busybox_aaaa));
	check_header(out, 0x4048, 1, DNS_RCODE_NOERROR, 1, 0);
	assert_memory_equal(out + DNS_HDR_LEN, busybox_aaaa + DNS_HDR_LEN,
	    q.question_len);

	/* No address. */
	parse_ok(busybox_a, sizeof(busybox_a), &q);
	len = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_NOERROR, NULL,
	    30);
	assert_int_equal(len, sizeof(busybox_a));
	check_header(out, 0x2741, 1, DNS_RCODE_NOERROR, 1, 0);

	/* Any other rcode carries no record, address or not. */
	for (int rc = 1; rc <= 15; rc++) {
		len = dnsmsg_answer(out, sizeof(out), &q, rc, addr, 30);
		assert_int_equal(len, sizeof(busybox_a));
		check_header(out, 0x2741, 1, rc, 1, 0);
	}
	len = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_NXDOMAIN, NULL,
	    0);
	assert_int_equal(rd16(out + 2), 0x8183);
	len = dnsmsg_answer(out, sizeof(out), &q, DNS_RCODE_REFUSED, NULL,
	    0);
	assert_int_equal(rd16(out + 2), 0x8185);

	/* An A question of another class (CHAOS) gets no IN record. */
	n = query(in, 6, "version.bind", DNS_TYPE_A, 3);
	parse_ok(in, n, &q);
	len = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 30);
	assert_int_equal(len, n);
	check_header(out, 6, 1, 0, 1, 0);

	/* A question struct with no question in it: a header alone. */
	memset(&q, 0, sizeof(q));
	q.id = 7;
	q.qtype = DNS_TYPE_A;
	q.qclass = DNS_CLASS_IN;
	len = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 30);
	assert_int_equal(len, DNS_HDR_LEN);
	check_header(out, 7, 0, 0, 0, 0);
}

static void
test_answer_cap(void **state)
{
	static const uint8_t addr[4] = { 1, 2, 3, 4 };
	uint8_t in[600], out[DNS_MAX_UDP];
	char name[300], label[64];
	struct dns_query q;
	size_t n, want;
	long len;

	(void)state;
	parse_ok(busybox_a, sizeof(busybox_a), &q);
	want = sizeof(busybox_a) + 16;
	assert_int_equal(dnsmsg_answer(out, want, &q, 0, addr, 1), want);
	for (size_t cap = 0; cap < want; cap++) {
		memset(out, 0xaa, sizeof(out));
		assert_int_equal(dnsmsg_answer(out, cap, &q, 0, addr, 1),
		    -EMSGSIZE);
		for (size_t i = 0; i < sizeof(out); i++)
			assert_int_equal(out[i], 0xaa);
	}
	/* Without the record, less is needed. */
	assert_int_equal(dnsmsg_answer(out, sizeof(busybox_a), &q,
	    DNS_RCODE_NXDOMAIN, NULL, 0), sizeof(busybox_a));

	/* The longest name still answers within a UDP message. */
	memset(label, 'q', 63);
	label[63] = '\0';
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label, label, label,
	    label);
	n = query(in, 8, name, DNS_TYPE_A, DNS_CLASS_IN);
	parse_ok(in, n, &q);
	assert_int_equal(q.question_len, 255 + 4);
	len = dnsmsg_answer(out, sizeof(out), &q, 0, addr, 1);
	assert_int_equal(len, DNS_HDR_LEN + 259 + 16);
	assert_true(len <= DNS_MAX_UDP);

	/* An rcode that does not fit the header's four bits. */
	assert_int_equal(dnsmsg_answer(out, sizeof(out), &q, 16, NULL, 0),
	    -EINVAL);
	assert_int_equal(dnsmsg_answer(out, sizeof(out), &q, -1, NULL, 0),
	    -EINVAL);
}

static void
test_error(void **state)
{
	uint8_t out[DNS_MAX_UDP];
	uint16_t id;

	(void)state;
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(dnsmsg_error(out, sizeof(out), 0xabcd,
	    DNS_RCODE_FORMERR), DNS_HDR_LEN);
	check_header(out, 0xabcd, 0, DNS_RCODE_FORMERR, 0, 0);
	assert_int_equal(rd16(out + 2), 0x8081);
	assert_int_equal(out[DNS_HDR_LEN], 0xaa);
	assert_int_equal(dnsmsg_error(out, DNS_HDR_LEN, 1, DNS_RCODE_NOTIMP),
	    DNS_HDR_LEN);
	check_header(out, 1, 0, DNS_RCODE_NOTIMP, 0, 0);
	assert_int_equal(rd16(out + 2), 0x8084);
	assert_int_equal(dnsmsg_error(out, DNS_HDR_LEN - 1, 1, 1), -EMSGSIZE);
	assert_int_equal(dnsmsg_error(out, sizeof(out), 1, 16), -EINVAL);
	assert_int_equal(dnsmsg_error(out, sizeof(out), 1, -1), -EINVAL);

	/* The usual path: a message that is no query, answered FORMERR. */
	{
		uint8_t junk[DNS_HDR_LEN + 3] = { 0x12, 0x34, 0x01, 0x00,
		    0x00, 0x01 };
		struct dns_query q;

		assert_int_equal(dnsmsg_parse_query(junk, sizeof(junk), &q),
		    -EBADMSG);
		assert_int_equal(dnsmsg_header_id(junk, sizeof(junk), &id),
		    0);
		assert_int_equal(dnsmsg_error(out, sizeof(out), id,
		    DNS_RCODE_FORMERR), DNS_HDR_LEN);
		assert_int_equal(rd16(out), 0x1234);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_built),
		cmocka_unit_test(test_parse_captured),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_header),
		cmocka_unit_test(test_parse_pointers),
		cmocka_unit_test(test_parse_labels),
		cmocka_unit_test(test_parse_edns),
		cmocka_unit_test(test_parse_random),
		cmocka_unit_test(test_answer_a),
		cmocka_unit_test(test_answer_pointer_resolves),
		cmocka_unit_test(test_answer_no_record),
		cmocka_unit_test(test_answer_cap),
		cmocka_unit_test(test_error),
	};

	return cmocka_run_group_tests_name("dnsmsg", tests, NULL, NULL);
}
