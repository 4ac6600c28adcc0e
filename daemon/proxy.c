/*
 * proxy.c — exec sessions on a VM's proxy socket (see proxy.h).
 *
 * Back-pressure runs end to end: output is released back to the agent only
 * once the client socket has taken it, and stdin goes to the agent only as
 * far as it grants credit, so neither capsuled nor the agent holds more than
 * a window per session. What happens to stdin the agent has no room for
 * depends on the client:
 *
 *  - a cleanroom client knows nothing of credit: while one stdin line waits
 *    we stop reading its socket, and its own writes block;
 *  - a client that asked for "stdin_credit" is granted PROXY_STDIN_WINDOW
 *    bytes, and more as they reach the agent, so we keep reading its socket
 *    and a signal or resize line behind stdin is acted on at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "agent.h"
#include "events.h"
#include "execmsg.h"
#include "log.h"
#include "metrics.h"
#include "oci.h"
#include "osdep.h"
#include "peer.h"
#include "proto.h"
#include "proxy.h"
#include "util.h"

#define PROXY_MAX_SESSIONS	1024
#define PROXY_OUT_HIGH		(256 * 1024)	/* client socket backlog */
#define PROXY_STDIN_WINDOW	(256 * 1024)	/* credit-mode stdin buffer */

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct proxy		*proxy;
	struct peer		*peer;
	struct agent_stream	*stream;
	struct evbuffer		*stdin_q;	/* awaiting the agent's credit */
	int			 eof_wanted;	/* 1: asked, 2: sent */
	size_t			 unreleased;	/* output not yet granted */
	int			 credit_mode;	/* client asked for stdin_credit */
	size_t			 client_credit;	/* what it may still send */
	uint64_t		 exec;		/* its number, once started */
};

struct proxy {
	struct event_base	*base;
	struct proxy_cbs	 cbs;
	void			*arg;
	char			 vm_id[40];
	uid_t			 owner;
	const struct oci_config	*defaults;	/* the image's, or NULL */
	uint64_t		 next_exec;	/* numbers sessions for events */
	struct listener		*listener;
	size_t			 nsessions;
	TAILQ_HEAD(, session)	 sessions;
};

static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&s->proxy->sessions, s, entry);
	s->proxy->nsessions--;
	evbuffer_free(s->stdin_q);
	free(s);
}

/* Sends the exit line, closes the connection once it is flushed. */
static void
session_finish(struct session *s, int code, int sig, const char *msg,
    size_t msg_len)
{
	size_t n;
	char *line = execmsg_encode_exit(code, sig, msg, msg_len, &n);

	if (s->exec != 0) {
		json_t *f = json_pack("{s:I, s:i}", EV_EXEC, (json_int_t)s->exec,
		    X_EXIT_CODE, code);

		if (f != NULL && sig != 0)
			json_object_set_new(f, X_SIGNAL, json_integer(sig));
		events_emit(EV_EXEC_ENDED, s->proxy->vm_id, s->proxy->owner, f);
	}
	if (line != NULL)
		peer_send(s->peer, line, n);
	free(line);
	peer_close_after_flush(s->peer);
	session_free(s);
}

static void
session_fail(struct session *s, const char *msg)
{
	if (s->stream != NULL) {
		agent_stream_close(s->stream);
		s->stream = NULL;
	}
	session_finish(s, EXIT_CAPSULE_ERROR, 0, msg, strlen(msg));
}

/* Gives the client back the window minus what it may still send and
 * what waits here: the bytes the agent has taken. In batches, a quarter
 * window at a time, or all of it once the client is down to half a window
 * (so a client never waits on us). */
static void
session_grant(struct session *s)
{
	size_t n, g;
	char *line;

	if (!s->credit_mode)
		return;
	g = PROXY_STDIN_WINDOW - s->client_credit -
	    evbuffer_get_length(s->stdin_q);
	if (g == 0 || (g < PROXY_STDIN_WINDOW / 4 &&
	    s->client_credit > PROXY_STDIN_WINDOW / 2))
		return;
	if ((line = execmsg_encode_credit((uint32_t)g, &n)) == NULL)
		return;
	peer_send(s->peer, line, n);
	free(line);
	s->client_credit += g;
}

/* Moves queued stdin on to the agent as far as its credit goes. */
static void
session_flush_stdin(struct session *s)
{
	size_t n;

	if (s->stream == NULL)
		return;
	while (evbuffer_get_length(s->stdin_q) > 0) {
		size_t chunk = evbuffer_get_contiguous_space(s->stdin_q);

		n = agent_stream_write(s->stream,
		    evbuffer_pullup(s->stdin_q, (ssize_t)chunk), chunk);
		evbuffer_drain(s->stdin_q, n);
		metrics_bytes(METRICS_STDIN, n);
		if (n < chunk)
			break;		/* wait for credit */
	}
	session_grant(s);
	if (evbuffer_get_length(s->stdin_q) > 0)
		return;
	if (s->eof_wanted == 1) {
		s->eof_wanted = 2;
		agent_stream_eof(s->stream);
	}
	if (!s->credit_mode)
		peer_resume(s->peer);
}

static void
stream_output(struct agent_stream *st, int kind, const uint8_t *buf,
    size_t len, void *arg)
{
	struct session *s = arg;
	size_t n;
	char *line;

	metrics_bytes(kind == CHAN_STDERR ? METRICS_STDERR : METRICS_STDOUT,
	    len);
	line = execmsg_encode_data(kind == CHAN_STDERR ? EXEC_OUT_STDERR :
	    EXEC_OUT_STDOUT, buf, len, &n);
	if (line == NULL || peer_send(s->peer, line, n) < 0) {
		/* Nobody to give it to: let the agent go on. */
		free(line);
		agent_stream_release(st, len);
		return;
	}
	free(line);
	s->unreleased += len;
	if (peer_queued(s->peer) <= PROXY_OUT_HIGH) {
		agent_stream_release(st, s->unreleased);
		s->unreleased = 0;
	}
}

static void
stream_credit(struct agent_stream *st, void *arg)
{
	session_flush_stdin(arg);
}

static void
stream_exit(struct agent_stream *st, int code, int sig, const char *msg,
    size_t msg_len, void *arg)
{
	struct session *s = arg;

	s->stream = NULL;
	session_finish(s, code, sig, msg, msg_len);
}

static void
stream_started(struct agent_stream *st, uint32_t pid, const char *log,
    size_t log_len, void *arg)
{
	struct session *s = arg;
	size_t n;
	char *line = execmsg_encode_started(pid, log, log_len, &n);

	events_emit(EV_EXEC_ENDED, s->proxy->vm_id, s->proxy->owner,
	    json_pack("{s:I, s:b, s:i}", EV_EXEC, (json_int_t)s->exec,
	    X_DETACH, 1, X_PID, (int)pid));
	s->stream = NULL;
	if (line != NULL)
		peer_send(s->peer, line, n);
	free(line);
	peer_close_after_flush(s->peer);
	session_free(s);
}

static const struct agent_stream_cbs session_stream_cbs = {
	.output = stream_output,
	.credit = stream_credit,
	.exit = stream_exit,
	.started = stream_started,
};

static char **
strv_dup(char *const *a, size_t na, char *const *b, size_t nb, size_t *n)
{
	char **v = calloc(na + nb + 1, sizeof(char *));

	if (v == NULL)
		return NULL;
	for (*n = 0; *n < na + nb; (*n)++)
		if ((v[*n] = strdup(*n < na ? a[*n] : b[*n - na])) == NULL) {
			for (size_t i = 0; i < *n; i++)
				free(v[i]);
			free(v);
			return NULL;
		}
	return v;
}

/* The image's defaults for what the request leaves out: its Env under
 * the request's (a key the request sets is the request's), WorkingDir,
 * User, and Entrypoint + Cmd for no command. */
static int
session_defaults(const struct oci_config *d, struct exec_req *req,
    struct cap_err *err)
{
	char **env;
	size_t n = 0, k;

	if (req->copy != EXEC_COPY_NONE)
		return 0;	/* a copy is root's, at the path it names */
	if (req->argc == 0) {
		if (d->entrypointc + d->cmdc == 0)
			return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT,
			    "missing command: the request has none and the "
			    "image has no Entrypoint or Cmd");
		if (d->entrypointc + d->cmdc > PROTO_MAX_ARGS)
			return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT,
			    "the image's Entrypoint and Cmd have more than %d "
			    "arguments", PROTO_MAX_ARGS);
		req->argv = strv_dup(d->entrypoint, d->entrypointc, d->cmd,
		    d->cmdc, &req->argc);
		if (req->argv == NULL)
			goto nomem;
	}
	if (req->dir == NULL && d->working_dir != NULL &&
	    (req->dir = strdup(d->working_dir)) == NULL)
		goto nomem;
	if (req->user == NULL && d->user != NULL &&
	    (req->user = strdup(d->user)) == NULL)
		goto nomem;
	if (d->envc == 0)
		return 0;
	if (d->envc + req->envc > PROTO_MAX_ENV)
		return cap_err_set(err, E2BIG, E_INVALID_ARGUMENT, "the image's "
		    "Env and the request's have more than %d entries",
		    PROTO_MAX_ENV);
	if ((env = calloc(d->envc + req->envc + 1, sizeof(char *))) == NULL)
		goto nomem;
	for (size_t i = 0; i < d->envc; i++) {
		size_t klen = strcspn(d->env[i], "=") + 1;

		for (k = 0; k < req->envc; k++)
			if (strncmp(req->env[k], d->env[i], klen) == 0)
				break;
		if (k < req->envc)
			continue;
		if ((env[n++] = strdup(d->env[i])) == NULL) {
			for (size_t j = 0; j + 1 < n; j++)
				free(env[j]);
			free(env);
			goto nomem;
		}
	}
	for (k = 0; k < req->envc; k++)
		env[n++] = req->env[k];
	free(req->env);
	req->env = env;
	req->envc = n;
	return 0;
nomem:
	return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
}

static void
session_start(struct session *s, char *line, size_t len)
{
	struct proxy *px = s->proxy;
	struct exec_req req;
	struct chan_exec x;
	struct cap_err err;
	struct agent *a;
	char msg[512];

	if ((px->defaults != NULL ? execmsg_parse_request_lax(line, len, &req,
	    &err) : execmsg_parse_request(line, len, &req, &err)) < 0 ||
	    (px->defaults != NULL && session_defaults(px->defaults, &req,
	    &err) < 0)) {
		exec_req_free(&req);
		metrics_exec_refused();
		session_finish(s, EXIT_CAPSULE_ERROR, 0, err.msg,
		    strlen(err.msg));
		return;
	}
	if ((a = px->cbs.agent(px->arg, msg, sizeof(msg))) == NULL) {
		exec_req_free(&req);
		metrics_exec_refused();
		session_finish(s, EXIT_CAPSULE_ERROR, 0, msg, strlen(msg));
		return;
	}
	if (req.copy != EXEC_COPY_NONE) {
		s->stream = agent_copy(a, req.copy == EXEC_COPY_OUT, req.path,
		    &session_stream_cbs, s, &err);
	} else {
		memset(&x, 0, sizeof(x));
		x.tty = req.tty;
		x.detach = req.detach;
		x.timeout_ms = req.timeout_ms;
		x.dir = req.dir ? req.dir : "";
		x.user = req.user ? req.user : "";
		x.argc = (uint32_t)req.argc;
		x.argv = (const char **)req.argv;
		x.envc = (uint32_t)req.envc;
		x.envp = (const char **)req.env;
		x.seed = req.seed;
		x.seed_len = (uint32_t)req.seed_len;
		s->stream = agent_exec(a, &x, &session_stream_cbs, s, &err);
	}
	s->credit_mode = req.stdin_credit;
	if (s->stream != NULL) {
		json_t *f;

		s->exec = ++px->next_exec;
		f = json_pack("{s:I}", EV_EXEC, (json_int_t)s->exec);
		if (f != NULL && req.copy != EXEC_COPY_NONE)
			json_object_set_new(f, X_COPY, json_string(
			    req.copy == EXEC_COPY_OUT ? XC_OUT : XC_IN));
		else if (f != NULL && req.argc > 0)
			json_object_set_new(f, EV_ARGV0,
			    json_string(req.argv[0]));
		if (f != NULL && req.detach)
			json_object_set_new(f, X_DETACH, json_true());
		events_emit(EV_EXEC_STARTED, px->vm_id, px->owner, f);
	}
	exec_req_free(&req);
	if (s->stream == NULL) {
		metrics_exec_refused();
		session_finish(s, EXIT_CAPSULE_ERROR, 0, err.msg,
		    strlen(err.msg));
		return;
	}
	/* The first grant: the whole window. */
	session_grant(s);
}

static void
session_line(struct peer *p, char *line, size_t len, void *arg)
{
	struct session *s = arg;
	struct exec_msg m;
	struct cap_err err;
	char msg[sizeof(err.msg) + 32];

	if (s->stream == NULL) {
		session_start(s, line, len);
		return;
	}
	if (execmsg_parse_input(line, len, &m, &err) < 0) {
		snprintf(msg, sizeof(msg), "bad input line: %s", err.msg);
		session_fail(s, msg);
		return;
	}
	switch (m.type) {
	case EXEC_IN_STDIN:
		if (s->eof_wanted || m.len == 0)
			break;
		if (s->credit_mode) {
			if (m.len > s->client_credit) {
				exec_msg_free(&m);
				session_fail(s, "stdin beyond the credit "
				    "granted (\"stdin_credit\")");
				return;
			}
			s->client_credit -= m.len;
		}
		if (evbuffer_add(s->stdin_q, m.data, m.len) < 0) {
			exec_msg_free(&m);
			session_fail(s, "out of memory");
			return;
		}
		if (!s->credit_mode)
			peer_pause(s->peer);
		session_flush_stdin(s);
		break;
	case EXEC_IN_EOF:
		if (s->eof_wanted)
			break;
		s->eof_wanted = 1;
		if (!s->credit_mode)
			peer_pause(s->peer);
		session_flush_stdin(s);
		break;
	case EXEC_IN_RESIZE:
		if (m.cols > 0 && m.rows > 0)
			agent_stream_resize(s->stream, m.cols, m.rows);
		break;
	case EXEC_IN_SIGNAL:
		agent_stream_signal(s->stream, m.signal);
		break;
	default:
		break;		/* unknown types are for newer peers */
	}
	exec_msg_free(&m);
}

static void
session_overflow(struct peer *p, const char *why, void *arg)
{
	char msg[192];

	snprintf(msg, sizeof(msg), "exec %s", why);
	session_fail(arg, msg);
}

static void
session_drain(struct peer *p, void *arg)
{
	struct session *s = arg;

	if (s->stream != NULL && s->unreleased > 0) {
		agent_stream_release(s->stream, s->unreleased);
		s->unreleased = 0;
	}
}

static void
session_eof(struct peer *p, int hangup, void *arg)
{
	struct session *s = arg;

	if (!hangup && s->stream != NULL) {
		/* Half-close: no more input, but the client still reads. */
		if (!s->eof_wanted) {
			s->eof_wanted = 1;
			session_flush_stdin(s);
		}
		return;
	}
	/* The client is gone: nothing may run on unobserved. */
	if (s->stream != NULL)
		agent_stream_close(s->stream);
	peer_free(s->peer);
	session_free(s);
}

static const struct peer_cbs session_peer_cbs = {
	.line = session_line,
	.overflow = session_overflow,
	.drain = session_drain,
	.eof = session_eof,
};

/* A refused client still learns why, in protocol. */
static void
proxy_refuse(struct proxy *px, int c, const char *msg)
{
	char *line, buf[256];
	size_t n;

	metrics_exec_refused();
	if ((line = execmsg_encode_exit(EXIT_CAPSULE_ERROR, 0, msg,
	    strlen(msg), &n)) != NULL) {
		/* A new socket's buffer takes a short line whole. */
		if (write(c, line, n) != (ssize_t)n)
			log_debug("vm %s: could not tell a refused client why",
			    px->vm_id);
		free(line);
	}
	/* Closing with its request unread would flag a reset to the
	 * client: read what has come (a little, without waiting) first. */
	shutdown(c, SHUT_WR);
	for (int i = 0; i < 16 && read(c, buf, sizeof(buf)) > 0; i++)
		;
	close(c);
}

static void
proxy_accept(int c, void *arg)
{
	struct proxy *px = arg;
	struct session *s;
	uid_t uid;
	char msg[160];

	/* The socket is the owner's, mode 0600; the kernel's word on who
	 * connected decides all the same. */
	if (osdep_peer(c, &uid, NULL, NULL) < 0 ||
	    (uid != 0 && uid != px->owner)) {
		snprintf(msg, sizeof(msg), "permission denied: VM %s belongs to "
		    "another user", px->vm_id);
		proxy_refuse(px, c, msg);
		return;
	}
	if (px->nsessions >= PROXY_MAX_SESSIONS) {
		log_warn("vm %s: refusing exec connection: %d sessions already",
		    px->vm_id, PROXY_MAX_SESSIONS);
		snprintf(msg, sizeof(msg), "VM %s already has %d exec sessions, "
		    "the most it takes; try again when one ends", px->vm_id,
		    PROXY_MAX_SESSIONS);
		proxy_refuse(px, c, msg);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->stdin_q = evbuffer_new()) == NULL) {
		free(s);
		close(c);
		return;
	}
	s->proxy = px;
	s->peer = peer_new(px->base, c, PROTO_MAX_LINE, &session_peer_cbs, s);
	if (s->peer == NULL) {
		evbuffer_free(s->stdin_q);
		free(s);
		return;
	}
	peer_set_drain_mark(s->peer, PROXY_OUT_HIGH / 2);
	TAILQ_INSERT_TAIL(&px->sessions, s, entry);
	px->nsessions++;
}

struct proxy *
proxy_new(struct event_base *base, int fd, const struct oci_config *defaults,
    const char *vm_id, uid_t owner, const struct proxy_cbs *cbs, void *arg,
    struct cap_err *err)
{
	struct proxy *px;

	if ((px = calloc(1, sizeof(*px))) == NULL) {
		close(fd);
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	px->base = base;
	px->cbs = *cbs;
	px->arg = arg;
	px->owner = owner;
	px->defaults = defaults;
	snprintf(px->vm_id, sizeof(px->vm_id), "%s", vm_id);
	TAILQ_INIT(&px->sessions);
	px->listener = listener_new(base, fd, "exec socket", proxy_accept, px);
	if (px->listener == NULL) {
		close(fd);
		free(px);
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	return px;
}

size_t
proxy_sessions(const struct proxy *px)
{
	return px != NULL ? px->nsessions : 0;
}

void
proxy_free(struct proxy *px, const char *why)
{
	struct session *s;

	if (px == NULL)
		return;
	while ((s = TAILQ_FIRST(&px->sessions)) != NULL)
		session_fail(s, why);
	listener_free(px->listener);
	free(px);
}
