/*
 * sink.h — a byte stream relayed into a file that never outgrows its cap.
 *
 * A guest can write to its serial console as fast as it likes and a
 * hypervisor can print without end, so neither writes its log file itself:
 * capsuled reads the stream and writes the file. When the file would pass
 * `max` bytes, its oldest part goes: the newest half is moved to the front
 * under a line saying that older output was dropped. The last few KiB also
 * stay in memory for error messages.
 *
 * The stream is always read, even when the file cannot be written (a full
 * disk): the writer must never block on us. Failed writes are counted and
 * reported once.
 */
#ifndef CAPSULE_SINK_H
#define CAPSULE_SINK_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#define SINK_MIN_MAX	(256 * 1024)	/* smaller caps are raised to this */
#define SINK_TAIL	4096

struct sink;

/* Takes both fds (in: non-blocking stream; out: a file opened for reading
 * and writing, written from offset 0). `what` names it in the log. */
struct sink *sink_new(struct event_base *base, int in, int out, uint64_t max,
	    const char *what);
/* Reads what is already waiting on the stream, without blocking. */
void	sink_drain(struct sink *s);
/* The newest bytes (at most len - 1), made printable, NUL-terminated. */
void	sink_tail(const struct sink *s, char *buf, size_t len);
/* 0, or the errno of the last failed write (until one succeeds). */
int	sink_error(const struct sink *s);
uint64_t sink_dropped(const struct sink *s);	/* bytes lost to errors */
void	sink_free(struct sink *s);

#endif /* CAPSULE_SINK_H */
