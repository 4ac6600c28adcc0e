/*
 * events.h — the lifecycle event stream (control op Events).
 *
 * A control connection that sends {"op":"Events"} gets {"ok":true} and
 * from then on one JSON line per event, as they happen:
 *
 *   {"event":"ready","vm_id":"...","owner_uid":1000,"seq":7,
 *    "time":"2026-11-29T10:25:24.123Z", ...}
 *
 * A subscriber sees the events of the VMs it may see (its own; root: all).
 * One that falls more than EVENTS_MAX_BEHIND bytes behind is told so in a
 * last line and disconnected: capsuled does not buffer without end for a
 * reader that does not read.
 */
#ifndef CAPSULE_EVENTS_H
#define CAPSULE_EVENTS_H

#include <sys/types.h>

#include <jansson.h>

#define EVENTS_MAX_BEHIND	(1024 * 1024)

struct peer;
struct events_sub;

/* Sends an event to every subscriber that may see vm_id's events; takes
 * fields (an object of extra members, may be NULL). */
void	events_emit(const char *event, const char *vm_id, uid_t owner,
	    json_t *fields);
struct events_sub *events_subscribe(struct peer *p, uid_t uid);
void	events_unsubscribe(struct events_sub *s);

#endif /* CAPSULE_EVENTS_H */
