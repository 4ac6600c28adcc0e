/*
 * test_netpolicy.c — network modes, "allow" entries, the address checks
 * made before connecting for a guest, and published ports.
 *
 * Mode names, entry syntax and messages are spelled out: they are what a
 * user writes and reads, and the contract under test.
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

#include "netpolicy.h"

#define IP(a, b, c, d) \
	((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | \
	(uint32_t)(d))

static void
has(const char *msg, const char *needle)
{
	if (strstr(msg, needle) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

static struct netpol_entry
ok_entry(const char *s)
{
	struct netpol_entry e;
	struct cap_err err;
	int r;

	cap_err_clear(&err);
	if ((r = netpol_entry_parse(s, &e, &err)) != 0)
		fail_msg("\"%s\" refused (%d): %s", s, r, err.msg);
	return e;
}

static void
ok_name(const char *s, enum netpol_kind kind, const char *name,
    uint16_t port)
{
	struct netpol_entry e = ok_entry(s);

	assert_int_equal(e.kind, kind);
	assert_string_equal(e.name, name);
	assert_int_equal(e.port, port);
	assert_int_equal(e.net, 0);
	assert_int_equal(e.prefix, 0);
}

static void
ok_cidr(const char *s, uint32_t net, uint8_t prefix, uint16_t port)
{
	struct netpol_entry e = ok_entry(s);

	assert_int_equal(e.kind, NETPOL_CIDR);
	assert_int_equal(e.net, net);
	assert_int_equal(e.prefix, prefix);
	assert_int_equal(e.port, port);
	assert_string_equal(e.name, "");
}

static void
bad(const char *s, const char *needle)
{
	struct netpol_entry e;
	struct cap_err err;
	int r;

	cap_err_clear(&err);
	r = netpol_entry_parse(s, &e, &err);
	if (r != -EINVAL)
		fail_msg("\"%s\": want -EINVAL, got %d (%s)", s ? s : "(null)",
		    r, err.msg);
	assert_int_equal(err.errnum, EINVAL);
	assert_string_equal(err.code, "invalid_argument");
	has(err.msg, needle);
	/* A refusal is not quietly accepted without an error object. */
	assert_int_equal(netpol_entry_parse(s, &e, NULL), -EINVAL);
}

/* ---- modes ---- */

static void
test_mode(void **state)
{
	(void)state;
	assert_int_equal(netpol_mode_parse("none"), NETPOL_NONE);
	assert_int_equal(netpol_mode_parse("allow"), NETPOL_ALLOW);
	assert_int_equal(netpol_mode_parse("nat"), NETPOL_NAT);
	assert_int_equal(netpol_mode_parse("None"), -1);
	assert_int_equal(netpol_mode_parse("NAT"), -1);
	assert_int_equal(netpol_mode_parse("nat "), -1);
	assert_int_equal(netpol_mode_parse(""), -1);
	assert_int_equal(netpol_mode_parse("allowed"), -1);
	assert_int_equal(netpol_mode_parse("user"), -1);
	assert_int_equal(netpol_mode_parse(NULL), -1);
	assert_string_equal(netpol_mode_name(NETPOL_NONE), "none");
	assert_string_equal(netpol_mode_name(NETPOL_ALLOW), "allow");
	assert_string_equal(netpol_mode_name(NETPOL_NAT), "nat");
	assert_string_equal(netpol_mode_name((enum netpol_mode)42),
	    "unknown");
	for (int m = NETPOL_NONE; m <= NETPOL_NAT; m++)
		assert_int_equal(netpol_mode_parse(netpol_mode_name(
		    (enum netpol_mode)m)), m);
	/* The default, all-zero policy is "none". */
	assert_int_equal(NETPOL_NONE, 0);
}

/* ---- IPv4 ---- */

static void
test_ipv4(void **state)
{
	static const struct {
		const char	*s;
		uint32_t	 a;
	} good[] = {
		{ "0.0.0.0", 0 },
		{ "255.255.255.255", 0xffffffff },
		{ "203.0.113.7", IP(203, 0, 113, 7) },
		{ "10.0.0.1", IP(10, 0, 0, 1) },
		{ "1.2.3.4", 0x01020304 },
		{ "100.200.10.0", IP(100, 200, 10, 0) },
	};
	static const char *const badv[] = {
		"", "1", "1.2", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256",
		"999.1.1.1", "1.2.3.04", "01.2.3.4", "00.0.0.0", "1..2.3",
		"1.2.3.4 ", " 1.2.3.4", "+1.2.3.4", "1.2.3.-4", "0x7f.0.0.1",
		"1234.1.1.1", "a.b.c.d", "1.2.3.4.", ".1.2.3.4", "1.2.3.4/32",
		"1.2.3.4:80", "1.2.3.", "1.2.3.4\n", "4294967295", "127.1",
	};
	char buf[16];
	uint32_t a;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		a = 0x5a5a5a5a;
		assert_int_equal(netpol_ipv4_parse(good[i].s, &a), 0);
		assert_int_equal(a, good[i].a);
		netpol_ipv4_format(a, buf);
		assert_string_equal(buf, good[i].s);
	}
	for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++) {
		a = 0x5a5a5a5a;
		if (netpol_ipv4_parse(badv[i], &a) != -EINVAL)
			fail_msg("\"%s\" parsed as an address", badv[i]);
		assert_int_equal(a, 0x5a5a5a5a);	/* left alone */
	}
	assert_int_equal(netpol_ipv4_parse(NULL, &a), -EINVAL);

	/* Every address formats to text that parses back to it. */
	rng_state = 0x1b2c3d4;
	for (int i = 0; i < 20000; i++) {
		uint32_t in = rng(), out;

		netpol_ipv4_format(in, buf);
		assert_int_equal(netpol_ipv4_parse(buf, &out), 0);
		assert_int_equal(out, in);
	}
}

/* ---- entries: what is accepted ---- */

static void
test_entry_names(void **state)
{
	char label63[64], name253[254], buf[300];

	(void)state;
	ok_name("example.com", NETPOL_NAME, "example.com", 0);
	ok_name("localhost", NETPOL_NAME, "localhost", 0);
	ok_name("a", NETPOL_NAME, "a", 0);
	ok_name("Example.COM", NETPOL_NAME, "example.com", 0);
	/* One trailing dot is the root, and is dropped. */
	ok_name("example.com.", NETPOL_NAME, "example.com", 0);
	ok_name("EXAMPLE.com.:8080", NETPOL_NAME, "example.com", 8080);
	ok_name("x-y.z_w.example", NETPOL_NAME, "x-y.z_w.example", 0);
	ok_name("a1.b2.c3", NETPOL_NAME, "a1.b2.c3", 0);
	ok_name("3com.com", NETPOL_NAME, "3com.com", 0);
	ok_name("xn--bcher-kva.de", NETPOL_NAME, "xn--bcher-kva.de", 0);
	ok_name("host.123", NETPOL_NAME, "host.123", 0);
	ok_name("0x", NETPOL_NAME, "0x", 0);
	ok_name("example.com:1", NETPOL_NAME, "example.com", 1);
	ok_name("example.com:443", NETPOL_NAME, "example.com", 443);
	ok_name("example.com:65535", NETPOL_NAME, "example.com", 65535);

	ok_name("*.example.com", NETPOL_SUFFIX, "example.com", 0);
	ok_name("*.Example.COM.", NETPOL_SUFFIX, "example.com", 0);
	ok_name("*.example.com:5432", NETPOL_SUFFIX, "example.com", 5432);
	ok_name("*.com", NETPOL_SUFFIX, "com", 0);
	ok_name("*.a", NETPOL_SUFFIX, "a", 0);

	/* Label and name at their limits. */
	memset(label63, 'a', 63);
	label63[63] = '\0';
	snprintf(buf, sizeof(buf), "%s.com", label63);
	ok_name(buf, NETPOL_NAME, buf, 0);
	for (size_t i = 0; i < 253; i++)
		name253[i] = i % 2 ? '.' : 'b';
	name253[252] = 'c';
	name253[253] = '\0';
	ok_name(name253, NETPOL_NAME, name253, 0);
	snprintf(buf, sizeof(buf), "%s.:65535", name253);
	ok_name(buf, NETPOL_NAME, name253, 65535);
	/* "*." + 253 + "." + ":65535" is the longest entry there is. */
	snprintf(buf, sizeof(buf), "*.%s.:65535", name253);
	assert_true(strlen(buf) <= NETPOL_MAX_ENTRY_LEN);
	ok_name(buf, NETPOL_SUFFIX, name253, 65535);
}

static void
test_entry_addresses(void **state)
{
	(void)state;
	ok_cidr("203.0.113.7", IP(203, 0, 113, 7), 32, 0);
	ok_cidr("203.0.113.7:22", IP(203, 0, 113, 7), 32, 22);
	ok_cidr("203.0.113.0/24", IP(203, 0, 113, 0), 24, 0);
	ok_cidr("203.0.113.0/24:443", IP(203, 0, 113, 0), 24, 443);
	ok_cidr("10.0.0.0/8:5432", IP(10, 0, 0, 0), 8, 5432);
	ok_cidr("0.0.0.0/0", 0, 0, 0);
	ok_cidr("0.0.0.0/0:53", 0, 0, 53);
	ok_cidr("128.0.0.0/1", IP(128, 0, 0, 0), 1, 0);
	ok_cidr("10.1.2.3/32", IP(10, 1, 2, 3), 32, 0);
	ok_cidr("10.1.2.2/31", IP(10, 1, 2, 2), 31, 0);
	ok_cidr("255.255.255.255", 0xffffffff, 32, 0);
	ok_cidr("0.0.0.0", 0, 32, 0);
	ok_cidr("192.168.0.0/16", IP(192, 168, 0, 0), 16, 0);
	ok_cidr("172.16.0.0/12:8080", IP(172, 16, 0, 0), 12, 8080);
	ok_cidr("1.2.3.4/32:65535", IP(1, 2, 3, 4), 32, 65535);
	/* Each prefix length with its own network. */
	for (unsigned p = 0; p <= 32; p++) {
		uint32_t net = p == 0 ? 0 : 0xffffffffu << (32 - p);
		char s[32], a[16];

		netpol_ipv4_format(net, a);
		snprintf(s, sizeof(s), "%s/%u", a, p);
		ok_cidr(s, net, (uint8_t)p, 0);
	}
}

/* ---- entries: what is refused, and what the message says ---- */

static void
test_entry_errors_general(void **state)
{
	char big[NETPOL_MAX_ENTRY_LEN + 2];

	(void)state;
	bad("", "may not be empty");
	bad(NULL, "may not be empty");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bad(big, "is 271 characters long; an entry has at most 270");

	/* IPv6, in any of its spellings. */
	bad("::1", "IPv6 is not supported");
	bad("fe80::1", "IPv6 is not supported");
	bad("2001:db8::1", "looks like an IPv6 address");
	bad("2001:db8::/32", "IPv6 is not supported");
	bad("[2001:db8::1]:443", "IPv6 is not supported");
	bad("[::1]", "IPv6 is not supported");
	bad("::ffff:192.0.2.1", "IPv6 is not supported");
	bad("a:b:c", "IPv6 is not supported");

	/* Ports. */
	bad("example.com:", "\"example.com:\" ends with ':' but has no port");
	bad("example.com:0", "port 0 is out of range: ports are 1 to 65535");
	bad("example.com:65536", "port 65536 is out of range");
	bad("example.com:99999", "port 99999 is out of range");
	bad("example.com:99999999999999999999999",
	    "port 99999999999999999999999 is out of range");
	bad("example.com:http", "port \"http\" is not a number from 1 to "
	    "65535");
	bad("example.com:+80", "port \"+80\" is not a number");
	bad("example.com:-1", "port \"-1\" is not a number");
	bad("example.com: 80", "port \" 80\" is not a number");
	bad("example.com:80 ", "port \"80 \" is not a number");
	bad("example.com:0x50", "port \"0x50\" is not a number");
	bad("example.com:080", "port \"080\" has a leading zero; write it "
	    "as 80");
	bad("example.com:00", "port 00 is out of range");
	bad("1.2.3.4:0", "port 0 is out of range");
	bad("10.0.0.0/8:70000", "port 70000 is out of range");
	bad(":80", "\":80\" has a port but no host name or address before "
	    "it");
	bad(":", "ends with ':' but has no port");

	/* Text shown in a message is made safe to show. */
	bad("a\nb", "\"a\\x0ab\" contains the byte 0x0a");
	bad("example.com:8\x01", "port \"8\\x01\" is not a number");
}

static void
test_entry_errors_addresses(void **state)
{
	(void)state;
	/* All digits and dots: an address or nothing. */
	bad("1.2.3", "\"1.2.3\" is not a valid IPv4 address");
	bad("999.1.1.1", "\"999.1.1.1\" is not a valid IPv4 address");
	bad("1.2.3.4.5", "\"1.2.3.4.5\" is not a valid IPv4 address");
	bad("256.0.0.0", "is not a valid IPv4 address");
	bad("01.2.3.4", "\"01.2.3.4\" is not a valid IPv4 address");
	bad("1.2.3.4.", "\"1.2.3.4.\" is not a valid IPv4 address");
	bad("123", "\"123\" is not a valid IPv4 address");
	bad("123:80", "\"123\" is not a valid IPv4 address");
	bad("4294967295", "is not a valid IPv4 address");
	/* What inet_aton() would read as an address is not a name. */
	bad("0x7f.1", "\"0x7f.1\" is not a valid IPv4 address");
	bad("0x7f000001", "is not a valid IPv4 address");
	bad("0X7F.0.0.1", "is not a valid IPv4 address");
	bad("127.0.0.0x1", "is not a valid IPv4 address");

	/* Ranges. */
	bad("203.0.113.5/24", "203.0.113.5/24 has bits set past /24; did "
	    "you mean 203.0.113.0/24?");
	bad("10.0.0.1/8", "10.0.0.1/8 has bits set past /8; did you mean "
	    "10.0.0.0/8?");
	bad("0.0.0.1/0", "0.0.0.1/0 has bits set past /0; did you mean "
	    "0.0.0.0/0?");
	bad("10.1.2.3/31", "did you mean 10.1.2.2/31?");
	bad("255.255.255.255/1", "did you mean 128.0.0.0/1?");
	bad("1.2.3.0/33", "prefix length \"/33\" is not a number from 0 to "
	    "32");
	bad("1.2.3.0/100", "prefix length \"/100\" is not a number");
	bad("1.2.3.0/024", "prefix length \"/024\" is not a number");
	bad("1.2.3.0/00", "prefix length \"/00\" is not a number");
	bad("1.2.3.0/-1", "prefix length \"/-1\" is not a number");
	bad("1.2.3.0/+8", "prefix length \"/+8\" is not a number");
	bad("1.2.3.0/24/8", "prefix length \"/24/8\" is not a number");
	bad("1.2.3.0/x", "prefix length \"/x\" is not a number");
	bad("1.2.3.0/", "\"1.2.3.0/\" has no prefix length after '/'");
	bad("1.2.3.0/:80", "\"1.2.3.0/\" has no prefix length after '/'");
	bad("/24", "\"/24\" has no address before '/'");
	bad("/", "has no address before '/'");
	bad("example.com/24", "\"example.com\" is not a valid IPv4 address; "
	    "a range is written a.b.c.d/N");
	bad("1.2.3/24", "\"1.2.3\" is not a valid IPv4 address; a range");
	bad("*.example.com/24", "\"*.example.com\" is not a valid IPv4 "
	    "address");
	bad("a/b", "\"a\" is not a valid IPv4 address");
}

static void
test_entry_errors_names(void **state)
{
	char buf[300], label64[65];

	(void)state;
	/* Wildcards. */
	bad("*", "\"*\": a wildcard is \"*.\" at the start followed by a "
	    "domain, as in *.example.com");
	bad("*foo.com", "\"*foo.com\": a wildcard is \"*.\" at the start");
	bad("a.*.b", "\"a.*.b\": a wildcard is \"*.\" at the start");
	bad("foo.*", "a wildcard is \"*.\" at the start");
	bad("*.*.com", "a wildcard is \"*.\" at the start");
	bad("**.com", "a wildcard is \"*.\" at the start");
	bad("*.com*", "a wildcard is \"*.\" at the start");
	bad("*:443", "a wildcard is \"*.\" at the start");
	bad("*.", "\"*.\" has no domain after \"*.\", as in *.example.com");
	bad("*..", "\"*..\" has no domain after \"*.\"");
	bad("*.:80", "\"*.\" has no domain after \"*.\"");
	bad("*.1.2.3.4", "\"*.1.2.3.4\": a wildcard needs a domain name "
	    "after \"*.\", not an address");
	bad("*.10", "not an address");
	bad("*..com", "\"*..com\" begins with a dot");

	/* Names. */
	bad(".", "\".\" is not a host name");
	bad(".example.com", "\".example.com\" begins with a dot");
	bad("a..b", "\"a..b\" has an empty label (two dots in a row)");
	bad("example.com..", "\"example.com..\" has an empty label");
	bad("-a.com", "\"-a.com\" has a label that begins with '-'");
	bad("a.-b.com", "has a label that begins with '-'");
	bad("a-.com", "\"a-.com\" has a label that ends with '-'");
	bad("a.b-", "\"a.b-\" has a label that ends with '-'");
	bad("a.b-.", "\"a.b-.\" has a label that ends with '-'");
	bad("-", "has a label that begins with '-'");
	bad("a b.com", "\"a b.com\" contains a space");
	bad(" example.com", "contains a space");
	bad("a!b.com", "\"a!b.com\" contains '!', which a host name may not");
	bad("a,b", "contains ','");
	bad("a@b.com", "contains '@'");
	bad("a\\b", "\"a\\x5cb\" contains '\\'");
	bad("a\tb", "contains the byte 0x09, which a host name may not");
	bad("a\x7f" "b", "contains the byte 0x7f");
	bad("b\xc3\xbc" "cher.de", "\"b\\xc3\\xbccher.de\" is not ASCII; "
	    "write an internationalised name in its xn-- form");
	bad("*.b\xc3\xbc" "cher.de", "is not ASCII");

	memset(label64, 'a', 64);
	label64[64] = '\0';
	snprintf(buf, sizeof(buf), "%s.com", label64);
	bad(buf, "has a label longer than 63 characters");
	snprintf(buf, sizeof(buf), "*.x.%s", label64);
	bad(buf, "has a label longer than 63 characters");
	/* 254 characters, with or without a trailing dot. */
	for (size_t i = 0; i < 254; i++)
		buf[i] = i % 2 ? '.' : 'b';
	buf[253] = 'c';
	buf[254] = '\0';
	bad(buf, "is 254 characters long; a host name has at most 253");
	buf[254] = '.';
	buf[255] = '\0';
	bad(buf, "is 254 characters long");
}

/* ---- formatting ---- */

static void
entry_equal(const struct netpol_entry *a, const struct netpol_entry *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->net, b->net);
	assert_int_equal(a->prefix, b->prefix);
	assert_int_equal(a->port, b->port);
}

static void
test_format(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "example.com", "example.com" },
		{ "Example.COM.", "example.com" },
		{ "EXAMPLE.com.:8080", "example.com:8080" },
		{ "*.example.com", "*.example.com" },
		{ "*.Example.Com.:443", "*.example.com:443" },
		{ "203.0.113.7", "203.0.113.7" },
		{ "203.0.113.7/32", "203.0.113.7" },
		{ "203.0.113.7/32:22", "203.0.113.7:22" },
		{ "203.0.113.0/24", "203.0.113.0/24" },
		{ "203.0.113.0/24:443", "203.0.113.0/24:443" },
		{ "0.0.0.0/0", "0.0.0.0/0" },
		{ "a_b.c:65535", "a_b.c:65535" },
	};
	struct netpol_entry e, back;
	char buf[NETPOL_MAX_ENTRY_LEN + 1];
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t want = strlen(cases[i].out);

		e = ok_entry(cases[i].in);
		n = netpol_entry_format(&e, buf, sizeof(buf));
		assert_int_equal(n, want);
		assert_string_equal(buf, cases[i].out);
		back = ok_entry(buf);
		entry_equal(&e, &back);
		/* The terminator has to fit too. */
		memset(buf, 'x', sizeof(buf));
		assert_int_equal(netpol_entry_format(&e, buf, want),
		    -ENOSPC);
		assert_int_equal(buf[want], 'x');
		assert_int_equal(netpol_entry_format(&e, buf, want + 1),
		    (int)want);
		assert_int_equal(netpol_entry_format(&e, NULL, 0), -ENOSPC);
	}

	/* Structs that no parse makes. */
	e = ok_entry("1.2.3.0/24");
	e.prefix = 33;
	assert_int_equal(netpol_entry_format(&e, buf, sizeof(buf)), -EINVAL);
	e.kind = (enum netpol_kind)7;
	assert_int_equal(netpol_entry_format(&e, buf, sizeof(buf)), -EINVAL);
}

/* Random entries from a small alphabet: whatever parses formats to text
 * that parses back to the same entry, and nothing crashes. */
static void
test_format_random(void **state)
{
	static const char alpha[] = "abcAZ019.-_*:/x[]";
	char s[40], buf[NETPOL_MAX_ENTRY_LEN + 1];
	struct netpol_entry e, back;
	struct cap_err err;
	int nok = 0;

	(void)state;
	rng_state = 0xfeed;
	for (int i = 0; i < 200000; i++) {
		size_t len = 1 + rng() % 16;

		for (size_t j = 0; j < len; j++)
			s[j] = alpha[rng() % (sizeof(alpha) - 1)];
		s[len] = '\0';
		if (netpol_entry_parse(s, &e, &err) != 0) {
			assert_true(err.msg[0] != '\0');
			continue;
		}
		nok++;
		assert_true(netpol_entry_format(&e, buf, sizeof(buf)) > 0);
		back = ok_entry(buf);
		entry_equal(&e, &back);
	}
	assert_true(nok > 1000);
}

/* ---- a policy ---- */

static struct netpol
policy(const char *const *entries, size_t n)
{
	struct netpol p = { .mode = NETPOL_ALLOW };
	struct cap_err err;

	for (size_t i = 0; i < n; i++)
		if (netpol_add(&p, entries[i], &err) != 0)
			fail_msg("\"%s\": %s", entries[i], err.msg);
	return p;
}

static void
test_add_free(void **state)
{
	struct netpol p = { .mode = NETPOL_ALLOW };
	struct cap_err err;
	char s[32];

	(void)state;
	assert_int_equal(netpol_add(&p, "example.com", &err), 0);
	assert_int_equal(p.nentries, 1);
	cap_err_clear(&err);
	assert_int_equal(netpol_add(&p, "a..b", &err), -EINVAL);
	has(err.msg, "empty label");
	assert_int_equal(p.nentries, 1);
	assert_string_equal(p.entries[0].name, "example.com");
	for (int i = 1; i < NETPOL_MAX_ENTRIES; i++) {
		snprintf(s, sizeof(s), "h%d.example", i);
		assert_int_equal(netpol_add(&p, s, &err), 0);
	}
	assert_int_equal(p.nentries, NETPOL_MAX_ENTRIES);
	assert_string_equal(p.entries[NETPOL_MAX_ENTRIES - 1].name,
	    "h255.example");
	cap_err_clear(&err);
	assert_int_equal(netpol_add(&p, "one.more", &err), -E2BIG);
	assert_string_equal(err.code, "invalid_argument");
	has(err.msg, "a policy has at most 256 entries");
	assert_int_equal(p.nentries, NETPOL_MAX_ENTRIES);
	netpol_free(&p);
	assert_null(p.entries);
	assert_int_equal(p.nentries, 0);
	assert_int_equal(p.mode, NETPOL_NONE);
	/* Freeing twice, or an empty policy, is harmless. */
	netpol_free(&p);
	assert_int_equal(netpol_add(&p, "again.example", &err), 0);
	assert_int_equal(p.nentries, 1);
	netpol_free(&p);
}

static void
test_name_normalize(void **state)
{
	static const struct {
		const char	*in, *out;
		int		 r;
	} cases[] = {
		{ "Example.COM.", "example.com", 0 },
		{ "example.com", "example.com", 0 },
		{ "A", "a", 0 },
		{ "a_b.example", "a_b.example", 0 },
		{ "EXAMPLE.com..", "example.com.", -EINVAL },	/* one dot */
		{ "", "", -EINVAL },
		{ ".", "", -EINVAL },
		{ "a..b", "a..b", -EINVAL },
		{ ".a", ".a", -EINVAL },
		{ "-a", "-a", -EINVAL },
		{ "a-", "a-", -EINVAL },
		{ "a b", "a b", -EINVAL },
		{ "a*b", "a*b", -EINVAL },
	};
	char buf[300];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		assert_int_equal(netpol_name_normalize(buf), cases[i].r);
		assert_string_equal(buf, cases[i].out);
	}
	/* 253 characters and a dot are fine; 254 are not. */
	for (size_t i = 0; i < 254; i++)
		buf[i] = i % 2 ? '.' : 'B';
	buf[253] = '\0';
	assert_int_equal(netpol_name_normalize(buf), 0);
	assert_int_equal(strlen(buf), 253);
	assert_int_equal(buf[0], 'b');
	buf[253] = 'c';
	buf[254] = '\0';
	assert_int_equal(netpol_name_normalize(buf), -EINVAL);
}

static void
test_allows_name(void **state)
{
	static const char *const entries[] = {
		"example.com",		/* 80 and 443 */
		"*.example.org",
		"api.test:8443",
		"*.svc.test:5432",
		"Example.NET.",
		"example.com:22",	/* another port of the same name */
		"203.0.113.7",		/* addresses do not match names */
		"*.deep.a.b",
	};
	struct netpol p = policy(entries, sizeof(entries) /
	    sizeof(entries[0]));
	struct netpol empty = { .mode = NETPOL_ALLOW };

	(void)state;
	/* Exact: that name, nothing above or below it. */
	assert_true(netpol_allows_name(&p, "example.com", 443));
	assert_true(netpol_allows_name(&p, "example.com", 80));
	assert_true(netpol_allows_name(&p, "example.com", 22));
	assert_true(netpol_allows_name(&p, "example.com", 0));
	assert_false(netpol_allows_name(&p, "example.com", 8080));
	assert_false(netpol_allows_name(&p, "example.com", 1));
	assert_false(netpol_allows_name(&p, "www.example.com", 443));
	assert_false(netpol_allows_name(&p, "www.example.com", 0));
	assert_false(netpol_allows_name(&p, "com", 443));
	assert_false(netpol_allows_name(&p, "xexample.com", 443));
	assert_false(netpol_allows_name(&p, "example.com.evil", 443));
	assert_false(netpol_allows_name(&p, "example.co", 443));
	assert_false(netpol_allows_name(&p, "", 443));

	/* Suffix: below the domain only, at a label boundary. */
	assert_true(netpol_allows_name(&p, "a.example.org", 443));
	assert_true(netpol_allows_name(&p, "a.example.org", 80));
	assert_true(netpol_allows_name(&p, "x.y.example.org", 443));
	assert_true(netpol_allows_name(&p, "-.example.org", 0));
	assert_false(netpol_allows_name(&p, "a.example.org", 8443));
	assert_false(netpol_allows_name(&p, "example.org", 443));
	assert_false(netpol_allows_name(&p, "example.org", 0));
	assert_false(netpol_allows_name(&p, "badexample.org", 443));
	assert_false(netpol_allows_name(&p, "a.badexample.org", 443));
	assert_false(netpol_allows_name(&p, ".example.org", 443));
	assert_false(netpol_allows_name(&p, "a.example.org.evil", 443));
	assert_false(netpol_allows_name(&p, "org", 443));
	assert_true(netpol_allows_name(&p, "x.deep.a.b", 80));
	assert_false(netpol_allows_name(&p, "deep.a.b", 80));
	assert_false(netpol_allows_name(&p, "x.a.b", 80));

	/* A port given is the only port. */
	assert_true(netpol_allows_name(&p, "api.test", 8443));
	assert_true(netpol_allows_name(&p, "api.test", 0));
	assert_false(netpol_allows_name(&p, "api.test", 443));
	assert_false(netpol_allows_name(&p, "api.test", 80));
	assert_false(netpol_allows_name(&p, "x.api.test", 8443));
	assert_true(netpol_allows_name(&p, "db.svc.test", 5432));
	assert_true(netpol_allows_name(&p, "db.svc.test", 0));
	assert_false(netpol_allows_name(&p, "db.svc.test", 443));
	assert_false(netpol_allows_name(&p, "svc.test", 5432));

	/* Entries are normalised; so must the names asked about be. */
	assert_true(netpol_allows_name(&p, "example.net", 443));

	/* An address entry is not a name. */
	assert_false(netpol_allows_name(&p, "203.0.113.7", 443));
	assert_false(netpol_allows_name(&p, "203.0.113.7", 0));

	assert_false(netpol_allows_name(&empty, "example.com", 443));
	assert_false(netpol_allows_name(&empty, "example.com", 0));
	netpol_free(&p);
}

static void
test_allows_ipv4(void **state)
{
	static const char *const entries[] = {
		"203.0.113.7",
		"198.51.100.0/24:5432",
		"192.0.2.128/25",
		"10.9.8.7:22",
		"example.com",		/* names do not match addresses */
	};
	static const char *const all[] = { "0.0.0.0/0" };
	static const char *const half[] = { "128.0.0.0/1:8080" };
	struct netpol p = policy(entries, sizeof(entries) /
	    sizeof(entries[0]));
	struct netpol everything = policy(all, 1), upper = policy(half, 1);

	(void)state;
	/* A bare address: /32, 80 and 443. */
	assert_true(netpol_allows_ipv4(&p, IP(203, 0, 113, 7), 443));
	assert_true(netpol_allows_ipv4(&p, IP(203, 0, 113, 7), 80));
	assert_true(netpol_allows_ipv4(&p, IP(203, 0, 113, 7), 0));
	assert_false(netpol_allows_ipv4(&p, IP(203, 0, 113, 7), 22));
	assert_false(netpol_allows_ipv4(&p, IP(203, 0, 113, 6), 443));
	assert_false(netpol_allows_ipv4(&p, IP(203, 0, 113, 8), 443));
	assert_false(netpol_allows_ipv4(&p, IP(7, 113, 0, 203), 443));

	/* A /24 with a port: its edges and just past them. */
	assert_true(netpol_allows_ipv4(&p, IP(198, 51, 100, 0), 5432));
	assert_true(netpol_allows_ipv4(&p, IP(198, 51, 100, 255), 5432));
	assert_true(netpol_allows_ipv4(&p, IP(198, 51, 100, 9), 0));
	assert_false(netpol_allows_ipv4(&p, IP(198, 51, 100, 9), 443));
	assert_false(netpol_allows_ipv4(&p, IP(198, 51, 99, 255), 5432));
	assert_false(netpol_allows_ipv4(&p, IP(198, 51, 101, 0), 5432));

	/* A /25. */
	assert_true(netpol_allows_ipv4(&p, IP(192, 0, 2, 128), 443));
	assert_true(netpol_allows_ipv4(&p, IP(192, 0, 2, 255), 80));
	assert_false(netpol_allows_ipv4(&p, IP(192, 0, 2, 127), 443));
	assert_false(netpol_allows_ipv4(&p, IP(192, 0, 3, 0), 443));

	assert_true(netpol_allows_ipv4(&p, IP(10, 9, 8, 7), 22));
	assert_false(netpol_allows_ipv4(&p, IP(10, 9, 8, 7), 443));

	/* /0 is every address; /1 half of them. */
	assert_true(netpol_allows_ipv4(&everything, 0, 443));
	assert_true(netpol_allows_ipv4(&everything, 0xffffffff, 80));
	assert_true(netpol_allows_ipv4(&everything, IP(127, 0, 0, 1), 443));
	assert_false(netpol_allows_ipv4(&everything, IP(1, 1, 1, 1), 53));
	assert_true(netpol_allows_ipv4(&upper, IP(128, 0, 0, 0), 8080));
	assert_true(netpol_allows_ipv4(&upper, 0xffffffff, 8080));
	assert_false(netpol_allows_ipv4(&upper, IP(127, 255, 255, 255),
	    8080));
	assert_false(netpol_allows_ipv4(&upper, IP(128, 0, 0, 0), 443));

	/* Unlocking a special address takes an entry no wider than its
	 * range, holding it, with the port. */
	assert_true(netpol_unlocks(&p, IP(10, 9, 8, 7), 8, 22));
	assert_true(netpol_unlocks(&p, IP(10, 9, 8, 7), 8, 0));
	assert_false(netpol_unlocks(&p, IP(10, 9, 8, 7), 8, 443));
	assert_false(netpol_unlocks(&p, IP(10, 9, 8, 6), 8, 22));
	assert_true(netpol_unlocks(&p, IP(198, 51, 100, 77), 24, 5432));
	assert_false(netpol_unlocks(&p, IP(198, 51, 100, 77), 25, 5432));
	assert_false(netpol_unlocks(&p, IP(192, 0, 2, 1), 24, 443));
	/* 0.0.0.0/0 and 128.0.0.0/1 are wider than any special range. */
	assert_false(netpol_unlocks(&everything, IP(169, 254, 169, 254), 32,
	    443));
	assert_false(netpol_unlocks(&everything, IP(127, 0, 0, 1), 8, 443));
	assert_false(netpol_unlocks(&upper, IP(224, 0, 0, 1), 4, 8080));
	assert_true(netpol_unlocks(&everything, IP(1, 2, 3, 4), 0, 443));

	netpol_free(&p);
	netpol_free(&everything);
	netpol_free(&upper);
}

/* ---- special addresses ---- */

static void
test_special(void **state)
{
	static const struct {
		const char	*addr;
		const char	*why;	/* NULL: public */
	} cases[] = {
		{ "0.0.0.0", "this network" },
		{ "0.255.255.255", "this network" },
		{ "1.0.0.0", NULL },
		{ "1.1.1.1", NULL },
		{ "8.8.8.8", NULL },
		{ "9.255.255.255", NULL },
		{ "10.0.0.0", "private" },
		{ "10.255.255.255", "private" },
		{ "11.0.0.0", NULL },
		{ "100.63.255.255", NULL },
		{ "100.64.0.0", "carrier-grade NAT" },
		{ "100.127.255.255", "carrier-grade NAT" },
		{ "100.128.0.0", NULL },
		{ "126.255.255.255", NULL },
		{ "127.0.0.0", "loopback" },
		{ "127.0.0.1", "loopback" },
		{ "127.64.0.1", "loopback" },	/* the agent's synthetic */
		{ "127.255.255.255", "loopback" },
		{ "128.0.0.0", NULL },
		{ "169.253.255.255", NULL },
		{ "169.254.0.0", "link-local" },
		{ "169.254.169.253", "link-local" },
		{ "169.254.169.254", "cloud metadata" },
		{ "169.254.169.255", "link-local" },
		{ "169.254.255.255", "link-local" },
		{ "169.255.0.0", NULL },
		{ "172.15.255.255", NULL },
		{ "172.16.0.0", "private" },
		{ "172.31.255.255", "private" },
		{ "172.32.0.0", NULL },
		{ "191.255.255.255", NULL },
		{ "192.0.0.0", "private" },
		{ "192.0.0.255", "private" },
		{ "192.0.1.0", NULL },
		{ "192.0.2.0", NULL },		/* documentation: tests use it */
		{ "192.0.2.255", NULL },
		{ "192.167.255.255", NULL },
		{ "192.168.0.0", "private" },
		{ "192.168.1.1", "private" },
		{ "192.168.255.255", "private" },
		{ "192.169.0.0", NULL },
		{ "198.17.255.255", NULL },
		{ "198.18.0.0", "reserved" },	/* benchmarking */
		{ "198.19.255.255", "reserved" },
		{ "198.20.0.0", NULL },
		{ "198.51.100.0", NULL },	/* documentation */
		{ "198.51.100.255", NULL },
		{ "203.0.113.0", NULL },	/* documentation */
		{ "203.0.113.255", NULL },
		{ "223.255.255.255", NULL },
		{ "224.0.0.0", "multicast" },
		{ "224.0.0.251", "multicast" },
		{ "239.255.255.255", "multicast" },
		{ "240.0.0.0", "reserved" },
		{ "250.1.2.3", "reserved" },
		{ "255.255.255.254", "reserved" },
		{ "255.255.255.255", "broadcast" },
	};
	static const char *const names[] = {
		"loopback", "private", "link-local", "cloud metadata",
		"carrier-grade NAT", "multicast", "reserved", "this network",
		"broadcast",
	};
	uint32_t a;
	uint8_t prefix;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why;

		assert_int_equal(netpol_ipv4_parse(cases[i].addr, &a), 0);
		why = netpol_special(a, &prefix);
		/* The prefix is that of a range holding a. */
		if (why != NULL)
			assert_true(prefix >= 4 && prefix <= 32);
		else
			assert_int_equal(prefix, 0);
		if (cases[i].why == NULL && why != NULL)
			fail_msg("%s: \"%s\", want public", cases[i].addr, why);
		if (cases[i].why != NULL && (why == NULL ||
		    strcmp(why, cases[i].why) != 0))
			fail_msg("%s: \"%s\", want \"%s\"", cases[i].addr,
			    why ? why : "(public)", cases[i].why);
	}
	/* Whatever it says is one of the words the header promises. */
	rng_state = 0xabcdef;
	for (int i = 0; i < 100000; i++) {
		const char *why = netpol_special(rng(), &prefix);
		size_t j;

		if (why == NULL)
			continue;
		for (j = 0; j < sizeof(names) / sizeof(names[0]); j++)
			if (strcmp(why, names[j]) == 0)
				break;
		assert_true(j < sizeof(names) / sizeof(names[0]));
	}
}

/* ---- published ports ---- */

static void
pub_ok(const char *s, uint32_t addr, uint16_t hp, uint16_t gp,
    const char *formatted)
{
	struct netpub p, back;
	struct cap_err err;
	char buf[64];
	int n;

	cap_err_clear(&err);
	if (netpub_parse(s, &p, &err) != 0)
		fail_msg("\"%s\" refused: %s", s, err.msg);
	assert_int_equal(p.host_addr, addr);
	assert_int_equal(p.host_port, hp);
	assert_int_equal(p.guest_port, gp);
	n = netpub_format(&p, buf, sizeof(buf));
	assert_int_equal(n, strlen(formatted));
	assert_string_equal(buf, formatted);
	assert_int_equal(netpub_parse(buf, &back, &err), 0);
	assert_memory_equal(&p, &back, sizeof(p));
	assert_int_equal(netpub_format(&p, buf, (size_t)n), -ENOSPC);
	assert_int_equal(netpub_format(&p, buf, (size_t)n + 1), n);
}

static void
pub_bad(const char *s, const char *needle)
{
	struct netpub p;
	struct cap_err err;
	int r;

	cap_err_clear(&err);
	r = netpub_parse(s, &p, &err);
	if (r != -EINVAL)
		fail_msg("\"%s\": want -EINVAL, got %d", s ? s : "(null)", r);
	assert_string_equal(err.code, "invalid_argument");
	has(err.msg, needle);
}

static void
test_publish(void **state)
{
	(void)state;
	pub_ok("8080:80", IP(127, 0, 0, 1), 8080, 80, "127.0.0.1:8080:80");
	pub_ok("1:65535", IP(127, 0, 0, 1), 1, 65535, "127.0.0.1:1:65535");
	pub_ok("0.0.0.0:8080:80", 0, 8080, 80, "0.0.0.0:8080:80");
	pub_ok("192.0.2.1:443:8443", IP(192, 0, 2, 1), 443, 8443,
	    "192.0.2.1:443:8443");
	pub_ok("127.0.0.1:5432:5432", IP(127, 0, 0, 1), 5432, 5432,
	    "127.0.0.1:5432:5432");
	pub_ok("255.255.255.255:65535:1", 0xffffffff, 65535, 1,
	    "255.255.255.255:65535:1");

	pub_bad("", "a published port may not be empty; write "
	    "[HOSTADDR:]HOSTPORT:GUESTPORT, as in 8080:80");
	pub_bad(NULL, "may not be empty");
	pub_bad("8080", "\"8080\" needs a host port and a guest port");
	pub_bad(":80", "\":80\" has no host port");
	pub_bad("8080:", "\"8080:\" has no guest port");
	pub_bad(":", "has no host port");
	pub_bad("0:80", "host port 0 is out of range: ports are 1 to 65535");
	pub_bad("80:0", "guest port 0 is out of range");
	pub_bad("65536:80", "host port 65536 is out of range");
	pub_bad("80:65536", "guest port 65536 is out of range");
	pub_bad("x:80", "host port \"x\" is not a number from 1 to 65535");
	pub_bad("80:x", "guest port \"x\" is not a number");
	pub_bad("80:80/tcp", "guest port \"80/tcp\" is not a number");
	pub_bad("-1:80", "host port \"-1\" is not a number");
	pub_bad("080:80", "host port \"080\" has a leading zero");
	pub_bad("1.2.3.4:80", "host port \"1.2.3.4\" is not a number");
	pub_bad("localhost:80:80", "host address \"localhost\" is not an "
	    "IPv4 address");
	pub_bad("256.0.0.1:80:80", "host address \"256.0.0.1\" is not an "
	    "IPv4 address");
	pub_bad("1.2.3:80:80", "host address \"1.2.3\" is not an IPv4");
	pub_bad(":80:80", "\":80:80\" has an empty host address before the "
	    "first ':'");
	pub_bad("1.2.3.4::80", "\"1.2.3.4::80\" has no host port");
	pub_bad("1.2.3.4:80:", "\"1.2.3.4:80:\" has no guest port");
	pub_bad("[::1]:80:80", "IPv6 host addresses are not supported");
	pub_bad("::1:80:80", "IPv6 host addresses are not supported");
	pub_bad("1:2:3:4", "is not [HOSTADDR:]HOSTPORT:GUESTPORT");
	pub_bad("0.0.0.0:0:80", "host port 0 is out of range");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode),
		cmocka_unit_test(test_ipv4),
		cmocka_unit_test(test_entry_names),
		cmocka_unit_test(test_entry_addresses),
		cmocka_unit_test(test_entry_errors_general),
		cmocka_unit_test(test_entry_errors_addresses),
		cmocka_unit_test(test_entry_errors_names),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_random),
		cmocka_unit_test(test_add_free),
		cmocka_unit_test(test_name_normalize),
		cmocka_unit_test(test_allows_name),
		cmocka_unit_test(test_allows_ipv4),
		cmocka_unit_test(test_special),
		cmocka_unit_test(test_publish),
	};

	return cmocka_run_group_tests_name("netpolicy", tests, NULL, NULL);
}
