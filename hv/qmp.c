/*
 * qmp.c — QMP client (see qmp.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"
#include "qmp.h"

#define QMP_KEY_GREETING	"QMP"
#define QMP_KEY_RETURN		"return"
#define QMP_KEY_ERROR		"error"
#define QMP_KEY_ID		"id"	/* ours: the command's name */
#define QMP_KEY_EVENT		"event"
#define QMP_KEY_DATA		"data"
#define QMP_KEY_EXECUTE		"execute"
#define QMP_KEY_DESC		"desc"

struct qmp {
	struct bufferevent	*bev;
	struct qmp_cbs		 cbs;
	void			*arg;
	int			 closed;
	int			 busy;		/* inside a callback */
	int			 dead;		/* freed while busy */
	char			 what[64];
};

static void
qmp_close(struct qmp *q, const char *why)
{
	if (q->closed)
		return;
	q->closed = 1;
	bufferevent_disable(q->bev, EV_READ | EV_WRITE);
	if (q->cbs.closed != NULL)
		q->cbs.closed(q->arg, why);
}

/* Callbacks may free the client; the real free waits until they return. */
static void
qmp_leave(struct qmp *q)
{
	if (--q->busy == 0 && q->dead) {
		bufferevent_free(q->bev);
		free(q);
	}
}

static void
qmp_line(struct qmp *q, const char *line, size_t len)
{
	json_t *o, *v;

	o = json_loadb(line, len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		log_warn("%s: QMP sent a line that is not a JSON object",
		    q->what);
		return;
	}
	if (json_is_string(v = json_object_get(o, QMP_KEY_EVENT))) {
		json_t *data = json_object_get(o, QMP_KEY_DATA);

		if (q->cbs.event != NULL)
			q->cbs.event(q->arg, json_string_value(v),
			    json_is_object(data) ? data : NULL);
	} else if ((v = json_object_get(o, QMP_KEY_ERROR)) != NULL) {
		json_t *d = json_object_get(v, QMP_KEY_DESC);
		json_t *id = json_object_get(o, QMP_KEY_ID);
		const char *desc = json_is_string(d) ? json_string_value(d) :
		    "(no description)";

		log_warn("%s: QMP error%s%s: %.200s", q->what,
		    json_is_string(id) ? " for " : "", json_is_string(id) ?
		    json_string_value(id) : "", desc);
		if (q->cbs.error != NULL)
			q->cbs.error(q->arg, json_is_string(id) ?
			    json_string_value(id) : "", desc);
	}
	/* Greetings and "return"s need nothing. */
	json_decref(o);
}

static void
qmp_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct qmp *q = arg;
	size_t n;
	char *line;

	q->busy++;
	while (!q->closed && !q->dead &&
	    (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		if (n > 0)
			qmp_line(q, line, n);
		free(line);
	}
	if (!q->closed && !q->dead && evbuffer_get_length(in) > QMP_MAX_LINE)
		qmp_close(q, "QMP sent a line over the limit");
	qmp_leave(q);
}

static void
qmp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct qmp *q = arg;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	q->busy++;
	qmp_close(q, "the QMP connection closed");
	qmp_leave(q);
}

struct qmp *
qmp_new(struct event_base *base, int fd, const struct qmp_cbs *cbs,
    void *arg, const char *what)
{
	struct qmp *q;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		close(fd);
		return NULL;
	}
	q->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (q->bev == NULL) {
		close(fd);
		free(q);
		return NULL;
	}
	q->cbs = *cbs;
	q->arg = arg;
	snprintf(q->what, sizeof(q->what), "%s", what);
	bufferevent_setcb(q->bev, qmp_read_cb, NULL, qmp_event_cb, q);
	bufferevent_setwatermark(q->bev, EV_READ, 0, QMP_MAX_LINE + 2);
	bufferevent_enable(q->bev, EV_READ | EV_WRITE);
	/* QEMU reads commands in order after its greeting: no need to wait
	 * for the greeting before asking for the capabilities. */
	qmp_execute(q, "qmp_capabilities");
	return q;
}

int
qmp_execute(struct qmp *q, const char *cmd)
{
	char line[128];
	int n;

	if (q == NULL || q->closed)
		return -EPIPE;
	/* Its name as its id: QEMU puts it in the reply. */
	n = snprintf(line, sizeof(line), "{\"%s\":\"%s\",\"%s\":\"%s\"}\n",
	    QMP_KEY_EXECUTE, cmd, QMP_KEY_ID, cmd);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -E2BIG;
	return bufferevent_write(q->bev, line, (size_t)n) == 0 ? 0 : -ENOMEM;
}

int
qmp_execute_args(struct qmp *q, const char *cmd, json_t *args)
{
	json_t *o = json_pack("{s:s,s:s,s:o}", QMP_KEY_EXECUTE, cmd,
	    QMP_KEY_ID, cmd, "arguments", args);
	char *line;
	int r;

	if (o == NULL)
		return -ENOMEM;
	if (q == NULL || q->closed) {
		json_decref(o);
		return -EPIPE;
	}
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (line == NULL)
		return -ENOMEM;
	r = bufferevent_write(q->bev, line, strlen(line)) == 0 &&
	    bufferevent_write(q->bev, "\n", 1) == 0 ? 0 : -ENOMEM;
	free(line);
	return r;
}

int
qmp_send_fd(struct qmp *q, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = " ", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	ssize_t n;

	if (q == NULL || q->closed)
		return -EPIPE;
	/* The space must fall between two lines, not into a half-sent one:
	 * only with nothing queued. */
	if (evbuffer_get_length(bufferevent_get_output(q->bev)) > 0)
		return -EAGAIN;
	memset(cbuf, 0, sizeof(cbuf));
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	/* QEMU keeps the file until a command asks for it. */
	do
		n = sendmsg(bufferevent_getfd(q->bev), &m, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : n < 0 ? -errno : -EAGAIN;
}

void
qmp_free(struct qmp *q)
{
	if (q == NULL)
		return;
	if (q->busy > 0) {
		q->dead = 1;
		q->closed = 1;
		bufferevent_disable(q->bev, EV_READ | EV_WRITE);
		return;
	}
	bufferevent_free(q->bev);
	free(q);
}
