/*
 * agent.c — frames to and from a VM's guest agent (see agent.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "agent.h"
#include "log.h"
#include "osdep.h"
#include "proto.h"
#include "util.h"

#define AGENT_LOG_BURST	5
#define AGENT_GUEST_STREAMS	256	/* guest-opened streams at once */
#define AGENT_HOST_BYTES	256	/* host-opened byte streams at once */
/*
 * While more than this waits to go to the guest, the channel is not read:
 * a guest that sends without reading (each refused OPEN costs a RESET)
 * cannot make capsuled queue without end. Reading resumes at half of it.
 * DATA is bounded apart from this, by each stream's credit.
 */
#define AGENT_OUT_HIGH	(1024 * 1024)

struct agent_stream {
	TAILQ_ENTRY(agent_stream) entry;
	struct agent		*agent;
	uint32_t		 id;
	struct chan_tx_window	 tx;	/* bytes we may send */
	struct chan_rx_window	 rx;	/* bytes we hold */
	struct agent_stream_cbs	 cbs;	/* exec streams */
	struct agent_bytes_cbs	 bcbs;	/* byte streams */
	void			*arg;
	int			 detach;	/* STARTED may end it */
	int			 bytes;		/* a byte stream */
	int			 taken;		/* guest-opened: owner took it */
	int			 pending;	/* OPEN not yet answered */
	int			 eof_in;	/* the agent ended its way */
	int			 eof_out;	/* we ended ours */
};

struct agent {
	struct bufferevent	*bev;
	struct agent_cbs	 cbs;
	void			*arg;
	uint32_t		 next_stream;
	uint32_t		 features;	/* CHAN_FEAT_* both speak */
	unsigned		 nguest;	/* guest-opened streams */
	unsigned		 nhostbytes;	/* host-opened byte streams */
	int			 rd_paused;	/* too much queued for it */
	int			 ready;
	int			 failed;
	struct event		*ping;		/* heartbeat timer */
	int			 quiet;		/* no heartbeat for now */
	uint32_t		 sync_seq;	/* agent_sync's PING */
	agent_sync_fn		*sync_cb;
	void			*sync_arg;
	unsigned		 ping_ms, silent_ms;
	uint32_t		 ping_seq;
	uint64_t		 last_rx;	/* util_now_ms of the last frame */
	int			 silent;
	time_t			 log_second;	/* rate limit of guest text */
	unsigned		 log_count, log_dropped;
	TAILQ_HEAD(, agent_stream) streams;
};

static void
agent_send(struct agent *a, uint8_t kind, uint32_t stream, const void *p,
    size_t len)
{
	struct chan_hdr h = { .kind = kind, .stream = stream,
	    .len = (uint32_t)len };
	uint8_t hdr[CHAN_HDR_LEN];

	if (a->failed)
		return;
	chan_hdr_encode(hdr, &h);
	bufferevent_write(a->bev, hdr, sizeof(hdr));
	if (len > 0)
		bufferevent_write(a->bev, p, len);
}

static void
agent_send_u32(struct agent *a, uint8_t kind, uint32_t stream, uint32_t v)
{
	uint8_t p[4];

	chan_u32_encode(p, sizeof(p), v);
	agent_send(a, kind, stream, p, sizeof(p));
}

static struct agent_stream *
agent_stream_find(struct agent *a, uint32_t id)
{
	struct agent_stream *s;

	TAILQ_FOREACH(s, &a->streams, entry)
		if (s->id == id)
			return s;
	return NULL;
}

static void
agent_stream_unlink(struct agent_stream *s)
{
	struct agent *a = s->agent;

	TAILQ_REMOVE(&a->streams, s, entry);
	if (s->id & CHAN_STREAM_GUEST)
		a->nguest--;
	else if (s->bytes)
		a->nhostbytes--;
}

/* An exec stream is over: its owner hears the exit, and it is freed. */
static void
agent_stream_end(struct agent_stream *s, int code, int sig, const char *msg,
    size_t len)
{
	agent_stream_unlink(s);
	s->cbs.exit(s, code, sig, msg, len, s->arg);
	free(s);
}

/* A byte stream is over (code 0: cleanly): its owner hears why, and it is
 * freed. A guest-opened stream nobody took has no owner to tell. */
static void
agent_bytes_end(struct agent_stream *s, uint32_t code, const char *msg,
    size_t len)
{
	agent_stream_unlink(s);
	if (s->taken || !(s->id & CHAN_STREAM_GUEST))
		s->bcbs.end(s, code, msg, len, s->arg);
	free(s);
}

static void
agent_send_status(struct agent *a, uint8_t kind, uint32_t stream,
    uint32_t code, const char *msg)
{
	struct chan_status st = { code, msg, (uint32_t)strlen(msg) };
	uint8_t p[4 + CHAN_MAX_MSG];
	int n = chan_status_encode(p, sizeof(p), &st);

	if (n > 0)
		agent_send(a, kind, stream, p, (size_t)n);
}

/* Ends any stream for a reason of capsuled's (the channel is going, the
 * VM does not answer, the agent broke the rules): exec streams with exit
 * 125, byte streams with `code`; the agent is told (CLOSE or RESET) if
 * tell is set. */
static void
agent_stream_abort(struct agent_stream *s, uint32_t code, const char *why,
    int tell)
{
	struct agent *a = s->agent;

	if (s->bytes) {
		if (tell)
			agent_send_status(a, CHAN_RESET, s->id, code, why);
		agent_bytes_end(s, code, why, strlen(why));
	} else {
		if (tell)
			agent_send(a, CHAN_CLOSE, s->id, NULL, 0);
		agent_stream_end(s, EXIT_CAPSULE_ERROR, 0, why, strlen(why));
	}
}

static void
agent_fail(struct agent *a, const char *fmt, const char *detail)
{
	char why[512];

	if (a->failed)
		return;
	snprintf(why, sizeof(why), fmt, detail);
	a->failed = 1;
	bufferevent_disable(a->bev, EV_READ | EV_WRITE);
	if (a->ping != NULL)
		event_del(a->ping);
	a->cbs.failed(a, why, a->arg);
}

static void
agent_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	uint64_t quiet = util_now_ms() - a->last_rx;

	if (a->failed || a->quiet)
		return;
	if (quiet >= a->silent_ms && !a->silent) {
		a->silent = 1;
		a->cbs.silent(a, (unsigned)quiet, a->arg);
		if (a->failed)
			return;
	}
	agent_send_u32(a, CHAN_PING, 0, ++a->ping_seq);
}

static void
agent_arm_ping(struct agent *a)
{
	struct timeval tv = { a->ping_ms / 1000, (a->ping_ms % 1000) * 1000 };

	if (a->ping != NULL && a->ready && !a->failed)
		event_add(a->ping, &tv);
}

/* The agent broke the rules on one stream: end it, tell the agent. */
static void
agent_stream_violation(struct agent_stream *s, const char *what)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "guest agent protocol error: %s", what);
	log_warn("stream %u: %s", s->id, msg);
	agent_stream_abort(s, EPROTO, msg, 1);
}

/* Text from the guest goes to our log printable-only (no forged log
 * lines) and at most AGENT_LOG_BURST times per second. */
static void
agent_log_guest(struct agent *a, const uint8_t *p, size_t len)
{
	char text[256];
	time_t now = time(NULL);
	size_t i;

	if (now != a->log_second) {
		if (a->log_dropped > 0)
			log_warn("guest agent: %u more messages dropped",
			    a->log_dropped);
		a->log_second = now;
		a->log_count = 0;
		a->log_dropped = 0;
	}
	if (++a->log_count > AGENT_LOG_BURST) {
		a->log_dropped++;
		return;
	}
	for (i = 0; i < len && i < sizeof(text) - 1; i++)
		text[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	text[i] = '\0';
	log_warn("guest agent: %s", text);
}

static void
agent_on_hello(struct agent *a, const uint8_t *p, size_t len)
{
	struct chan_hello h, mine = { .version = CHAN_VERSION,
	    .features = CHAN_FEATURES };
	uint8_t out[CHAN_HELLO_LEN];
	char detail[160];

	if (chan_hello_decode(p, len, &h) < 0) {
		agent_fail(a, "%s", "guest agent sent a malformed HELLO");
		return;
	}
	if (h.version < CHAN_VERSION_MIN || h.version > CHAN_VERSION) {
		snprintf(detail, sizeof(detail), "guest agent speaks channel "
		    "version %u but capsuled speaks %u to %u; rebuild the "
		    "guest image with this capsule", h.version,
		    CHAN_VERSION_MIN, CHAN_VERSION);
		agent_fail(a, "%s", detail);
		return;
	}
	if (a->ready) {
		agent_fail(a, "%s", "the guest agent started over (a second "
		    "HELLO): the guest rebooted or its agent restarted");
		return;
	}
	a->ready = 1;
	a->quiet = 0;
	/* An older agent hears its own version, in its own layout. */
	mine.version = h.version;
	a->features = h.features & CHAN_FEATURES;
	agent_send(a, CHAN_HELLO, 0, out, (size_t)chan_hello_encode(out,
	    sizeof(out), &mine));
	agent_arm_ping(a);
	a->cbs.ready(a, h.boot_ms, a->arg);
}

static void
agent_on_net_done(struct agent *a, const uint8_t *p, size_t len)
{
	struct chan_status st;

	if (chan_status_decode(p, len, &st) < 0) {
		agent_fail(a, "%s", "guest agent sent a malformed NET_DONE");
		return;
	}
	if (a->cbs.net_done != NULL)
		a->cbs.net_done(a, st.code, st.msg, st.msg_len, a->arg);
}

static struct agent_stream *
agent_stream_new(struct agent *a, uint32_t id)
{
	struct agent_stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->agent = a;
	s->id = id;
	chan_tx_init(&s->tx);
	chan_rx_init(&s->rx);
	TAILQ_INSERT_TAIL(&a->streams, s, entry);
	if (id & CHAN_STREAM_GUEST)
		a->nguest++;
	return s;
}

/* The guest opens a stream: its owner-to-be decides. */
static void
agent_on_open(struct agent *a, uint32_t id, const uint8_t *p, size_t len)
{
	struct agent_stream *s;
	struct chan_open o;
	const char *why = NULL;
	uint32_t code = 0;

	if (chan_open_decode(p, len, &o) < 0) {
		code = EBADMSG;
		why = "malformed OPEN";
	} else if (o.unknown) {
		code = EPROTONOSUPPORT;
		why = "capsuled does not know this kind of stream";
	} else if (o.type == CHAN_OPEN_FORWARD) {
		code = EPERM;
		why = "only capsuled opens FORWARD streams";
	} else if (a->nguest >= AGENT_GUEST_STREAMS) {
		code = EMFILE;
		why = "too many streams open at once";
	}
	if (why == NULL && (s = agent_stream_new(a, id)) == NULL) {
		code = ENOMEM;
		why = "out of memory";
	}
	if (why != NULL) {
		agent_send_status(a, CHAN_RESET, id, code, why);
		return;
	}
	s->bytes = 1;
	s->pending = 1;
	if (a->cbs.open != NULL)
		a->cbs.open(a, s, &o, a->arg);
	/* Still there and nobody took it: refused. */
	if ((s = agent_stream_find(a, id)) != NULL && !s->taken) {
		agent_send_status(a, CHAN_RESET, id, EPERM, "capsuled does "
		    "not serve this stream here");
		agent_bytes_end(s, EPERM, NULL, 0);
	}
}

/* A CREDIT frame: 0, or -1 once the stream has been failed for it. */
static int
agent_stream_grant(struct agent_stream *s, const uint8_t *p, uint32_t len)
{
	uint32_t v;

	if (chan_u32_decode(p, len, &v) < 0 || chan_tx_grant(&s->tx, v) < 0) {
		agent_stream_violation(s, "bad CREDIT");
		return -1;
	}
	return 0;
}

/* A frame on a byte stream. */
static void
agent_bytes_frame(struct agent_stream *s, const struct chan_hdr *h,
    const uint8_t *p)
{
	struct chan_status st;

	switch (h->kind) {
	case CHAN_OPENED:
		if (!s->pending || (s->id & CHAN_STREAM_GUEST) || h->len != 0) {
			agent_stream_violation(s, "unexpected OPENED");
			return;
		}
		s->pending = 0;
		s->bcbs.opened(s, s->arg);
		break;
	case CHAN_DATA:
		if (s->pending || s->eof_in) {
			agent_stream_violation(s, "DATA out of turn");
			return;
		}
		if (chan_rx_receive(&s->rx, h->len) < 0) {
			agent_stream_violation(s, "DATA beyond its window");
			return;
		}
		if (h->len > 0)
			s->bcbs.data(s, p, h->len, s->arg);
		break;
	case CHAN_EOF:
		if (s->pending || s->eof_in || h->len != 0) {
			agent_stream_violation(s, "EOF out of turn");
			return;
		}
		s->eof_in = 1;
		if (s->eof_out)
			agent_bytes_end(s, 0, NULL, 0);
		else
			s->bcbs.eof(s, s->arg);
		break;
	case CHAN_CREDIT:
		if (agent_stream_grant(s, p, h->len) == 0)
			s->bcbs.credit(s, s->arg);
		break;
	case CHAN_RESET:
		if (chan_status_decode(p, h->len, &st) < 0 || st.code == 0) {
			agent_stream_violation(s, "malformed RESET");
			return;
		}
		agent_bytes_end(s, st.code, st.msg, st.msg_len);
		break;
	default:
		agent_stream_violation(s, chan_kind_name(h->kind));
	}
}

static void
agent_on_frame(struct agent *a, const struct chan_hdr *h, const uint8_t *p)
{
	uint32_t seq;
	struct agent_stream *s;
	struct chan_started st;
	struct chan_exit ex;

	a->last_rx = util_now_ms();
	if (a->silent) {
		a->silent = 0;
		a->cbs.heard(a, a->arg);
		if (a->failed)
			return;
	}
	if (h->stream == 0) {
		switch (h->kind) {
		case CHAN_HELLO:
			agent_on_hello(a, p, h->len);
			break;
		case CHAN_ERROR:
			agent_log_guest(a, p, h->len);
			break;
		case CHAN_PONG:
			/* Hearing it was the point; or agent_sync's. */
			if (a->sync_cb != NULL &&
			    chan_u32_decode(p, h->len, &seq) == 0 &&
			    seq == a->sync_seq) {
				agent_sync_fn *cb = a->sync_cb;

				a->sync_cb = NULL;
				cb(a, a->sync_arg);
			}
			break;
		case CHAN_NET_DONE:
			agent_on_net_done(a, p, h->len);
			break;
		default:
			log_warn("guest agent sent %s on stream 0; ignored",
			    chan_kind_name(h->kind));
		}
		return;
	}
	if (!a->ready)
		return;
	if ((s = agent_stream_find(a, h->stream)) == NULL) {
		if ((h->stream & CHAN_STREAM_GUEST) && h->kind == CHAN_OPEN &&
		    (a->features & CHAN_FEAT_STREAMS))
			agent_on_open(a, h->stream, p, h->len);
		return;		/* else a stream we already let go of */
	}
	if (!chan_kind_valid(h->kind) && (a->features & CHAN_FEAT_STREAMS)) {
		/* Newer than us: refuse the stream, keep the channel. */
		char msg[64];

		snprintf(msg, sizeof(msg), "capsuled does not know frame kind "
		    "%u", h->kind);
		/* RESET ends an exec stream too: the agent kills its
		 * command as for CLOSE. */
		agent_send_status(a, CHAN_RESET, s->id, EPROTONOSUPPORT, msg);
		agent_stream_abort(s, EPROTONOSUPPORT, msg, 0);
		return;
	}
	if (s->bytes) {
		agent_bytes_frame(s, h, p);
		return;
	}
	switch (h->kind) {
	case CHAN_STDOUT:
	case CHAN_STDERR:
		if (chan_rx_receive(&s->rx, h->len) < 0) {
			agent_stream_violation(s, "output beyond its window");
			return;
		}
		if (h->len > 0)
			s->cbs.output(s, h->kind, p, h->len, s->arg);
		else
			agent_stream_release(s, 0);
		break;
	case CHAN_CREDIT:
		if (agent_stream_grant(s, p, h->len) == 0)
			s->cbs.credit(s, s->arg);
		break;
	case CHAN_STARTED:
		if (!s->detach || chan_started_decode(p, h->len, &st) < 0) {
			agent_stream_violation(s, "unexpected or malformed "
			    "STARTED");
			return;
		}
		TAILQ_REMOVE(&a->streams, s, entry);
		s->cbs.started(s, st.pid, st.log, st.log_len, s->arg);
		free(s);
		break;
	case CHAN_EXIT:
		if (chan_exit_decode(p, h->len, &ex) < 0) {
			agent_stream_violation(s, "malformed EXIT");
			return;
		}
		agent_stream_end(s, ex.exit_code, ex.signal, ex.msg,
		    ex.msg_len);
		break;
	case CHAN_ERROR: {
		char msg[CHAN_MAX_MSG + 32];
		int n = snprintf(msg, sizeof(msg), "guest agent: %.*s",
		    (int)(h->len > CHAN_MAX_MSG ? CHAN_MAX_MSG : h->len),
		    (const char *)p);

		agent_send(a, CHAN_CLOSE, s->id, NULL, 0);
		agent_stream_end(s, EXIT_CAPSULE_ERROR, 0, msg, (size_t)n <
		    sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
		break;
	}
	case CHAN_RESET: {
		/* The agent refused the stream (a kind it does not know). */
		struct chan_status rs;
		char msg[CHAN_MAX_MSG + 32];
		int n;

		if (chan_status_decode(p, h->len, &rs) < 0) {
			agent_stream_violation(s, "malformed RESET");
			return;
		}
		n = snprintf(msg, sizeof(msg), "guest agent: %.*s",
		    (int)rs.msg_len, rs.msg);
		agent_stream_end(s, EXIT_CAPSULE_ERROR, 0, msg, (size_t)n <
		    sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
		break;
	}
	default:
		agent_stream_violation(s, chan_kind_name(h->kind));
	}
}

static void
agent_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct agent *a = arg;
	struct chan_hdr h;
	const uint8_t *buf;
	long total;
	char detail[64];

	while (!a->failed) {
		size_t have = evbuffer_get_length(in);

		if (have < CHAN_HDR_LEN)
			return;
		if (evbuffer_get_length(bufferevent_get_output(bev)) >
		    AGENT_OUT_HIGH) {
			a->rd_paused = 1;
			bufferevent_disable(bev, EV_READ);
			return;
		}
		buf = evbuffer_pullup(in, CHAN_HDR_LEN);
		total = chan_frame_ready(buf, have, &h);
		if (total < 0) {
			snprintf(detail, sizeof(detail), "%s",
			    total == -EMSGSIZE ? "an oversized frame" :
			    "a malformed frame header");
			agent_fail(a, "guest agent sent %s", detail);
			return;
		}
		if (total == 0)
			return;
		buf = evbuffer_pullup(in, total);
		agent_on_frame(a, &h, buf + CHAN_HDR_LEN);
		if (a->failed)
			return;
		evbuffer_drain(in, (size_t)total);
	}
}

/* The guest took enough of what was queued for it: read it again,
 * starting with the frames that waited in the input. */
static void
agent_write_cb(struct bufferevent *bev, void *arg)
{
	struct agent *a = arg;

	if (!a->rd_paused || a->failed)
		return;
	a->rd_paused = 0;
	bufferevent_enable(bev, EV_READ);
	agent_read_cb(bev, a);
}

static void
agent_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		agent_fail(arg, "%s", "the guest closed the agent channel");
}

struct agent *
agent_new(struct event_base *base, int fd, const struct agent_cbs *cbs,
    void *arg)
{
	struct agent *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (a->bev == NULL) {
		free(a);
		return NULL;
	}
	a->cbs = *cbs;
	a->arg = arg;
	a->next_stream = 1;
	a->ping_ms = AGENT_PING_MS;
	a->silent_ms = AGENT_SILENT_MS;
	a->last_rx = util_now_ms();
	TAILQ_INIT(&a->streams);
	/* EV_PERSIST: it re-arms itself at the same period. */
	a->ping = event_new(base, -1, EV_PERSIST, agent_ping_cb, a);
	if (a->ping == NULL) {
		bufferevent_free(a->bev);
		free(a);
		return NULL;
	}
	bufferevent_setcb(a->bev, agent_read_cb, agent_write_cb,
	    agent_event_cb, a);
	bufferevent_setwatermark(a->bev, EV_READ, 0,
	    CHAN_HDR_LEN + CHAN_MAX_PAYLOAD);
	bufferevent_setwatermark(a->bev, EV_WRITE, AGENT_OUT_HIGH / 2, 0);
	bufferevent_enable(a->bev, EV_READ | EV_WRITE);
	return a;
}

void
agent_free(struct agent *a, const char *why)
{
	struct agent_stream *s;

	if (a == NULL)
		return;
	a->failed = 1;
	while ((s = TAILQ_FIRST(&a->streams)) != NULL)
		agent_stream_abort(s, EPIPE, why, 0);
	if (a->ping != NULL)
		event_free(a->ping);
	bufferevent_free(a->bev);
	free(a);
}

void
agent_end_streams(struct agent *a, const char *why)
{
	struct agent_stream *s;

	while ((s = TAILQ_FIRST(&a->streams)) != NULL)
		agent_stream_abort(s, EPIPE, why, 1);
}

void
agent_set_heartbeat(struct agent *a, unsigned ping_ms, unsigned silent_ms)
{
	a->ping_ms = ping_ms;
	a->silent_ms = silent_ms;
	if (a->ping != NULL && event_pending(a->ping, EV_TIMEOUT, NULL)) {
		event_del(a->ping);
		agent_arm_ping(a);
	}
}

int
agent_shutdown(struct agent *a)
{
	if (a->failed)
		return -EPIPE;
	agent_send(a, CHAN_SHUTDOWN, 0, NULL, 0);
	return 0;
}

/* Opens stream s with its first frame (EXEC, COPY_IN or COPY_OUT). */
static struct agent_stream *
agent_stream_open(struct agent *a, uint8_t kind, const void *p, size_t len,
    const struct agent_stream_cbs *cbs, void *arg, struct cap_err *err)
{
	struct agent_stream *s;

	if (a->failed || !a->ready) {
		cap_err_set(err, EPIPE, E_UNAVAILABLE,
		    "the guest agent is not connected");
		return NULL;
	}
	/* Host ids stay below CHAN_STREAM_GUEST. */
	if (a->next_stream >= CHAN_STREAM_GUEST ||
	    (s = agent_stream_new(a, a->next_stream)) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	a->next_stream++;
	s->cbs = *cbs;
	s->arg = arg;
	agent_send(a, kind, s->id, p, len);
	return s;
}

struct agent_stream *
agent_exec(struct agent *a, const struct chan_exec *x,
    const struct agent_stream_cbs *cbs, void *arg, struct cap_err *err)
{
	struct agent_stream *s;
	uint8_t *buf;
	long n;

	if ((buf = malloc(CHAN_MAX_PAYLOAD)) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	if ((n = chan_exec_encode(buf, CHAN_MAX_PAYLOAD, x)) < 0) {
		free(buf);
		cap_err_set(err, E2BIG, E_TOO_LARGE,
		    "command and environment exceed %d bytes",
		    CHAN_MAX_PAYLOAD);
		return NULL;
	}
	s = agent_stream_open(a, CHAN_EXEC, buf, (size_t)n, cbs, arg, err);
	if (s != NULL)
		s->detach = x->detach;
	free(buf);
	return s;
}

struct agent_stream *
agent_copy(struct agent *a, int out, const char *path,
    const struct agent_stream_cbs *cbs, void *arg, struct cap_err *err)
{
	size_t len = strlen(path);

	if (chan_path_check((const uint8_t *)path, len) < 0) {
		cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" is not "
		    "an absolute path of at most %d bytes", path,
		    CHAN_MAX_PATH);
		return NULL;
	}
	return agent_stream_open(a, out ? CHAN_COPY_OUT : CHAN_COPY_IN, path,
	    len, cbs, arg, err);
}

/* Sends buf in frames of kind, as far as the stream's credit goes;
 * returns how much went. */
static size_t
agent_send_credited(struct agent_stream *s, uint8_t kind, const uint8_t *buf,
    size_t len)
{
	size_t done = 0;

	while (done < len) {
		uint32_t want = len - done > CHAN_MAX_DATA ? CHAN_MAX_DATA :
		    (uint32_t)(len - done);
		uint32_t n = chan_tx_allow(&s->tx, want);

		if (n == 0)
			break;
		agent_send(s->agent, kind, s->id, buf + done, n);
		chan_tx_consume(&s->tx, n);
		done += n;
	}
	return done;
}

size_t
agent_stream_write(struct agent_stream *s, const uint8_t *buf, size_t len)
{
	return agent_send_credited(s, CHAN_STDIN, buf, len);
}

void
agent_stream_eof(struct agent_stream *s)
{
	agent_send(s->agent, CHAN_EOF, s->id, NULL, 0);
}

void
agent_stream_resize(struct agent_stream *s, uint16_t cols, uint16_t rows)
{
	uint8_t p[4];

	chan_resize_encode(p, sizeof(p), cols, rows);
	agent_send(s->agent, CHAN_RESIZE, s->id, p, sizeof(p));
}

void
agent_stream_signal(struct agent_stream *s, int sig)
{
	agent_send_u32(s->agent, CHAN_SIGNAL, s->id, (uint32_t)sig);
}

void
agent_stream_release(struct agent_stream *s, size_t n)
{
	uint32_t grant = chan_rx_release(&s->rx, (uint32_t)n);

	if (grant > 0)
		agent_send_u32(s->agent, CHAN_CREDIT, s->id, grant);
}

void
agent_stream_close(struct agent_stream *s)
{
	struct agent *a = s->agent;

	agent_send(a, CHAN_CLOSE, s->id, NULL, 0);
	TAILQ_REMOVE(&a->streams, s, entry);
	free(s);
}

size_t
agent_nstreams(const struct agent *a)
{
	const struct agent_stream *s;
	size_t n = 0;

	TAILQ_FOREACH(s, &a->streams, entry)
		n++;
	return n;
}

uint32_t
agent_features(const struct agent *a)
{
	return a->ready ? a->features : 0;
}

void
agent_sync(struct agent *a, agent_sync_fn *cb, void *arg)
{
	a->quiet = 1;
	a->sync_cb = cb;
	a->sync_arg = arg;
	a->sync_seq = ++a->ping_seq;
	agent_send_u32(a, CHAN_PING, 0, a->sync_seq);
}

void
agent_heartbeat(struct agent *a, int on)
{
	/* Silence while it was off (a save) is not the guest's. */
	if (on && a->quiet)
		a->last_rx = util_now_ms();
	a->quiet = !on;
}

int
agent_refresh(struct agent *a, const char *hostname, struct cap_err *err)
{
	struct chan_refresh r;
	struct timespec ts;
	uint8_t out[CHAN_REFRESH_MAX];
	int n;

	if (a->failed)
		return cap_err_set(err, EPIPE, E_UNAVAILABLE,
		    "the guest agent is not connected");
	if (a->ready && !(a->features & CHAN_FEAT_REFRESH))
		return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "the guest "
		    "agent is too old to be refreshed");
	if (osdep_random(r.seed, sizeof(r.seed)) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "random bytes: %s",
		    strerror(errno));
	clock_gettime(CLOCK_REALTIME, &ts);
	r.realtime_ns = (uint64_t)ts.tv_sec * 1000000000u +
	    (uint64_t)ts.tv_nsec;
	/* A copy's agent has not said HELLO to us: it is one that speaks
	 * hostnames (vmstate.c and templates make sure of it). */
	r.hostname[0] = '\0';
	if (hostname != NULL && (!a->ready ||
	    (a->features & CHAN_FEAT_HOSTNAME)))
		snprintf(r.hostname, sizeof(r.hostname), "%s", hostname);
	if ((n = chan_refresh_encode(out, sizeof(out), &r)) < 0)
		return cap_err_set(err, -n, E_INTERNAL, "cannot encode "
		    "REFRESH");
	agent_send(a, CHAN_REFRESH, 0, out, (size_t)n);
	osdep_wipe(&r, sizeof(r));
	osdep_wipe(out, sizeof(out));
	/* It answers with a HELLO, as after a boot. */
	a->ready = 0;
	return 0;
}

int
agent_net(struct agent *a, const struct chan_net *n, struct cap_err *err)
{
	uint8_t buf[CHAN_NET_FIXED + 8 * CHAN_NET_MAX_ROUTES];
	long len;

	if (a->failed || !a->ready)
		return cap_err_set(err, EPIPE, E_UNAVAILABLE,
		    "the guest agent is not connected");
	if (!(a->features & CHAN_FEAT_NET))
		return cap_err_set(err, ENOTSUP, E_VM_FAILED, "the guest "
		    "agent is too old for network modes; rebuild the guest "
		    "image with this capsule");
	if ((len = chan_net_encode(buf, sizeof(buf), n)) < 0)
		return cap_err_set(err, EINVAL, E_INTERNAL, "cannot encode "
		    "the VM's network");
	agent_send(a, CHAN_NET, 0, buf, (size_t)len);
	return 0;
}

struct agent_stream *
agent_forward(struct agent *a, uint16_t port,
    const struct agent_bytes_cbs *cbs, void *arg, struct cap_err *err)
{
	struct chan_open o = { .type = CHAN_OPEN_FORWARD, .port = port };
	struct agent_stream *s;
	uint8_t buf[16];
	long n;

	if (a->failed || !a->ready) {
		cap_err_set(err, EPIPE, E_UNAVAILABLE,
		    "the guest agent is not connected");
		return NULL;
	}
	if ((a->features & (CHAN_FEAT_STREAMS | CHAN_FEAT_NET)) !=
	    (CHAN_FEAT_STREAMS | CHAN_FEAT_NET)) {
		cap_err_set(err, ENOTSUP, E_VM_FAILED, "the guest agent is "
		    "too old to forward ports");
		return NULL;
	}
	if ((n = chan_open_encode(buf, sizeof(buf), &o)) < 0) {
		cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "bad port %u",
		    (unsigned)port);
		return NULL;
	}
	if (a->nhostbytes >= AGENT_HOST_BYTES) {
		cap_err_set(err, EMFILE, E_LIMIT, "%d forwarded "
		    "connections are open to this VM already",
		    AGENT_HOST_BYTES);
		return NULL;
	}
	/* Host ids stay below CHAN_STREAM_GUEST. */
	if (a->next_stream >= CHAN_STREAM_GUEST ||
	    (s = agent_stream_new(a, a->next_stream)) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of streams");
		return NULL;
	}
	a->next_stream++;
	a->nhostbytes++;
	s->bytes = 1;
	s->pending = 1;
	s->bcbs = *cbs;
	s->arg = arg;
	agent_send(a, CHAN_OPEN, s->id, buf, (size_t)n);
	return s;
}

void
agent_bytes_take(struct agent_stream *s, const struct agent_bytes_cbs *cbs,
    void *arg)
{
	s->taken = 1;
	s->bcbs = *cbs;
	s->arg = arg;
}

void
agent_bytes_opened(struct agent_stream *s)
{
	if (!s->pending)
		return;
	s->pending = 0;
	agent_send(s->agent, CHAN_OPENED, s->id, NULL, 0);
}

void
agent_bytes_answer(struct agent_stream *s)
{
	agent_send(s->agent, CHAN_OPENED, s->id, NULL, 0);
	agent_stream_unlink(s);
	free(s);
}

void
agent_bytes_reset(struct agent_stream *s, uint32_t code, const char *fmt,
    ...)
{
	char msg[CHAN_MAX_MSG];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_send_status(s->agent, CHAN_RESET, s->id, code ? code : EPIPE,
	    msg);
	agent_stream_unlink(s);
	free(s);
}

size_t
agent_bytes_write(struct agent_stream *s, const uint8_t *buf, size_t len)
{
	if (s->pending || s->eof_out)
		return 0;
	return agent_send_credited(s, CHAN_DATA, buf, len);
}

int
agent_bytes_eof(struct agent_stream *s)
{
	if (s->eof_out)
		return 0;
	s->eof_out = 1;
	agent_send(s->agent, CHAN_EOF, s->id, NULL, 0);
	if (!s->eof_in)
		return 0;
	agent_stream_unlink(s);
	free(s);
	return 1;
}
