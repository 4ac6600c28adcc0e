/*
 * agent.h — the daemon's end of a VM's agent channel (proto/chan.h).
 *
 * One struct agent per VM multiplexes every stream over the virtio-serial
 * port: exec streams (a command or a copy, opened by capsuled) and byte
 * streams (a published port's connection, opened by capsuled; the guest's
 * outbound connections and name lookups, opened by the guest). Bytes the
 * agent sends on a stream are handed to the stream's owner, who calls
 * agent_stream_release() once it has passed them on; that is what grants
 * the agent more credit. Bytes to the agent are sent only as far as the
 * agent has granted credit.
 *
 * The channel version and features are negotiated in the HELLOs: with an
 * agent of CHAN_VERSION_MIN (a VM started before this capsuled) only exec
 * streams work, and agent_features() says so.
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
	/* The guest opened a stream (CONNECT or DNS; o's strings point into
	 * the frame, valid during the call). The owner takes it with
	 * agent_bytes_take() and answers with agent_bytes_opened() or
	 * agent_bytes_reset(), now or later; a stream not taken is refused.
	 * May be NULL: every guest open is refused. */
	void	(*open)(struct agent *a, struct agent_stream *s,
		    const struct chan_open *o, void *arg);
	/* The answer to agent_net(): code 0, or a positive errno and why. */
	void	(*net_done)(struct agent *a, uint32_t code, const char *msg,
		    size_t len, void *arg);
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

/* A byte stream's owner. */
struct agent_bytes_cbs {
	/* A stream capsuled opened is up (the agent answered OPENED). */
	void	(*opened)(struct agent_stream *s, void *arg);
	/* DATA: pass it on, then agent_stream_release(). */
	void	(*data)(struct agent_stream *s, const uint8_t *buf, size_t len,
		    void *arg);
	/* The agent will send no more DATA (a half-close). */
	void	(*eof)(struct agent_stream *s, void *arg);
	/* More may be written (agent_bytes_write) now. */
	void	(*credit)(struct agent_stream *s, void *arg);
	/* The stream is over: code 0 when both ways ended cleanly, else a
	 * positive errno with why (the agent's RESET, a refused open, the
	 * channel going). The stream is freed after this returns. */
	void	(*end)(struct agent_stream *s, uint32_t code, const char *msg,
		    size_t len, void *arg);
};

struct agent *agent_new(struct event_base *base, int fd,
	    const struct agent_cbs *cbs, void *arg);
/* Ends every stream (exit callback with `why`) and closes the channel. */
void	agent_free(struct agent *a, const char *why);
/* Ends every stream (exit code 125 with `why`), telling the agent to kill
 * their commands; the channel stays. */
void	agent_end_streams(struct agent *a, const char *why);
/* CHAN_FEAT_* both ends speak (0 before the HELLOs, or with an agent of
 * CHAN_VERSION_MIN). */
uint32_t agent_features(const struct agent *a);
/* Streams open on the channel: exec sessions, copies, connections. */
size_t	agent_nstreams(const struct agent *a);
/* Sends NET (once per guest boot); the answer comes to net_done. */
/* Stops the heartbeat, and calls cb once the agent has read everything
 * sent before now (it answered a PING sent now). agent_heartbeat(a, 1) or
 * the agent's next HELLO starts the heartbeat again. */
typedef void agent_sync_fn(struct agent *a, void *arg);
void	agent_sync(struct agent *a, agent_sync_fn *cb, void *arg);
void	agent_heartbeat(struct agent *a, int on);
/* Sends REFRESH (the host's time, fresh randomness, and hostname if not
 * NULL and the agent takes one): the guest is a copy. Its agent answers
 * with HELLO, reported by cbs.ready again. */
int	agent_refresh(struct agent *a, const char *hostname,
	    struct cap_err *err);
int	agent_net(struct agent *a, const struct chan_net *n,
	    struct cap_err *err);
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

/* Byte streams. agent_forward opens one to 127.0.0.1:port in the guest
 * (a published port); opened or end follows. */
struct agent_stream *agent_forward(struct agent *a, uint16_t port,
	    const struct agent_bytes_cbs *cbs, void *arg, struct cap_err *err);
/* Takes a stream the guest opened (in the open callback). */
void	agent_bytes_take(struct agent_stream *s,
	    const struct agent_bytes_cbs *cbs, void *arg);
/* Accepts a guest-opened stream. */
void	agent_bytes_opened(struct agent_stream *s);
/* Answers a guest-opened question (DNS) yes: OPENED, and the stream is
 * over; it is freed, no callback follows. */
void	agent_bytes_answer(struct agent_stream *s);
/* Refuses or aborts a stream: RESET with code (a positive errno) and why;
 * the stream is freed, no callback follows. */
void	agent_bytes_reset(struct agent_stream *s, uint32_t code,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends up to len bytes as credit allows; returns how many. */
size_t	agent_bytes_write(struct agent_stream *s, const uint8_t *buf,
	    size_t len);
/* Ends our way (EOF). Returns 1 if that ended the stream (the agent had
 * ended its way): it is freed, and no callback follows; else 0. */
int	agent_bytes_eof(struct agent_stream *s);

#endif /* CAPSULE_AGENT_H */
