/*
 * netpolicy.h — a VM's network: its mode and "allow" policy (StartVM
 * "network"), its published ports (StartVM "publish"), and the address
 * checks capsuled makes before it connects anywhere for a guest.
 *
 * Policy entries (docs/network.md):
 *	host.example.com	that name exactly
 *	*.example.com		any name below example.com, not example.com
 *	203.0.113.7		that address
 *	203.0.113.0/24		any address in that range
 * each with an optional ":PORT" (1..65535); without one, ports 80 and 443.
 * Names are matched without regard to case and without a trailing dot.
 * IPv6 entries are refused: guests have no IPv6 path out.
 *
 * Publish: "[HOSTADDR:]HOSTPORT:GUESTPORT", HOSTADDR an IPv4 address
 * (default 127.0.0.1), like docker's -p.
 *
 * Pure: no I/O; allocation only in netpol_add (the entries array).
 * Addresses are IPv4 in host byte order throughout.
 */
#ifndef CAPSULE_NETPOLICY_H
#define CAPSULE_NETPOLICY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define NETPOL_MAX_ENTRIES	256
#define NETPOL_MAX_NAME		253	/* CHAN_MAX_NAME */
#define NETPOL_MAX_ENTRY_LEN	270	/* an entry as text, with its port */
#define NETPOL_MAX_PUBLISH	32

enum netpol_mode {
	NETPOL_NONE = 0,	/* no NIC, nothing out (the default) */
	NETPOL_ALLOW,		/* no NIC; only what the entries allow */
	NETPOL_NAT,		/* a NIC on QEMU's user network: all out */
};

enum netpol_kind {
	NETPOL_NAME,		/* name: exactly this host */
	NETPOL_SUFFIX,		/* name: "*." + this, subdomains only */
	NETPOL_CIDR,		/* net/prefix */
};

struct netpol_entry {
	enum netpol_kind kind;
	char		 name[NETPOL_MAX_NAME + 1];	/* lower case */
	uint32_t	 net;		/* CIDR: network, host order */
	uint8_t		 prefix;	/* CIDR: 0..32 (a bare address: 32) */
	uint16_t	 port;		/* 0: 80 and 443 */
};

struct netpol {
	enum netpol_mode	 mode;
	struct netpol_entry	*entries;
	size_t			 nentries;
};

/* "none", "allow", "nat" -> mode; -1 if none of them. */
int	netpol_mode_parse(const char *s);
const char *netpol_mode_name(enum netpol_mode m);

/* Parses one entry. On failure err says what is wrong with it (the caller
 * adds which entry it was). */
int	netpol_entry_parse(const char *s, struct netpol_entry *e,
	    struct cap_err *err);
/* The entry as text again (normalised: lower case, no trailing dot,
 * ":PORT" only if one was given). Returns the length, or -ENOSPC. */
int	netpol_entry_format(const struct netpol_entry *e, char *out,
	    size_t cap);
/* Parses s and appends it; refuses more than NETPOL_MAX_ENTRIES. */
int	netpol_add(struct netpol *p, const char *s, struct cap_err *err);
void	netpol_free(struct netpol *p);

/* Lower-cases name in place and drops one trailing dot. Returns 0, or
 * -EINVAL if what is left is not a valid host name (chan_name_check). */
int	netpol_name_normalize(char *name);

/* May the guest reach name:port? Name and suffix entries only; the name
 * must be normalised. port 0 asks whether any port of the name is
 * allowed (a DNS question). */
int	netpol_allows_name(const struct netpol *p, const char *name,
	    uint16_t port);
/* May the guest reach addr:port? CIDR entries only. */
int	netpol_allows_ipv4(const struct netpol *p, uint32_t addr,
	    uint16_t port);
/*
 * An address inside one of the host's own networks (netpol_special, or
 * the host's interfaces) is reached only if the policy names it
 * explicitly: an address entry that holds addr, allows port (0: any) and
 * is no wider than that network (its prefix >= prefix). So 10.1.2.0/24
 * unlocks 10.1.2.3 (private, /8) but 0.0.0.0/0 unlocks nothing special.
 */
int	netpol_unlocks(const struct netpol *p, uint32_t addr, uint8_t prefix,
	    uint16_t port);

/* Why addr must not be reached unless the policy names it (DNS
 * rebinding; literal addresses under wide entries): "loopback",
 * "private", "link-local", "cloud metadata", "carrier-grade NAT",
 * "multicast", "reserved", "this network", "broadcast", and the prefix
 * of that range in *prefix; NULL if it is an ordinary public address. */
const char *netpol_special(uint32_t addr, uint8_t *prefix);

/* Dotted quad -> host order; -EINVAL unless exactly a.b.c.d. */
int	netpol_ipv4_parse(const char *s, uint32_t *addr);
void	netpol_ipv4_format(uint32_t addr, char out[16]);

struct netpub {
	uint32_t	host_addr;	/* host order */
	uint16_t	host_port;	/* 1..65535 */
	uint16_t	guest_port;	/* 1..65535 */
};

int	netpub_parse(const char *s, struct netpub *p, struct cap_err *err);
/* "ADDR:HOSTPORT:GUESTPORT". Returns the length, or -ENOSPC. */
int	netpub_format(const struct netpub *p, char *out, size_t cap);

#endif /* CAPSULE_NETPOLICY_H */
