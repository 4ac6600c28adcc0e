/*
 * chanio.c — the agent's end of the virtio-serial channel.
 *
 * Reads into a buffer that holds one frame at most and hands whole frames
 * to a callback; queues output and writes it without blocking, asking for
 * POLLOUT only while something is queued.
 *
 * virtio-serial has no accept(): when nobody is connected on the host side
 * the port polls POLLHUP, reads return 0 and writes would block. Because
 * POLLHUP is level-triggered, a disconnected port is not polled at all; the
 * agent calls chanio_check() on a timer until the host is back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* pipe2, ptsname_r, signalfd: CMake defines it too */
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define CHANIO_RBUF		(CHAN_HDR_LEN + CHAN_MAX_PAYLOAD)
#define CHANIO_READS		64	/* reads per wake-up, for fairness */
#define CHANIO_KEEP		(1024 * 1024)	/* largest idle write buffer */
/* A host that sends without reading would have us queue replies forever;
 * past this much queued output we stop reading until it drains. */
#define CHANIO_QUEUE_MAX	(16 * 1024 * 1024)

int
chanio_init(struct chanio *c, int fd, chanio_frame_fn *on_frame,
    chanio_link_fn *on_link, void *arg)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->on_frame = on_frame;
	c->on_link = on_link;
	c->arg = arg;
	if ((c->rbuf = malloc(CHANIO_RBUF)) == NULL)
		return -ENOMEM;
	return 0;
}

size_t
chanio_queued(const struct chanio *c)
{
	return c->wlen - c->woff;
}

short
chanio_events(const struct chanio *c)
{
	if (!c->up)
		return 0;
	if (chanio_queued(c) >= CHANIO_QUEUE_MAX)
		return POLLOUT;
	return POLLIN | (chanio_queued(c) > 0 ? POLLOUT : 0);
}

/* Throws away whatever the port still holds: bytes of a host that is gone
 * must not be read as the start of the next host's stream. */
static void
chanio_discard(struct chanio *c)
{
	uint8_t junk[4096];
	int i;

	for (i = 0; i < 256; i++) {
		ssize_t n = read(c->fd, junk, sizeof(junk));

		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		break;
	}
}

static void
chanio_down(struct chanio *c)
{
	if (!c->up)
		return;
	c->up = 0;
	c->rlen = 0;
	c->woff = c->wlen = 0;
	chanio_discard(c);
	c->on_link(c->arg, 0);
}

int
chanio_check(struct chanio *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	if (c->up)
		return 1;
	if (poll(&p, 1, 0) < 0)
		return -errno;
	if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) {
		chanio_discard(c);
		return 0;
	}
	c->up = 1;
	c->rlen = 0;
	c->woff = c->wlen = 0;
	c->on_link(c->arg, 1);
	return 1;
}

/* Hands every whole frame in the read buffer to the callback. A bad header
 * is fatal to the channel: there is no way to find the next frame. */
static int
chanio_split(struct chanio *c)
{
	struct chan_hdr h;
	size_t off = 0;
	long r;

	while (c->up) {
		r = chan_frame_ready(c->rbuf + off, c->rlen - off, &h);
		if (r < 0) {
			c->rlen = 0;
			return (int)r;
		}
		if (r == 0)
			break;
		c->on_frame(c->arg, &h, c->rbuf + off + CHAN_HDR_LEN);
		off += (size_t)r;
	}
	if (!c->up) {
		c->rlen = 0;
		return 0;
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	return 0;
}

static int
chanio_read(struct chanio *c)
{
	int i, r;

	for (i = 0; i < CHANIO_READS && c->up; i++) {
		ssize_t n;

		/* Cannot happen: a buffer this full holds a whole frame. */
		if (c->rlen >= CHANIO_RBUF)
			return -EMSGSIZE;
		if (chanio_queued(c) >= CHANIO_QUEUE_MAX)
			return 0;
		n = read(c->fd, c->rbuf + c->rlen, CHANIO_RBUF - c->rlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			agent_log("read channel: %s", strerror(errno));
			chanio_down(c);
			return 0;
		}
		if (n == 0) {
			chanio_down(c);
			return 0;
		}
		c->rlen += (size_t)n;
		if ((r = chanio_split(c)) < 0)
			return r;
	}
	return 0;
}

static void
chanio_write(struct chanio *c)
{
	while (c->up && c->woff < c->wlen) {
		ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			agent_log("write channel: %s", strerror(errno));
			chanio_down(c);
			return;
		}
		c->woff += (size_t)n;
	}
	if (c->woff == c->wlen) {
		c->woff = c->wlen = 0;
		if (c->wcap > CHANIO_KEEP) {
			free(c->wbuf);
			c->wbuf = NULL;
			c->wcap = 0;
		}
	}
}

int
chanio_handle(struct chanio *c, short revents)
{
	int r;

	if (!c->up)
		return 0;
	/* The port says POLLHUP only while the host is away: whatever it
	 * sent last can no longer be answered. */
	if (revents & (POLLHUP | POLLNVAL)) {
		chanio_down(c);
		return 0;
	}
	if (revents & (POLLIN | POLLERR))
		if ((r = chanio_read(c)) < 0)
			return r;
	if (revents & (POLLOUT | POLLERR))
		chanio_write(c);
	return 0;
}

int
chanio_flush(struct chanio *c, int timeout_ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLOUT };
	long deadline = agent_now_ms() + timeout_ms;

	while (c->up && chanio_queued(c) > 0) {
		long left = deadline - agent_now_ms();

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
		if (p.revents & POLLHUP)
			return -ENOTCONN;
		chanio_write(c);
	}
	return chanio_queued(c) > 0 ? -ENOTCONN : 0;
}

/* Returns room for `max` payload bytes at the tail of the queue; the frame
 * only exists once chanio_commit() says how long it is. */
uint8_t *
chanio_reserve(struct chanio *c, size_t max)
{
	size_t need = CHAN_HDR_LEN + max;

	if (c->wcap - c->wlen < need && c->woff > 0) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
	}
	if (c->wcap - c->wlen < need) {
		size_t cap = c->wcap ? c->wcap : 65536;
		uint8_t *p;

		while (cap - c->wlen < need)
			cap *= 2;
		if ((p = realloc(c->wbuf, cap)) == NULL)
			return NULL;
		c->wbuf = p;
		c->wcap = cap;
	}
	return c->wbuf + c->wlen + CHAN_HDR_LEN;
}

int
chanio_commit(struct chanio *c, unsigned kind, uint32_t stream, size_t len)
{
	struct chan_hdr h = { .kind = (uint8_t)kind, .stream = stream,
	    .len = (uint32_t)len };

	if (!c->up)
		return -ENOTCONN;
	chan_hdr_encode(c->wbuf + c->wlen, &h);
	c->wlen += CHAN_HDR_LEN + len;
	return 0;
}

int
chanio_send(struct chanio *c, unsigned kind, uint32_t stream, const void *p,
    size_t len)
{
	uint8_t *q;

	if (len > CHAN_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (!c->up)
		return -ENOTCONN;
	if ((q = chanio_reserve(c, len)) == NULL)
		return -ENOMEM;
	if (len > 0)
		memcpy(q, p, len);
	return chanio_commit(c, kind, stream, len);
}

/* fmt, ap into msg (CHAN_MAX_MSG bytes), cut to fit; returns the length
 * (0 if it cannot be formatted). */
static uint32_t
chanio_format(char *msg, const char *fmt, va_list ap)
{
	int n = vsnprintf(msg, CHAN_MAX_MSG, fmt, ap);

	if (n < 0) {
		msg[0] = '\0';
		return 0;
	}
	return (size_t)n < CHAN_MAX_MSG ? (uint32_t)n : CHAN_MAX_MSG - 1;
}

int
chanio_send_error(struct chanio *c, uint32_t stream, const char *fmt, ...)
{
	char msg[CHAN_MAX_MSG];
	uint32_t n;
	va_list ap;

	va_start(ap, fmt);
	n = chanio_format(msg, fmt, ap);
	va_end(ap);
	return chanio_send(c, CHAN_ERROR, stream, msg, n);
}

/* RESET or NET_DONE: an errno value (0: fine) and why. */
int
chanio_send_status(struct chanio *c, unsigned kind, uint32_t stream,
    uint32_t code, const char *fmt, ...)
{
	char msg[CHAN_MAX_MSG];
	uint8_t p[4 + CHAN_MAX_MSG];
	struct chan_status st = { .code = code, .msg = msg };
	va_list ap;
	int n;

	va_start(ap, fmt);
	st.msg_len = chanio_format(msg, fmt, ap);
	va_end(ap);
	if ((n = chan_status_encode(p, sizeof(p), &st)) < 0)
		return n;
	return chanio_send(c, kind, stream, p, (size_t)n);
}
