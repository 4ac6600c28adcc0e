/*
 * chan.h — the binary channel between capsuled and capsule-agent.
 *
 * One virtio-serial port carries every stream of a VM. Each frame is a
 * 12-byte little-endian header followed by `len` payload bytes:
 *
 *	u16 magic (CHAN_MAGIC)   u8 kind   u8 flags (0)
 *	u32 stream               u32 len
 *
 * Stream 0 is the control stream (HELLO, SHUTDOWN, ERROR, PING, PONG); every
 * exec is a stream the host numbers from 1 and never reuses within one VM.
 *
 * Heartbeat: once ready, the host sends PING (a u32 sequence number) now
 * and then, and the agent answers each with a PONG carrying the same
 * number. A guest that says nothing at all for a while is not answering.
 * A second HELLO from the agent on one connection means the guest started
 * over (a reboot the hypervisor did not stop, a restarted agent).
 *
 * Flow control is per stream and per direction: a sender may have at most
 * CHAN_WINDOW data bytes (STDIN, or STDOUT+STDERR) that the receiver has not
 * handed back with a CREDIT frame. The receiver grants credit only once the
 * bytes have left it (written to the pipe, the client socket, ...), so a
 * stalled reader stalls only its own stream and nobody buffers more than a
 * window per stream.
 *
 * Everything here is pure: it encodes into and decodes from caller buffers.
 * The agent links this file and libc only.
 */
#ifndef CAPSULE_CHAN_H
#define CAPSULE_CHAN_H

#include <stddef.h>
#include <stdint.h>

#define CHAN_VERSION		4	/* 2: EXEC user/timeout/detach, COPY, STARTED
					 * 3: PING/PONG heartbeat
					 * 4: EXEC entropy seed */
#define CHAN_MAGIC		0xCA75
#define CHAN_HDR_LEN		12
#define CHAN_MAX_PAYLOAD	(1024 * 1024 + 65536)	/* EXEC carries argv+env */
#define CHAN_MAX_DATA		32768	/* STDIN/STDOUT/STDERR payload */
#define CHAN_WINDOW		(256 * 1024)
#define CHAN_MAX_MSG		4096	/* ERROR and EXIT message text */

enum chan_kind {
	/* stream 0 */
	CHAN_HELLO	= 1,	/* both ways: version handshake, agent says ready */
	CHAN_ERROR	= 2,	/* both ways: protocol error, text payload */
	CHAN_SHUTDOWN	= 3,	/* host->agent: sync and power off */
	CHAN_PING	= 4,	/* host->agent: u32 sequence number */
	CHAN_PONG	= 5,	/* agent->host: the PING's number */
	/* exec streams, host->agent */
	CHAN_EXEC	= 16,	/* start a command: struct chan_exec */
	CHAN_STDIN	= 17,
	CHAN_EOF	= 18,	/* no more stdin */
	CHAN_RESIZE	= 19,	/* u16 cols, u16 rows */
	CHAN_SIGNAL	= 20,	/* u32 signal number */
	CHAN_CLOSE	= 21,	/* client is gone: kill the process group */
	CHAN_COPY_IN	= 22,	/* receive a cpio archive (STDIN) into a path */
	CHAN_COPY_OUT	= 23,	/* send a path as a cpio archive (STDOUT) */
	/* exec streams, agent->host */
	CHAN_STDOUT	= 32,
	CHAN_STDERR	= 33,
	CHAN_EXIT	= 34,	/* struct chan_exit; last frame of a stream */
	CHAN_STARTED	= 35,	/* struct chan_started; ends a detached EXEC */
	/* both ways */
	CHAN_CREDIT	= 48,	/* u32 bytes the sender may send again */
};

struct chan_hdr {
	uint8_t		kind;
	uint8_t		flags;
	uint32_t	stream;
	uint32_t	len;
};

/* HELLO payload. */
struct chan_hello {
	uint32_t	version;
	uint32_t	boot_ms;	/* agent: guest CLOCK_BOOTTIME at ready */
};
#define CHAN_HELLO_LEN	8

/* EXEC payload: u8 tty, u8 flags, u16 cols, u16 rows, u16 0, u32 argc,
 * u32 envc, u32 timeout_ms (0: none), u32 seed_len, then NUL-terminated
 * strings: dir, user, argv[0..argc), env[0..envc), then seed_len bytes of
 * entropy seed for the guest's pool (at most CHAN_MAX_SEED), mixed in
 * before the command runs. Decoding points into the payload; the caller
 * keeps the payload alive.
 *
 * A detached EXEC (CHAN_EXEC_DETACH) runs with stdin from /dev/null and its
 * output in a log file in the guest; the agent answers STARTED instead of
 * streaming, and the command outlives the stream (timeout still applies). */
struct chan_exec {
	int		tty;
	int		detach;
	uint16_t	cols, rows;
	uint32_t	timeout_ms;
	const char	*dir;		/* "" means the agent's default */
	const char	*user;		/* "" means root; "uid[:gid]" or names */
	uint32_t	argc, envc;
	const char	**argv;		/* argc entries, caller-sized array */
	const char	**envp;		/* envc entries */
	const uint8_t	*seed;		/* seed_len bytes; may be NULL */
	uint32_t	seed_len;
};
#define CHAN_EXEC_FIXED		24
#define CHAN_MAX_SEED		512
#define CHAN_EXEC_DETACH	0x01

/* COPY_IN and COPY_OUT payload: the guest path, bytes without a NUL, 1 to
 * CHAN_MAX_PATH long. COPY_IN's archive comes as STDIN frames and ends with
 * EOF; COPY_OUT's goes out as STDOUT frames. Either ends with EXIT: 0, or 1
 * with the reason (see common/copy.h for the archive and its semantics). */
#define CHAN_MAX_PATH		4096

/* STARTED payload: u32 pid, then the log file's path (no NUL). */
struct chan_started {
	uint32_t	pid;
	const char	*log;		/* points into the payload */
	uint32_t	log_len;
};

/* EXIT payload: i32 exit_code, i32 signal (0 if none), then message bytes
 * (no NUL) up to CHAN_MAX_MSG. */
struct chan_exit {
	int32_t		exit_code;
	int32_t		signal;
	const char	*msg;		/* points into the payload, not terminated */
	uint32_t	msg_len;
};

/* Header codec. chan_hdr_decode returns 0, or -EBADMSG for a bad magic,
 * unknown kind or non-zero flags, -EMSGSIZE for len over CHAN_MAX_PAYLOAD
 * (or over CHAN_MAX_DATA for data kinds). */
void	chan_hdr_encode(uint8_t out[CHAN_HDR_LEN], const struct chan_hdr *h);
int	chan_hdr_decode(const uint8_t in[CHAN_HDR_LEN], struct chan_hdr *h);
int	chan_kind_valid(unsigned kind);
const char *chan_kind_name(unsigned kind);

/*
 * Frame splitter: given bytes received so far, tell whether a whole frame is
 * there. Returns the frame's total size (header + payload) when it is, 0 when
 * more bytes are needed, or a negative errno from chan_hdr_decode for a bad
 * header (the channel is then unusable: there is no resynchronisation).
 */
long	chan_frame_ready(const uint8_t *buf, size_t have, struct chan_hdr *h);

/* Payload codecs. Encoders return the payload length, or -EMSGSIZE if it
 * does not fit `cap`. Decoders return 0 or -EBADMSG/-E2BIG. */
int	chan_hello_encode(uint8_t *out, size_t cap, const struct chan_hello *h);
int	chan_hello_decode(const uint8_t *p, size_t len, struct chan_hello *h);
long	chan_exec_encode(uint8_t *out, size_t cap, const struct chan_exec *x);
/* argv/envp must have room for max_args/max_env entries. */
int	chan_exec_decode(const uint8_t *p, size_t len, struct chan_exec *x,
	    uint32_t max_args, uint32_t max_env);
int	chan_started_encode(uint8_t *out, size_t cap,
	    const struct chan_started *st);
int	chan_started_decode(const uint8_t *p, size_t len,
	    struct chan_started *st);
/* Checks a COPY_IN/COPY_OUT path payload: 1..CHAN_MAX_PATH bytes, no NUL,
 * absolute. Returns 0 or -EBADMSG. */
int	chan_path_check(const uint8_t *p, size_t len);
int	chan_exit_encode(uint8_t *out, size_t cap, const struct chan_exit *e);
int	chan_exit_decode(const uint8_t *p, size_t len, struct chan_exit *e);
int	chan_u32_encode(uint8_t *out, size_t cap, uint32_t v);
int	chan_u32_decode(const uint8_t *p, size_t len, uint32_t *v);
int	chan_resize_encode(uint8_t *out, size_t cap, uint16_t cols,
	    uint16_t rows);
int	chan_resize_decode(const uint8_t *p, size_t len, uint16_t *cols,
	    uint16_t *rows);

/*
 * Credit accounting, one per stream and direction.
 *
 * Sender side: `credit` is what it may still send. Receiver side: `held` is
 * what it has received and not yet released, `released` what it has let go
 * of but not yet granted back (grants are batched to save frames).
 */
struct chan_tx_window {
	uint32_t	credit;
};
struct chan_rx_window {
	uint32_t	held;
	uint32_t	released;
};

void	chan_tx_init(struct chan_tx_window *w);
/* How much of `want` may be sent now (0 when the window is closed). */
uint32_t chan_tx_allow(const struct chan_tx_window *w, uint32_t want);
void	chan_tx_consume(struct chan_tx_window *w, uint32_t n);
/* Returns -EPROTO if the grant would open the window past CHAN_WINDOW. */
int	chan_tx_grant(struct chan_tx_window *w, uint32_t n);

void	chan_rx_init(struct chan_rx_window *w);
/* Returns -EPROTO if the peer sent more than its window allows. */
int	chan_rx_receive(struct chan_rx_window *w, uint32_t n);
/* Marks n held bytes as gone; returns the credit to grant now (0 to wait
 * for more, so that grants come in batches of at least CHAN_WINDOW/4). */
uint32_t chan_rx_release(struct chan_rx_window *w, uint32_t n);

#endif /* CAPSULE_CHAN_H */
