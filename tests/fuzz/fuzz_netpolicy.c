/*
 * fuzz_netpolicy.c — libFuzzer harness for a VM's network policy: any text
 * a StartVM request carries as an "allow" entry or a published port parses
 * or fails with a message; what parses formats to text that parses back
 * to the same; and the checks made on a guest's behalf never crash and
 * agree with each other.
 *
 * The input is lines: each is tried as an entry, a published port, a
 * mode, an address and a name; the entries that parse make a policy, which
 * is then asked about every line as a name and about addresses and ports
 * taken from the input's bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "netpolicy.h"

#define MAX_LINES	16
#define MAX_LINE	(NETPOL_MAX_ENTRY_LEN + 8)

static void
check_entry(const char *s, struct netpol *p)
{
	struct netpol_entry e, back;
	struct cap_err err;
	char out[NETPOL_MAX_ENTRY_LEN + 1];
	int n;

	cap_err_clear(&err);
	if (netpol_entry_parse(s, &e, &err) != 0) {
		if (err.msg[0] == '\0' || err.errnum == 0)
			abort();
		return;
	}
	switch (e.kind) {
	case NETPOL_NAME:
	case NETPOL_SUFFIX:
		if (chan_name_check(e.name, strlen(e.name)) != 0 ||
		    e.net != 0 || e.prefix != 0)
			abort();
		break;
	case NETPOL_CIDR:
		if (e.prefix > 32 || e.name[0] != '\0' || (e.prefix < 32 &&
		    (e.net & (0xffffffffu >> e.prefix)) != 0))
			abort();
		break;
	default:
		abort();
	}
	/* Every entry fits the longest text an entry may have. */
	n = netpol_entry_format(&e, out, sizeof(out));
	if (n <= 0 || (size_t)n != strlen(out))
		abort();
	if (netpol_entry_parse(out, &back, &err) != 0 ||
	    back.kind != e.kind || strcmp(back.name, e.name) != 0 ||
	    back.net != e.net || back.prefix != e.prefix ||
	    back.port != e.port)
		abort();
	if (netpol_entry_format(&e, out, (size_t)n) != -ENOSPC)
		abort();
	if (p->nentries < NETPOL_MAX_ENTRIES &&
	    netpol_add(p, s, &err) != 0)
		abort();
}

static void
check_publish(const char *s)
{
	struct netpub pub, back;
	struct cap_err err;
	char out[64];
	int n;

	cap_err_clear(&err);
	if (netpub_parse(s, &pub, &err) != 0) {
		if (err.msg[0] == '\0')
			abort();
		return;
	}
	if (pub.host_port == 0 || pub.guest_port == 0)
		abort();
	n = netpub_format(&pub, out, sizeof(out));
	if (n <= 0 || netpub_parse(out, &back, &err) != 0 ||
	    memcmp(&pub, &back, sizeof(pub)) != 0)
		abort();
}

static void
check_simple(const char *s)
{
	char copy[MAX_LINE + 1], text[16];
	uint32_t a;
	int m;

	/* What parses as an address is written that way again. */
	if (netpol_ipv4_parse(s, &a) == 0) {
		netpol_ipv4_format(a, text);
		if (strcmp(text, s) != 0)
			abort();
	}
	if ((m = netpol_mode_parse(s)) >= 0 &&
	    strcmp(netpol_mode_name((enum netpol_mode)m), s) != 0)
		abort();
	snprintf(copy, sizeof(copy), "%s", s);
	if (netpol_name_normalize(copy) == 0) {
		if (chan_name_check(copy, strlen(copy)) != 0)
			abort();
		for (const char *c = copy; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				abort();
	}
}

/* Asks p about name on a few ports: any port allowed means "any port" is
 * too, and an entry that allows nothing at 0 allows nothing at all. */
static void
check_name(const struct netpol *p, char *name, const uint8_t *data,
    size_t size)
{
	static const uint16_t ports[] = { 0, 1, 22, 80, 443, 8080, 65535 };
	int any;

	if (netpol_name_normalize(name) != 0)
		return;
	any = netpol_allows_name(p, name, 0);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		if (netpol_allows_name(p, name, ports[i]) && !any)
			abort();
	if (size >= 2 && netpol_allows_name(p, name,
	    (uint16_t)(data[0] << 8 | data[1])) && !any)
		abort();
}

static void
check_addresses(const struct netpol *p, const uint8_t *data, size_t size)
{
	for (size_t i = 0; i + 6 <= size && i < 600; i += 6) {
		uint32_t a = (uint32_t)data[i] << 24 |
		    (uint32_t)data[i + 1] << 16 | (uint32_t)data[i + 2] << 8 |
		    data[i + 3];
		uint16_t port = (uint16_t)(data[i + 4] << 8 | data[i + 5]);
		uint8_t prefix;
		const char *why = netpol_special(a, &prefix);

		/* Unlocking is allowing, narrowed: never more. */
		if (netpol_unlocks(p, a, prefix, port) &&
		    !netpol_allows_ipv4(p, a, port))
			abort();
		if (netpol_unlocks(p, a, 0, port) !=
		    netpol_allows_ipv4(p, a, port))
			abort();
		if (why != NULL && (why[0] == '\0' || prefix < 4))
			abort();
		if (why == NULL && prefix != 0)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char lines[MAX_LINES][MAX_LINE + 1];
	struct netpol p = { .mode = NETPOL_ALLOW };
	size_t nlines = 0, off = 0;

	while (off < size && nlines < MAX_LINES) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t full = nl ? (size_t)(nl - (data + off)) : size - off;
		size_t len = full < MAX_LINE ? full : MAX_LINE;

		/* A NUL ends a C string early: the parsers see what a
		 * caller would pass them. Long lines are cut just past the
		 * longest entry, which still tests the limit. */
		memcpy(lines[nlines], data + off, len);
		lines[nlines][len] = '\0';
		nlines++;
		off += full + (nl != NULL);
	}
	for (size_t i = 0; i < nlines; i++) {
		check_entry(lines[i], &p);
		check_publish(lines[i]);
		check_simple(lines[i]);
	}
	for (size_t i = 0; i < nlines; i++)
		check_name(&p, lines[i], data, size);
	check_addresses(&p, data, size);
	netpol_free(&p);
	return 0;
}
