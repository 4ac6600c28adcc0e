/*
 * chan.c — codec and credit accounting for the agent channel (see chan.h).
 * Pure: no I/O, no allocation. Linked by capsuled and capsule-agent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "chan.h"

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

int
chan_kind_valid(unsigned kind)
{
	switch (kind) {
	case CHAN_HELLO: case CHAN_ERROR: case CHAN_SHUTDOWN:
	case CHAN_PING: case CHAN_PONG: case CHAN_NET: case CHAN_NET_DONE:
	case CHAN_REFRESH:
	case CHAN_OPEN: case CHAN_OPENED: case CHAN_RESET: case CHAN_DATA:
	case CHAN_EXEC: case CHAN_STDIN: case CHAN_EOF: case CHAN_RESIZE:
	case CHAN_SIGNAL: case CHAN_CLOSE: case CHAN_COPY_IN: case CHAN_COPY_OUT:
	case CHAN_STDOUT: case CHAN_STDERR: case CHAN_EXIT: case CHAN_STARTED:
	case CHAN_CREDIT:
		return 1;
	}
	return 0;
}

const char *
chan_kind_name(unsigned kind)
{
	switch (kind) {
	case CHAN_HELLO:	return "HELLO";
	case CHAN_ERROR:	return "ERROR";
	case CHAN_SHUTDOWN:	return "SHUTDOWN";
	case CHAN_PING:		return "PING";
	case CHAN_PONG:		return "PONG";
	case CHAN_NET:		return "NET";
	case CHAN_NET_DONE:	return "NET_DONE";
	case CHAN_REFRESH:	return "REFRESH";
	case CHAN_OPEN:		return "OPEN";
	case CHAN_OPENED:	return "OPENED";
	case CHAN_RESET:	return "RESET";
	case CHAN_DATA:		return "DATA";
	case CHAN_EXEC:		return "EXEC";
	case CHAN_STDIN:	return "STDIN";
	case CHAN_EOF:		return "EOF";
	case CHAN_RESIZE:	return "RESIZE";
	case CHAN_SIGNAL:	return "SIGNAL";
	case CHAN_CLOSE:	return "CLOSE";
	case CHAN_COPY_IN:	return "COPY_IN";
	case CHAN_COPY_OUT:	return "COPY_OUT";
	case CHAN_STARTED:	return "STARTED";
	case CHAN_STDOUT:	return "STDOUT";
	case CHAN_STDERR:	return "STDERR";
	case CHAN_EXIT:		return "EXIT";
	case CHAN_CREDIT:	return "CREDIT";
	}
	return "unknown";
}

void
chan_hdr_encode(uint8_t out[CHAN_HDR_LEN], const struct chan_hdr *h)
{
	put16(out, CHAN_MAGIC);
	out[2] = h->kind;
	out[3] = h->flags;
	put32(out + 4, h->stream);
	put32(out + 8, h->len);
}

int
chan_hdr_decode(const uint8_t in[CHAN_HDR_LEN], struct chan_hdr *h)
{
	if (get16(in) != CHAN_MAGIC)
		return -EBADMSG;
	h->kind = in[2];
	h->flags = in[3];
	h->stream = get32(in + 4);
	h->len = get32(in + 8);
	if ((h->stream == 0 && !chan_kind_valid(h->kind)) || h->flags != 0)
		return -EBADMSG;
	if (h->len > CHAN_MAX_PAYLOAD)
		return -EMSGSIZE;
	if ((h->kind == CHAN_STDIN || h->kind == CHAN_STDOUT ||
	    h->kind == CHAN_STDERR || h->kind == CHAN_DATA) &&
	    h->len > CHAN_MAX_DATA)
		return -EMSGSIZE;
	return 0;
}

long
chan_frame_ready(const uint8_t *buf, size_t have, struct chan_hdr *h)
{
	int r;

	if (have < CHAN_HDR_LEN)
		return 0;
	if ((r = chan_hdr_decode(buf, h)) < 0)
		return r;
	if (have - CHAN_HDR_LEN < h->len)
		return 0;
	return (long)(CHAN_HDR_LEN + h->len);
}

int
chan_hello_encode(uint8_t *out, size_t cap, const struct chan_hello *h)
{
	/* A version 4 peer's layout has no features. */
	if (cap < (h->version < 5 ? CHAN_HELLO_V4_LEN : CHAN_HELLO_LEN))
		return -EMSGSIZE;
	put32(out, h->version);
	put32(out + 4, h->boot_ms);
	if (h->version < 5)
		return CHAN_HELLO_V4_LEN;
	put32(out + 8, h->features);
	return CHAN_HELLO_LEN;
}

int
chan_hello_decode(const uint8_t *p, size_t len, struct chan_hello *h)
{
	/* Only the version is guaranteed: a peer of another version may
	 * send a different layout, and the caller must still be able to say
	 * which version it was. */
	if (len < 4)
		return -EBADMSG;
	h->version = get32(p);
	h->boot_ms = len >= CHAN_HELLO_V4_LEN ? get32(p + 4) : 0;
	h->features = h->version >= 5 && len >= CHAN_HELLO_LEN ?
	    get32(p + 8) : 0;
	return 0;
}

int
chan_name_check(const char *name, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > CHAN_MAX_NAME || name[0] == '.' ||
	    name[len - 1] == '.')
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return -EBADMSG;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_') || (c == '-' && label == 0) ||
		    ++label > 63)
			return -EBADMSG;
	}
	return name[len - 1] == '-' ? -EBADMSG : 0;
}

long
chan_open_encode(uint8_t *out, size_t cap, const struct chan_open *o)
{
	size_t n;

	switch (o->type) {
	case CHAN_OPEN_CONNECT:
	case CHAN_OPEN_DNS:
		if ((o->type == CHAN_OPEN_CONNECT && o->port == 0) ||
		    (o->type == CHAN_OPEN_DNS && o->qtype == 0))
			return -EINVAL;
		if (o->type == CHAN_OPEN_DNS || o->addr_kind == CHAN_ADDR_NAME) {
			if (chan_name_check(o->name, o->name_len) < 0)
				return -EINVAL;
			n = 8 + o->name_len;
		} else if (o->addr_kind == CHAN_ADDR_IPV4) {
			n = 12;
		} else {
			return -EINVAL;
		}
		if (cap < n)
			return -EMSGSIZE;
		put16(out, o->type);
		put16(out + 2, 0);
		if (o->type == CHAN_OPEN_DNS) {
			put16(out + 4, o->qtype);
			put16(out + 6, 0);
		} else {
			put16(out + 4, o->port);
			out[6] = o->addr_kind;
			out[7] = 0;
		}
		if (n == 12 && o->type == CHAN_OPEN_CONNECT &&
		    o->addr_kind == CHAN_ADDR_IPV4)
			memcpy(out + 8, o->ipv4, 4);
		else
			memcpy(out + 8, o->name, o->name_len);
		return (long)n;
	case CHAN_OPEN_FORWARD:
		if (o->port == 0)
			return -EINVAL;
		if (cap < 8)
			return -EMSGSIZE;
		put16(out, o->type);
		put16(out + 2, 0);
		put16(out + 4, o->port);
		put16(out + 6, 0);
		return 8;
	}
	return -EINVAL;
}

int
chan_open_decode(const uint8_t *p, size_t len, struct chan_open *o)
{
	memset(o, 0, sizeof(*o));
	if (len < 4 || get16(p + 2) != 0)
		return -EBADMSG;
	o->type = get16(p);
	switch (o->type) {
	case CHAN_OPEN_CONNECT:
		if (len < 8 || p[7] != 0 || (o->port = get16(p + 4)) == 0)
			return -EBADMSG;
		o->addr_kind = p[6];
		if (o->addr_kind == CHAN_ADDR_IPV4) {
			if (len != 12)
				return -EBADMSG;
			memcpy(o->ipv4, p + 8, 4);
			return 0;
		}
		if (o->addr_kind != CHAN_ADDR_NAME)
			return -EBADMSG;
		break;
	case CHAN_OPEN_DNS:
		if (len < 8 || get16(p + 6) != 0 ||
		    (o->qtype = get16(p + 4)) == 0)
			return -EBADMSG;
		o->addr_kind = CHAN_ADDR_NAME;
		break;
	case CHAN_OPEN_FORWARD:
		if (len != 8 || get16(p + 6) != 0 ||
		    (o->port = get16(p + 4)) == 0)
			return -EBADMSG;
		return 0;
	default:
		o->unknown = 1;
		return 0;
	}
	o->name = (const char *)(p + 8);
	o->name_len = (uint32_t)(len - 8);
	return chan_name_check(o->name, o->name_len);
}

int
chan_status_encode(uint8_t *out, size_t cap, const struct chan_status *st)
{
	uint32_t n = st->msg_len > CHAN_MAX_MSG ? CHAN_MAX_MSG : st->msg_len;

	/* Nothing the decoder would refuse: a negative errno passed by
	 * mistake must not go out as a malformed RESET. */
	if (st->code > 4095)
		return -EINVAL;
	if (cap < 4 + (size_t)n)
		return -EMSGSIZE;
	put32(out, st->code);
	if (n)
		memcpy(out + 4, st->msg, n);
	return (int)(4 + n);
}

int
chan_status_decode(const uint8_t *p, size_t len, struct chan_status *st)
{
	if (len < 4 || len > 4 + CHAN_MAX_MSG)
		return -EBADMSG;
	st->code = get32(p);
	if (st->code > 4095)
		return -EBADMSG;
	st->msg = (const char *)(p + 4);
	st->msg_len = (uint32_t)(len - 4);
	return 0;
}

/* net/prefix names a network: no bits set past the prefix. */
static int
chan_prefix_ok(uint32_t net_be, uint8_t prefix)
{
	uint32_t host = ntohl(net_be);

	if (prefix > 32)
		return 0;
	return prefix == 32 || (host & (0xffffffffu >> prefix)) == 0;
}

long
chan_net_encode(uint8_t *out, size_t cap, const struct chan_net *n)
{
	size_t len = CHAN_NET_FIXED + 8 * (size_t)n->nroutes;

	if (n->mode > CHAN_NET_ALLOW || n->nroutes > CHAN_NET_MAX_ROUTES ||
	    n->prefix > 32 || (n->mode != CHAN_NET_ALLOW && n->nroutes != 0))
		return -EINVAL;
	if (cap < len)
		return -EMSGSIZE;
	memset(out, 0, len);
	out[0] = n->mode;
	out[1] = n->prefix;
	put16(out + 2, n->nroutes);
	memcpy(out + 4, &n->addr, 4);
	memcpy(out + 8, &n->gateway, 4);
	memcpy(out + 12, &n->dns, 4);
	for (uint16_t i = 0; i < n->nroutes; i++) {
		if (!chan_prefix_ok(n->routes[i].net, n->routes[i].prefix))
			return -EINVAL;
		memcpy(out + CHAN_NET_FIXED + 8 * i, &n->routes[i].net, 4);
		out[CHAN_NET_FIXED + 8 * i + 4] = n->routes[i].prefix;
	}
	return (long)len;
}

int
chan_net_decode(const uint8_t *p, size_t len, struct chan_net *n)
{
	memset(n, 0, sizeof(*n));
	if (len < CHAN_NET_FIXED)
		return -EBADMSG;
	n->mode = p[0];
	n->prefix = p[1];
	n->nroutes = get16(p + 2);
	if (n->mode > CHAN_NET_ALLOW || n->prefix > 32 ||
	    n->nroutes > CHAN_NET_MAX_ROUTES ||
	    len != CHAN_NET_FIXED + 8 * (size_t)n->nroutes ||
	    (n->mode != CHAN_NET_ALLOW && n->nroutes != 0))
		return -EBADMSG;
	memcpy(&n->addr, p + 4, 4);
	memcpy(&n->gateway, p + 8, 4);
	memcpy(&n->dns, p + 12, 4);
	for (uint16_t i = 0; i < n->nroutes; i++) {
		const uint8_t *r = p + CHAN_NET_FIXED + 8 * i;

		memcpy(&n->routes[i].net, r, 4);
		n->routes[i].prefix = r[4];
		if (r[5] != 0 || get16(r + 6) != 0 ||
		    !chan_prefix_ok(n->routes[i].net, r[4]))
			return -EBADMSG;
	}
	return 0;
}

static long
put_str(uint8_t *out, size_t cap, size_t off, const char *s)
{
	size_t n = strlen(s) + 1;

	if (n > cap - off)
		return -EMSGSIZE;
	memcpy(out + off, s, n);
	return (long)(off + n);
}

long
chan_exec_encode(uint8_t *out, size_t cap, const struct chan_exec *x)
{
	long off;
	uint32_t i;

	if (cap < CHAN_EXEC_FIXED)
		return -EMSGSIZE;
	memset(out, 0, CHAN_EXEC_FIXED);
	out[0] = x->tty ? 1 : 0;
	out[1] = x->detach ? CHAN_EXEC_DETACH : 0;
	put16(out + 2, x->cols);
	put16(out + 4, x->rows);
	put32(out + 8, x->argc);
	put32(out + 12, x->envc);
	put32(out + 16, x->timeout_ms);
	if (x->seed_len > CHAN_MAX_SEED)
		return -EMSGSIZE;
	put32(out + 20, x->seed_len);
	off = CHAN_EXEC_FIXED;
	if ((off = put_str(out, cap, (size_t)off, x->dir ? x->dir : "")) < 0)
		return off;
	if ((off = put_str(out, cap, (size_t)off, x->user ? x->user : "")) < 0)
		return off;
	for (i = 0; i < x->argc; i++)
		if ((off = put_str(out, cap, (size_t)off, x->argv[i])) < 0)
			return off;
	for (i = 0; i < x->envc; i++)
		if ((off = put_str(out, cap, (size_t)off, x->envp[i])) < 0)
			return off;
	if (x->seed_len > 0) {
		if ((size_t)off + x->seed_len > cap)
			return -EMSGSIZE;
		memcpy(out + off, x->seed, x->seed_len);
		off += x->seed_len;
	}
	return off;
}

/* Takes the NUL-terminated string at *off; -EBADMSG if it runs off the end. */
static int
take_str(const uint8_t *p, size_t len, size_t *off, const char **s)
{
	const uint8_t *nul;

	if (*off >= len)
		return -EBADMSG;
	nul = memchr(p + *off, '\0', len - *off);
	if (nul == NULL)
		return -EBADMSG;
	*s = (const char *)(p + *off);
	*off = (size_t)(nul - p) + 1;
	return 0;
}

int
chan_exec_decode(const uint8_t *p, size_t len, struct chan_exec *x,
    uint32_t max_args, uint32_t max_env)
{
	size_t off = CHAN_EXEC_FIXED;
	uint32_t i;

	if (len < CHAN_EXEC_FIXED || p[0] > 1 || (p[1] & ~CHAN_EXEC_DETACH) ||
	    get16(p + 6) != 0 || get32(p + 20) > CHAN_MAX_SEED)
		return -EBADMSG;
	x->seed_len = get32(p + 20);
	x->tty = p[0];
	x->detach = (p[1] & CHAN_EXEC_DETACH) != 0;
	x->cols = get16(p + 2);
	x->rows = get16(p + 4);
	x->argc = get32(p + 8);
	x->envc = get32(p + 12);
	x->timeout_ms = get32(p + 16);
	if (x->argc == 0)
		return -EBADMSG;
	if (x->argc > max_args || x->envc > max_env)
		return -E2BIG;
	if (take_str(p, len, &off, &x->dir) < 0 ||
	    take_str(p, len, &off, &x->user) < 0)
		return -EBADMSG;
	for (i = 0; i < x->argc; i++)
		if (take_str(p, len, &off, &x->argv[i]) < 0)
			return -EBADMSG;
	for (i = 0; i < x->envc; i++) {
		const char *eq;

		if (take_str(p, len, &off, &x->envp[i]) < 0)
			return -EBADMSG;
		eq = strchr(x->envp[i], '=');
		if (eq == NULL || eq == x->envp[i])
			return -EBADMSG;
	}
	x->seed = x->seed_len > 0 ? p + off : NULL;
	if (off + x->seed_len != len || x->argv[0][0] == '\0')
		return -EBADMSG;
	return 0;
}

int
chan_started_encode(uint8_t *out, size_t cap, const struct chan_started *st)
{
	if (st->log_len > CHAN_MAX_PATH || cap < 4 + (size_t)st->log_len)
		return -EMSGSIZE;
	put32(out, st->pid);
	if (st->log_len)
		memcpy(out + 4, st->log, st->log_len);
	return (int)(4 + st->log_len);
}

int
chan_started_decode(const uint8_t *p, size_t len, struct chan_started *st)
{
	if (len < 4 || len > 4 + CHAN_MAX_PATH)
		return -EBADMSG;
	st->pid = get32(p);
	st->log = (const char *)(p + 4);
	st->log_len = (uint32_t)(len - 4);
	if (st->pid == 0 || memchr(st->log, '\0', st->log_len) != NULL)
		return -EBADMSG;
	return 0;
}

int
chan_path_check(const uint8_t *p, size_t len)
{
	if (len == 0 || len > CHAN_MAX_PATH || p[0] != '/' ||
	    memchr(p, '\0', len) != NULL)
		return -EBADMSG;
	return 0;
}

int
chan_exit_encode(uint8_t *out, size_t cap, const struct chan_exit *e)
{
	uint32_t n = e->msg_len > CHAN_MAX_MSG ? CHAN_MAX_MSG : e->msg_len;

	if (cap < 8 + (size_t)n)
		return -EMSGSIZE;
	put32(out, (uint32_t)e->exit_code);
	put32(out + 4, (uint32_t)e->signal);
	if (n)
		memcpy(out + 8, e->msg, n);
	return (int)(8 + n);
}

int
chan_exit_decode(const uint8_t *p, size_t len, struct chan_exit *e)
{
	if (len < 8 || len > 8 + CHAN_MAX_MSG)
		return -EBADMSG;
	e->exit_code = (int32_t)get32(p);
	e->signal = (int32_t)get32(p + 4);
	if (e->exit_code < 0 || e->exit_code > 255 || e->signal < 0 ||
	    e->signal > 64)
		return -EBADMSG;
	e->msg = (const char *)(p + 8);
	e->msg_len = (uint32_t)(len - 8);
	return 0;
}

int
chan_u32_encode(uint8_t *out, size_t cap, uint32_t v)
{
	if (cap < 4)
		return -EMSGSIZE;
	put32(out, v);
	return 4;
}

int
chan_u32_decode(const uint8_t *p, size_t len, uint32_t *v)
{
	if (len != 4)
		return -EBADMSG;
	*v = get32(p);
	return 0;
}

int
chan_resize_encode(uint8_t *out, size_t cap, uint16_t cols, uint16_t rows)
{
	if (cap < 4)
		return -EMSGSIZE;
	put16(out, cols);
	put16(out + 2, rows);
	return 4;
}

int
chan_resize_decode(const uint8_t *p, size_t len, uint16_t *cols,
    uint16_t *rows)
{
	if (len != 4)
		return -EBADMSG;
	*cols = get16(p);
	*rows = get16(p + 2);
	return 0;
}

void
chan_tx_init(struct chan_tx_window *w)
{
	w->credit = CHAN_WINDOW;
}

uint32_t
chan_tx_allow(const struct chan_tx_window *w, uint32_t want)
{
	return want < w->credit ? want : w->credit;
}

void
chan_tx_consume(struct chan_tx_window *w, uint32_t n)
{
	w->credit -= n < w->credit ? n : w->credit;
}

int
chan_tx_grant(struct chan_tx_window *w, uint32_t n)
{
	if (n > CHAN_WINDOW - w->credit)
		return -EPROTO;
	w->credit += n;
	return 0;
}

void
chan_rx_init(struct chan_rx_window *w)
{
	w->held = 0;
	w->released = 0;
}

int
chan_rx_receive(struct chan_rx_window *w, uint32_t n)
{
	/* held + released is what the peer believes it has spent. */
	if (n > CHAN_WINDOW - w->held - w->released)
		return -EPROTO;
	w->held += n;
	return 0;
}

uint32_t
chan_rx_release(struct chan_rx_window *w, uint32_t n)
{
	uint32_t grant;

	if (n > w->held)
		n = w->held;
	w->held -= n;
	w->released += n;
	/* Grant in batches, but always once nothing is held any more, so a
	 * slow trickle is never left waiting on a batch that won't fill. */
	if (w->released < CHAN_WINDOW / 4 && w->held > 0)
		return 0;
	grant = w->released;
	w->released = 0;
	return grant;
}

int
chan_refresh_encode(uint8_t *out, size_t cap, const struct chan_refresh *r)
{
	size_t n = strnlen(r->hostname, sizeof(r->hostname));

	if (n > 0 && !chan_hostname_check(r->hostname, n))
		return -EINVAL;
	if (cap < CHAN_REFRESH_LEN + (n > 0 ? 1 + n : 0))
		return -EMSGSIZE;
	put32(out, (uint32_t)r->realtime_ns);
	put32(out + 4, (uint32_t)(r->realtime_ns >> 32));
	memcpy(out + 8, r->seed, CHAN_REFRESH_SEED);
	if (n == 0)
		return CHAN_REFRESH_LEN;
	out[CHAN_REFRESH_LEN] = (uint8_t)n;
	memcpy(out + CHAN_REFRESH_LEN + 1, r->hostname, n);
	return (int)(CHAN_REFRESH_LEN + 1 + n);
}

int
chan_refresh_decode(const uint8_t *p, size_t len, struct chan_refresh *r)
{
	size_t n;

	if (len != CHAN_REFRESH_LEN && (len < CHAN_REFRESH_LEN + 2 ||
	    len > CHAN_REFRESH_MAX))
		return -EBADMSG;
	r->realtime_ns = (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
	memcpy(r->seed, p + 8, CHAN_REFRESH_SEED);
	r->hostname[0] = '\0';
	if (len == CHAN_REFRESH_LEN)
		return 0;
	n = p[CHAN_REFRESH_LEN];
	if (n != len - CHAN_REFRESH_LEN - 1 ||
	    !chan_hostname_check((const char *)p + CHAN_REFRESH_LEN + 1, n))
		return -EBADMSG;
	memcpy(r->hostname, p + CHAN_REFRESH_LEN + 1, n);
	r->hostname[n] = '\0';
	return 0;
}

int
chan_hostname_check(const char *name, size_t len)
{
	if (len == 0 || len > CHAN_MAX_HOSTNAME || name[0] == '-' ||
	    name[len - 1] == '-')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return 0;
	return 1;
}
