/*
 * egress.c — a VM's outbound lookups and connections, decided by its
 * policy (see egress.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>

#include "egress.h"
#include "log.h"
#include "osdep.h"
#include "proto.h"
#include "relay.h"
#include "util.h"

#define EGRESS_CONNECT_S	10	/* to connect to one address */
#define EGRESS_MAX_ADDRS	8	/* answers tried, in order */
#define EGRESS_MAX_CONNS	256	/* per VM, lookups included */
#define EGRESS_LOG_BURST	50	/* decisions logged per VM and second */

struct egress_conn {
	TAILQ_ENTRY(egress_conn) entry;
	struct egress		*e;
	struct agent_stream	*s;	/* until the relay has it */
	struct evdns_request	*req;	/* a lookup in flight */
	int			 cancelled; /* ... whose answer is unwanted */
	struct bufferevent	*bev;	/* connecting */
	struct relay		*relay;	/* relaying */
	int			 dns;	/* a question, not a connection */
	char			 target[NETPOL_MAX_NAME + 1];
	uint16_t		 port;
	uint32_t		 addrs[EGRESS_MAX_ADDRS];	/* host order */
	int			 naddrs, next;
	char			 addr_text[16];	/* the one being tried */
};

struct egress {
	struct event_base	*base;
	char			 vm_id[37];
	uid_t			 owner;
	const struct netpol	*policy;
	time_t			 log_second;	/* rate limit of the log */
	unsigned		 log_count, log_dropped;
	struct egress_stats	 st;
	TAILQ_HEAD(, egress_conn) conns;
};

static struct evdns_base *dns;

int
egress_init(struct event_base *base, const char *dns_server,
    struct cap_err *err)
{
	const char *opts[][2] = { { "timeout:", "2" }, { "attempts:", "2" } };

	dns = evdns_base_new(base, dns_server != NULL && dns_server[0] ? 0 :
	    EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "cannot set up "
		    "the resolver (is /etc/resolv.conf readable?)");
	if (dns_server != NULL && dns_server[0] &&
	    evdns_base_nameserver_ip_add(dns, dns_server) != 0) {
		evdns_base_free(dns, 0);
		dns = NULL;
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
		    "dns_server \"%s\": want an IP address, optionally "
		    "with :PORT", dns_server);
	}
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		evdns_base_set_option(dns, opts[i][0], opts[i][1]);
	return 0;
}

void
egress_fini(void)
{
	if (dns != NULL)
		evdns_base_free(dns, 1);
	dns = NULL;
}

struct egress *
egress_new(struct event_base *base, const char *vm_id, uid_t owner,
    const struct netpol *policy)
{
	struct egress *e;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->base = base;
	e->owner = owner;
	snprintf(e->vm_id, sizeof(e->vm_id), "%s", vm_id);
	e->policy = policy;
	TAILQ_INIT(&e->conns);
	return e;
}

void
egress_stats(const struct egress *e, struct egress_stats *st)
{
	*st = e->st;
}

static void
egress_conn_free(struct egress_conn *c)
{
	struct egress *e = c->e;

	TAILQ_REMOVE(&e->conns, c, entry);
	e->st.open--;
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->req != NULL) {
		/* Its callback still runs (DNS_ERR_CANCEL) and frees it. */
		c->cancelled = 1;
		c->e = NULL;
		evdns_cancel_request(dns, c->req);
		return;
	}
	free(c);
}

static void egress_log(struct egress *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A decision, logged: at most EGRESS_LOG_BURST a second per VM, so that a
 * guest looping on refused lookups cannot fill the host's disk. What was
 * left out is counted in the next line that gets through (the counters in
 * ListVMs count everything).
 */
static void
egress_log(struct egress *e, const char *fmt, ...)
{
	char line[768];
	time_t now = time(NULL);
	va_list ap;

	if (now != e->log_second) {
		e->log_second = now;
		e->log_count = 0;
	}
	if (++e->log_count > EGRESS_LOG_BURST) {
		e->log_dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (e->log_dropped > 0) {
		log_info("vm %.8s: %u more egress decisions were not logged "
		    "(over %d a second)", e->vm_id, e->log_dropped,
		    EGRESS_LOG_BURST);
		e->log_dropped = 0;
	}
	log_info("vm %.8s: %s", e->vm_id, line);
}

/* Refuses or fails the guest's stream, logs why, and ends c. */
static void
egress_refuse(struct egress_conn *c, uint32_t code, const char *why)
{
	struct egress *e = c->e;

	const char *how = code == EACCES ? "denied" : "failed";

	if (c->dns)
		egress_log(e, "dns %s %s: %s", c->target, how, why);
	else
		egress_log(e, "egress %s:%u %s: %s", c->target,
		    (unsigned)c->port, how, why);
	if (c->s != NULL)
		agent_bytes_reset(c->s, code, "%s", why);
	c->s = NULL;
	egress_conn_free(c);
}

static void	egress_try(struct egress_conn *c);

static void
egress_relay_done(const char *why, const struct relay_stats *st, void *arg)
{
	struct egress_conn *c = arg;
	struct egress *e = c->e;

	c->relay = NULL;
	e->st.bytes_out += st->from_guest;
	e->st.bytes_in += st->to_guest;
	egress_log(e, "egress %s:%u (%s) closed: %llu bytes out, %llu "
	    "in, %llu ms%s%s", c->target, (unsigned)c->port,
	    c->addr_text, (unsigned long long)st->from_guest,
	    (unsigned long long)st->to_guest, (unsigned long long)st->ms,
	    why != NULL ? ": " : "", why != NULL ? why : "");
	egress_conn_free(c);
}

static void
egress_connect_cb(struct bufferevent *bev, short what, void *arg)
{
	struct egress_conn *c = arg;
	struct egress *e = c->e;
	struct relay *r;
	char why[256];
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_set_timeouts(bev, NULL, NULL);
		c->bev = NULL;
		if ((r = relay_new(bev, egress_relay_done, c)) == NULL) {
			bufferevent_free(bev);
			egress_refuse(c, ENOMEM, "out of memory");
			return;
		}
		c->relay = r;
		e->st.conns_allowed++;
		egress_log(e, "egress %s:%u allowed: connected to %s",
		    c->target, (unsigned)c->port, c->addr_text);
		agent_bytes_take(c->s, &relay_stream_cbs, r);
		agent_bytes_opened(c->s);
		relay_attach(r, c->s, 1);
		c->s = NULL;
		return;
	}
	bufferevent_free(bev);
	c->bev = NULL;
	if (c->next < c->naddrs) {
		egress_try(c);
		return;
	}
	snprintf(why, sizeof(why), "cannot connect to %s:%u: %s",
	    c->addr_text, (unsigned)c->port, (what & BEV_EVENT_TIMEOUT) ?
	    "timed out" : err != 0 ? strerror(err) : "refused");
	e->st.conns_failed++;
	egress_refuse(c, (what & BEV_EVENT_TIMEOUT) ? ETIMEDOUT :
	    err != 0 ? (uint32_t)err : ECONNREFUSED, why);
}

/* Connects to the next candidate address. */
static void
egress_try(struct egress_conn *c)
{
	struct timeval tv = { EGRESS_CONNECT_S, 0 };
	struct sockaddr_in sin;
	char why[128];
	int fd, e;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(c->port);
	sin.sin_addr.s_addr = htonl(c->addrs[c->next]);
	netpol_ipv4_format(c->addrs[c->next], c->addr_text);
	c->next++;
	/* The socket is the owner's, as the host's firewall sees it. */
	fd = osdep_socket_as(c->e->owner, AF_INET, SOCK_STREAM,
	    O_NONBLOCK | O_CLOEXEC);
	e = errno;
	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot make a socket: %s",
		    strerror(e));
		c->e->st.conns_failed++;
		egress_refuse(c, (uint32_t)e, why);
		return;
	}
	c->bev = bufferevent_socket_new(c->e->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		egress_refuse(c, ENOMEM, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, NULL, NULL, egress_connect_cb, c);
	/* The write timeout bounds the connect. */
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	/* Most failures come to the callback; one that cannot even start
	 * (no socket) is reported here. */
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin,
	    sizeof(sin)) < 0)
		egress_connect_cb(c->bev, BEV_EVENT_ERROR, c);
}

/*
 * The host's own interfaces (ifs, from getifaddrs): an address of one of
 * them, or of a network one is attached to (no wider than /8), is as much
 * inside as 10/8.
 */
static const char *
egress_host_net(const struct ifaddrs *ifs, uint32_t a, uint8_t *prefix)
{
	const struct ifaddrs *i;

	for (i = ifs; i != NULL; i = i->ifa_next) {
		uint32_t ia, m;

		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_UP))
			continue;
		ia = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
		m = i->ifa_netmask != NULL ? ntohl(((struct sockaddr_in *)
		    i->ifa_netmask)->sin_addr.s_addr) : 0xffffffff;
		if (a == ia) {
			*prefix = 32;
			return "an address of this host";
		}
		if ((m & 0xff000000) == 0xff000000 && (a & m) == (ia & m)) {
			*prefix = (uint8_t)__builtin_popcount(m);
			return "on a network this host is attached to";
		}
	}
	return NULL;
}

/* Why the guest may not be connected to a:port (port 0: any), or NULL.
 * ifs: the host's interfaces, read once per decision. */
static const char *
egress_inside(const struct egress *e, const struct ifaddrs *ifs, uint32_t a,
    uint16_t port)
{
	uint8_t prefix;
	const char *why = netpol_special(a, &prefix);

	if (why == NULL)
		why = egress_host_net(ifs, a, &prefix);
	if (why == NULL || netpol_unlocks(e->policy, a, prefix, port))
		return NULL;
	return why;
}

/* Keeps the answers the guest may be sent to; says why if none. */
static int
egress_filter(struct egress_conn *c, const uint32_t *addrs, int n,
    char *why, size_t len)
{
	const char *special = NULL;
	struct ifaddrs *ifs = NULL;
	char text[16];

	/* Without the interfaces, every answer counts as the host's own. */
	if (getifaddrs(&ifs) < 0) {
		snprintf(why, len, "cannot list the host's interfaces: %s",
		    strerror(errno));
		return -1;
	}
	c->naddrs = 0;
	for (int i = 0; i < n && c->naddrs < EGRESS_MAX_ADDRS; i++) {
		uint32_t a = ntohl(addrs[i]);
		const char *kind = egress_inside(c->e, ifs, a, c->dns ? 0 :
		    c->port);

		if (kind != NULL) {
			if (special == NULL) {
				special = kind;
				netpol_ipv4_format(a, text);
			}
			continue;
		}
		c->addrs[c->naddrs++] = a;
	}
	freeifaddrs(ifs);
	if (c->naddrs > 0)
		return 0;
	snprintf(why, len, "%s resolves only to addresses the policy does "
	    "not name (%s is %s)", c->target, text, special);
	return -1;
}

static void
egress_resolved(int result, char type, int count, int ttl, void *addresses,
    void *arg)
{
	struct egress_conn *c = arg;
	struct egress *e = c->e;
	char why[512];

	c->req = NULL;
	if (c->cancelled) {
		free(c);
		return;
	}
#ifdef DNS_ERR_NODATA
	if (result == DNS_ERR_NODATA) {
		result = DNS_ERR_NONE;
		count = 0;
	}
#endif
	if (result == DNS_ERR_NOTEXIST || (result == DNS_ERR_NONE &&
	    count <= 0)) {
		snprintf(why, sizeof(why), result == DNS_ERR_NOTEXIST ?
		    "no such name" : "no IPv4 address");
		if (c->dns)
			e->st.dns_allowed++;
		else
			e->st.conns_failed++;
		egress_refuse(c, ENOENT, why);
		return;
	}
	if (result != DNS_ERR_NONE || (count > 0 && type != DNS_IPv4_A)) {
		snprintf(why, sizeof(why), "the lookup failed: %s",
		    result != DNS_ERR_NONE ? evdns_err_to_string(result) :
		    "no IPv4 answer");
		e->st.conns_failed += c->dns ? 0 : 1;
		egress_refuse(c, result == DNS_ERR_NONE ? ENOENT : EAGAIN,
		    why);
		return;
	}
	if (egress_filter(c, addresses, count, why, sizeof(why)) < 0) {
		if (c->dns)
			e->st.dns_denied++;
		else
			e->st.conns_denied++;
		egress_refuse(c, EACCES, why);
		return;
	}
	if (c->dns) {
		e->st.dns_allowed++;
		netpol_ipv4_format(c->addrs[0], c->addr_text);
		egress_log(e, "dns %s allowed (%s%s)", c->target,
		    c->addr_text, c->naddrs > 1 ? ", ..." : "");
		agent_bytes_answer(c->s);
		c->s = NULL;
		egress_conn_free(c);
		return;
	}
	egress_try(c);
}

/* The stream ended before it was answered (the guest gave up, or the
 * channel went): drop the lookup or the connect. */
static void
egress_pending_end(struct agent_stream *s, uint32_t code, const char *msg,
    size_t len, void *arg)
{
	struct egress_conn *c = arg;

	c->s = NULL;
	egress_conn_free(c);
}

static void
egress_pending_ignore(struct agent_stream *s, void *arg)
{
}

static void
egress_pending_data(struct agent_stream *s, const uint8_t *buf, size_t len,
    void *arg)
{
}

static const struct agent_bytes_cbs egress_pending_cbs = {
	.opened = egress_pending_ignore,
	.data = egress_pending_data,
	.eof = egress_pending_ignore,
	.credit = egress_pending_ignore,
	.end = egress_pending_end,
};

void
egress_open(struct egress *e, struct agent_stream *s,
    const struct chan_open *o)
{
	struct egress_conn *c;
	struct ifaddrs *ifs;
	const char *inside = NULL;
	char why[512];
	uint32_t addr = 0;
	int allowed;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		agent_bytes_reset(s, ENOMEM, "out of memory");
		return;
	}
	c->e = e;
	c->s = s;
	c->dns = o->type == CHAN_OPEN_DNS;
	c->port = o->port;
	TAILQ_INSERT_TAIL(&e->conns, c, entry);
	e->st.open++;
	if (o->addr_kind == CHAN_ADDR_IPV4) {
		memcpy(&addr, o->ipv4, 4);
		addr = ntohl(addr);
		netpol_ipv4_format(addr, c->target);
	} else {
		/* Decoded names are valid and lower case already. */
		snprintf(c->target, sizeof(c->target), "%.*s",
		    (int)o->name_len, o->name);
	}
	if (e->st.open > EGRESS_MAX_CONNS) {
		egress_refuse(c, EMFILE, "too many connections at once");
		return;
	}
	if (c->dns)
		allowed = netpol_allows_name(e->policy, c->target, 0);
	else if (o->addr_kind == CHAN_ADDR_IPV4)
		allowed = netpol_allows_ipv4(e->policy, addr, c->port);
	else
		allowed = netpol_allows_name(e->policy, c->target, c->port);
	if (!allowed) {
		if (c->dns)
			e->st.dns_denied++;
		else
			e->st.conns_denied++;
		egress_refuse(c, EACCES, c->dns ? "not in this VM's network "
		    "policy (nothing was asked upstream)" : "not in this "
		    "VM's network policy");
		return;
	}
	if (o->addr_kind == CHAN_ADDR_IPV4 && getifaddrs(&ifs) == 0) {
		inside = egress_inside(e, ifs, addr, c->port);
		freeifaddrs(ifs);
	} else if (o->addr_kind == CHAN_ADDR_IPV4) {
		inside = "possibly the host's own (its interfaces cannot be "
		    "listed)";
	}
	if (inside != NULL) {
		/* Under an entry wider than the host network it is in. */
		e->st.conns_denied++;
		snprintf(why, sizeof(why), "%s is %s; only an address entry "
		    "naming that network allows it", c->target, inside);
		egress_refuse(c, EACCES, why);
		return;
	}
	agent_bytes_take(s, &egress_pending_cbs, c);
	if (o->addr_kind == CHAN_ADDR_IPV4) {
		/* An address entry named it: no lookup. */
		c->addrs[0] = addr;
		c->naddrs = 1;
		egress_try(c);
		return;
	}
	/* No search list: the name goes upstream exactly as allowed. */
	c->req = evdns_base_resolve_ipv4(dns, c->target, DNS_QUERY_NO_SEARCH,
	    egress_resolved, c);
	if (c->req == NULL)
		egress_refuse(c, EAGAIN, "the lookup could not start");
}

void
egress_free(struct egress *e)
{
	struct egress_conn *c;

	if (e == NULL)
		return;
	while ((c = TAILQ_FIRST(&e->conns)) != NULL) {
		if (c->relay != NULL) {
			struct relay *r = c->relay;

			c->relay = NULL;
			relay_abort(r, "the VM is going");
		} else if (c->s != NULL) {
			agent_bytes_reset(c->s, ENETDOWN, "the VM is going");
			c->s = NULL;
		}
		egress_conn_free(c);
	}
	free(e);
}
