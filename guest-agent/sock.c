/*
 * sock.c — byte streams: TCP connections carried over the channel, DATA
 * both ways under credit, each way ended by EOF. Two kinds:
 *
 *   egress ("allow" mode): nftables sends the guest's connections to the
 *	synthetic addresses and the policy's ranges to the listener here
 *	(net.c); each goes to the host as a CONNECT open naming where it was
 *	going (the name behind a synthetic address, else the address), and
 *	nothing is read from it before the host says OPENED;
 *   forward (any mode): the host opens a FORWARD stream for a connection
 *	to a published port, and the agent connects to 127.0.0.1:port.
 *
 * Memory per stream is bounded by the windows: at most CHAN_WINDOW bytes
 * from the host wait here for the socket, and the socket is read only as
 * far as the host's credit goes, straight into the channel's queue.
 *
 * Fail closed: a RESET, a lost host or a socket error ends the connection
 * with an RST, which no program takes for a complete answer.
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

#include <linux/netfilter_ipv4.h>	/* SO_ORIGINAL_DST */

#include "agent.h"

#define SOCK_CONNECT_MS		30000	/* forward: for 127.0.0.1:port */
#define SOCK_READS		8	/* reads per ready socket */
#define SOCK_ACCEPTS		64	/* per wake-up of the listener */
#define SOCK_KEEP_BUF		65536	/* largest idle host-to-socket buffer */

enum sock_state {
	SOCK_CONNECTING,	/* forward: our connect() is under way */
	SOCK_OPENING,		/* egress: the host has not said OPENED */
	SOCK_OPEN,
};

struct sock {
	uint32_t	 id;
	int		 fd;
	enum sock_state	 state;
	int		 dead;		/* free at the next sweep */
	int		 rd_eof;	/* the socket said EOF, and so did we */
	int		 wr_eof;	/* the host said EOF ... */
	int		 wr_shut;	/* ... and the socket heard it */
	uint16_t	 port;		/* forward: for messages */
	long		 deadline;	/* SOCK_CONNECTING until */
	struct chan_tx_window tx;
	struct chan_rx_window rx;
	uint8_t		*buf;		/* from the host: [off, off + len) */
	size_t		 off, len, cap;
};

static struct {
	int		 lfd;		/* the egress listener, or -1 */
	struct sock	**socks;	/* includes the dead until swept */
	size_t		 n, cap;
	size_t		 live;
} K = { .lfd = -1 };

static struct sock *
sock_new(uint32_t id, int fd, enum sock_state state)
{
	struct sock *s;

	if (K.n == K.cap) {
		size_t cap = K.cap ? K.cap * 2 : 64;
		struct sock **p = realloc(K.socks, cap * sizeof(*p));

		if (p == NULL)
			return NULL;
		K.socks = p;
		K.cap = cap;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->id = id;
	s->fd = fd;
	s->state = state;
	chan_tx_init(&s->tx);
	chan_rx_init(&s->rx);
	K.socks[K.n++] = s;
	K.live++;
	return s;
}

struct sock *
sock_find(uint32_t id)
{
	size_t i;

	for (i = 0; i < K.n; i++)
		if (K.socks[i]->id == id && !K.socks[i]->dead)
			return K.socks[i];
	return NULL;
}

size_t
sock_count(void)
{
	return K.live;
}

/* An RST rather than a FIN: the program must not take a cut-off stream
 * for a whole one. */
static void
sock_rst_fd(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void
sock_gone(struct sock *s, int rst)
{
	if (s->dead)
		return;
	if (s->fd >= 0) {
		if (rst)
			sock_rst_fd(s->fd);
		else
			close(s->fd);
		s->fd = -1;
	}
	free(s->buf);
	s->buf = NULL;
	s->off = s->len = s->cap = 0;
	s->dead = 1;
	K.live--;
}

/* The host ended it (RESET), or the agent refused the stream: no frame. */
void
sock_end(struct sock *s)
{
	sock_gone(s, 1);
}

static void
sock_abort(struct chanio *c, struct sock *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Ends the stream for a reason of ours, and tells the host why. */
static void
sock_abort(struct chanio *c, struct sock *s, int err, const char *fmt, ...)
{
	char msg[CHAN_MAX_MSG];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	chanio_send_status(c, CHAN_RESET, s->id, err > 0 ? (uint32_t)err :
	    EIO, "%s", msg);
	sock_gone(s, 1);
}

/* Both ways have ended: a clean close. */
static void
sock_check_done(struct sock *s)
{
	if (!s->dead && s->rd_eof && s->wr_shut)
		sock_gone(s, 0);
}

static void
sock_grant(struct chanio *c, struct sock *s, size_t n)
{
	uint32_t g = chan_rx_release(&s->rx, (uint32_t)n);
	uint8_t p[4];

	if (g > 0 && chan_u32_encode(p, sizeof(p), g) == 4)
		chanio_send(c, CHAN_CREDIT, s->id, p, sizeof(p));
}

/* Host to socket: what is buffered, then the half-close. */
static void
sock_write(struct chanio *c, struct sock *s)
{
	while (s->len > 0 && s->state == SOCK_OPEN) {
		ssize_t n = send(s->fd, s->buf + s->off, s->len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			sock_abort(c, s, errno, "capsule-agent: write to the "
			    "guest's socket: %s", strerror(errno));
			return;
		}
		s->off += (size_t)n;
		s->len -= (size_t)n;
		sock_grant(c, s, (size_t)n);
	}
	if (s->len > 0 || s->state != SOCK_OPEN)
		return;
	s->off = 0;
	if (s->cap > SOCK_KEEP_BUF) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
	if (s->wr_eof && !s->wr_shut) {
		shutdown(s->fd, SHUT_WR);
		s->wr_shut = 1;
		sock_check_done(s);
	}
}

/* Socket to host, as far as credit goes. Returns 1 if it may read more. */
static int
sock_read(struct chanio *c, struct sock *s)
{
	uint32_t allow = chan_tx_allow(&s->tx, CHAN_MAX_DATA);
	uint8_t *buf;
	ssize_t n;

	if (allow == 0 || s->rd_eof || !c->up ||
	    chanio_queued(c) >= AGENT_QUEUE_HIGH)
		return 0;
	if ((buf = chanio_reserve(c, allow)) == NULL)
		return 0;
	n = recv(s->fd, buf, allow, MSG_DONTWAIT);
	if (n > 0) {
		chan_tx_consume(&s->tx, (uint32_t)n);
		chanio_commit(c, CHAN_DATA, s->id, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0) {
		sock_abort(c, s, errno, "capsule-agent: read from the guest's "
		    "socket: %s", strerror(errno));
		return 0;
	}
	chanio_send(c, CHAN_EOF, s->id, NULL, 0);
	s->rd_eof = 1;
	sock_check_done(s);
	return 0;
}

/* ---- frames from the host ---- */

static void
sock_violation(struct chanio *c, struct sock *s, const char *what)
{
	sock_abort(c, s, EPROTO, "capsule-agent: protocol error: %s", what);
}

static void
sock_data(struct chanio *c, struct sock *s, const uint8_t *p, uint32_t len)
{
	if (s->wr_eof) {
		sock_violation(c, s, "DATA after EOF");
		return;
	}
	if (chan_rx_receive(&s->rx, len) < 0) {
		sock_violation(c, s, "DATA beyond the window");
		return;
	}
	if (len == 0)
		return;
	if (s->cap - s->off - s->len < len) {
		size_t need = s->len + len, cap;

		if (s->off > 0) {
			memmove(s->buf, s->buf + s->off, s->len);
			s->off = 0;
		}
		if (s->cap < need) {
			uint8_t *b;

			/* The window bounds need: CHAN_WINDOW at most. */
			cap = s->cap ? s->cap : 16384;
			while (cap < need)
				cap *= 2;
			if ((b = realloc(s->buf, cap)) == NULL) {
				sock_abort(c, s, ENOMEM,
				    "capsule-agent: out of memory");
				return;
			}
			s->buf = b;
			s->cap = cap;
		}
	}
	memcpy(s->buf + s->off + s->len, p, len);
	s->len += len;
	sock_write(c, s);
}

void
sock_frame(struct chanio *c, struct sock *s, const struct chan_hdr *h,
    const uint8_t *p)
{
	uint32_t v;

	switch (h->kind) {
	case CHAN_OPENED:
		if (s->state != SOCK_OPENING || h->len != 0) {
			sock_violation(c, s, "unexpected OPENED");
			return;
		}
		s->state = SOCK_OPEN;
		sock_write(c, s);
		break;
	case CHAN_RESET:
		sock_end(s);
		break;
	case CHAN_DATA:
		sock_data(c, s, p, h->len);
		break;
	case CHAN_EOF:
		if (s->wr_eof || h->len != 0) {
			sock_violation(c, s, "unexpected EOF");
			return;
		}
		s->wr_eof = 1;
		sock_write(c, s);
		break;
	case CHAN_CREDIT:
		if (chan_u32_decode(p, h->len, &v) < 0)
			sock_violation(c, s, "bad CREDIT payload");
		else if (chan_tx_grant(&s->tx, v) < 0)
			sock_violation(c, s, "CREDIT beyond the window");
		break;
	default:
		sock_violation(c, s, chan_kind_name(h->kind));
		break;
	}
}

/* ---- forward: the host's connections to a port in the guest ---- */

static void
sock_connected(struct chanio *c, struct sock *s, int err)
{
	if (err == 0) {
		s->state = SOCK_OPEN;
		chanio_send(c, CHAN_OPENED, s->id, NULL, 0);
		sock_write(c, s);
		return;
	}
	if (err == ECONNREFUSED)
		sock_abort(c, s, err, "nothing listens on port %u in the "
		    "guest", s->port);
	else if (err == ETIMEDOUT)
		sock_abort(c, s, err, "port %u in the guest did not take the "
		    "connection within %d s", s->port, SOCK_CONNECT_MS / 1000);
	else
		sock_abort(c, s, err, "cannot connect to port %u in the "
		    "guest: %s", s->port, strerror(err));
}

int
sock_forward(struct chanio *c, uint32_t id, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons(port) };
	struct sock *s;
	int fd, r;

	if (agent_streams_full()) {
		chanio_send_status(c, CHAN_RESET, id, EMFILE, "capsule-agent: "
		    "too many streams at once (limit %d)", AGENT_MAX_STREAMS);
		return -EMFILE;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0) {
		r = errno;
		chanio_send_status(c, CHAN_RESET, id, (uint32_t)r,
		    "capsule-agent: socket: %s", strerror(r));
		return -r;
	}
	if ((s = sock_new(id, fd, SOCK_CONNECTING)) == NULL) {
		close(fd);
		chanio_send_status(c, CHAN_RESET, id, ENOMEM,
		    "capsule-agent: out of memory");
		return -ENOMEM;
	}
	s->port = port;
	s->deadline = agent_now_ms() + SOCK_CONNECT_MS;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		sock_connected(c, s, 0);
	else if (errno != EINPROGRESS)
		sock_connected(c, s, errno);
	return 0;
}

/* ---- egress: the guest's connections out ---- */

static int
sock_synthetic(uint32_t addr)
{
	uint32_t mask = 0xffffffffu << (32 - CHAN_NET_SYNTH_PREFIX);

	return (addr & mask) == CHAN_NET_SYNTH;
}

/* A connection nftables sent us: say where it was going, or refuse it. */
static void
sock_egress(struct chanio *c, int fd)
{
	struct chan_open o = { .type = CHAN_OPEN_CONNECT };
	uint8_t buf[8 + CHAN_MAX_NAME];
	struct sockaddr_in dst;
	socklen_t dlen = sizeof(dst);
	uint32_t addr, id;
	struct sock *s;
	long n;

	/* Fail closed: without the host nothing goes anywhere. */
	if (!c->up || !(agent_features() & CHAN_FEAT_STREAMS) ||
	    agent_streams_full() ||
	    getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) < 0 ||
	    dst.sin_family != AF_INET)
		goto refuse;
	addr = ntohl(dst.sin_addr.s_addr);
	o.port = ntohs(dst.sin_port);
	if (sock_synthetic(addr)) {
		if ((o.name = dns_name_of(addr)) == NULL)
			goto refuse;	/* no name was given this address */
		o.addr_kind = CHAN_ADDR_NAME;
		o.name_len = (uint32_t)strlen(o.name);
	} else if ((addr >> 24) == 127) {
		goto refuse;	/* not redirected: straight to the listener */
	} else {
		o.addr_kind = CHAN_ADDR_IPV4;
		memcpy(o.ipv4, &dst.sin_addr.s_addr, 4);
	}
	if ((n = chan_open_encode(buf, sizeof(buf), &o)) < 0)
		goto refuse;
	id = agent_guest_id();
	if ((s = sock_new(id, fd, SOCK_OPENING)) == NULL)
		goto refuse;
	if (chanio_send(c, CHAN_OPEN, id, buf, (size_t)n) < 0)
		sock_gone(s, 1);
	return;
refuse:
	sock_rst_fd(fd);
}

static void
sock_accept(struct chanio *c, void *obj, int fd, short revents)
{
	int i, s;

	for (i = 0; i < SOCK_ACCEPTS; i++) {
		if ((s = accept4(fd, NULL, NULL, SOCK_NONBLOCK |
		    SOCK_CLOEXEC)) < 0)
			return;
		sock_egress(c, s);
	}
}

int
sock_listen(char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons(AGENT_EGRESS_PORT) };
	int fd, one = 1, r;

	if (K.lfd >= 0)
		return 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, SOMAXCONN) < 0)
		goto fail;
	K.lfd = fd;
	return 0;
fail:
	r = -errno;
	snprintf(err, errlen, "cannot listen for outbound connections on "
	    "127.0.0.1:%d: %s", AGENT_EGRESS_PORT, strerror(-r));
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- the loop ---- */

static void
sock_io(struct chanio *c, void *obj, int fd, short revents)
{
	struct sock *s = obj;
	socklen_t len = sizeof(int);
	int err = 0, i;

	if (s->dead || s->fd != fd)
		return;
	if (s->state == SOCK_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0 && !(revents & POLLOUT))
			return;
		sock_connected(c, s, err);
		return;
	}
	if (revents & (POLLOUT | POLLERR | POLLHUP))
		sock_write(c, s);
	if (revents & (POLLIN | POLLERR | POLLHUP))
		for (i = 0; i < SOCK_READS && !s->dead; i++)
			if (!sock_read(c, s))
				break;
}

void
sock_poll(struct chanio *c)
{
	int room = c->up && chanio_queued(c) < AGENT_QUEUE_HIGH;
	size_t i;

	if (K.lfd >= 0)
		agent_poll_fd(K.lfd, POLLIN, sock_accept, NULL);
	for (i = 0; i < K.n; i++) {
		struct sock *s = K.socks[i];
		short ev = 0;

		if (s->dead)
			continue;
		if (s->state == SOCK_CONNECTING) {
			ev = POLLOUT;
		} else if (s->state == SOCK_OPEN) {
			if (!s->rd_eof && room && chan_tx_allow(&s->tx, 1) > 0)
				ev |= POLLIN;
			if (s->len > 0)
				ev |= POLLOUT;
		}
		if (ev != 0)
			agent_poll_fd(s->fd, ev, sock_io, s);
	}
}

long
sock_expire(struct chanio *c, long now)
{
	long left = -1, l;
	size_t i;

	for (i = 0; i < K.n; i++) {
		struct sock *s = K.socks[i];

		if (s->dead || s->state != SOCK_CONNECTING)
			continue;
		if ((l = s->deadline - now) <= 0)
			sock_connected(c, s, ETIMEDOUT);
		else if (left < 0 || l < left)
			left = l;
	}
	return left;
}

void
sock_sweep(void)
{
	size_t i, j = 0;

	for (i = 0; i < K.n; i++) {
		if (K.socks[i]->dead)
			free(K.socks[i]);
		else
			K.socks[j++] = K.socks[i];
	}
	K.n = j;
}

/* The host is gone: every connection it carried ends, none quietly. */
void
sock_link(int up)
{
	size_t i;

	if (up)
		return;
	for (i = 0; i < K.n; i++)
		sock_gone(K.socks[i], 1);
}
