/*
 * sink.c — capped log files fed from a stream (see sink.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "sink.h"
#include "util.h"

#define SINK_READ	65536		/* one read */
#define SINK_BURST	(4 * SINK_READ)	/* per wake-up, to stay fair */

struct sink {
	struct event	*ev;
	int		 in, out;
	uint64_t	 max;
	uint64_t	 off;		/* where the next byte goes */
	char		 what[64];
	char		 ring[SINK_TAIL];
	size_t		 ring_len, ring_head;	/* head: next write slot */
	int		 error;
	int		 error_told;
	uint64_t	 dropped;
	int		 eof;
};

static void
sink_remember(struct sink *s, const char *p, size_t n)
{
	if (n > SINK_TAIL) {
		p += n - SINK_TAIL;
		n = SINK_TAIL;
	}
	for (size_t i = 0; i < n; i++) {
		s->ring[s->ring_head] = p[i];
		s->ring_head = (s->ring_head + 1) % SINK_TAIL;
	}
	s->ring_len = s->ring_len + n > SINK_TAIL ? SINK_TAIL :
	    s->ring_len + n;
}

static int
sink_pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Keeps the newest half of the file, from a line start, under a note. */
static int
sink_compact(struct sink *s)
{
	char note[160], buf[SINK_READ];
	uint64_t keep = s->max / 2, from, to;
	ssize_t n;
	int r, len;

	if (keep > s->off)
		keep = s->off;
	from = s->off - keep;
	/* Start at a line if one begins soon: half a line is noise. */
	if ((n = pread(s->out, buf, 4096, (off_t)from)) > 0) {
		char *nl = memchr(buf, '\n', (size_t)n);

		if (nl != NULL)
			from += (uint64_t)(nl - buf) + 1;
	}
	len = snprintf(note, sizeof(note), "[capsule: older output was "
	    "dropped to keep this log under %llu bytes]\n",
	    (unsigned long long)s->max);
	if ((r = sink_pwrite_all(s->out, note, (size_t)len, 0)) < 0)
		return r;
	to = (uint64_t)len;
	/* from > to always (from is past half the cap), so forward copying
	 * never overwrites what it has yet to read. */
	while (from < s->off) {
		size_t want = s->off - from > sizeof(buf) ? sizeof(buf) :
		    (size_t)(s->off - from);

		n = pread(s->out, buf, want, (off_t)from);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		if ((r = sink_pwrite_all(s->out, buf, (size_t)n, to)) < 0)
			return r;
		from += (uint64_t)n;
		to += (uint64_t)n;
	}
	if (ftruncate(s->out, (off_t)to) < 0)
		return -errno;
	s->off = to;
	return 0;
}

static void
sink_write(struct sink *s, const char *p, size_t n)
{
	int r = 0;

	sink_remember(s, p, n);
	if (s->off + n > s->max)
		r = sink_compact(s);
	if (r == 0)
		r = sink_pwrite_all(s->out, p, n, s->off);
	if (r == 0) {
		s->off += n;
		if (s->error != 0)
			log_info("%s: writing again (%llu bytes were lost)",
			    s->what, (unsigned long long)s->dropped);
		s->error = 0;
		s->error_told = 0;
		return;
	}
	/* Where the write stopped is unknown: go on from the file's end. */
	s->off = (uint64_t)lseek(s->out, 0, SEEK_END);
	s->dropped += n;
	s->error = -r;
	if (!s->error_told) {
		s->error_told = 1;
		log_warn("%s: %s; dropping output until writes succeed",
		    s->what, strerror(-r));
	}
}

static void
sink_read(struct sink *s, size_t budget)
{
	char buf[SINK_READ];
	ssize_t n;

	while (!s->eof && budget > 0) {
		n = read(s->in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			s->eof = 1;
			event_del(s->ev);
			return;
		}
		sink_write(s, buf, (size_t)n);
		budget = budget > (size_t)n ? budget - (size_t)n : 0;
	}
}

static void
sink_cb(evutil_socket_t fd, short what, void *arg)
{
	sink_read(arg, SINK_BURST);
}

struct sink *
sink_new(struct event_base *base, int in, int out, uint64_t max,
    const char *what)
{
	struct sink *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto fail;
	s->in = in;
	s->out = out;
	s->max = max < SINK_MIN_MAX ? SINK_MIN_MAX : max;
	snprintf(s->what, sizeof(s->what), "%s", what);
	s->ev = event_new(base, in, EV_READ | EV_PERSIST, sink_cb, s);
	if (s->ev == NULL || event_add(s->ev, NULL) < 0) {
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
		goto fail;
	}
	return s;
fail:
	close(in);
	close(out);
	return NULL;
}

void
sink_drain(struct sink *s)
{
	if (s != NULL)
		sink_read(s, SIZE_MAX);
}

void
sink_tail(const struct sink *s, char *buf, size_t len)
{
	size_t n, start;

	buf[0] = '\0';
	if (s == NULL || len < 2)
		return;
	n = s->ring_len < len - 1 ? s->ring_len : len - 1;
	start = (s->ring_head + SINK_TAIL - n) % SINK_TAIL;
	for (size_t i = 0; i < n; i++) {
		char c = s->ring[(start + i) % SINK_TAIL];

		/* Printable for JSON and terminals: guest text is hostile. */
		buf[i] = ((unsigned char)c < 0x20 && c != '\n') || c == 0x7f ?
		    ' ' : c;
	}
	buf[n] = '\0';
	cap_utf8_scrub(buf, n);
}

int
sink_error(const struct sink *s)
{
	return s != NULL ? s->error : 0;
}

uint64_t
sink_dropped(const struct sink *s)
{
	return s != NULL ? s->dropped : 0;
}

void
sink_free(struct sink *s)
{
	if (s == NULL)
		return;
	event_free(s->ev);
	close(s->in);
	close(s->out);
	free(s);
}
