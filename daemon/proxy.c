/*
 * proxy.c — exec sessions on a VM's proxy socket (see proxy.h).
 *
 * Back-pressure runs end to end: stdin is read from the client only as far
 * as the agent grants credit, and output is released back to the agent
 * only once the client socket has taken it, so neither capsuled nor the
 * agent holds more than a window per session.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "execmsg.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "proxy.h"
#include "util.h"
#include "vm.h"

#define PROXY_MAX_SESSIONS	1024
#define PROXY_OUT_HIGH		(256 * 1024)	/* client socket backlog */

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct proxy		*proxy;
	struct peer		*peer;
	struct agent_stream	*stream;
	uint8_t			*pending;	/* stdin awaiting credit */
	size_t			 pending_len, pending_off;
	int			 eof_wanted;
	size_t			 unreleased;	/* output not yet granted */
};

struct proxy {
	struct event_base	*base;
	struct vm		*vm;
	char			*path;
	dev_t			 dev;		/* of the socket we bound, so we */
	ino_t			 ino;		/* never unlink somebody else's */
	struct listener		*listener;
	size_t			 nsessions;
	TAILQ_HEAD(, session)	 sessions;
};

static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&s->proxy->sessions, s, entry);
	s->proxy->nsessions--;
	free(s->pending);
	free(s);
}

/* Sends the exit line, closes the connection once it is flushed. */
static void
session_finish(struct session *s, int code, int sig, const char *msg,
    size_t msg_len)
{
	size_t n;
	char *line = execmsg_encode_exit(code, sig, msg, msg_len, &n);

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

static void
session_flush_stdin(struct session *s)
{
	size_t n;

	if (s->stream == NULL)
		return;
	if (s->pending_off < s->pending_len) {
		n = agent_stream_write(s->stream, s->pending + s->pending_off,
		    s->pending_len - s->pending_off);
		s->pending_off += n;
		if (s->pending_off < s->pending_len)
			return;		/* wait for credit */
		free(s->pending);
		s->pending = NULL;
		s->pending_len = s->pending_off = 0;
	}
	if (s->eof_wanted == 1) {
		s->eof_wanted = 2;
		agent_stream_eof(s->stream);
	}
	peer_resume(s->peer);
}

static void
stream_output(struct agent_stream *st, int kind, const uint8_t *buf,
    size_t len, void *arg)
{
	struct session *s = arg;
	size_t n;
	char *line;

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

static const struct agent_stream_cbs session_stream_cbs = {
	.output = stream_output,
	.credit = stream_credit,
	.exit = stream_exit,
};

static void
session_start(struct session *s, char *line, size_t len)
{
	struct exec_req req;
	struct chan_exec x;
	struct cap_err err;
	struct agent *a;
	char msg[256];

	if (execmsg_parse_request(line, len, &req, &err) < 0) {
		session_finish(s, EXIT_CAPSULE_ERROR, 0, err.msg,
		    strlen(err.msg));
		return;
	}
	if ((a = vm_agent(s->proxy->vm)) == NULL) {
		snprintf(msg, sizeof(msg), "VM %s is %s", vm_id(s->proxy->vm),
		    vm_state_name(vm_state(s->proxy->vm)));
		exec_req_free(&req);
		session_finish(s, EXIT_CAPSULE_ERROR, 0, msg, strlen(msg));
		return;
	}
	memset(&x, 0, sizeof(x));
	x.tty = req.tty;
	x.dir = req.dir ? req.dir : "";
	x.argc = (uint32_t)req.argc;
	x.argv = (const char **)req.argv;
	x.envc = (uint32_t)req.envc;
	x.envp = (const char **)req.env;
	s->stream = agent_exec(a, &x, &session_stream_cbs, s, &err);
	exec_req_free(&req);
	if (s->stream == NULL)
		session_finish(s, EXIT_CAPSULE_ERROR, 0, err.msg,
		    strlen(err.msg));
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
		s->pending = m.data;
		s->pending_len = m.len;
		s->pending_off = 0;
		m.data = NULL;
		peer_pause(s->peer);
		session_flush_stdin(s);
		break;
	case EXEC_IN_EOF:
		if (s->eof_wanted)
			break;
		s->eof_wanted = 1;
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
session_overflow(struct peer *p, void *arg)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "exec line longer than %d bytes",
	    PROTO_MAX_LINE);
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

static void
proxy_accept(int c, void *arg)
{
	struct proxy *px = arg;
	struct session *s;

	if (px->nsessions >= PROXY_MAX_SESSIONS) {
		log_warn("vm %s: refusing exec connection: %d sessions already",
		    vm_id(px->vm), PROXY_MAX_SESSIONS);
		close(c);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(c);
		return;
	}
	s->proxy = px;
	s->peer = peer_new(px->base, c, PROTO_MAX_LINE, &session_peer_cbs, s);
	if (s->peer == NULL) {
		free(s);
		return;
	}
	peer_set_drain_mark(s->peer, PROXY_OUT_HIGH / 2);
	TAILQ_INSERT_TAIL(&px->sessions, s, entry);
	px->nsessions++;
}

struct proxy *
proxy_new(struct event_base *base, struct vm *vm, const char *path,
    struct cap_err *err)
{
	struct proxy *px;
	struct stat st;
	int fd;

	if ((px = calloc(1, sizeof(*px))) == NULL ||
	    (px->path = strdup(path)) == NULL) {
		free(px);
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	px->base = base;
	px->vm = vm;
	TAILQ_INIT(&px->sessions);
	unlink(path);	/* vm.c checked that nothing listens there */
	if ((fd = util_listen_unix(path, 0600, err)) < 0) {
		free(px->path);
		free(px);
		return NULL;
	}
	if (lstat(path, &st) == 0) {
		px->dev = st.st_dev;
		px->ino = st.st_ino;
	}
	px->listener = listener_new(base, fd, "exec socket", proxy_accept, px);
	if (px->listener == NULL) {
		close(fd);
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		proxy_free(px);
		return NULL;
	}
	return px;
}

void
proxy_free(struct proxy *px)
{
	struct session *s;
	struct stat st;
	char msg[128];

	if (px == NULL)
		return;
	snprintf(msg, sizeof(msg), "VM %s is %s", vm_id(px->vm),
	    vm_state_name(vm_state(px->vm)));
	while ((s = TAILQ_FIRST(&px->sessions)) != NULL)
		session_fail(s, msg);
	listener_free(px->listener);
	if (lstat(px->path, &st) == 0 && st.st_dev == px->dev &&
	    st.st_ino == px->ino)
		unlink(px->path);
	free(px->path);
	free(px);
}
