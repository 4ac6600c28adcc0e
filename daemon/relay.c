/*
 * relay.c — a TCP connection over an agent byte stream (see relay.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "relay.h"
#include "util.h"

/* How far the socket is read ahead of the agent's credit. The credit
 * window, not this, sets the pace; this bounds what waits in between. */
#define RELAY_READ_AHEAD	(64 * 1024)

struct relay {
	struct bufferevent	*bev;
	struct evbuffer_cb_entry *out_cb;
	struct agent_stream	*s;		/* NULL once it is over */
	relay_done_fn		*done;
	void			*arg;
	int			 up;		/* the stream is open */
	int			 sock_eof;	/* the socket sends no more */
	int			 eof_sent;	/* ... and the agent knows */
	int			 guest_eof;	/* the agent sends no more */
	int			 shut;		/* ... and the socket knows */
	uint64_t		 t0;
	struct relay_stats	 st;
};

/* Ends the relay and frees it; why NULL: cleanly. The socket is reset
 * (not closed gracefully) when something went wrong, so that its peer
 * does not take a cut-off stream for a complete one. */
static void
relay_finish(struct relay *r, const char *why)
{
	struct relay_stats st = r->st;
	relay_done_fn *done = r->done;
	void *arg = r->arg;
	struct linger lg = { 1, 0 };

	st.ms = util_now_ms() - r->t0;
	if (why != NULL)
		setsockopt(bufferevent_getfd(r->bev), SOL_SOCKET, SO_LINGER,
		    &lg, sizeof(lg));
	evbuffer_remove_cb_entry(bufferevent_get_output(r->bev), r->out_cb);
	bufferevent_free(r->bev);
	free(r);
	if (done != NULL)
		done(why, &st, arg);
}

/* Both ways ended: over once the socket has been told. */
static int
relay_check_done(struct relay *r)
{
	if (r->s != NULL || !r->shut)
		return 0;
	relay_finish(r, NULL);
	return 1;
}

/* The agent sends no more: tell the socket once it has what came before. */
static int
relay_shut(struct relay *r)
{
	if (!r->guest_eof || r->shut ||
	    evbuffer_get_length(bufferevent_get_output(r->bev)) > 0)
		return 0;
	r->shut = 1;
	shutdown(bufferevent_getfd(r->bev), SHUT_WR);
	return relay_check_done(r);
}

/* Socket bytes to the agent, as far as credit goes; then, once the socket
 * has ended and everything went, EOF. Returns 1 if r is gone. */
static int
relay_push(struct relay *r)
{
	struct evbuffer *in = bufferevent_get_input(r->bev);

	if (r->s == NULL || !r->up)
		return 0;
	while (evbuffer_get_length(in) > 0) {
		size_t len = evbuffer_get_contiguous_space(in), n;
		const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);

		if (p == NULL || (n = agent_bytes_write(r->s, p, len)) == 0)
			break;
		evbuffer_drain(in, n);
		r->st.to_guest += n;
	}
	/*
	 * Read ahead as far as RELAY_READ_AHEAD, stop reading until the agent
	 * grants more (relay_credit). Merely sitting at the high watermark is not
	 * enough: libevent calls the read callback again and again while
	 * the input stays at the mark and reading is enabled.
	 */
	if (!r->sock_eof) {
		if (evbuffer_get_length(in) >= RELAY_READ_AHEAD)
			bufferevent_disable(r->bev, EV_READ);
		else
			bufferevent_enable(r->bev, EV_READ);
	}
	if (r->sock_eof && !r->eof_sent && evbuffer_get_length(in) == 0) {
		r->eof_sent = 1;
		if (agent_bytes_eof(r->s)) {
			/* The agent had ended its way: the stream is over. */
			r->s = NULL;
			r->guest_eof = 1;
			return relay_shut(r) || relay_check_done(r);
		}
	}
	return 0;
}

static void
relay_read_cb(struct bufferevent *bev, void *arg)
{
	relay_push(arg);
}

static void
relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;
	char why[160];
	int e = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_ERROR) {
		snprintf(why, sizeof(why), "the connection failed: %s",
		    e != 0 ? strerror(e) : "reset");
		if (r->s != NULL)
			agent_bytes_reset(r->s, e != 0 ? (uint32_t)e :
			    ECONNRESET, "%s", why);
		r->s = NULL;
		relay_finish(r, why);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		r->sock_eof = 1;
		relay_push(r);
	}
}

/* The socket took bytes the agent sent: credit them back. */
static void
relay_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct relay *r = arg;

	if (info->n_deleted == 0)
		return;
	if (r->s != NULL)
		agent_stream_release(r->s, info->n_deleted);
}

/* The output buffer drained (write watermark 0): a pending shutdown. */
static void
relay_write_cb(struct bufferevent *bev, void *arg)
{
	relay_shut(arg);
}

struct relay *
relay_new(struct bufferevent *bev, relay_done_fn *done, void *arg)
{
	struct relay *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->bev = bev;
	r->done = done;
	r->arg = arg;
	r->t0 = util_now_ms();
	if ((r->out_cb = evbuffer_add_cb(bufferevent_get_output(bev),
	    relay_out_cb, r)) == NULL) {
		free(r);
		return NULL;
	}
	bufferevent_setcb(bev, relay_read_cb, relay_write_cb, relay_event_cb,
	    r);
	bufferevent_setwatermark(bev, EV_READ, 0, RELAY_READ_AHEAD);
	bufferevent_disable(bev, EV_READ);
	bufferevent_enable(bev, EV_WRITE);
	return r;
}

static void
relay_up(struct relay *r)
{
	r->up = 1;
	bufferevent_enable(r->bev, EV_READ);
	relay_push(r);
}

void
relay_attach(struct relay *r, struct agent_stream *s, int up)
{
	r->s = s;
	if (up)
		relay_up(r);
}

void
relay_abort(struct relay *r, const char *why)
{
	if (r->s != NULL)
		agent_bytes_reset(r->s, ECONNABORTED, "%s", why);
	r->s = NULL;
	r->done = NULL;
	relay_finish(r, why);
}

static void
relay_opened(struct agent_stream *s, void *arg)
{
	relay_up(arg);
}

static void
relay_data(struct agent_stream *s, const uint8_t *buf, size_t len, void *arg)
{
	struct relay *r = arg;

	/* Credit goes back as the socket takes it (relay_out_cb). */
	if (bufferevent_write(r->bev, buf, len) < 0) {
		agent_bytes_reset(s, ENOMEM, "out of memory");
		r->s = NULL;
		relay_finish(r, "out of memory");
		return;
	}
	r->st.from_guest += len;
}

static void
relay_eof(struct agent_stream *s, void *arg)
{
	struct relay *r = arg;

	r->guest_eof = 1;
	relay_shut(r);
}

static void
relay_credit(struct agent_stream *s, void *arg)
{
	relay_push(arg);
}

static void
relay_end(struct agent_stream *s, uint32_t code, const char *msg,
    size_t len, void *arg)
{
	struct relay *r = arg;
	char why[CHAN_MAX_MSG + 64];

	r->s = NULL;
	if (code == 0) {
		/* Both ways ended: the socket hears it once it has all. */
		r->guest_eof = 1;
		if (!relay_shut(r))
			relay_check_done(r);
		return;
	}
	snprintf(why, sizeof(why), "%.*s", (int)(len > CHAN_MAX_MSG ?
	    CHAN_MAX_MSG : len), msg != NULL ? msg : "");
	if (why[0] == '\0')
		snprintf(why, sizeof(why), "the guest ended it: %s",
		    strerror((int)code));
	relay_finish(r, why);
}

const struct agent_bytes_cbs relay_stream_cbs = {
	.opened = relay_opened,
	.data = relay_data,
	.eof = relay_eof,
	.credit = relay_credit,
	.end = relay_end,
};
