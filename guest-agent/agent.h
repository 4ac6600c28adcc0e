/*
 * agent.h — capsule-agent internals: PID 1 of the guest.
 *
 * init.c brings the guest up (mounts, modules, root switch, the port),
 * chanio.c owns the virtio-serial channel, exec.c runs one command (or one
 * copy) per stream, user.c finds who it runs as, agent.c holds the stream
 * table and the poll loop. net.c sets up the network the host asks for,
 * dns.c is the resolver stub of "allow" mode and sock.c carries byte
 * streams (outbound connections, forwarded ports) over the channel.
 *
 * Everything returns 0 or a negative errno.
 */
#ifndef CAPSULE_AGENT_H
#define CAPSULE_AGENT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chan.h"

#define AGENT_MAX_STREAMS	1024
#define AGENT_MAX_ARGS		4096	/* PROTO_MAX_ARGS */
#define AGENT_MAX_ENV		4096	/* PROTO_MAX_ENV */
/* Stop reading command output while this much is queued for the host, so
 * a host that does not drain the port costs us bounded memory. */
#define AGENT_QUEUE_HIGH	(512 * 1024)
#define AGENT_NOFILE		16384
/* "allow" mode: nftables sends every TCP connection to a synthetic
 * address or a policy range here (see net.c). Port 1 (tcpmux, unused for
 * decades) is privileged, so no user program can have it, and none
 * expects to serve there; the agent binds it before any command runs. */
#define AGENT_EGRESS_PORT	1
#define AGENT_DNS_PORT		53	/* the stub, on 127.0.0.1 */

struct chanio;
typedef void agent_io_fn(struct chanio *c, void *obj, int fd, short revents);

/* ---- agent.c ---- */
void	agent_log(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
_Noreturn void agent_fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
_Noreturn void agent_poweroff(void);
uint32_t agent_boot_ms(void);
long	agent_now_ms(void);		/* CLOCK_MONOTONIC, for deadlines */
/* Polls fd this round; fn gets the events. obj must stay allocated until
 * the next round (free between rounds, in a *_sweep). */
void	agent_poll_fd(int fd, short events, agent_io_fn *fn, void *obj);
uint32_t agent_features(void);		/* in use now; 0 while the host is away */
uint32_t agent_guest_id(void);		/* a fresh id for a stream we open */
int	agent_streams_full(void);	/* AGENT_MAX_STREAMS reached */

/* ---- init.c ---- */
int	init_early(void);
int	init_modules(const char *list);
int	init_cmdline(const char *key, char *out, size_t cap);
int	init_switch_root(int timeout_ms);
int	init_late(void);
int	init_open_port(const char *name, int timeout_ms);
int	init_read_file(const char *path, char *buf, size_t cap);

/* ---- share.c ---- */
void	share_modules(void);	/* from the initramfs, before the switch */
void	share_mount_all(void);	/* in the new root */

/* ---- chanio.c ---- */
typedef void chanio_frame_fn(void *arg, const struct chan_hdr *h,
    const uint8_t *payload);
typedef void chanio_link_fn(void *arg, int up);

struct chanio {
	int		 fd;
	int		 up;		/* host side connected */
	uint8_t		*rbuf;		/* one frame at most */
	size_t		 rlen;
	uint8_t		*wbuf;		/* queued output: [woff, wlen) */
	size_t		 woff, wlen, wcap;
	chanio_frame_fn	*on_frame;
	chanio_link_fn	*on_link;
	void		*arg;
};

int	chanio_init(struct chanio *c, int fd, chanio_frame_fn *on_frame,
	    chanio_link_fn *on_link, void *arg);
short	chanio_events(const struct chanio *c);
int	chanio_handle(struct chanio *c, short revents);
int	chanio_check(struct chanio *c);
int	chanio_flush(struct chanio *c, int timeout_ms);
size_t	chanio_queued(const struct chanio *c);
int	chanio_send(struct chanio *c, unsigned kind, uint32_t stream,
	    const void *p, size_t len);
int	chanio_send_error(struct chanio *c, uint32_t stream, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));
int	chanio_send_status(struct chanio *c, unsigned kind, uint32_t stream,
	    uint32_t code, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));
uint8_t	*chanio_reserve(struct chanio *c, size_t max);
int	chanio_commit(struct chanio *c, unsigned kind, uint32_t stream,
	    size_t len);

/* ---- user.c ---- */
struct user {
	int		 set;		/* 0: the request said "": stay root */
	uid_t		 uid;
	gid_t		 gid;
	gid_t		*groups;	/* supplementary, from /etc/group */
	size_t		 ngroups;
	char		*name;		/* NULL: a uid without a passwd entry */
	char		*home;		/* from /etc/passwd, or NULL */
};

int	user_resolve(const char *spec, struct user *u, char *err,
	    size_t errlen);
void	user_free(struct user *u);

/* ---- exec.c ---- */
enum { EXEC_STDOUT, EXEC_STDERR, EXEC_NOUT };

struct stream {
	uint32_t	 id;		/* 0 once orphaned by a disconnect */
	pid_t		 pid;		/* leader and process group */
	int		 tty;
	int		 in_fd;		/* child's stdin (tty: dup of master) */
	int		 out_fd[EXEC_NOUT];	/* tty: master in [0] */
	int		 out_dry[EXEC_NOUT];	/* read would block after exit */
	int		 err_fd;	/* exec error pipe, read at reap */
	struct chan_tx_window tx;
	struct chan_rx_window rx;
	uint8_t		*in_buf;
	size_t		 in_off, in_len, in_cap;
	int		 eof;		/* host sent EOF */
	int		 eof_done;	/* ... and the child has seen it */
	int		 in_closed;	/* child's stdin is gone */
	int		 closed;	/* host sent CLOSE */
	int		 reaped;
	int		 status;
	int		 dead;		/* EXIT sent; free at the next sweep */
	int		 detached;	/* STARTED sent: outlives the host */
	int		 copy;		/* COPY_IN/COPY_OUT: ends on EOF/EPIPE */
	uint32_t	 timeout_ms;	/* 0: none */
	long		 deadline;	/* agent_now_ms() to kill it at */
	int		 timed_out;	/* ... and it was killed for that */
	char		*argv0, *dir;	/* for error messages */
	char		*user;		/* the request's, for error messages */
};

int	exec_init(void);
struct stream *exec_new(uint32_t id);
void	exec_free(struct stream *s);
int	exec_start(struct stream *s, const struct chan_exec *x,
	    const struct user *u, char *err, size_t errlen);
int	exec_detach(struct stream *s, struct chanio *c);
int	exec_copy(struct stream *s, unsigned kind, const uint8_t *path,
	    size_t len, char *err, size_t errlen);
long	exec_expire(struct stream *s, long now);
int	exec_stdin(struct stream *s, struct chanio *c, const uint8_t *p,
	    uint32_t len);
int	exec_eof(struct stream *s, struct chanio *c);
int	exec_resize(struct stream *s, uint16_t cols, uint16_t rows);
int	exec_write(struct stream *s, struct chanio *c);
int	exec_read(struct stream *s, struct chanio *c, int which);
int	exec_drain(struct stream *s, struct chanio *c);
int	exec_finish(struct stream *s, struct chanio *c);
void	exec_close_fds(struct stream *s);
int	exec_kill(struct stream *s, int sig);
void	exec_abort(struct stream *s);
int	exec_send_exit(struct chanio *c, uint32_t id, int32_t code,
	    int32_t sig, const char *msg);

/* ---- net.c ---- */
int	net_lo_up(void);
void	net_frame(struct chanio *c, const uint8_t *p, size_t len);
long	net_expire(struct chanio *c, long now);

/* ---- dns.c ---- */
int	dns_start(char *err, size_t errlen);
/* The name a synthetic address (host order) stands for, or NULL. */
const char *dns_name_of(uint32_t addr);
/* A frame on a stream of ours that may be a DNS question: returns 0 if
 * it was not one of them. */
int	dns_frame(struct chanio *c, const struct chan_hdr *h,
	    const uint8_t *p);
int	dns_end(uint32_t id);
void	dns_poll(void);
long	dns_expire(struct chanio *c, long now);
void	dns_sweep(void);
void	dns_link(int up);

/* ---- sock.c ---- */
struct sock;

int	sock_listen(char *err, size_t errlen);
int	sock_forward(struct chanio *c, uint32_t id, uint16_t port);
struct sock *sock_find(uint32_t id);
void	sock_frame(struct chanio *c, struct sock *s, const struct chan_hdr *h,
	    const uint8_t *p);
void	sock_end(struct sock *s);
size_t	sock_count(void);
void	sock_poll(struct chanio *c);
long	sock_expire(struct chanio *c, long now);
void	sock_sweep(void);
void	sock_link(int up);

#endif /* CAPSULE_AGENT_H */
