/*
 * relay.h — one TCP connection carried both ways over a byte stream of a
 * VM's agent channel: a guest's outbound connection (egress.c) or a
 * connection to a published port (publish.c).
 *
 * Flow control end to end: the socket is read only as far as the agent
 * has granted credit, and bytes from the agent are credited back only
 * once the socket has taken them, so a slow side costs at most one
 * window (CHAN_WINDOW) each way. A half-close passes through (EOF one way,
 * shutdown(SHUT_WR) the other); an error on either side resets the other
 * (RESET to the agent, RST to the socket).
 */
#ifndef CAPSULE_RELAY_H
#define CAPSULE_RELAY_H

#include <stdint.h>

#include <event2/bufferevent.h>

#include "agent.h"

struct relay;

struct relay_stats {
	uint64_t	to_guest;	/* bytes from the socket */
	uint64_t	from_guest;	/* bytes to the socket */
	uint64_t	ms;		/* how long it lasted */
};

/* The relay is over and freed: why is NULL when both ways ended cleanly,
 * else what went wrong. */
typedef void relay_done_fn(const char *why, const struct relay_stats *st,
    void *arg);

/* Carries bev (connected; taken) over a stream. The socket is not read
 * until the stream is up. */
struct relay *relay_new(struct bufferevent *bev, relay_done_fn *done,
	    void *arg);
/* The callbacks to give the stream (agent_forward, agent_bytes_take),
 * with the relay as their argument. */
extern const struct agent_bytes_cbs relay_stream_cbs;
/* The relay's stream: up already (a guest-opened one capsuled has just
 * accepted), or up once the agent answers OPENED (agent_forward). */
void	relay_attach(struct relay *r, struct agent_stream *s, int up);
/* Ends it now, resetting both sides; done is not called. */
void	relay_abort(struct relay *r, const char *why);

#endif /* CAPSULE_RELAY_H */
