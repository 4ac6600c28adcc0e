/*
 * agent.h — the daemon's end of a VM's agent channel (proto/chan.h).
 *
 * One struct agent per VM multiplexes every exec stream over the
 * virtio-serial port. Output the agent sends for a stream is handed to the
 * stream's owner, who calls agent_stream_release() once it has passed the
 * bytes on; that is what grants the agent more credit. Input is accepted
 * only as far as the agent has granted credit.
 */
#ifndef CAPSULE_AGENT_H
#define CAPSULE_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "chan.h"
#include "err.h"

struct agent;
struct agent_stream;

/* Heartbeat: a PING this often once the agent is ready, and a guest that
 * sends nothing at all for AGENT_SILENT_MS is reported as not answering. */
#define AGENT_PING_MS		2000
#define AGENT_SILENT_MS		10000

struct agent_cbs {
	/* The agent said HELLO with our version: the guest is ready. */
	void	(*ready)(struct agent *a, uint32_t guest_boot_ms, void *arg);
	/* The channel is unusable (closed, garbage, wrong version, or the
	 * agent started over with a second HELLO). */
	void	(*failed)(struct agent *a, const char *why, void *arg);
	/* Nothing from the agent for silent_ms (the guest is frozen, hung
	 * or paused); called once until it is heard again. */
	void	(*silent)(struct agent *a, unsigned silent_ms, void *arg);
	/* It answers again after being silent. */
	void	(*heard)(struct agent *a, void *arg);
};

struct agent_stream_cbs {
	/* CHAN_STDOUT or CHAN_STDERR bytes. */
	void	(*output)(struct agent_stream *s, int kind, const uint8_t *buf,
		    size_t len, void *arg);
	/* Input credit opened again. */
	void	(*credit)(struct agent_stream *s, void *arg);
	/* The stream is over: the command exited (msg from the agent), or the
	 * channel went away (exit_code 125, msg says why). The stream is freed
	 * after this returns. */
	void	(*exit)(struct agent_stream *s, int exit_code, int signal,
		    const char *msg, size_t msg_len, void *arg);
	/* A detached command is running as pid, its output going to log in
	 * the guest. The stream is over and freed after this returns. */
	void	(*started)(struct agent_stream *s, uint32_t pid,
		    const char *log, size_t log_len, void *arg);
};

struct agent *agent_new(struct event_base *base, int fd,
	    const struct agent_cbs *cbs, void *arg);
/* Ends every stream (exit callback with `why`) and closes the channel. */
void	agent_free(struct agent *a, const char *why);
/* Ends every stream (exit code 125 with `why`), telling the agent to kill
 * their commands; the channel stays. */
void	agent_end_streams(struct agent *a, const char *why);
/* Other heartbeat timings (tests). */
void	agent_set_heartbeat(struct agent *a, unsigned ping_ms,
	    unsigned silent_ms);
int	agent_shutdown(struct agent *a);

struct agent_stream *agent_exec(struct agent *a, const struct chan_exec *x,
	    const struct agent_stream_cbs *cbs, void *arg, struct cap_err *err);
/* capsule cp: COPY_IN (out = 0) takes a cpio archive as stdin bytes,
 * COPY_OUT sends one as stdout; either ends with the exit callback. */
struct agent_stream *agent_copy(struct agent *a, int out, const char *path,
	    const struct agent_stream_cbs *cbs, void *arg, struct cap_err *err);
/* Sends up to len stdin bytes as credit allows; returns how many. */
size_t	agent_stream_write(struct agent_stream *s, const uint8_t *buf,
	    size_t len);
void	agent_stream_eof(struct agent_stream *s);
void	agent_stream_resize(struct agent_stream *s, uint16_t cols,
	    uint16_t rows);
void	agent_stream_signal(struct agent_stream *s, int sig);
void	agent_stream_release(struct agent_stream *s, size_t n);
/* The client is gone: the agent kills the command; no more callbacks. */
void	agent_stream_close(struct agent_stream *s);

#endif /* CAPSULE_AGENT_H */
