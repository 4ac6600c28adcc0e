/*
 * fuzz_dnsmsg.c — libFuzzer harness for the resolver stub's DNS messages:
 * whatever a guest program sends to 127.0.0.1:53 is read without going
 * past its end, and what reads as a query gets an answer that stays
 * within a UDP message and says what it should.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsmsg.h"

static uint16_t
rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
check_answer(const struct dns_query *q, const uint8_t *data, size_t size)
{
	static const uint8_t addr[4] = { 127, 64, 1, 2 };
	uint8_t out[DNS_MAX_UDP];
	int rcode = size > 0 ? data[size - 1] & 0xf : 0;
	int with_a = q->qtype == DNS_TYPE_A && q->qclass == DNS_CLASS_IN;
	uint16_t flags;
	long n;

	n = dnsmsg_answer(out, sizeof(out), q, rcode, addr, 300);
	/* The longest question still answers within 512 bytes. */
	if (n < DNS_HDR_LEN || (size_t)n > sizeof(out))
		abort();
	if ((size_t)n != DNS_HDR_LEN + q->question_len +
	    (rcode == 0 && with_a ? 16 : 0))
		abort();
	flags = rd16(out + 2);
	if (rd16(out) != q->id || (flags & 0x8000) == 0 ||
	    ((flags >> 11) & 0xf) != 0 || ((flags >> 8) & 1) != q->rd ||
	    (flags & 0x80) == 0 || (flags & 0xf) != rcode ||
	    rd16(out + 4) != 1 || rd16(out + 6) != (rcode == 0 && with_a) ||
	    rd16(out + 8) != 0 || rd16(out + 10) != 0)
		abort();
	if (memcmp(out + DNS_HDR_LEN, q->question, q->question_len) != 0)
		abort();
	/* An answer is never taken for a query. */
	{
		struct dns_query back;

		if (dnsmsg_parse_query(out, (size_t)n, &back) != -EBADMSG)
			abort();
	}
	/* Cut short, it is refused whole. */
	if (dnsmsg_answer(out, (size_t)n - 1, q, rcode, addr, 300) !=
	    -EMSGSIZE)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_query q;
	uint8_t out[DNS_MAX_UDP];
	uint16_t id;
	int r;

	r = dnsmsg_parse_query(data, size, &q);
	if (r != 0 && r != -EBADMSG && r != -EOPNOTSUPP)
		abort();
	if (dnsmsg_header_id(data, size, &id) == 0) {
		if (size < DNS_HDR_LEN || id != q.id)
			abort();
		/* Whatever it was, it can be told so. */
		if (dnsmsg_error(out, sizeof(out), id, r == -EOPNOTSUPP ?
		    DNS_RCODE_NOTIMP : DNS_RCODE_FORMERR) != DNS_HDR_LEN ||
		    rd16(out) != id || rd16(out + 4) != 0)
			abort();
	} else if (size >= DNS_HDR_LEN || r == 0) {
		abort();
	}
	if (r != 0)
		return 0;
	if (q.question != data + DNS_HDR_LEN ||
	    DNS_HDR_LEN + q.question_len > size ||
	    q.question_len < 5 || strlen(q.name) > DNS_MAX_NAME)
		abort();
	for (const char *c = q.name; *c != '\0'; c++)
		if ((*c >= 'A' && *c <= 'Z') || (*c == '.' &&
		    (c == q.name || c[1] == '\0' || c[1] == '.')))
			abort();
	check_answer(&q, data, size);
	return 0;
}
