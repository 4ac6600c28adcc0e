/*
 * egress.h — the host end of a VM's "allow" network (docs/network.md).
 *
 * Such a VM has no NIC: its agent carries each name lookup (a DNS open)
 * and each outbound TCP connection (a CONNECT open) to capsuled, which
 * decides here, by the VM's policy, what may go out. A name outside the
 * policy is refused without any query leaving the host. An allowed name
 * is resolved by capsuled (the host's resolver, or --dns-server), and
 * answers inside the host's own networks (loopback, private, link-local,
 * cloud metadata, ..., and the networks of the host's interfaces) are
 * refused unless an address entry of the policy names them: a name
 * cannot be pointed at what the policy did not name (DNS rebinding). The
 * same holds for a literal address under a wide entry. capsuled then
 * connects itself and relays (relay.h).
 *
 * Every decision is logged and counted per VM.
 */
#ifndef CAPSULE_EGRESS_H
#define CAPSULE_EGRESS_H

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

#include "agent.h"
#include "err.h"
#include "netpolicy.h"

struct egress;

struct egress_stats {
	uint64_t	dns_allowed, dns_denied;
	uint64_t	conns_allowed, conns_denied, conns_failed;
	uint64_t	bytes_out, bytes_in;	/* guest to world, and back */
	unsigned	open;			/* connections now */
};

/* One resolver for the daemon: the servers of the host's
 * /etc/resolv.conf, or dns_server ("ADDR" or "ADDR:PORT") alone. */
int	egress_init(struct event_base *base, const char *dns_server,
	    struct cap_err *err);
void	egress_fini(void);

/* policy is borrowed and must outlive the egress. Sockets are made with
 * the VM owner's uid as their file-system uid, so that the host's
 * owner-matching firewall rules see the owner, not capsuled's root. */
struct egress *egress_new(struct event_base *base, const char *vm_id,
	    uid_t owner, const struct netpol *policy);
/* Ends every connection and lookup. */
void	egress_free(struct egress *e);
/* A stream the guest opened (the agent's open callback): taken and
 * answered, now or once decided. */
void	egress_open(struct egress *e, struct agent_stream *s,
	    const struct chan_open *o);
void	egress_stats(const struct egress *e, struct egress_stats *st);

#endif /* CAPSULE_EGRESS_H */
