/*
 * netpolicy.c — a VM's network mode, its "allow" entries and published
 * ports, and the address checks capsuled makes before it connects for a
 * guest (see netpolicy.h). Pure: no I/O; netpol_add grows the entries.
 *
 * Error messages name what is wrong with the piece at fault; the caller
 * adds which entry it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "netpolicy.h"
#include "proto.h"

/* Room for a piece of an entry quoted in an error message. */
#define NETPOL_SHOW	80

#define NETPOL_LOCALHOST	0x7f000001u	/* publish's default */

static int
netpol_isdigit(char c)
{
	return c >= '0' && c <= '9';
}

static int
netpol_ishex(char c)
{
	return netpol_isdigit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static uint32_t
netpol_mask(unsigned prefix)
{
	if (prefix == 0)
		return 0;
	if (prefix >= 32)
		return 0xffffffffu;
	return 0xffffffffu << (32 - prefix);
}

int
netpol_mode_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "none") == 0)
		return NETPOL_NONE;
	if (strcmp(s, "allow") == 0)
		return NETPOL_ALLOW;
	if (strcmp(s, "nat") == 0)
		return NETPOL_NAT;
	return -1;
}

const char *
netpol_mode_name(enum netpol_mode m)
{
	switch (m) {
	case NETPOL_NONE:	return "none";
	case NETPOL_ALLOW:	return "allow";
	case NETPOL_NAT:	return "nat";
	}
	return "unknown";
}

/*
 * Exactly four decimal numbers 0..255 joined by dots. A leading zero is
 * refused: inet_aton() reads "010" as octal 8, and an entry must mean the
 * same thing to everyone who reads it.
 */
static int
netpol_ipv4_parse_n(const char *s, size_t len, uint32_t *addr)
{
	uint32_t a = 0;
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t start;

		if (part > 0 && (i >= len || s[i++] != '.'))
			return -EINVAL;
		start = i;
		while (i < len && netpol_isdigit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return -EINVAL;
		a = a << 8 | v;
	}
	if (i != len)
		return -EINVAL;
	*addr = a;
	return 0;
}

int
netpol_ipv4_parse(const char *s, uint32_t *addr)
{
	if (s == NULL)
		return -EINVAL;
	return netpol_ipv4_parse_n(s, strlen(s), addr);
}

void
netpol_ipv4_format(uint32_t addr, char out[16])
{
	snprintf(out, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff,
	    (addr >> 8) & 0xff, addr & 0xff);
}

/*
 * Would a resolver read this as an address rather than a name? Every
 * dot-separated part a number, as inet_aton() takes them: decimal, or
 * hexadecimal after "0x" ("0x7f.1" is 127.0.0.1). Such a name never
 * reaches DNS, so it can only be written as an address.
 */
static int
netpol_numeric(const char *s, size_t len)
{
	size_t i = 0;
	int digits = 0;

	while (i <= len) {
		size_t start = i;

		if (i + 1 < len && s[i] == '0' && (s[i + 1] == 'x' ||
		    s[i + 1] == 'X')) {
			for (i += 2; i < len && netpol_ishex(s[i]); i++)
				digits++;
		} else {
			for (; i < len && netpol_isdigit(s[i]); i++)
				digits++;
		}
		if (i < len && s[i] != '.')
			return 0;
		if (i == start && i < len)
			return 0;	/* an empty part: ".." */
		i++;
	}
	return digits > 0;
}

/* A port: decimal 1..65535, no sign, no leading zero. */
static int
netpol_port_parse(const char *s, size_t len, uint16_t *port,
    const char *what, struct cap_err *err)
{
	char shown[NETPOL_SHOW];
	unsigned long v = 0;

	cap_show(s, len, shown, sizeof(shown));
	if (len == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "the %s is empty", what);
	for (size_t i = 0; i < len; i++) {
		if (!netpol_isdigit(s[i]))
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "%s \"%s\" is not a number from 1 to 65535", what,
			    shown);
		if (v <= 65535)
			v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s %s is out of range: ports are 1 to 65535", what,
		    shown);
	if (s[0] == '0')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s \"%s\" has a leading zero; write it as %lu", what,
		    shown, v);
	*port = (uint16_t)v;
	return 0;
}

/*
 * Checks the host name s[0..len) (one trailing dot allowed) and writes it
 * lower case, without the dot, to out. Says precisely what is wrong: the
 * user reads this, not just chan_name_check's verdict.
 */
static int
netpol_name_check(const char *s, size_t len, const char *shown, char *out,
    struct cap_err *err)
{
	size_t label = 0;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is not a host name", shown);
	if (len > NETPOL_MAX_NAME)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is %zu characters long; a host name has at most "
		    "%d", shown, len, NETPOL_MAX_NAME);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (i == 0)
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" begins with a "
				    "dot", shown);
			if (label == 0)
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" has an empty "
				    "label (two dots in a row)", shown);
			if (s[i - 1] == '-')
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" has a label "
				    "that ends with '-'", shown);
			label = 0;
			out[i] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c >= 0x80)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" is not ASCII; write an internationalised "
			    "name in its xn-- form", shown);
		if (!((c >= 'a' && c <= 'z') || netpol_isdigit((char)c) ||
		    c == '-' || c == '_')) {
			if (c == ' ')
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" contains a "
				    "space", shown);
			if (c > 0x20 && c < 0x7f)
				return cap_err_set(err, EINVAL,
				    E_INVALID_ARGUMENT, "\"%s\" contains '%c', "
				    "which a host name may not", shown, c);
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" contains the byte 0x%02x, which a host "
			    "name may not", shown, c);
		}
		if (c == '-' && label == 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" has a label that begins with '-'", shown);
		if (++label > 63)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" has a label longer than 63 characters",
			    shown);
		out[i] = (char)c;
	}
	if (label == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has an empty label (two dots in a row)", shown);
	if (s[len - 1] == '-')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has a label that ends with '-'", shown);
	out[len] = '\0';
	/* What the guest's side will hold the name to (CONNECT, DNS). */
	if (chan_name_check(out, len) < 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is not a valid host name", shown);
	return 0;
}

/* s[0..len) is "net/prefix", the slash at s[slash]. */
static int
netpol_cidr_parse(const char *s, size_t len, size_t slash,
    struct netpol_entry *e, struct cap_err *err)
{
	char shown[NETPOL_SHOW], a[16], want[16];
	const char *pfx = s + slash + 1;
	size_t plen = len - slash - 1;
	unsigned prefix = 0;
	uint32_t net;

	cap_show(s, len, shown, sizeof(shown));
	if (slash == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has no address before '/'", shown);
	if (netpol_ipv4_parse_n(s, slash, &net) < 0) {
		cap_show(s, slash, shown, sizeof(shown));
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is not a valid IPv4 address; a range is written "
		    "a.b.c.d/N, as in 203.0.113.0/24", shown);
	}
	if (plen == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has no prefix length after '/'", shown);
	cap_show(pfx, plen, shown, sizeof(shown));
	for (size_t i = 0; i < plen; i++) {
		if (!netpol_isdigit(pfx[i]) || i >= 2)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "prefix length \"/%s\" is not a number from 0 to "
			    "32", shown);
		prefix = prefix * 10 + (unsigned)(pfx[i] - '0');
	}
	if (prefix > 32 || (plen > 1 && pfx[0] == '0'))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "prefix length \"/%s\" is not a number from 0 to 32",
		    shown);
	if ((net & ~netpol_mask(prefix)) != 0) {
		netpol_ipv4_format(net, a);
		netpol_ipv4_format(net & netpol_mask(prefix), want);
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "%s/%u has bits set past /%u; did you mean %s/%u?", a,
		    prefix, prefix, want, prefix);
	}
	e->kind = NETPOL_CIDR;
	e->net = net;
	e->prefix = (uint8_t)prefix;
	return 0;
}

/* s[0..len) is a name, "*.suffix", or something that tried to be. */
static int
netpol_host_parse(const char *s, size_t len, struct netpol_entry *e,
    struct cap_err *err)
{
	char shown[NETPOL_SHOW];

	cap_show(s, len, shown, sizeof(shown));
	if (memchr(s, '*', len) == NULL) {
		e->kind = NETPOL_NAME;
		return netpol_name_check(s, len, shown, e->name, err);
	}
	if (len < 2 || s[0] != '*' || s[1] != '.' ||
	    memchr(s + 1, '*', len - 1) != NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\": a wildcard is \"*.\" at the start followed by a "
		    "domain, as in *.example.com", shown);
	if (len == 2 || (len == 3 && s[2] == '.'))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has no domain after \"*.\", as in *.example.com",
		    shown);
	if (netpol_numeric(s + 2, len - 2))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\": a wildcard needs a domain name after \"*.\", not "
		    "an address", shown);
	e->kind = NETPOL_SUFFIX;
	return netpol_name_check(s + 2, len - 2, shown, e->name, err);
}

int
netpol_entry_parse(const char *s, struct netpol_entry *e,
    struct cap_err *err)
{
	char shown[NETPOL_SHOW];
	const char *colon, *slash;
	size_t len, hlen;
	int r;

	memset(e, 0, sizeof(*e));
	if (s == NULL || *s == '\0')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "an entry may not be empty");
	len = strlen(s);
	cap_show(s, len, shown, sizeof(shown));
	if (len > NETPOL_MAX_ENTRY_LEN)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is %zu characters long; an entry has at most %d",
		    shown, len, NETPOL_MAX_ENTRY_LEN);
	colon = strchr(s, ':');
	if (strchr(s, '[') != NULL ||
	    (colon != NULL && strchr(colon + 1, ':') != NULL))
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" looks like an IPv6 address; IPv6 is not supported "
		    "(guests have no IPv6 path out)", shown);
	hlen = colon != NULL ? (size_t)(colon - s) : len;
	if (colon != NULL) {
		if (colon[1] == '\0')
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" ends with ':' but has no port after it",
			    shown);
		if ((r = netpol_port_parse(colon + 1, len - hlen - 1,
		    &e->port, "port", err)) < 0)
			return r;
		if (hlen == 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" has a port but no host name or address "
			    "before it", shown);
	}
	if ((slash = memchr(s, '/', hlen)) != NULL)
		return netpol_cidr_parse(s, hlen, (size_t)(slash - s), e,
		    err);
	if (netpol_numeric(s, hlen)) {
		cap_show(s, hlen, shown, sizeof(shown));
		if (netpol_ipv4_parse_n(s, hlen, &e->net) < 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" is not a valid IPv4 address (write four "
			    "numbers 0 to 255, as in 203.0.113.7)", shown);
		e->kind = NETPOL_CIDR;
		e->prefix = 32;
		return 0;
	}
	return netpol_host_parse(s, hlen, e, err);
}

int
netpol_entry_format(const struct netpol_entry *e, char *out, size_t cap)
{
	char a[16], port[8] = "";
	int n;

	if (e->port != 0)
		snprintf(port, sizeof(port), ":%u", e->port);
	switch (e->kind) {
	case NETPOL_NAME:
		n = snprintf(out, cap, "%s%s", e->name, port);
		break;
	case NETPOL_SUFFIX:
		n = snprintf(out, cap, "*.%s%s", e->name, port);
		break;
	case NETPOL_CIDR:
		if (e->prefix > 32)
			return -EINVAL;
		netpol_ipv4_format(e->net, a);
		if (e->prefix == 32)
			n = snprintf(out, cap, "%s%s", a, port);
		else
			n = snprintf(out, cap, "%s/%u%s", a, e->prefix, port);
		break;
	default:
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int
netpol_add(struct netpol *p, const char *s, struct cap_err *err)
{
	struct netpol_entry e, *grown;
	int r;

	if (p->nentries >= NETPOL_MAX_ENTRIES)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
		    "a policy has at most %d entries", NETPOL_MAX_ENTRIES);
	if ((r = netpol_entry_parse(s, &e, err)) < 0)
		return r;
	grown = realloc(p->entries, (p->nentries + 1) * sizeof(*grown));
	if (grown == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	grown[p->nentries++] = e;
	p->entries = grown;
	return 0;
}

void
netpol_free(struct netpol *p)
{
	free(p->entries);
	memset(p, 0, sizeof(*p));
}

int
netpol_name_normalize(char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (name[i] >= 'A' && name[i] <= 'Z')
			name[i] = (char)(name[i] - 'A' + 'a');
	if (n > 0 && name[n - 1] == '.')
		name[--n] = '\0';
	return chan_name_check(name, n) < 0 ? -EINVAL : 0;
}

/* Port 0 asks about any port; an entry without one allows 80 and 443. */
static int
netpol_port_ok(uint16_t entry, uint16_t port)
{
	if (port == 0)
		return 1;
	if (entry == 0)
		return port == 80 || port == 443;
	return port == entry;
}

int
netpol_allows_name(const struct netpol *p, const char *name, uint16_t port)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < p->nentries; i++) {
		const struct netpol_entry *e = &p->entries[i];
		size_t sl = strlen(e->name);
		int match;

		if (e->kind == NETPOL_NAME)
			match = sl > 0 && strcmp(e->name, name) == 0;
		else if (e->kind == NETPOL_SUFFIX)
			/* Below the suffix, at a label boundary: not the
			 * suffix itself, not "badexample.com". */
			match = sl > 0 && n > sl + 1 &&
			    name[n - sl - 1] == '.' &&
			    memcmp(name + n - sl, e->name, sl) == 0;
		else
			match = 0;
		if (match && netpol_port_ok(e->port, port))
			return 1;
	}
	return 0;
}

int
netpol_allows_ipv4(const struct netpol *p, uint32_t addr, uint16_t port)
{
	for (size_t i = 0; i < p->nentries; i++) {
		const struct netpol_entry *e = &p->entries[i];
		uint32_t m = netpol_mask(e->prefix);

		if (e->kind == NETPOL_CIDR && (addr & m) == (e->net & m) &&
		    netpol_port_ok(e->port, port))
			return 1;
	}
	return 0;
}

int
netpol_unlocks(const struct netpol *p, uint32_t addr, uint8_t prefix,
    uint16_t port)
{
	for (size_t i = 0; i < p->nentries; i++) {
		const struct netpol_entry *e = &p->entries[i];
		uint32_t m = netpol_mask(e->prefix);

		if (e->kind == NETPOL_CIDR && e->prefix >= prefix &&
		    (addr & m) == (e->net & m) && netpol_port_ok(e->port, port))
			return 1;
	}
	return 0;
}

const char *
netpol_special(uint32_t addr, uint8_t *prefix)
{
	static const struct {
		uint32_t	 net;
		uint8_t		 prefix;
		const char	*why;
	} ranges[] = {
		/* Exceptions first: the first range that holds addr wins. */
		{ 0xa9fea9fe, 32, "cloud metadata" },	/* 169.254.169.254 */
		{ 0xffffffff, 32, "broadcast" },
		{ 0x00000000, 8, "this network" },
		{ 0x0a000000, 8, "private" },
		{ 0x64400000, 10, "carrier-grade NAT" },
		{ 0x7f000000, 8, "loopback" },
		{ 0xa9fe0000, 16, "link-local" },
		{ 0xac100000, 12, "private" },
		{ 0xc0000000, 24, "private" },	/* IETF protocol assignments */
		{ 0xc0a80000, 16, "private" },
		{ 0xc6120000, 15, "reserved" },	/* benchmarking */
		{ 0xe0000000, 4, "multicast" },
		{ 0xf0000000, 4, "reserved" },
	};

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if ((addr & netpol_mask(ranges[i].prefix)) == ranges[i].net) {
			*prefix = ranges[i].prefix;
			return ranges[i].why;
		}
	*prefix = 0;
	return NULL;
}

int
netpub_parse(const char *s, struct netpub *p, struct cap_err *err)
{
	char shown[NETPOL_SHOW];
	const char *c1, *c2, *hp;
	size_t len, ncolons = 0;
	int r;

	memset(p, 0, sizeof(*p));
	if (s == NULL || *s == '\0')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "a published port may not be empty; write "
		    "[HOSTADDR:]HOSTPORT:GUESTPORT, as in 8080:80");
	len = strlen(s);
	cap_show(s, len, shown, sizeof(shown));
	for (size_t i = 0; i < len; i++)
		ncolons += s[i] == ':';
	if (strchr(s, '[') != NULL || ncolons > 2)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" is not [HOSTADDR:]HOSTPORT:GUESTPORT (IPv6 host "
		    "addresses are not supported)", shown);
	if (ncolons == 0)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" needs a host port and a guest port: "
		    "[HOSTADDR:]HOSTPORT:GUESTPORT, as in 8080:80", shown);
	c1 = strchr(s, ':');
	c2 = strrchr(s, ':');
	hp = s;
	p->host_addr = NETPOL_LOCALHOST;
	if (c1 != c2) {
		char as[NETPOL_SHOW];

		cap_show(s, (size_t)(c1 - s), as, sizeof(as));
		if (c1 == s)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "\"%s\" has an empty host address before the "
			    "first ':'", shown);
		if (netpol_ipv4_parse_n(s, (size_t)(c1 - s),
		    &p->host_addr) < 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "host address \"%s\" is not an IPv4 address "
			    "(a.b.c.d, as in 127.0.0.1 or 0.0.0.0)", as);
		hp = c1 + 1;
	}
	if (hp == c2)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has no host port", shown);
	if (c2[1] == '\0')
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "\"%s\" has no guest port", shown);
	if ((r = netpol_port_parse(hp, (size_t)(c2 - hp), &p->host_port,
	    "host port", err)) < 0)
		return r;
	return netpol_port_parse(c2 + 1, strlen(c2 + 1), &p->guest_port,
	    "guest port", err);
}

int
netpub_format(const struct netpub *p, char *out, size_t cap)
{
	char a[16];
	int n;

	netpol_ipv4_format(p->host_addr, a);
	n = snprintf(out, cap, "%s:%u:%u", a, p->host_port, p->guest_port);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}
