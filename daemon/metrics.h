/*
 * metrics.h — Prometheus metrics at http://ADDR/metrics (text exposition
 * format 0.0.4), when --metrics-listen (or metrics_listen) says where:
 * "HOST:PORT" for TCP, "unix:/path" for a Unix socket (mode 0600).
 *
 * Counters move with the events capsuled emits (events.c hands each to
 * metrics_event) and with the bytes exec sessions carry; gauges (VMs by
 * state, the daemon's memory and descriptors) are read when scraped.
 */
#ifndef CAPSULE_METRICS_H
#define CAPSULE_METRICS_H

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

#include "err.h"

enum metrics_stream { METRICS_STDIN, METRICS_STDOUT, METRICS_STDERR };

int	metrics_listen(struct event_base *base, const char *addr,
	    struct cap_err *err);
void	metrics_close(void);
/* Every lifecycle event, with its fields. */
void	metrics_event(const char *event, json_t *fields);
void	metrics_bytes(enum metrics_stream s, size_t n);
/* An exec or copy request turned down before it started. */
void	metrics_exec_refused(void);
/* The exposition text (tests). Caller frees. */
char	*metrics_text(void);

#endif /* CAPSULE_METRICS_H */
