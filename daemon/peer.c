/*
 * peer.c — a JSON-lines connection on a stream socket (see peer.h).
 *
 * Callbacks may free the peer they are called for; `busy` and `dead` make
 * that safe by deferring the real free until the callback has returned.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "osdep.h"
#include "peer.h"

struct peer {
	struct bufferevent	*bev;
	struct event		*kick;		/* re-run line delivery */
	struct event		*watch;		/* hang-up check while not reading */
	struct event		*partial;	/* an unfinished line's deadline */
	size_t			 counted;	/* input counted in the total */
	struct peer_cbs		 cbs;
	void			*arg;
	size_t			 max_line;
	int			 paused;
	int			 busy;		/* inside a callback */
	int			 dead;		/* freed while busy */
	int			 eof_seen;	/* read side ended */
	int			 eof_told;
	int			 hangup;
	int			 hangup_told;
	int			 closing;	/* free once flushed */
};

#define PEER_WATCH_MS	500

/* Unfinished input held by all peers together, and its limits. */
static size_t peer_input_total;
static size_t peer_input_max = PEER_INPUT_MAX;
static unsigned peer_partial_ms = PEER_PARTIAL_MS;

static void	peer_deliver(struct peer *p);
static void	peer_watch(struct peer *p);

void
peer_set_limits(size_t input_max, unsigned partial_ms)
{
	peer_input_max = input_max;
	peer_partial_ms = partial_ms;
}

/* Brings the peer's share of the total up to date. */
static void
peer_count(struct peer *p, size_t now)
{
	peer_input_total = peer_input_total - p->counted + now;
	p->counted = now;
}

static void
peer_destroy(struct peer *p)
{
	peer_count(p, 0);
	if (p->kick != NULL)
		event_free(p->kick);
	if (p->watch != NULL)
		event_free(p->watch);
	if (p->partial != NULL)
		event_free(p->partial);
	bufferevent_free(p->bev);
	free(p);
}

/* Returns 1 if the peer was freed during the callback section. */
static int
peer_leave(struct peer *p)
{
	p->busy--;
	if (p->busy == 0 && p->dead) {
		peer_destroy(p);
		return 1;
	}
	return p->dead;
}

static int
peer_is_hangup(struct peer *p)
{
	struct pollfd pfd = { .fd = bufferevent_getfd(p->bev),
	    .events = POLLOUT };

	/* POLLHUP on a Unix socket means both directions are shut: the other
	 * end closed, rather than just shutting its write side. */
	if (poll(&pfd, 1, 0) < 0)
		return 1;
	return (pfd.revents & (POLLHUP | POLLERR)) != 0;
}

/* Stop reading for good and tell the owner why. */
static void
peer_overflow(struct peer *p, const char *why)
{
	struct evbuffer *in = bufferevent_get_input(p->bev);

	bufferevent_disable(p->bev, EV_READ);
	evbuffer_drain(in, evbuffer_get_length(in));
	peer_count(p, 0);
	event_del(p->partial);
	p->paused = 1;
	if (p->cbs.overflow != NULL)
		p->cbs.overflow(p, why, p->arg);
}

static void
peer_too_long(struct peer *p)
{
	char why[96];

	snprintf(why, sizeof(why), "line longer than %zu bytes", p->max_line);
	peer_overflow(p, why);
}

/* After reading: the unfinished rest counts against everyone's budget,
 * and must be finished in time while we read. */
static void
peer_account(struct peer *p)
{
	size_t held = evbuffer_get_length(bufferevent_get_input(p->bev));
	struct timeval tv = { peer_partial_ms / 1000,
	    (peer_partial_ms % 1000) * 1000 };

	peer_count(p, held);
	if (held > 0 && peer_input_total > peer_input_max && !p->paused) {
		peer_overflow(p, "capsuled is holding too much unfinished "
		    "input from its clients; finish lines promptly");
		return;
	}
	if (held == 0 || p->paused || p->eof_seen)
		event_del(p->partial);
	else if (!event_pending(p->partial, EV_TIMEOUT, NULL))
		event_add(p->partial, &tv);
}

static void
peer_partial_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	char why[96];

	if (p->dead || p->closing || p->paused)
		return;
	snprintf(why, sizeof(why), "a line stayed unfinished for %u s",
	    peer_partial_ms / 1000);
	p->busy++;
	peer_overflow(p, why);
	peer_leave(p);
}

static void
peer_deliver(struct peer *p)
{
	struct evbuffer *in = bufferevent_get_input(p->bev);
	char *line;
	size_t n;

	if (p->closing || p->dead)
		return;
	p->busy++;
	while (!p->paused && !p->dead && !p->closing) {
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		if (line == NULL && p->eof_seen && evbuffer_get_length(in) > 0) {
			/* A last line without its newline still counts. */
			n = evbuffer_get_length(in);
			if (n <= p->max_line) {
				line = malloc(n + 1);
				if (line != NULL) {
					evbuffer_remove(in, line, n);
					line[n] = '\0';
				}
			}
		}
		if (line == NULL) {
			if (evbuffer_get_length(in) > p->max_line)
				peer_too_long(p);
			break;
		}
		if (n > p->max_line) {
			free(line);
			peer_too_long(p);
			break;
		}
		p->cbs.line(p, line, n, p->arg);
		free(line);
	}
	if (!p->dead && !p->closing && !p->paused && p->eof_seen &&
	    !p->eof_told && evbuffer_get_length(in) == 0) {
		p->eof_told = 1;
		p->hangup_told = p->hangup;
		if (p->cbs.eof != NULL)
			p->cbs.eof(p, p->hangup, p->arg);
	}
	if (!p->dead && !p->closing)
		peer_account(p);
	if (!p->dead)
		peer_watch(p);
	peer_leave(p);
}

/*
 * While we are not reading (paused, or after a half-close) the socket tells
 * us nothing, yet the client may go away entirely: a command must not run
 * on for a client that is gone. So poll for a full hang-up now and then.
 */
static void
peer_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	struct evbuffer *out;

	if (p->dead || p->closing || p->hangup_told || !peer_is_hangup(p))
		return;
	p->eof_seen = 1;
	p->hangup = 1;
	p->hangup_told = 1;
	p->eof_told = 1;
	out = bufferevent_get_output(p->bev);
	evbuffer_drain(out, evbuffer_get_length(out));
	bufferevent_disable(p->bev, EV_READ | EV_WRITE);
	event_del(p->watch);
	if (p->cbs.eof != NULL) {
		p->busy++;
		p->cbs.eof(p, 1, p->arg);
		peer_leave(p);
	}
}

static void
peer_watch(struct peer *p)
{
	struct timeval tv = { 0, PEER_WATCH_MS * 1000 };
	int idle = (p->paused || p->eof_seen) && !p->hangup_told &&
	    !p->closing;

	if (idle && !event_pending(p->watch, EV_TIMEOUT, NULL))
		event_add(p->watch, &tv);
	else if (!idle)
		event_del(p->watch);
}

static void
peer_read_cb(struct bufferevent *bev, void *arg)
{
	peer_deliver(arg);
}

static void
peer_write_cb(struct bufferevent *bev, void *arg)
{
	struct peer *p = arg;

	if (p->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			peer_free(p);
		return;
	}
	if (p->cbs.drain != NULL) {
		p->busy++;
		p->cbs.drain(p, p->arg);
		peer_leave(p);
	}
}

static void
peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct peer *p = arg;

	if (p->closing) {
		peer_free(p);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		p->eof_seen = 1;
		p->hangup = 1;
	} else if (what & BEV_EVENT_EOF) {
		p->eof_seen = 1;
		p->hangup = peer_is_hangup(p);
	} else {
		return;
	}
	bufferevent_disable(bev, EV_READ);
	if (p->hangup) {
		/* Nobody will read what is queued. */
		evbuffer_drain(bufferevent_get_output(bev),
		    evbuffer_get_length(bufferevent_get_output(bev)));
		bufferevent_disable(bev, EV_WRITE);
	}
	peer_deliver(p);
}

static void
peer_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	peer_deliver(arg);
}

struct peer *
peer_new(struct event_base *base, int fd, size_t max_line,
    const struct peer_cbs *cbs, void *arg)
{
	struct peer *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	p->kick = event_new(base, -1, 0, peer_kick_cb, p);
	p->watch = event_new(base, -1, EV_PERSIST, peer_watch_cb, p);
	p->partial = evtimer_new(base, peer_partial_cb, p);
	if (p->bev == NULL || p->kick == NULL || p->watch == NULL ||
	    p->partial == NULL) {
		if (p->bev != NULL)
			bufferevent_free(p->bev);
		else
			close(fd);
		if (p->kick != NULL)
			event_free(p->kick);
		if (p->watch != NULL)
			event_free(p->watch);
		if (p->partial != NULL)
			event_free(p->partial);
		free(p);
		return NULL;
	}
	p->cbs = *cbs;
	p->arg = arg;
	p->max_line = max_line;
	/* Read at most a little past the cap before a line must end. */
	bufferevent_setwatermark(p->bev, EV_READ, 0, max_line + 2);
	bufferevent_setcb(p->bev, peer_read_cb, peer_write_cb, peer_event_cb,
	    p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	return p;
}

void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	if (p->busy > 0) {
		p->dead = 1;
		bufferevent_disable(p->bev, EV_READ | EV_WRITE);
		return;
	}
	peer_destroy(p);
}

int
peer_send(struct peer *p, const char *buf, size_t len)
{
	if (p->dead || p->hangup)
		return -EPIPE;
	return bufferevent_write(p->bev, buf, len) == 0 ? 0 : -ENOMEM;
}

int
peer_send_json(struct peer *p, json_t *o)
{
	char *s;
	int r;

	if (o == NULL)
		return -ENOMEM;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		return -ENOMEM;
	if ((r = peer_send(p, s, strlen(s))) == 0)
		r = peer_send(p, "\n", 1);
	free(s);
	return r;
}

size_t
peer_queued(const struct peer *p)
{
	return evbuffer_get_length(bufferevent_get_output(p->bev));
}

void
peer_set_drain_mark(struct peer *p, size_t mark)
{
	bufferevent_setwatermark(p->bev, EV_WRITE, mark, 0);
}

void
peer_pause(struct peer *p)
{
	p->paused = 1;
	bufferevent_disable(p->bev, EV_READ);
	event_del(p->partial);
	peer_watch(p);
}

void
peer_resume(struct peer *p)
{
	if (!p->paused || p->dead || p->closing)
		return;
	p->paused = 0;
	if (!p->eof_seen)
		bufferevent_enable(p->bev, EV_READ);
	/* Lines may already be buffered; deliver them from the loop, not
	 * from inside whatever callback is resuming us. */
	event_active(p->kick, 0, 0);
}

void
peer_close_after_flush(struct peer *p)
{
	if (p->dead || p->closing)
		return;
	p->closing = 1;
	event_del(p->watch);
	bufferevent_disable(p->bev, EV_READ);
	if (p->hangup || peer_queued(p) == 0) {
		peer_free(p);
		return;
	}
	bufferevent_setwatermark(p->bev, EV_WRITE, 0, 0);
	bufferevent_enable(p->bev, EV_WRITE);
}

int
peer_fd(const struct peer *p)
{
	return (int)bufferevent_getfd(p->bev);
}

int
peer_uid(const struct peer *p)
{
	uid_t uid;

	if (osdep_peer(peer_fd(p), &uid, NULL, NULL) < 0)
		return -1;
	return (int)uid;
}

struct listener {
	int		 fd;
	struct event	*ev;
	struct event	*retry;
	listener_cb	 accept;
	void		*arg;
	char		 what[64];
};

static void
listener_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { 1, 0 };
	int c;

	while ((c = osdep_accept(fd, NULL, NULL)) >= 0)
		l->accept(c, l->arg);
	if (errno == EMFILE || errno == ENFILE) {
		log_warn("%s: out of file descriptors; not accepting "
		    "connections for a second", l->what);
		event_del(l->ev);
		evtimer_add(l->retry, &tv);
	} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		log_warn("%s: accept: %s", l->what, strerror(errno));
}

static void
listener_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	event_add(l->ev, NULL);
}

struct listener *
listener_new(struct event_base *base, int fd, const char *what,
    listener_cb accept, void *arg)
{
	struct listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->fd = fd;
	l->accept = accept;
	l->arg = arg;
	snprintf(l->what, sizeof(l->what), "%s", what);
	l->ev = event_new(base, fd, EV_READ | EV_PERSIST, listener_accept_cb,
	    l);
	l->retry = evtimer_new(base, listener_retry_cb, l);
	if (l->ev == NULL || l->retry == NULL || event_add(l->ev, NULL) < 0) {
		listener_free(l);
		return NULL;
	}
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->ev != NULL)
		event_free(l->ev);
	if (l->retry != NULL)
		event_free(l->retry);
	close(l->fd);
	free(l);
}
