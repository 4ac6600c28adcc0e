/*
 * dns.c — the resolver stub of "allow" mode: 127.0.0.1:53, UDP and TCP,
 * the one server the guest's /etc/resolv.conf names.
 *
 * It asks no DNS server. For a name it has not seen it asks the host, with
 * a DNS open on the channel, whether the name may be used at all; if so,
 * the name gets the next synthetic address in 127.64.0.0/10 for the rest
 * of the VM's life, and sock.c turns a connection to that address back
 * into the name for the host, which resolves it itself. No real address
 * ever reaches the guest.
 *
 * Answers: A gets the synthetic address; other types of a usable name get
 * NOERROR with no records (the guest has no IPv6 to reach). The host's
 * ENOENT is NXDOMAIN, EACCES REFUSED, anything else, a timeout or a lost
 * host SERVFAIL. A name that cannot be passed on (chan_name_check) is
 * REFUSED without asking. Queries for a name already being asked wait on
 * that one question.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "dnsmsg.h"

#define DNS_TTL			300	/* s; the mapping lasts the VM's life */
#define DNS_MAX_NAMES		65536	/* names given an address */
#define DNS_ASK_MS		5000	/* for the host's answer */
#define DNS_MAX_WAITS		1024	/* queries waiting, all clients */
#define DNS_MAX_CONNS		64	/* TCP clients at once */
#define DNS_CONN_WAITS		16	/* queries one TCP client has waiting */
#define DNS_CONN_OUT		16384	/* answers queued for one: stop reading */
#define DNS_CONN_IDLE_MS	10000
#define DNS_UDP_BUF		4096	/* EDNS clients may send more than 512 */
#define DNS_UDP_READS		32	/* per wake-up, for fairness */
#define DNS_QUESTION_MAX	(DNS_MAX_NAME + 2 + 4)	/* wire name, type, class */

struct dns_conn {
	struct dns_conn	*next;
	int		 fd;
	int		 dead;		/* closed: free at the next sweep */
	int		 eof;		/* the client is done asking */
	uint8_t		*in;		/* a length-prefixed query, or part */
	size_t		 inlen, incap;
	uint8_t		*out;		/* answers: [outoff, outlen) */
	size_t		 outoff, outlen, outcap;
	size_t		 nwait;		/* its queries still waiting */
	long		 idle;		/* close at, if nothing is pending */
};

struct dns_wait {			/* one query waiting for the host */
	struct dns_wait	*next;
	struct dns_query q;		/* q.question points at question */
	uint8_t		 question[DNS_QUESTION_MAX];
	int		 tcp;
	struct dns_conn	*conn;		/* tcp; NULL once the client left */
	struct sockaddr_in from;	/* udp */
};

struct dns_ask {			/* a DNS open the host has not answered */
	struct dns_ask	*next;
	uint32_t	 id;
	long		 deadline;
	struct dns_wait	*waits;
	char		 name[DNS_MAX_NAME + 1];
};

static struct {
	int		  udp, tcp;	/* -1 until dns_start() */
	char		**names;	/* [i]: CHAN_NET_SYNTH + 1 + i */
	uint32_t	  nnames, names_cap;
	uint32_t	 *hash;		/* index + 1 into names; 0: empty */
	uint32_t	  hash_cap;	/* a power of two */
	struct dns_ask	 *asks;
	size_t		  nwaits;
	struct dns_conn	 *conns;
	size_t		  nconns;
} D = { .udp = -1, .tcp = -1 };

/* ---- the names ---- */

static uint32_t
dns_hash_name(const char *s)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* Index into D.names, or -1. */
static long
dns_lookup(const char *name)
{
	uint32_t i, m = D.hash_cap - 1;

	if (D.hash_cap == 0)
		return -1;
	for (i = dns_hash_name(name) & m; D.hash[i] != 0; i = (i + 1) & m)
		if (strcmp(D.names[D.hash[i] - 1], name) == 0)
			return (long)D.hash[i] - 1;
	return -1;
}

static int
dns_hash_grow(void)
{
	uint32_t cap = D.hash_cap ? D.hash_cap * 2 : 1024, i, j, m = cap - 1;
	uint32_t *h = calloc(cap, sizeof(*h));

	if (h == NULL)
		return -ENOMEM;
	for (i = 0; i < D.nnames; i++) {
		for (j = dns_hash_name(D.names[i]) & m; h[j] != 0;
		    j = (j + 1) & m)
			;
		h[j] = i + 1;
	}
	free(D.hash);
	D.hash = h;
	D.hash_cap = cap;
	return 0;
}

/* The name's address (host order), given it if it has none: 0 when the
 * table is full or memory is out. */
static uint32_t
dns_map(const char *name)
{
	uint32_t i, m;
	long k;
	char *copy;

	if ((k = dns_lookup(name)) >= 0)
		return CHAN_NET_SYNTH + 1 + (uint32_t)k;
	if (D.nnames >= DNS_MAX_NAMES)
		return 0;
	/* At most half full, so a probe always ends. */
	if (2 * (D.nnames + 1) > D.hash_cap && dns_hash_grow() < 0)
		return 0;
	if (D.nnames == D.names_cap) {
		uint32_t cap = D.names_cap ? D.names_cap * 2 : 256;
		char **p = realloc(D.names, cap * sizeof(*p));

		if (p == NULL)
			return 0;
		D.names = p;
		D.names_cap = cap;
	}
	if ((copy = strdup(name)) == NULL)
		return 0;
	D.names[D.nnames] = copy;
	m = D.hash_cap - 1;
	for (i = dns_hash_name(name) & m; D.hash[i] != 0; i = (i + 1) & m)
		;
	D.hash[i] = ++D.nnames;
	return CHAN_NET_SYNTH + D.nnames;
}

const char *
dns_name_of(uint32_t addr)
{
	if (addr <= CHAN_NET_SYNTH || addr - CHAN_NET_SYNTH > D.nnames)
		return NULL;
	return D.names[addr - CHAN_NET_SYNTH - 1];
}

/* ---- answers ---- */

static void
dns_conn_close(struct dns_conn *k)
{
	struct dns_ask *a;
	struct dns_wait *w;

	if (k->dead)
		return;
	close(k->fd);
	k->fd = -1;
	k->dead = 1;
	D.nconns--;
	/* Its questions may still be answered, to nobody. */
	for (a = D.asks; a != NULL; a = a->next)
		for (w = a->waits; w != NULL; w = w->next)
			if (w->conn == k)
				w->conn = NULL;
}

static void
dns_tcp_queue(struct dns_conn *k, const uint8_t *msg, size_t len)
{
	size_t need;

	if (k == NULL || k->dead)
		return;
	if (k->outoff > 0 && k->outoff == k->outlen)
		k->outoff = k->outlen = 0;
	need = k->outlen + 2 + len;
	if (need > k->outcap) {
		size_t cap = k->outcap ? k->outcap : 1024;
		uint8_t *p;

		while (cap < need)
			cap *= 2;
		if ((p = realloc(k->out, cap)) == NULL) {
			dns_conn_close(k);
			return;
		}
		k->out = p;
		k->outcap = cap;
	}
	k->out[k->outlen] = (uint8_t)(len >> 8);
	k->out[k->outlen + 1] = (uint8_t)len;
	memcpy(k->out + k->outlen + 2, msg, len);
	k->outlen += 2 + len;
}

static void
dns_send(int tcp, struct dns_conn *k, const struct sockaddr_in *from,
    const uint8_t *msg, long len)
{
	if (len <= 0)
		return;
	if (tcp) {
		dns_tcp_queue(k, msg, (size_t)len);
		return;
	}
	/* UDP may drop an answer: the client asks again. */
	sendto(D.udp, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL,
	    (const struct sockaddr *)from, sizeof(*from));
}

/* Answers q; addr (host order) only for an A question about a name that
 * may be used. */
static void
dns_reply(const struct dns_query *q, int tcp, struct dns_conn *k,
    const struct sockaddr_in *from, int rcode, uint32_t addr)
{
	uint8_t out[DNS_MAX_UDP], a4[4];
	uint32_t be = htonl(addr);
	long n;

	memcpy(a4, &be, 4);
	n = dnsmsg_answer(out, sizeof(out), q, rcode,
	    rcode == DNS_RCODE_NOERROR && q->qtype == DNS_TYPE_A ? a4 : NULL,
	    DNS_TTL);
	dns_send(tcp, k, from, out, n);
}

/* The host has answered (rcode, and the address when it may be used),
 * or will not: every query waiting on the question hears it. */
static void
dns_ask_done(struct dns_ask *a, int rcode)
{
	struct dns_ask **pp;
	struct dns_wait *w;
	uint32_t addr = 0;

	if (rcode == DNS_RCODE_NOERROR && (addr = dns_map(a->name)) == 0) {
		agent_log("dns: no address left for another name (%d names)",
		    DNS_MAX_NAMES);
		rcode = DNS_RCODE_SERVFAIL;
	}
	while ((w = a->waits) != NULL) {
		a->waits = w->next;
		if (!w->tcp || w->conn != NULL)
			dns_reply(&w->q, w->tcp, w->conn, &w->from, rcode,
			    addr);
		if (w->conn != NULL)
			w->conn->nwait--;
		free(w);
		D.nwaits--;
	}
	for (pp = &D.asks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	free(a);
}

static struct dns_ask *
dns_ask_find(uint32_t id)
{
	struct dns_ask *a;

	for (a = D.asks; a != NULL; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

/* Puts the query on the question for its name, asking the host if no one
 * has yet. Returns 0, or -errno when the query must be answered now. */
static int
dns_wait(struct chanio *c, const struct dns_query *q, size_t name_len,
    int tcp, struct dns_conn *k, const struct sockaddr_in *from)
{
	struct chan_open o = { .type = CHAN_OPEN_DNS,
	    .addr_kind = CHAN_ADDR_NAME };
	uint8_t buf[8 + CHAN_MAX_NAME];
	struct dns_wait *w;
	struct dns_ask *a;
	long n;

	if (!c->up || !(agent_features() & CHAN_FEAT_STREAMS))
		return -ENOTCONN;
	if (D.nwaits >= DNS_MAX_WAITS || q->question_len > DNS_QUESTION_MAX)
		return -EAGAIN;
	for (a = D.asks; a != NULL; a = a->next)
		if (strcmp(a->name, q->name) == 0)
			break;
	if (a == NULL) {
		o.qtype = q->qtype;
		o.name = q->name;
		o.name_len = (uint32_t)name_len;
		if ((n = chan_open_encode(buf, sizeof(buf), &o)) < 0)
			return (int)n;
		if ((a = calloc(1, sizeof(*a))) == NULL)
			return -ENOMEM;
		a->id = agent_guest_id();
		if (chanio_send(c, CHAN_OPEN, a->id, buf, (size_t)n) < 0) {
			free(a);
			return -ENOTCONN;
		}
		memcpy(a->name, q->name, name_len + 1);
		a->deadline = agent_now_ms() + DNS_ASK_MS;
		a->next = D.asks;
		D.asks = a;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		if (a->waits == NULL)
			dns_ask_done(a, DNS_RCODE_SERVFAIL);
		return -ENOMEM;
	}
	w->q = *q;
	memcpy(w->question, q->question, q->question_len);
	w->q.question = w->question;
	w->tcp = tcp;
	w->conn = k;
	if (from != NULL)
		w->from = *from;
	w->next = a->waits;
	a->waits = w;
	D.nwaits++;
	if (k != NULL)
		k->nwait++;
	return 0;
}

static void
dns_query(struct chanio *c, const uint8_t *p, size_t len, int tcp,
    struct dns_conn *k, const struct sockaddr_in *from)
{
	uint8_t out[DNS_HDR_LEN];
	struct dns_query q;
	uint16_t id;
	size_t name_len;
	long idx;
	int r;

	/* A response (QR set) is never answered: an answer to one sent to
	 * ourselves would come back, and so on for ever. */
	if (len >= 3 && (p[2] & 0x80))
		return;
	if ((r = dnsmsg_parse_query(p, len, &q)) < 0) {
		/* Without even a header there is no one to answer. */
		if (dnsmsg_header_id(p, len, &id) == 0)
			dns_send(tcp, k, from, out, dnsmsg_error(out,
			    sizeof(out), id, r == -EOPNOTSUPP ?
			    DNS_RCODE_NOTIMP : DNS_RCODE_FORMERR));
		return;
	}
	if (q.qclass != DNS_CLASS_IN) {
		dns_reply(&q, tcp, k, from, DNS_RCODE_NOTIMP, 0);
		return;
	}
	name_len = strlen(q.name);
	if (chan_name_check(q.name, name_len) < 0) {
		dns_reply(&q, tcp, k, from, DNS_RCODE_REFUSED, 0);
		return;
	}
	if ((idx = dns_lookup(q.name)) >= 0) {
		dns_reply(&q, tcp, k, from, DNS_RCODE_NOERROR,
		    CHAN_NET_SYNTH + 1 + (uint32_t)idx);
		return;
	}
	if (dns_wait(c, &q, name_len, tcp, k, from) < 0)
		dns_reply(&q, tcp, k, from, DNS_RCODE_SERVFAIL, 0);
}

/* ---- the host's answers ---- */

int
dns_frame(struct chanio *c, const struct chan_hdr *h, const uint8_t *p)
{
	struct dns_ask *a = dns_ask_find(h->stream);
	struct chan_status st;

	if (a == NULL)
		return 0;
	switch (h->kind) {
	case CHAN_OPENED:
		dns_ask_done(a, DNS_RCODE_NOERROR);
		break;
	case CHAN_RESET:
		if (chan_status_decode(p, h->len, &st) < 0)
			st.code = EBADMSG;
		dns_ask_done(a, st.code == ENOENT ? DNS_RCODE_NXDOMAIN :
		    st.code == EACCES ? DNS_RCODE_REFUSED :
		    DNS_RCODE_SERVFAIL);
		break;
	default:
		/* A question carries nothing else: the host is confused,
		 * so this one fails, and it hears why. */
		chanio_send_status(c, CHAN_RESET, h->stream, EPROTO,
		    "capsule-agent: %s on a DNS question",
		    chan_kind_name(h->kind));
		dns_ask_done(a, DNS_RCODE_SERVFAIL);
		break;
	}
	return 1;
}

int
dns_end(uint32_t id)
{
	struct dns_ask *a = dns_ask_find(id);

	if (a == NULL)
		return 0;
	dns_ask_done(a, DNS_RCODE_SERVFAIL);
	return 1;
}

/* Without the host nothing new can be allowed: fail closed. */
void
dns_link(int up)
{
	if (up)
		return;
	while (D.asks != NULL)
		dns_ask_done(D.asks, DNS_RCODE_SERVFAIL);
}

/* ---- sockets ---- */

static void
dns_udp_io(struct chanio *c, void *obj, int fd, short revents)
{
	uint8_t buf[DNS_UDP_BUF];
	struct sockaddr_in from;
	int i;

	for (i = 0; i < DNS_UDP_READS; i++) {
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT,
		    (struct sockaddr *)&from, &flen);

		if (n < 0)
			return;
		if (flen != sizeof(from) || from.sin_family != AF_INET)
			continue;
		dns_query(c, buf, (size_t)n, 0, NULL, &from);
	}
}

/* Takes every whole query in the buffer. */
static void
dns_conn_parse(struct chanio *c, struct dns_conn *k)
{
	size_t off = 0, mlen;

	while (!k->dead && k->inlen - off >= 2) {
		mlen = (size_t)k->in[off] << 8 | k->in[off + 1];
		if (mlen == 0) {
			dns_conn_close(k);
			return;
		}
		if (k->inlen - off < 2 + mlen)
			break;
		dns_query(c, k->in + off + 2, mlen, 1, k, NULL);
		off += 2 + mlen;
		if (k->nwait >= DNS_CONN_WAITS)
			break;
	}
	if (off > 0 && !k->dead) {
		memmove(k->in, k->in + off, k->inlen - off);
		k->inlen -= off;
	}
}

static void
dns_conn_read(struct chanio *c, struct dns_conn *k)
{
	size_t need, cap;
	ssize_t n;

	/* The query's length says how much room it needs. */
	need = k->inlen >= 2 ? 2 + ((size_t)k->in[0] << 8 | k->in[1]) : 2;
	if (k->inlen >= need)
		return;		/* a whole query waits its turn */
	cap = need < 512 ? 512 : need;
	if (k->incap < cap) {
		uint8_t *p = realloc(k->in, cap);

		if (p == NULL) {
			dns_conn_close(k);
			return;
		}
		k->in = p;
		k->incap = cap;
	}
	n = read(k->fd, k->in + k->inlen, k->incap - k->inlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		k->eof = 1;
		if (n < 0 || k->inlen > 0 || (k->nwait == 0 && k->outlen == 0))
			dns_conn_close(k);
		return;
	}
	k->inlen += (size_t)n;
	/* Only a whole query counts as activity: a client that trickles a
	 * byte at a time does not keep its slot. */
	need = k->inlen >= 2 ? 2 + ((size_t)k->in[0] << 8 | k->in[1]) : 2;
	if (k->inlen >= need)
		k->idle = agent_now_ms() + DNS_CONN_IDLE_MS;
	dns_conn_parse(c, k);
}

static void
dns_conn_write(struct dns_conn *k)
{
	while (k->outoff < k->outlen) {
		ssize_t n = write(k->fd, k->out + k->outoff,
		    k->outlen - k->outoff);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			dns_conn_close(k);
			return;
		}
		k->outoff += (size_t)n;
	}
	k->outoff = k->outlen = 0;
	k->idle = agent_now_ms() + DNS_CONN_IDLE_MS;
	if (k->eof && k->nwait == 0)
		dns_conn_close(k);
}

static void
dns_conn_io(struct chanio *c, void *obj, int fd, short revents)
{
	struct dns_conn *k = obj;

	if (k->dead || k->fd != fd)
		return;
	if (revents & (POLLOUT | POLLERR | POLLHUP))
		dns_conn_write(k);
	if (!k->dead && (revents & (POLLIN | POLLERR | POLLHUP)))
		dns_conn_read(c, k);
}

static void
dns_accept(struct chanio *c, void *obj, int fd, short revents)
{
	struct dns_conn *k;
	int s;

	while ((s = accept4(fd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) >= 0) {
		if (D.nconns >= DNS_MAX_CONNS ||
		    (k = calloc(1, sizeof(*k))) == NULL) {
			close(s);
			continue;
		}
		k->fd = s;
		k->idle = agent_now_ms() + DNS_CONN_IDLE_MS;
		k->next = D.conns;
		D.conns = k;
		D.nconns++;
	}
}

void
dns_poll(void)
{
	struct dns_conn *k;

	if (D.udp < 0)
		return;
	agent_poll_fd(D.udp, POLLIN, dns_udp_io, NULL);
	agent_poll_fd(D.tcp, POLLIN, dns_accept, NULL);
	for (k = D.conns; k != NULL; k = k->next) {
		short ev = 0;

		if (k->dead)
			continue;
		if (!k->eof && k->nwait < DNS_CONN_WAITS &&
		    k->outlen - k->outoff < DNS_CONN_OUT)
			ev |= POLLIN;
		if (k->outlen > k->outoff)
			ev |= POLLOUT;
		if (ev != 0)
			agent_poll_fd(k->fd, ev, dns_conn_io, k);
	}
}

long
dns_expire(struct chanio *c, long now)
{
	struct dns_ask *a, *next;
	struct dns_conn *k;
	long left = -1, l;

	for (a = D.asks; a != NULL; a = next) {
		next = a->next;
		if ((l = a->deadline - now) <= 0) {
			/* Tell the host it need not answer any more. */
			chanio_send_status(c, CHAN_RESET, a->id, ETIMEDOUT,
			    "capsule-agent: no answer within %d s",
			    DNS_ASK_MS / 1000);
			dns_ask_done(a, DNS_RCODE_SERVFAIL);
		} else if (left < 0 || l < left) {
			left = l;
		}
	}
	for (k = D.conns; k != NULL; k = k->next) {
		/* Queries held back while too many of its own waited. */
		if (!k->dead && k->inlen >= 2 && k->nwait < DNS_CONN_WAITS)
			dns_conn_parse(c, k);
		/* Waiting on the host is bounded by DNS_ASK_MS; answers the
		 * client does not read are not: they count as idle. */
		if (k->dead || k->nwait > 0)
			continue;
		if ((l = k->idle - now) <= 0)
			dns_conn_close(k);
		else if (left < 0 || l < left)
			left = l;
	}
	return left;
}

void
dns_sweep(void)
{
	struct dns_conn **pp = &D.conns, *k;

	while ((k = *pp) != NULL) {
		if (k->dead) {
			*pp = k->next;
			free(k->in);
			free(k->out);
			free(k);
		} else {
			pp = &k->next;
		}
	}
}

static int
dns_bind(int type, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons(AGENT_DNS_PORT) };
	int fd, one = 1, r;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (type == SOCK_STREAM && listen(fd, DNS_MAX_CONNS) < 0))
		goto fail;
	return fd;
fail:
	r = -errno;
	snprintf(err, errlen, "cannot serve DNS on 127.0.0.1:%d/%s: %s",
	    AGENT_DNS_PORT, type == SOCK_STREAM ? "tcp" : "udp",
	    strerror(-r));
	if (fd >= 0)
		close(fd);
	return r;
}

int
dns_start(char *err, size_t errlen)
{
	int u, t;

	if (D.udp >= 0)
		return 0;
	if ((u = dns_bind(SOCK_DGRAM, err, errlen)) < 0)
		return u;
	if ((t = dns_bind(SOCK_STREAM, err, errlen)) < 0) {
		close(u);
		return t;
	}
	D.udp = u;
	D.tcp = t;
	return 0;
}
