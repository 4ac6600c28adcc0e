/*
 * events.c — the lifecycle event stream (see events.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <time.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "proto.h"

struct events_sub {
	TAILQ_ENTRY(events_sub)	 entry;
	struct peer		*peer;
	uid_t			 uid;
	int			 dead;		/* too slow: closed */
};

static TAILQ_HEAD(, events_sub) subs = TAILQ_HEAD_INITIALIZER(subs);
static uint64_t seq;

static void
events_now(char out[40])
{
	struct timespec ts;
	struct tm tm;
	char base[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

void
events_emit(const char *event, const char *vm_id, uid_t owner, json_t *fields)
{
	struct events_sub *s;
	char when[40];
	json_t *o;

	seq++;
	metrics_event(event, fields);
	if (TAILQ_EMPTY(&subs)) {
		json_decref(fields);
		return;
	}
	events_now(when);
	o = json_pack("{s:s, s:I, s:s}", EV_EVENT, event, EV_SEQ,
	    (json_int_t)seq, EV_TIME, when);
	if (o == NULL) {
		json_decref(fields);
		return;
	}
	if (vm_id != NULL) {
		json_object_set_new(o, J_VM_ID, json_string(vm_id));
		json_object_set_new(o, EV_OWNER_UID,
		    json_integer((json_int_t)owner));
	}
	if (fields != NULL)
		json_object_update(o, fields);
	json_decref(fields);
	TAILQ_FOREACH(s, &subs, entry) {
		if (s->dead || (s->uid != 0 && vm_id != NULL &&
		    s->uid != owner))
			continue;
		if (peer_queued(s->peer) > EVENTS_MAX_BEHIND) {
			/* A reader that does not read gets one last line. */
			s->dead = 1;
			log_warn("events: a subscriber (uid %u) fell %d bytes "
			    "behind; closing it", (unsigned)s->uid,
			    EVENTS_MAX_BEHIND);
			peer_send_json(s->peer, json_pack("{s:s, s:s}",
			    EV_EVENT, EV_OVERFLOW, J_ERROR, "too far behind; "
			    "reconnect and read faster"));
			peer_close_after_flush(s->peer);
			continue;
		}
		peer_send_json(s->peer, json_incref(o));
	}
	json_decref(o);
}

struct events_sub *
events_subscribe(struct peer *p, uid_t uid)
{
	struct events_sub *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->peer = p;
	s->uid = uid;
	TAILQ_INSERT_TAIL(&subs, s, entry);
	return s;
}

void
events_unsubscribe(struct events_sub *s)
{
	if (s == NULL)
		return;
	TAILQ_REMOVE(&subs, s, entry);
	free(s);
}
