/*
 * publish.h — a VM's published ports (StartVM "publish", like docker's
 * -p): capsuled listens on HOSTADDR:HOSTPORT and carries each connection
 * to 127.0.0.1:GUESTPORT inside the guest over the agent channel (a
 * FORWARD stream, relay.h), so it works in every network mode, without a
 * NIC too. The listeners go with the VM.
 */
#ifndef CAPSULE_PUBLISH_H
#define CAPSULE_PUBLISH_H

#include <sys/types.h>

#include <event2/event.h>

#include "err.h"
#include "netpolicy.h"

struct publish;
struct agent;

struct publish_cbs {
	/* The VM's agent channel if a connection can be carried now, else
	 * NULL (the connection is closed). */
	struct agent *(*agent)(void *arg);
};

/* Binds and listens on every port now, so that a port in use fails
 * StartVM (conflict); connections wait in the backlog until
 * publish_start. For a caller other than root, ports below the kernel's
 * net.ipv4.ip_unprivileged_port_start are refused, as they would be to
 * the caller itself. */
int	publish_open(struct event_base *base, const char *vm_id,
	    const struct netpub *pubs, unsigned n, uid_t caller,
	    const struct publish_cbs *cbs, void *arg, struct publish **out,
	    struct cap_err *err);
void	publish_start(struct publish *p);
/* Closes the listeners and resets every connection. */
void	publish_free(struct publish *p);
/* Forwarded connections open now. */
size_t	publish_conns(const struct publish *p);

#endif /* CAPSULE_PUBLISH_H */
