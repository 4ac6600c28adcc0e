/*
 * peer.h — one connection on a stream socket, wrapped once (after tmux's
 * proc.c): capped line reading, queued output, write interest only while
 * output is queued, and a callback when the peer goes away.
 *
 * Every socket the daemon speaks JSON lines on is a peer: control clients
 * and exec clients. (The agent channel is binary and uses agent.c.)
 */
#ifndef CAPSULE_PEER_H
#define CAPSULE_PEER_H

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

struct peer;

struct peer_cbs {
	/* A complete line, without its newline. `line` is NUL-terminated. */
	void	(*line)(struct peer *p, char *line, size_t len, void *arg);
	/* Reading has stopped for good: a line grew past the cap, it stayed
	 * unfinished too long, or the daemon holds too much unfinished input
	 * across all peers. `why` says which, as a sentence. */
	void	(*overflow)(struct peer *p, const char *why, void *arg);
	/* Output queue fell to the drain mark (optional). */
	void	(*drain)(struct peer *p, void *arg);
	/* The peer stopped sending: `hangup` is 0 if it only shut down its
	 * write side (half-close) and still reads our output, 1 if it closed
	 * entirely. A half-close may be followed by a second call with
	 * hangup 1; a full hang-up is noticed even while paused (then lines
	 * still buffered are dropped). After it the owner must peer_free(). */
	void	(*eof)(struct peer *p, int hangup, void *arg);
};

/* Limits over all peers: the unfinished input they may hold in total, and
 * how long one line may stay unfinished while it is being read. */
#define PEER_INPUT_MAX		(64 * 1024 * 1024)
#define PEER_PARTIAL_MS		30000
void	peer_set_limits(size_t input_max, unsigned partial_ms);

struct peer *peer_new(struct event_base *base, int fd, size_t max_line,
	    const struct peer_cbs *cbs, void *arg);
void	peer_free(struct peer *p);

int	peer_send(struct peer *p, const char *buf, size_t len);
/* Sends one JSON object as a line; takes the reference. */
int	peer_send_json(struct peer *p, json_t *o);
size_t	peer_queued(const struct peer *p);
void	peer_set_drain_mark(struct peer *p, size_t mark);
/* Stop/start delivering lines (e.g. while a request is in progress). */
void	peer_pause(struct peer *p);
void	peer_resume(struct peer *p);
/* Flush what is queued, then free the peer (and call nothing more). */
void	peer_close_after_flush(struct peer *p);
int	peer_fd(const struct peer *p);
/* The kernel's word on who is calling (SO_PEERCRED). */
int	peer_uid(const struct peer *p);

/*
 * A listening socket: calls `accept` with each new connection (non-blocking,
 * close-on-exec). When the process runs out of file descriptors it stops
 * accepting for a second instead of spinning on EMFILE.
 */
struct listener;
typedef void (*listener_cb)(int fd, void *arg);

struct listener *listener_new(struct event_base *base, int fd,
	    const char *what, listener_cb accept, void *arg);
/* Stops listening and closes the socket (the caller unlinks its path). */
void	listener_free(struct listener *l);

#endif /* CAPSULE_PEER_H */
