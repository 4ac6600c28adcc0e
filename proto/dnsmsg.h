/*
 * dnsmsg.h — the few DNS messages the guest agent's resolver stub reads
 * and writes (RFC 1035): a query with one question in, an answer with at
 * most one A record out.
 *
 * In "allow" mode the guest's /etc/resolv.conf names the stub
 * (127.0.0.1:53, UDP and TCP). The stub asks capsuled whether a name may be
 * used at all (a DNS open on the channel) and, if so, answers with an
 * address of its own from 127.64.0.0/10 that stands for that name; a
 * connection to it is carried to capsuled, which resolves the name itself.
 *
 * Pure: no I/O, no allocation. Linked by the agent (libc only) and tests.
 */
#ifndef CAPSULE_DNSMSG_H
#define CAPSULE_DNSMSG_H

#include <stddef.h>
#include <stdint.h>

#define DNS_HDR_LEN		12
#define DNS_MAX_UDP		512	/* answers over UDP stay within this */
#define DNS_MAX_MSG		65535	/* over TCP (2-byte length prefix) */
#define DNS_MAX_NAME		253

#define DNS_TYPE_A		1
#define DNS_TYPE_AAAA		28
#define DNS_CLASS_IN		1

#define DNS_RCODE_NOERROR	0
#define DNS_RCODE_FORMERR	1
#define DNS_RCODE_SERVFAIL	2
#define DNS_RCODE_NXDOMAIN	3
#define DNS_RCODE_NOTIMP	4
#define DNS_RCODE_REFUSED	5

struct dns_query {
	uint16_t	id;
	int		rd;		/* recursion desired, echoed */
	uint16_t	qtype;
	uint16_t	qclass;
	/* The question's name: lower case, dotted, no trailing dot; "" for
	 * the root. */
	char		name[DNS_MAX_NAME + 1];
	/* The question section as received, echoed in the answer. */
	const uint8_t	*question;
	size_t		question_len;
};

/*
 * Reads a query: QR 0, opcode 0 (QUERY), exactly one question, no answer
 * or authority records (an OPT record in the additional section is
 * allowed and ignored), the name uncompressed, each label 1..63 bytes and
 * the whole at most DNS_MAX_NAME. Returns 0, or -EBADMSG (answer FORMERR
 * if at least the header was there: dnsmsg_header_id tells), or
 * -EOPNOTSUPP for another opcode (answer NOTIMP).
 */
int	dnsmsg_parse_query(const uint8_t *p, size_t len, struct dns_query *q);
/* The id of a message with at least a header; -EBADMSG if shorter. */
int	dnsmsg_header_id(const uint8_t *p, size_t len, uint16_t *id);

/*
 * Writes the answer to q: the question echoed, QR 1, RA 1, RD as asked,
 * rcode, and if a4 is not NULL (only with NOERROR and an A question) one
 * A record for the name with ttl seconds (a4: 4 bytes, network order).
 * Returns the length, or -EMSGSIZE if it does not fit cap.
 */
long	dnsmsg_answer(uint8_t *out, size_t cap, const struct dns_query *q,
	    int rcode, const uint8_t *a4, uint32_t ttl);
/* An answer with only a header (FORMERR, NOTIMP) for a message that could
 * not be read as a query. */
long	dnsmsg_error(uint8_t *out, size_t cap, uint16_t id, int rcode);

#endif /* CAPSULE_DNSMSG_H */
