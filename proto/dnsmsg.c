/*
 * dnsmsg.c — the DNS queries the guest agent's resolver stub reads and the
 * answers it writes (RFC 1035; see dnsmsg.h). Pure: no I/O, no allocation.
 *
 * What a query may hold: the header, one question, and nothing the stub
 * has to understand after it. ARCOUNT may be 0 or 1 (an EDNS OPT record,
 * RFC 6891, is what clients put there); the bytes after the question are
 * never read, so an OPT record of any form, or one cut short, or a few
 * stray bytes, change nothing. Answers carry no OPT record: that tells an
 * EDNS client the stub does not speak EDNS and keeps to DNS_MAX_UDP bytes,
 * which an answer here (at most 12 + 259 + 16 bytes) always does.
 *
 * A label may hold any byte but '.' and NUL, which the dotted name could
 * not tell apart from a label boundary or its end; the stub checks the
 * name with chan_name_check() before it asks capsuled about it.
 */
#include <errno.h>
#include <string.h>

#include "dnsmsg.h"

/* Header flag bits, in the two bytes at offset 2. */
#define DNS_QR		0x8000
#define DNS_OPCODE(f)	(((f) >> 11) & 0xf)
#define DNS_RD		0x0100
#define DNS_RA		0x0080

#define DNS_PTR_MASK	0xc0	/* 11: a pointer; 01, 10: extended types */
#define DNS_MAX_LABEL	63
#define DNS_A_RR_LEN	16	/* pointer, type, class, ttl, rdlength, addr */
#define DNS_MAX_TTL	0x7fffffffu	/* RFC 2181 8: the top bit is 0 */

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int
dnsmsg_header_id(const uint8_t *p, size_t len, uint16_t *id)
{
	if (p == NULL || len < DNS_HDR_LEN)
		return -EBADMSG;
	*id = get16(p);
	return 0;
}

/* The question at p + DNS_HDR_LEN: the name, read label by label and
 * never past len, then type and class. */
static int
dnsmsg_read_question(const uint8_t *p, size_t len, struct dns_query *q)
{
	size_t off = DNS_HDR_LEN, n = 0;

	for (;;) {
		size_t l;

		if (off >= len)
			return -EBADMSG;
		l = p[off++];
		if (l == 0)
			break;
		/* A question is read on its own, so nothing in it may
		 * point elsewhere in the message. */
		if ((l & DNS_PTR_MASK) != 0 || l > len - off)
			return -EBADMSG;
		if (n + (n > 0) + l > DNS_MAX_NAME)
			return -EBADMSG;
		if (n > 0)
			q->name[n++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = p[off + i];

			if (c == '.' || c == '\0')
				return -EBADMSG;
			if (c >= 'A' && c <= 'Z')
				c = (uint8_t)(c - 'A' + 'a');
			q->name[n++] = (char)c;
		}
		off += l;
	}
	q->name[n] = '\0';
	if (len - off < 4)
		return -EBADMSG;
	q->qtype = get16(p + off);
	q->qclass = get16(p + off + 2);
	off += 4;
	q->question = p + DNS_HDR_LEN;
	q->question_len = off - DNS_HDR_LEN;
	return 0;
}

int
dnsmsg_parse_query(const uint8_t *p, size_t len, struct dns_query *q)
{
	uint16_t flags;
	int r;

	memset(q, 0, sizeof(*q));
	if (p == NULL || len < DNS_HDR_LEN)
		return -EBADMSG;
	q->id = get16(p);
	flags = get16(p + 2);
	q->rd = (flags & DNS_RD) != 0;
	if (flags & DNS_QR)
		return -EBADMSG;
	if (DNS_OPCODE(flags) != 0)
		return -EOPNOTSUPP;
	/* One question; no answers or authority; at most an OPT record. */
	if (get16(p + 4) != 1 || get16(p + 6) != 0 || get16(p + 8) != 0 ||
	    get16(p + 10) > 1)
		return -EBADMSG;
	if ((r = dnsmsg_read_question(p, len, q)) < 0) {
		q->name[0] = '\0';
		q->qtype = q->qclass = 0;
		return r;
	}
	return 0;
}

static void
dnsmsg_put_header(uint8_t *out, uint16_t id, int rd, int rcode,
    uint16_t qdcount, uint16_t ancount)
{
	put16(out, id);
	put16(out + 2, (uint16_t)(DNS_QR | (rd ? DNS_RD : 0) | DNS_RA |
	    (unsigned)rcode));
	put16(out + 4, qdcount);
	put16(out + 6, ancount);
	put16(out + 8, 0);
	put16(out + 10, 0);
}

long
dnsmsg_answer(uint8_t *out, size_t cap, const struct dns_query *q,
    int rcode, const uint8_t *a4, uint32_t ttl)
{
	size_t qlen = q->question != NULL ? q->question_len : 0;
	size_t need;
	int with_a;
	uint8_t *rr;

	if (rcode < 0 || rcode > 15)
		return -EINVAL;
	/* The record names the question's name by pointing at it. */
	with_a = a4 != NULL && rcode == DNS_RCODE_NOERROR &&
	    q->qtype == DNS_TYPE_A && q->qclass == DNS_CLASS_IN && qlen > 0;
	if (qlen > DNS_MAX_MSG)
		return -EMSGSIZE;
	need = DNS_HDR_LEN + qlen + (with_a ? DNS_A_RR_LEN : 0);
	if (out == NULL || need > cap)
		return -EMSGSIZE;
	dnsmsg_put_header(out, q->id, q->rd, rcode, qlen > 0, with_a);
	if (qlen > 0)
		memcpy(out + DNS_HDR_LEN, q->question, qlen);
	if (with_a) {
		rr = out + DNS_HDR_LEN + qlen;
		put16(rr, 0xc000 | DNS_HDR_LEN);
		put16(rr + 2, DNS_TYPE_A);
		put16(rr + 4, DNS_CLASS_IN);
		put32(rr + 6, ttl > DNS_MAX_TTL ? DNS_MAX_TTL : ttl);
		put16(rr + 10, 4);
		memcpy(rr + 12, a4, 4);
	}
	return (long)need;
}

long
dnsmsg_error(uint8_t *out, size_t cap, uint16_t id, int rcode)
{
	if (rcode < 0 || rcode > 15)
		return -EINVAL;
	if (out == NULL || cap < DNS_HDR_LEN)
		return -EMSGSIZE;
	dnsmsg_put_header(out, id, 0, rcode, 0, 0);
	return DNS_HDR_LEN;
}
