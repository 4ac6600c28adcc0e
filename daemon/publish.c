/*
 * publish.c — a VM's published ports (see publish.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>

#include "agent.h"
#include "log.h"
#include "osdep.h"
#include "peer.h"
#include "proto.h"
#include "publish.h"
#include "relay.h"

#define PUBLISH_BACKLOG		128

struct publish_port {
	struct publish		*p;
	struct netpub		 pub;
	int			 fd;		/* listening, until started */
	struct listener		*listener;
	char			 what[80];
};

struct publish_conn {
	TAILQ_ENTRY(publish_conn) entry;
	struct publish_port	*port;
	struct relay		*relay;
};

struct publish {
	struct event_base	*base;
	char			 vm_id[37];
	struct publish_cbs	 cbs;
	void			*arg;
	struct publish_port	 ports[NETPOL_MAX_PUBLISH];
	unsigned		 nports;
	TAILQ_HEAD(, publish_conn) conns;
};

/* The lowest port anyone may bind (net.ipv4.ip_unprivileged_port_start on
 * Linux); 1024 if the host does not say. */
static unsigned
publish_unprivileged_start(void)
{
	int v = osdep_unpriv_port();

	return v < 0 ? 1024 : (unsigned)v;
}

static int
publish_bind(const struct netpub *pub, struct cap_err *err)
{
	struct sockaddr_in sin;
	char spec[64];
	int fd, one = 1, e;

	netpub_format(pub, spec, sizeof(spec));
	fd = osdep_socket(AF_INET, SOCK_STREAM, O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return cap_err_set(err, errno, E_INTERNAL, "publish %s: %s",
		    spec, strerror(errno));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(pub->host_port);
	sin.sin_addr.s_addr = htonl(pub->host_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, PUBLISH_BACKLOG) < 0) {
		e = errno;
		close(fd);
		if (e == EADDRINUSE)
			return cap_err_set(err, e, E_CONFLICT, "publish %s: the "
			    "host port is in use", spec);
		return cap_err_set(err, e, e == EADDRNOTAVAIL ?
		    E_INVALID_ARGUMENT : E_INTERNAL, "publish %s: cannot "
		    "listen there: %s", spec, strerror(e));
	}
	return fd;
}

int
publish_open(struct event_base *base, const char *vm_id,
    const struct netpub *pubs, unsigned n, uid_t caller,
    const struct publish_cbs *cbs, void *arg, struct publish **out,
    struct cap_err *err)
{
	unsigned low = publish_unprivileged_start();
	struct publish *p;
	char spec[64];
	int fd;

	*out = NULL;
	if (n > NETPOL_MAX_PUBLISH)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "at most "
		    "%d published ports", NETPOL_MAX_PUBLISH);
	for (unsigned i = 0; i < n; i++)
		if (caller != 0 && pubs[i].host_port < low) {
			netpub_format(&pubs[i], spec, sizeof(spec));
			return cap_err_set(err, EACCES, E_PERMISSION_DENIED,
			    "publish %s: only root may listen on a port below "
			    "%u (net.ipv4.ip_unprivileged_port_start)", spec,
			    low);
		}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	p->base = base;
	snprintf(p->vm_id, sizeof(p->vm_id), "%s", vm_id);
	p->cbs = *cbs;
	p->arg = arg;
	TAILQ_INIT(&p->conns);
	for (unsigned i = 0; i < n; i++) {
		if ((fd = publish_bind(&pubs[i], err)) < 0) {
			publish_free(p);
			return fd;
		}
		p->ports[i].p = p;
		p->ports[i].pub = pubs[i];
		p->ports[i].fd = fd;
		netpub_format(&pubs[i], spec, sizeof(spec));
		snprintf(p->ports[i].what, sizeof(p->ports[i].what),
		    "publish %s", spec);
		p->nports++;
	}
	*out = p;
	return 0;
}

static void
publish_conn_free(struct publish_conn *c)
{
	TAILQ_REMOVE(&c->port->p->conns, c, entry);
	free(c);
}

static void
publish_relay_done(const char *why, const struct relay_stats *st, void *arg)
{
	struct publish_conn *c = arg;

	if (why != NULL)
		log_debug("vm %.8s: %s: a connection ended: %s",
		    c->port->p->vm_id, c->port->what, why);
	publish_conn_free(c);
}

static void
publish_accept(int fd, void *arg)
{
	struct publish_port *pp = arg;
	struct publish *p = pp->p;
	struct publish_conn *c;
	struct bufferevent *bev;
	struct agent_stream *s;
	struct agent *a;
	struct cap_err err;

	/* How many at once is the agent's to say (agent_forward). */
	if ((a = p->cbs.agent(p->arg)) == NULL ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	if ((bev = bufferevent_socket_new(p->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	if ((c->relay = relay_new(bev, publish_relay_done, c)) == NULL) {
		bufferevent_free(bev);
		free(c);
		return;
	}
	c->port = pp;
	TAILQ_INSERT_TAIL(&p->conns, c, entry);
	if ((s = agent_forward(a, pp->pub.guest_port, &relay_stream_cbs,
	    c->relay, &err)) == NULL) {
		/* At the limit, clients may retry in a loop: not the log's
		 * business but at debug level. */
		log_msg(err.errnum == EMFILE ? LOG_LVL_DEBUG : LOG_LVL_WARN,
		    "vm %.8s: %s: %s", p->vm_id, pp->what, err.msg);
		relay_abort(c->relay, err.msg);
		publish_conn_free(c);
		return;
	}
	relay_attach(c->relay, s, 0);
}

void
publish_start(struct publish *p)
{
	if (p == NULL)
		return;
	for (unsigned i = 0; i < p->nports; i++) {
		struct publish_port *pp = &p->ports[i];

		if (pp->listener != NULL || pp->fd < 0)
			continue;
		pp->listener = listener_new(p->base, pp->fd, pp->what,
		    publish_accept, pp);
		if (pp->listener == NULL)
			log_warn("vm %.8s: %s: cannot accept connections",
			    p->vm_id, pp->what);
		else
			pp->fd = -1;	/* the listener's now */
	}
}

size_t
publish_conns(const struct publish *p)
{
	const struct publish_conn *c;
	size_t n = 0;

	if (p != NULL)
		TAILQ_FOREACH(c, &p->conns, entry)
			n++;
	return n;
}

void
publish_free(struct publish *p)
{
	struct publish_conn *c;

	if (p == NULL)
		return;
	for (unsigned i = 0; i < p->nports; i++) {
		if (p->ports[i].listener != NULL)
			listener_free(p->ports[i].listener);
		else if (p->ports[i].fd >= 0)
			close(p->ports[i].fd);
	}
	while ((c = TAILQ_FIRST(&p->conns)) != NULL) {
		relay_abort(c->relay, "the VM is going");
		publish_conn_free(c);
	}
	free(p);
}
